//! Host handles. A [`Probe`] can only read the host; a [`Mutate`] can also change it.
//!
//! `tend plan` only ever constructs a `Probe`, so a dry run cannot change the host by
//! construction: no provider can reach a writing method without a `Mutate`, and the engine makes
//! one only in apply mode. Every method takes the path *as the manifest names it* and resolves
//! it under the root (`--root DIR`), so tests and image builds never touch the real host.
//! Every error names the operation and the path.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::ops::Deref;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

/// An I/O failure on the host, naming what was attempted and on which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct HostError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl HostError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> HostError {
        HostError {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// Read-only access to the host.
#[derive(Debug, Clone)]
pub struct Probe {
    inner: Arc<ProbeInner>,
    dry_run: bool,
}

#[derive(Debug)]
struct ProbeInner {
    root: PathBuf,
    state_dir: PathBuf,
    passwd: OnceLock<HashMap<String, u32>>,
    group: OnceLock<HashMap<String, u32>>,
}

impl Probe {
    /// `root` is `/` on a real host; `state_dir` is the real path of tend's state directory.
    pub fn new(root: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Probe {
        Probe {
            inner: Arc::new(ProbeInner {
                root: root.into(),
                state_dir: state_dir.into(),
                passwd: OnceLock::new(),
                group: OnceLock::new(),
            }),
            dry_run: true,
        }
    }

    /// True in `plan`: providers must not run anything whose effects they cannot vouch for
    /// (an `exec` guard not declared read-only, say).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The real path of a host path: `/etc/motd` is `ROOT/etc/motd`. `..` cannot climb out of the
    /// root: components are resolved lexically, the way a chroot would.
    pub fn real(&self, path: &Path) -> PathBuf {
        let mut out = self.inner.root.clone();
        let mut depth = 0usize;
        for c in path.components() {
            match c {
                Component::Normal(p) => {
                    out.push(p);
                    depth += 1;
                }
                Component::ParentDir if depth > 0 => {
                    out.pop();
                    depth -= 1;
                }
                _ => {}
            }
        }
        out
    }

    /// `lstat`: `None` when nothing is there.
    pub fn metadata(&self, path: &Path) -> HostResult<Option<Metadata>> {
        let real = self.real(path);
        match fs::symlink_metadata(&real) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => Ok(None),
            Err(e) => Err(HostError::new("inspect", real, e)),
        }
    }

    /// The whole content of a file: `None` when it does not exist.
    pub fn read(&self, path: &Path) -> HostResult<Option<Vec<u8>>> {
        let real = self.real(path);
        match fs::read(&real) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::new("read", real, e)),
        }
    }

    /// The user id of `name` (a name from the root's `/etc/passwd`, or a number).
    pub fn uid(&self, name: &str) -> HostResult<u32> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        let map = self.inner.passwd.get_or_init(|| self.id_map("etc/passwd"));
        map.get(name).copied().ok_or_else(|| {
            HostError::new(
                "find user",
                self.inner.root.join("etc/passwd"),
                io::Error::new(io::ErrorKind::NotFound, format!("no user named {name:?}")),
            )
        })
    }

    /// The group id of `name` (a name from the root's `/etc/group`, or a number).
    pub fn gid(&self, name: &str) -> HostResult<u32> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        let map = self.inner.group.get_or_init(|| self.id_map("etc/group"));
        map.get(name).copied().ok_or_else(|| {
            HostError::new(
                "find group",
                self.inner.root.join("etc/group"),
                io::Error::new(io::ErrorKind::NotFound, format!("no group named {name:?}")),
            )
        })
    }

    /// Reads `name:x:ID:…` lines; a missing file is an empty map (then only numbers resolve).
    fn id_map(&self, rel: &str) -> HashMap<String, u32> {
        let text = fs::read_to_string(self.inner.root.join(rel)).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut parts = l.split(':');
                let name = parts.next()?;
                let id = parts.nth(1)?.parse().ok()?;
                Some((name.to_string(), id))
            })
            .collect()
    }
}

/// Read and write access to the host. Only the engine's apply mode makes one.
#[derive(Debug, Clone)]
pub struct Mutate {
    probe: Probe,
}

impl Deref for Mutate {
    type Target = Probe;
    fn deref(&self) -> &Probe {
        &self.probe
    }
}

/// Mode and ownership wanted for a new or replaced file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Default mode of a file tend creates when the manifest names none (umask-independent).
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Default mode of a directory tend creates when the manifest names none.
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// Prefix of tend's temporary files, so leftovers of a killed run can be recognised.
pub const TEMP_PREFIX: &str = ".tend-tmp.";

