//! The statement parser. Each [`Statement`] keeps the byte ranges of its key and value, so an
//! edit can replace exactly those bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use super::expand::expand;

/// How a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `KEY=value`: the text after comment cutting and trimming; expanded.
    Unquoted(String),
    /// `KEY='value'`: literal.
    Single(String),
    /// `KEY="value"`: escapes, then expansion. The text is as scanned (`\"` already a quote).
    Double(String),
    /// A bare `KEY` line: the value comes from the environment, or the key stays unset.
    Inherit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One `KEY=value` (or bare `KEY`) statement.
pub struct Statement {
    /// The variable's name.
    pub key: String,
    /// 1-based line of the statement's first character.
    pub line: usize,
    /// From the first character (`export` included) to the end of the value.
    pub range: Range<usize>,
    /// The value as written, quotes included (for `Inherit`, the key itself).
    pub value_range: Range<usize>,
    /// How the value is written.
    pub body: Body,
}

/// A parsed `.env` file and its text.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file's text, as read.
    pub text: String,
    /// Its statements, in file order.
    pub statements: Vec<Statement>,
}

impl Document {
    /// Whether some statement sets `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.statements.iter().any(|s| s.key == key)
    }
}

/// A file compose would reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the error.
    pub line: usize,
    /// What is wrong, in compose's words where they exist.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Go's `isSpace` in compose-go: blanks that are not line breaks.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn line_of(src: &str, pos: usize) -> usize {
    src[..pos.min(src.len())].matches('\n').count() + 1
}

fn skip_blanks(src: &str, mut pos: usize) -> usize {
    while let Some(c) = src[pos..].chars().next().filter(|c| is_blank(*c)) {
        pos += c.len_utf8();
    }
    pos
}

/// Parse a `.env` file the way compose v2 does (statements and their byte ranges, nothing evaluated).
pub fn parse(src: &str) -> Result<Document, ParseError> {
    // Line numbers from one index of the newlines: counting them from the start for every
    // statement made a large file quadratic.
    let newlines: Vec<usize> = src.match_indices('\n').map(|(i, _)| i).collect();
    let line_at = |pos: usize| newlines.partition_point(|&n| n < pos) + 1;
    let mut pos = if src.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let mut statements = Vec::new();
    loop {
        // Whitespace (line breaks too) and whole-line comments.
        loop {
            let rest = &src[pos..];
            let trimmed = rest.trim_start();
            pos += rest.len() - trimmed.len();
            if !trimmed.starts_with('#') {
                break;
            }
            pos = trimmed.find('\n').map_or(src.len(), |i| pos + i);
        }
        if pos >= src.len() {
            break;
        }
        let start = pos;
        let rest = &src[pos..];
        if rest.starts_with("export") && rest[6..].chars().next().is_some_and(char::is_whitespace) {
            pos = skip_blanks(src, pos + 6);
        }

        // The key: up to `=`, `:` or a line break; blanks are skipped while scanning.
        let key_start = pos;
        let mut separator = None;
        for (i, c) in src[key_start..].char_indices() {
            if is_blank(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    separator = Some((key_start + i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphanumeric() => {}
                c => {
                    return Err(ParseError {
                        line: line_at(key_start + i),
                        message: format!(
                            "unexpected character {:?} in variable name {:?}",
                            c.to_string(),
                            name_so_far(&src[key_start..key_start + i + c.len_utf8()])
                        ),
                    });
                }
            }
        }
        let (key, value_start) = match separator {
            // The file ends before any separator: compose takes key "" with the text as value.
            None => (String::new(), key_start),
            Some((i, '\n')) => {
                let key = src[key_start..i].trim_end().to_string();
                if key.contains(' ') {
                    return Err(space_in_key(src, start));
                }
                statements.push(Statement {
                    key,
                    line: line_at(start),
                    range: start..i,
                    value_range: key_start..key_start + src[key_start..i].trim_end().len(),
                    body: Body::Inherit,
                });
                pos = i + 1;
                continue;
            }
            Some((i, _)) => (src[key_start..i].trim_end().to_string(), i + 1),
        };
        if key.contains(' ') {
            return Err(space_in_key(src, start));
        }
        let v = skip_blanks(src, value_start);
        let (body, value_range, next) = match src[v..].chars().next() {
            Some(q @ ('\'' | '"')) => {
                let (text, close) = scan_quoted(src, v, q as u8)?;
                let body = if q == '\'' {
                    Body::Single(text)
                } else {
                    Body::Double(text)
                };
                (body, v..close + 1, close + 1)
            }
            _ => {
                let line_end = src[v..].find('\n').map_or(src.len(), |i| v + i);
                let mut value = &src[v..line_end];
                if let Some(cut) = value.find(" #") {
                    value = &value[..cut];
                }
                let value = value.trim_end();
                (
                    Body::Unquoted(value.to_string()),
                    v..v + value.len(),
                    (line_end + 1).min(src.len()),
                )
            }
        };
        statements.push(Statement {
            key,
            line: line_at(start),
            range: start..value_range.end,
            value_range,
            body,
        });
        pos = next;
    }
    Ok(Document {
        text: src.to_string(),
        statements,
    })
}

fn space_in_key(src: &str, start: usize) -> ParseError {
    ParseError {
        line: line_of(src, start),
        message: "key cannot contain a space".into(),
    }
}

/// Scan a quoted value whose opening quote is at `open`. Returns the text (a backslash before
/// the same quote yields the quote; any other backslash is kept with its character) and the
/// index of the closing quote.
fn scan_quoted(src: &str, open: usize, quote: u8) -> Result<(String, usize), ParseError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(open + 1) {
        if b != quote {
            if !escaped && b == b'\\' {
                escaped = true;
                continue;
            }
            if escaped {
                escaped = false;
                out.push(b'\\');
            }
            out.push(b);
            continue;
        }
        if escaped {
            escaped = false;
            out.push(b);
            continue;
        }
        // Quotes and backslashes are ASCII: `out` is cut only at character boundaries.
        return Ok((String::from_utf8_lossy(&out).into_owned(), i));
    }
    // Never the value itself: it may be a secret, and errors reach reports and logs.
    let line_start = src[..open].rfind('\n').map_or(0, |i| i + 1);
    let column = src[line_start..open].chars().count() + 1;
    Err(ParseError {
        line: line_of(src, open),
        message: format!(
            "unterminated quoted value: the {} at column {column} is never closed",
            char::from(quote)
        ),
    })
}

/// Escapes of double-quoted values. `\$` becomes `$$`, which expansion turns into a literal `$`.
pub fn unescape_double(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '\\' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars[i + 1];
        let simple = match next {
            'a' => Some("\u{7}"),
            'b' => Some("\u{8}"),
            'f' => Some("\u{c}"),
            'n' => Some("\n"),
            'r' => Some("\r"),
            't' => Some("\t"),
            'v' => Some("\u{b}"),
            '\\' => Some("\\"),
            '"' => Some("\""),
            '$' => Some("$$"),
            _ => None,
        };
        if let Some(s) = simple {
            out.push_str(s);
            i += 2;
            continue;
        }
        if next == '0'
            && i + 4 < chars.len()
            && chars[i + 2..i + 5].iter().all(|d| ('0'..='7').contains(d))
        {
            let digits: String = chars[i + 2..i + 5].iter().collect();
            if let Ok(n) = u8::from_str_radix(&digits, 8) {
                out.push(char::from(n));
                i += 5;
                continue;
            }
        }
        out.push('\\');
        out.push(next);
        i += 2;
    }
    out
}

