//! Host handles. A [`Probe`] can only read the host; a [`Mutate`] can also change it.
//!
//! `tend plan` only ever constructs a `Probe`, so a dry run cannot change the host by
//! construction: no provider can reach a writing method without a `Mutate`, and the engine makes
//! one only in apply mode. Every method takes the path *as the manifest names it* and resolves
//! it under the root (`--root DIR`) from a directory fd, component by component, following no
//! symlink another user could have planted ([`walk`]); every operation after that acts on the fds
//! the resolution opened. Every error names the operation and the path.

// This module is the filesystem seam: the std::fs calls and the Mutate constructor live here.
#![allow(clippy::disallowed_methods)]

mod backup;
mod link;
mod lock;
mod tree;
mod walk;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

pub use backup::{BackupEntry, BackupStore};
pub use lock::{LockError, OutputWriter, RunLock};
pub use tree::OtherWriter;
use walk::{components, kind_word, Dir, Walker};

/// An I/O failure on the host, naming what was attempted and on which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct HostError {
    /// What was being done ("read", "write", "resolve"…).
    pub op: &'static str,
    /// The real path it was done to.
    pub path: PathBuf,
    #[source]
    /// The operating system's error.
    pub source: io::Error,
}

impl HostError {
    /// An error of `op` on `path`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> HostError {
        HostError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A host operation's result.
pub type HostResult<T> = Result<T, HostError>;

/// A regular file's content, read in one `read` when it is the size `fstat` gave: asking for one
/// byte more and getting exactly `size` is the end of the file, without the second, empty read
/// `read_to_end` makes to see it. A file that grew since is read on to its end (up to
/// [`MAX_READ`]); a short read before `size` continues like any read loop.
fn read_sized(f: &File, size: u64) -> io::Result<Vec<u8>> {
    let size = usize::try_from(size).unwrap_or(0);
    let mut buf = vec![0u8; size + 1];
    let mut got = 0;
    loop {
        let asked = buf.len() - got;
        let n = match (&*f).read(&mut buf[got..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        got += n;
        if n == 0 || (got >= size && n < asked) {
            break;
        }
        if got == buf.len() {
            if got as u64 > MAX_READ {
                break;
            }
            buf.resize(got * 2, 0);
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Directories a run keeps open for reuse (see `ProbeInner::dirs`).
const MAX_CACHED_DIRS: usize = 128;

/// The most tend reads of one file it manages or copies from (a bigger one is refused, not
/// read into memory): reads have a budget like every other input.
pub const MAX_READ: u64 = 1 << 30;

/// Read-only access to the host.
#[derive(Debug, Clone)]
pub struct Probe {
    inner: Arc<ProbeInner>,
    /// Files as a dependency's apply would leave them (plan only): read instead of the host's.
    overlay: Option<Arc<Overlay>>,
}

/// Paths and the bytes they would hold after a dependency applies (`None`: gone).
pub type Overlay = std::collections::BTreeMap<PathBuf, Option<Vec<u8>>>;

#[derive(Debug)]
struct ProbeInner {
    root: PathBuf,
    state_dir: PathBuf,
    /// Key of the secret fingerprints (see [`crate::fingerprint`]).
    fingerprint_key: Vec<u8>,
    passwd: OnceLock<HashMap<String, u32>>,
    group: OnceLock<HashMap<String, u32>>,
    /// The root directory, opened once: every path is resolved from it.
    root_fd: OnceLock<Result<OwnedFd, String>>,
    /// Until the run first changes the host: each directory resolved once and its fd reused by
    /// every later look into it — one resolution per directory instead of one per file, and a
    /// consistent view of it. `None` when the probe does not cache, or once a change started
    /// ([`Probe::stop_caching_dirs`]): from then on the run itself may move directories.
    dirs: Mutex<Option<HashMap<Vec<OsString>, Arc<Dir>>>>,
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
                root_fd: OnceLock::new(),
                dirs: Mutex::new(None),
            }),
            overlay: None,
        }
    }

    /// This probe, reading `files` as a dependency's apply would leave them: plan checks a
    /// dependent against the `.env.example` a checkout would bring, without writing it. Only
    /// whole-file reads see the overlay.
    pub fn with_overlay(&self, files: Overlay) -> Probe {
        Probe {
            inner: self.inner.clone(),
            overlay: Some(Arc::new(files)),
        }
    }

    /// This probe for a run: directories are resolved once and their fds reused (see
    /// `ProbeInner::dirs`) until [`Probe::stop_caching_dirs`].
    pub fn caching_dirs(self) -> Probe {
        *self.inner.dirs.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
        self
    }

    /// The run is about to change the host (the engine calls this before a resource's first
    /// change): directories are resolved afresh from now on, and the cache is dropped.
    pub fn stop_caching_dirs(&self) {
        *self.inner.dirs.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The parent directory of `path` and its last component, through the directory cache
    /// while this probe has one.
    fn cached_parent(
        &self,
        op: &'static str,
        path: &Path,
    ) -> HostResult<Option<(Arc<Dir>, OsString)>> {
        let mut comps = components(path);
        let cached = comps.pop().and_then(|name| {
            let dirs = self.inner.dirs.lock().unwrap_or_else(|e| e.into_inner());
            dirs.as_ref().map(|m| (m.get(&comps).cloned(), name))
        });
        let Some((hit, name)) = cached else {
            return Ok(self.parent(op, path, None)?.map(|(d, n)| (Arc::new(d), n)));
        };
        if let Some(dir) = hit {
            return Ok(Some((dir, name)));
        }
        let Some((dir, name)) = self.parent(op, path, None)? else {
            return Ok(None);
        };
        let dir = Arc::new(dir);
        if let Some(m) = self
            .inner
            .dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            // Each entry holds a directory fd open: a manifest spread over thousands of
            // directories must not run the process out of descriptors (a soft limit of 1024 is
            // common), so past this many the rest are resolved per file, as without the cache.
            if m.len() < MAX_CACHED_DIRS {
                m.insert(comps, dir.clone());
            }
        }
        Ok(Some((dir, name)))
    }

    /// `ab12…`: a fingerprint of a secret value that shows it changed without revealing it.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        crate::fingerprint::short(&self.inner.fingerprint_key, value)
    }

    /// The root every host path is resolved under (`--root`, `/` by default).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// tend's state directory (a real path, never under `--root` resolution).
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The real path of a host path, lexically: `/etc/motd` is `ROOT/etc/motd`, and `..` cannot
    /// climb out of the root. For messages, and for tools that take a path: hand those
    /// [`Probe::resolved`] instead, which has checked every component.
    pub fn real(&self, path: &Path) -> PathBuf {
        let mut out = self.inner.root.clone();
        out.extend(components(path));
        out
    }

    fn root_fd(&self) -> HostResult<&OwnedFd> {
        let fd = self.inner.root_fd.get_or_init(|| {
            rfs::open(
                &self.inner.root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| e.to_string())
        });
        fd.as_ref().map_err(|e| {
            HostError::new(
                "open the root",
                self.inner.root.clone(),
                io::Error::other(e.clone()),
            )
        })
    }

    /// The parent directory of `path` (resolved safely) and the last component; `None` when the
    /// parent does not exist. `create` makes missing parents with that mode.
    fn parent(
        &self,
        op: &'static str,
        path: &Path,
        create: Option<u32>,
    ) -> HostResult<Option<(Dir, OsString)>> {
        let mut comps = components(path);
        let Some(name) = comps.pop() else {
            return Err(HostError::new(
                op,
                self.real(path),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the root directory itself cannot be managed",
                ),
            ));
        };
        let walker = Walker {
            root_fd: self.root_fd()?.as_fd(),
            root: self.root(),
            create,
        };
        match walker.dir(&comps) {
            Ok(Some(dir)) => Ok(Some((dir, name))),
            Ok(None) => Ok(None),
            Err(e) => Err(HostError::new(op, self.real(path), e)),
        }
    }

