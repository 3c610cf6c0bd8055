//! Path resolution that another local user cannot redirect.
//!
//! tend runs as root among users it does not trust. A path such as `/srv/app/config` is never
//! handed to the kernel whole: it is resolved from a directory fd of the root (`/`, or `--root
//! DIR`), one component at a time, and every later operation (`fstatat`, `openat`, `renameat`,
//! `unlinkat`, `mkdirat`, `fchmod`, `fchown`) acts on the fd of the parent that this walk opened —
//! a name is never resolved again from `/` after it was checked.
//!
//! Symlinks: the common case (no symlink at all) is one `openat2` with `RESOLVE_NO_SYMLINKS |
//! RESOLVE_BENEATH`. When that refuses, the walk goes component by component and follows a
//! symlink only when nobody but root could have put it there: the link is owned by root and so is
//! its directory, which nobody else can write (or which is sticky, like `/tmp`). That keeps a
//! Debian system's own layout working (`/lib -> usr/lib`, `/var/run -> /run`) and refuses the
//! link a user planted in a directory they own. A followed link is resolved inside the root, as
//! `RESOLVE_IN_ROOT` would: an absolute target starts again at the root, and `..` never climbs
//! above it. The last component of a path tend manages is never followed by writes.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed in one resolution before it is called a loop (Linux's own limit).
const MAX_HOPS: usize = 40;

