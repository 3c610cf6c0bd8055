//! Apply: in waves, each resource once all its dependencies are done — check again, apply only
//! the drift, make the wave's writes durable together, verify (drift that remains is "did not
//! converge"), refresh what a change notified.

use std::sync::Arc;
use std::time::Instant;

use tend_resources::{Drift, Mutate, Resource, ResourceError};

use crate::engine::check::millis;
use crate::engine::graph::Graph;
use crate::engine::journal::Journal;
use crate::manifest::Manifest;
use crate::report::{Refresh, RefreshStatus, ResourceReport, Status};

use super::outcome::*;
use super::pool::pool;
use super::progress::Progress;
use super::select::Selection;

/// What one resource's task needs besides the resource.
struct Task {
    report: ResourceReport,
    selected: bool,
    notified_by: Vec<String>,
    /// Addresses this resource notifies when it changes.
    notifies: Vec<String>,
    journal: Arc<Journal>,
}

/// A resource between its apply and its verification: writes of a wave become durable and
/// visible together (one `syncfs`, the renames, one fsync per directory) before any is verified.
struct Applying {
    report: ResourceReport,
    notified_by: Vec<String>,
    journal: Arc<Journal>,
    /// The drift apply acted on, when it ran (and so must be settled and verified).
    applied: Option<Drift>,
    /// Whether its notify targets are owed a refresh although apply failed (an audited
    /// certificate kicks the container that renews it).
    kick: bool,
    started: Instant,
}

/// Check, journal the refreshes owed, apply only the drift.
async fn apply_drift(resource: &Arc<dyn Resource>, task: Task, host: &Mutate) -> Applying {
    let Task {
        mut report,
        selected,
        notified_by,
        notifies,
        journal,
    } = task;
    let started = Instant::now();
    let mut applied = None;
    let mut kick = false;
    if tend_resources::process::stopping() {
        mark_interrupted(&mut report);
        return Applying {
            report,
            notified_by,
            journal,
            applied,
            kick,
            started,
        };
    }
    let checked = resource.check_for_apply(host).await;
    if let Ok(drift) = &checked {
        report.observed = drift.observed.clone();
    }
    match checked {
        Err(e) => {
            report.fail(e.to_string(), e.class());
        }
        Ok(drift) if drift.is_empty() => report.status = Status::InSync,
        Ok(drift) if !selected => {
            report.status = Status::NotApplied;
            report.reason = Some("a dependency outside --only: checked, not applied".into());
            report.changes = drift.changes;
        }
        Ok(drift) => {
            tracing::info!(resource = %report.address, changes = drift.changes.len(), "applying");
            report.changes = drift.changes.clone();
            // The refreshes this change owes are on disk before anything changes.
            let journaled = if notifies.is_empty() {
                Ok(())
            } else {
                journal.add(&notifies, &report.address)
            };
            let result = match journaled {
                Ok(()) => {
                    // From the first change on, a directory may not be what a check resolved.
                    host.probe().stop_caching_dirs();
                    resource.apply(host, &drift).await.map(|done| (done, drift))
                }
                Err(e) => Err(ResourceError::Failed(format!(
                    "cannot journal the refreshes it owes, so nothing was changed: {e}"
                ))),
            };
            match result {
                Err(e) => {
                    kick = resource.notifies_on_failure();
                    report.fail(e.to_string(), e.class());
                }
                Ok((done, drift)) => {
                    report.backups = done
                        .backups
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    report.notes = done.notes;
                    applied = Some(drift);
                }
            }
        }
    }
    Applying {
        report,
        notified_by,
        journal,
        applied,
        kick,
        started,
    }
}