    /// The real path of `path` after checking every component: no symlink another user could
    /// have planted, resolved inside the root. For tools that need a path (libgit2, compose,
    /// image contexts): they resolve it again, but through components tend has just vetted.
    /// `None` when some parent does not exist.
    pub fn resolved(&self, path: &Path) -> HostResult<Option<PathBuf>> {
        let comps = components(path);
        let walker = Walker {
            root_fd: self.root_fd()?.as_fd(),
            root: self.root(),
            create: None,
        };
        match walker.dir(&comps) {
            Ok(Some(dir)) => Ok(Some(dir.shown(self.root()))),
            Ok(None) => {
                // The path itself may be a file: vet its parent.
                match self.parent("resolve", path, None)? {
                    Some((dir, name)) => Ok(Some(dir.shown_child(self.root(), &name))),
                    None => Ok(None),
                }
            }
            Err(e) => Err(HostError::new("resolve", self.real(path), e)),
        }
    }

    /// The directory at `path`, resolved as every path is (no symlink another user planted), as
    /// an `O_PATH` fd: for a child process to enter through `/proc/self/fd/N` — the directory
    /// that was checked, never a path resolved again. `None` when it does not exist.
    pub fn open_dir(&self, path: &Path) -> HostResult<Option<OwnedFd>> {
        let walker = Walker {
            root_fd: self.root_fd()?.as_fd(),
            root: self.root(),
            create: None,
        };
        match walker.dir(&components(path)) {
            Ok(dir) => Ok(dir.map(|d| d.fd)),
            Err(e) => Err(HostError::new("open", self.real(path), e)),
        }
    }

