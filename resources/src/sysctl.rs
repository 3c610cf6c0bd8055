//! `sysctl`: a kernel parameter, set live through `/proc/sys` and kept across reboots in a file
//! of its own under `/etc/sysctl.d` (`60-tend-NAME.conf`, one per resource: no two resources
//! share a file, and removing one from the manifest leaves the others' files alone).
//!
//! The live value is compared as the kernel prints it, whitespace between fields normalised
//! (`net.ipv4.ip_local_port_range = "1024  65000"` is `1024\t65000`). Under `--root` only the
//! file is managed: the running kernel is not the image's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::attrs::Ownership;
use crate::change::{Change, Drift};
use crate::file::File;
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError, Value};

/// The `sysctl` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "sysctl",
    summary: "a kernel parameter, set live and persisted in /etc/sysctl.d",
    build,
    prune: None,
};

/// A `sysctl` resource, as its manifest table declared it.
#[derive(Debug)]
pub(crate) struct Sysctl {
    /// As written (`net.ipv4.ip_forward`).
    key: String,
    /// Its path under `/proc/sys` (`net/ipv4/ip_forward`).
    proc_path: PathBuf,
    value: String,
    /// The file in /etc/sysctl.d, when persisted.
    persist: Option<File>,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (key, key_span) = f.required_string("key")?;
    let key = key.value;
    // `a.b.c`, or `a/b/c` when a part holds a dot (an interface `eth0.100`), as sysctl(8) reads.
    let parts: Vec<&str> = if key.contains('/') {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    let part_ok = |p: &&str| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'@'))
    };
    if parts.len() < 2 || !parts.iter().all(part_ok) {
        return Err(
            SpecError::new(key_span, format!("{key:?} is not a sysctl key"))
                .help("a key is `a.b.c` (net.ipv4.ip_forward) or `a/b/c` when a part holds a dot"),
        );
    }
    let proc_path: PathBuf = parts.iter().collect();
    let value_span = f.span_of("value");
    let value = match f.peek("value") {
        Some(Value::Int(_) | Value::Octal(_)) => f
            .int("value")?
            .map(|(n, _)| n.to_string())
            .unwrap_or_default(),
        _ => f.required_string("value")?.0.value,
    };
    let value = normalise(&value);
    if value.is_empty() || value.contains(['\n', '\r']) {
        return Err(SpecError::new(
            value_span,
            "value is empty or holds a line break",
        ));
    }
    let persist = if f.bool("persist")?.unwrap_or(true) {
        // `sysctl.forward` names its file `forward`, a `for_each` instance (`forward["lan"]`)
        // `forward-lan`, one in a module (`module.base.sysctl.forward`) `base-forward`.
        let a = f.address();
        let name: String = match a.strip_prefix("sysctl.") {
            Some(n) => n.to_string(),
            None => a
                .strip_prefix("module.")
                .unwrap_or(a)
                .replacen(".sysctl.", "-", 1),
        }
        .replace("[\"", "-")
        .replace("\"]", "")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
        let dotted = parts.join(".");
        Some(File::with_content(
            PathBuf::from(format!("/etc/sysctl.d/60-tend-{name}.conf")),
            format!("# Managed by tend ({}).\n{dotted} = {value}\n", f.address()).into_bytes(),
            Ownership::default(),
            false,
        ))
    } else {
        None
    };
    Ok(Arc::new(Sysctl {
        key,
        proc_path,
        value,
        persist,
    }))
}

/// Fields separated by single spaces, as values are compared.
fn normalise(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Sysctl {
    /// Whether the live value is this host's kernel's to manage (not under `--root`).
    fn live(&self, host: &Probe) -> bool {
        host.root() == Path::new("/")
    }

    fn read_live(&self) -> Result<String, ResourceError> {
        let real = Path::new("/proc/sys").join(&self.proc_path);
        // The running kernel's value (only read when `--root` is the live machine).
        #[allow(clippy::disallowed_methods)]
        let read = std::fs::read_to_string(&real);
        match read {
            Ok(s) => Ok(normalise(&s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ResourceError::Failed(format!(
                    "the running kernel has no parameter {} ({} does not exist)",
                    self.key,
                    real.display()
                )))
            }
            Err(e) => Err(ResourceError::Failed(format!(
                "cannot read {}: {e}",
                real.display()
            ))),
        }
    }
}

#[async_trait]
impl Resource for Sysctl {
    fn paths(&self) -> Vec<PathBuf> {
        self.persist.iter().flat_map(|f| f.paths()).collect()
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = match &self.persist {
            Some(f) => f.check(host).await?,
            None => Drift::none(),
        };
        for c in &mut drift.changes {
            c.field = c.field.clone().of("file");
        }
        if self.live(host) {
            let now = self.read_live()?;
            if now != self.value {
                drift.push(Change::new("value", Some(now), Some(self.value.clone())));
            }
        } else {
            drift.observed.insert(
                "live".into(),
                serde_json::Value::String("not read under --root".into()),
            );
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        if let Some(f) = &self.persist {
            let mut own = drift.clone();
            own.changes.retain(|c| c.field.within("file").is_some());
            for c in &mut own.changes {
                if let Some(f) = c.field.within("file") {
                    c.field = f.clone();
                }
            }
            if !own.changes.is_empty() {
                applied = f.apply(host, &own).await?;
            }
        }
        if drift.touches("value") {
            host.set_sysctl(&self.proc_path, &self.value)
                .map_err(|e| ResourceError::Failed(format!("cannot set {}: {e}", self.key)))?;
        }
        Ok(applied)
    }
}
