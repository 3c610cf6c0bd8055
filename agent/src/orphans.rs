//! What left the manifest: an apply records the addresses of what it manages, with what each
//! identifies on the host (its paths), in the state directory; a later run whose manifest no
//! longer has one lists it — `- file.old_site no longer in the manifest: /etc/nginx/sites/old.conf
//! left in place` —, in the report (`orphans`) and the metrics (`tend_orphaned_resources`).
//!
//! A resource whose `when` is false for this host counts as gone (a host that changed role).
//! Orphans stay listed, run after run, until an apply with `--forget-orphans` lets them go, or
//! `--prune` removes them: only what tend itself created (recorded when its apply created it)
//! and only the kinds that say how to take it back ([`tend_resources::prune`]) — a file (backed
//! up first, `tend restore` puts it back), a symlink, an empty directory, an nginx site, a unit
//! tend wrote (stopped and disabled first). What a pruned resource notified is refreshed, as when
//! it changed (nginx reloads without the site). Anything else stays, listed, with why.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

/// The record, in the state directory.
pub(crate) const FILE: &str = "managed.json";

/// One resource an apply managed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Managed {
    pub address: String,
    pub kind: String,
    /// What it identifies on the host (its paths), for the operator to find it.
    pub paths: Vec<String>,
    /// An apply of tend created it (it was absent before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// What it notified when it changed: refreshed when it is pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// What `--prune` did with it, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<String>,
    /// What this run did (or a plan says apply would do) with it.
    #[serde(default)]
    pub state: State,
}

/// An orphan's state in a run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// On the host, listed (no pruning asked, or not this one).
    #[default]
    LeftInPlace,
    /// A plan: apply would remove it.
    ToBePruned,
    /// This apply removed it: listed this once, then gone from the record.
    Pruned,
    /// Its removal failed (a failure of the run); still on the host.
    PruneFailed,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    version: u32,
    resources: Vec<Managed>,
}

