//! `tend image seal --root R`: what an image built with `tend apply --root` must not carry into
//! every machine cloned from it, removed — the state directory's host key, stored secrets,
//! policy cache, backups and run records (a clone makes its own key and secrets at its first
//! run), `/etc/machine-id` emptied the way systemd wants it for a first boot (the rollout offset
//! then comes from each clone's own id), D-Bus's copy of it, and the SSH host keys (Debian's
//! `sshd` makes new ones at first start) unless `--keep-ssh-host-keys`. Each removal is said.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tend_resources::host::{Attrs, Probe};

/// In the state directory: what is this machine's alone.
const STATE: &[&str] = &[
    "host.key",
    "secrets",
    "pull",
    "backups",
    "last-run.json",
    "journal.json",
    "manifest-tree.bin",
];

/// Seal the image at `root` (its state directory `state_dir`). The lines to print, or why not.
pub(crate) fn seal(
    root: &Path,
    state_dir: &Path,
    keep_ssh_host_keys: bool,
) -> Result<Vec<String>, String> {
    if root == Path::new("/") {
        return Err(
            "tend image seal works on an image (--root DIR), never on the running machine".into(),
        );
    }
    if !root.is_dir() {
        return Err(format!("--root {}: not a directory", root.display()));
    }
    let mut said = Vec::new();
    // The state directory first, under its lock: no run of tend is using it meanwhile (an
    // image never built with tend gets an empty one, where tend will live at first boot).
    if state_dir.is_dir() {
        crate::state::check_trusted(state_dir).map_err(|e| e.to_string())?;
    }
    let lock = crate::state::lock(state_dir, Duration::from_secs(0)).map_err(|e| e.to_string())?;
    // The image's own files first, through the write handle the lock mints (no symlink
    // followed): what they back up lands in the state directory, emptied next.
    let host = lock.mutate(Probe::new(root, state_dir));
    image_files(&host, keep_ssh_host_keys, &mut said)?;
    for name in STATE {
        let p = state_dir.join(name);
        let gone = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(_) => continue,
        };
        gone.map_err(|e| format!("{}: {e}", p.display()))?;
        said.push(format!("removed {}", p.display()));
    }
    Ok(said)
}

fn image_files(
    host: &tend_resources::Mutate,
    keep_ssh_host_keys: bool,
    said: &mut Vec<String>,
) -> Result<(), String> {
    let shown = |p: &Path| host.real(p).display().to_string();
    let machine_id = Path::new("/etc/machine-id");
    if let Some(m) = host.metadata(machine_id).map_err(|e| e.to_string())? {
        if m.is_file() && m.len() > 0 {
            // Empty, not absent: systemd then makes the id at first boot and treats the boot
            // as the first (ConditionFirstBoot).
            host.replace_file(machine_id, b"", Attrs::default(), 0o444)
                .map_err(|e| e.to_string())?;
            said.push(format!(
                "emptied {} (made at first boot)",
                shown(machine_id)
            ));
        }
    }
    let dbus = Path::new("/var/lib/dbus/machine-id");
    if let Some(m) = host.metadata(dbus).map_err(|e| e.to_string())? {
        if m.is_file() {
            host.remove_file(dbus).map_err(|e| e.to_string())?;
            said.push(format!("removed {}", shown(dbus)));
        }
    }
    if !keep_ssh_host_keys {
        let ssh = Path::new("/etc/ssh");
        let names = host
            .read_dir(ssh)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let mut keys: Vec<PathBuf> = names
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| {
                n.starts_with("ssh_host_") && (n.ends_with("_key") || n.ends_with("_key.pub"))
            })
            .map(|n| ssh.join(n))
            .collect();
        keys.sort();
        for k in keys {
            host.remove_file(&k).map_err(|e| e.to_string())?;
            said.push(format!("removed {}", shown(&k)));
        }
    }
    Ok(())
}
