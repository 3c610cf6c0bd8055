//! What left the manifest: an apply records the addresses of what it manages, with what each
//! identifies on the host (its paths), in the state directory; a later run whose manifest no
//! longer has one lists it — `- file.old_site no longer in the manifest: /etc/nginx/sites/old.conf
//! left in place` —, in the report (`orphans`) and the metrics (`tend_orphaned_resources`).
//!
//! A resource whose `when` is false for this host counts as gone (a host that changed role).
//! Orphans stay listed, run after run, until an apply with `--forget-orphans` lets them go:
//! nothing is removed for the operator, and nothing is forgotten without them.

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
pub fn record(state_dir: &Path, m: &Manifest, orphans: &[Managed]) {
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

/// The line a run prints for an orphan.
pub fn describe(o: &Managed) -> String {
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
