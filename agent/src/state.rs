//! The state directory (default `/var/lib/tend`, mode 0700): the run lock, `last-run.json`,
//! secrets and backups.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Create `dir` (and parents) with mode 0700, or check that an existing one can be trusted:
/// a real directory (not a symlink), owned by the running user (root), that nobody else can
/// write. Anything else is refused before tend reads a secret, a journal or a lock from it, or
/// changes its mode.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        // Parents get the usual 0755 (under --root they are /var, /var/lib); only the state
        // directory itself is private.
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    check_trusted(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        // Ours and writable by nobody else (checked): only its readability is loosened.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Refuse a state directory whose path goes through a symlink inside the root (under `--root`, an
/// image's `var -> /etc` would otherwise put secrets and backups on the machine preparing it).
/// Any link on the way is refused, with what to do instead.
pub fn check_path(root: &Path, dir: &Path) -> io::Result<()> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    // Top down, each part that exists must be a real directory: what is missing is created
    // later, and a link above it would send that creation (and the secrets) elsewhere.
    // The directory itself is `check_trusted`'s: its parents here.
    let Some(parents) = rel.parent() else {
        return Ok(());
    };
    let mut at = root.to_path_buf();
    for c in parents.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the state directory {} goes through a symlink ({}); name the real path \
                         with --state-dir",
                        dir.display(),
                        at.display()
                    ),
                ))
            }
            // A parent another user can change is a parent they can swap for a link between
            // this check and any later use by path: refused, as a link is.
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                let me = nix::unistd::geteuid().as_raw();
                let sticky = m.mode() & 0o1000 != 0;
                let who = if m.uid() != 0 && m.uid() != me {
                    Some(format!("owned by uid {}", m.uid()))
                } else if !sticky && m.mode() & 0o002 != 0 {
                    Some("writable by everyone".to_string())
                } else if !sticky && m.mode() & 0o020 != 0 && m.gid() != 0 {
                    Some(format!("writable by group {}", m.gid()))
                } else {
                    None
                };
                if let Some(who) = who {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "the state directory {} lies in {}, which is {who}: another user could \
                             swap it for a link; name a directory only root can change with --state-dir",
                            dir.display(),
                            at.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Refuse a state directory another user could have prepared: see [`ensure_private_dir`]. A
/// missing one is fine (nothing to trust yet).
pub fn check_trusted(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let me = nix::unistd::geteuid().as_raw();
    let problem = if meta.file_type().is_symlink() {
        Some("is a symlink".to_string())
    } else if !meta.is_dir() {
        Some("is not a directory".to_string())
    } else if meta.uid() != me {
        Some(format!("is owned by uid {}, not uid {me}", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "can be written by its group or others (mode {:04o})",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the state directory {} {p}; tend keeps secrets, backups, its lock and its \
                 journal there and trusts it only when it is a real directory that it owns and \
                 nobody else can write. Check what is in it, then fix it (chown -R root:root, \
                 chmod 0700) or move it away and let tend make a new one",
                dir.display()
            ),
        )),
    }
}

/// An exclusive lock on `STATE/lock`, released when dropped (or when the process dies).
pub struct RunLock {
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the lock file {} in the state directory: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("another tend run holds the lock {} ({holder}); waited {waited}s (raise --lock-wait to wait longer)", path.display())]
    Held {
        path: PathBuf,
        holder: String,
        waited: u64,
    },
}

impl RunLock {
    pub fn acquire(state_dir: &Path, wait: Duration) -> Result<RunLock, LockError> {
        let path = state_dir.join("lock");
        let open = || {
            ensure_private_dir(state_dir)?;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                // A symlink planted as the lock must not make root truncate its target.
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(&path)
        };
        let mut file = open().map_err(|source| LockError::Open {
            path: path.clone(),
            source,
        })?;
        let start = Instant::now();
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    // Record who holds it, for the message a waiting run prints.
                    let who = format!(
                        "pid {}, started {}",
                        std::process::id(),
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    );
                    let _ = lock
                        .set_len(0)
                        .and_then(|()| lock.rewind())
                        .and_then(|()| lock.write_all(who.as_bytes()));
                    return Ok(RunLock { _lock: lock });
                }
                Err((f, _)) => {
                    if start.elapsed() >= wait {
                        let mut holder = String::new();
                        let mut f = f;
                        let _ = f.rewind().and_then(|()| f.read_to_string(&mut holder));
                        if holder.is_empty() {
                            holder = "holder unknown".into();
                        }
                        return Err(LockError::Held {
                            path,
                            holder,
                            waited: wait.as_secs(),
                        });
                    }
                    file = f;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// The host's key for secret fingerprints (`STATE/host.key`, 32 random bytes, mode 0600).
/// `create` (apply) makes it when missing; otherwise a missing key gives `None`.
pub fn host_key(state_dir: &Path, create: bool) -> io::Result<Option<Vec<u8>>> {
    let path = state_dir.join("host.key");
    check_trusted(state_dir)?;
    match tend_resources::host::read_private_file(&path)
        .map_err(|e| io::Error::other(e.to_string()))?
    {
        Some(k) if k.len() == 32 => return Ok(Some(k)),
        Some(_) => {
            return Err(io::Error::other(format!(
                "{} is not a 32-byte key",
                path.display()
            )))
        }
        None => {}
    }
    if !create {
        return Ok(None);
    }
    let key: [u8; 32] = rand::random();
    write_private(state_dir, "host.key", &key)?;
    Ok(Some(key.to_vec()))
}

/// Write `last-run.json` atomically, mode 0600.
pub fn write_last_run(state_dir: &Path, json: &str) -> io::Result<()> {
    write_private(state_dir, "last-run.json", json.as_bytes())
}

/// Write `DIR/name` atomically with mode 0600, `DIR` made private (0700) first: every file tend
/// keeps for itself (reports, journal, keys, secrets) goes through here.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    ensure_private_dir(dir)?;
    tend_resources::host::write_private_file(&dir.join(name), bytes)
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = RunLock::acquire(dir.path(), Duration::ZERO).expect("first");
        let err = RunLock::acquire(dir.path(), Duration::from_millis(200))
            .err()
            .expect("second must fail");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        let mode = fs::metadata(dir.path()).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
