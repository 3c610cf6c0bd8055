//! The state directory (default `/var/lib/tend`, mode 0700): the run lock, `last-run.json`,
//! secrets and backups.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Create `dir` (and parents) with mode 0700, or tighten an existing one to 0700.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
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
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An exclusive lock on `STATE/lock`, released when dropped (or when the process dies).
pub struct RunLock {
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the lock file {}: {source}", path.display())]
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
    match fs::read(&path) {
        Ok(k) if k.len() == 32 => return Ok(Some(k)),
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} is not a 32-byte key",
                path.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
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