impl Mutate {
    /// Only the engine calls this, in apply mode.
    pub fn new(probe: Probe) -> Mutate {
        Mutate {
            probe: Probe {
                dry_run: false,
                ..probe
            },
        }
    }

    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// Replace `path` atomically: a temporary file in the same directory, created with the
    /// final mode and owner before any byte is written, fsynced, renamed over the old one; then
    /// the directory is fsynced. A crash leaves the old file or the new one, never a mix.
    pub fn write_atomic(&self, path: &Path, content: &[u8], attrs: Attrs) -> HostResult<()> {
        let real = self.real(path);
        let dir = real
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{name}.{:016x}",
            rand::random::<u64>()
        ));
        let mode = attrs.mode.unwrap_or(DEFAULT_FILE_MODE);
        let result = (|| -> io::Result<()> {
            // 0o600 at creation: nobody else can open it before the final owner and mode are set.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            if attrs.uid.is_some() || attrs.gid.is_some() {
                std::os::unix::fs::fchown(&f, attrs.uid, attrs.gid)?;
            }
            // After chown, which clears set-id bits.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(content)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &real)?;
            File::open(&dir)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            HostError::new("write", real.clone(), e)
        })
    }

    pub fn set_mode(&self, path: &Path, mode: u32) -> HostResult<()> {
        let real = self.real(path);
        fs::set_permissions(&real, fs::Permissions::from_mode(mode))
            .map_err(|e| HostError::new("change the mode of", real, e))
    }

    pub fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> HostResult<()> {
        let real = self.real(path);
        std::os::unix::fs::lchown(&real, uid, gid)
            .map_err(|e| HostError::new("change the owner of", real, e))
    }

    /// Create a directory (and its missing parents, with the default mode).
    pub fn create_dir(&self, path: &Path, attrs: Attrs) -> HostResult<()> {
        let real = self.real(path);
        if let Some(parent) = real.parent() {
            fs::create_dir_all(parent).map_err(|e| HostError::new("create", parent, e))?;
        }
        match fs::create_dir(&real) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(HostError::new("create", real, e)),
        }
        if attrs.uid.is_some() || attrs.gid.is_some() {
            self.set_owner(path, attrs.uid, attrs.gid)?;
        }
        self.set_mode(path, attrs.mode.unwrap_or(DEFAULT_DIR_MODE))
    }

    /// Create the missing parents of `path` with the default directory mode.
    pub fn create_parents(&self, path: &Path) -> HostResult<()> {
        let real = self.real(path);
        match real.parent() {
            Some(parent) => {
                fs::create_dir_all(parent).map_err(|e| HostError::new("create", parent, e))
            }
            None => Ok(()),
        }
    }

    pub fn remove_file(&self, path: &Path) -> HostResult<()> {
        let real = self.real(path);
        fs::remove_file(&real).map_err(|e| HostError::new("remove", real.clone(), e))?;
        if let Some(dir) = real.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| HostError::new("sync", dir, e))?;
        }
        Ok(())
    }

    pub fn remove_dir(&self, path: &Path) -> HostResult<()> {
        let real = self.real(path);
        fs::remove_dir(&real).map_err(|e| HostError::new("remove", real, e))
    }

    /// Keep the current content of `path` in the state directory before it is replaced or
    /// removed: `backups/<sha256>` (content-addressed, written once). Returns that path, or
    /// `None` when there is no file.
    pub fn backup(&self, path: &Path) -> HostResult<Option<PathBuf>> {
        let Some(old) = self.read(path)? else {
            return Ok(None);
        };
        let sum = sha256_hex(&old);
        let dir = self.state_dir().join("backups");
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| HostError::new("create", dir.clone(), e))?;
        }
        let dest = dir.join(&sum);
        if !dest.exists() {
            let staging = Mutate::new(Probe::new("/", self.state_dir()));
            staging.write_atomic(
                &dest,
                &old,
                Attrs {
                    mode: Some(0o600),
                    uid: None,
                    gid: None,
                },
            )?;
        }
        Ok(Some(dest))
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Permission bits of a metadata, as tend compares them.
pub fn mode_of(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// `0644`-style rendering of a mode.
pub fn fmt_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_paths_stay_under_the_root() {
        let p = Probe::new("/sandbox", "/sandbox/var/lib/tend");
        assert_eq!(
            p.real(Path::new("/etc/motd")),
            PathBuf::from("/sandbox/etc/motd")
        );
        assert_eq!(
            p.real(Path::new("/../../etc/passwd")),
            PathBuf::from("/sandbox/etc/passwd")
        );
        assert_eq!(p.real(Path::new("/a/../b")), PathBuf::from("/sandbox/b"));
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Mutate::new(Probe::new(dir.path(), dir.path().join("state")));
        m.write_atomic(
            Path::new("/f"),
            b"one",
            Attrs {
                mode: Some(0o640),
                ..Attrs::default()
            },
        )
        .expect("write");
        m.write_atomic(
            Path::new("/f"),
            b"two",
            Attrs {
                mode: Some(0o600),
                ..Attrs::default()
            },
        )
        .expect("rewrite");
        assert_eq!(fs::read(dir.path().join("f")).expect("read"), b"two");
        let meta = fs::metadata(dir.path().join("f")).expect("meta");
        assert_eq!(mode_of(&meta), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn ids_resolve_from_the_roots_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("etc")).expect("mkdir");
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n",
        )
        .expect("w");
        let p = Probe::new(dir.path(), dir.path().join("state"));
        assert_eq!(p.uid("www-data").expect("uid"), 33);
        assert_eq!(p.uid("1234").expect("numeric"), 1234);
        let err = p.uid("nobody-here").expect_err("unknown user");
        assert!(
            err.to_string().contains("no user named \"nobody-here\""),
            "{err}"
        );
    }
}
