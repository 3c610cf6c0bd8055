//! `tend`: the agent. It loads a manifest, builds the dependency graph, runs the convergence
//! engine over the providers of `tend-resources`, and reports.
//!
//! The stages, one module each:
//! - [`manifest`]: TOML with spans → variables → rendered templates → typed resources, every
//!   error located with file, line, column and a caret;
//! - [`graph`]: explicit and automatic edges, topological order, cycles named;
//! - [`executor`]: plan (read-only, through a `Probe`) and apply (check → apply → verify →
//!   refresh, dependents of failures skipped);
//! - [`report`] and [`printer`]: JSON report, metrics, human output, exit codes;
//! - [`state`]: the state directory, its lock and `last-run.json`; [`secrets`]: `secret()`.
//!
//! `main` only parses arguments and calls [`run`].

pub mod cli;
pub mod executor;
pub mod facts;
pub mod graph;
pub mod journal;
pub mod manifest;
pub mod output;
pub mod printer;
pub mod report;
pub mod secrets;
pub mod state;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use cli::{Cli, Command, Format, LogFormat, ManifestArgs, RunArgs};
use manifest::{LoadError, LoadOptions, Manifest};
use report::{ManifestInfo, Mode, Report, Summary};
use secrets::{Redactor, SecretMode};
use tend_resources::{Mutate, Probe};

/// The run could not start: bad arguments, a bad manifest, a held lock. Exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Lock(#[from] state::LockError),
    #[error("{0}")]
    Other(String),
}

pub fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        // At the default verbosity only warnings and errors show, read by a person or a
        // journal (which stamps its own time): the level and the message, nothing else.
        LogFormat::Text if cli.verbose == 0 => builder
            .with_ansi(color_wanted(std::io::stderr().is_terminal()))
            .without_time()
            .with_target(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(color_wanted(std::io::stderr().is_terminal()))
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn color_wanted(tty: bool) -> bool {
    tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> Result<i32, StartError> {
    match &cli.command {
        Command::Plan(args) => run_engine(cli, args, None),
        Command::Apply(args) => run_engine(cli, &args.run, Some(args)),
        Command::Check(args) => {
            let m = load(args, SecretMode::Ephemeral, None)?;
            let g = graph::Graph::build(&m)?;
            let enabled = m.resources.iter().filter(|d| d.enabled).count();
            if !cli.quiet {
                output::stdout(
                    &(format!(
                        "{}: valid, {} resources ({} enabled), {} ordering edges",
                        m.path.display(),
                        m.resources.len(),
                        enabled,
                        g.deps.iter().map(Vec::len).sum::<usize>()
                    ) + "\n"),
                );
            }
            Ok(0)
        }
        Command::Graph(args) => {
            let m = load(args, SecretMode::Ephemeral, None)?;
            let g = graph::Graph::build(&m)?;
            output::stdout(&g.to_dot(&m));
            Ok(0)
        }
        Command::Restore(args) => restore(args, cli.quiet),
        Command::Inspect(cli::Inspect::Env { file }) => {
            let text = std::fs::read(file)
                .map_err(|e| StartError::Other(format!("cannot read {}: {e}", file.display())))?;
            let text = String::from_utf8_lossy(&text);
            let env = |k: &str| std::env::var(k).ok();
            let values = tend_resources::dotenv::parse(&text)
                .and_then(|doc| tend_resources::dotenv::evaluate(&doc, &env))
                .map_err(|e| StartError::Other(format!("{}: {e}", file.display())))?;
            output::stdout(
                &(serde_json::to_string_pretty(&values)
                    .map_err(|e| StartError::Other(e.to_string()))?
                    + "\n"),
            );
            Ok(0)
        }
        Command::Facts { root } => {
            let f = facts::Facts::gather(root.as_deref().unwrap_or(Path::new("/")));
            output::stdout(
                &(serde_json::to_string_pretty(&f)
                    .map_err(|e| StartError::Other(e.to_string()))?
                    + "\n"),
            );
            Ok(0)
        }
    }
}

/// Absolute, so that paths stay right whatever the working directory.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn root_of(args: &ManifestArgs) -> PathBuf {
    args.root
        .as_deref()
        .map_or_else(|| PathBuf::from("/"), absolute)
}

fn state_dir_of(run: &RunArgs) -> PathBuf {
    run.state_dir
        .as_deref()
        .map_or_else(|| root_of(&run.manifest).join("var/lib/tend"), absolute)
}

fn load(
    args: &ManifestArgs,
    secrets: SecretMode,
    state_dir: Option<&Path>,
) -> Result<Manifest, StartError> {
    let root = root_of(args);
    if !root.is_dir() {
        return Err(StartError::Other(format!(
            "--root {}: not a directory",
            root.display()
        )));
    }
    let opts = LoadOptions {
        vars: args.vars.clone(),
        state_dir: state_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.join("var/lib/tend")),
        root,
        secrets,
    };
    Ok(manifest::load(&args.manifest, &opts)?)
}

