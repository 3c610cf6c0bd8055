//! Writing values so that compose reads back exactly what was meant, and editing a file in place:
//! a changed key has its value bytes replaced (every occurrence, when a key is duplicated), a
//! removed key loses its statement (and its line, when nothing else is on it), a missing key is
//! appended. Every other byte — comments, order, blank lines, other keys, line endings — stays.

use super::parse::{Body, Document};

/// Characters that need no quoting anywhere in a value.
fn safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.,:/@+=%!?*~^[]{}".contains(c)
}

/// The text to write after `KEY=` so that compose reads `value`.
pub fn quote(value: &str) -> String {
    // Empty is written `''`: a bare `KEY=` followed by an inline comment would read the comment
    // as the value (found by fuzzing the writer).
    if value.is_empty() {
        return "''".to_string();
    }
    if value.chars().all(safe) {
        return value.to_string();
    }
    quoted(value)
}

/// `value` in quotes, whatever it holds: for a value followed by more on its line (compose
/// reads `A="x"B=y` as two statements), where a bare value would run on to the line's end.
fn quoted(value: &str) -> String {
    // Single quotes are fully literal, except that a backslash before a quote escapes it.
    if !value.contains('\'') && !value.contains('\\') {
        return format!("'{value}'");
    }
    let mut out = String::with_capacity(value.len() + 8);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a bare value followed by `rest` (the rest of its line) reads back as itself: the
/// parser cuts an unquoted value at ` #` and trims the whitespace at its end.
fn bare_fits(rest: &str) -> bool {
    let before = rest.find(" #").map_or(rest, |i| &rest[..i]);
    before.chars().all(char::is_whitespace)
}

/// What to change in a file.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    /// Keys that must hold these values.
    pub set: Vec<(String, String)>,
    /// Keys to remove.
    pub remove: Vec<String>,
    /// Statements to append verbatim (`KEY=raw value`), e.g. taken from `.env.example`.
    pub append_raw: Vec<String>,
}

