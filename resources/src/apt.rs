//! Running apt: `apt-get` (chrooted under `--root`) with a controlled environment, a bounded
//! wait for the dpkg lock, and apt's own error lines in failures; and the "lists need an
//! update" marker that `apt_repo` leaves for `package`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::host::{Mutate, Probe};
use crate::resource::ResourceError;

/// How long apt may wait for another process's dpkg lock.
pub(crate) const LOCK_TIMEOUT_SECS: u64 = 600;
/// How long one apt-get may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// `STATE/apt-update-needed`: sources files whose lists must be fetched before the next install.
pub(crate) fn marker(host: &Probe) -> PathBuf {
    host.state_dir().join("apt-update-needed")
}

/// Source lists an interrupted `apt_repo` apply left pending (apt-get update still owed).
pub(crate) fn pending_sources(host: &Probe) -> Vec<String> {
    // tend's own record in the state directory: trusted only as tend's private file.
    crate::host::read_private_file(&marker(host))
        .ok()
        .flatten()
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Record that `sources` (a host path) changed: its lists must be fetched.
pub(crate) fn mark_sources_changed(host: &Mutate, sources: &Path) -> Result<(), ResourceError> {
    let mut pending = pending_sources(host);
    let s = sources.display().to_string();
    if !pending.contains(&s) {
        pending.push(s);
    }
    host.write_state_file(
        &marker(host),
        format!("{}\n", pending.join("\n")).as_bytes(),
    )?;
    Ok(())
}

/// Forget the pending marker once apt-get update has run.
pub(crate) fn clear_marker(host: &Mutate) {
    let _ = host.remove_state_file(&marker(host));
}

/// Newest modification time of the package lists, if any.
pub(crate) fn lists_age(host: &Probe) -> Option<Duration> {
    let dir = Path::new("/var/lib/apt/lists");
    let newest = host
        .read_dir(dir)
        .ok()??
        .into_iter()
        .filter(|n| {
            let n = n.to_string_lossy();
            n.ends_with("Packages") || n.ends_with("Release")
        })
        .filter_map(|n| host.metadata(&dir.join(n)).ok()??.modified().ok())
        .max()?;
    newest.elapsed().ok()
}

/// The PID holding dpkg's frontend lock, if another process holds it (read with `F_GETLK`,
/// which takes nothing).
pub(crate) fn lock_holder(host: &Probe) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let path = host.real(Path::new("/var/lib/dpkg/lock-frontend"));
    // Opened only to ask the kernel who holds the lock (F_GETLK takes nothing, writes nothing).
    #[allow(clippy::disallowed_methods)]
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ok()?;
    let mut lock = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETLK(&mut lock)).ok()?;
    (lock.l_type != nix::libc::F_UNLCK as i16).then_some(lock.l_pid)
}

/// Ask apt a question (`apt-cache policy`, `madison`): reads only, so a [`Probe`] will do.
pub(crate) async fn query(host: &Probe, args: &[String]) -> Result<String, ResourceError> {
    run(host, "apt-cache", args, false)
        .await
        .map(|(out, _)| out)
}

/// One `apt-get` that changes the host at a time, within this run: two `package` resources of
/// one wave would otherwise race for dpkg's lock, the second waiting on (and warning about) the
/// first — tend's own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Change the host with `apt-get` (update, install, remove): a [`Mutate`] is needed.
pub(crate) async fn act(host: &Mutate, args: &[String]) -> Result<String, ResourceError> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let image = host.probe().root() != Path::new("/");
    // In an image, no service starts from a package's post-install (`invoke-rc.d` asks
    // `policy-rc.d`, which says no): installed for the run when the image has none, removed
    // after it whatever apt did.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let now = host.immediate();
    // One of tend's own left by a run killed mid-apt (its exact bytes) is tend's to remove.
    let ours_left = || {
        host.probe()
            .read_limited(policy, 4096)
            .ok()
            .flatten()
            .as_deref()
            == Some(POLICY_RC_D)
    };
    let installed_policy = if !image {
        false
    } else if host.probe().metadata(policy)?.is_none() {
        let attrs = crate::host::Attrs {
            uid: Some(0),
            gid: Some(0),
            mode: Some(0o755),
        };
        now.write_atomic(policy, POLICY_RC_D, attrs)?;
        true
    } else {
        ours_left()
    };
    let ran = run(host.probe(), "apt-get", args, image).await;
    if installed_policy {
        if let Err(e) = now.remove_file(policy) {
            tracing::warn!("cannot remove the policy-rc.d tend put in the image: {e}");
        }
    }
    let (stdout, stderr) = ran?;
    // `apt-get update` exits 0 when an index could not be fetched (a repository down, a name
    // that does not resolve): the lists are not updated, and saying they are would mislead.
    if args.iter().any(|a| a == "update")
        && (stderr.contains("Failed to fetch") || stderr.contains("failed to download"))
    {
        return Err(ResourceError::Command(format!(
            "apt-get update could not fetch every package index:\n  {}",
            apt_messages(&stderr, &stdout)
        )));
    }
    Ok(stdout)
}

