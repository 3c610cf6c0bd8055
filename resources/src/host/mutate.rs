//! [`Mutate`]: changing the host — atomic writes (batched or at once), modes, owners, removal,
//! backups — on the fds a [`Probe`]'s resolution opened.

// The filesystem seam (see the host module).
#![allow(clippy::disallowed_methods)]

use super::*;

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

pub(super) fn errno(e: Errno) -> io::Error {
    e.into()
}

impl Mutate {
    /// Private to the host module: outside it, a [`RunLock`] mints the handle.
    pub(super) fn new(probe: Probe) -> Mutate {
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
    pub(super) fn parent_for_write(
        &self,
        op: &'static str,
        path: &Path,
    ) -> HostResult<(Dir, OsString)> {
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

pub(super) fn reopen_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

pub(super) fn uid(raw: u32) -> rfs::Uid {
    rfs::Uid::from_raw(raw)
}

pub(super) fn gid(raw: u32) -> rfs::Gid {
    rfs::Gid::from_raw(raw)
}
