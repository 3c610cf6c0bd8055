//! Running a command to completion with its output captured: both pipes are read at once (a
//! command that fills stderr must not block on it), within a time limit after which the command
//! is killed. Every process tend starts goes through [`capture`] or [`capture_protected`].
//!
//! Each child runs in a process group of its own, registered here, so that a stop (SIGTERM from
//! systemd, Ctrl-C) can end the whole group — `sh -c 'sleep 8; touch x'` included, whose `sleep`
//! would otherwise be re-parented to PID 1 and go on changing the host after tend let go of its
//! lock. A protected child (dpkg and apt mid-transaction) is never signalled: the stop waits for
//! it, within its own time limit.

// This module is the process seam: the one place that spawns.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// How a command ended, and what it printed.
pub struct Captured {
    /// How it ended.
    pub status: std::process::ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

#[derive(Debug)]
/// Why a command did not run to its end.
pub enum RunError {
    /// It could not be started (not found, not executable).
    Spawn(std::io::Error),
    /// It ran past the limit and was killed.
    Timeout,
    /// Waiting for it failed.
    Wait(std::io::Error),
    /// tend was asked to stop, and ended it (with its process group).
    Interrupted,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "cannot start it: {e}"),
            RunError::Timeout => f.write_str("it ran past its time limit and was killed"),
            RunError::Wait(e) => write!(f, "waiting for it failed: {e}"),
            RunError::Interrupted => f.write_str("tend was asked to stop"),
        }
    }
}

/// Set once when tend is asked to stop (first SIGTERM/SIGINT/SIGHUP).
static STOP: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Process groups of the children alive now: pgid → protected.
static GROUPS: LazyLock<Mutex<HashMap<i32, bool>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// How long a stopped child gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Ask every running command (but protected ones) to end, and every resource not yet started to
/// stay so. Idempotent.
pub fn request_stop() {
    STOP.send_replace(true);
}

/// Whether a stop was requested: resources not yet started must not start.
pub fn stopping() -> bool {
    *STOP.borrow()
}

/// SIGKILL every process group tend started that is still alive, protected or not: for tend's own
/// exit (a second signal, the end of `main`), so that no child outlives it.
pub fn kill_all() {
    let groups: Vec<i32> = GROUPS
        .lock()
        .map(|g| g.keys().copied().collect())
        .unwrap_or_default();
    for pgid in groups {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn signal_group(pgid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
}

/// Keeps a child's group registered while it runs. Dropped before the child was reaped (a time
/// limit, a stop, the future cancelled), it kills the whole group: nothing of it outlives the
/// resource that started it.
struct Registered {
    pgid: i32,
    reaped: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut g) = GROUPS.lock() {
            g.remove(&self.pgid);
        }
        if !self.reaped {
            signal_group(self.pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The child is killed if tend dies without stopping it (SIGKILL, a crash): `PR_SET_PDEATHSIG`.
/// The signal follows the *thread* that spawned the child; children are spawned from the
/// runtime's worker threads or the thread that blocks on it, which live as long as the run, and
/// every child is waited for within it. Not for a protected child (dpkg mid-transaction must
/// finish even then).
fn die_with_tend(c: &mut tokio::process::Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec, and makes two system calls
    // (prctl, getppid) that are async-signal-safe; it allocates nothing and takes no lock.
    #[allow(unsafe_code)]
    unsafe {
        c.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // tend died between fork and prctl: the signal will never come.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("tend exited while starting it"));
            }
            Ok(())
        });
    }
}

/// Run `c` (stdin from /dev/null) in its own process group and collect its output; a stop ends
/// it (SIGTERM to the group, SIGKILL after a grace period).
pub async fn capture(c: tokio::process::Command, timeout: Duration) -> Result<Captured, RunError> {
    run(c, timeout, false, None).await
}

/// Like [`capture`], with `input` written to the command's stdin (then closed): for what must
/// not appear in its arguments, where any local user can read them (a password hash).
pub async fn capture_with_input(
    c: tokio::process::Command,
    input: Vec<u8>,
    timeout: Duration,
) -> Result<Captured, RunError> {
    run(c, timeout, false, Some(input)).await
}

/// Like [`capture`], but a stop waits for the command instead of ending it (dpkg, apt-get: a
/// package manager killed mid-transaction leaves the host half-configured).
pub async fn capture_protected(
    c: tokio::process::Command,
    timeout: Duration,
) -> Result<Captured, RunError> {
    run(c, timeout, true, None).await
}

async fn run(
    mut c: tokio::process::Command,
    timeout: Duration,
    protected: bool,
    input: Option<Vec<u8>>,
) -> Result<Captured, RunError> {
    if stopping() {
        return Err(RunError::Interrupted);
    }
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    if !protected {
        die_with_tend(&mut c);
    }
    let mut child = c.spawn().map_err(RunError::Spawn)?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    if let Ok(mut g) = GROUPS.lock() {
        g.insert(pgid, protected);
    }
    let mut registered = Registered {
        pgid,
        reaped: false,
    };
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let stdin = child.stdin.take();
    let collect = async {
        if let (Some(mut w), Some(bytes)) = (stdin, input) {
            use tokio::io::AsyncWriteExt;
            // A command that exits without reading is its own failure, reported by its status.
            let _ = w.write_all(&bytes).await;
            drop(w);
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut a).await;
            }
        };
        let read_err = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut b).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (a, b, status)
    };
    tokio::pin!(collect);
    let mut stop = STOP.subscribe();
    let stopped = async {
        if protected {
            std::future::pending::<()>().await;
        }
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        r = tokio::time::timeout(timeout, &mut collect) => match r {
            Err(_) => Err(RunError::Timeout),
            Ok((stdout, stderr, status)) => {
                registered.reaped = status.is_ok();
                Ok(Captured {
                    status: status.map_err(RunError::Wait)?,
                    stdout,
                    stderr,
                })
            }
        },
        () = stopped => {
            signal_group(pgid, nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(GRACE, &mut collect).await.is_err() {
                signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = tokio::time::timeout(GRACE, &mut collect).await;
            }
            Err(RunError::Interrupted)
        }
    }
}

/// The CPUs this process may use (its affinity and cgroup quota), read once: std reads three
/// cgroup files each time it is asked, and a run asks for its jobs, its facts and git's status.
pub fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
