//! The convergence engine: check → apply → verify → refresh, in graph order.
//!
//! `plan` holds only a [`Probe`]: every involved resource is checked concurrently, and the
//! results are read in graph order to predict what apply would do (skips after failures,
//! honest unknowns after dependencies that would change, refreshes that would run).
//!
//! `apply` runs each resource once all its dependencies are done: check again (the host may
//! have changed under it), apply only the drift, check once more (drift that remains is "did
//! not converge"), then run its refresh if a changed resource notified it. A failure skips its
//! dependents, naming the failure; unrelated resources still converge. Independent resources
//! run concurrently, at most `jobs` at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tend_resources::{Drift, Mutate, Probe, Resource, ResourceError};
use tokio::task::JoinSet;

use crate::engine::check::{check_one, millis};
use crate::engine::graph::Graph;
use crate::engine::journal::Journal;
use crate::manifest::Manifest;
use crate::report::{ReasonClass, Refresh, RefreshStatus, ResourceReport, Status};

/// Called with the outcomes of one wave.
pub type OnSettled = dyn Fn(&[&ResourceReport]) + Send + Sync;

/// What an apply tells whoever watches it while it runs: the outcomes of each wave as soon as
/// the wave is done (in manifest order within it, so the same graph prints in the same order),
/// and the resources in flight, for a heartbeat.
pub struct Progress {
    /// Told each wave's settled resources, when someone reads them (human apply output).
    pub on_settled: Option<Box<OnSettled>>,
    /// What is in flight, when someone reads it (the heartbeat): `None` keeps a run that prints
    /// no heartbeat from paying a lock and an insert per resource.
    pub in_flight: Option<std::sync::Mutex<std::collections::BTreeMap<String, Instant>>>,
}

impl Progress {
    /// Nothing to tell (JSON output, quiet runs, tests).
    pub fn silent() -> Progress {
        Progress {
            on_settled: None,
            in_flight: None,
        }
    }

    fn start(&self, address: &str) {
        if let Some(Ok(mut f)) = self.in_flight.as_ref().map(|m| m.lock()) {
            f.insert(address.to_string(), Instant::now());
        }
    }

    fn done(&self, address: &str) {
        if let Some(Ok(mut f)) = self.in_flight.as_ref().map(|m| m.lock()) {
            f.remove(address);
        }
    }

