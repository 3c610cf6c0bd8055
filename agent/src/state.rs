//! The state directory (default `/var/lib/tend`, mode 0700): the run lock, `last-run.json`,
//! secrets and backups.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Create `dir` (and parents) with mode 0700, or check that an existing one can be trusted:
/// a real directory (not a symlink), owned by the running user (root), that nobody else can
/// write. Anything else is refused before tend reads a secret, a journal or a lock from it, or
/// changes its mode.
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
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
pub(crate) fn check_path(root: &Path, dir: &Path) -> io::Result<()> {
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
                if let Some(who) = changeable_by_others(&m) {
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

/// Who besides root (and tend's own user) could rename or plant entries in the directory `meta`
/// describes, in words; `None` when nobody. A sticky directory (`/tmp`) protects what root owns
/// in it. The one rule for every directory on the way to what tend trusts: the state directory
/// and the files `tend pull` is told whom to trust by.
pub(crate) fn changeable_by_others(meta: &fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let mode = meta.mode();
    let sticky = mode & 0o1000 != 0;
    if meta.uid() != 0 && meta.uid() != me {
        Some(format!("owned by uid {}", meta.uid()))
    } else if !sticky && mode & 0o002 != 0 {
        Some(format!("writable by everyone (mode {:04o})", mode & 0o7777))
    } else if !sticky && mode & 0o020 != 0 && meta.gid() != 0 {
        Some(format!("writable by group {}", meta.gid()))
    } else {
        None
    }
}

/// Refuse a state directory another user could have prepared: see [`ensure_private_dir`]. A
/// missing one is fine (nothing to trust yet).
pub(crate) fn check_trusted(dir: &Path) -> io::Result<()> {
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

/// The run lock (`STATE/lock`): the state directory made private first, then the lock taken.
/// Holding it is the only way to get a handle that can write the host
/// ([`RunLock::mutate`]).
pub(crate) fn lock(state_dir: &Path, wait: Duration) -> Result<RunLock, LockError> {
    ensure_private_dir(state_dir).map_err(|source| LockError::Open {
        path: state_dir.join("lock"),
        source,
    })?;
    RunLock::acquire(state_dir, wait)
}

pub(crate) use tend_resources::host::{LockError, RunLock};

/// The host's key for secret fingerprints (`STATE/host.key`, 32 random bytes, mode 0600).
/// `create` (apply) makes it when missing; otherwise a missing key gives `None`.
pub(crate) fn host_key(state_dir: &Path, create: bool) -> io::Result<Option<Vec<u8>>> {
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
pub(crate) fn write_last_run(state_dir: &Path, json: &str) -> io::Result<()> {
    write_private(state_dir, "last-run.json", json.as_bytes())
}

/// Write `DIR/name` atomically with mode 0600, `DIR` made private (0700) first: every file tend
/// keeps for itself (reports, journal, keys, secrets) goes through here.
pub(crate) fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
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
        let _held = lock(dir.path(), Duration::ZERO).expect("first");
        let err = lock(dir.path(), Duration::from_millis(200)).expect_err("second must fail");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        let mode = fs::metadata(dir.path()).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
