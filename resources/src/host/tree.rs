//! Whole directory trees that other users may share with tend: who besides root could change
//! the way to a path, and ownership set on every entry of a tree by fds — `openat(O_NOFOLLOW |
//! O_DIRECTORY)` down from the fd above, `fchownat(AT_SYMLINK_NOFOLLOW)` relative to it — so a
//! user racing the walk with a symlink makes it skip or fail, never act outside the tree
//! (systemd-tmpfiles' walks).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::walk::{components, Walker};
use super::{gid, uid, HostError, HostResult, Mutate, Probe};

/// A tree larger than this is refused rather than walked: a checkout is thousands of entries.
const MAX_ENTRIES: usize = 2_000_000;

/// Someone other than root (or the trusted user) who can change a directory on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherWriter {
    /// The directory's real path.
    pub path: PathBuf,
    /// Who can change it, in words (`owned by uid 65534`, `group-writable (gid 100)`).
    pub who: String,
}

impl Probe {
    /// The first directory from the root down to `path` (included, when it is a directory) that
    /// a user other than root or `trusted` (a uid and gid) could change — rename what it holds,
    /// plant a link in it. `None` when only they can.
    pub fn other_writer(
        &self,
        path: &Path,
        trusted: Option<(u32, u32)>,
    ) -> HostResult<Option<OtherWriter>> {
        let comps = components(path);
        let walker = Walker {
            root_fd: self.root_fd()?.as_fd(),
            root: self.root(),
            create: None,
        };
        for depth in 0..=comps.len() {
            let dir = match walker.dir(&comps[..depth]) {
                Ok(Some(dir)) => dir,
                Ok(None) => break,
                Err(e)
                    if depth == comps.len()
                        && e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
                {
                    break
                }
                Err(e) => return Err(HostError::new("inspect", self.real(path), e)),
            };
            let st = rfs::fstat(&dir.fd)
                .map_err(|e| HostError::new("inspect", dir.shown(self.root()), e.into()))?;
            let trusted_uid = |u: u32| u == 0 || trusted.is_some_and(|(t, _)| t == u);
            let trusted_gid = |g: u32| g == 0 || trusted.is_some_and(|(_, t)| t == g);
            let who = if !trusted_uid(st.st_uid) {
                Some(format!("owned by uid {}", st.st_uid))
            } else if st.st_mode & 0o002 != 0 {
                Some(format!(
                    "writable by everyone (mode {:04o})",
                    st.st_mode & 0o7777
                ))
            } else if st.st_mode & 0o020 != 0 && !trusted_gid(st.st_gid) {
                Some(format!("writable by group {}", st.st_gid))
            } else {
                None
            };
            if let Some(who) = who {
                return Ok(Some(OtherWriter {
                    path: dir.shown(self.root()),
                    who,
                }));
            }
        }
        Ok(None)
    }
}

impl Mutate {
    /// Set the owner and group (when given) of `dir` and everything under it, following no
    /// symlink (a link's own owner changes, never its target's) and acting only through fds
    /// opened from the one above: a directory swapped for a link mid-walk is not entered.
    pub fn chown_tree(&self, dir: &Path, owner: Option<u32>, group: Option<u32>) -> HostResult<()> {
        let real = self.real(dir);
        let fail =
            |op: &'static str, at: &Path, e: Errno| HostError::new(op, at.to_path_buf(), e.into());
        let top = self.open_dir_nofollow(dir)?;
        rfs::fchown(&top, owner.map(uid), group.map(gid))
            .map_err(|e| fail("change the owner of", &real, e))?;
        let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(top, real)];
        let mut seen = 0usize;
        while let Some((fd, shown)) = stack.pop() {
            let names = list(&fd).map_err(|e| fail("list", &shown, e))?;
            for name in names {
                seen += 1;
                if seen > MAX_ENTRIES {
                    return Err(HostError::new(
                        "change the owner of",
                        shown,
                        io::Error::other(format!("more than {MAX_ENTRIES} entries")),
                    ));
                }
                let at = shown.join(&name);
                match rfs::chownat(
                    &fd,
                    &name,
                    owner.map(uid),
                    group.map(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                ) {
                    Ok(()) => {}
                    // Removed while walked: nothing left to own.
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(fail("change the owner of", &at, e)),
                }
                let st = match rfs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(fail("inspect", &at, e)),
                };
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    continue;
                }
                match rfs::openat(
                    &fd,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(child) => stack.push((child, at)),
                    // Swapped for a link or removed since the stat: not followed.
                    Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => {}
                    Err(e) => return Err(fail("open", &at, e)),
                }
            }
        }
        Ok(())
    }
}

impl Probe {
    /// A readable fd of the directory at `path`, itself no symlink (its parents resolved as
    /// every path is).
    fn open_dir_nofollow(&self, path: &Path) -> HostResult<OwnedFd> {
        let real = self.real(path);
        let (dir, name) = self.parent("open", path, None)?.ok_or_else(|| {
            HostError::new(
                "open",
                real.clone(),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        rfs::openat(
            &dir.fd,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| HostError::new("open", real, e.into()))
    }
}

/// The names in a directory (not `.` and `..`).
fn list(fd: &OwnedFd) -> Result<Vec<OsString>, Errno> {
    let mut dir = rfs::Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                name.to_vec(),
            ));
        }
    }
    Ok(names)
}
