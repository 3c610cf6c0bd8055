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
    /// Key of the secret fingerprints (see [`crate::fingerprint`]).
    fingerprint_key: Vec<u8>,
    passwd: OnceLock<HashMap<String, u32>>,
    group: OnceLock<HashMap<String, u32>>,
}

impl Probe {
    /// `root` is `/` on a real host; `state_dir` is the real path of tend's state directory.
    pub fn new(root: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Probe {
        Probe::with_key(root, state_dir, rand::random::<[u8; 32]>().to_vec())
    }

    /// A probe whose secret fingerprints use `key` (the host's key from the state directory, so
    /// fingerprints are comparable across runs).
    pub fn with_key(
        root: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        key: Vec<u8>,
    ) -> Probe {
        Probe {
            inner: Arc::new(ProbeInner {
                root: root.into(),
                state_dir: state_dir.into(),
                fingerprint_key: key,
                passwd: OnceLock::new(),
                group: OnceLock::new(),
            }),
            dry_run: true,
        }
    }

    /// `ab12…`: a fingerprint of a secret value that shows it changed without revealing it.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        crate::fingerprint::short(&self.inner.fingerprint_key, value)
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
    keep_backups: usize,
    /// When set, atomic writes are deferred to [`Mutate::commit`].
    batch: Option<Arc<Batch>>,
}

/// Writes whose temporaries exist but are neither synced nor renamed yet.
#[derive(Debug, Default)]
pub struct Batch {
    pending: std::sync::Mutex<Vec<Pending>>,
}

#[derive(Debug)]
struct Pending {
    tmp: PathBuf,
    real: PathBuf,
    dir: PathBuf,
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
/// Backups kept per path unless `--keep-backups` says otherwise.
pub const DEFAULT_KEEP_BACKUPS: usize = 5;

impl Mutate {
    /// Only the engine calls this, in apply mode.
    pub fn new(probe: Probe) -> Mutate {
        Mutate {
            probe: Probe {
                dry_run: false,
                ..probe
            },
            keep_backups: DEFAULT_KEEP_BACKUPS,
            batch: None,
        }
    }

    /// Defer the durability of atomic writes to [`Mutate::commit`]: each write leaves its
    /// temporary (created with the final mode and owner, not yet synced), and the commit makes the
    /// whole batch durable with one `syncfs` per filesystem, renames, and one fsync per directory —
    /// the same guarantee as a write at a time (old file or new file, never a mix), for a fraction
    /// of the fsyncs. Until the commit, readers see the old files.
    pub fn batched(mut self) -> Mutate {
        self.batch = Some(Arc::new(Batch::default()));
        self
    }

    /// Make the batch's writes durable and visible. Returns what failed (those targets keep their
    /// old content; their temporaries are removed).
    pub fn commit(&self) -> Vec<HostError> {
        let Some(batch) = &self.batch else {
            return Vec::new();
        };
        let pending: Vec<Pending> = match batch.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => {
                return vec![HostError::new(
                    "commit",
                    "/",
                    io::Error::other("batch lock poisoned"),
                )]
            }
        };
        if pending.is_empty() {
            return Vec::new();
        }
        let mut errors = Vec::new();
        // The data of every temporary reaches the disk before any rename: one syncfs for each
        // filesystem involved.
        let mut devices = std::collections::BTreeMap::new();
        for p in &pending {
            if let Ok(m) = fs::metadata(&p.dir) {
                devices.entry(m.dev()).or_insert_with(|| p.dir.clone());
            }
        }
        for dir in devices.values() {
            use std::os::fd::AsRawFd;
            let synced = File::open(dir)
                .and_then(|d| nix::unistd::syncfs(d.as_raw_fd()).map_err(io::Error::from));
            if let Err(e) = synced {
                errors.push(HostError::new("sync the filesystem of", dir.clone(), e));
                for p in &pending {
                    let _ = fs::remove_file(&p.tmp);
                }
                return errors;
            }
        }
        let mut dirs = std::collections::BTreeSet::new();
        for p in pending {
            match fs::rename(&p.tmp, &p.real) {
                Ok(()) => {
                    dirs.insert(p.dir);
                }
                Err(e) => {
                    let _ = fs::remove_file(&p.tmp);
                    errors.push(HostError::new("write", p.real, e));
                }
            }
        }
        for d in dirs {
            if let Err(e) = File::open(&d).and_then(|f| f.sync_all()) {
                errors.push(HostError::new("sync", d, e));
            }
        }
        errors
    }

    /// How many backups to keep per path (older ones are pruned).
    pub fn keep_backups(mut self, n: usize) -> Mutate {
        self.keep_backups = n;
        self
    }

