//! Plan: check everything involved, concurrently, then read the results in graph order to
//! predict what apply would do (skips after failures, honest unknowns after dependencies that
//! would change, refreshes that would run). Holds only a `Probe`.

use std::path::PathBuf;
use std::sync::Arc;

use tend_resources::{Drift, Probe, Resource, ResourceError};

use crate::engine::check::check_one;
use crate::engine::graph::Graph;
use crate::manifest::Manifest;
use crate::report::{ReasonClass, Refresh, RefreshStatus, ResourceReport, Status};

use super::outcome::*;
use super::pool::pool;
use super::select::Selection;

/// What a resource's check read: the host, the host with files as its dependencies would leave
/// them, or inputs there was no telling about.
#[derive(Clone)]
enum Seen {
    Host,
    Overlay(tend_resources::host::Overlay),
    Unknown,
}

/// How the inputs of a resource stand against its dependencies that would change.
enum Inputs {
    /// No dependency that would change touches what it reads: its check is exact.
    Steady,
    /// The dependencies say what the files it reads will hold: check it again against them.
    Predicted(tend_resources::host::Overlay, usize),
    /// A dependency would change what it reads, and there is no telling how (the dependency,
    /// and the path).
    Moving(usize, PathBuf),
}

/// Whether a dependency that would change (or may) also changes what this resource reads: a
/// path inside a checkout that would move (a tag move brings a new `.env.example`), or a file
/// this resource reads that the dependency would rewrite (compose's `.env` under `env_file`).
/// Where the dependency can say, read-only, what such a path will hold, plan checks against
/// that; otherwise "in sync" — or its list of changes — would be a guess.
fn moving_input(
    m: &Manifest,
    g: &Graph,
    i: usize,
    reports: &[Option<ResourceReport>],
    probe: &Probe,
    seen: &[Seen],
) -> Inputs {
    let r = &m.resources[i].resource;
    let mine: Vec<PathBuf> = r.paths().into_iter().chain(r.reads()).collect();
    let reads = r.reads();
    let mut overlay = tend_resources::host::Overlay::new();
    let mut by = None;
    for d in g.deps[i].iter().map(|e| e.on) {
        let dep = &m.resources[d].resource;
        let Some(report) = reports[d].as_ref().filter(|r| {
            matches!(r.status, Status::WouldChange | Status::MayChange)
                && (r.changes.is_empty() || r.changes.iter().any(|c| !c.field.is_attribute()))
        }) else {
            continue;
        };
        for c in dep.paths().into_iter().chain(dep.edits()) {
            let read = reads.contains(&c).then_some(&c);
            let inside = mine
                .iter()
                .filter(|p| dep.contains_paths() && p.starts_with(&c) && **p != c);
            for p in read.into_iter().chain(inside) {
                // What the dependency writes follows from what it read: as it was checked.
                let predicted = match &seen[d] {
                    Seen::Host => dep.after_apply(probe, &report.observed, p),
                    Seen::Overlay(o) => {
                        dep.after_apply(&probe.with_overlay(o.clone()), &report.observed, p)
                    }
                    Seen::Unknown => None,
                };
                match predicted {
                    Some(tend_resources::After::Same) => {}
                    Some(tend_resources::After::Bytes(b)) => {
                        overlay.insert(p.clone(), Some(b));
                        by = Some(d);
                    }
                    Some(tend_resources::After::Absent) => {
                        overlay.insert(p.clone(), None);
                        by = Some(d);
                    }
                    None => return Inputs::Moving(d, c),
                }
            }
        }
    }
    match by {
        Some(d) => Inputs::Predicted(overlay, d),
        None => Inputs::Steady,
    }
}

