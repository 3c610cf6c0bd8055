//! tend's own files in the state directory: written private (0600, atomic), read only when
//! tend's user owns them and nobody else can write them.

// The filesystem seam (see the host module).
#![allow(clippy::disallowed_methods)]

use super::*;

/// Write one of tend's own files (state directory: backups, indexes, patches, markers) at a real
/// path: atomic, mode 0600, owned by the running user, never under `--root`.
pub fn write_private_file(real: &Path, bytes: &[u8]) -> HostResult<()> {
    let dir = real.parent().unwrap_or(Path::new("/"));
    let private = Attrs {
        mode: Some(0o600),
        uid: None,
        gid: None,
    };
    Mutate::new(Probe::new("/", dir)).write_atomic(real, bytes, private)
}

/// Read one of tend's own files (state directory) at a real path: never through a symlink,
/// only a regular file, and only when the running user owns it and nobody else can write it —
/// a secret, journal or record planted by another user is refused, not trusted. `None` when it
/// does not exist.
pub fn read_private_file(real: &Path) -> HostResult<Option<Vec<u8>>> {
    let fd = match rfs::open(
        real,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err(HostError::new(
                "read",
                real,
                walk::refusal(
                    "it is a symlink; tend's state files are never symlinks: remove it".into(),
                ),
            ))
        }
        Err(e) => return Err(HostError::new("read", real, e.into())),
    };
    let f = File::from(fd);
    let meta = f.metadata().map_err(|e| HostError::new("read", real, e))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(HostError::new(
            "trust",
            real,
            walk::refusal(format!(
                "it is {} owned by uid {} with mode {:04o}; tend trusts only regular files it \
                 owns that nobody else can write in its state directory: check it and remove it",
                kind_word(meta.mode()),
                meta.uid(),
                mode_of(&meta)
            )),
        ));
    }
    // Sized from fstat: the file is read in one call instead of in doubling steps, each a
    // reallocation that touches fresh pages (this is on every run's path: the stored tree).
    let mut buf = Vec::with_capacity(meta.len().min(MAX_READ) as usize + 1);
    f.take(MAX_READ)
        .read_to_end(&mut buf)
        .map_err(|e| HostError::new("read", real, e))?;
    Ok(Some(buf))
}

/// Like [`write_private_file`], creating missing parent directories with mode 0700 (providers'
/// records under the state directory: compose fingerprints, ACME accounts).
pub fn write_state_file(real: &Path, bytes: &[u8]) -> HostResult<()> {
    let m = Mutate::new(Probe::new("/", real.parent().unwrap_or(Path::new("/"))));
    m.parent("create the parents of", real, Some(0o700))?;
    write_private_file(real, bytes)
}

/// The temporary beside `path` (a host path) that an atomic write of it uses:
/// `.tend-tmp.NAME` in the same directory.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{TEMP_PREFIX}{name}"))
}
