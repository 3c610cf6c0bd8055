//! The manifest's TOML read into spanned values: every key and value keeps its byte range, so
//! any later error can point at the exact text. Strings are not rendered yet.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use tend_resources::spec::{Entry, Spanned, Text, Value};

/// A TOML value with spans inside (the outer span comes from `toml::Spanned`).
pub struct Node(pub Value);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn text(s: String) -> Value {
    Value::Str(Text {
        value: s,
        sensitive: false,
    })
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node(Value::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(|i| Node(Value::Int(i)))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node(text(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node(text(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<SpannedNode>()? {
            items.push(item.0);
        }
        Ok(Node(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        table(map, None)
    }
}

/// The rest of a table whose first key may already have been read.
fn table<'de, A: MapAccess<'de>>(mut map: A, first: Option<SpannedKey>) -> Result<Node, A::Error> {
    let mut entries = Vec::new();
    let mut next = first;
    if next.is_none() {
        next = map.next_key::<SpannedKey>()?;
    }
    while let Some(SpannedKey {
        key,
        span: key_span,
    }) = next
    {
        let SpannedNode(mut value) = map.next_value::<SpannedNode>()?;
        if value.span == (0..0) {
            // Implicit tables (`[file.motd]` makes `file`) have no span of their own.
            value.span = key_span.clone();
        }
        entries.push(Entry {
            key,
            key_span,
            value,
        });
        next = map.next_key::<SpannedKey>()?;
    }
    Ok(Node(Value::Table(entries)))
}

/// A value with its span, when the TOML parser knows one (implicit tables have none: 0..0).
/// `toml::Spanned<T>` cannot be used: it errors on values without a span.
pub struct SpannedNode(pub Spanned);

impl<'de> Deserialize<'de> for SpannedNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpannedNode, D::Error> {
        d.deserialize_struct(SPANNED, &[START, END, VALUE], SpannedNodeVisitor)
    }
}

struct SpannedNodeVisitor;

fn unspanned(n: Node) -> SpannedNode {
    SpannedNode(Spanned {
        span: 0..0,
        value: n.0,
    })
}

impl<'de> Visitor<'de> for SpannedNodeVisitor {
    type Value = SpannedNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SpannedNode, E> {
        NodeVisitor.visit_bool(v).map(unspanned)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SpannedNode, E> {
        NodeVisitor.visit_i64(v).map(unspanned)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SpannedNode, E> {
        NodeVisitor.visit_u64(v).map(unspanned)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<SpannedNode, E> {
        NodeVisitor.visit_f64(v).map(unspanned)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SpannedNode, E> {
        NodeVisitor.visit_str(v).map(unspanned)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<SpannedNode, E> {
        NodeVisitor.visit_string(v).map(unspanned)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SpannedNode, A::Error> {
        NodeVisitor.visit_seq(seq).map(unspanned)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpannedNode, A::Error> {
        let Some(first) = map.next_key::<SpannedKey>()? else {
            return Ok(unspanned(Node(Value::Table(Vec::new()))));
        };
        if first.key != START {
            return table(map, Some(first)).map(unspanned);
        }
        let start: usize = map.next_value()?;
        let (mut end, mut node) = (start, None);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                END => end = map.next_value()?,
                VALUE => node = Some(map.next_value::<Node>()?),
                other => return Err(de::Error::unknown_field(other, &[START, END, VALUE])),
            }
        }
        let node = node.ok_or_else(|| de::Error::missing_field(VALUE))?;
        Ok(SpannedNode(Spanned {
            span: start..end,
            value: node.0,
        }))
    }
}

/// A table key with its span. `toml::Spanned<String>` fails on the keys of dotted table headers
/// (`[file.motd]`: toml_edit hands the span protocol's field names over as owned strings), so
/// this speaks the same protocol accepting owned strings.
struct SpannedKey {
    key: String,
    span: std::ops::Range<usize>,
}

const SPANNED: &str = "$__serde_spanned_private_Spanned";
const START: &str = "$__serde_spanned_private_start";
const END: &str = "$__serde_spanned_private_end";
const VALUE: &str = "$__serde_spanned_private_value";

impl<'de> Deserialize<'de> for SpannedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpannedKey, D::Error> {
        d.deserialize_struct(SPANNED, &[START, END, VALUE], KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = SpannedKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table key")
    }

    fn visit_str<E>(self, v: &str) -> Result<SpannedKey, E> {
        Ok(SpannedKey {
            key: v.to_string(),
            span: 0..0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SpannedKey, A::Error> {
        let (mut start, mut end, mut key) = (0, 0, None);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                START => start = map.next_value()?,
                END => end = map.next_value()?,
                VALUE => key = Some(map.next_value::<String>()?),
                other => return Err(de::Error::unknown_field(other, &[START, END, VALUE])),
            }
        }
        let key = key.ok_or_else(|| de::Error::missing_field(VALUE))?;
        Ok(SpannedKey {
            key,
            span: start..end,
        })
    }
}