/// Apply `edits` to the document's text.
pub fn apply_edits(doc: &Document, edits: &Edits) -> String {
    let text = &doc.text;
    let mut splices: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut missing = Vec::new();
    for (key, value) in &edits.set {
        let mut found = false;
        for s in doc.statements.iter().filter(|s| &s.key == key) {
            found = true;
            // A bare value runs on to its line's end, up to a ` #` comment (whitespace before
            // it trimmed): what follows the old value must leave it exactly as written, or the
            // new value is quoted. After a quoted value compose reads on for more statements
            // (`A=""b=""`), and a `#` or `\r` right after a bare one joins it (found by fuzzing
            // the writer).
            let rest = text[s.value_range.end..]
                .split('\n')
                .next()
                .unwrap_or_default();
            let v = quote(value);
            let v = if v.starts_with(['\'', '"']) || bare_fits(rest) {
                v
            } else {
                quoted(value)
            };
            match s.body {
                Body::Inherit => splices.push((s.value_range.clone(), format!("{key}={v}"))),
                _ => splices.push((s.value_range.clone(), v)),
            }
        }
        if !found {
            missing.push(format!("{key}={}", quote(value)));
        }
    }
    for key in &edits.remove {
        for s in doc.statements.iter().filter(|s| &s.key == key) {
            let line_start = text[..s.range.start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[s.range.end..]
                .find('\n')
                .map_or(text.len(), |i| s.range.end + i + 1);
            let before = &text[line_start..s.range.start];
            let after = text[s.range.end..line_end].trim_start();
            let alone = before.trim().is_empty()
                && (after.is_empty() || after.starts_with('#') || after.trim().is_empty());
            if alone {
                splices.push((line_start..line_end, String::new()));
            } else {
                splices.push((s.range.clone(), String::new()));
            }
        }
    }
    splices.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for (range, new) in splices {
        if range.start < at {
            continue; // overlapping edits of one statement: the first wins
        }
        out.push_str(&text[at..range.start]);
        out.push_str(&new);
        at = range.end;
    }
    out.push_str(&text[at..]);
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    for line in missing.iter().chain(&edits.append_raw) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(eol);
        }
        out.push_str(line);
        out.push_str(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse::{evaluate, parse};
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Found by the `env_edit` fuzz target: a bare `KEY=` before an inline comment read the
    /// comment as the value.
    #[test]
    fn an_emptied_value_before_an_inline_comment_reads_empty() {
        let doc = parse("SECRET_KEY=abc  # rotate yearly\nB=1\n").expect("parse");
        let out = apply_edits(
            &doc,
            &Edits {
                set: vec![("SECRET_KEY".into(), String::new())],
                ..Edits::default()
            },
        );
        assert_eq!(out, "SECRET_KEY=''  # rotate yearly\nB=1\n");
        let values = evaluate(&parse(&out).expect("parse"), &|_| None).expect("evaluate");
        assert_eq!(values.get("SECRET_KEY").map(String::as_str), Some(""));
    }

    /// Found by the `env_edit` fuzz target (CI, fifth session): compose reads `A=""b=""` as two
    /// statements; setting `b` wrote it bare (`b=Y`), which then ran on over the rest of the line.
    #[test]
    fn a_value_followed_by_another_statement_on_its_line_is_quoted() {
        let doc = parse("A=\"\"b=\"\"C=\"\"x\nD=1\n").expect("parse");
        let before = evaluate(&doc, &|_| None).expect("evaluate");
        assert_eq!(before.get("b").map(String::as_str), Some(""));
        let out = apply_edits(
            &doc,
            &Edits {
                set: vec![("b".into(), "Y".into()), ("D".into(), "2".into())],
                ..Edits::default()
            },
        );
        assert_eq!(out, "A=\"\"b='Y'C=\"\"x\nD=2\n");
        let after = evaluate(&parse(&out).expect("parse"), &|_| None).expect("evaluate");
        assert_eq!(after.get("b").map(String::as_str), Some("Y"));
        for k in ["A", "C"] {
            assert_eq!(after.get(k), before.get(k), "{k} unchanged");
        }
    }

    /// The same, with what follows the old value on its line: a `#` with no blank before it or
    /// carriage returns before one would join a bare value; a ` #` comment or a CRLF line end
    /// would not.
    #[test]
    fn a_value_followed_by_anything_but_a_comment_is_quoted() {
        for (before, after) in [
            ("b=\"\"#note\n", "b='Y'#note\n"),
            ("b=\"\"\r\r\r#note\n", "b='Y'\r\r\r#note\n"),
            // A tab is no comment's blank: the old value was all of `1\t#note`.
            ("b=1\t#note\n", "b=Y\n"),
            ("b=1 # note\n", "b=Y # note\n"),
            ("b=1\r\r # note\n", "b=Y\r\r # note\n"),
            ("b=1\r\n", "b=Y\r\n"),
        ] {
            let doc = parse(before).expect("parse");
            let out = apply_edits(
                &doc,
                &Edits {
                    set: vec![("b".into(), "Y".into())],
                    ..Edits::default()
                },
            );
            assert_eq!(out, after, "{before:?}");
            let values = evaluate(&parse(&out).expect("parse"), &|_| None).expect("evaluate");
            assert_eq!(values.get("b").map(String::as_str), Some("Y"), "{before:?}");
        }
    }

    fn read_back(value: &str) -> String {
        let doc = parse(&format!("K={}\n", quote(value))).expect("parses");
        evaluate(&doc, &|_| None)
            .expect("evaluates")
            .remove("K")
            .unwrap_or_else(|| panic!("K unset for {value:?}"))
    }

    #[test]
    fn quoting_round_trips_tricky_values() {
        for v in [
            "",
            "plain",
            "with space",
            "a #b",
            "#start",
            "trail ",
            " lead",
            "$HOME",
            "${X:-y}",
            "it's",
            "say \"hi\"",
            "back\\slash",
            "multi\nline",
            "crlf\r\n",
            "both ' and \\",
            "'",
            "\"",
            "\\",
            "$$",
            "tab\there",
            "\\0123",
            "Qazwsxedc!@#123",
            "%Y-%m-%d %H:%M:%S",
            "ünïcödé",
            "`cmd`",
            "a=b",
            "x:y",
        ] {
            assert_eq!(read_back(v), v, "quoted as {}", quote(v));
        }
    }

    #[test]
    fn quoting_round_trips_random_strings() {
        let alphabet: Vec<char> = "ab Z09_-#$'\"\\\n\r\t{}=:!@%`ü ".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x7e4d);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..12);
            let v: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            assert_eq!(read_back(&v), v, "quoted as {}", quote(&v));
        }
    }

    #[test]
    fn edits_touch_only_their_bytes() {
        let src = "# top\r\nA=1 # keep this comment\r\n\r\nexport B='two'\r\nA=again\r\nC=3";
        let doc = parse(src).expect("parses");
        let out = apply_edits(
            &doc,
            &Edits {
                set: vec![("A".into(), "new value".into()), ("D".into(), "4".into())],
                remove: vec!["B".into()],
                append_raw: vec![],
            },
        );
        assert_eq!(
            out,
            "# top\r\nA='new value' # keep this comment\r\n\r\nA='new value'\r\nC=3\r\nD=4\r\n"
        );
    }

    #[test]
    fn removing_one_statement_of_a_shared_line_keeps_the_other() {
        let doc = parse("A=\"1\" B=2\n").expect("parses");
        let out = apply_edits(
            &doc,
            &Edits {
                remove: vec!["A".into()],
                ..Edits::default()
            },
        );
        assert_eq!(
            evaluate(&parse(&out).expect("parses"), &|_| None)
                .expect("eval")
                .into_iter()
                .collect::<Vec<_>>(),
            [("B".to_string(), "2".to_string())]
        );
    }
}