    /// `compose.dify (1m02s), exec.migrate (12s)`, longest first; `None` when idle.
    pub fn describe_in_flight(&self) -> Option<String> {
        let f = self.in_flight.as_ref()?.lock().ok()?;
        let mut v: Vec<(&String, &Instant)> = f.iter().collect();
        v.sort_by_key(|(_, t)| **t);
        let parts: Vec<String> = v
            .iter()
            .map(|(a, t)| format!("{a} ({}s)", t.elapsed().as_secs()))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Which resources take part: `--only` selects some; their dependencies are checked, not applied.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Selected for apply.
    pub selected: Vec<bool>,
    /// Selected or a dependency of a selected one.
    pub involved: Vec<bool>,
}

impl Selection {
    pub fn new(m: &Manifest, g: &Graph, only: &[String]) -> Result<Selection, String> {
        let n = m.resources.len();
        let mut selected = vec![only.is_empty(); n];
        for sel in only {
            let mut matched = false;
            for (i, d) in m.resources.iter().enumerate() {
                let hit = match sel.strip_prefix("tag:") {
                    Some(tag) => d.tags.iter().any(|t| t == tag),
                    // `file.site` selects each instance of a `for_each` too, `module.web` its resources.
                    None if sel.contains('.') => {
                        d.address == *sel
                            || d.address.strip_prefix(sel.as_str()).is_some_and(|rest| {
                                rest.starts_with("[\"") || rest.starts_with('.')
                            })
                    }
                    None => d.kind == sel,
                };
                if hit {
                    selected[i] = true;
                    matched = true;
                }
            }
            if !matched {
                let addresses: Vec<&str> = m.resources.iter().map(|d| d.address.as_str()).collect();
                let hint = tend_resources::spec::nearest(sel, addresses.iter().copied())
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_else(|| {
                        "; selectors are an address (file.motd), a kind (file) or tag:NAME".into()
                    });
                return Err(format!(
                    "--only {sel} matches no resource in the manifest{hint}"
                ));
            }
        }
        for (i, d) in m.resources.iter().enumerate() {
            selected[i] &= d.enabled;
        }
        let mut involved = selected.clone();
        // Everything is selected: the ancestors of an enabled resource are all there already
        // (and walking them from each resource costs n² on a large manifest).
        if only.is_empty() {
            return Ok(Selection { selected, involved });
        }
        for i in (0..n).filter(|&i| selected[i]) {
            for a in g.ancestors(i) {
                involved[a] = m.resources[a].enabled;
            }
        }
        Ok(Selection { selected, involved })
    }
}

fn base_report(m: &Manifest, i: usize, status: Status) -> ResourceReport {
    let d = &m.resources[i];
    ResourceReport::new(&d.address, d.kind, &d.name, status)
}

fn excluded(m: &Manifest, i: usize) -> ResourceReport {
    let mut r = base_report(m, i, Status::Excluded);
    if m.resources[i].enabled {
        r.reason = Some("not selected by --only".into());
        r.reason_class = Some(ReasonClass::NotSelected);
    } else {
        r.reason = Some("`when` is false".into());
        r.reason_class = Some(ReasonClass::WhenFalse);
    }
    r
}

/// A resource that did not start because the run was asked to stop.
fn interrupted(m: &Manifest, i: usize) -> ResourceReport {
    let mut r = base_report(m, i, Status::Skipped);
    mark_interrupted(&mut r);
    r
}

fn mark_interrupted(r: &mut ResourceReport) {
    r.status = Status::Skipped;
    r.reason = Some("not started: tend was asked to stop".into());
    r.reason_class = Some(ReasonClass::Interrupted);
}

/// The reason class every resource that is not in sync carries, where its creation did not set a
/// more precise one.
fn classify(r: &mut ResourceReport) {
    if r.reason_class.is_some() {
        return;
    }
    r.reason_class = match r.status {
        Status::InSync => None,
        Status::WouldChange => Some(ReasonClass::WouldChange),
        Status::MayChange => Some(ReasonClass::UnknownUntilDependenciesApply),
        Status::Unknown => Some(ReasonClass::Unreachable),
        Status::Changed => Some(ReasonClass::Changed),
        Status::Failed | Status::WillFail => Some(ReasonClass::Failed),
        Status::Skipped => Some(ReasonClass::DependencyFailed),
        Status::NotApplied => Some(ReasonClass::OutsideOnly),
        Status::Excluded => Some(ReasonClass::NotSelected),
    };
}

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

/// A check that failed only because the kernel refused tend a read (`EACCES`, `EPERM`), not
/// one of tend's own refusals (an untrusted link is a failure wherever it is met).
fn denied(e: &ResourceError) -> bool {
    matches!(e, ResourceError::Host(h) if matches!(h.source.raw_os_error(), Some(13 | 1)))
}

/// Why a resource is skipped, if a dependency failed or was skipped.
fn skip_reason(
    m: &Manifest,
    g: &Graph,
    i: usize,
    reports: &[Option<ResourceReport>],
) -> Option<String> {
    g.deps[i].iter().find_map(|e| {
        let r = reports[e.on].as_ref()?;
        let dep = &m.resources[e.on].address;
        // A notifier that kicks its targets when it fails (an audited certificate) must not
        // also get them skipped.
        if e.kind == crate::engine::graph::EdgeKind::Notify
            && m.resources[e.on].resource.notifies_on_failure()
        {
            return None;
        }
        let how = match e.kind {
            crate::engine::graph::EdgeKind::Requires => "requires",
            crate::engine::graph::EdgeKind::Notify => "is notified by",
            crate::engine::graph::EdgeKind::Path => "depends on",
        };
        match r.status {
            Status::Failed => Some(format!("{how} {dep}, which failed")),
            Status::WillFail => Some(format!("{how} {dep}, which would fail")),
            Status::Skipped => Some(format!("{how} {dep}, which was skipped")),
            _ => None,
        }
    })
}

/// Run `work` on every item, at most `jobs` at once: `jobs` tasks, each taking the next item
/// until none is left. As a semaphore would, without a task and a wake-up per item: for a
/// thousand quick checks those hand-offs between threads cost more than the checks. The results
/// come back in no particular order; an item whose work panicked has none (logged).
async fn pool<T, R, F, Fut>(jobs: usize, items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let workers = jobs.max(1).min(items.len());
    let results = Vec::with_capacity(items.len());
    let queue = Arc::new(std::sync::Mutex::new(items.into_iter()));
    // Each result is handed over as soon as it is made: a task that panics loses only the item
    // it was on, and the others take the rest of the queue.
    let results = Arc::new(std::sync::Mutex::new(results));
    let work = Arc::new(work);
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (queue, results, work) = (queue.clone(), results.clone(), work.clone());
        set.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(item) = next else {
                    return;
                };
                let r = work(item).await;
                results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            tracing::error!("a resource task died: {e}");
        }
    }
    let out = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    out
}

