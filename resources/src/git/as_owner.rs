//! A checkout that belongs to a user is read and written *as that user*. libgit2 works by path
//! and follows whatever the work tree holds — a link the user planted where the next tag adds a
//! directory, a tracked file swapped for a link to a root file. Run as root, that is root
//! writing where the user points. So every libgit2 call on an owned checkout runs with the
//! calling thread's filesystem identity set to the owner (`setfsuid`/`setfsgid`, per thread on
//! Linux; the kernel drops the filesystem capabilities with it): the kernel then refuses exactly
//! what the user could not do themselves, and what libgit2 creates is theirs. Root's identity
//! comes back when the guard drops, before anything else runs on the thread.

use nix::unistd::{geteuid, setfsgid, setfsuid, Gid, Uid};

use crate::resource::ResourceError;

/// While alive, the thread's filesystem identity is the checkout owner's.
pub(super) struct AsOwner {
    active: bool,
}

impl AsOwner {
    /// Act as `ids` (uid, gid) on this thread; as root when `None`. A run that is not root has
    /// no privilege to lend and stays as it is.
    pub(super) fn enter(ids: Option<(u32, u32)>) -> Result<AsOwner, ResourceError> {
        let Some((uid, gid)) = ids else {
            return Ok(AsOwner { active: false });
        };
        if !geteuid().is_root() {
            return Ok(AsOwner { active: false });
        }
        setfsgid(Gid::from_raw(gid));
        setfsuid(Uid::from_raw(uid));
        let guard = AsOwner { active: true };
        // setfsuid reports failure only through the identity it leaves: ask again.
        if setfsuid(Uid::from_raw(uid)) != Uid::from_raw(uid)
            || setfsgid(Gid::from_raw(gid)) != Gid::from_raw(gid)
        {
            return Err(ResourceError::Failed(format!(
                "cannot act as uid {uid} (gid {gid}) to work on the checkout; nothing was touched"
            )));
        }
        Ok(guard)
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        if self.active {
            setfsuid(Uid::from_raw(0));
            setfsgid(Gid::from_raw(0));
        }
    }
}