    /// Refuse to write through a directory that another user could redirect: a symlink among the
    /// parents (inside the root) owned by neither root nor us.
    fn guard_parents(&self, real: &Path) -> HostResult<()> {
        let me = nix::unistd::geteuid().as_raw();
        let mut dir = real.parent();
        while let Some(d) = dir {
            if d == self.root() || !d.starts_with(self.root()) {
                break;
            }
            if let Ok(meta) = fs::symlink_metadata(d) {
                if meta.file_type().is_symlink() && meta.uid() != 0 && meta.uid() != me {
                    return Err(HostError::new(
                        "write through",
                        d,
                        io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("it is a symlink owned by uid {}, who could redirect the write; refusing", meta.uid()),
                        ),
                    ));
                }
            }
            dir = d.parent();
        }
        Ok(())
    }

    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// Replace `path` atomically: a temporary file in the same directory, created with the
    /// final mode and owner before any byte is written, fsynced, renamed over the old one; then
    /// the directory is fsynced. A crash leaves the old file or the new one, never a mix.
    pub fn write_atomic(&self, path: &Path, content: &[u8], attrs: Attrs) -> HostResult<()> {
        let real = self.real(path);
        self.guard_parents(&real)?;
        let dir = real
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        // One fixed temporary name per target: a run killed mid-write leaves at most this one
        // file, and the next write of the same target (runs hold the lock) replaces it.
        let tmp = self.real(&temp_path(path));
        let mode = attrs.mode.unwrap_or(DEFAULT_FILE_MODE);
        let result = (|| -> io::Result<()> {
            // 0o600 at creation: nobody else can open it before the final owner and mode are
            // set. O_NOFOLLOW: a symlink planted under the temporary name is not followed.
            let open = || {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&tmp)
            };
            let mut f = match open() {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    fs::remove_file(&tmp)?;
                    open()?
                }
                other => other?,
            };
            if attrs.uid.is_some() || attrs.gid.is_some() {
                std::os::unix::fs::fchown(&f, attrs.uid, attrs.gid)?;
            }
            // After chown, which clears set-id bits.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(content)?;
            if let Some(batch) = &self.batch {
                // Durability and the rename come at commit, for the whole batch at once.
                let pending = Pending {
                    tmp: tmp.clone(),
                    real: real.clone(),
                    dir: dir.clone(),
                };
                batch
                    .pending
                    .lock()
                    .map_err(|_| io::Error::other("batch lock poisoned"))?
                    .push(pending);
                return Ok(());
            }
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
        self.guard_parents(&real)?;
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
        self.guard_parents(&real)?;
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

    /// Replace (or create) a managed file: the aspects `attrs` leaves unset keep their current
    /// values (a new file gets `default_mode`), the old content is backed up first, missing
    /// parents are created, and the write is atomic. Returns the backup, if there was a file.
    pub fn replace_file(
        &self,
        path: &Path,
        content: &[u8],
        mut attrs: Attrs,
        default_mode: u32,
    ) -> HostResult<Option<PathBuf>> {
        let backup = match self.metadata(path)? {
            Some(m) => {
                attrs.mode = attrs.mode.or(Some(mode_of(&m)));
                attrs.uid = attrs.uid.or(Some(m.uid()));
                attrs.gid = attrs.gid.or(Some(m.gid()));
                self.backup(path)?
            }
            None => {
                attrs.mode = attrs.mode.or(Some(default_mode));
                self.create_parents(path)?;
                None
            }
        };
        self.write_atomic(path, content, attrs)?;
        Ok(backup)
    }

    /// Keep the current content of `path` in the state directory before it is replaced or
    /// removed: `backups/<sha256>` (content-addressed, written once, mode 0600), recorded in the
    /// path's index `backups/index/<sha256 of the path>`; only the newest `keep_backups` entries
    /// of a path are kept, and contents no index names any more are deleted. Returns the backup,
    /// or `None` when there is no file.
    pub fn backup(&self, path: &Path) -> HostResult<Option<PathBuf>> {
        let Some(old) = self.read(path)? else {
            return Ok(None);
        };
        let sum = sha256_hex(&old);
        let store = BackupStore::new(self.state_dir());
        store.ensure()?;
        let dest = store.blob(&sum);
        if !dest.exists() {
            write_private_file(&dest, &old)?;
        }
        store.record(&self.real(path), &sum, self.keep_backups)?;
        Ok(Some(dest))
    }
}

/// One backup of a path: when it was taken and which content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    pub unix_time: u64,
    pub sha256: String,
}

/// The backups in a state directory.
#[derive(Debug, Clone)]
pub struct BackupStore {
    dir: PathBuf,
}

impl BackupStore {
    pub fn new(state_dir: &Path) -> BackupStore {
        BackupStore {
            dir: state_dir.join("backups"),
        }
    }

    fn ensure(&self) -> HostResult<()> {
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

    pub fn blob(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
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
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (t, sum) = l.split_once(' ')?;
                Some(BackupEntry {
                    unix_time: t.parse().ok()?,
                    sha256: sum.to_string(),
                })
            })
            .collect())
    }

    fn record(&self, real: &Path, sum: &str, keep: usize) -> HostResult<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut entries = self.entries(real)?;
        entries.push(BackupEntry {
            unix_time: now,
            sha256: sum.to_string(),
        });
        let drop_count = entries.len().saturating_sub(keep.max(1));
        let dropped: Vec<BackupEntry> = entries.drain(..drop_count).collect();
        // First line: the path itself, so the index reads on its own.
        let mut text = format!("{}\n", real.display());
        for e in &entries {
            text.push_str(&format!("{} {}\n", e.unix_time, e.sha256));
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
            if fs::read_to_string(entry.path())
                .is_ok_and(|t| t.lines().skip(1).any(|l| l.ends_with(sum)))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

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

/// Like [`write_private_file`], creating missing parent directories with mode 0700 (providers'
/// records under the state directory: compose fingerprints, ACME accounts).
pub fn write_state_file(real: &Path, bytes: &[u8]) -> HostResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = real.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| HostError::new("create", dir, e))?;
    }
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
        assert_ne!(
            p.fingerprint(b"x"),
            Probe::new("/", "/").fingerprint(b"x"),
            "ephemeral keys differ"
        );
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
