//! `apt_repo`: a signed apt source — a keyring in `/etc/apt/keyrings/NAME.asc` (`.gpg` for a
//! binary key) and a deb822 `/etc/apt/sources.list.d/NAME.sources` with `Signed-By`. A key fetched
//! from a URL must match its fingerprint before anything is written. A change leaves a marker so
//! that `package` resources fetch this repository's lists before installing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::apt;
use crate::change::{Change, Drift};
use crate::host::{Attrs, Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, Spanned, SpecError, Value};

/// The `apt_repo` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "apt_repo",
    summary: "a signed apt repository: keyring and deb822 .sources file",
    build,
    prune: None,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// Known when the manifest loads (inline, or a file beside the manifest).
    Bytes(Vec<u8>),
    /// A host path, read at check time.
    HostPath(PathBuf),
    Url(String),
}

#[derive(Debug)]
/// A `apt_repo` resource, as its manifest table declared it.
pub(crate) struct AptRepo {
    name: String,
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    architectures: Vec<String>,
    key: Key,
    fingerprint: Option<String>,
}

fn words(f: &mut Fields<'_>, name: &'static str) -> Result<Option<Vec<String>>, SpecError> {
    match f.take(name) {
        None => Ok(None),
        Some(Spanned {
            value: Value::Str(t),
            span,
        }) => {
            if t.value.chars().any(|c| c.is_control() && c != ' ') {
                return Err(SpecError::new(
                    span,
                    format!("`{name}` holds a line break or control character: words are separated by spaces"),
                ));
            }
            Ok(Some(t.value.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect()))
        }
        Some(Spanned {
            value: Value::Array(items),
            span,
        }) => items
            .into_iter()
            .map(|i| match i.value {
                // One word of a deb822 field: a blank or a line break would start another
                // word or another field (`Signed-By:` injected from a list item).
                Value::Str(t) if t.value.is_empty() || t.value.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    Err(SpecError::new(
                        i.span,
                        format!("`{name}` items are single words (no blank, line break or control character)"),
                    ))
                }
                Value::Str(t) => Ok(t.value),
                other => Err(SpecError::new(
                    i.span,
                    format!("`{name}` must hold strings, found {}", other.type_name()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|v| {
                if v.is_empty() {
                    Err(SpecError::new(span, format!("`{name}` must not be empty")))
                } else {
                    Ok(v)
                }
            })
            .map(Some),
        Some(other) => Err(SpecError::new(
            other.span,
            format!(
                "`{name}` must be a string or a list of strings, found {}",
                other.value.type_name()
            ),
        )),
    }
}

fn normalize_fpr(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let default_name = f
        .address()
        .split_once('.')
        .map_or("repo", |(_, n)| n)
        .to_string();
    let name = f.string("name")?.map_or(default_name, |(t, _)| t.value);
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        || name.starts_with('.')
    {
        return Err(SpecError::new(
            f.span_of("name"),
            format!("{name:?} cannot name a file in /etc/apt"),
        ));
    }
    let span = f.table_span();
    let uris = words(f, "uris")?.ok_or_else(|| {
        SpecError::new(
            span.clone(),
            format!("{} is missing the required field `uris`", f.address()),
        )
    })?;
    let suites = words(f, "suites")?.ok_or_else(|| {
        SpecError::new(
            span.clone(),
            format!("{} is missing the required field `suites`", f.address()),
        )
    })?;
    let components = words(f, "components")?.unwrap_or_default();
    if components.is_empty() && !suites.iter().all(|s| s.ends_with('/')) {
        return Err(SpecError::new(
            f.span_of("suites"),
            "`components` is required unless every suite is a flat-repository path ending in `/`",
        ));
    }
    let architectures = words(f, "architectures")?.unwrap_or_default();
    let fingerprint = f
        .string("fingerprint")?
        .map(|(t, _)| normalize_fpr(&t.value));
    let key = match f.take("key") {
        Some(Spanned {
            value: Value::Table(entries),
            span,
        }) => {
            let [entry] = entries.as_slice() else {
                return Err(SpecError::new(
                    span,
                    "`key` takes exactly one of `path`, `content` or `url`",
                ));
            };
            let Value::Str(t) = &entry.value.value else {
                return Err(SpecError::new(
                    entry.value.span.clone(),
                    "the key's value must be a string",
                ));
            };
            match entry.key.as_str() {
                "content" => Key::Bytes(t.value.clone().into_bytes()),
                "url" => {
                    if fingerprint.is_none() {
                        return Err(SpecError::new(
                            span,
                            "a key fetched from a URL needs `fingerprint`",
                        )
                        .help("add `fingerprint = \"…\"` (the key's full fingerprint)"));
                    }
                    Key::Url(t.value.clone())
                }
                "path" if t.value.starts_with('/') => Key::HostPath(PathBuf::from(&t.value)),
                "path" => Key::Bytes(
                    crate::file::read_beside_manifest(f, "key", &t.value, &entry.value.span)?.1,
                ),
                other => {
                    return Err(SpecError::new(
                        entry.key_span.clone(),
                        format!("unknown key source `{other}`"),
                    )
                    .help("use `path`, `content` or `url`"));
                }
            }
        }
        Some(other) => return Err(SpecError::new(
            other.span,
            "`key` must be a table: key = { url = \"…\" }, { path = \"…\" } or { content = \"…\" }",
        )),
        None => {
            return Err(SpecError::new(
                span,
                format!("{} is missing the required field `key`", f.address()),
            )
            .help("add key = { url = \"…\" } with fingerprint, or { path = \"…\" }"))
        }
    };
    Ok(Arc::new(AptRepo {
        name,
        uris,
        suites,
        components,
        architectures,
        key,
        fingerprint,
    }))
}

fn armored(key: &[u8]) -> bool {
    key.starts_with(b"-----BEGIN PGP")
}

/// Primary-key fingerprints of the keys in `key`, read with `gpg --show-keys` (nothing imported),
/// in a private GNUPGHOME that is removed after: a read-only probe, run like every process tend
/// starts (its own group, a time limit), never blocking a worker.
async fn fingerprints(key: &[u8]) -> Result<Vec<String>, ResourceError> {
    let home = tempfile::Builder::new()
        .prefix("tend-gpg-")
        .tempdir()
        .map_err(|e| ResourceError::Failed(format!("cannot make a temporary GNUPGHOME: {e}")))?;
    let file = home.path().join("key");
    // The key goes into gpg's private temporary home, not onto the host.
    #[allow(clippy::disallowed_methods)]
    std::fs::write(&file, key).map_err(|e| crate::HostError::new("write", file.clone(), e))?;
    let mut cmd = tokio::process::Command::new("gpg");
    cmd.args(["--batch", "--quiet", "--with-colons", "--show-keys"])
        .arg(&file)
        .env("GNUPGHOME", home.path());
    let out = crate::process::capture(cmd, std::time::Duration::from_secs(30))
        .await
        .map_err(|e| ResourceError::Command(format!("cannot run gpg to read the key: {e}")))?;
    if !out.status.success() {
        return Err(ResourceError::Invalid(format!(
            "the key is not an OpenPGP public key: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fprs = Vec::new();
    let mut after_pub = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.first() {
            Some(&"pub") => after_pub = true,
            Some(&"fpr") if after_pub => {
                fprs.push(fields.get(9).unwrap_or(&"").to_string());
                after_pub = false;
            }
            _ => {}
        }
    }
    Ok(fprs)
}

impl AptRepo {
    fn keyring(&self, ext: &str) -> PathBuf {
        PathBuf::from(format!("/etc/apt/keyrings/{}.{ext}", self.name))
    }

    fn sources_path(&self) -> PathBuf {
        PathBuf::from(format!("/etc/apt/sources.list.d/{}.sources", self.name))
    }

    fn sources(&self, keyring: &Path) -> String {
        let mut s = format!(
            "# Managed by tend.\nTypes: deb\nURIs: {}\nSuites: {}\n",
            self.uris.join(" "),
            self.suites.join(" ")
        );
        if !self.components.is_empty() {
            s.push_str(&format!("Components: {}\n", self.components.join(" ")));
        }
        if !self.architectures.is_empty() {
            s.push_str(&format!(
                "Architectures: {}\n",
                self.architectures.join(" ")
            ));
        }
        s.push_str(&format!("Signed-By: {}\n", keyring.display()));
        s
    }

    async fn verify(&self, key: &[u8]) -> Result<(), ResourceError> {
        let Some(want) = &self.fingerprint else {
            return Ok(());
        };
        let found = fingerprints(key).await?;
        if !found.iter().any(|f| f == want) {
            return Err(ResourceError::Refused(format!(
                "the key's fingerprint is {}, expected {want}; nothing was written",
                if found.is_empty() {
                    "(none)".to_string()
                } else {
                    found.join(", ")
                }
            )));
        }
        Ok(())
    }

    /// The installed keyring, if any: (path, bytes).
    fn current_key(&self, host: &Probe) -> Result<Option<(PathBuf, Vec<u8>)>, ResourceError> {
        for ext in ["asc", "gpg"] {
            let p = self.keyring(ext);
            if let Some(b) = host.read(&p)? {
                return Ok(Some((p, b)));
            }
        }
        Ok(None)
    }

    /// The key the manifest wants, when it can be known without the network.
    fn desired_key(&self, host: &Probe) -> Result<Option<Vec<u8>>, ResourceError> {
        match &self.key {
            Key::Bytes(b) => Ok(Some(b.clone())),
            Key::HostPath(p) => host.read(p)?.map(Some).ok_or_else(|| {
                ResourceError::Missing(format!("key {} does not exist", host.real(p).display()))
            }),
            Key::Url(_) => Ok(None),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, ResourceError> {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args([
            "-fsSL",
            "--max-time",
            "60",
            "--proto",
            "=https,http,file",
            url,
        ]);
        let out = crate::process::capture(cmd, std::time::Duration::from_secs(90))
            .await
            .map_err(|e| {
                ResourceError::Command(format!("cannot run curl to fetch the key: {e}"))
            })?;
        if !out.status.success() {
            return Err(ResourceError::Command(format!(
                "cannot fetch the key from {url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }
}

#[async_trait]
impl Resource for AptRepo {
    fn paths(&self) -> Vec<PathBuf> {
        vec![
            self.keyring("asc"),
            self.keyring("gpg"),
            self.sources_path(),
        ]
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        let current = self.current_key(host)?;
        let keyring = match (&self.key, &current) {
            (Key::Url(url), Some((path, bytes))) => {
                // A key already installed with the right fingerprint: no need to fetch it.
                if self.verify(bytes).await.is_err() {
                    drift.push(Change::note(
                        "key",
                        format!(
                            "fetch the key from {url}: the installed one is not {}",
                            self.fingerprint.as_deref().unwrap_or("")
                        ),
                    ));
                }
                path.clone()
            }
            (Key::Url(url), None) => {
                drift.push(Change::note(
                    "key",
                    format!(
                        "fetch the key from {url} (fingerprint {})",
                        self.fingerprint.as_deref().unwrap_or("")
                    ),
                ));
                self.keyring("asc")
            }
            (_, _) => {
                let want = self.desired_key(host)?.unwrap_or_default();
                let path = self.keyring(if armored(&want) { "asc" } else { "gpg" });
                if current.as_ref().map(|(p, b)| (p, b)) != Some((&path, &want)) {
                    self.verify(&want).await?;
                    drift.push(Change::new(
                        "key",
                        current.as_ref().map(|(p, _)| p.display().to_string()),
                        Some(path.display().to_string()),
                    ));
                }
                path
            }
        };
        let want = self.sources(&keyring);
        let have = host
            .read(&self.sources_path())?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if have.as_deref() != Some(want.as_str()) {
            let p = self.sources_path().display().to_string();
            drift.push(
                Change::new("sources", have.as_ref().map(|_| p.clone()), Some(p.clone()))
                    .with_diff(&p, have.as_deref().unwrap_or(""), &want),
            );
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let readable = Attrs {
            mode: Some(0o644),
            uid: None,
            gid: None,
        };
        let keyring = if drift.touches("key") {
            let bytes = match &self.key {
                Key::Url(url) => self.fetch(url).await?,
                _ => self.desired_key(host)?.unwrap_or_default(),
            };
            // Nothing is written unless the key is the one the manifest names.
            self.verify(&bytes).await?;
            let path = self.keyring(if armored(&bytes) { "asc" } else { "gpg" });
            host.create_parents(&path)?;
            if let Some((old, _)) = self.current_key(host)? {
                applied.backups.extend(host.backup(&old)?);
                if old != path {
                    host.remove_file(&old)?;
                }
            }
            host.write_atomic(&path, &bytes, readable)?;
            path
        } else {
            self.current_key(host)?
                .map_or_else(|| self.keyring("asc"), |(p, _)| p)
        };
        let want = self.sources(&keyring);
        let sources = self.sources_path();
        if host.read(&sources)?.as_deref() != Some(want.as_bytes()) {
            applied.backups.extend(host.backup(&sources)?);
            host.create_parents(&sources)?;
            host.write_atomic(&sources, want.as_bytes(), readable)?;
        }
        apt::mark_sources_changed(host, &host.real(&sources))?;
        applied.notes.push(
            "package lists of this repository will be fetched before the next install".into(),
        );
        Ok(applied)
    }
}