/// What the last recording apply managed (nothing when there is no record, or an unreadable
/// one: a warning, not a failure).
pub(crate) fn recorded(state_dir: &Path) -> Vec<Managed> {
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
pub(crate) fn orphans(recorded: &[Managed], m: &Manifest) -> Vec<Managed> {
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
pub(crate) fn record(
    state_dir: &Path,
    m: &Manifest,
    orphans: &[Managed],
    previous: &[Managed],
    reports: &[crate::report::ResourceReport],
) {
    // Created by this apply: a creation among its changes (of the fields that make the thing
    // tend's own, for a kind that names them).
    let created_now = |address: &str, kind: &str| {
        let by = tend_resources::kind(kind)
            .and_then(|k| k.prune)
            .map_or(&[][..], |p| p.created_by);
        reports.iter().any(|r| {
            r.address == address
                && r.status == crate::report::Status::Changed
                && r.changes.iter().any(|c| {
                    c.action == tend_resources::Action::Create
                        && (by.is_empty() || by.contains(&c.field.to_string().as_str()))
                })
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
            notify: d.notify.iter().map(|(t, _)| t.clone()).collect(),
            created: created_now(&d.address, d.kind)
                || previous.iter().any(|p| p.address == d.address && p.created),
            pruned: None,
            state: State::LeftInPlace,
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

/// Kinds whose orphans `--prune` (or `[prune] kinds`) removes, when tend created them: those
/// whose kind says how ([`tend_resources::Kind::prune`]).
pub(crate) fn prunable() -> Vec<&'static str> {
    tend_resources::KINDS
        .iter()
        .filter(|k| k.prune.is_some())
        .map(|k| k.name)
        .collect()
}

/// Why `o` stays although pruning was asked for `kinds`; `None` when it goes.
fn why_kept(o: &Managed, kinds: &[String], host: &tend_resources::Probe) -> Option<String> {
    let Some(prune) = tend_resources::kind(&o.kind).and_then(|k| k.prune) else {
        return Some(format!("not pruned: tend does not remove a {}", o.kind));
    };
    if !kinds.contains(&o.kind) {
        Some(format!(
            "not pruned: [prune] kinds does not name {} (or give --prune)",
            o.kind
        ))
    } else if !o.created {
        Some("not pruned: tend did not create it (it was there before)".to_string())
    } else {
        let paths: Vec<std::path::PathBuf> = o.paths.iter().map(Into::into).collect();
        (prune.keeps)(host, &paths).map(|why| format!("not pruned: {why}"))
    }
}

/// What a plan says apply would do with each orphan when `kinds` are pruned: the ones that would
/// go say so (a pending change); the rest say why they stay. Returns the ones that would go.
pub(crate) fn foresee(
    orphans: &mut [Managed],
    kinds: &[String],
    host: &tend_resources::Probe,
) -> Vec<Managed> {
    let mut going = Vec::new();
    if kinds.is_empty() {
        return going;
    }
    for o in orphans {
        match why_kept(o, kinds, host) {
            Some(why) => o.pruned = Some(why),
            None => {
                o.state = State::ToBePruned;
                o.pruned = Some(if o.paths.is_empty() {
                    "to be pruned by apply".to_string()
                } else {
                    format!("to be pruned by apply: {}", o.paths.join(", "))
                });
                going.push(o.clone());
            }
        }
    }
    going
}

/// What pruning did.
#[derive(Debug, Default)]
pub(crate) struct Pruned {
    /// Removed (each says how in `pruned`).
    pub gone: Vec<Managed>,
    /// Still there: not tend's to remove, not asked, or its removal failed.
    pub kept: Vec<Managed>,
    /// How many of `kept` failed to go.
    pub failed: usize,
    /// In a plan: how many apply would remove.
    pub planned: usize,
}

/// Remove what `kinds` allows of `orphans`, each by its kind's pruner (each says what happened
/// in `pruned`). Which ones go is settled before anything is removed, as a plan settles it: a
/// directory emptied by this prune goes on the next run, as the plan said.
pub(crate) async fn prune(
    host: &tend_resources::Mutate,
    orphans: Vec<Managed>,
    kinds: &[String],
) -> Pruned {
    let mut out = Pruned::default();
    let verdicts: Vec<(Managed, Option<String>)> = orphans
        .into_iter()
        .map(|o| {
            let why = why_kept(&o, kinds, host.probe());
            (o, why)
        })
        .collect();
    for (mut o, why) in verdicts {
        let pruner = tend_resources::kind(&o.kind).and_then(|k| k.prune);
        let (Some(pruner), None) = (pruner, &why) else {
            o.pruned = why;
            out.kept.push(o);
            continue;
        };
        let paths: Vec<std::path::PathBuf> = o.paths.iter().map(Into::into).collect();
        match (pruner.run)(host, &paths).await {
            Ok(done) => {
                o.pruned = Some(if done.is_empty() {
                    "pruned: already gone".into()
                } else {
                    format!("pruned: {}", done.join(", "))
                });
                o.state = State::Pruned;
                out.gone.push(o);
            }
            Err(e) => {
                o.pruned = Some(format!("not pruned: {e}"));
                o.state = State::PruneFailed;
                out.failed += 1;
                out.kept.push(o);
            }
        }
    }
    out
}

/// The refreshes pruned orphans owe what they notified, journaled before the apply goes on (a
/// killed run still owes them). A target that also left the manifest is owed nothing.
pub(crate) fn journal_refreshes(
    m: &Manifest,
    gone: &[Managed],
    journal: &crate::engine::journal::Journal,
) {
    for o in gone {
        let by = notifier(o);
        if let Err(e) = journal.add(&still_declared(m, &o.notify), &by) {
            tracing::warn!("cannot journal the refreshes {by} owes: {e}");
        }
    }
}

/// What a plan's orphans to be pruned would refresh, added to what is owed already.
pub(crate) fn owe_refreshes(
    m: &Manifest,
    going: &[Managed],
    owed: &mut std::collections::BTreeMap<String, Vec<String>>,
) {
    for o in going {
        for t in still_declared(m, &o.notify) {
            owed.entry(t).or_default().push(notifier(o));
        }
    }
}

/// How a pruned orphan is named as the notifier of a refresh.
fn notifier(o: &Managed) -> String {
    format!("{} (pruned)", o.address)
}

/// The addresses of `targets` the manifest still declares (and enables) for this host.
fn still_declared(m: &Manifest, targets: &[String]) -> Vec<String> {
    targets
        .iter()
        .filter(|t| m.resources.iter().any(|d| d.enabled && &d.address == *t))
        .cloned()
        .collect()
}

/// The line a run prints for an orphan.
pub(crate) fn describe(o: &Managed) -> String {
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
