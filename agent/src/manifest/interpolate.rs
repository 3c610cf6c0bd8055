//! A speed seam: strings that only paste names — `"/etc/nginx/sites/{{ each.key }}.conf"`,
//! `"{{ vars.domain }}"`, `"{{ each.value.upstream }}"` — are rendered without the template
//! engine's machine. Most strings of a real policy are of this form, and a `for_each` renders
//! each of them once per instance: the engine's fixed cost per render (its state, its frames,
//! its output) is most of a 1,000-instance loop's load (bench/README, "The policy language").
//!
//! The output is the engine's, byte for byte: each name is looked up in the same context the
//! engine would read (`each`, the variables, facts, `data`) and written with the engine's own
//! display of a value — the very formatting `{{ name }}` uses, since tend never turns on
//! auto-escaping. Anything else — a filter, an index, a call, whitespace control, a tag or a
//! comment, a name that is not defined — is not this seam's: the engine renders it (and says
//! why when it fails), as it would have without this file.

use std::fmt::Write;

/// A source that pastes names only: literal text and dotted names, in order.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plain(Vec<Piece>);

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `a.b.c`: a top-level name, then attributes.
    Name(Vec<String>),
}

/// `source` as a [`Plain`], when it is one.
pub(super) fn parse(source: &str) -> Option<Plain> {
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find('{') {
        match rest.as_bytes().get(open + 1) {
            Some(b'{') => {}
            // A tag or a comment is the engine's.
            Some(b'%' | b'#') => return None,
            _ => {
                // A lone `{` is text.
                let (text, after) = rest.split_at(open + 1);
                push_text(&mut pieces, text);
                rest = after;
                continue;
            }
        }
        push_text(&mut pieces, &rest[..open]);
        let inner_start = open + 2;
        let close = rest[inner_start..].find("}}")? + inner_start;
        let inner = &rest[inner_start..close];
        // `{{-` / `-}}` trim whitespace: the engine's.
        if inner.starts_with('-') || inner.ends_with('-') || inner.starts_with('+') {
            return None;
        }
        let name = inner.trim_matches(|c| c == ' ' || c == '\t');
        let parts: Vec<String> = name.split('.').map(str::to_string).collect();
        if !parts.iter().all(|p| identifier(p)) {
            return None;
        }
        pieces.push(Piece::Name(parts));
        rest = &rest[close + 2..];
    }
    push_text(&mut pieces, rest);
    pieces
        .iter()
        .any(|p| matches!(p, Piece::Name(_)))
        .then_some(Plain(pieces))
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    if text.is_empty() {
        return;
    }
    match pieces.last_mut() {
        Some(Piece::Text(t)) => t.push_str(text),
        _ => pieces.push(Piece::Text(text.to_string())),
    }
}

/// A name as the engine's lexer reads one: a letter or `_`, then letters, digits, `_`. Jinja's
/// keywords and literals (`true`, `none`, `not`…) are expressions, not names: the engine's.
fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            s,
            "true"
                | "false"
                | "none"
                | "True"
                | "False"
                | "None"
                | "not"
                | "and"
                | "or"
                | "in"
                | "is"
                | "if"
                | "else"
                | "loop"
                | "self"
                | "super"
                | "varargs"
                | "kwargs"
        )
}

impl Plain {
    /// The rendered text, reading names from `context`; `None` when a name is not defined (or
    /// holds something the engine does not print as a plain value): the engine takes over.
    pub(super) fn render(&self, context: &minijinja::Value) -> Option<String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Name(parts) => {
                    let mut value = context.clone();
                    for part in parts {
                        value = value.get_attr(part).ok()?;
                        if value.is_undefined() {
                            return None;
                        }
                    }
                    use minijinja::value::ValueKind;
                    match value.kind() {
                        ValueKind::String
                        | ValueKind::Number
                        | ValueKind::Bool
                        | ValueKind::None => write!(out, "{value}").ok()?,
                        // A list, a table, a function: how the engine shows them is its own.
                        _ => return None,
                    }
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seam's output against the engine's, for every shape it takes and a few it must not.
    #[test]
    fn renders_exactly_what_the_engine_renders() {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        let ctx = minijinja::Value::from_serialize(serde_json::json!({
            "each": { "key": "a.example", "value": { "upstream": "127.0.0.1:3000", "port": 8080,
                      "tls": true, "weight": 1.5, "tags": ["x", "y"] } },
            "vars": { "domain": "example.com", "empty": "", "quote": "it's <b>&\"" },
            "facts": { "os": { "id": "debian" } },
        }));
        let plain = [
            "/etc/nginx/sites/{{ each.key }}.conf",
            "{{each.value.upstream}}",
            "{{ each.value.port }} {{ each.value.tls }} {{ each.value.weight }}",
            "server_name {{ vars.domain }};\n",
            "{{ vars.empty }}|{{ vars.quote }}",
            "a { b } {{ facts.os.id }} }} {",
            "x {{\tvars.domain\t}} y\n\n",
        ];
        for src in plain {
            let p = parse(src).unwrap_or_else(|| panic!("{src:?} is plain"));
            let engine = env.render_str(src, &ctx).expect("the engine renders it");
            assert_eq!(p.render(&ctx).as_deref(), Some(engine.as_str()), "{src:?}");
        }
        // Not the seam's: left to the engine.
        for src in [
            "{{ each.key | upper }}",
            "{{ each.key[1:] }}",
            "{{- vars.domain }}",
            "{% if true %}x{% endif %}{{ vars.domain }}",
            "{# c #}{{ vars.domain }}",
            "{{ 'a' }}",
            "{{ true }}",
            "{{ vars.domain ~ 'x' }}",
            "{{ secret('db') }}",
            "no template",
            "{{ unclosed",
        ] {
            assert_eq!(parse(src), None, "{src:?}");
        }
        // Parsed, but the engine must say why: undefined names, values it shows its own way.
        for src in [
            "{{ vars.nope }}",
            "{{ each.value.tags }}",
            "{{ each.value }}",
        ] {
            let p = parse(src).expect("plain");
            assert_eq!(p.render(&ctx), None, "{src:?}");
        }
    }
}
