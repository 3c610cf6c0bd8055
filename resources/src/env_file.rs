//! `env_file`: keys in a docker compose `.env`, edited exactly as compose reads them.
//!
//! Check compares the values compose would see (after its expansion rules, with an empty
//! process environment: tend runs compose with a controlled one) with `set`; apply rewrites only
//! the bytes of the values that differ (every occurrence of a duplicated key), appends missing
//! keys, removes `absent` ones, and leaves every other byte alone. `on_create` keys are written
//! only by the run that creates the file — for values such as a database password that Postgres
//! takes only at its first start.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::attrs::Ownership;
use crate::change::{Change, Drift};
use crate::dotenv::{self, apply_edits, Document, Edits};
use crate::host::{fmt_mode, Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

pub const KIND: Kind = Kind {
    name: "env_file",
    summary:
        "keys of a docker compose .env file: set, on_create, absent, create_from, add_missing_from",
    build,
};

/// Mode of a `.env` file tend creates when the manifest names none: it usually holds secrets.
const DEFAULT_MODE: u32 = 0o600;

#[derive(Debug, Clone)]
struct Key {
    name: String,
    value: String,
    sensitive: bool,
}

#[derive(Debug)]
pub struct EnvFile {
    path: PathBuf,
    create_from: Option<PathBuf>,
    set: Vec<Key>,
    on_create: Vec<Key>,
    absent: Vec<String>,
    add_missing_from: Option<PathBuf>,
    secret_keys: BTreeSet<String>,
    attrs: Ownership,
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_alphanumeric() || "_.-[]".contains(c))
}

fn keys(
    f: &mut Fields<'_>,
    name: &'static str,
    secret_keys: &BTreeSet<String>,
) -> Result<Vec<Key>, SpecError> {
    let mut out = Vec::new();
    for (k, t, span) in f.string_table(name)?.unwrap_or_default() {
        if !valid_key(&k) {
            return Err(
                SpecError::new(span, format!("{k:?} is not a key docker compose accepts"))
                    .help("keys hold letters, digits, `_`, `.`, `-`, `[` and `]`"),
            );
        }
        let sensitive = t.sensitive || secret_keys.contains(&k);
        out.push(Key {
            name: k,
            value: t.value,
            sensitive,
        });
    }
    Ok(out)
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (path, _) = f.required_path("path")?;
    let create_from = f.path("create_from")?.map(|(p, _)| p);
    let secret_keys: BTreeSet<String> = f
        .strings("secret_keys")?
        .unwrap_or_default()
        .into_iter()
        .map(|(t, _)| t.value)
        .collect();
    let set = keys(f, "set", &secret_keys)?;
    let on_create = keys(f, "on_create", &secret_keys)?;
    let absent: Vec<String> = f
        .strings("absent")?
        .unwrap_or_default()
        .into_iter()
        .map(|(t, _)| t.value)
        .collect();
    let add_missing_from = f.path("add_missing_from")?.map(|(p, _)| p);
    let attrs = Ownership::from_fields(f)?;
    for k in &set {
        if absent.contains(&k.name) {
            return Err(SpecError::new(
                f.span_of("absent"),
                format!("key {} is both in `set` and in `absent`", k.name),
            ));
        }
        if on_create.iter().any(|o| o.name == k.name) {
            return Err(SpecError::new(
                f.span_of("on_create"),
                format!("key {} is both in `set` and in `on_create`", k.name),
            )
            .help("`set` already writes it on every run; keep it in one of the two"));
        }
    }
    Ok(Arc::new(EnvFile {
        path,
        create_from,
        set,
        on_create,
        absent,
        add_missing_from,
        secret_keys,
        attrs,
    }))
}

/// Compose reads `.env` with the process environment first; tend runs compose with a controlled
/// environment, so the file alone decides.
fn no_env(_: &str) -> Option<String> {
    None
}

fn show(v: Option<&String>) -> String {
    v.map_or_else(|| "(unset)".to_string(), |v| format!("{v:?}"))
}

impl EnvFile {
    fn parse(
        &self,
        host: &Probe,
        text: &str,
        path: &std::path::Path,
    ) -> Result<Document, ResourceError> {
        dotenv::parse(text).map_err(|e| {
            ResourceError::Failed(format!(
                "{}: {e} (docker compose would reject this file)",
                host.real(path).display()
            ))
        })
    }

    fn key_change(&self, host: &Probe, key: &Key, old: Option<&String>) -> Change {
        if key.sensitive {
            let old = old.map_or_else(|| "(unset)".to_string(), |o| host.fingerprint(o.as_bytes()));
            let new = host.fingerprint(key.value.as_bytes());
            Change::sensitive(
                &key.name,
                format!("{}: (sensitive) {old} → {new}", key.name),
            )
        } else {
            let c = Change::new(&key.name, old.cloned(), Some(key.value.clone()));
            Change {
                description: format!("{}: {} → {:?}", key.name, show(old), key.value),
                ..c
            }
        }
    }

