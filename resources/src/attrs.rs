//! Mode, owner and group: one helper shared by every kind that manages a path, so `file`,
//! `directory` and later kinds check and fix these aspects the same way.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::change::{Change, Drift};
use crate::host::{fmt_mode, mode_of, Attrs, Mutate, Probe};
use crate::resource::ResourceError;
use crate::spec::{Fields, SpecError};

/// The `mode`, `owner` and `group` fields; each is managed only when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ownership {
    /// Permission bits, when managed.
    pub mode: Option<u32>,
    /// Owner (name or numeric id), when managed.
    pub owner: Option<String>,
    /// Group (name or numeric id), when managed.
    pub group: Option<String>,
}

impl Ownership {
    /// Read `mode`, `owner` and `group` from a resource's fields.
    pub(crate) fn from_fields(fields: &mut Fields<'_>) -> Result<Ownership, SpecError> {
        Ok(Ownership {
            mode: fields.mode("mode")?,
            owner: fields.string("owner")?.map(|(t, _)| t.value),
            group: fields.string("group")?.map(|(t, _)| t.value),
        })
    }

    /// The ids and mode wanted, resolved against the host's user and group databases.
    pub(crate) fn resolve(&self, host: &Probe) -> Result<Attrs, ResourceError> {
        Ok(Attrs {
            mode: self.mode,
            uid: self.owner.as_deref().map(|o| host.uid(o)).transpose()?,
            gid: self.group.as_deref().map(|g| host.gid(g)).transpose()?,
        })
    }

    /// Add a change for each managed aspect that differs on an existing path.
    pub(crate) fn check(
        &self,
        host: &Probe,
        meta: &Metadata,
        drift: &mut Drift,
    ) -> Result<(), ResourceError> {
        let want = self.resolve(host)?;
        if let Some(mode) = want.mode {
            if mode_of(meta) != mode {
                drift.push(Change::new(
                    "mode",
                    Some(fmt_mode(mode_of(meta))),
                    Some(fmt_mode(mode)),
                ));
            }
        }
        if let (Some(uid), Some(name)) = (want.uid, &self.owner) {
            if meta.uid() != uid {
                drift.push(Change::new(
                    "owner",
                    Some(meta.uid().to_string()),
                    Some(id_label(name, uid)),
                ));
            }
        }
        if let (Some(gid), Some(name)) = (want.gid, &self.group) {
            if meta.gid() != gid {
                drift.push(Change::new(
                    "group",
                    Some(meta.gid().to_string()),
                    Some(id_label(name, gid)),
                ));
            }
        }
        Ok(())
    }

    /// Fix the aspects named in `drift` on an existing path (owner first: chown clears set-id bits).
    pub(crate) fn apply(
        &self,
        host: &Mutate,
        path: &Path,
        drift: &Drift,
    ) -> Result<(), ResourceError> {
        let want = self.resolve(host)?;
        let uid = want.uid.filter(|_| drift.touches("owner"));
        let gid = want.gid.filter(|_| drift.touches("group"));
        // The mode again after a chown, which clears set-id bits; one fd for both.
        let mode = want
            .mode
            .filter(|_| drift.touches("mode") || uid.is_some() || gid.is_some());
        if uid.is_some() || gid.is_some() || mode.is_some() {
            host.set_attrs(path, uid, gid, mode)?;
        }
        Ok(())
    }

    /// Short words for a creation line: "mode 0600, owner www-data".
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.mode {
            parts.push(format!("mode {}", fmt_mode(m)));
        }
        if let Some(o) = &self.owner {
            parts.push(format!("owner {o}"));
        }
        if let Some(g) = &self.group {
            parts.push(format!("group {g}"));
        }
        parts.join(", ")
    }
}

fn id_label(name: &str, id: u32) -> String {
    if name == id.to_string() {
        name.to_string()
    } else {
        format!("{id} ({name})")
    }
}
