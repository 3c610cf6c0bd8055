//! `authorized_keys`: the SSH keys of one user, in `~/.ssh/authorized_keys` with the modes and
//! owner sshd's `StrictModes` wants (`~/.ssh` 0700, the file 0600, both the user's).
//!
//! The user owns `~` and `~/.ssh`, so nothing there is followed: a symlink at `~/.ssh` or at the
//! file is a failure naming it (a planted `~/.ssh -> /root/.ssh` must not make root write root's
//! keys), and every write goes through the directory's fd (see `host`). Without `exclusive`,
//! every line tend does not manage — other keys, comments, blank lines — stays byte for byte.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use ssh_key::authorized_keys::Entry;

use super::db;
use crate::change::{Change, Drift};
use crate::host::{fmt_mode, mode_of, Attrs, Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `authorized_keys` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "authorized_keys",
    summary: "the SSH keys of one user in ~/.ssh/authorized_keys (added, or exactly these)",
    build,
    prune: None,
};

/// One key the manifest gives: the line as written, and what identifies the key.
#[derive(Debug)]
struct Key {
    line: String,
    data: ssh_key::public::KeyData,
}

/// An `authorized_keys` resource, as its manifest table declared it.
#[derive(Debug)]
pub(crate) struct AuthorizedKeys {
    user: String,
    keys: Vec<Key>,
    exclusive: bool,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (user, span) = f.required_string("user")?;
    super::check_name(&span, "user", &user.value)?;
    let exclusive = f.bool("exclusive")?.unwrap_or(false);
    let mut keys = Vec::new();
    for (t, span) in f.strings("keys")?.unwrap_or_default() {
        let line = t.value.trim().to_string();
        if line.contains(['\n', '\r']) {
            return Err(SpecError::new(span, "a key holds a line break"));
        }
        let entry = Entry::from_str(&line).map_err(|e| {
            let shown: String = line.chars().take(40).collect();
            SpecError::new(
                span.clone(),
                format!("{shown:?}… is not an authorized_keys line"),
            )
            .help(format!(
                "OPTIONS? TYPE BASE64 COMMENT? as ssh-keygen writes it ({e})"
            ))
        })?;
        let data = entry.public_key().key_data().clone();
        if keys.iter().any(|k: &Key| k.data == data) {
            return Err(SpecError::new(span, "the same key is listed twice"));
        }
        keys.push(Key { line, data });
    }
    if keys.is_empty() && !exclusive {
        return Err(SpecError::new(
            f.table_span(),
            format!("{} lists no keys", f.address()),
        )
        .help("keys = [\"ssh-ed25519 AAAA… alice@laptop\"]; exclusive = true with no keys removes them all"));
    }
    Ok(Arc::new(AuthorizedKeys {
        user: user.value,
        keys,
        exclusive,
    }))
}

/// The key a line of the file holds, if it is one.
fn key_of(line: &str) -> Option<ssh_key::public::KeyData> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    Entry::from_str(l)
        .ok()
        .map(|e| e.public_key().key_data().clone())
}

