//! [`Probe`]: reading the host under its root, by fds, following no link another user planted.

// The filesystem seam (see the host module).
#![allow(clippy::disallowed_methods)]

use super::*;

/// A regular file's content, read in one `read` when it is the size `fstat` gave: asking for one
/// byte more and getting exactly `size` is the end of the file, without the second, empty read
/// `read_to_end` makes to see it. A file that grew since is read on to its end (up to
/// [`MAX_READ`]); a short read before `size` continues like any read loop.
pub(super) fn read_sized(f: &File, size: u64) -> io::Result<Vec<u8>> {
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

    pub(super) fn root_fd(&self) -> HostResult<&OwnedFd> {
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
    pub(super) fn parent(
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
    pub(super) fn open_regular(&self, path: &Path) -> HostResult<Option<(File, Metadata)>> {
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
        let Some(mut names) = self.dir_names(path, usize::MAX)? else {
            return Ok(None);
        };
        names.sort();
        Ok(Some(names))
    }

    /// How many entries a directory holds, counting no further than `max` (a directory someone
    /// filled with millions is not listed to learn that it is not empty); `None` when it does
    /// not exist.
    pub fn count_entries(&self, path: &Path, max: usize) -> HostResult<Option<usize>> {
        Ok(self.dir_names(path, max)?.map(|n| n.len()))
    }

    /// At most `max` names of a directory, in the order the filesystem gives them.
    fn dir_names(&self, path: &Path, max: usize) -> HostResult<Option<Vec<OsString>>> {
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
            if names.len() >= max {
                break;
            }
            let entry = entry.map_err(|e| HostError::new("list", self.real(path), e.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                    name.to_vec(),
                ));
            }
        }
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
