//! The fetch runs in a child process with a budget the server cannot talk its way past. Until
//! its commit verifies, the policy server is a stranger: the byte and object budgets of
//! [`super::fetch`] count what crosses the wire, but a delta of a few kilobytes can describe an
//! object of gigabytes, which libgit2 inflates (to hash it) before anything checks a signature.
//! The child's memory is bounded (`RLIMIT_DATA`: an allocation past it fails, and libgit2 says
//! "out of memory"), so is its wall-clock time (a server that drips one byte per read timeout
//! never trips the per-read timeout), and it dies with tend (`PR_SET_PDEATHSIG`). What it
//! fetched is in the cache on disk; the parent reads the result from a pipe.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use git2::Oid;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::fetch::{self, Fetched, Source};

/// Memory the fetch may allocate: a policy tree is at most 256 MiB in all, and indexing one
/// object holds its base, its delta and its result.
pub(super) const MEMORY: u64 = 768 << 20;
/// How long one fetch may take, whatever the server does.
pub(super) const WALL: Duration = Duration::from_secs(600);

/// Fetch into the cache at `cache` within [`MEMORY`] and `wall`. With more than one thread
/// (a library caller, a test harness) a fork is unsafe: the fetch runs here, within the
/// wire budgets only.
pub(super) fn fetch(cache: &Path, src: &Source<'_>, wall: Duration) -> Result<Fetched, String> {
    if !tend_resources::git::tls::single_threaded() {
        let repo = fetch::open(cache)?;
        return fetch::fetch(&repo, src);
    }
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let parent = nix::unistd::getpid();
    // SAFETY: this process has one thread (checked above), so the child inherits no lock held
    // by another thread; it uses only what this process had set up, then leaves by `_exit`.
    #[allow(unsafe_code)]
    let forked = unsafe { fork() }.map_err(|e| format!("cannot start the fetch: {e}"))?;
    match forked {
        ForkResult::Child => {
            drop(read_end);
            let answer = child(cache, src, parent);
            let mut out = std::fs::File::from(write_end);
            let _ = out.write_all(answer.as_bytes());
            drop(out);
            // SAFETY: ends the child at once: no destructor or atexit handler of the parent's
            // state (libgit2's shutdown, the runtime) runs twice.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let answer = wait_for(child, read_end, wall);
            parse(&answer?)
        }
    }
}

/// In the child: the budget set, the fetch made, its result as one line.
fn child(cache: &Path, src: &Source<'_>, parent: Pid) -> String {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if nix::unistd::getppid() != parent {
        return "err tend exited while the fetch started".into();
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_DATA, MEMORY, MEMORY) {
        return format!("err cannot bound the fetch's memory: {e}");
    }
    let result = fetch::open(cache).and_then(|repo| fetch::fetch(&repo, src));
    match result {
        Ok(f) => format!("ok {} {}", f.commit, f.bytes),
        Err(e) if e.contains("out of memory") || e.contains(fetch::UNINDEXED) => format!(
            "err cannot fetch {} from {}: an object the server sent inflates past the fetch's \
             memory budget ({} MiB); nothing it sent was used",
            src.reference,
            tend_resources::git::redact_url(src.url),
            MEMORY >> 20
        ),
        Err(e) => format!("err {e}"),
    }
}

/// The child's answer, or why there is none (it ran past `wall`, it died).
fn wait_for(child: Pid, read_end: OwnedFd, wall: Duration) -> Result<String, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut file = std::fs::File::from(read_end);
    let timed_out = loop {
        let left = wall.saturating_sub(started.elapsed());
        if left.is_zero() {
            break true;
        }
        let ms = u16::try_from(left.as_millis().min(10_000)).unwrap_or(10_000);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the fetch: {e}")),
            Ok(_) => {}
        }
        let mut chunk = [0u8; 4096];
        match file.read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) if answer.len() < 64 << 10 => answer.extend_from_slice(&chunk[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("waiting for the fetch: {e}")),
        }
    };
    if timed_out {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
    }
    let status = waitpid(child, None);
    if timed_out {
        return Err(format!(
            "the fetch ran past {} s and was stopped (a server that answers too slowly to finish)",
            wall.as_secs()
        ));
    }
    match status {
        Ok(WaitStatus::Exited(_, 0)) => Ok(String::from_utf8_lossy(&answer).into_owned()),
        Ok(WaitStatus::Signaled(_, sig, _)) => Err(format!(
            "the fetch was killed by {sig} (a memory or time budget, or tend stopping)"
        )),
        Ok(other) => Err(format!("the fetch ended abnormally: {other:?}")),
        Err(e) => Err(format!("waiting for the fetch: {e}")),
    }
}

fn parse(answer: &str) -> Result<Fetched, String> {
    if let Some(e) = answer.strip_prefix("err ") {
        return Err(e.to_string());
    }
    let mut parts = answer.strip_prefix("ok ").unwrap_or("").split(' ');
    let commit = parts.next().and_then(|c| Oid::from_str(c).ok());
    let bytes = parts.next().and_then(|b| b.trim().parse().ok());
    match (commit, bytes) {
        (Some(commit), Some(bytes)) => Ok(Fetched { commit, bytes }),
        _ => Err("the fetch ended without an answer".into()),
    }
}