    /// `lstat`: `None` when nothing is there.
    pub fn metadata(&self, path: &Path) -> HostResult<Option<Metadata>> {
        if components(path).is_empty() {
            let f = File::from(
                self.root_fd()?
                    .try_clone()
                    .map_err(|e| HostError::new("inspect", self.real(path), e))?,
            );
            return f
                .metadata()
                .map(Some)
                .map_err(|e| HostError::new("inspect", self.real(path), e));
        }
        let Some((dir, name)) = self.parent("inspect", path, None)? else {
            return Ok(None);
        };
        match rfs::openat(
            &dir.fd,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => File::from(fd)
                .metadata()
                .map(Some)
                .map_err(|e| HostError::new("inspect", self.real(path), e)),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(HostError::new("inspect", self.real(path), e.into())),
        }
    }

    /// The target of the symlink at `path`, as written (not followed); `None` when nothing is
    /// there or it is not a symlink.
    pub fn read_link(&self, path: &Path) -> HostResult<Option<PathBuf>> {
        let Some((dir, name)) = self.parent("read the link", path, None)? else {
            return Ok(None);
        };
        match rfs::readlinkat(&dir.fd, &name, Vec::new()) {
            Ok(target) => Ok(Some(PathBuf::from(
                <OsString as std::os::unix::ffi::OsStringExt>::from_vec(target.into_bytes()),
            ))),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::INVAL) => Ok(None),
            Err(e) => Err(HostError::new("read the link", self.real(path), e.into())),
        }
    }

    /// Open a regular file for reading: through no untrusted symlink (a trusted one is followed
    /// inside the root, like certbot's `live/` links), refusing a FIFO, device or socket before
    /// reading a byte. `None` when it does not exist.
    fn open_regular(&self, path: &Path) -> HostResult<Option<(File, Metadata)>> {
        let mut current = path.to_path_buf();
        for _ in 0..40 {
            let Some((dir, name)) = self.parent("read", &current, None)? else {
                return Ok(None);
            };
            let real = || dir.shown_child(self.root(), &name);
            // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal
            // device must not become ours.
            match rfs::openat(
                &dir.fd,
                &name,
                OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    let f = File::from(fd);
                    let meta = f
                        .metadata()
                        .map_err(|e| HostError::new("read", real(), e))?;
                    if !meta.is_file() {
                        return Err(HostError::new(
                            "read",
                            real(),
                            io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!(
                                    "it is {}; tend reads only regular files",
                                    kind_word(meta.mode())
                                ),
                            ),
                        ));
                    }
                    return Ok(Some((f, meta)));
                }
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
                Err(Errno::LOOP) => {
                    walk::check_link(dir.fd.as_fd(), &name, &real())
                        .map_err(|e| HostError::new("read", self.real(path), e))?;
                    let target = rfs::readlinkat(&dir.fd, &name, Vec::new())
                        .map_err(|e| HostError::new("read the link", real(), e.into()))?;
                    let target =
                        PathBuf::from(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                            target.into_bytes(),
                        ));
                    // Relative targets continue from the link's directory; absolute ones from
                    // the root. Either way `components` keeps them inside it.
                    current = if target.is_absolute() {
                        target
                    } else {
                        let mut base = PathBuf::from("/");
                        base.extend(&dir.comps);
                        base.join(target)
                    };
                }
                Err(e) => return Err(HostError::new("read", real(), e.into())),
            }
        }
        Err(HostError::new(
            "read",
            self.real(path),
            io::Error::other("too many symlinks (a loop?)"),
        ))
    }

    /// The whole content of a regular file: `None` when it does not exist.
    pub fn read(&self, path: &Path) -> HostResult<Option<Vec<u8>>> {
        self.read_limited(path, MAX_READ)
    }

    /// Like [`Probe::read`], refusing a file larger than `limit` bytes.
    pub fn read_limited(&self, path: &Path, limit: u64) -> HostResult<Option<Vec<u8>>> {
        if let Some(after) = self.overlay.as_ref().and_then(|o| o.get(path)) {
            return match after {
                Some(bytes) if bytes.len() as u64 > limit => Err(HostError::new(
                    "read",
                    self.real(path),
                    io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        format!(
                            "{} bytes is more than the {limit} bytes tend reads of one file",
                            bytes.len()
                        ),
                    ),
                )),
                other => Ok(other.clone()),
            };
        }
        let Some((f, meta)) = self.open_regular(path)? else {
            return Ok(None);
        };
        let too_big = |size: u64| {
            HostError::new(
                "read",
                self.real(path),
                io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("{size} bytes is more than the {limit} bytes tend reads of one file"),
                ),
            )
        };
        if meta.len() > limit {
            return Err(too_big(meta.len()));
        }
        let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // One byte past the limit: a file that grew while being read is caught too.
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| HostError::new("read", self.real(path), e))?;
        if buf.len() as u64 > limit {
            return Err(too_big(buf.len() as u64));
        }
        Ok(Some(buf))
    }

    /// One look at a managed file, resolving its directory once: its `lstat`, its content when
    /// `want_content` and it is a regular file, and whether an interrupted write left its
    /// temporary beside it. What a no-op check of a file costs is this call.
    pub fn file_state(&self, path: &Path, want_content: bool) -> HostResult<FileState> {
        let Some((dir, name)) = self.cached_parent("inspect", path)? else {
            return Ok(FileState::default());
        };
        let real = || dir.shown_child(self.root(), &name);
        let mut tmp = OsString::from(TEMP_PREFIX);
        tmp.push(&name);
        let leftover = rfs::statat(&dir.fd, &tmp, AtFlags::SYMLINK_NOFOLLOW).is_ok();
        let opened = rfs::openat(
            &dir.fd,
            &name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                return Ok(FileState {
                    meta: None,
                    content: None,
                    leftover,
                })
            }
            // A regular file tend may not read (an audit as a user other than root): its content
            // is unknown, never "empty".
            Err(e @ (Errno::ACCESS | Errno::PERM))
                if want_content && self.metadata(path)?.is_some_and(|m| m.is_file()) =>
            {
                return Err(HostError::new("read", real(), e.into()));
            }
            // A symlink, a socket, or nothing readable: its lstat only.
            Err(_) => {
                return Ok(FileState {
                    meta: self.metadata(path)?,
                    content: None,
                    leftover,
                })
            }
        };
        let f = File::from(fd);
        let meta = f
            .metadata()
            .map_err(|e| HostError::new("inspect", real(), e))?;
        let content = if want_content && meta.is_file() {
            if meta.len() > MAX_READ {
                return Err(HostError::new(
                    "read",
                    real(),
                    io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        format!(
                            "{} bytes is more than the {MAX_READ} bytes tend reads of one file",
                            meta.len()
                        ),
                    ),
                ));
            }
            Some(read_sized(&f, meta.len()).map_err(|e| HostError::new("read", real(), e))?)
        } else {
            None
        };
        Ok(FileState {
            meta: Some(meta),
            content,
            leftover,
        })
    }

    /// The names in a directory, sorted; `None` when it does not exist.
    pub fn read_dir(&self, path: &Path) -> HostResult<Option<Vec<OsString>>> {
        let comps = components(path);
        let walker = Walker {
            root_fd: self.root_fd()?.as_fd(),
            root: self.root(),
            create: None,
        };
        let dir = match walker.dir(&comps) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(None),
            Err(e) => return Err(HostError::new("list", self.real(path), e)),
        };
        let fd = dir
            .reopen()
            .map_err(|e| HostError::new("list", self.real(path), e))?;
        let list =
            rfs::Dir::new(fd).map_err(|e| HostError::new("list", self.real(path), e.into()))?;
        let mut names = Vec::new();
        for entry in list {
            let entry = entry.map_err(|e| HostError::new("list", self.real(path), e.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                    name.to_vec(),
                ));
            }
        }
        names.sort();
        Ok(Some(names))
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

    /// The primary group of user `name` (the fourth field of its line in the root's
    /// `/etc/passwd`); `None` for a number or a user with no line.
    pub fn primary_gid(&self, name: &str) -> HostResult<Option<u32>> {
        let text = self
            .read_limited(Path::new("/etc/passwd"), 64 << 20)?
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&text).lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(name))
                .then(|| fields.nth(2).and_then(|g| g.parse().ok()))
                .flatten()
        }))
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
        let text = self
            .read_limited(&Path::new("/").join(rel), 64 << 20)
            .ok()
            .flatten()
            .unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| {
                let mut parts = l.split(':');
                let name = parts.next()?;
                let id = parts.nth(1)?.parse().ok()?;
                Some((name.to_string(), id))
            })
            .collect()
    }
}

