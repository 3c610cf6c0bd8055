//! The backup store: the old content of every file tend replaced or removed, content-addressed
//! under `STATE/backups/<sha256>`, with one index per path (`backups/index/<sha256 of the path>`)
//! that records when, which content, and the mode and owner the file had — `tend restore` puts
//! those back, never the ones the path has now.

// Part of the filesystem seam: the backup store in the state directory, which tend trusts.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{sha256_hex, write_private_file, HostError, HostResult, TEMP_PREFIX};

/// One backup of a path: when it was taken, which content, and the file's mode and owner then
/// (absent in indexes written before tend recorded them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    /// When it was taken, Unix seconds.
    pub unix_time: u64,
    /// sha256 of the content (the blob's name).
    pub sha256: String,
    /// The file's mode then.
    pub mode: Option<u32>,
    /// The file's owner then.
    pub uid: Option<u32>,
    /// The file's group then.
    pub gid: Option<u32>,
}

/// The backups in a state directory.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

impl BackupStore {
    /// The store of a state directory.
    pub fn new(state_dir: &Path) -> BackupStore {
        BackupStore {
            dir: state_dir.join("backups"),
        }
    }

    pub(crate) fn ensure(&self) -> HostResult<()> {
        use std::os::unix::fs::DirBuilderExt;
        for d in [self.dir.clone(), self.dir.join("index")] {
            if !d.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&d)
                    .map_err(|e| HostError::new("create", d.clone(), e))?;
            }
        }
        Ok(())
    }

    /// Where the content with this sha256 is kept.
    pub fn blob(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Keep `content` (whose sha256 is `sum`). Two writers of the same content at once both
    /// succeed: each writes its own temporary and the renames land the same bytes.
    pub(crate) fn store(&self, sum: &str, content: &[u8]) -> HostResult<PathBuf> {
        self.ensure()?;
        let dest = self.blob(sum);
        if dest.exists() {
            return Ok(dest);
        }
        let unique = format!("{sum}.{:016x}", rand::random::<u64>());
        let tmp = self.dir.join(&unique);
        write_private_file(&tmp, content)?;
        fs::rename(&tmp, &dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            HostError::new("keep a backup in", dest.clone(), e)
        })?;
        Ok(dest)
    }

    /// Remove temporaries a killed run left in the store. Runs hold the state directory's lock,
    /// so whatever is there when a run starts is nobody's.
    pub fn clean_leftovers(&self) {
        let Ok(list) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in list.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // Unique blob temporaries are `SHA.RANDOM`; atomic-write temporaries `.tend-tmp.*`.
            if name.starts_with(TEMP_PREFIX) || (name.len() > 64 && name.as_bytes()[64] == b'.') {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn index_of(&self, real: &Path) -> PathBuf {
        self.dir
            .join("index")
            .join(sha256_hex(real.as_os_str().as_encoded_bytes()))
    }

    /// The backups of the file at `real` (its real path), oldest first.
    pub fn entries(&self, real: &Path) -> HostResult<Vec<BackupEntry>> {
        let index = self.index_of(real);
        let text = match fs::read_to_string(&index) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostError::new("read", index, e)),
        };
        Ok(text.lines().skip(1).filter_map(parse_entry).collect())
    }

    pub(crate) fn record(&self, real: &Path, entry: BackupEntry, keep: usize) -> HostResult<()> {
        let mut entries = self.entries(real)?;
        entries.push(entry);
        let drop_count = entries.len().saturating_sub(keep.max(1));
        let dropped: Vec<BackupEntry> = entries.drain(..drop_count).collect();
        // First line: the path itself, so the index reads on its own.
        let mut text = format!("{}\n", real.display());
        for e in &entries {
            text.push_str(&format!("{} {}", e.unix_time, e.sha256));
            if let (Some(m), Some(u), Some(g)) = (e.mode, e.uid, e.gid) {
                text.push_str(&format!(" {m:o} {u} {g}"));
            }
            text.push('\n');
        }
        write_private_file(&self.index_of(real), text.as_bytes())?;
        for d in dropped {
            if !self.referenced(&d.sha256)? {
                let _ = fs::remove_file(self.blob(&d.sha256));
            }
        }
        Ok(())
    }

    /// Whether any path's index still names this content.
    fn referenced(&self, sum: &str) -> HostResult<bool> {
        let dir = self.dir.join("index");
        let list = fs::read_dir(&dir).map_err(|e| HostError::new("list", dir.clone(), e))?;
        for entry in list.flatten() {
            if fs::read_to_string(entry.path()).is_ok_and(|t| {
                t.lines()
                    .skip(1)
                    .any(|l| parse_entry(l).is_some_and(|e| e.sha256 == sum))
            }) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// `TIME SHA [MODE(octal) UID GID]`.
fn parse_entry(line: &str) -> Option<BackupEntry> {
    let mut parts = line.split(' ');
    let unix_time = parts.next()?.parse().ok()?;
    let sha256 = parts.next()?.to_string();
    let mode = parts.next().and_then(|m| u32::from_str_radix(m, 8).ok());
    let uid = parts.next().and_then(|u| u.parse().ok());
    let gid = parts.next().and_then(|g| g.parse().ok());
    Some(BackupEntry {
        unix_time,
        sha256,
        mode,
        uid,
        gid,
    })
}
