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
//! - [`state`]: the state directory, its lock and `last-run.json`; [`secrets`]: `secret()`;
//! - `run`: one plan or apply from start to records (also when it cannot start); `signals`: the
//!   graceful stop; `restore`: `tend restore`; `timer`: `tend timer`; [`output`]: stdout and the
//!   files asked for.
//!
//! `main` only parses arguments and calls [`run()`].

// Stdout only through `output::stdout` (a closed pipe ends the output quietly).
#![deny(clippy::print_stdout)]

pub mod cli;
mod early;
pub mod escape;
pub mod executor;
pub mod facts;
pub mod fleet;
pub mod graph;
mod image;
pub mod journal;
pub mod journald;
pub mod manifest;
pub mod orphans;
pub mod output;
pub mod printer;
mod pull;
pub mod report;
mod restore;
mod run;
pub mod secrets;
mod signals;
pub mod state;
mod timer;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use cli::{Cli, Command, LogFormat, ManifestArgs, RunArgs};
use manifest::{LoadError, LoadOptions, Manifest};
use secrets::SecretMode;

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

impl StartError {
    /// Whether its text is already tend's error lines (located diagnostics, each `error: …`
    /// with its file, line and caret), to be shown as it is rather than behind an `error: `.
    pub fn renders_itself(&self) -> bool {
        matches!(self, StartError::Load(LoadError::Invalid(_)))
    }
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
        Command::Plan(args) => run::run_engine(cli, args, None, None),
        Command::Apply(args) => run::run_engine(cli, &args.run, Some(args), None),
        Command::Pull(args) => pull::pull(cli, args),
        Command::Check(args) => {
            let m = load(args, SecretMode::Ephemeral, None, None)?;
            let g = graph::Graph::build(&m)?;
            let enabled = m.resources.iter().filter(|d| d.enabled).count();
            // Valid, but likely wrong on this host (or image): said, not refused.
            let root = root_of(args);
            let probe = tend_resources::Probe::new(&root, root.join("var/lib/tend"));
            for d in m.resources.iter().filter(|d| d.enabled) {
                for lint in d.resource.lints(&probe) {
                    eprintln!("warning: {}: {lint}", escape::line(&d.address));
                }
            }
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
        Command::Data(args) => {
            let m = load(&args.manifest, SecretMode::Ephemeral, None, None)?;
            let Some(data) = &m.data else {
                return Err(StartError::Other(format!(
                    "{} has no [data] layers",
                    m.path.display()
                )));
            };
            let key = args.key.as_deref();
            let text = if args.explain {
                manifest::data::explain(data, key)
            } else {
                let shown = manifest::data::redacted(data);
                let value = match key {
                    Some(k) => manifest::data::lookup(&shown, k)
                        .cloned()
                        .ok_or_else(|| StartError::Other(format!("the data has no key `{k}`")))?,
                    None => shown,
                };
                serde_json::to_string_pretty(&value)
                    .map_err(|e| StartError::Other(e.to_string()))?
                    + "\n"
            };
            output::stdout(&text);
            Ok(0)
        }
        Command::Graph(args) => {
            let m = load(args, SecretMode::Ephemeral, None, None)?;
            let g = graph::Graph::build(&m)?;
            output::stdout(&g.to_dot(&m));
            Ok(0)
        }
        Command::Restore(args) => restore::restore(args, cli.quiet),
        Command::Inspect(cli::Inspect::Env { file }) => {
            // As root, read it as tend reads every file: no symlink a user planted, a regular
            // file (a FIFO would hang, `/dev/zero` fill memory), at most 64 MiB.
            let path = std::path::absolute(file)
                .map_err(|e| StartError::Other(format!("{}: {e}", file.display())))?;
            let probe = tend_resources::host::Probe::new("/", "/var/lib/tend");
            let text = probe
                .read_limited(&path, 64 << 20)
                .map_err(|e| StartError::Other(e.to_string()))?
                .ok_or_else(|| StartError::Other(format!("{}: no such file", file.display())))?;
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
        Command::Report(cli::ReportCmd::Fleet(args)) => {
            let fleet = fleet::read(&args.dirs, args.stale_after);
            if let Some(out) = &args.html {
                let page = fleet::page::render(&fleet);
                // Written whole, then renamed: a web server serving the file never shows half.
                let tmp = out.with_extension("html.tmp");
                std::fs::write(&tmp, page.as_bytes())
                    .and_then(|()| std::fs::rename(&tmp, out))
                    .map_err(|e| StartError::Other(format!("{}: {e}", out.display())))?;
                if !cli.quiet {
                    output::stdout(&format!(
                        "{}: {} hosts, {} reports not read
",
                        out.display(),
                        fleet.hosts.len(),
                        fleet.refused.len()
                    ));
                }
            } else if args.json {
                output::stdout(
                    &(serde_json::to_string_pretty(&fleet)
                        .map_err(|e| StartError::Other(e.to_string()))?
                        + "\n"),
                );
            } else {
                output::stdout(&fleet::table(&fleet));
            }
            Ok(if fleet.refused.is_empty() { 0 } else { 4 })
        }
        Command::Image(cli::ImageCmd::Seal(args)) => {
            let root = absolute(&args.root);
            let state = args
                .state_dir
                .as_deref()
                .map_or_else(|| root.join("var/lib/tend"), absolute);
            let said =
                image::seal(&root, &state, args.keep_ssh_host_keys).map_err(StartError::Other)?;
            if !cli.quiet {
                let mut out = said.join("\n");
                if said.is_empty() {
                    out.push_str("nothing to remove: the image is sealed");
                }
                out.push('\n');
                output::stdout(&out);
            }
            Ok(0)
        }
        Command::Timer(cli::Timer::Install(args)) => timer::install(args, cli.quiet),
        Command::Timer(cli::Timer::Remove(t)) => timer::remove(t, cli.quiet),
        Command::Timer(cli::Timer::Status(t)) => timer::status(t),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            let shell = match shell {
                cli::Shell::Bash => clap_complete::Shell::Bash,
                cli::Shell::Zsh => clap_complete::Shell::Zsh,
                cli::Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut cmd, "tend", &mut buf);
            output::stdout(&String::from_utf8_lossy(&buf));
            Ok(0)
        }
        Command::Manpage { dir } => {
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), dir)
                })
                .map_err(|e| StartError::Other(format!("{}: {e}", dir.display())))?;
            Ok(0)
        }
        Command::Status { state_dir, root } => {
            let root = root.as_deref().map_or_else(|| PathBuf::from("/"), absolute);
            let state = state_dir
                .as_deref()
                .map_or_else(|| root.join("var/lib/tend"), absolute);
            match timer::last_run(&state).map_err(StartError::Other)? {
                Some(last) => {
                    output::stdout(&format!("last run: {}\n", last.text));
                    Ok(if last.failed { 4 } else { 0 })
                }
                None => Err(StartError::Other(format!(
                    "no run recorded in {} (no last-run.json)",
                    state.display()
                ))),
            }
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
    observer: Option<&mut dyn manifest::Observer>,
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
    Ok(manifest::load_observed(&args.manifest, &opts, observer)?)
}
