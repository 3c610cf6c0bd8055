//! Symlinks tend makes, and kernel parameters it sets. Symlinks: created under a temporary name in the link's directory (through its fd),
//! owned as asked without following it, then renamed over whatever was there — a reader sees
//! the old entry or the new link, never nothing.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;

use super::{gid, reopen_dir, uid, HostError, HostResult, Mutate, DEFAULT_DIR_MODE, TEMP_PREFIX};

impl Mutate {
    /// Make `path` a symlink to `target` (as written, never resolved), owned by `owner`/`group`
    /// when given (the link itself, `lchown`); missing parents are created. A symlink or a file
    /// at `path` is replaced atomically; a directory there must be removed first.
    pub fn symlink(
        &self,
        path: &Path,
        target: &Path,
        owner: Option<u32>,
        group: Option<u32>,
    ) -> HostResult<()> {
        let real = self.real(path);
        let (dir, name) = self
            .parent("link", path, Some(DEFAULT_DIR_MODE))?
            .ok_or_else(|| {
                HostError::new(
                    "link",
                    real.clone(),
                    io::Error::other("its parent cannot be created"),
                )
            })?;
        let mut tmp = OsString::from(TEMP_PREFIX);
        tmp.push(&name);
        let result = (|| -> io::Result<()> {
            let make = || rfs::symlinkat(target, &dir.fd, &tmp);
            match make() {
                Err(Errno::EXIST) => {
                    rfs::unlinkat(&dir.fd, &tmp, AtFlags::empty())?;
                    make()?
                }
                other => other?,
            }
            if owner.is_some() || group.is_some() {
                rfs::chownat(
                    &dir.fd,
                    &tmp,
                    owner.map(uid),
                    group.map(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            rfs::renameat(&dir.fd, &tmp, &dir.fd, &name)?;
            rfs::fsync(reopen_dir(&dir.fd)?)?;
            Ok(())
        })();
        result.map_err(|e| {
            let _ = rfs::unlinkat(&dir.fd, &tmp, AtFlags::empty());
            HostError::new("link", real, e)
        })
    }

    /// Set the owner and group of the symlink at `path` itself (never its target).
    pub fn set_link_owner(
        &self,
        path: &Path,
        owner: Option<u32>,
        group: Option<u32>,
    ) -> HostResult<()> {
        let (dir, name) = self.parent_for_write("change the owner of", path)?;
        rfs::chownat(
            &dir.fd,
            &name,
            owner.map(uid),
            group.map(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| HostError::new("change the owner of", self.real(path), e.into()))
    }
}

impl Mutate {
    /// Set a kernel parameter through `/proc/sys` (the running kernel's, never under `--root`):
    /// `key_path` is the parameter's path under `/proc/sys` (`net/ipv4/ip_forward`).
    pub fn set_sysctl(&self, key_path: &Path, value: &str) -> HostResult<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let real = Path::new("/proc/sys").join(key_path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&real)
            .map_err(|e| HostError::new("set", real.clone(), e))?;
        f.write_all(format!("{value}\n").as_bytes())
            .map_err(|e| HostError::new("set", real, e))
    }
}
