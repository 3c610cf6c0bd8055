//! The manifest's TOML read into spanned values: every key and value keeps its byte range, so
//! any later error can point at the exact text. Strings are not rendered yet.
//!
//! toml's own spanned tree ([`DeTable`]) is converted directly: going through serde's
//! deserializer protocol instead (spans smuggled as private struct fields, every string copied
//! twice) cost a third of a large manifest's load.

use std::ops::Range;

use tend_resources::spec::{Entry, Spanned, Text, Value};
use toml::de::{DeTable, DeValue};

/// Why the TOML could not be read, and where.
#[derive(Debug)]
pub struct ParseError {
    /// What the TOML parser said.
    pub message: String,
    /// The bytes it points at.
    pub span: Range<usize>,
}

/// The top-level table of `source`, in document order.
pub fn parse(source: &str) -> Result<Vec<Entry>, ParseError> {
    let top = DeTable::parse(source).map_err(|e| ParseError {
        message: e.message().trim_end().to_string(),
        span: e.span().unwrap_or(0..0),
    })?;
    table(top.into_inner())
}

fn table(t: DeTable<'_>) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::with_capacity(t.len());
    for (key, value) in t {
        let key_span = key.span();
        let mut value = node(value)?;
        if value.span.is_empty() {
            // Implicit tables (`[file.motd]` makes `file`) have no text of their own.
            value.span = key_span.clone();
        }
        entries.push(Entry {
            key: key.into_inner().into_owned(),
            key_span,
            value,
        });
    }
    Ok(entries)
}

fn node(v: toml::Spanned<DeValue<'_>>) -> Result<Spanned, ParseError> {
    let span = v.span();
    let value = match v.into_inner() {
        DeValue::String(s) => Value::Str(Text {
            value: s.into_owned(),
            sensitive: false,
        }),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if i.radix() == 8 => Value::Octal(n),
            Ok(n) => Value::Int(n),
            Err(_) => {
                return Err(ParseError {
                    message: "integer out of range".into(),
                    span,
                })
            }
        },
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(x) => Value::Float(x),
            Err(_) => {
                return Err(ParseError {
                    message: "invalid float".into(),
                    span,
                })
            }
        },
        DeValue::Boolean(b) => Value::Bool(b),
        // No kind takes a date: a table no field accepts, as toml's serde form of it is.
        DeValue::Datetime(d) => Value::Table(vec![Entry {
            key: "$__toml_private_datetime".into(),
            key_span: 0..0,
            value: Spanned {
                span: 0..0,
                value: Value::Str(Text {
                    value: d.to_string(),
                    sensitive: false,
                }),
            },
        }]),
        DeValue::Array(items) => {
            Value::Array(items.into_iter().map(node).collect::<Result<Vec<_>, _>>()?)
        }
        DeValue::Table(t) => Value::Table(table(t)?),
    };
    Ok(Spanned { span, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spanned_text<'a>(src: &'a str, s: &Spanned) -> &'a str {
        &src[s.span.clone()]
    }

    #[test]
    fn keys_and_values_keep_their_text_and_order() {
        let src = "[file.motd]\npath = \"/etc/motd\"\nmode = 0o644\nb = [1, 2]\n[env_file.e]\nset = { Z = \"1\", A = \"2\" }\n";
        let top = parse(src).expect("parses");
        let kinds: Vec<&str> = top.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(kinds, ["file", "env_file"]);
        let Value::Table(files) = &top[0].value.value else {
            panic!("a table")
        };
        let Value::Table(motd) = &files[0].value.value else {
            panic!("a table")
        };
        assert_eq!(&src[motd[0].key_span.clone()], "path");
        assert_eq!(spanned_text(src, &motd[0].value), "\"/etc/motd\"");
        assert!(matches!(motd[1].value.value, Value::Octal(0o644)));
        assert_eq!(spanned_text(src, &motd[2].value), "[1, 2]");
        let Value::Table(e) = &top[1].value.value else {
            panic!("a table")
        };
        let Value::Table(inner) = &e[0].value.value else {
            panic!("a table")
        };
        let Value::Table(set) = &inner[0].value.value else {
            panic!("a table")
        };
        // Document order, not sorted: `.env` keys are appended in the order written.
        let keys: Vec<&str> = set.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["Z", "A"]);
    }

    #[test]
    fn errors_have_a_message_and_a_span() {
        let e = parse("a = 99999999999999999999\n").expect_err("out of range");
        assert_eq!(e.message, "integer out of range");
        assert_eq!(e.span, 4..24);
        let e = parse("a = \"x\na = 1\n").expect_err("invalid");
        assert!(!e.message.is_empty());
    }
}