/// The keys and values compose reads, in the order statements set them (last wins).
/// `env` is the process environment, consulted first by expansions and bare keys.
pub fn evaluate(
    doc: &Document,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ParseError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut total = 0usize;
    for s in &doc.statements {
        let value = {
            let lookup = |name: &str| env(name).or_else(|| out.get(name).cloned());
            let expanded = match &s.body {
                Body::Inherit => match lookup(&s.key) {
                    Some(v) => Ok(v),
                    None => continue,
                },
                Body::Single(t) => Ok(t.clone()),
                Body::Unquoted(t) => expand(t, &lookup),
                Body::Double(t) => expand(&unescape_double(t), &lookup),
            };
            // Bare keys and single quotes cannot fail; expansions can.
            match expanded {
                Ok(v) => v,
                Err(message) => {
                    return Err(ParseError {
                        line: s.line,
                        message,
                    })
                }
            }
        };
        // Each value is bounded, but values can reference each other: `B=$A$A`, `C=$B$B`…
        // doubles at every line, and such a file can arrive from upstream (`add_missing_from`).
        total += value.len();
        if total > MAX_FILE_EXPANDED {
            return Err(ParseError {
                line: s.line,
                message: format!(
                    "the file's values expand to more than {} MiB by key {}; tend refuses to expand further",
                    MAX_FILE_EXPANDED >> 20,
                    name_so_far(&s.key)
                ),
            });
        }
        if let Some(old) = out.insert(s.key.clone(), value) {
            total -= old.len();
        }
    }
    Ok(out)
}

/// All values of one file, expanded, at most: a compose `.env` is kilobytes.
pub const MAX_FILE_EXPANDED: usize = 16 << 20;

/// The variable name up to its first wrong character, as an error shows it: never what follows
/// on the line (it may be a secret value), and at most its last 40 characters (a hostile
/// megabyte-long name costs no more to report than a short one).
fn name_so_far(name: &str) -> String {
    match name.char_indices().rev().nth(39) {
        Some((i, _)) if i > 0 => format!("…{}", &name[i..]),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn statements_remember_their_ranges() {
        let src = "# c\nA=1 # note\nB='two'\nexport C=\"x\"\n";
        let doc = parse(src).expect("parses");
        let ranges: Vec<&str> = doc
            .statements
            .iter()
            .map(|s| &src[s.value_range.clone()])
            .collect();
        assert_eq!(ranges, ["1", "'two'", "\"x\""]);
        assert_eq!(doc.statements[2].line, 4);
    }

    #[test]
    fn errors_carry_the_line() {
        let err = parse("A=1\nB=\"open\n").expect_err("unterminated");
        assert_eq!(err.line, 2);
        assert!(
            err.message.starts_with("unterminated quoted value"),
            "{err}"
        );
        let err = parse("A=1\nSECRET='s3cret\n").expect_err("unterminated");
        assert_eq!(
            err.message,
            "unterminated quoted value: the ' at column 8 is never closed"
        );
        let err = parse(&format!("{}@=s3cret\n", "N".repeat(100_000))).expect_err("bad name");
        assert_eq!(
            err.message,
            format!(
                "unexpected character \"@\" in variable name \"…{}@\"",
                "N".repeat(39)
            )
        );
        let err = parse("MY@KEY=s3cret\n").expect_err("bad name");
        assert_eq!(
            err.message,
            "unexpected character \"@\" in variable name \"MY@\""
        );
        let doc = parse("A=${}\n").expect("parses");
        assert_eq!(evaluate(&doc, &no_env).expect_err("invalid").line, 1);
    }
}