/// What a run writes besides stdout: `--report`, `--metrics` and (apply) `last-run.json`.
struct Records<'a> {
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

fn run_engine(cli: &Cli, run: &RunArgs, apply: Option<&cli::ApplyArgs>) -> Result<i32, StartError> {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let state_dir = state_dir_of(run);
    let records = Records {
        report: run.report.as_deref(),
        metrics: run.metrics.as_deref(),
        last_run: apply.map(|_| state_dir.as_path()),
    };
    match engine(cli, run, apply, &state_dir, started, &started_at, &records) {
        Ok(code) => Ok(code),
        Err(e) => {
            // A run that cannot start leaves a record too: a fleet whose manifest broke must not
            // keep showing the last good run's exit code.
            let report = Report {
                schema_version: report::SCHEMA_VERSION,
                interrupted: false,
                error: Some(e.to_string()),
                tend_version: env!("CARGO_PKG_VERSION"),
                mode: if apply.is_some() {
                    Mode::Apply
                } else {
                    Mode::Plan
                },
                host: nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                root: root_of(&run.manifest).display().to_string(),
                manifest: ManifestInfo {
                    path: absolute(&run.manifest.manifest).display().to_string(),
                    sha256: String::new(),
                },
                started_at,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                exit_code: 1,
                summary: Summary::default(),
                resources: Vec::new(),
            };
            let json = report.to_json(&Redactor::new(Vec::new()));
            records.write(&report, &json);
            Err(e)
        }
    }
}

/// Listen for SIGTERM (systemd's stop), SIGINT (Ctrl-C) and SIGHUP: the first asks the run to
/// stop gracefully, the second ends it at once.
async fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot listen for signals: a stop will end the run at once");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    eprintln!(
        "tend: {name}: finishing the resources in flight (dpkg and apt are waited for), ending \
         the commands it started, starting nothing new; a second signal stops at once"
    );
    tend_resources::process::request_stop();
    let again = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    eprintln!("tend: second signal ({again}): stopping now; this run's report is not written");
    tend_resources::process::kill_all();
    std::process::exit(4);
}

