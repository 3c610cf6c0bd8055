//! Who a checkout belongs to, and whether anyone else could change the way to it. A checkout
//! with an `owner` is worked on as that owner ([`super::as_owner`]); one without is root's, and
//! root's work tree must sit where only root can rename or plant anything: a directory on the
//! way that another user can write (their home, a group-writable `/srv`) could hand libgit2 a
//! repository and links of theirs, which root would then write through. Such a checkout is
//! refused, in plan and apply, naming the directory and who can change it.

use super::*;

impl Spec {
    /// The owner's uid and the gid files are created with (`group`, else the owner's primary
    /// group, else root's), when the checkout has an owner.
    pub(super) fn owner_ids(&self, host: &Probe) -> Result<Option<(u32, u32)>, ResourceError> {
        let Some(owner) = &self.owner else {
            return Ok(None);
        };
        let uid = host.uid(owner)?;
        let gid = match &self.group {
            Some(g) => host.gid(g)?,
            None => host.primary_gid(owner)?.unwrap_or(0),
        };
        Ok(Some((uid, gid)))
    }

    pub(super) fn refuse_shared_parents(
        &self,
        host: &Probe,
        ids: Option<(u32, u32)>,
    ) -> Result<(), ResourceError> {
        let Some(w) = host.other_writer(&self.path, ids)? else {
            return Ok(());
        };
        let whose = match &self.owner {
            Some(o) => format!("root and {o} (the owner)"),
            None => "root".to_string(),
        };
        Err(failed(format!(
            "{} is {}: only {whose} may be able to change the directories a checkout lies in, or \
             the checkout could be swapped for another repository and links that tend would write \
             through; nothing was touched. Set `owner` to the user who owns that directory, or \
             move the checkout",
            w.path.display(),
            w.who
        )))
    }
}