/// What [`Probe::file_state`] saw.
#[derive(Debug, Default)]
pub struct FileState {
    /// `lstat` of the path; `None` when nothing is there.
    pub meta: Option<Metadata>,
    /// The content, when asked for and the path is a regular file.
    pub content: Option<Vec<u8>>,
    /// `.tend-tmp.NAME` exists beside it.
    pub leftover: bool,
}

/// Read and write access to the host. Only a held [`RunLock`] makes one: apply and restore take
/// the lock, plan never does.
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

/// A temporary written in `dir` (the fd the resolution opened), to be renamed over `name`.
#[derive(Debug)]
struct Pending {
    dir: Arc<OwnedFd>,
    tmp: OsString,
    name: OsString,
    real: PathBuf,
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
    /// Permission bits; `None` keeps (or defaults) them.
    pub mode: Option<u32>,
    /// Owner uid; `None` keeps it.
    pub uid: Option<u32>,
    /// Group gid; `None` keeps it.
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

fn errno(e: Errno) -> io::Error {
    e.into()
}

impl Mutate {
    /// Private to the host module: outside it, a [`RunLock`] mints the handle.
    fn new(probe: Probe) -> Mutate {
        Mutate {
            probe,
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

    /// The same handle writing at once, outside any batch: for a file another program must see
    /// before the wave ends (an ACME challenge the CA fetches while tend waits).
    pub fn immediate(&self) -> Mutate {
        Mutate {
            batch: None,
            ..self.clone()
        }
    }

    /// Whether the batch holds writes to commit.
    pub fn has_pending(&self) -> bool {
        self.batch
            .as_ref()
            .is_some_and(|b| b.pending.lock().map_or(true, |p| !p.is_empty()))
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
            if let Ok(st) = rfs::fstat(&*p.dir) {
                devices.entry(st.st_dev).or_insert_with(|| p.dir.clone());
            }
        }
        for (_, dir) in devices {
            let synced = reopen_dir(&dir).and_then(|d| rfs::syncfs(&d).map_err(errno));
            if let Err(e) = synced {
                errors.push(HostError::new("sync the filesystem of", "/", e));
                for p in &pending {
                    let _ = rfs::unlinkat(&*p.dir, &p.tmp, AtFlags::empty());
                }
                return errors;
            }
        }
        let mut dirs: HashMap<(u64, u64), Arc<OwnedFd>> = HashMap::new();
        for p in pending {
            match rfs::renameat(&*p.dir, &p.tmp, &*p.dir, &p.name) {
                Ok(()) => {
                    if let Ok(st) = rfs::fstat(&*p.dir) {
                        dirs.insert((st.st_dev, st.st_ino), p.dir.clone());
                    }
                }
                Err(e) => {
                    let _ = rfs::unlinkat(&*p.dir, &p.tmp, AtFlags::empty());
                    errors.push(HostError::new("write", p.real, e.into()));
                }
            }
        }
        for d in dirs.values() {
            if let Err(e) = reopen_dir(d).and_then(|f| rfs::fsync(&f).map_err(errno)) {
                errors.push(HostError::new("sync", "/", e));
            }
        }
        errors
    }

    /// Write one of tend's own files (a real path in the state directory: a provider's record),
    /// private, its missing parents made 0700.
    pub fn write_state_file(&self, real: &Path, bytes: &[u8]) -> HostResult<()> {
        write_state_file(real, bytes)
    }

    /// Remove one of tend's own files (a real path in the state directory) when it is there.
    pub fn remove_state_file(&self, real: &Path) -> HostResult<()> {
        match std::fs::symlink_metadata(real) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            _ => Mutate::new(Probe::new("/", self.state_dir())).remove_file(real),
        }
    }