/// While an apply runs: a line on stderr at most every 30 s (`TEND_HEARTBEAT_SECS` changes
/// the period, for tests) naming what is in flight, so a journal shows the run is alive.
async fn heartbeat(progress: std::sync::Arc<executor::Progress>) {
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

fn engine(
    cli: &Cli,
    run: &RunArgs,
    apply: Option<&cli::ApplyArgs>,
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
    let jobs = run.jobs.map_or_else(
        || {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2)
                * 2
        },
        usize::from,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(jobs.clamp(1, 64))
        .enable_all()
        .build()
        .map_err(|e| StartError::Other(format!("cannot start the runtime: {e}")))?;
    runtime.spawn(watch_signals());
    // Before anything is read from it or written to it.
    state::check_trusted(state_dir).map_err(|e| StartError::Other(e.to_string()))?;
    // The manifest first: one that does not load leaves no state directory, lock or secret.
    // Secrets it generates are kept in memory until the lock is held.
    let secret_mode = if apply.is_some() {
        SecretMode::Deferred
    } else {
        SecretMode::ReadOnly
    };
    let mut m = load(&run.manifest, secret_mode, Some(state_dir))?;
    let mut g = graph::Graph::build(&m)?;
    let _lock = match apply {
        Some(a) => Some(state::RunLock::acquire(
            state_dir,
            Duration::from_secs(a.lock_wait),
        )?),
        None => None,
    };
    if apply.is_some() {
        // Temporaries a killed run left among the backups are nobody's now that we hold the lock.
        tend_resources::host::BackupStore::new(state_dir).clean_leftovers();
        let stored = m.secrets.persist_fresh().map_err(StartError::Other)?;
        if !stored {
            // Another run stored a secret this one generated: use the stored value.
            m = load(&run.manifest, SecretMode::Persist, Some(state_dir))?;
            g = graph::Graph::build(&m)?;
        }
    }
    let sel = executor::Selection::new(&m, &g, &run.only).map_err(StartError::Other)?;
    let root = root_of(&run.manifest);
    let key = state::host_key(state_dir, apply.is_some()).map_err(|e| {
        StartError::Other(format!(
            "cannot read the host key in the state directory {}: {e}",
            state_dir.display()
        ))
    })?;
    // Plan on a host that never ran apply: fingerprints with a throwaway key (they show that
    // something changes, but do not compare across runs).
    let key = key.unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    let probe = Probe::with_key(&root, state_dir, key);
    let journal = journal::Journal::load(state_dir).map_err(|e| {
        StartError::Other(format!(
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
    let progress = std::sync::Arc::new(if live {
        let redactor = redactor.clone();
        executor::Progress {
            on_settled: Box::new(move |done| {
                output::stdout(&printer::render_resources(done, &style, &redactor));
            }),
            in_flight: Default::default(),
        }
    } else {
        executor::Progress::silent()
    });
    let heartbeat =
        (apply.is_some() && !cli.quiet).then(|| runtime.spawn(heartbeat(progress.clone())));
    let resources = match apply {
        None => runtime.block_on(executor::plan(
            &m,
            &g,
            &sel,
            probe,
            jobs,
            &journal.pending(),
        )),
        Some(a) => {
            // The engine's apply path: the one place a run gets a handle that can write.
            #[allow(clippy::disallowed_methods)]
            let host = Mutate::new(probe).keep_backups(a.keep_backups);
            runtime.block_on(executor::apply(
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
    let summary = Summary::of(&resources);
    // An interrupted run did not do all it was asked: the failure bit, whatever else happened.
    let mut exit_code = summary.exit_code() | if interrupted { 4 } else { 0 };
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        interrupted,
        error: None,
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
    };
    let json = report.to_json(&redactor);
    let text = match run.format {
        Format::Json => json.clone(),
        Format::Human if live => printer::render_summary(&report, &style, &redactor),
        Format::Human => printer::render(&report, &style, &redactor),
    };
    // A closed stdout (`tend plan | head -1`) ends the output quietly; the records still follow.
    output::stdout(&text);
    if !records.write(&report, &json) {
        exit_code |= 4;
        report.exit_code = exit_code;
    }
    Ok(exit_code)
}

/// `tend restore`: put a backup back, keeping the current content as a backup in turn.
fn restore(args: &cli::RestoreArgs, quiet: bool) -> Result<i32, StartError> {
    use std::os::unix::fs::MetadataExt;
    use tend_resources::host::{mode_of, Attrs, BackupStore};
    let root = args
        .root
        .as_deref()
        .map_or_else(|| PathBuf::from("/"), absolute);
    let state_dir = args
        .state_dir
        .as_deref()
        .map_or_else(|| root.join("var/lib/tend"), absolute);
    let probe = Probe::new(&root, &state_dir);
    let real = probe.real(&args.path);
    let store = BackupStore::new(&state_dir);
    let mut entries = store
        .entries(&real)
        .map_err(|e| StartError::Other(e.to_string()))?;
    entries.reverse();
    if entries.is_empty() {
        return Err(StartError::Other(format!(
            "no backups of {} in {}",
            real.display(),
            state_dir.display()
        )));
    }
    let when = |t: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t))
            .to_string()
    };
    if args.list {
        for e in &entries {
            output::stdout(&(format!("{}  {}", e.sha256, when(e.unix_time)) + "\n"));
        }
        return Ok(0);
    }
    let chosen = match &args.from {
        None => entries[0].clone(),
        Some(prefix) => {
            let hits: Vec<_> = entries
                .iter()
                .filter(|e| e.sha256.starts_with(prefix.as_str()))
                .collect();
            match hits.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(StartError::Other(format!(
                        "no backup of {} matches {prefix}; `tend restore {} --list` shows them",
                        real.display(),
                        args.path.display()
                    )))
                }
                _ => {
                    return Err(StartError::Other(format!(
                        "{prefix} matches {} backups; give more digits",
                        hits.len()
                    )))
                }
            }
        }
    };
    let _lock = state::RunLock::acquire(&state_dir, Duration::ZERO)?;
    let content = std::fs::read(store.blob(&chosen.sha256))
        .map_err(|e| StartError::Other(format!("cannot read backup {}: {e}", chosen.sha256)))?;
    // `tend restore` is an operator's explicit write, under the run lock.
    #[allow(clippy::disallowed_methods)]
    let host = Mutate::new(probe);
    let meta = host
        .metadata(&args.path)
        .map_err(|e| StartError::Other(e.to_string()))?;
    // The mode and owner the file had when the backup was taken; a current file's only for old
    // backups that did not record them; else the safe mode. Never a symlink's or a swapped file's.
    let attrs = match (chosen.mode, chosen.uid, chosen.gid, &meta) {
        (Some(mode), Some(uid), Some(gid), _) => Attrs {
            mode: Some(mode),
            uid: Some(uid),
            gid: Some(gid),
        },
        (_, _, _, Some(m)) if m.is_file() => Attrs {
            mode: Some(mode_of(m)),
            uid: Some(m.uid()),
            gid: Some(m.gid()),
        },
        _ => Attrs {
            mode: Some(0o600),
            uid: None,
            gid: None,
        },
    };
    if meta.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(StartError::Other(format!(
            "{} is not a regular file (a symlink or directory is in its place); tend restores \
             only over a regular file or a missing one: look at what is there and remove it first",
            real.display()
        )));
    }
    let kept = host
        .backup(&args.path)
        .map_err(|e| StartError::Other(e.to_string()))?;
    host.write_atomic(&args.path, &content, attrs)
        .map_err(|e| StartError::Other(e.to_string()))?;
    if !quiet {
        output::stdout(
            &(format!(
                "restored {} from backup {} (taken {})",
                real.display(),
                chosen.sha256,
                when(chosen.unix_time)
            ) + "\n"),
        );
        if let Some(k) = kept {
            output::stdout(&(format!("the content it replaced is kept in {}", k.display()) + "\n"));
        }
    }
    Ok(0)
}