/// Dry run: check everything involved, predict the rest. Never changes the host. `early`: what
/// began to be checked while the manifest loaded (`early`).
pub async fn plan(
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
                                r.status = Status::Failed;
                                r.error = Some(e.to_string());
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
            let by = by
                .iter()
                .map(|n| format!("{n} {}", crate::engine::journal::CARRIED_OVER))
                .collect();
            target.refresh = Some(Refresh {
                notified_by: by,
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
            report.status = Status::Failed;
            report.error = Some(e.to_string());
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
                    report.status = Status::Failed;
                    report.error = Some(e.to_string());
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
            report.status = Status::Failed;
            report.error = Some(e.to_string());
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
                report.status = Status::Failed;
                report.error = Some(format!("check after apply failed: {e}"));
            }
            Ok(rest) if !rest.is_empty() => {
                report.status = Status::Failed;
                let what: Vec<String> =
                    rest.changes.iter().map(|c| c.description.clone()).collect();
                report.error = Some(format!("did not converge: still {}", what.join("; ")));
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
                report.status = Status::Failed;
                report.error = Some(format!("refresh failed: {e}"));
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
pub async fn apply(
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
    for (i, d) in m.resources.iter().enumerate() {
        if let Some(by) = journal.pending().get(&d.address) {
            notified[i].extend(
                by.iter()
                    .map(|n| format!("{n} {}", crate::engine::journal::CARRIED_OVER)),
            );
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

#[cfg(test)]
mod tests {
    use super::pool;

    /// Every item is worked on once, at most `jobs` at a time, and an item whose work panics
    /// costs only its own result: the other tasks take the rest of the queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_pool_works_each_item_once_and_a_panic_loses_only_its_item() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), most.clone());
        let mut done = pool(3, (0..200).collect(), move |i: usize| {
            let (now, most) = (n.clone(), m.clone());
            async move {
                let at = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at, Ordering::SeqCst);
                tokio::task::yield_now().await;
                now.fetch_sub(1, Ordering::SeqCst);
                assert!(i != 17, "item 17 fails");
                i
            }
        })
        .await;
        done.sort_unstable();
        let want: Vec<usize> = (0..200).filter(|&i| i != 17).collect();
        assert_eq!(done, want);
        assert!(most.load(Ordering::SeqCst) <= 3, "more than jobs at once");
    }
}