/// Verify what was applied (remaining drift = "did not converge"), then refresh if notified.
/// Also says whether the resource's notify targets are owed a refresh.
async fn verify_and_refresh(
    resource: &Arc<dyn Resource>,
    state: Applying,
    host: &Mutate,
) -> (ResourceReport, bool) {
    let Applying {
        mut report,
        notified_by,
        journal,
        applied,
        kick,
        started,
    } = state;
    let settled = match &applied {
        Some(drift) => resource.settle(host, drift).await.map(Some),
        None => Ok(None),
    };
    let applied = match settled {
        Ok(Some(done)) => {
            report
                .backups
                .extend(done.backups.iter().map(|p| p.display().to_string()));
            report.notes.extend(done.notes);
            true
        }
        Ok(None) => false,
        Err(e) => {
            report.fail(e.to_string(), e.class());
            false
        }
    };
    if applied {
        let rechecked = resource.check_for_apply(host).await;
        if let Ok(rest) = &rechecked {
            report.observed = rest.observed.clone();
        }
        match rechecked {
            Err(e) => {
                report.fail(format!("check after apply failed: {e}"), e.class());
            }
            Ok(rest) if !rest.is_empty() => {
                let what: Vec<String> =
                    rest.changes.iter().map(|c| c.description.clone()).collect();
                report.fail(
                    format!("did not converge: still {}", what.join("; ")),
                    "not_converged",
                );
            }
            Ok(_) => report.status = Status::Changed,
        }
    }
    if !notified_by.is_empty() && report.status != Status::Failed && resource.refreshable() {
        tracing::info!(resource = %report.address, by = ?notified_by, "refreshing");
        let mut refresh = Refresh {
            notified_by,
            status: RefreshStatus::Ran,
            error: None,
        };
        host.probe().stop_caching_dirs();
        match resource.refresh(host).await {
            Ok(done) => {
                report.notes.extend(done.notes);
                if let Err(e) = journal.clear(&report.address) {
                    tracing::error!(
                        "cannot clear {} from the refresh journal: {e}",
                        report.address
                    );
                }
            }
            Err(e) => {
                refresh.status = RefreshStatus::Failed;
                refresh.error = Some(e.to_string());
                report.fail(format!("refresh failed: {e}"), e.class());
            }
        }
        report.refresh = Some(refresh);
    }
    report.duration_ms = millis(started);
    let notify = report.status == Status::Changed || kick;
    (report, notify)
}

/// Hand the outcomes settled in one wave to the watcher, in manifest order.
fn tell(progress: &Progress, reports: &mut [Option<ResourceReport>], mut settled: Vec<usize>) {
    let Some(on_settled) = &progress.on_settled else {
        return;
    };
    settled.sort_unstable();
    // Classified where they lie (as the run's end would) and lent, not copied: a wave of a
    // thousand in-sync files was a thousand reports cloned to print none of them under -q.
    for &i in &settled {
        if let Some(r) = reports[i].as_mut() {
            classify(r);
        }
    }
    let done: Vec<&ResourceReport> = settled
        .into_iter()
        .filter_map(|i| reports[i].as_ref())
        .collect();
    if !done.is_empty() {
        on_settled(&done);
    }
}

