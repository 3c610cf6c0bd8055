//! Where a run's text goes: stdout (which may be closed under it) and the files an operator asked
//! for (`--report`, `--metrics`), written as root into places other users may see.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tend_resources::host::{Attrs, OutputWriter};
use tend_resources::Probe;

/// Print `text` on stdout. A closed pipe (`tend plan | head -1`) ends the output quietly: what
/// follows (records, the exit code) is unaffected.
pub(crate) fn stdout(text: &str) {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => tracing::warn!("cannot write to stdout: {e}"),
    }
}

/// Write a report or metrics file atomically, with `mode`: the temporary is created in the
/// directory's fd with O_EXCL|O_NOFOLLOW and renamed over the name (a symlink there is replaced,
/// never followed), the parents resolved through no symlink another user owns, and a directory
/// that others can write is refused (they could swap the file a collector reads).
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let path = std::path::absolute(path)?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let probe = Probe::new("/", "/");
    let resolved = probe
        .resolved(parent)
        .map_err(|e| io::Error::other(e.to_string()))?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("its directory {} does not exist", parent.display()),
            )
        })?;
    let meta = std::fs::symlink_metadata(&resolved)?;
    let others_write = meta.mode() & 0o002 != 0;
    let group_writes = meta.mode() & 0o020 != 0 && meta.gid() != 0;
    if others_write || group_writes {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "its directory {} can be written by {} (mode {:04o}); write it into a \
                 directory only root (or the collector's owner) can write, such as \
                 /var/lib/prometheus/node-exporter",
                resolved.display(),
                if others_write { "anyone" } else { "its group" },
                meta.mode() & 0o7777
            ),
        ));
    }
    let attrs = Attrs {
        mode: Some(mode),
        uid: None,
        gid: None,
    };
    // The report or metrics file the operator asked for, and nothing else: its own writer, not
    // a handle that could write the host (a plan holds none).
    OutputWriter::new()
        .write(&path, bytes, attrs)
        .map_err(|e| io::Error::other(e.source.to_string()))
}
