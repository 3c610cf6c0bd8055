//! Typed access to one resource's manifest table, with the source span of every value.
//!
//! The loader (in the agent) parses the TOML, renders every string through the template engine
//! and hands each provider a [`Fields`]. The provider asks for the fields it knows, by name and
//! type; [`Fields::finish`] then rejects whatever was not asked for, suggesting the nearest known
//! name. So the provider's constructor is the one place that defines a kind's fields: there is
//! no second schema to fall out of step with it.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// Byte range in the manifest source.
pub type Span = Range<usize>;

/// A rendered string, and whether a secret went into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The text.
    pub value: String,
    /// It holds a secret (from `secret()`, directly or through a variable).
    pub sensitive: bool,
}

#[derive(Debug, Clone)]
/// A manifest value, typed as TOML types it.
pub enum Value {
    /// A string (rendered).
    Str(Text),
    /// An integer.
    Int(i64),
    /// An integer written in TOML's octal (`0o640`): kept apart so that a mode can tell it from
    /// a decimal one (`mode = 644` is a mistake; `mode = 0o644` is not). Elsewhere an integer.
    Octal(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<Spanned>),
    /// A table (keys in manifest order).
    Table(Vec<Entry>),
}

impl Value {
    /// The TOML type name, as error messages say it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) | Value::Octal(_) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "boolean",
            Value::Array(_) => "array",
            Value::Table(_) => "table",
        }
    }
}

#[derive(Debug, Clone)]
/// A value and where it is in the manifest.
pub struct Spanned {
    /// Byte range in the manifest.
    pub span: Span,
    /// The value.
    pub value: Value,
}

/// A key of a table with its span and value.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Where the key is.
    pub key_span: Span,
    /// Its value.
    pub value: Spanned,
}

/// A key of a string table, its rendered value and the value's span.
pub type KeyedText = (String, Text, Span);

/// An error in a resource's fields, located in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Where in the manifest.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl SpecError {
    /// An error at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> SpecError {
        SpecError {
            span,
            message: message.into(),
            help: None,
        }
    }
    /// The same error, with advice.
    pub fn help(mut self, help: impl Into<String>) -> SpecError {
        self.help = Some(help.into());
        self
    }
}

/// What a provider may need from the loader while it builds: where the manifest lives, and the
/// template engine for template files.
pub trait BuildContext {
    /// The directory of the manifest (templates and sources are relative to it).
    fn manifest_dir(&self) -> &Path;
    /// Render a template file's text (the same variables, facts and helpers as the manifest).
    fn render(&self, source: &str, name: &str) -> Result<Text, String>;
}

/// One resource's fields, consumed by name.
pub struct Fields<'a> {
    address: String,
    table_span: Span,
    entries: Vec<(Entry, bool)>,
    known: Vec<&'static str>,
    ctx: &'a dyn BuildContext,
}

