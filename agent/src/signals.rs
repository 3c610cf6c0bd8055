//! The stop of an unattended run: SIGTERM (systemd), SIGINT (Ctrl-C), SIGHUP.

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use tokio::signal::unix::{signal, SignalKind};

/// The stop signals held (blocked) on this thread while the run cannot listen yet: the manifest
/// loads before the runtime that listens exists (libgit2 must start while the process has one
/// thread), and a stop in that time must still be a graceful one. Threads started while they are
/// held inherit the block and never take them. Handed over ([`Held::hand_over`]), they go to
/// the listener now installed; dropped without one (the run could not start), a pending stop is
/// taken here. Children start with an empty mask (std resets it), so a held signal never
/// reaches into what tend runs.
pub(crate) struct Held {
    old: Option<SigSet>,
    /// Whether a listener now takes what is pending (else it is taken here: see `Drop`).
    handed_over: bool,
}

/// Hold SIGTERM, SIGINT and SIGHUP on this thread until the returned guard is dropped.
pub(crate) fn hold() -> Held {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    let mut old = SigSet::empty();
    Held {
        old: pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .ok()
            .map(|()| old),
        handed_over: false,
    }
}

impl Held {
    /// Release the signals to the listener now installed ([`listen`]).
    pub(crate) fn hand_over(mut self) {
        self.handed_over = true;
    }
}

impl Drop for Held {
    /// Released with no listener (the run ends before it could listen: a manifest that does not
    /// load): a stop that came meanwhile is taken here and said, rather than left to kill the
    /// process on release, before the run has recorded why it did not start.
    fn drop(&mut self) {
        let Some(old) = self.old.take() else {
            return;
        };
        if !self.handed_over {
            let pending = pending_stops();
            let mut stops = SigSet::empty();
            for &s in &pending {
                stops.add(s);
            }
            for _ in &pending {
                // Pending, so this returns at once.
                if let Ok(s) = stops.wait() {
                    eprintln!("tend: {s} while the run was starting: it stops here");
                    tend_resources::process::request_stop();
                }
            }
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}

/// The stop signals pending for this process or thread (`/proc/self/status`: `ShdPnd`, `SigPnd`).
fn pending_stops() -> Vec<Signal> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let mut mask = 0u64;
    for line in status.lines() {
        if let Some(hex) = line
            .strip_prefix("ShdPnd:")
            .or_else(|| line.strip_prefix("SigPnd:"))
        {
            mask |= u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
        }
    }
    [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]
        .into_iter()
        .filter(|s| mask & (1u64 << (*s as i32 - 1)) != 0)
        .collect()
}

/// The stop signals, listened for: made inside the runtime (its context entered), before the
/// signals are released, so that one held meanwhile is taken by tend's handler.
pub(crate) struct Listening {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// Start listening; `None` (warned) when the handlers cannot be installed.
pub(crate) fn listen() -> Option<Listening> {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(int), Ok(hup)) => Some(Listening { term, int, hup }),
        _ => {
            tracing::warn!("cannot listen for signals: a stop will end the run at once");
            None
        }
    }
}

/// Listen for SIGTERM (systemd's stop), SIGINT (Ctrl-C) and SIGHUP: the first asks the run to
/// stop gracefully, the second ends it at once.
pub(crate) async fn watch_signals(listening: Option<Listening>) {
    let Some(Listening {
        mut term,
        mut int,
        mut hup,
    }) = listening
    else {
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    eprintln!(
        "tend: {name}: finishing the resources in flight (dpkg and apt are waited for), ending \
         the commands it started, starting nothing new; a second signal stops at once"
    );
    tend_resources::process::request_stop();
    let again = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    eprintln!("tend: second signal ({again}): stopping now; this run's report is not written");
    tend_resources::process::kill_all();
    std::process::exit(4);
}