    /// How many backups to keep per path (older ones are pruned).
    pub fn keep_backups(mut self, n: usize) -> Mutate {
        self.keep_backups = n;
        self
    }

    /// The read-only view this handle writes through.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// The parent of `path` for writing; a missing one is an error (create it first).
    fn parent_for_write(&self, op: &'static str, path: &Path) -> HostResult<(Dir, OsString)> {
        self.parent(op, path, None)?.ok_or_else(|| {
            HostError::new(
                op,
                self.real(path),
                io::Error::new(io::ErrorKind::NotFound, "its directory does not exist"),
            )
        })
    }

    /// Replace `path` atomically: a temporary file in the same directory (opened through the
    /// directory's fd), created with the final mode and owner before any byte is written,
    /// fsynced, renamed over the old one; then the directory is fsynced. A crash leaves the old
    /// file or the new one, never a mix. A symlink at `path` is replaced, never followed.
    pub fn write_atomic(&self, path: &Path, content: &[u8], attrs: Attrs) -> HostResult<()> {
        let real = self.real(path);
        let (dir, name) = self.parent_for_write("write", path)?;
        // One fixed temporary name per target: a run killed mid-write leaves at most this one
        // file, and the next write of the same target (runs hold the lock) replaces it.
        let mut tmp = OsString::from(TEMP_PREFIX);
        tmp.push(&name);
        let mode = attrs.mode.unwrap_or(DEFAULT_FILE_MODE);
        let dir_fd = Arc::new(dir.fd);
        let result = (|| -> io::Result<()> {
            // 0o600 at creation: nobody else can open it before the final owner and mode are
            // set. O_EXCL|O_NOFOLLOW: a symlink planted under the temporary name is not followed.
            let open = || {
                rfs::openat(
                    &*dir_fd,
                    &tmp,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
            };
            let fd = match open() {
                Err(Errno::EXIST) => {
                    rfs::unlinkat(&*dir_fd, &tmp, AtFlags::empty())?;
                    open()?
                }
                other => other?,
            };
            if attrs.uid.is_some() || attrs.gid.is_some() {
                rfs::fchown(&fd, attrs.uid.map(uid), attrs.gid.map(gid))?;
            }
            // After chown, which clears set-id bits; fchmod, so the umask plays no part.
            rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            let mut f = File::from(fd);
            f.write_all(content)?;
            if let Some(batch) = &self.batch {
                // Durability and the rename come at commit, for the whole batch at once.
                batch
                    .pending
                    .lock()
                    .map_err(|_| io::Error::other("batch lock poisoned"))?
                    .push(Pending {
                        dir: dir_fd.clone(),
                        tmp: tmp.clone(),
                        name: name.clone(),
                        real: real.clone(),
                    });
                return Ok(());
            }
            f.sync_all()?;
            drop(f);
            rfs::renameat(&*dir_fd, &tmp, &*dir_fd, &name)?;
            rfs::fsync(reopen_dir(&dir_fd)?)?;
            Ok(())
        })();
        result.map_err(|e| {
            let _ = rfs::unlinkat(&*dir_fd, &tmp, AtFlags::empty());
            HostError::new("write", real.clone(), e)
        })
    }

    /// Open an existing file or directory to change its attributes: never through a symlink,
    /// and only a regular file or a directory.
    fn open_existing(&self, op: &'static str, path: &Path) -> HostResult<OwnedFd> {
        let real = self.real(path);
        let (dir, name) = self.parent_for_write(op, path)?;
        let st = rfs::statat(&dir.fd, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| HostError::new(op, real.clone(), e.into()))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile && ft != FileType::Directory {
            return Err(HostError::new(
                op,
                real,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "it is {}; tend changes only regular files and directories",
                        kind_word(st.st_mode)
                    ),
                ),
            ));
        }
        let fd = rfs::openat(
            &dir.fd,
            &name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| HostError::new(op, real.clone(), e.into()))?;
        // The thing opened is the thing inspected: a swap in between is refused, not acted on.
        let now = rfs::fstat(&fd).map_err(|e| HostError::new(op, real.clone(), e.into()))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            return Err(HostError::new(
                op,
                real,
                io::Error::other("it was replaced while tend was changing it; run again"),
            ));
        }
        Ok(fd)
    }

    /// Set owner and group (when given) then mode (when given) of an existing path, all on one
    /// fd: chown first, since it clears set-id bits.
    pub fn set_attrs(
        &self,
        path: &Path,
        owner: Option<u32>,
        group: Option<u32>,
        mode: Option<u32>,
    ) -> HostResult<()> {
        let fd = self.open_existing("change the attributes of", path)?;
        if owner.is_some() || group.is_some() {
            rfs::fchown(&fd, owner.map(uid), group.map(gid))
                .map_err(|e| HostError::new("change the owner of", self.real(path), e.into()))?;
        }
        if let Some(mode) = mode {
            rfs::fchmod(&fd, Mode::from_raw_mode(mode))
                .map_err(|e| HostError::new("change the mode of", self.real(path), e.into()))?;
        }
        Ok(())
    }

    /// Set the permission bits of `path` (no symlink followed).
    pub fn set_mode(&self, path: &Path, mode: u32) -> HostResult<()> {
        self.set_attrs(path, None, None, Some(mode))
    }

    /// Set the owner and group of `path` (no symlink followed).
    pub fn set_owner(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> HostResult<()> {
        self.set_attrs(path, uid, gid, None)
    }

    /// Create a directory (and its missing parents, with the default mode).
    pub fn create_dir(&self, path: &Path, attrs: Attrs) -> HostResult<()> {
        let real = self.real(path);
        let (dir, name) = self
            .parent("create", path, Some(DEFAULT_DIR_MODE))?
            .ok_or_else(|| {
                HostError::new(
                    "create",
                    real.clone(),
                    io::Error::other("its parent cannot be created"),
                )
            })?;
        match rfs::mkdirat(&dir.fd, &name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(HostError::new("create", real, e.into())),
        }
        self.set_attrs(
            path,
            attrs.uid,
            attrs.gid,
            Some(attrs.mode.unwrap_or(DEFAULT_DIR_MODE)),
        )
    }

    /// Create the missing parents of `path` with the default directory mode.
    pub fn create_parents(&self, path: &Path) -> HostResult<()> {
        self.parent("create the parents of", path, Some(DEFAULT_DIR_MODE))
            .map(|_| ())
    }

    /// Remove a file (or a symlink: the link itself, never its target).
    pub fn remove_file(&self, path: &Path) -> HostResult<()> {
        let real = self.real(path);
        let (dir, name) = self.parent_for_write("remove", path)?;
        rfs::unlinkat(&dir.fd, &name, AtFlags::empty())
            .map_err(|e| HostError::new("remove", real.clone(), e.into()))?;
        reopen_dir(&dir.fd)
            .and_then(|d| rfs::fsync(&d).map_err(errno))
            .map_err(|e| HostError::new("sync", dir.shown(self.root()), e))
    }

    /// Remove an empty directory.
    pub fn remove_dir(&self, path: &Path) -> HostResult<()> {
        let real = self.real(path);
        let (dir, name) = self.parent_for_write("remove", path)?;
        rfs::unlinkat(&dir.fd, &name, AtFlags::REMOVEDIR)
            .map_err(|e| HostError::new("remove", real, e.into()))
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
            Some(m) if m.is_file() => {
                attrs.mode = attrs.mode.or(Some(mode_of(&m)));
                attrs.uid = attrs.uid.or(Some(m.uid()));
                attrs.gid = attrs.gid.or(Some(m.gid()));
                self.backup(path)?
            }
            Some(m) => {
                return Err(HostError::new(
                    "replace",
                    self.real(path),
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "it is {}; tend replaces only regular files",
                            kind_word(m.mode())
                        ),
                    ),
                ))
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
    /// removed: `backups/<sha256>` (content-addressed, mode 0600), recorded with the file's mode
    /// and owner in the path's index; only the newest `keep_backups` entries of a path are kept,
    /// and contents no index names any more are deleted. Returns the backup, or `None` when there
    /// is no file.
    pub fn backup(&self, path: &Path) -> HostResult<Option<PathBuf>> {
        let Some((f, meta)) = self.open_regular_nofollow(path)? else {
            return Ok(None);
        };
        let mut old = Vec::new();
        f.take(MAX_READ)
            .read_to_end(&mut old)
            .map_err(|e| HostError::new("read", self.real(path), e))?;
        let sum = sha256_hex(&old);
        let store = BackupStore::new(self.state_dir());
        let dest = store.store(&sum, &old)?;
        let entry = BackupEntry {
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            sha256: sum,
            mode: Some(mode_of(&meta)),
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
        };
        store.record(&self.real(path), entry, self.keep_backups)?;
        Ok(Some(dest))
    }

    /// The managed file itself (never through a symlink at its name): `None` when absent.
    fn open_regular_nofollow(&self, path: &Path) -> HostResult<Option<(File, Metadata)>> {
        match self.metadata(path)? {
            None => Ok(None),
            Some(m) if m.file_type().is_symlink() => Ok(None),
            Some(_) => self.open_regular(path),
        }
    }
}

