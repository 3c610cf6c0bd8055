//! Compose's variable substitution, as applied to unquoted and double-quoted `.env` values:
//! `$$` is a literal `$`; `$NAME` and `${NAME}` are replaced (unset → empty); `${NAME:-def}`,
//! `${NAME-def}`, `${NAME:+alt}`, `${NAME+alt}`, `${NAME:?msg}`, `${NAME?msg}` with nested
//! expansion in the word; a `$` that starts nothing stays; a malformed `${…}` is an error.

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Deepest `${A:-${B:-…}}` nesting expanded: compose files never come close, and a hostile
/// `.env` (one that arrives through `add_missing_from`) must not exhaust a worker's stack.
pub const MAX_DEPTH: usize = 32;
/// Longest expanded value: `C=$B$B`, `D=$C$C`, … doubles at every line.
pub const MAX_EXPANDED: usize = 1 << 20;

/// Expand `text`; `lookup` returns a variable's value, `None` when unset.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    expand_in(text, text, lookup, 0)
}

/// The character (0-based) of `whole` at byte `i` of `part`, a slice of it: for messages only,
/// so counted when an error is made, never on the way.
fn char_at(whole: &str, part: &str, i: usize) -> usize {
    let offset = part.as_ptr() as usize - whole.as_ptr() as usize + i;
    whole[..offset].chars().count()
}

/// Expand `text`, a slice of the value `whole` (a default's text is expanded on its own, and an
/// error in it names its place in the whole value). Works on slices of the value: every level
/// of nesting borrows its text rather than copying it, so memory follows the output, not the
/// input times the depth.
fn expand_in(
    whole: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "substitutions nested more than {MAX_DEPTH} levels deep; tend refuses to expand further"
        ));
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(if depth == 0 { text.len() } else { 0 });
    let mut literal = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&text[literal..i]);
        match b.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                let close =
                    matching_brace(b, i + 1).ok_or_else(|| unclosed(char_at(whole, text, i)))?;
                let inner = &text[i + 2..close];
                out.push_str(
                    &braced(whole, inner, lookup, depth)
                        .map_err(|e| e.unwrap_or_else(|| malformed(char_at(whole, text, i))))?,
                );
                i = close + 1;
            }
            Some(&c) if is_name_start(char::from(c)) => {
                let mut j = i + 1;
                while j < b.len() && is_name_char(char::from(b[j])) {
                    j += 1;
                }
                out.push_str(&lookup(&text[i + 1..j]).unwrap_or_default());
                i = j;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
        literal = i;
        if out.len() > MAX_EXPANDED {
            return Err(too_big());
        }
    }
    out.push_str(&text[literal..]);
    if out.len() > MAX_EXPANDED {
        return Err(too_big());
    }
    Ok(out)
}

fn too_big() -> String {
    format!("the value expands to more than {MAX_EXPANDED} bytes; tend refuses to expand further")
}

// Compose quotes the value in these messages; tend names the place instead: the value may be a
// secret, and errors reach reports, logs and the journal.

/// A `${` at character `at` (0-based) of the value that never closes.
fn unclosed(at: usize) -> String {
    format!(
        "Invalid template: the `${{` at character {} of the value is never closed",
        at + 1
    )
}

/// A `${…}` at character `at` (0-based) of the value that is not one compose knows.
fn malformed(at: usize) -> String {
    format!(
        "Invalid template: the substitution at character {} of the value is not one of \
         ${{NAME}}, ${{NAME:-default}}, ${{NAME-default}}, ${{NAME:+alt}}, ${{NAME:?error}}",
        at + 1
    )
}

/// Index of the `}` closing the `{` at `open`, counting nested `${`.
fn matching_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The inside of `${…}`, a slice of the value `whole`. `Err(None)` is a malformed template;
/// `Err(Some(msg))` a `?` error or one in the default's text.
fn braced(
    whole: &str,
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, Option<String>> {
    let name_len = inner
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(inner.len(), |(i, _)| i);
    let name = &inner[..name_len];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(None);
    }
    let rest = &inner[name_len..];
    let value = lookup(name);
    if rest.is_empty() {
        return Ok(value.unwrap_or_default());
    }
    let (colon, op, word) = match rest.strip_prefix(':') {
        Some(r) => (true, r.chars().next(), r.get(1..).unwrap_or("")),
        None => (false, rest.chars().next(), rest.get(1..).unwrap_or("")),
    };
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let present = if colon { non_empty } else { set };
    let word = || expand_in(whole, word, lookup, depth + 1).map_err(Some);
    match op {
        Some('-') => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                word()
            }
        }
        Some('+') => {
            if present {
                word()
            } else {
                Ok(String::new())
            }
        }
        Some('?') => {
            if present {
                Ok(value.unwrap_or_default())
            } else {
                let msg = word()?;
                Err(Some(format!(
                    "required variable {name} is missing a value: {msg}"
                )))
            }
        }
        _ => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitution_forms() {
        let cases = [
            ("$SET-x", "v-x"),
            ("${SET}", "v"),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${SET:+alt}", "alt"),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET:-${SET:-x}}", "v"),
            ("a $ b $1 ^x$ $}", "a $ b $1 ^x$ $}"),
            ("$${SET}", "${SET}"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &env).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn hostile_nesting_and_growth_are_refused_not_a_crash() {
        let deep = "${X:-".repeat(20_000) + &"}".repeat(20_000);
        let err = expand(&deep, &env).expect_err("too deep");
        assert!(err.contains("nested more than 32 levels"), "{err}");
        let big = "$SET".repeat(2 << 20);
        let err = expand(&big, &env).expect_err("too big");
        assert!(err.contains("more than 1048576 bytes"), "{err}");
        let bad = "${".to_string() + &"x".repeat(10_000);
        assert!(expand(&bad, &env).expect_err("malformed").len() < 200);
    }

    #[test]
    fn malformed_and_required() {
        for bad in ["${}", "${ foo}", "${foo }", "${foo!}", "${foo", "${1a}"] {
            assert!(expand(bad, &env).is_err(), "{bad}");
        }
        assert_eq!(
            expand("pw-s3cret-${SET", &env).expect_err("unclosed"),
            "Invalid template: the `${` at character 11 of the value is never closed"
        );
        let err = expand("s3cret${ x}", &env).expect_err("malformed");
        assert!(
            err.starts_with("Invalid template: the substitution at character 7 of the value"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        // In a default's text: its place in the whole value.
        let err = expand("é${UNSET:-ab${B!}}", &env).expect_err("malformed");
        assert!(
            err.starts_with("Invalid template: the substitution at character 13 of the value"),
            "{err}"
        );
        assert_eq!(
            expand("${UNSET:-x${B:-${C}", &env).expect_err("unclosed"),
            "Invalid template: the `${` at character 1 of the value is never closed"
        );
        let err = expand("${UNSET:?need it}", &env).expect_err("required");
        assert_eq!(err, "required variable UNSET is missing a value: need it");
        assert_eq!(expand("${EMPTY?fine}", &env).as_deref(), Ok(""));
    }
}
