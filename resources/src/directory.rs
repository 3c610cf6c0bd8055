//! `directory`: a directory with mode, owner and group (parents created), or its absence.
//! Removal takes only empty directories: tend never deletes a tree it did not list.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::attrs::Ownership;
use crate::change::{Change, Drift};
use crate::host::{fmt_mode, Mutate, Probe, DEFAULT_DIR_MODE};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `directory` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "directory",
    summary: "a directory (parents created) with mode, owner, group, or an absent empty one",
    build,
    prune: Some(crate::prune::FILES),
};

#[derive(Debug)]
/// A `directory` resource, as its manifest table declared it.
pub(crate) struct Directory {
    path: PathBuf,
    attrs: Ownership,
    present: bool,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (path, _) = f.required_path("path")?;
    let attrs = Ownership::from_fields(f)?;
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    Ok(Arc::new(Directory {
        path,
        attrs,
        present,
    }))
}

#[async_trait]
impl Resource for Directory {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn contains_paths(&self) -> bool {
        true
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        let meta = host.metadata(&self.path)?;
        if let Some(m) = &meta {
            if !m.is_dir() {
                return Err(ResourceError::Refused(format!(
                    "{} exists and is not a directory",
                    host.real(&self.path).display()
                )));
            }
        }
        match (meta, self.present) {
            (None, false) => {}
            (Some(_), false) => {
                let entries = host.read_dir(&self.path)?.map_or(0, |n| n.len());
                if entries > 0 {
                    return Err(ResourceError::Refused(format!(
                        "{} should be absent but holds {entries} entries; tend removes only empty directories",
                        host.real(&self.path).display()
                    )));
                }
                drift.push(Change {
                    description: "remove".into(),
                    ..Change::removed("state", "present")
                });
            }
            (None, true) => {
                // An unknown owner or group fails in plan, not at apply.
                self.attrs.resolve(host)?;
                let mut c = Change::created("state", "present");
                let attrs = self.attrs.describe();
                c.description = if attrs.is_empty() {
                    format!("create (mode {})", fmt_mode(DEFAULT_DIR_MODE))
                } else {
                    format!("create ({attrs})")
                };
                drift.push(c);
            }
            (Some(m), true) => self.attrs.check(host, &m, &mut drift)?,
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        if !self.present {
            host.remove_dir(&self.path)?;
        } else if drift.touches("state") {
            host.create_dir(&self.path, self.attrs.resolve(host)?)?;
        } else {
            self.attrs.apply(host, &self.path, drift)?;
        }
        Ok(Applied::default())
    }
}
