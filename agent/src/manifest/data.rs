//! Data per host and role, Hiera-style: `[data] layers = ["hosts/{{ facts.fqdn }}.toml",
//! "roles/{{ facts.local.role }}.toml", "common.toml"]` — most specific first, paths relative to
//! the manifest and inside its directory. Each layer is TOML; the merged table is `data` in
//! templates: tables merge deeply, the most specific layer wins at each leaf, lists are replaced
//! (not concatenated). A layer that does not exist is skipped. Every leaf remembers which layer
//! and line gave it and which it overrode: `tend data --explain`.

use std::collections::BTreeMap;
use std::path::Path;

use tend_resources::spec::{Entry, Span, Value};

use super::diagnostic::Diagnostic;
use super::raw;

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The layer, as the manifest names it (rendered).
    pub layer: String,
    /// The line of the layer's file that gave it.
    pub line: usize,
}

/// The merged data and where each leaf came from.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// The layers merged, the most specific winning at each leaf: `data` in templates.
    pub merged: serde_json::Value,
    /// Key path → the layers that give it, the winner first.
    pub origins: BTreeMap<Vec<String>, Vec<Origin>>,
    /// Keys whose values are kept out of every output (`secret = [...]` in `[data]`).
    pub secret: Vec<String>,
    /// Layers that do not exist (said with `-v`).
    pub skipped: Vec<String>,
}

impl Data {
    /// Whether the key at `path` is secret or inside a secret key.
    pub fn is_secret(&self, path: &[String]) -> bool {
        self.secret.iter().any(|s| {
            let s = key_path(s);
            path.len() >= s.len() && path[..s.len()] == s[..]
        })
    }
}

/// The layers `layers` (rendered relative paths, with the span of each in the manifest), read
/// beside the manifest at `manifest`, least specific last.
pub fn load(
    manifest: &Path,
    manifest_source: &str,
    layers: &[(String, Span)],
    secret: Vec<String>,
) -> Result<Data, Vec<Diagnostic>> {
    let dir = match manifest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut data = Data {
        merged: serde_json::Value::Object(Default::default()),
        secret,
        ..Data::default()
    };
    let mut diags = Vec::new();
    // Least specific first, so that each more specific layer overrides what is there.
    for (rel, span) in layers.iter().rev() {
        let fail = |why: String| {
            Diagnostic::new(
                manifest.to_path_buf(),
                manifest_source,
                span.clone(),
                format!("data layer {rel:?}: {why}"),
                None,
            )
        };
        let full = match super::beside::resolve(dir, dir, rel) {
            Ok(real) => real,
            Err(super::beside::Refused::Missing) => {
                data.skipped.push(rel.clone());
                continue;
            }
            Err(super::beside::Refused::Bad(why)) => {
                diags.push(fail(why));
                continue;
            }
        };
        let text = match super::beside::read(&full) {
            Ok(t) => t,
            Err(why) => {
                diags.push(fail(why));
                continue;
            }
        };
        let entries = match raw::parse(&text) {
            Ok(e) => e,
            Err(e) => {
                diags.push(Diagnostic::new(
                    full.clone(),
                    &text,
                    e.span,
                    format!("invalid TOML in data layer: {}", e.message),
                    None,
                ));
                continue;
            }
        };
        let mut leaves = Vec::new();
        let value = table_json(&entries, &text, &[], &mut leaves);
        for (key, line) in leaves {
            data.origins.entry(key).or_default().insert(
                0,
                Origin {
                    layer: rel.clone(),
                    line,
                },
            );
        }
        crate::facts::merge(&mut data.merged, value);
    }
    if diags.is_empty() {
        Ok(data)
    } else {
        Err(diags)
    }
}

/// A layer's table as JSON, its leaves (dotted key, line) collected.
fn table_json(
    entries: &[Entry],
    text: &str,
    prefix: &[String],
    leaves: &mut Vec<(Vec<String>, usize)>,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for e in entries {
        let mut key = prefix.to_vec();
        key.push(e.key.clone());
        let v = match &e.value.value {
            Value::Table(t) => table_json(t, text, &key, leaves),
            other => {
                let line = text[..e.key_span.start.min(text.len())]
                    .matches('\n')
                    .count()
                    + 1;
                leaves.push((key, line));
                super::to_json(other).unwrap_or(serde_json::Value::Null)
            }
        };
        map.insert(e.key.clone(), v);
    }
    serde_json::Value::Object(map)
}

/// A dotted key as a path: `vhosts."a.example".upstream` → [vhosts, a.example, upstream].
pub fn key_path(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in key.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A key path as it is written: parts holding a dot are quoted.
pub fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            if p.contains('.') || p.is_empty() {
                format!("{p:?}")
            } else {
                p.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The value at a dotted key.
pub fn lookup<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    key_path(key).iter().try_fold(v, |v, k| v.get(k))
}

/// `data` with every secret key's value replaced, for output.
pub fn redacted(data: &Data) -> serde_json::Value {
    let mut v = data.merged.clone();
    for s in &data.secret {
        let mut slot = Some(&mut v);
        for k in key_path(s) {
            slot = slot.and_then(|x| x.get_mut(&k));
        }
        if let Some(x) = slot {
            *x = serde_json::Value::String(tend_resources::REDACTED.into());
        }
    }
    v
}

/// What `tend data --explain` prints for the leaves under `key` (all, when `None`).
pub fn explain(data: &Data, key: Option<&str>) -> String {
    let shown = redacted(data);
    let under = key.map(key_path);
    let mut out = String::new();
    for (path, origins) in &data.origins {
        if let Some(p) = &under {
            if path.len() < p.len() || path[..p.len()] != p[..] {
                continue;
            }
        }
        let Some(value) = path.iter().try_fold(&shown, |v, k| v.get(k)) else {
            continue;
        };
        let Some((winner, rest)) = origins.split_first() else {
            continue;
        };
        let value = if data.is_secret(path) {
            serde_json::Value::String(tend_resources::REDACTED.into())
        } else {
            value.clone()
        };
        out.push_str(&format!(
            "{} = {value}\n    from {}:{}\n",
            dotted(path),
            winner.layer,
            winner.line
        ));
        for o in rest {
            out.push_str(&format!("    overrides {}:{}\n", o.layer, o.line));
        }
    }
    out
}
