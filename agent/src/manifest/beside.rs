//! Files a manifest names beside itself — data layers, module files, included templates: a
//! relative path, inside the top manifest's directory once every link is followed (a pulled
//! policy uses only its own verified tree), opened once and checked on the opened file (no
//! second lookup by name, no wait on a FIFO), a regular UTF-8 file of at most 16 MiB.

use std::path::{Component, Path, PathBuf};

/// The largest file read beside a manifest.
pub(super) const MAX: u64 = 16 << 20;

/// Why a file beside the manifest was not read.
pub(super) enum Refused {
    /// Nothing there.
    Missing,
    /// Something there, but not a file tend reads; why, for the operator.
    Bad(String),
}

/// The real path of `rel` (relative to `dir`), inside `top`.
pub(super) fn resolve(dir: &Path, top: &Path, rel: &str) -> Result<PathBuf, Refused> {
    if rel.is_empty()
        || !Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(Refused::Bad(
            "must be a path inside the manifest's directory (relative, no `..`)".into(),
        ));
    }
    let real = match std::fs::canonicalize(dir.join(rel)) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Refused::Missing),
        Err(e) => return Err(Refused::Bad(format!("cannot read it: {e}"))),
    };
    let top = std::fs::canonicalize(top).map_err(|e| Refused::Bad(e.to_string()))?;
    if !real.starts_with(&top) {
        return Err(Refused::Bad("leads out of the manifest's directory".into()));
    }
    Ok(real)
}

/// The text of the file at `real` (a path [`resolve`] gave): opened once, without following a
/// link put there since, and judged by what was opened.
pub(super) fn read(real: &Path) -> Result<String, String> {
    use tend_resources::host::Unread;
    let (_, bytes) = tend_resources::host::read_unfollowed(real, MAX).map_err(|why| match why {
        Unread::Open(e) | Unread::Read(e) => format!("cannot read it: {e}"),
        Unread::Link => "is a symlink (not followed)".into(),
        Unread::NotRegular => "is not a regular file".into(),
        Unread::TooLarge => format!("is larger than {} MiB", MAX >> 20),
    })?;
    String::from_utf8(bytes).map_err(|_| "is not UTF-8".into())
}
