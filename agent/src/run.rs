//! `plan` and `apply`: the run itself — load, lock, check (and apply), report — and the records
//! it leaves (`--report`, `--metrics`, `last-run.json`), also when it could not start.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::{self, Cli, Format, RunArgs};
use crate::engine::host::{probe, runtime};
use crate::engine::{self, graph, journal};
use crate::report::{self, ManifestInfo, Mode, PullStatus, Report, Summary};
use crate::secrets::{Redactor, SecretMode};
use crate::signals::watch_signals;
use crate::{
    absolute, color_wanted, load, output, printer, root_of, state, state_dir_of, StartError,
};

/// What a run writes besides stdout: `--report`, `--metrics` and (apply) `last-run.json`.
pub(crate) struct Records<'a> {
    report: Option<&'a Path>,
    metrics: Option<&'a Path>,
    /// Where `last-run.json` goes (apply only).
    last_run: Option<&'a Path>,
}

impl Records<'_> {
    /// Write every requested record; what could not be written is said on stderr and makes the
    /// run a failure (the caller adds the failure bit).
    fn write(&self, report: &Report, json: &str) -> bool {
        let mut ok = true;
        if let Some(path) = self.report {
            if let Err(e) = output::write_file(path, json.as_bytes(), 0o600) {
                eprintln!("error: cannot write the report {}: {e}", path.display());
                ok = false;
            }
        }
        if let Some(path) = self.metrics {
            if let Err(e) = output::write_file(path, report.to_metrics().as_bytes(), 0o644) {
                eprintln!("error: cannot write the metrics {}: {e}", path.display());
                ok = false;
            }
        }
        if let Some(dir) = self.last_run {
            // Never into a state directory tend does not trust (the run said why already), and
            // never the first thing to create one: a host where apply never ran keeps none.
            if dir.is_dir() && state::check_trusted(dir).is_ok() {
                if let Err(e) = state::write_last_run(dir, json) {
                    eprintln!(
                        "error: cannot write last-run.json in the state directory {}: {e}",
                        dir.display()
                    );
                    ok = false;
                }
            }
        }
        ok
    }
}

/// One plan or apply. `pull` is what `tend pull` fetched and decided: it goes into the report
/// and the metrics, and a refused commit or an unreachable server sets the failure bit.
pub(crate) fn run_engine(
    cli: &Cli,
    run: &RunArgs,
    apply: Option<&cli::ApplyArgs>,
    pull: Option<&PullStatus>,
) -> Result<i32, StartError> {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let state_dir = state_dir_of(run);
    let records = Records {
        report: run.report.as_deref(),
        metrics: run.metrics.as_deref(),
        last_run: apply.map(|_| state_dir.as_path()),
    };
    match engine(
        cli,
        run,
        apply,
        pull,
        &state_dir,
        started,
        &started_at,
        &records,
    ) {
        Ok(code) => Ok(code),
        Err(e) => {
            record_failed_start(run, apply.is_some(), pull, started, &started_at, &e);
            Err(e)
        }
    }
}

/// A run that cannot start leaves a record too (`--report`, `--metrics`, `last-run.json`): a
/// fleet whose manifest broke must not keep showing the last good run's exit code.
pub(crate) fn record_failed_start(
    run: &RunArgs,
    apply: bool,
    pull: Option<&PullStatus>,
    started: Instant,
    started_at: &str,
    e: &StartError,
) {
    let state_dir = state_dir_of(run);
    let records = Records {
        report: run.report.as_deref(),
        metrics: run.metrics.as_deref(),
        last_run: apply.then_some(state_dir.as_path()),
    };
    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        // A stop that came while the run was starting (taken, not fatal: `signals::Held`).
        interrupted: tend_resources::process::stopping(),
        error: Some(e.to_string()),
        error_class: Some(e.class()),
        tend_version: env!("CARGO_PKG_VERSION"),
        mode: if apply { Mode::Apply } else { Mode::Plan },
        unprivileged: !nix::unistd::geteuid().is_root(),
        orphans: Vec::new(),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        root: root_of(&run.manifest).display().to_string(),
        manifest: ManifestInfo {
            path: absolute(&run.manifest.manifest).display().to_string(),
            sha256: String::new(),
        },
        started_at: started_at.to_string(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        exit_code: 1,
        summary: Summary::default(),
        resources: Vec::new(),
        pull: pull.cloned(),
    };
    let json = report.to_json(&Redactor::new(Vec::new()));
    records.write(&report, &json);
    // The journal hears of a run that could not start too (a broken manifest on a fleet host).
    let logged = crate::journald::records(
        &report,
        &crate::journald::run_id(),
        &Redactor::new(Vec::new()),
    );
    crate::journald::send(&logged);
}

