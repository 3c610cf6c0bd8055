//! Files tend reads for itself outside the managed root — the policy's own files beside the
//! manifest, collected fleet reports, local facts: opened once without following a link (one put
//! there after any earlier check included) and without waiting on a FIFO, then judged by what was
//! opened — a regular file, read within a size budget that also holds when it grows meanwhile.

// The filesystem seam (see the host module).
#![allow(clippy::disallowed_methods)]

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why such a file was not read. Each caller says it in its own words.
#[derive(Debug)]
pub enum Unread {
    /// It could not be opened (missing, not permitted, …).
    Open(io::Error),
    /// It is a symlink, which is not followed.
    Link,
    /// It is not a regular file (a FIFO, a device, a directory).
    NotRegular,
    /// It holds more than the budget.
    TooLarge,
    /// Reading it failed.
    Read(io::Error),
}

/// Open `path` (`O_NOFOLLOW | O_NONBLOCK`) and read it with [`read_opened`].
pub fn read_unfollowed(path: &Path, max: u64) -> Result<(Metadata, Vec<u8>), Unread> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => Unread::Link,
            _ => Unread::Open(e),
        })?;
    read_opened(&file, max)
}

/// Read a file already opened (relative to a directory fd, say): only when it is a regular file,
/// at most `max` bytes, however long it grows while it is read. Its metadata and content.
pub fn read_opened(file: &File, max: u64) -> Result<(Metadata, Vec<u8>), Unread> {
    let meta = file.metadata().map_err(Unread::Read)?;
    if !meta.is_file() {
        return Err(Unread::NotRegular);
    }
    if meta.len() > max {
        return Err(Unread::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(Unread::Read)?;
    if bytes.len() as u64 > max {
        return Err(Unread::TooLarge);
    }
    Ok((meta, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_a_fifo_and_a_file_over_budget_are_refused_by_what_was_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").expect("write");
        let (meta, bytes) = read_unfollowed(&file, 5).expect("read");
        assert_eq!((meta.len(), bytes.as_slice()), (5, &b"12345"[..]));
        assert!(matches!(read_unfollowed(&file, 4), Err(Unread::TooLarge)));
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert!(matches!(read_unfollowed(&link, 5), Err(Unread::Link)));
        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // Not waited on: no writer will ever come.
        assert!(matches!(read_unfollowed(&fifo, 5), Err(Unread::NotRegular)));
        assert!(matches!(
            read_unfollowed(&dir.path().join("missing"), 5),
            Err(Unread::Open(_))
        ));
    }
}
