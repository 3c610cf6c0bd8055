//! What left the manifest: an apply records the addresses of what it manages, with what each
//! identifies on the host (its paths), in the state directory; a later run whose manifest no
//! longer has one lists it — `- file.old_site no longer in the manifest: /etc/nginx/sites/old.conf
//! left in place` —, in the report (`orphans`) and the metrics (`tend_orphaned_resources`).
//!
//! A resource whose `when` is false for this host counts as gone (a host that changed role).
//! Orphans stay listed, run after run, until an apply with `--forget-orphans` lets them go, or
//! `--prune` removes them: only what tend itself created (recorded when its apply created it)
//! and only the kinds whose removal loses nothing — a file (backed up first, `tend restore`
//! puts it back), a symlink, an empty directory. Anything else stays, listed, with why.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

/// The record, in the state directory.
pub const FILE: &str = "managed.json";

/// One resource an apply managed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managed {
    pub address: String,
    pub kind: String,
    /// What it identifies on the host (its paths), for the operator to find it.
    pub paths: Vec<String>,
    /// An apply of tend created it (it was absent before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// What `--prune` did with it, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    version: u32,
    resources: Vec<Managed>,
}

/// What the last recording apply managed (nothing when there is no record, or an unreadable
/// one: a warning, not a failure).
pub fn recorded(state_dir: &Path) -> Vec<Managed> {
    let file = state_dir.join(FILE);
    match tend_resources::host::read_private_file(&file) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) => r.resources,
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; orphans are not listed",
                    file.display()
                );
                Vec::new()
            }
        },
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(
                "cannot read {}: {e}; orphans are not listed",
                file.display()
            );
            Vec::new()
        }
    }
}

/// The recorded resources `m` no longer declares (or declares with `when` false).
pub fn orphans(recorded: &[Managed], m: &Manifest) -> Vec<Managed> {
    let now: std::collections::HashSet<&str> = m
        .resources
        .iter()
        .filter(|d| d.enabled)
        .map(|d| d.address.as_str())
        .collect();
    recorded
        .iter()
        .filter(|r| !now.contains(r.address.as_str()))
        .cloned()
        .collect()
}

/// Record what `m` manages, and the orphans still listed (unless forgotten). Only a whole-
/// manifest apply records (an `--only` run saw part of it), under the run lock.
pub fn record(
    state_dir: &Path,
    m: &Manifest,
    orphans: &[Managed],
    previous: &[Managed],
    reports: &[crate::report::ResourceReport],
) {
    let created_now = |address: &str| {
        reports.iter().any(|r| {
            r.address == address
                && r.status == crate::report::Status::Changed
                && r.changes
                    .iter()
                    .any(|c| c.action == tend_resources::Action::Create)
        })
    };
    let mut resources: Vec<Managed> = m
        .resources
        .iter()
        .filter(|d| d.enabled)
        .map(|d| Managed {
            address: d.address.clone(),
            kind: d.kind.to_string(),
            paths: d
                .resource
                .paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            created: created_now(&d.address)
                || previous.iter().any(|p| p.address == d.address && p.created),
            pruned: None,
        })
        .collect();
    resources.extend(orphans.iter().cloned());
    let bytes = match serde_json::to_vec(&Record {
        version: 1,
        resources,
    }) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("cannot encode the record of managed resources: {e}");
            return;
        }
    };
    if let Err(e) = tend_resources::host::write_state_file(&state_dir.join(FILE), &bytes) {
        tracing::warn!("cannot record the managed resources: {e}");
    }
}

/// Kinds whose orphan `--prune` (or `[prune] kinds`) removes (when tend created it).
pub const PRUNABLE: &[&str] = &["file", "symlink", "directory"];

/// Remove what `--prune` may of `orphans` (each says what happened in `pruned`); the ones removed
/// are returned apart from the ones that stay.
pub fn prune(
    host: &tend_resources::Mutate,
    orphans: Vec<Managed>,
    kinds: &[String],
) -> (Vec<Managed>, Vec<Managed>) {
    let (mut gone, mut kept) = (Vec::new(), Vec::new());
    for mut o in orphans {
        let why_not = if !PRUNABLE.contains(&o.kind.as_str()) {
            Some(format!("not pruned: tend does not remove a {}", o.kind))
        } else if !kinds.contains(&o.kind) {
            Some(format!(
                "not pruned: [prune] kinds does not name {} (or give --prune)",
                o.kind
            ))
        } else if !o.created {
            Some("not pruned: tend did not create it (it was there before)".to_string())
        } else {
            None
        };
        if let Some(w) = why_not {
            o.pruned = Some(w);
            kept.push(o);
            continue;
        }
        let mut done = Vec::new();
        let mut failed = None;
        for p in &o.paths {
            let path = Path::new(p);
            let r = match host.metadata(path) {
                Ok(None) => Ok(()),
                Ok(Some(m)) if m.is_dir() => host
                    .remove_dir(path)
                    .map(|()| done.push(format!("removed {p}"))),
                Ok(Some(m)) if m.is_file() => host.backup(path).and_then(|b| {
                    host.remove_file(path).map(|()| {
                        done.push(match b {
                            Some(b) => format!("removed {p} (old content kept in {})", b.display()),
                            None => format!("removed {p}"),
                        })
                    })
                }),
                Ok(Some(_)) => host
                    .remove_file(path)
                    .map(|()| done.push(format!("removed {p}"))),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                failed = Some(format!("not pruned: {e}"));
                break;
            }
        }
        match failed {
            Some(w) => {
                o.pruned = Some(w);
                kept.push(o);
            }
            None => {
                o.pruned = Some(if done.is_empty() {
                    "pruned: already gone".into()
                } else {
                    format!("pruned: {}", done.join(", "))
                });
                gone.push(o);
            }
        }
    }
    (gone, kept)
}

/// The line a run prints for an orphan.
pub fn describe(o: &Managed) -> String {
    if let Some(p) = &o.pruned {
        return format!("{} no longer in the manifest: {p}", o.address);
    }
    if o.paths.is_empty() {
        format!("{} no longer in the manifest: left in place", o.address)
    } else {
        format!(
            "{} no longer in the manifest: {} left in place",
            o.address,
            o.paths.join(", ")
        )
    }
}