impl<'a> Fields<'a> {
    /// The fields of the table at `address`.
    pub fn new(
        address: String,
        table_span: Span,
        entries: Vec<Entry>,
        ctx: &'a dyn BuildContext,
    ) -> Fields<'a> {
        Fields {
            address,
            table_span,
            entries: entries.into_iter().map(|e| (e, false)).collect(),
            known: Vec::new(),
            ctx,
        }
    }

    /// The resource's address (`file.motd`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Where the whole table is.
    pub fn table_span(&self) -> Span {
        self.table_span.clone()
    }

    /// What templates and relative paths resolve against.
    pub fn ctx(&self) -> &'a dyn BuildContext {
        self.ctx
    }

    /// Take a field if present (marks it known either way).
    pub fn take(&mut self, name: &'static str) -> Option<Spanned> {
        self.known.push(name);
        self.entries
            .iter_mut()
            .find(|(e, used)| !*used && e.key == name)
            .map(|(e, used)| {
                *used = true;
                e.value.clone()
            })
    }

    /// Whether a field is present, without taking it.
    /// The value of a field without taking it (to choose how to read it).
    pub fn peek(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(e, _)| e.key == name)
            .map(|(e, _)| &e.value.value)
    }

    /// Whether a field is present, without taking it.
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(e, _)| e.key == name)
    }

    /// Where a field is (its key and value), or the table when it is absent.
    pub fn span_of(&self, name: &str) -> Span {
        self.entries
            .iter()
            .find(|(e, _)| e.key == name)
            .map(|(e, _)| e.key_span.start..e.value.span.end)
            .unwrap_or_else(|| self.table_span.clone())
    }

    fn missing(&self, name: &str, what: &str) -> SpecError {
        SpecError::new(
            self.table_span.clone(),
            format!("{} is missing the required field `{name}`", self.address),
        )
        .help(format!("add `{name} = {what}`"))
    }

    /// A string field, if present, that may hold a secret: for fields whose kind hides a
    /// sensitive value in every output (content, `.env` values, a command, an environment).
    pub fn text(&mut self, name: &'static str) -> Result<Option<(Text, Span)>, SpecError> {
        match self.take(name) {
            None => Ok(None),
            Some(Spanned {
                span,
                value: Value::Str(t),
            }) => Ok(Some((t, span))),
            Some(other) => Err(wrong_type(name, "a string", &other)),
        }
    }

    /// A field that may hold a secret, which must be present.
    pub fn required_text(&mut self, name: &'static str) -> Result<(Text, Span), SpecError> {
        match self.text(name)? {
            Some(v) => Ok(v),
            None => Err(self.missing(name, "\"…\"")),
        }
    }

    /// A string field, if present. Its value is shown (a name, a path, a version, a URL), so a
    /// secret in it — one made with `secret()`, or derived from one — is a load error rather
    /// than a value printed in plans, reports and logs.
    pub fn string(&mut self, name: &'static str) -> Result<Option<(Text, Span)>, SpecError> {
        match self.text(name)? {
            Some((t, span)) if t.sensitive => Err(self.no_secret(name, span)),
            other => Ok(other),
        }
    }

    fn no_secret(&self, name: &str, span: Span) -> SpecError {
        SpecError::new(
            span,
            format!(
                "`{name}` of {} holds a value made with secret(): it is shown in plans, reports and logs, so it cannot hold a secret",
                self.address
            ),
        )
        .help("secrets go where tend hides them: file content, .env values, a command or its env")
    }

    /// A string field that must be present.
    pub fn required_string(&mut self, name: &'static str) -> Result<(Text, Span), SpecError> {
        match self.string(name)? {
            Some(v) => Ok(v),
            None => Err(self.missing(name, "\"…\"")),
        }
    }

    /// A boolean field, if present.
    pub fn bool(&mut self, name: &'static str) -> Result<Option<bool>, SpecError> {
        match self.take(name) {
            None => Ok(None),
            Some(Spanned {
                value: Value::Bool(b),
                ..
            }) => Ok(Some(b)),
            Some(other) => Err(wrong_type(name, "a boolean (true or false)", &other)),
        }
    }

    /// An integer field, if present.
    pub fn int(&mut self, name: &'static str) -> Result<Option<(i64, Span)>, SpecError> {
        match self.take(name) {
            None => Ok(None),
            Some(Spanned {
                span,
                value: Value::Int(i) | Value::Octal(i),
            }) => Ok(Some((i, span))),
            Some(other) => Err(wrong_type(name, "an integer", &other)),
        }
    }

    /// A positive number of seconds, `default` when absent.
    pub fn seconds(
        &mut self,
        name: &'static str,
        default: u64,
    ) -> Result<std::time::Duration, SpecError> {
        match self.int(name)? {
            None => Ok(std::time::Duration::from_secs(default)),
            Some((s, _)) if s > 0 => Ok(std::time::Duration::from_secs(s.unsigned_abs())),
            Some((_, span)) => Err(SpecError::new(
                span,
                format!("`{name}` must be a positive number of seconds"),
            )),
        }
    }

    /// A list of strings, empty when absent (values only).
    pub fn string_list(&mut self, name: &'static str) -> Result<Vec<String>, SpecError> {
        Ok(self
            .strings(name)?
            .unwrap_or_default()
            .into_iter()
            .map(|(t, _)| t.value)
            .collect())
    }

    /// A table of strings, empty when absent (keys and values only, in manifest order).
    pub fn string_map(&mut self, name: &'static str) -> Result<Vec<(String, String)>, SpecError> {
        Ok(self
            .string_table(name)?
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v, _)| (k, v.value))
            .collect())
    }

    /// An absolute host path.
    pub fn path(&mut self, name: &'static str) -> Result<Option<(PathBuf, Span)>, SpecError> {
        match self.string(name)? {
            None => Ok(None),
            Some((t, span)) => Ok(Some((absolute_path(name, &t.value, &span)?, span))),
        }
    }

    /// An absolute path field that must be present.
    pub fn required_path(&mut self, name: &'static str) -> Result<(PathBuf, Span), SpecError> {
        match self.path(name)? {
            Some(v) => Ok(v),
            None => Err(self.missing(name, "\"/absolute/path\"")),
        }
    }

    /// One of a closed set of words.
    pub fn choice(
        &mut self,
        name: &'static str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, SpecError> {
        match self.string(name)? {
            None => Ok(None),
            Some((t, span)) => match choices.iter().find(|c| **c == t.value) {
                Some(c) => Ok(Some(c)),
                None => {
                    let mut err = SpecError::new(
                        span,
                        format!(
                            "`{name}` must be one of {}, not {:?}",
                            quote_list(choices),
                            t.value
                        ),
                    );
                    if let Some(near) = nearest(&t.value, choices.iter().copied()) {
                        err = err.help(format!("did you mean {near:?}?"));
                    }
                    Err(err)
                }
            },
        }
    }

    /// A file mode: `"0644"` (string, octal) or `0o644` (TOML octal integer).
    pub fn mode(&mut self, name: &'static str) -> Result<Option<u32>, SpecError> {
        match self.take(name) {
            None => Ok(None),
            Some(Spanned {
                span,
                value: Value::Str(t),
            }) => {
                // Three or four octal digits, as chmod reads them: no sign, no `0o` in a
                // string (that is TOML's integer syntax: `mode = 0o644`).
                let digits = t.value.as_str();
                let octal = (3..=4).contains(&digits.len())
                    && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
                if t.sensitive {
                    // A mode is no secret; the value is not repeated in the error.
                    return Err(SpecError::new(
                        span,
                        format!("`{name}` holds a secret value; a mode must be written out, such as \"0644\""),
                    ));
                }
                match u32::from_str_radix(digits, 8) {
                    Ok(m) if octal => Ok(Some(m)),
                    _ => Err(SpecError::new(
                        span,
                        format!(
                            "`{name}` must be an octal mode such as \"0644\" (three or four digits 0-7), not {:?}",
                            t.value
                        ),
                    )),
                }
            }
            Some(Spanned {
                span,
                value: Value::Octal(i),
            }) => match u32::try_from(i) {
                Ok(m) if m <= 0o7777 => Ok(Some(m)),
                _ => Err(SpecError::new(
                    span,
                    format!("`{name}` = 0o{i:o} is not a mode (at most 0o7777)"),
                )),
            },
            // `mode = 644` is a TOML integer: decimal 644, i.e. mode 1204. Nobody means that.
            Some(Spanned {
                span,
                value: Value::Int(i),
            }) => {
                let err = SpecError::new(
                    span,
                    format!(
                        "`{name}` = {i} is a decimal integer (as a number it is mode {:04o}), \
                         not an octal mode",
                        i & 0o7777
                    ),
                );
                // The digits as written, read as octal, are what was meant (`644`); other
                // numbers (`0x1a4`, `999`) get no guess.
                let digits = i.to_string();
                Err(match u32::from_str_radix(&digits, 8) {
                    Ok(m) if m <= 0o7777 => err.help(format!(
                        "write the mode in octal: {name} = \"0{digits}\" or {name} = 0o{digits}"
                    )),
                    _ => err.help(format!(
                        "write the mode in octal: {name} = \"0644\" or {name} = 0o644"
                    )),
                })
            }
            Some(other) => Err(wrong_type(name, "an octal mode such as \"0644\"", &other)),
        }
    }

    /// A list of strings, shown in outputs: no secret in it (see [`Fields::string`]).
    pub fn strings(&mut self, name: &'static str) -> Result<Option<Vec<(Text, Span)>>, SpecError> {
        let items = self.any_strings(name)?;
        if let Some((_, span)) = items.iter().flatten().find(|(t, _)| t.sensitive) {
            return Err(self.no_secret(name, span.clone()));
        }
        Ok(items)
    }

    fn any_strings(&mut self, name: &'static str) -> Result<Option<Vec<(Text, Span)>>, SpecError> {
        match self.take(name) {
            None => Ok(None),
            Some(Spanned {
                value: Value::Array(items),
                ..
            }) => items
                .into_iter()
                .map(|item| match item.value {
                    Value::Str(t) => Ok((t, item.span)),
                    other => Err(wrong_type(
                        name,
                        "a list of strings",
                        &Spanned {
                            span: item.span,
                            value: other,
                        },
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(name, "a list of strings", &other)),
        }
    }

    /// A table of string values, in manifest order, shown in outputs: no secret in it (see
    /// [`Fields::string`]).
    pub fn string_table(
        &mut self,
        name: &'static str,
    ) -> Result<Option<Vec<KeyedText>>, SpecError> {
        let entries = self.text_table(name)?;
        if let Some((_, _, span)) = entries.iter().flatten().find(|(_, t, _)| t.sensitive) {
            return Err(self.no_secret(name, span.clone()));
        }
        Ok(entries)
    }

    /// A table of string values that may hold secrets (an environment, `.env` keys), in
    /// manifest order.
    pub fn text_table(&mut self, name: &'static str) -> Result<Option<Vec<KeyedText>>, SpecError> {
        match self.take(name) {
            None => Ok(None),
            Some(Spanned {
                value: Value::Table(entries),
                ..
            }) => entries
                .into_iter()
                .map(|e| match e.value.value {
                    Value::Str(t) => Ok((e.key, t, e.value.span)),
                    other => Err(wrong_type(
                        name,
                        "a table of strings",
                        &Spanned {
                            span: e.value.span,
                            value: other,
                        },
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(name, "a table of strings", &other)),
        }
    }

    /// At most one of `names` may be given; returns which one.
    pub fn at_most_one(
        &mut self,
        names: &[&'static str],
    ) -> Result<Option<&'static str>, SpecError> {
        self.known.extend_from_slice(names);
        let present: Vec<_> = names.iter().copied().filter(|n| self.has(n)).collect();
        match present.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            [first, second, ..] => Err(SpecError::new(
                self.span_of(second),
                format!(
                    "`{first}` and `{second}` cannot both be set on {}",
                    self.address
                ),
            )
            .help(format!("choose one of {}", quote_list(names)))),
        }
    }

    /// Reject every field that no one asked for, suggesting the nearest known name.
    pub fn finish(self) -> Result<(), SpecError> {
        if let Some((e, _)) = self.entries.iter().find(|(_, used)| !used) {
            let mut known = self.known.clone();
            known.sort_unstable();
            known.dedup();
            let mut err = SpecError::new(
                e.key_span.clone(),
                format!("unknown field `{}` in {}", e.key, self.address),
            );
            err = match nearest(&e.key, known.iter().copied()) {
                Some(near) => err.help(format!("did you mean `{near}`?")),
                None => err.help(format!("the fields are {}", quote_list(&known))),
            };
            return Err(err);
        }
        Ok(())
    }
}

fn wrong_type(name: &str, expected: &str, got: &Spanned) -> SpecError {
    SpecError::new(
        got.span.clone(),
        format!(
            "`{name}` must be {expected}, found {}",
            got.value.type_name()
        ),
    )
}

fn absolute_path(name: &str, value: &str, span: &Span) -> Result<PathBuf, SpecError> {
    let p = PathBuf::from(value);
    if !p.is_absolute() {
        return Err(SpecError::new(
            span.clone(),
            format!("`{name}` must be an absolute path, not {value:?}"),
        ));
    }
    // `..` is resolved as tend resolves every path (lexically, never above `/`), so `/x/../a`
    // and `/a` are one path to the one-resource-per-path rule, as they are on the host.
    let mut normal = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(part) => normal.push(part),
            std::path::Component::ParentDir => {
                normal.pop();
            }
            _ => {}
        }
    }
    Ok(normal)
}

/// `"a", "b" or "c"` style list (`a, b, c` with backticks for field names).
pub fn quote_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// The candidate nearest to `word` by edit distance, when near enough to be a typo.
pub fn nearest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let word_chars = word.chars().count();
    candidates
        .filter_map(|c| {
            let limit = (c.len().max(word.len()) / 3).max(1);
            // The distance is at least the difference in length: a candidate (or a word, from
            // hostile input) far longer than the other costs a count, not a table.
            if word_chars.abs_diff(c.chars().count()) > limit {
                return None;
            }
            let d = edit_distance(word, c);
            (d <= limit).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
/// of neighbours each cost one (`mdoe` is one step from `mode`). Three rows of the table are
/// kept, the most a transposition looks back.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            row[j] = d;
        }
        std::mem::swap(&mut before, &mut last);
        std::mem::swap(&mut last, &mut row);
    }
    last[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_and_ignores_strangers() {
        let fields = ["content", "source", "template", "mode"];
        assert_eq!(nearest("contnet", fields.iter().copied()), Some("content"));
        assert_eq!(nearest("mdoe", fields.iter().copied()), Some("mode"));
        assert_eq!(nearest("colour", fields.iter().copied()), None);
        // Ties go to the first candidate; a word far longer than any candidate matches none.
        assert_eq!(nearest("ab", ["ax", "ay"].into_iter()), Some("ax"));
        assert_eq!(nearest(&"mode".repeat(1000), fields.iter().copied()), None);
    }

    #[test]
    fn edit_distance_counts_each_kind_of_step_once() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("mode", "mode"), 0);
        assert_eq!(edit_distance("mdoe", "mode"), 1);
        assert_eq!(edit_distance("contnet", "content"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ca", "abc"), 3);
        assert_eq!(edit_distance("héllo", "hello"), 1);
    }

    #[test]
    fn lists_read_as_prose() {
        assert_eq!(quote_list(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
