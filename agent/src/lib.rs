//! `tend`: the agent. It loads a manifest, builds the dependency graph, runs the convergence
//! engine over the providers of `tend-resources`, and reports.
//!
//! The stages, one module each:
//! - [`manifest`]: TOML with spans → variables → rendered templates → typed resources, every
//!   error located with file, line, column and a caret;
//! - [`engine`]: the graph (explicit and automatic edges, topological order, cycles named), plan
//!   (read-only, through a `Probe`) and apply (check → apply → verify → refresh, dependents of
//!   failures skipped), the early checks that overlap loading, the journal;
//! - `report` and `printer`: JSON report, metrics, human output, exit codes;
//! - `state`: the state directory, its lock and `last-run.json`; [`secrets`]: `secret()`;
//! - `run`: one plan or apply from start to records (also when it cannot start); `signals`: the
//!   graceful stop; `restore`: `tend restore`; `timer`: `tend timer`; `commands`: the other
//!   subcommands, a file each; `output`: stdout and the files asked for.
//!
//! The binary's `main` sets the umask and calls [`main()`], which parses the arguments and runs
//! the command.

// Stdout only through `output::stdout` (a closed pipe ends the output quietly).
#![deny(clippy::print_stdout)]
// What the binary, the fuzzer and the docs test reach says what it is.
#![warn(missing_docs)]

pub(crate) mod cli;
mod commands;
pub mod engine;
pub(crate) mod escape;
pub(crate) mod facts;
pub(crate) mod fleet;
mod image;
pub(crate) mod journald;
pub mod manifest;
pub(crate) mod orphans;
pub(crate) mod output;
pub(crate) mod printer;
mod pull;
pub(crate) mod report;
mod restore;
mod run;
pub mod secrets;
mod signals;
pub(crate) mod state;
mod timer;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use cli::{Cli, Command, LogFormat, ManifestArgs, RunArgs};
use manifest::{LoadError, LoadOptions, Manifest};
use secrets::SecretMode;

/// The run could not start: bad arguments, a bad manifest, a held lock. Exit code 1.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Lock(#[from] state::LockError),
    /// The command line cannot be used as given: a value a flag does not take, a missing
    /// option, a selector that matches nothing.
    #[error("{0}")]
    Usage(String),
    /// A file tend reads its own settings from (`pull.toml`, the allowed signers) is untrusted
    /// or invalid.
    #[error("{0}")]
    Config(String),
    /// The state directory is untrusted or unreadable, or lacks what the command needs.
    #[error("{0}")]
    State(String),
    /// No policy to converge to: nothing verified was fetched, or a signature no longer holds.
    #[error("{0}")]
    Policy(String),
    /// This machine refused: starting the runtime, a tool tend runs, a file it writes.
    #[error("{0}")]
    Host(String),
}

impl StartError {
    /// What kind of failure to start it is, for machines (`error_class` in the record of a run
    /// that could not start).
    pub(crate) fn class(&self) -> &'static str {
        match self {
            StartError::Load(LoadError::Read { .. }) => "manifest_unreadable",
            StartError::Load(LoadError::Invalid(_)) => "manifest_invalid",
            StartError::Load(LoadError::Usage(_)) | StartError::Usage(_) => "usage",
            StartError::Lock(_) => "lock",
            StartError::Config(_) => "config",
            StartError::State(_) => "state",
            StartError::Policy(_) => "policy",
            StartError::Host(_) => "host",
        }
    }

    /// Whether its text is already tend's error lines (located diagnostics, each `error: …`
    /// with its file, line and caret), to be shown as it is rather than behind an `error: `.
    pub(crate) fn renders_itself(&self) -> bool {
        matches!(self, StartError::Load(LoadError::Invalid(_)))
    }
}

fn init_logging(cli: &Cli) {
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

/// The command line, run: parse the arguments, run the command, say why it could not start.
/// Returns the exit code.
pub fn main() -> i32 {
    use clap::Parser;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // A usage error is "could not start" (1), never 2, which means "changed": a hook that
            // accepts 2 must not accept a typo.
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(&cli);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            // A git server's or a file's text may be in it: shown, not obeyed.
            let text = escape::lines(&e.to_string()).into_owned();
            if e.renders_itself() {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            1
        }
    }
}

/// Run a parsed command line; returns the exit code.
fn run(cli: &Cli) -> Result<i32, StartError> {
    match &cli.command {
        Command::Plan(args) => run::run_engine(cli, args, None, None),
        Command::Apply(args) => run::run_engine(cli, &args.run, Some(args), None),
        Command::Pull(args) => pull::pull(cli, args),
        Command::Check(args) => commands::check::run(cli, args),
        Command::Data(args) => commands::data::run(args),
        Command::Graph(args) => commands::graph::run(args),
        Command::Restore(args) => restore::restore(args, cli.quiet),
        Command::Inspect(cli::Inspect::Env { file }) => commands::inspect::env(file),
        Command::Report(cli::ReportCmd::Fleet(args)) => commands::report::fleet(cli, args),
        Command::Image(cli::ImageCmd::Seal(args)) => commands::image_seal::run(cli, args),
        Command::Timer(cli::Timer::Install(args)) => timer::install(args, cli.quiet),
        Command::Timer(cli::Timer::Remove(t)) => timer::remove(t, cli.quiet),
        Command::Timer(cli::Timer::Status(t)) => timer::status(t),
        Command::Completions { shell } => commands::completions::run(shell),
        Command::Manpage { dir } => commands::manpage::run(dir),
        Command::Status { state_dir, root } => {
            commands::status::run(state_dir.as_deref(), root.as_deref())
        }
        Command::Facts { root } => commands::facts::run(root.as_deref()),
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
        return Err(StartError::Usage(format!(
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
