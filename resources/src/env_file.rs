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

/// The `env_file` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "env_file",
    summary:
        "keys of a docker compose .env file: set, on_create, absent, create_from, add_missing_from",
    build,
    prune: None,
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
/// A `env_file` resource, as its manifest table declared it.
pub(crate) struct EnvFile {
    path: PathBuf,
    create_from: Option<PathBuf>,
    set: Vec<Key>,
    on_create: Vec<Key>,
    absent: Vec<String>,
    add_missing_from: Option<PathBuf>,
    /// Checked on a private copy before the file is replaced.
    validate: Option<crate::edit::validate::Validate>,
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
    for (k, t, span) in f.text_table(name)?.unwrap_or_default() {
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
    let validate = crate::edit::validate::Validate::from_fields(f)?;
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
        validate,
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
    /// Why a value cannot be expanded, naming a sensitive key's line but never its value.
    fn unexpandable(&self, text: &str, e: &dotenv::ParseError) -> String {
        match key_of_line(text, e.line) {
            Some(k) if self.is_sensitive_key(k) => format!(
                "line {}: the value of {k} cannot be expanded (not shown: {k} is sensitive)",
                e.line
            ),
            _ => e.to_string(),
        }
    }

    /// The file after `edits`, refused when docker compose would reject it: removing a key (or
    /// emptying it) that another value requires (`${KEY?…}`, `${KEY:?…}`) would leave the
    /// project unable to start, so tend writes nothing and says which line needs it.
    fn edited(&self, host: &Probe, doc: &Document, edits: &Edits) -> Result<String, ResourceError> {
        let new = apply_edits(doc, edits);
        let result = dotenv::parse(&new).and_then(|d| dotenv::evaluate(&d, &no_env).map(|_| ()));
        if let Err(e) = result {
            return Err(ResourceError::Invalid(format!(
                "{}: after this change {} (docker compose would reject the file); nothing written",
                host.real(&self.path).display(),
                self.unexpandable(&new, &e)
            )));
        }
        Ok(new)
    }

    fn parse(
        &self,
        host: &Probe,
        text: &str,
        path: &std::path::Path,
    ) -> Result<Document, ResourceError> {
        let doc = dotenv::parse(text).map_err(|e| {
            // The broken line may hold a secret: name its key, never quote its value.
            let detail = match key_of_line(text, e.line) {
                Some(k) if self.is_sensitive_key(k) => format!(
                    "line {}: the value of {k} is malformed (not shown: {k} is sensitive)",
                    e.line
                ),
                _ => e.to_string(),
            };
            ResourceError::Invalid(format!(
                "{}: {detail} (docker compose would reject this file)",
                host.real(path).display()
            ))
        })?;
        // A last line with no `=` and no line break is read by compose as a variable named ""
        // (found by fuzzing the writer): any edit that appends a line turns it into an error, so
        // tend edits no such file. Its value is not shown: it may be a secret.
        if let Some(s) = doc.statements.iter().find(|s| s.key.is_empty()) {
            return Err(ResourceError::Invalid(format!(
                "{}: line {} has no `=` (compose reads it as a variable with no name): fix or remove that line",
                host.real(path).display(),
                s.line
            )));
        }
        Ok(doc)
    }

    fn is_sensitive_key(&self, key: &str) -> bool {
        self.secret_keys.contains(key)
            || self
                .set
                .iter()
                .chain(&self.on_create)
                .any(|k| k.name == key && k.sensitive)
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
        let Some(bytes) = host.read_limited(src, MAX_ENV_BYTES)? else {
            return Err(ResourceError::Missing(format!(
                "add_missing_from {} does not exist",
                host.real(src).display()
            )));
        };
        let text = decode(&bytes, host, src)?;
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
    /// Bytes that are not UTF-8 are carried through losslessly ([`decode`]).
    fn base(&self, host: &Probe) -> Result<(String, bool), ResourceError> {
        if let Some(bytes) = host.read_limited(&self.path, MAX_ENV_BYTES)? {
            return Ok((decode(&bytes, host, &self.path)?, false));
        }
        match &self.create_from {
            None => Ok((String::new(), true)),
            Some(src) => match host.read_limited(src, MAX_ENV_BYTES)? {
                Some(b) => Ok((decode(&b, host, src)?, true)),
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

    /// The `.env` as apply would write it (read through `host`, which may show the files it
    /// comes from as a dependency would leave them): compose, which reads it, is planned against
    /// that rather than against a hand edit apply is about to undo.
    fn after_apply(
        &self,
        host: &Probe,
        _observed: &std::collections::BTreeMap<String, serde_json::Value>,
        path: &std::path::Path,
    ) -> Option<crate::After> {
        if path != self.path {
            return None;
        }
        let (text, creating) = self.base(host).ok()?;
        let doc = self.parse(host, &text, &self.path).ok()?;
        let edits = self.edits(host, &doc, creating).ok()?;
        let new = self.edited(host, &doc, &edits).ok()?;
        Some(crate::After::Bytes(encode(&new)))
    }

    /// The files its content comes from (`create_from`, `add_missing_from`): a change to them
    /// (a checkout moving to another `.env.example`) may change what this resource writes.
    fn reads(&self) -> Vec<PathBuf> {
        self.create_from
            .iter()
            .chain(self.add_missing_from.iter())
            .cloned()
            .collect()
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
            ResourceError::Invalid(format!(
                "{}: {} (docker compose would reject this file)",
                host.real(&self.path).display(),
                self.unexpandable(&text, &e)
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
                ..Change::created("state", "present")
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
                        ..Change::new(k, values.get(k).cloned(), None::<String>)
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
            let mut c = if self.secret_keys.contains(&k) {
                Change::sensitive(&k, format!("{k}: (sensitive) added from {from}"))
            } else {
                Change {
                    description: format!("{k}: (unset) → added from {from}: {raw}"),
                    ..Change::new(k, None::<String>, Some(raw.clone()))
                }
            };
            c.from_input = true;
            drift.push(c);
        }
        // A file made from `create_from`: everything in it follows from that file.
        if creating && self.create_from.is_some() {
            for c in &mut drift.changes {
                c.from_input = true;
            }
        }
        // What apply would write must be a file compose accepts: plan says so, as apply would.
        if !drift.is_empty() {
            self.edited(host, &doc, &self.edits(host, &doc, creating)?)?;
        }
        if let Some(m) = &meta {
            self.attrs.check(host, m, &mut drift)?;
        }
        // A new file or new keys: the validator, when there is one, sees what apply would write
        // (its refusal is a failure planned as one).
        if self.validate.is_some() && drift.changes.iter().any(|c| !c.field.is_attribute()) {
            let (text, creating) = self.base(host)?;
            let doc = self.parse(host, &text, &self.path)?;
            let new = self.edited(host, &doc, &self.edits(host, &doc, creating)?)?;
            drift.will_fail = self.refused(&encode(&new)).await;
        }
        // A run killed mid-write leaves its temporary beside the file, holding every value of
        // it, secrets included: it is drift until removed.
        let tmp = crate::host::temp_path(&self.path);
        if host.metadata(&tmp)?.is_some() {
            drift.push(Change::note(
                "leftover",
                format!(
                    "remove {}, left by an interrupted run",
                    tmp.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ),
            ));
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let (text, creating) = self.base(host)?;
        let doc = self.parse(host, &text, &self.path)?;
        let edits = self.edits(host, &doc, creating)?;
        let new = self.edited(host, &doc, &edits)?;
        if creating || new != text {
            if let Some(why) = self.refused(&encode(&new)).await {
                return Err(ResourceError::Invalid(why));
            }
            let attrs = self.attrs.resolve(host)?;
            applied.backups.extend(host.replace_file(
                &self.path,
                &encode(&new),
                attrs,
                DEFAULT_MODE,
            )?);
        } else {
            if drift.touches("leftover") {
                host.remove_file(&crate::host::temp_path(&self.path))?;
            }
            self.attrs.apply(host, &self.path, drift)?;
        }
        Ok(applied)
    }
}

impl EnvFile {
    /// Why the validator refuses `bytes`, if there is one and it does. Its output is withheld
    /// whenever the file holds a secret (a validator may echo the line it refuses).
    async fn refused(&self, bytes: &[u8]) -> Option<String> {
        let v = self.validate.as_ref()?;
        let sensitive = !self.secret_keys.is_empty()
            || self.set.iter().chain(&self.on_create).any(|k| k.sensitive);
        v.run(&self.path, bytes, sensitive).await.err()
    }
}

/// The largest `.env` tend reads (Dify's, the largest known, is 60 KB).
const MAX_ENV_BYTES: u64 = 16 << 20;

/// Code points standing in for bytes that are not UTF-8: U+10FF00 + the byte (the last 256 of
/// Supplementary Private Use Area-B). Lines tend does not edit keep their exact bytes.
const RAW_BYTE_BASE: u32 = 0x10_FF00;

/// Text of a `.env` file: valid UTF-8 as it is; other bytes mapped one to one onto
/// [`RAW_BYTE_BASE`] so that [`encode`] gives them back. A non-UTF-8 file that already holds such
/// code points cannot be carried losslessly and is refused.
fn decode(bytes: &[u8], host: &Probe, path: &std::path::Path) -> Result<String, ResourceError> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(is_raw_byte) {
            return Ok(s.to_string());
        }
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        if chunk.valid().chars().any(is_raw_byte) {
            return Err(ResourceError::Invalid(format!(
                "{} mixes bytes that are not UTF-8 with the code points U+10FF00–U+10FFFF; tend \
                 cannot edit it without changing other lines",
                host.real(path).display()
            )));
        }
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push(char::from_u32(RAW_BYTE_BASE + u32::from(b)).unwrap_or('\u{FFFD}'));
        }
    }
    Ok(out)
}

fn is_raw_byte(c: char) -> bool {
    (RAW_BYTE_BASE..=RAW_BYTE_BASE + 0xFF).contains(&u32::from(c))
}

/// The bytes of a text made by [`decode`].
fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if is_raw_byte(c) {
            out.push((u32::from(c) - RAW_BYTE_BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// The key a `.env` line assigns (`export K=…`, `K: …`), for messages about that line.
fn key_of_line(text: &str, line: usize) -> Option<&str> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim_start();
    let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
    let end = l.find(|c: char| c == '=' || c == ':' || c.is_whitespace())?;
    Some(&l[..end]).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_survive_an_edit() {
        let host = Probe::new("/", "/");
        let bytes = b"A=caf\xe9\nB=1\n\xff\xfe=x\n".to_vec();
        let text = decode(&bytes, &host, std::path::Path::new("/x")).expect("decode");
        assert_eq!(encode(&text), bytes);
        let edited = text.replace("B=1", "B=2");
        assert_eq!(encode(&edited), b"A=caf\xe9\nB=2\n\xff\xfe=x\n".to_vec());
    }

    #[test]
    fn the_key_of_a_broken_line() {
        let text = "A=1\nexport SECRET=\"abc\nC: 3\n";
        assert_eq!(key_of_line(text, 2), Some("SECRET"));
        assert_eq!(key_of_line(text, 3), Some("C"));
        assert_eq!(key_of_line(text, 9), None);
    }
}
