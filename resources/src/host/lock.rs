//! The run lock, and with it the write capability: a [`Mutate`] — the only handle that can
//! change the host — is minted by a held [`RunLock`] alone ([`RunLock::mutate`]). Apply and
//! restore take the lock; plan never does, so plan holds nothing that can write.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::{Mutate, Probe};

/// An exclusive lock on `STATE/lock`, released when dropped (or when the process dies).
pub struct RunLock {
    _lock: Flock<File>,
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunLock")
    }
}

/// Why the run lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be opened (or its directory made).
    #[error("cannot open the lock file {} in the state directory: {source}", path.display())]
    Open {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// Another run holds it: who, and how long this one waited.
    #[error("another tend run holds the lock {} ({holder}); waited {waited}s (raise --lock-wait to wait longer)", path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Who holds it (pid and start time), as it wrote.
        holder: String,
        /// Seconds this run waited.
        waited: u64,
    },
}

impl RunLock {
    /// Take the lock in `state_dir` (which the caller has made private), waiting up to `wait`
    /// for another run to release it.
    pub fn acquire(state_dir: &Path, wait: Duration) -> Result<RunLock, LockError> {
        let path = state_dir.join("lock");
        let open = || {
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

impl RunLock {
    /// The handle that writes the host, for the run that holds this lock.
    pub fn mutate(&self, probe: Probe) -> Mutate {
        Mutate::new(probe)
    }
}

/// The report or metrics file an operator named (`--report`, `--metrics`): the one file a plan
/// writes, through the same no-follow atomic write as every file, and nothing else — it is no
/// [`Mutate`].
#[derive(Debug)]
pub struct OutputWriter {
    host: Mutate,
}

impl OutputWriter {
    /// A writer for output files (paths on the machine tend runs on, not under `--root`).
    pub fn new() -> OutputWriter {
        OutputWriter {
            host: Mutate::new(Probe::new("/", "/var/lib/tend")),
        }
    }

    /// Replace `path` with `bytes` (atomic, no symlink followed), with `attrs`.
    pub fn write(&self, path: &Path, bytes: &[u8], attrs: super::Attrs) -> super::HostResult<()> {
        self.host.write_atomic(path, bytes, attrs)
    }
}

impl Default for OutputWriter {
    fn default() -> Self {
        OutputWriter::new()
    }
}
