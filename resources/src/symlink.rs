//! `symlink`: a symbolic link to a given target (as written: relative targets stay relative),
//! owned as asked, or its absence. A wrong link is replaced atomically; a regular file or an
//! empty directory in its place only with `force = true` (a file's content is backed up first);
//! anything else is a failure.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::change::{Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `symlink` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "symlink",
    summary: "a symbolic link to a target, with its owner, or absent",
    build,
    prune: Some(crate::prune::FILES),
};

/// A `symlink` resource, as its manifest table declared it.
#[derive(Debug)]
pub(crate) struct Symlink {
    path: PathBuf,
    target: PathBuf,
    owner: Option<String>,
    group: Option<String>,
    force: bool,
    present: bool,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (path, _) = f.required_path("path")?;
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    let target = match f.string("target")? {
        Some((t, span)) => {
            if t.value.is_empty() || t.value.contains('\0') {
                return Err(SpecError::new(span, "target is empty or holds a NUL byte"));
            }
            Some(PathBuf::from(t.value))
        }
        None => None,
    };
    let owner = f.string("owner")?.map(|(t, _)| t.value);
    let group = f.string("group")?.map(|(t, _)| t.value);
    let force = f.bool("force")?.unwrap_or(false);
    let target = match (target, present) {
        (Some(t), true) => t,
        (None, false) => PathBuf::new(),
        (None, true) => {
            return Err(
                SpecError::new(f.table_span(), format!("{} has no `target`", f.address()))
                    .help("target = \"/path/it/points/to\" (relative targets are kept as written)"),
            )
        }
        (Some(_), false) => {
            return Err(SpecError::new(
                f.span_of("target"),
                format!("{} is absent and has a target", f.address()),
            )
            .help("an absent link has no target: remove it"))
        }
    };
    Ok(Arc::new(Symlink {
        path,
        target,
        owner,
        group,
        force,
        present,
    }))
}

impl Symlink {
    fn ids(&self, host: &Probe) -> Result<(Option<u32>, Option<u32>), ResourceError> {
        Ok((
            self.owner.as_deref().map(|o| host.uid(o)).transpose()?,
            self.group.as_deref().map(|g| host.gid(g)).transpose()?,
        ))
    }

    fn shown(&self, host: &Probe) -> String {
        host.real(&self.path).display().to_string()
    }
}

#[async_trait]
impl Resource for Symlink {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        let meta = host.metadata(&self.path)?;
        let target = self.target.display().to_string();
        if !self.present {
            match meta {
                None => {}
                Some(m) if m.file_type().is_symlink() => {
                    drift.push(Change::removed("state", "present").described("remove"))
                }
                Some(_) => {
                    return Err(ResourceError::Refused(format!(
                        "{} is not a symlink; an absent `symlink` removes only links",
                        self.shown(host)
                    )))
                }
            }
            return Ok(drift);
        }
        let (uid, gid) = self.ids(host)?;
        let Some(m) = meta else {
            drift.push(Change::created("state", "present").described(format!("create → {target}")));
            return Ok(drift);
        };
        let ft = m.file_type();
        if ft.is_symlink() {
            let now = host.read_link(&self.path)?.unwrap_or_default();
            if now != self.target {
                drift.push(Change::new(
                    "target",
                    Some(now.display().to_string()),
                    Some(target),
                ));
            }
            if uid.is_some_and(|u| u != m.uid()) {
                drift.push(Change::new(
                    "owner",
                    Some(m.uid().to_string()),
                    self.owner.clone(),
                ));
            }
            if gid.is_some_and(|g| g != m.gid()) {
                drift.push(Change::new(
                    "group",
                    Some(m.gid().to_string()),
                    self.group.clone(),
                ));
            }
            return Ok(drift);
        }
        let what = if ft.is_file() {
            "a regular file"
        } else if ft.is_dir() {
            "a directory"
        } else {
            return Err(ResourceError::Refused(format!(
                "{} exists and is neither a link, a regular file nor a directory",
                self.shown(host)
            )));
        };
        if !self.force {
            return Err(ResourceError::Refused(format!(
                "{} is {what}, not a symlink; set force = true to replace it with the link{}",
                self.shown(host),
                if ft.is_file() {
                    " (its content is backed up first)"
                } else {
                    " (only an empty directory is replaced)"
                }
            )));
        }
        if ft.is_dir() {
            let entries = host.read_dir(&self.path)?.map_or(0, |e| e.len());
            if entries > 0 {
                return Err(ResourceError::Refused(format!(
                    "{} is a directory holding {entries} entries; tend replaces only an empty directory with a link",
                    self.shown(host)
                )));
            }
        }
        drift.push(
            Change::new(
                "state",
                Some(if ft.is_file() { "file" } else { "directory" }),
                Some("symlink"),
            )
            .described(format!("replace {what} with a link → {target}")),
        );
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        if !self.present {
            host.remove_file(&self.path)?;
            return Ok(applied);
        }
        let (uid, gid) = self.ids(host)?;
        if drift.touches("state") || drift.touches("target") {
            match host.metadata(&self.path)? {
                Some(m) if m.is_dir() => host.remove_dir(&self.path)?,
                Some(m) if m.is_file() => applied.backups.extend(host.backup(&self.path)?),
                _ => {}
            }
            host.symlink(&self.path, &self.target, uid, gid)?;
        } else {
            host.set_link_owner(&self.path, uid, gid)?;
        }
        Ok(applied)
    }
}