    /// Statements of `add_missing_from` whose keys `doc` lacks (and the manifest does not set
    /// or remove), verbatim.
    fn missing_from_source(
        &self,
        host: &Probe,
        doc: &Document,
    ) -> Result<Vec<(String, String)>, ResourceError> {
        let Some(src) = &self.add_missing_from else {
            return Ok(Vec::new());
        };
        let Some(bytes) = host.read(src)? else {
            return Err(ResourceError::Missing(format!(
                "add_missing_from {} does not exist",
                host.real(src).display()
            )));
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let source = self.parse(host, &text, src)?;
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in &source.statements {
            let managed = self.set.iter().any(|k| k.name == s.key) || self.absent.contains(&s.key);
            if managed || doc.has_key(&s.key) || !seen.insert(s.key.clone()) {
                continue;
            }
            out.push((
                s.key.clone(),
                text[s.range.clone()]
                    .trim_start_matches("export")
                    .trim_start()
                    .to_string(),
            ));
        }
        Ok(out)
    }

    /// The current text, or what a creation starts from; and whether this run creates the file.
    fn base(&self, host: &Probe) -> Result<(String, bool), ResourceError> {
        if let Some(bytes) = host.read(&self.path)? {
            return Ok((String::from_utf8_lossy(&bytes).into_owned(), false));
        }
        match &self.create_from {
            None => Ok((String::new(), true)),
            Some(src) => match host.read(src)? {
                Some(b) => Ok((String::from_utf8_lossy(&b).into_owned(), true)),
                None => Err(ResourceError::Missing(format!(
                    "create_from {} does not exist",
                    host.real(src).display()
                ))),
            },
        }
    }

    fn edits(&self, host: &Probe, doc: &Document, creating: bool) -> Result<Edits, ResourceError> {
        let mut set: Vec<(String, String)> = self
            .set
            .iter()
            .map(|k| (k.name.clone(), k.value.clone()))
            .collect();
        if creating {
            set.extend(
                self.on_create
                    .iter()
                    .map(|k| (k.name.clone(), k.value.clone())),
            );
        }
        let current = dotenv::evaluate(doc, &no_env).unwrap_or_default();
        set.retain(|(k, v)| current.get(k) != Some(v));
        Ok(Edits {
            set,
            remove: self
                .absent
                .iter()
                .filter(|k| doc.has_key(k))
                .cloned()
                .collect(),
            append_raw: self
                .missing_from_source(host, doc)?
                .into_iter()
                .map(|(_, raw)| raw)
                .collect(),
        })
    }
}

#[async_trait]
impl Resource for EnvFile {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        let meta = crate::file::regular_file(host, &self.path)?;
        let (text, creating) = self.base(host)?;
        let doc = self.parse(
            host,
            &text,
            self.create_from
                .as_deref()
                .filter(|_| creating)
                .unwrap_or(&self.path),
        )?;
        let values = dotenv::evaluate(&doc, &no_env).map_err(|e| {
            ResourceError::Failed(format!(
                "{}: {e} (docker compose would reject this file)",
                host.real(&self.path).display()
            ))
        })?;
        if creating {
            let from = self
                .create_from
                .as_ref()
                .map(|p| format!(" from {}", p.display()))
                .unwrap_or_default();
            let mode = self.attrs.mode.unwrap_or(DEFAULT_MODE);
            drift.push(Change {
                description: format!("create{from} (mode {})", fmt_mode(mode)),
                ..Change::new("state", Some("absent"), Some("present"))
            });
        }
        let keys = self
            .set
            .iter()
            .chain(self.on_create.iter().filter(|_| creating));
        for k in keys {
            if values.get(&k.name) != Some(&k.value) {
                drift.push(self.key_change(host, k, values.get(&k.name)));
            }
        }
        for k in &self.absent {
            if doc.has_key(k) {
                let c = if self.secret_keys.contains(k) {
                    Change::sensitive(k, format!("{k}: (sensitive) removed"))
                } else {
                    Change {
                        description: format!("{k}: {} → (removed)", show(values.get(k))),
                        ..Change::new(k.as_str(), values.get(k).cloned(), None::<String>)
                    }
                };
                drift.push(c);
            }
        }
        for (k, raw) in self.missing_from_source(host, &doc)? {
            let from = self
                .add_missing_from
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            drift.push(if self.secret_keys.contains(&k) {
                Change::sensitive(&k, format!("{k}: (sensitive) added from {from}"))
            } else {
                Change {
                    description: format!("{k}: (unset) → added from {from}: {raw}"),
                    ..Change::new(k.as_str(), None::<String>, Some(raw.clone()))
                }
            });
        }
        if let Some(m) = &meta {
            self.attrs.check(host, m, &mut drift)?;
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let (text, creating) = self.base(host)?;
        let doc = self.parse(host, &text, &self.path)?;
        let edits = self.edits(host, &doc, creating)?;
        let new = apply_edits(&doc, &edits);
        if creating || new != text {
            let attrs = self.attrs.resolve(host)?;
            applied.backups.extend(host.replace_file(
                &self.path,
                new.as_bytes(),
                attrs,
                DEFAULT_MODE,
            )?);
        } else {
            self.attrs.apply(host, &self.path, drift)?;
        }
        Ok(applied)
    }
}