/// Converge the host, in waves: every resource whose dependencies are done applies
/// (concurrently, at most `jobs` at a time); the wave's file writes are then made durable and
/// visible together; then each is verified and refreshed. Dependents wait for the next wave.
pub(crate) async fn apply(
    m: &Manifest,
    g: &Graph,
    sel: &Selection,
    host: Mutate,
    jobs: usize,
    journal: Arc<Journal>,
    progress: Arc<Progress>,
) -> Vec<ResourceReport> {
    let n = m.resources.len();
    let mut waiting: Vec<usize> = g.deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in g.deps.iter().enumerate() {
        for e in ds {
            dependents[e.on].push(i);
        }
    }
    let mut notified: Vec<Vec<String>> = vec![Vec::new(); n];
    let owed = journal.owed();
    for (i, d) in m.resources.iter().enumerate() {
        if let Some(by) = owed.get(&d.address) {
            notified[i].extend(by.iter().cloned());
        }
    }
    let mut reports: Vec<Option<ResourceReport>> = vec![None; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let host = host.batched();
    loop {
        // Settle what does not run (excluded, skipped); their dependents may join this wave.
        let mut wave = Vec::new();
        let mut settled_now = Vec::new();
        while let Some(i) = ready.pop() {
            let settled = if !sel.involved[i] {
                Some(excluded(m, i))
            } else if tend_resources::process::stopping() {
                Some(interrupted(m, i))
            } else {
                skip_reason(m, g, i, &reports).map(|why| {
                    let mut r = base_report(m, i, Status::Skipped);
                    r.reason = Some(why);
                    r
                })
            };
            match settled {
                Some(r) => {
                    reports[i] = Some(r);
                    settled_now.push(i);
                    for &d in &dependents[i] {
                        waiting[d] -= 1;
                        if waiting[d] == 0 {
                            ready.push(d);
                        }
                    }
                }
                None => wave.push(i),
            }
        }
        if wave.is_empty() {
            tell(&progress, &mut reports, settled_now);
            break;
        }
        wave.sort_unstable();

        let mut tasks = Vec::with_capacity(wave.len());
        for &i in &wave {
            let task = Task {
                report: base_report(m, i, Status::InSync),
                selected: sel.selected[i],
                notified_by: std::mem::take(&mut notified[i]),
                notifies: g.notifies[i]
                    .iter()
                    .map(|&t| m.resources[t].address.clone())
                    .collect(),
                journal: journal.clone(),
            };
            let address = m.resources[i].address.clone();
            tasks.push((i, m.resources[i].resource.clone(), task, address));
        }
        let (h, p) = (host.clone(), progress.clone());
        let applying = pool(jobs, tasks, move |(i, resource, task, address)| {
            let (host, progress) = (h.clone(), p.clone());
            async move {
                progress.start(&address);
                let state = apply_drift(&resource, task, &host).await;
                (i, resource, state)
            }
        })
        .await;

        // A wave that wrote nothing (every wave of a no-op) has nothing to make durable: no
        // blocking thread is started to find that out.
        let errors = if host.has_pending() {
            let committed = host.clone();
            tokio::task::spawn_blocking(move || committed.commit())
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for e in &errors {
            tracing::error!("{e}");
        }

        // Only what applied (to settle and verify) or owes a refresh goes back to the workers;
        // the rest, every resource of a no-op, is settled here, without a second hand-over.
        let (verifying, settled): (Vec<_>, Vec<_>) = applying
            .into_iter()
            .map(|(i, resource, state)| (i, resource, state, m.resources[i].address.clone()))
            .partition(|(_, _, state, _)| state.applied.is_some() || !state.notified_by.is_empty());
        let mut verified = Vec::with_capacity(verifying.len() + settled.len());
        for (i, resource, state, address) in settled {
            verified.push((i, verify_and_refresh(&resource, state, &host).await));
            progress.done(&address);
        }
        let (h, p) = (host.clone(), progress.clone());
        verified.extend(
            pool(jobs, verifying, move |(i, resource, state, address)| {
                let (host, progress) = (h.clone(), p.clone());
                async move {
                    let done = verify_and_refresh(&resource, state, &host).await;
                    progress.done(&address);
                    (i, done)
                }
            })
            .await,
        );
        for (i, (report, notify)) in verified {
            if notify {
                for &t in &g.notifies[i] {
                    notified[t].push(m.resources[i].address.clone());
                }
            }
            reports[i] = Some(report);
        }
        settled_now.extend(&wave);
        tell(&progress, &mut reports, settled_now);
        for &i in &wave {
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(d);
                }
            }
        }
    }
    reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.unwrap_or_else(|| {
                let mut r = base_report(m, i, Status::Failed);
                r.error = Some("the engine lost this resource's task".into());
                r
            });
            classify(&mut r);
            r
        })
        .collect()
}