/// Dry run: check everything involved, predict the rest. Never changes the host. `early`: what
/// began to be checked while the manifest loaded (`early`).
pub(crate) async fn plan(
    m: &Manifest,
    g: &Graph,
    sel: &Selection,
    probe: Probe,
    jobs: usize,
    owed: &std::collections::BTreeMap<String, Vec<String>>,
    early: Option<crate::engine::early::EarlyChecks>,
) -> Vec<ResourceReport> {
    let n = m.resources.len();
    let mut checks: Vec<Option<(Result<Drift, ResourceError>, u64)>> =
        (0..n).map(|_| None).collect();
    let mut not_started = vec![false; n];
    let mut record = |i: usize, result: Option<Result<Drift, ResourceError>>, ms: u64| match result
    {
        Some(result) => checks[i] = Some((result, ms)),
        None => not_started[i] = true,
    };
    // What was checked while the manifest loaded counts where the resource takes part; the
    // rest (none, unless the selection and the loader disagree) is checked now.
    let mut checked = vec![false; n];
    if let Some(early) = early {
        let by_id: std::collections::HashMap<usize, usize> = m
            .resources
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id, i))
            .collect();
        for (id, result, ms) in early.finish().await {
            if let Some(&i) = by_id.get(&id) {
                if sel.involved[i] && !checked[i] {
                    checked[i] = true;
                    record(i, result, ms);
                }
            }
        }
    }
    let todo: Vec<(usize, Arc<dyn Resource>)> = (0..n)
        .filter(|&i| sel.involved[i] && !checked[i])
        .map(|i| (i, m.resources[i].resource.clone()))
        .collect();
    let predict = probe.clone();
    let done = pool(jobs, todo, move |(i, resource)| {
        check_one(probe.clone(), i, resource)
    })
    .await;
    for (i, result, ms) in done {
        record(i, result, ms);
    }

    let mut seen = vec![Seen::Host; n];
    let mut reports: Vec<Option<ResourceReport>> = vec![None; n];
    for &i in &g.order {
        let report = match checks[i].take() {
            None if !sel.involved[i] => excluded(m, i),
            None if not_started[i] => interrupted(m, i),
            None => {
                let mut r = base_report(m, i, Status::Failed);
                r.error = Some("the check did not finish".into());
                r
            }
            Some((result, ms)) => {
                let mut r = base_report(m, i, Status::InSync);
                r.duration_ms = ms;
                if let Some(why) = skip_reason(m, g, i, &reports) {
                    r.status = Status::Skipped;
                    r.reason = Some(why);
                    reports[i] = Some(r);
                    continue;
                }
                if let Ok(drift) = &result {
                    r.observed = drift.observed.clone();
                }
                // A drift apply cannot repair: the run's failure, planned as one.
                if let Some(why) = result.as_ref().ok().and_then(|d| d.will_fail.clone()) {
                    r.status = Status::WillFail;
                    r.error = Some(why);
                    if let Ok(drift) = result {
                        r.changes = drift.changes;
                    }
                    reports[i] = Some(r);
                    continue;
                }
                let (result, moving) = match moving_input(m, g, i, &reports, &predict, &seen) {
                    Inputs::Steady => (result, None),
                    Inputs::Moving(d, path) => {
                        seen[i] = Seen::Unknown;
                        (result, Some((d, path)))
                    }
                    // Checked again, read-only, against the files the dependency would bring:
                    // exact, as apply will find them.
                    Inputs::Predicted(overlay, d) => {
                        let paths: Vec<String> =
                            overlay.keys().map(|p| p.display().to_string()).collect();
                        r.reason = Some(format!(
                            "checked against {} as {} would leave it",
                            paths.join(", "),
                            m.resources[d].address
                        ));
                        seen[i] = Seen::Overlay(overlay.clone());
                        let again = m.resources[i]
                            .resource
                            .check(&predict.with_overlay(overlay))
                            .await;
                        (again, None)
                    }
                };
                match result {
                    // A drift that follows from the manifest alone stays certain whatever the
                    // dependency brings; more may follow once it has.
                    Ok(drift)
                        if moving.is_some() && drift.changes.iter().any(|c| !c.from_input) =>
                    {
                        let (d, path) = moving.unwrap_or_default();
                        r.status = if sel.selected[i] {
                            Status::WouldChange
                        } else {
                            Status::NotApplied
                        };
                        r.changes = drift
                            .changes
                            .into_iter()
                            .filter(|c| !c.from_input)
                            .collect();
                        r.reason = Some(format!(
                            "more may change once {0} applies: what it reads lies in {1}, which {0} would change first",
                            m.resources[d].address,
                            path.display(),
                        ));
                    }
                    Ok(_) if moving.is_some() => {
                        let (d, path) = moving.unwrap_or_default();
                        r.status = Status::MayChange;
                        r.reason = Some(format!(
                            "may change once {0} applies: what it reads lies in {1}, which {0} would change first",
                            m.resources[d].address,
                            path.display(),
                        ));
                    }
                    Ok(drift) if drift.is_empty() => {}
                    Ok(drift) => {
                        r.status = if sel.selected[i] {
                            Status::WouldChange
                        } else {
                            Status::NotApplied
                        };
                        if !sel.selected[i] {
                            r.reason =
                                Some("a dependency outside --only: checked, not applied".into());
                        }
                        r.changes = drift.changes;
                    }
                    Err(ResourceError::Unknown { class, why }) => {
                        r.status = Status::Unknown;
                        r.reason = Some(why);
                        r.reason_class = Some(match class {
                            tend_resources::UnknownClass::Unreachable => ReasonClass::Unreachable,
                            tend_resources::UnknownClass::GuardNotRun => ReasonClass::GuardNotRun,
                        });
                    }
                    // Not allowed to read what it checks (an audit as a user other than root):
                    // unknown, never drift, never a failure of the host.
                    Err(e) if denied(&e) => {
                        r.status = Status::Unknown;
                        r.reason = Some(format!("unknown: {e}: tend may not read it as this user"));
                        r.reason_class = Some(ReasonClass::Permission);
                    }
                    Err(e) => {
                        let pending = g.ancestors(i).into_iter().find(|&a| {
                            reports[a].as_ref().is_some_and(|r| {
                                matches!(r.status, Status::WouldChange | Status::MayChange)
                            })
                        });
                        match pending {
                            Some(a) => {
                                r.status = Status::MayChange;
                                r.reason = Some(format!(
                                    "may change once its dependencies apply ({} would change first): {e}",
                                    m.resources[a].address
                                ));
                            }
                            None => {
                                r.fail(e.to_string(), e.class());
                            }
                        }
                    }
                }
                r
            }
        };
        reports[i] = Some(report);
    }

    // The refreshes apply would run: owed by an interrupted run, then triggered by this one.
    for (i, d) in m.resources.iter().enumerate() {
        let Some(by) = owed.get(&d.address) else {
            continue;
        };
        if let Some(target) = reports[i].as_mut().filter(|r| {
            sel.selected[i] && r.status != Status::Failed && r.status != Status::Skipped
        }) {
            target.refresh = Some(Refresh {
                notified_by: by.clone(),
                status: RefreshStatus::WouldRun,
                error: None,
            });
        }
    }
    for &i in &g.order {
        // A notifier that would change owes its targets a refresh; one that only may change
        // owes one that only may run: plan promises only what apply will do.
        let owes = match reports[i]
            .as_ref()
            .filter(|_| sel.selected[i])
            .map(|r| r.status)
        {
            Some(Status::WouldChange) => RefreshStatus::WouldRun,
            Some(Status::MayChange) => RefreshStatus::MayRun,
            // A notifier that kicks its targets when it fails (an audited certificate).
            Some(Status::WillFail) if m.resources[i].resource.notifies_on_failure() => {
                RefreshStatus::WouldRun
            }
            _ => continue,
        };
        for &t in &g.notifies[i] {
            if let Some(target) = reports[t].as_mut().filter(|r| {
                matches!(
                    r.status,
                    Status::InSync | Status::WouldChange | Status::MayChange
                )
            }) {
                let by = m.resources[i].address.clone();
                match &mut target.refresh {
                    Some(f) => {
                        f.notified_by.push(by);
                        if owes == RefreshStatus::WouldRun {
                            f.status = RefreshStatus::WouldRun;
                        }
                    }
                    None => {
                        target.refresh = Some(Refresh {
                            notified_by: vec![by],
                            status: owes,
                            error: None,
                        })
                    }
                }
            }
        }
    }
    // Indexed by node, so already in manifest order. Collected in place (a report is ~300
    // bytes: a second vector of a thousand is 70 fresh pages, ~0.1 ms here; bench/README).
    reports
        .into_iter()
        .filter_map(|r| {
            r.map(|mut r| {
                classify(&mut r);
                r
            })
        })
        .collect()
}