/// `openat2` is missing on kernels before 5.6 and under some seccomp profiles: then every
/// resolution takes the component-by-component walk, which gives the same answers.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The lexical components of a host path: `.` dropped, `..` pops (never above the root), the
/// root itself dropped — the way a chroot reads a path.
pub(crate) fn components(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A resolved directory: its fd (`O_PATH`, enough for `*at` calls and `fstat`) and the
/// components that lead to it from the root, symlinks already resolved.
#[derive(Debug)]
pub(crate) struct Dir {
    pub fd: OwnedFd,
    pub comps: Vec<OsString>,
}

impl Dir {
    /// The real path of this directory (for messages and for tools that need a path).
    pub(super) fn shown(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        p.extend(&self.comps);
        p
    }

    /// The real path of `name` inside this directory.
    pub(super) fn shown_child(&self, root: &Path, name: &OsStr) -> PathBuf {
        self.shown(root).join(name)
    }

    /// A read-capable fd of the directory (fsync, listing), opened from this one: `O_PATH` fds
    /// cannot be synced.
    pub(super) fn reopen(&self) -> io::Result<OwnedFd> {
        Ok(rfs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }
}

/// What a resolution needs to know about the tree it walks.
pub(crate) struct Walker<'a> {
    pub root_fd: BorrowedFd<'a>,
    pub root: &'a Path,
    /// Create missing directories with this mode (exactly: umask does not apply).
    pub create: Option<u32>,
}

/// Why a path could not be resolved safely.
pub(crate) fn refusal(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

fn is_trusted_dir(st: &rfs::Stat) -> bool {
    let mode = st.st_mode;
    st.st_uid == 0 && (mode & 0o022 == 0 || mode & 0o1000 != 0)
}

/// Whether a symlink at `name` in `dir` is one tend may follow (see the module docs); `Err`
/// explains the refusal.
pub(crate) fn check_link(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> io::Result<()> {
    let link = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let parent = rfs::fstat(dir)?;
    if link.st_uid == 0 && is_trusted_dir(&parent) {
        return Ok(());
    }
    let who = if link.st_uid != 0 {
        format!("owned by uid {}", link.st_uid)
    } else {
        format!(
            "in a directory that uid {} or others can change (mode {:04o})",
            parent.st_uid,
            parent.st_mode & 0o7777
        )
    };
    Err(refusal(format!(
        "{} is a symlink {who}, who could point it anywhere; tend follows only symlinks that \
         root owns in directories only root can change: replace it with the real directory or \
         name the real path in the manifest",
        shown.display()
    )))
}

/// The components of a symlink's target.
fn link_target(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(bool, Vec<OsString>)> {
    let target = rfs::readlinkat(dir, name, Vec::new())?;
    let bytes = target.into_bytes();
    let absolute = bytes.first() == Some(&b'/');
    let comps = bytes
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect();
    Ok((absolute, comps))
}

impl Walker<'_> {
    /// The directory at `comps`, or `None` when some component does not exist or is not a
    /// directory (and `create` is off). A symlink tend may not follow is an error naming it.
    pub(super) fn dir(&self, comps: &[OsString]) -> io::Result<Option<Dir>> {
        if comps.is_empty() {
            let fd = rfs::openat(
                self.root_fd,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            return Ok(Some(Dir {
                fd,
                comps: Vec::new(),
            }));
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let mut rel = OsString::new();
            for (i, c) in comps.iter().enumerate() {
                if i > 0 {
                    rel.push("/");
                }
                rel.push(c);
            }
            match rfs::openat2(
                self.root_fd,
                rel.as_bytes(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => {
                    return Ok(Some(Dir {
                        fd,
                        comps: comps.to_vec(),
                    }))
                }
                Err(Errno::NOSYS) | Err(Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // Missing, a symlink, not a directory: the walk finds out which, and creates,
                // follows or explains.
                Err(_) => {}
            }
        }
        self.walk(comps)
    }

    fn walk(&self, comps: &[OsString]) -> io::Result<Option<Dir>> {
        let mut stack: Vec<OwnedFd> = vec![rfs::openat(
            self.root_fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?];
        let mut resolved: Vec<OsString> = Vec::new();
        let mut queue: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                if stack.len() > 1 {
                    stack.pop();
                    resolved.pop();
                }
                continue;
            }
            if c.is_empty() || c == "." {
                continue;
            }
            let Some(cur) = stack.last() else {
                return Err(io::Error::other("path walk lost its root"));
            };
            let shown = || {
                let mut p = self.root.to_path_buf();
                p.extend(&resolved);
                p.join(&c)
            };
            match open_dir(cur.as_fd(), &c) {
                Ok(fd) => {
                    stack.push(fd);
                    resolved.push(c);
                }
                Err(Errno::NOENT) => {
                    let Some(mode) = self.create else {
                        return Ok(None);
                    };
                    match rfs::mkdirat(cur, c.as_os_str(), Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(io::Error::new(
                                io::Error::from(e).kind(),
                                format!("cannot create {}: {e}", shown().display()),
                            ))
                        }
                    }
                    // Opened with O_NOFOLLOW: a symlink raced in under the new name is refused.
                    let fd = rfs::openat(
                        cur,
                        c.as_os_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    // The exact mode, whatever the process umask.
                    rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
                    stack.push(fd);
                    resolved.push(c);
                }
                Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                    let st = rfs::statat(cur, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                        if self.create.is_some() {
                            return Err(io::Error::new(
                                io::ErrorKind::NotADirectory,
                                format!("{} is in the way: not a directory", shown().display()),
                            ));
                        }
                        return Ok(None);
                    }
                    check_link(cur.as_fd(), &c, &shown())?;
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(refusal(format!(
                            "{}: more than {MAX_HOPS} symlinks (a loop?)",
                            shown().display()
                        )));
                    }
                    let (absolute, target) = link_target(cur.as_fd(), &c)?;
                    if absolute {
                        stack.truncate(1);
                        resolved.clear();
                    }
                    for t in target.into_iter().rev() {
                        queue.push_front(t);
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot open {}: {e}", shown().display()),
                    ))
                }
            }
        }
        let fd = match stack.pop() {
            Some(fd) => fd,
            None => return Err(io::Error::other("path walk lost its root")),
        };
        Ok(Some(Dir {
            fd,
            comps: resolved,
        }))
    }
}

/// One step of the walk: a directory, never through a symlink.
fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(fd)
}

/// What an `lstat` of a name says a thing is, in words for messages.
pub(crate) fn kind_word(mode: u32) -> &'static str {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "an unknown kind of file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_lexical_and_stay_under_the_root() {
        let c = |p: &str| {
            components(Path::new(p))
                .into_iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(c("/etc/motd"), ["etc", "motd"]);
        assert_eq!(c("/../../etc/passwd"), ["etc", "passwd"]);
        assert_eq!(c("/a/./b/../c"), ["a", "c"]);
        assert!(c("/").is_empty());
    }
}