/// `policy-rc.d` that denies every service action: what Debian's image builders install so that
/// no package starts a daemon inside a chroot.
const POLICY_RC_D: &[u8] =
    b"#!/bin/sh\n# installed by tend for an image build: no service starts here\nexit 101\n";

/// apt's own warnings and errors (`W:`, `E:`), each once, at most eight, with a count of the
/// rest: offline, apt repeats the same failure for every index.
fn apt_messages(stderr: &str, stdout: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for l in stderr.lines().chain(stdout.lines()) {
        if (l.starts_with("E: ") || l.starts_with("W: ")) && !seen.contains(&l) {
            seen.push(l);
        }
    }
    let shown = seen.len().min(8);
    let mut text = seen[..shown].join("\n  ");
    if seen.len() > shown {
        text.push_str(&format!("\n  … and {} more", seen.len() - shown));
    }
    text
}

/// Run an apt tool (`apt-get`, `apt-cache`) under the probe's root; returns its output. `mounts`:
/// with the kernel's file systems mounted in the root for the run ([`crate::in_root`]), which
/// packages' maintainer scripts need; a query needs only `chroot`.
async fn run(
    host: &Probe,
    tool: &str,
    args: &[String],
    mounts: bool,
) -> Result<(String, String), ResourceError> {
    let root = host.root();
    let mut cmd = if root == Path::new("/") {
        let mut c = tokio::process::Command::new(tool);
        c.args(args);
        c
    } else if mounts {
        let argv: Vec<&str> = std::iter::once(tool)
            .chain(args.iter().map(String::as_str))
            .collect();
        crate::in_root::command(root, "", std::ffi::OsStr::new(""), &argv)
    } else {
        let mut c = tokio::process::Command::new("chroot");
        c.arg(root).arg(tool).args(args);
        c
    };
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    if tool == "apt-get" {
        if let Some(pid) = lock_holder(host) {
            tracing::warn!("the dpkg lock is held by process {pid}; apt-get waits up to {LOCK_TIMEOUT_SECS} s for it");
        }
    }
    tracing::info!("running {tool} {}", args.join(" "));
    use crate::process::{capture_protected, RunError};
    // Protected: a stop waits for apt and dpkg rather than leave a half-configured host.
    let out = capture_protected(cmd, RUN_TIMEOUT).await.map_err(|e| {
        ResourceError::Command(match e {
            RunError::Timeout => {
                format!("{tool} did not finish within {} s", RUN_TIMEOUT.as_secs())
            }
            RunError::Spawn(e) | RunError::Wait(e) => format!("cannot run {tool}: {e}"),
            RunError::Interrupted => format!("{tool} was not started: tend was asked to stop"),
        })
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        // apt's own warnings and errors say what went wrong (deduplicated); otherwise the last
        // lines.
        let said = apt_messages(&stderr, &stdout);
        let detail = if said.is_empty() {
            let all: Vec<&str> = stderr.lines().chain(stdout.lines()).collect();
            all[all.len().saturating_sub(10)..].join("\n  ")
        } else {
            said
        };
        return Err(ResourceError::Command(format!(
            "{tool} {} failed ({}):\n  {detail}",
            args.iter()
                .filter(|a| !a.starts_with("-o") && !a.contains("::"))
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            out.status
        )));
    }
    Ok((stdout, stderr))
}

/// Options every apt-get run gets: wait (bounded) for the dpkg lock, keep existing config files.
pub(crate) fn common_options() -> Vec<String> {
    vec![
        "-y".into(),
        "-q".into(),
        "-o".into(),
        format!("DPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"),
        "-o".into(),
        "Dpkg::Options::=--force-confdef".into(),
        "-o".into(),
        "Dpkg::Options::=--force-confold".into(),
    ]
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests prepare their sandboxes directly
mod tests {
    use super::*;

    #[test]
    fn the_dpkg_lock_holder_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = dir.path().join("var/lib/dpkg/lock-frontend");
        std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
        std::fs::write(&lock, "").expect("write");
        let probe = Probe::new(dir.path(), dir.path().join("state"));
        assert_eq!(lock_holder(&probe), None);
        // dpkg locks with fcntl; so does Python's lockf.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg("import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)")
            .arg(&lock)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read");
        assert_eq!(line.trim(), "locked");
        assert_eq!(
            lock_holder(&probe),
            Some(i32::try_from(holder.id()).expect("pid"))
        );
        let _ = holder.kill();
        let _ = holder.wait();
    }
}