impl AuthorizedKeys {
    /// The file as it must be, from what it is.
    fn wanted(&self, old: &str) -> String {
        let mut out = String::new();
        let mut placed = vec![false; self.keys.len()];
        for raw in old.split_inclusive('\n') {
            let body = raw.trim_end_matches(['\n', '\r']);
            match key_of(body) {
                Some(data) => match self.keys.iter().position(|k| k.data == data) {
                    // A listed key keeps its place; its line becomes the manifest's (options,
                    // comment), once.
                    Some(i) if !placed[i] => {
                        placed[i] = true;
                        out.push_str(&self.keys[i].line);
                        out.push_str(&raw[body.len()..]);
                        if !raw.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                    Some(_) => {}
                    None if self.exclusive => {}
                    None => out.push_str(raw),
                },
                None => {
                    out.push_str(raw);
                }
            }
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for (k, done) in self.keys.iter().zip(placed) {
            if !done {
                out.push_str(&k.line);
                out.push('\n');
            }
        }
        out
    }

    /// The user's ids and `~/.ssh`, from the root's passwd.
    fn account(&self, host: &Probe) -> Result<(u32, u32, PathBuf), ResourceError> {
        let u = db::passwd(host)?
            .into_iter()
            .find(|u| u.name == self.user)
            .ok_or_else(|| ResourceError::Missing(format!("user {} does not exist", self.user)))?;
        let home = PathBuf::from(&u.home);
        if !home.is_absolute() {
            return Err(ResourceError::Invalid(format!(
                "user {}'s home {:?} is not an absolute path",
                self.user, u.home
            )));
        }
        Ok((u.uid, u.gid, home.join(".ssh")))
    }
}

/// A symlink where tend must find a directory or a file it writes as root: refused, named.
fn no_symlink(
    host: &Probe,
    path: &Path,
    meta: Option<&std::fs::Metadata>,
) -> Result<(), ResourceError> {
    if meta.is_some_and(|m| m.file_type().is_symlink()) {
        return Err(ResourceError::Refused(format!(
            "{} is a symlink; tend does not follow links in a user's ~/.ssh (remove it)",
            host.real(path).display()
        )));
    }
    Ok(())
}

#[async_trait]
impl Resource for AuthorizedKeys {
    fn needs(&self) -> Vec<String> {
        vec![format!("user:{}", self.user)]
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        let (uid, gid, dir) = self.account(host)?;
        let file = dir.join("authorized_keys");
        let dmeta = host.metadata(&dir)?;
        no_symlink(host, &dir, dmeta.as_ref())?;
        match &dmeta {
            None => drift.push(
                Change::created("state", "present")
                    .described(format!("create {} (mode 0700)", dir.display())),
            ),
            Some(m) if !m.is_dir() => {
                return Err(ResourceError::Refused(format!(
                    "{} is not a directory",
                    host.real(&dir).display()
                )))
            }
            Some(m) => {
                if mode_of(m) != 0o700 {
                    drift.push(Change::new(
                        "ssh_dir.mode",
                        Some(fmt_mode(mode_of(m))),
                        Some(fmt_mode(0o700)),
                    ));
                }
                if (m.uid(), m.gid()) != (uid, gid) {
                    drift.push(Change::new(
                        "ssh_dir.owner",
                        Some(format!("{}:{}", m.uid(), m.gid())),
                        Some(format!("{uid}:{gid}")),
                    ));
                }
            }
        }
        let fmeta = if dmeta.is_some() {
            host.metadata(&file)?
        } else {
            None
        };
        no_symlink(host, &file, fmeta.as_ref())?;
        let old = match &fmeta {
            Some(m) if !m.is_file() => {
                return Err(ResourceError::Refused(format!(
                    "{} is not a regular file",
                    host.real(&file).display()
                )))
            }
            Some(_) => host.read_limited(&file, 1 << 20)?.unwrap_or_default(),
            None => Vec::new(),
        };
        let old = String::from_utf8_lossy(&old).into_owned();
        let new = self.wanted(&old);
        if new != old || fmeta.is_none() {
            drift.push(
                Change::new(
                    "keys",
                    Some(format!("{} lines", old.lines().count())),
                    Some(format!("{} lines", new.lines().count())),
                )
                .described("keys")
                .with_diff(&file.to_string_lossy(), &old, &new),
            );
        }
        if let Some(m) = &fmeta {
            if mode_of(m) != 0o600 || (m.uid(), m.gid()) != (uid, gid) {
                drift.push(Change::new(
                    "file.attrs",
                    Some(format!("{} {}:{}", fmt_mode(mode_of(m)), m.uid(), m.gid())),
                    Some(format!("0600 {uid}:{gid}")),
                ));
            }
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let (uid, gid, dir) = self.account(host.probe())?;
        let file = dir.join("authorized_keys");
        let own = Attrs {
            mode: Some(0o700),
            uid: Some(uid),
            gid: Some(gid),
        };
        let dmeta = host.metadata(&dir)?;
        no_symlink(host.probe(), &dir, dmeta.as_ref())?;
        match dmeta {
            None => host.create_dir(&dir, own)?,
            Some(_) => host.set_attrs(&dir, Some(uid), Some(gid), Some(0o700))?,
        }
        let fmeta = host.metadata(&file)?;
        no_symlink(host.probe(), &file, fmeta.as_ref())?;
        let old = match fmeta {
            Some(_) => host.read_limited(&file, 1 << 20)?.unwrap_or_default(),
            None => Vec::new(),
        };
        let old = String::from_utf8_lossy(&old).into_owned();
        let new = self.wanted(&old);
        let attrs = Attrs {
            mode: Some(0o600),
            uid: Some(uid),
            gid: Some(gid),
        };
        if new != old || host.metadata(&file)?.is_none() {
            applied
                .backups
                .extend(host.replace_file(&file, new.as_bytes(), attrs, 0o600)?);
        } else {
            host.set_attrs(&file, Some(uid), Some(gid), Some(0o600))?;
        }
        Ok(applied)
    }
}