fn reopen_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn uid(raw: u32) -> rfs::Uid {
    rfs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rfs::Gid {
    rfs::Gid::from_raw(raw)
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

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`, by table: `format!` per byte was a tenth of a manifest's load.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
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
    use std::fs;
    use std::io::Seek;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn hex_and_sha256_are_lower_case_and_zero_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff, 0xa5]), "000ff0ffa5");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_sized_read_gets_the_whole_file_whatever_size_it_was_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        for content in [&b""[..], b"x", b"hello\n", &[7u8; 100_000][..]] {
            fs::write(&p, content).expect("w");
            let f = File::open(&p).expect("open");
            // The size fstat gave, a size from before it grew, and one from before it shrank.
            for told in [content.len() as u64, 0, 3, content.len() as u64 + 10] {
                let f = f.try_clone().expect("clone");
                (&f).seek(io::SeekFrom::Start(0)).expect("seek");
                assert_eq!(read_sized(&f, told).expect("read"), content, "told {told}");
            }
        }
    }

    #[test]
    fn a_user_symlink_among_the_parents_is_refused_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("protected")).expect("mkdir");
        fs::write(root.join("protected/config"), "secret").expect("w");
        fs::create_dir(root.join("u")).expect("mkdir");
        std::os::unix::fs::symlink("/protected", root.join("u/app")).expect("ln");
        std::os::unix::fs::lchown(root.join("u/app"), Some(65534), Some(65534)).expect("chown");
        let m = Mutate::new(Probe::new(root, root.join("state")));
        let err = m
            .set_mode(Path::new("/u/app/config"), 0o666)
            .expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("u/app is a symlink owned by uid 65534"),
            "{msg}"
        );
        let err = m.read(Path::new("/u/app/config")).expect_err("read too");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(
            fs::metadata(root.join("protected/config"))
                .expect("m")
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
    }

    #[test]
    fn roots_symlinks_are_followed_inside_the_root_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("run")).expect("mkdir");
        fs::create_dir_all(root.join("var")).expect("mkdir");
        // As every Debian root has: /var/run -> /run (absolute, resolved inside the root).
        std::os::unix::fs::symlink("/run", root.join("var/run")).expect("ln");
        let m = Mutate::new(Probe::new(root, root.join("state")));
        m.write_atomic(Path::new("/var/run/x.pid"), b"1", Attrs::default())
            .expect("write through the root's own link");
        assert_eq!(fs::read(root.join("run/x.pid")).expect("r"), b"1");
        // A relative link climbing out is clamped at the root.
        std::os::unix::fs::symlink("../../../../../../run", root.join("var/up")).expect("ln");
        assert_eq!(
            m.read(Path::new("/var/up/x.pid")).expect("read"),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let p = Probe::new(root, root.join("state"));
        let err = p.read(Path::new("/pipe")).expect_err("fifo");
        assert!(err.to_string().contains("it is a FIFO"), "{err}");
    }

    #[test]
    fn created_parents_get_0755_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let m = Mutate::new(Probe::new(root, root.join("state")));
        m.create_parents(Path::new("/a/b/c")).expect("parents");
        for d in ["a", "a/b"] {
            let mode = fs::metadata(root.join(d)).expect("m").permissions().mode();
            assert_eq!(mode & 0o7777, 0o755, "{d}");
        }
    }

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