/// While an apply runs: a line on stderr at most every 30 s (`TEND_HEARTBEAT_SECS` changes
/// the period, for tests) naming what is in flight, so a journal shows the run is alive.
async fn heartbeat(progress: std::sync::Arc<engine::Progress>) {
    let secs = std::env::var("TEND_HEARTBEAT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(30);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(secs));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Some(what) = progress.describe_in_flight() {
            eprintln!(
                "tend: still applying after {}s: {what}",
                started.elapsed().as_secs()
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn engine(
    cli: &Cli,
    run: &RunArgs,
    apply: Option<&cli::ApplyArgs>,
    pull: Option<&PullStatus>,
    state_dir: &Path,
    started: Instant,
    started_at: &str,
    records: &Records<'_>,
) -> Result<i32, StartError> {
    let mode = if apply.is_some() {
        Mode::Apply
    } else {
        Mode::Plan
    };
    let jobs = run
        .jobs
        .map_or_else(|| tend_resources::process::cpus().max(2) * 2, usize::from);
    // A stop before the runtime listens is held, then taken gracefully (see `signals::hold`).
    let held = crate::signals::hold();
    // Before anything is read from it or written to it.
    let unprivileged = !nix::unistd::geteuid().is_root();
    let trusted = state::check_path(&root_of(&run.manifest), state_dir)
        .and_then(|()| state::check_trusted(state_dir));
    // An audit as another user than root (a plan as `nobody`): root's state directory is not
    // this user's to trust, and holds nothing it could read. The plan goes on without one —
    // no stored secret (throwaway values), no journal, no last-run.json — and says so once.
    let no_state = Path::new("/nonexistent/tend-state");
    let state_dir = match trusted {
        Ok(()) => state_dir,
        Err(e)
            if apply.is_none()
                && unprivileged
                && e.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            eprintln!(
                "warning: the state directory {} is not this user's (uid {}): this plan uses none — it reads the host only, values of secret() are throwaway, no last-run.json is written",
                state_dir.display(),
                nix::unistd::geteuid()
            );
            no_state
        }
        Err(e) => return Err(StartError::State(e.to_string())),
    };
    // The manifest first: one that does not load leaves no state directory, lock or secret.
    // Secrets it generates are kept in memory until the lock is held.
    let secret_mode = if apply.is_some() {
        SecretMode::Deferred
    } else {
        SecretMode::ReadOnly
    };
    // A plan of the whole manifest checks each resource while the rest loads (`early`).
    let mut early = (apply.is_none() && run.only.is_empty()).then(|| crate::engine::early::Early {
        root: root_of(&run.manifest),
        state_dir,
        jobs,
        started: None,
    });
    let mut m = load(
        &run.manifest,
        secret_mode,
        Some(state_dir),
        early
            .as_mut()
            .map(|e| e as &mut dyn crate::manifest::Observer),
    )?;
    let mut g = graph::Graph::build(&m)?;
    let (runtime, early) = match early.as_mut().and_then(|e| e.started.take()) {
        Some(mut s) => {
            s.checks.close();
            (s.runtime, Some((s.checks, s.probe)))
        }
        None => {
            // libgit2 (and OpenSSL with it) only for a manifest that uses git, and while this
            // process still has one thread (see `git::tls`).
            if m.resources.iter().any(|d| d.enabled && d.kind == "git") {
                tend_resources::git::tls::start_deferred();
            }
            let runtime = runtime(jobs)
                .map_err(|e| StartError::Host(format!("cannot start the runtime: {e}")))?;
            (runtime, None)
        }
    };
    let listening = {
        let _entered = runtime.enter();
        crate::signals::listen()
    };
    runtime.spawn(watch_signals(listening));
    held.hand_over();
    // Apply takes the run lock, and with it the only handle that can write the host; plan
    // takes neither.
    let lock = match apply {
        Some(a) => Some(state::lock(state_dir, Duration::from_secs(a.lock_wait))?),
        None => None,
    };
    if apply.is_some() {
        // Temporaries a killed run left among the backups are nobody's now that we hold the lock.
        tend_resources::host::BackupStore::new(state_dir).clean_leftovers();
        // The next run decodes the manifest's tree instead of parsing it (`tree_cache`).
        if let Some(tree) = m.tree_to_store.take() {
            let file = state_dir.join(crate::manifest::tree_cache::FILE);
            if let Err(e) = tend_resources::host::write_state_file(&file, &tree) {
                tracing::warn!("cannot store the manifest's parsed tree: {e}");
            }
        }
        let stored = m.secrets.persist_fresh().map_err(StartError::State)?;
        if !stored {
            // Another run stored a secret this one generated: use the stored value.
            m = load(&run.manifest, SecretMode::Persist, Some(state_dir), None)?;
            g = graph::Graph::build(&m)?;
        }
    }
    // An image carries its state directory to every clone: said once, with the way out.
    let root_dir = root_of(&run.manifest);
    if apply.is_some() && root_dir != Path::new("/") && state_dir.starts_with(&root_dir) {
        eprintln!(
            "note: the state directory {} is inside the image: its host key, stored secrets and records go with every machine cloned from it; run `tend image seal --root {}` before capturing the image",
            state_dir.display(),
            root_dir.display()
        );
    }
    let sel = engine::Selection::new(&m, &g, &run.only).map_err(StartError::Usage)?;
    let recorded = crate::orphans::recorded(state_dir);
    let mut left = crate::orphans::orphans(&recorded, &m);
    let root = root_of(&run.manifest);
    let (early, probe) = match early {
        Some((checks, probe)) => (Some(checks), probe),
        None => {
            let probe = probe(&root, state_dir, apply.is_some()).map_err(|e| {
                StartError::State(format!(
                    "cannot read the host key in the state directory {}: {e}",
                    state_dir.display()
                ))
            })?;
            (None, probe)
        }
    };
    let journal = journal::Journal::load(state_dir).map_err(|e| {
        StartError::State(format!(
            "cannot read the refresh journal in the state directory: {e}"
        ))
    })?;
    let redactor = std::sync::Arc::new(Redactor::new(m.secrets.values()));
    let style = printer::Style {
        color: color_wanted(std::io::stdout().is_terminal()),
        verbose: cli.verbose > 0,
        quiet: cli.quiet,
    };
    // Apply in human format prints each wave's lines as soon as the wave is done; a 15-minute
    // compose wait then shows what came before it, and the summary stays last.
    let live = apply.is_some() && run.format == Format::Human;
    let beating = apply.is_some() && !cli.quiet;
    let progress = std::sync::Arc::new(engine::Progress {
        on_settled: live.then(|| {
            let redactor = redactor.clone();
            Box::new(move |done: &[&report::ResourceReport]| {
                output::stdout(&printer::render_resources(
                    done.iter().copied(),
                    &style,
                    &redactor,
                ));
            }) as Box<engine::OnSettled>
        }),
        in_flight: beating.then(Default::default),
    });
    // `--prune`: every kind tend can remove; else what the manifest's `[prune]` names. An
    // `--only` run saw part of the manifest: it neither prunes nor records.
    let whole = run.only.is_empty();
    let forget = apply.is_some_and(|a| a.forget_orphans);
    let prune_kinds: Vec<String> = if run.prune {
        crate::orphans::prunable()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        m.prune.clone()
    };
    let mut owed = journal.owed();
    let mut prune_outcome = crate::orphans::Pruned::default();
    let mut kept: Vec<crate::orphans::Managed> = if forget { Vec::new() } else { left.clone() };
    match (apply, lock.as_ref()) {
        // Pruning goes first, so what a pruned resource notified (nginx, to drop the site)
        // is refreshed by this apply like any notification, journaled first.
        (Some(a), Some(lock)) if whole && !prune_kinds.is_empty() && !kept.is_empty() => {
            match self::probe(&root, state_dir, true) {
                Ok(p) => {
                    let host = lock.mutate(p).keep_backups(a.keep_backups);
                    let p = runtime.block_on(crate::orphans::prune(
                        &host,
                        std::mem::take(&mut kept),
                        &prune_kinds,
                    ));
                    crate::orphans::journal_refreshes(&m, &p.gone, &journal);
                    kept = p.kept.clone();
                    left = p.gone.iter().chain(&p.kept).cloned().collect();
                    prune_outcome = p;
                }
                Err(e) => tracing::warn!("nothing pruned: cannot read the host key: {e}"),
            }
        }
        // A plan says what apply would prune, and what that would refresh.
        (None, _) if whole => {
            let going = crate::orphans::foresee(&mut left, &prune_kinds, &probe);
            crate::orphans::owe_refreshes(&m, &going, &mut owed);
            prune_outcome.planned = going.len();
        }
        _ => {}
    }
    let heartbeat = beating.then(|| runtime.spawn(heartbeat(progress.clone())));
    let resources = match apply {
        None => runtime.block_on(engine::plan(&m, &g, &sel, probe, jobs, &owed, early)),
        Some(a) => {
            let Some(lock) = lock.as_ref() else {
                return Err(StartError::Host("apply without the run lock".into()));
            };
            let host = lock.mutate(probe).keep_backups(a.keep_backups);
            runtime.block_on(engine::apply(
                &m,
                &g,
                &sel,
                host,
                jobs,
                std::sync::Arc::new(journal),
                progress.clone(),
            ))
        }
    };
    if let Some(h) = heartbeat {
        h.abort();
    }
    let interrupted = tend_resources::process::stopping();
    // A whole-manifest apply records what it manages (under the lock it still holds), and the
    // orphans still there.
    if apply.is_some() && whole {
        let still: Vec<crate::orphans::Managed> = kept
            .into_iter()
            .map(|mut o| {
                o.pruned = None;
                o.state = crate::orphans::State::LeftInPlace;
                o
            })
            .collect();
        crate::orphans::record(state_dir, &m, &still, &recorded, &resources);
    }
    let summary = Summary::of(&resources);
    // An interrupted run did not do all it was asked: the failure bit, whatever else happened.
    let mut exit_code = summary.exit_code() | if interrupted { 4 } else { 0 };
    // What was pruned (or a plan would prune) is a change; a removal that failed, a failure.
    if !prune_outcome.gone.is_empty() || prune_outcome.planned > 0 {
        exit_code |= 2;
    }
    if prune_outcome.failed > 0 {
        exit_code |= 4;
    }
    if pull.is_some_and(PullStatus::failed) {
        exit_code |= 4;
    }
    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        interrupted,
        error: None,
        error_class: None,
        tend_version: env!("CARGO_PKG_VERSION"),
        mode,
        host: m.facts.hostname.clone(),
        root: root.display().to_string(),
        manifest: ManifestInfo {
            path: m.path.display().to_string(),
            sha256: m.sha256.clone(),
        },
        started_at: started_at.to_string(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        exit_code,
        summary,
        resources,
        pull: pull.cloned(),
        unprivileged,
        orphans: left.clone(),
    };
    // The JSON only where something reads it: a plan printed for a person never serializes it.
    let wants_json =
        run.format == Format::Json || records.report.is_some() || records.last_run.is_some();
    let json = if wants_json {
        report.to_json(&redactor)
    } else {
        String::new()
    };
    let text = match run.format {
        Format::Json => json.clone(),
        Format::Human if live => printer::render_summary(&report, &style, &redactor),
        Format::Human => printer::render(&report, &style, &redactor),
    };
    // A closed stdout (`tend plan | head -1`) ends the output quietly; the records still follow.
    output::stdout(&text);
    let logged = crate::journald::records(&report, &crate::journald::run_id(), &redactor);
    crate::journald::send(&logged);
    if cli.log_format == cli::LogFormat::Json {
        eprint!("{}", crate::journald::json_lines(&logged));
    }
    // The records already written say the run's own code; stderr says which one failed.
    if !records.write(&report, &json) {
        exit_code |= 4;
    }
    // The process ends right after this: what the run built is left to the exit rather than
    // taken apart allocation by allocation, and the runtime's idle threads are not waited for
    // (a millisecond of a 1000-file no-op; bench/README).
    runtime.shutdown_background();
    std::mem::forget((sel, report));
    std::mem::forget((m, g));
    Ok(exit_code)
}
