//! Command-line arguments, as parsed (no meaning yet): `lib.rs` resolves them into a run.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) const DEFAULT_MANIFEST: &str = "/etc/tend/manifest.toml";

/// The exit codes, for `--help` and the man page (docs/cli.md has the whole story).
const EXIT_STATUS: &str =
    "Exit status (plan, apply): 0 in sync; 2 changes (plan: drift found; apply: changed); \
4 failures; 6 changes and failures; 1 could not start (bad arguments or manifest, lock held). \
An interrupted run (SIGTERM, SIGINT, SIGHUP) sets the failure bit.\n\n\
Files: /etc/tend/manifest.toml (the default manifest), /var/lib/tend (state: lock, \
last-run.json, backups, secrets), /etc/systemd/system/tend.{service,timer} (`tend timer install`).";

#[derive(Debug, Parser)]
#[command(
    name = "tend",
    version,
    about = "Declare a host in TOML; plan the drift; apply only the changes.",
    after_long_help = EXIT_STATUS
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More output: in-sync resources, info logs (-vv: debug logs).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: failures and the summary only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log format on stderr (RUST_LOG filters it). `json` also writes a run's records (one per
    /// resource not in sync, one per run: the fields journald gets) as JSON lines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// A subcommand's arguments, declared to clap only when that subcommand is the one run
/// (`Command::defer`): building every subcommand's arguments was a third of a millisecond of
/// each run's start (bench/README). Help, completions and man pages build them all as before.
#[derive(Debug)]
pub(crate) struct Lazy<T>(pub T);

impl<T> std::ops::Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(|cmd| keep_about(cmd, T::augment_args))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(|cmd| keep_about(cmd, T::augment_args_for_update))
    }
}

/// The arguments' struct says what it is in its doc comment, which clap would make the
/// subcommand's about: run deferred, after the subcommand's own, it must not replace it.
fn keep_about(cmd: clap::Command, augment: fn(clap::Command) -> clap::Command) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let mut cmd = augment(cmd);
    if let Some(about) = about {
        cmd = cmd.about(about);
    }
    if let Some(long_about) = long_about {
        cmd = cmd.long_about(long_about);
    }
    cmd
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Report the drift between the host and the manifest; change nothing. Exit 2 on drift.
    Plan(Lazy<RunArgs>),
    /// Converge the host to the manifest. Exit 2 when something changed, 4 on failures.
    Apply(Lazy<ApplyArgs>),
    /// One run of a fleet host: fetch the policy repository, verify the commit, and apply (or
    /// plan) the manifest it holds. Flags win over /etc/tend/pull.toml.
    Pull(Lazy<PullArgs>),
    /// Validate a manifest without touching the host.
    Check(Lazy<ManifestArgs>),
    /// Print the dependency graph in Graphviz DOT.
    Graph(Lazy<ManifestArgs>),
    /// Print the merged data of the manifest's [data] layers (or one dotted KEY), as JSON; with
    /// --explain, which layer and line gave each value and which layers it overrode.
    Data(Lazy<DataArgs>),
    /// Put back a file's content from the backups tend kept before replacing or removing it.
    Restore(Lazy<RestoreArgs>),
    /// Look at what other programs read.
    #[command(subcommand)]
    Inspect(Inspect),
    /// Say how the last apply ended and why it failed, from the state directory's
    /// last-run.json (exit 4 when it failed, 1 when there is none).
    Status {
        /// The state directory (default: ROOT/var/lib/tend).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The root whose state directory is read.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Print the facts templates see, as JSON.
    Facts {
        /// Read the facts of the system under DIR.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Run tend from a systemd timer: install it, remove it, or show its last and next run.
    #[command(subcommand)]
    Timer(Timer),
    /// Prepare an image built with `apply --root` to be cloned.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Read many hosts' JSON reports into one view.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Print a shell completion script (bash, zsh, fish) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages (tend.1, tend-plan.1, …) into DIR.
    #[command(hide = true)]
    Manpage { dir: PathBuf },
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The policy repository (https://, ssh://, git://, file:// or a path).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The branch (or tag) to follow [default: main].
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// The manifest's path inside the repository [default: manifest.toml].
    #[arg(long = "manifest", value_name = "PATH")]
    pub manifest_path: Option<String>,
    /// Require every commit to carry a valid SSH signature by a key of FILE (git's
    /// gpg.ssh.allowedSignersFile format). A commit that fails is refused.
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// Accept a commit that does not descend from the last applied one (a revert by force-push).
    #[arg(long)]
    pub allow_rollback: bool,
    /// Run the policy the server sends without verifying any signature (no allowed signers):
    /// as root, whatever anyone who can push or sit on the network path sends. Said loudly in
    /// every run's output, report and metrics.
    #[arg(long, conflicts_with = "allowed_signers")]
    pub insecure_unsigned: bool,
    /// Refuse a commit whose message has no `Tend-Ref: REF` trailer naming the ref followed
    /// (a commit that names another ref is refused either way).
    #[arg(long)]
    pub require_ref_trailer: bool,
    /// Give up on a policy server that does not answer for this long (connect or read).
    #[arg(long, value_name = "DURATION")]
    pub fetch_timeout: Option<humantime::Duration>,
    /// Staged rollout: a new commit becomes eligible on this host only after it has known it
    /// for its offset in [0, WINDOW) (from its machine id). `Tend-Rollout: immediate` in a
    /// commit's message skips the wait.
    #[arg(long, value_name = "DURATION")]
    pub rollout_window: Option<humantime::Duration>,
    /// This host's offset in the rollout window, instead of the one from its machine id.
    #[arg(long, value_name = "DURATION")]
    pub rollout_offset: Option<humantime::Duration>,
    /// An SSH private key for ssh:// URLs.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// An environment variable holding an HTTPS token.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Plan instead of apply: report the drift against the policy, change nothing on the host
    /// (the fetch still updates tend's cache of the repository in the state directory).
    #[arg(long)]
    pub plan: bool,
    /// Read defaults for these flags from FILE (TOML: url, ref, manifest, allowed_signers,
    /// allow_unsigned, require_ref_trailer, rollout_window, rollout_offset, fetch_timeout,
    /// ssh_key, token_env, metrics, report).
    #[arg(long, value_name = "FILE", default_value = "/etc/tend/pull.toml")]
    pub config: PathBuf,
    /// Override a variable of [vars] (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Resolve every host path under DIR.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub apply: ApplyFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCmd {
    /// Remove what must not be cloned: tend's host key, stored secrets, policy cache, backups
    /// and run records; /etc/machine-id emptied (made at first boot); SSH host keys.
    Seal(SealArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SealArgs {
    /// The image's root directory.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// The state directory the image was built with (default: ROOT/var/lib/tend).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep /etc/ssh/ssh_host_* (every clone then shares them).
    #[arg(long)]
    pub keep_ssh_host_keys: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCmd {
    /// The fleet from its reports (last-run.json, --report files) under each DIR, however they
    /// were collected: a table on stdout, or --json, or a self-contained static --html page.
    Fleet(FleetArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct FleetArgs {
    /// Directories (searched 4 levels deep for *.json) or report files.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Write the page here (one file: styles and script inline, opens offline).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the fleet as JSON instead of a table.
    #[arg(long, conflicts_with = "html")]
    pub json: bool,
    /// A host whose newest report is older than this is flagged stale (humantime: 2h, 1d).
    #[arg(long, value_name = "AGE", default_value = "2h", value_parser = humantime::parse_duration)]
    pub stale_after: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Timer {
    /// Write tend.service and tend.timer to /etc/systemd/system, reload systemd and enable the
    /// timer (with --root: write under DIR and enable offline, for image builds).
    Install(Box<TimerInstallArgs>),
    /// Disable the timer and remove exactly what `install` wrote.
    Remove(TimerTarget),
    /// Whether the timer is installed and enabled, its next and last run, and the last run's
    /// outcome from last-run.json. Exit 0 when it is enabled and the last run (if any) did not
    /// fail, 3 when it is not installed or not enabled, 4 when the last run failed.
    Status(TimerTarget),
}

#[derive(Debug, Args)]
pub(crate) struct TimerTarget {
    /// Write (or read) the units under DIR, with no call to a running systemd.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The state directory whose last-run.json `status` reads [default: ROOT/var/lib/tend].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The audit timer (tend-audit.service, tend-audit.timer): each run only plans — never
    /// applies — and reports; it may sit beside the converging one.
    #[arg(long)]
    pub plan: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TimerInstallArgs {
    #[command(flatten)]
    pub target: TimerTarget,
    /// The manifest each run applies [default: /etc/tend/manifest.toml]; with --pull, its path
    /// inside the policy repository [default: manifest.toml] (how a host gets its role's).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// When to run, as a systemd calendar event (systemd.time(7)); runs missed while the host
    /// was off are caught up at boot (Persistent=true).
    #[arg(
        long,
        value_name = "SPEC",
        default_value = "*:0/30",
        conflicts_with = "every"
    )]
    pub on_calendar: String,
    /// Run this long after the previous run started, instead of --on-calendar.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<humantime::Duration>,
    /// The first run after boot, this long after it.
    #[arg(long, value_name = "DURATION", default_value = "5min")]
    pub on_boot: humantime::Duration,
    /// Spread the fleet: each host waits a delay in [0, SPLAY) of its own, the same every time
    /// (RandomizedDelaySec with FixedRandomDelay).
    #[arg(long, value_name = "DURATION", default_value = "30min")]
    pub splay: humantime::Duration,
    /// How long a run waits for another run's lock before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub lock_wait: u64,
    /// Each run writes Prometheus textfile metrics to FILE.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Each run also writes its JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The tend binary the service runs [default: this binary; /usr/bin/tend with --root].
    #[arg(long, value_name = "PATH")]
    pub exec: Option<PathBuf>,
    /// Set a variable of [vars] on every run (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Run `tend pull` instead of `tend apply MANIFEST` (a fleet host): from URL, or with no URL
    /// from /etc/tend/pull.toml's; its other settings come from pull.toml or the flags below.
    /// With --pull, --manifest is the manifest's path inside the policy repository (a role's
    /// manifest, say).
    #[arg(long, value_name = "URL", num_args = 0..=1)]
    pub pull: Option<Option<String>>,
    /// With --pull: require commits signed by a key of FILE.
    #[arg(long, value_name = "FILE", requires = "pull")]
    pub allowed_signers: Option<PathBuf>,
    /// With --pull: run unverified policy (see `tend pull --insecure-unsigned`).
    #[arg(long, requires = "pull", conflicts_with = "allowed_signers")]
    pub insecure_unsigned: bool,
    /// How long one run may take before systemd stops it (TimeoutStartSec): a hung run must
    /// not hold back every later one.
    #[arg(long, value_name = "DURATION", default_value = "2h")]
    pub run_timeout: humantime::Duration,
    /// With --pull: the staged rollout window.
    #[arg(long, value_name = "DURATION", requires = "pull")]
    pub rollout_window: Option<humantime::Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The file, as the manifest names it.
    pub path: PathBuf,
    /// The backup to restore: a sha256 or a unique prefix of one [default: the newest].
    #[arg(long, value_name = "SHA")]
    pub from: Option<String>,
    /// List the backups of PATH, newest first, and change nothing.
    #[arg(long)]
    pub list: bool,
    /// Resolve PATH (and the default state directory) under DIR.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The state directory [default: ROOT/var/lib/tend].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Inspect {
    /// The keys and values docker compose reads from a .env file, after its expansion rules and
    /// with this process's environment consulted first, as JSON. Exit 1, naming the line, on a
    /// file compose would reject.
    Env {
        /// The .env file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ManifestArgs {
    /// The manifest.
    #[arg(default_value = DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
    /// Override a variable of [vars] (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Resolve every host path under DIR (facts, files, state directory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DataArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// One dotted key (`web.vhosts`): only its value.
    pub key: Option<String>,
    /// Say where each value came from: the layer and line, and the layers it overrode.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    #[command(flatten)]
    pub flags: RunFlags,
}

/// What a run covers and what it writes: shared by plan, apply and pull.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunFlags {
    /// Only these resources: an address (file.motd), a kind (file) or tag:NAME. Repeatable.
    /// Their dependencies are checked, not applied.
    #[arg(long, value_name = "SELECTOR", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Resources checked or applied at once (1 to 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Write Prometheus textfile metrics to FILE (node_exporter's textfile collector), atomically.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// The state directory [default: ROOT/var/lib/tend].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Remove the resources that left the manifest, where tend created them and can take them
    /// back: files (backed up), links, empty directories, nginx sites, units it wrote (stopped
    /// first); what they notified is refreshed. Others stay listed. A plan says what it would.
    #[arg(long)]
    pub prune: bool,
}

impl std::ops::Deref for RunArgs {
    type Target = RunFlags;
    fn deref(&self) -> &RunFlags {
        &self.flags
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub flags: ApplyFlags,
}

/// How an apply waits for the lock and keeps backups: shared by apply and pull.
#[derive(Debug, Clone, Args)]
pub(crate) struct ApplyFlags {
    /// Wait up to SECS for another run's lock before giving up (exit 1).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub lock_wait: u64,
    /// Backups of replaced files kept per path in the state directory.
    #[arg(long, value_name = "N", default_value_t = tend_resources::host::DEFAULT_KEEP_BACKUPS)]
    pub keep_backups: usize,
    /// Stop listing the resources that left the manifest (they stay on the host as they are).
    #[arg(long, conflicts_with = "prune")]
    pub forget_orphans: bool,
}

impl std::ops::Deref for ApplyArgs {
    type Target = ApplyFlags;
    fn deref(&self) -> &ApplyFlags {
        &self.flags
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    /// The subcommands whose arguments are declared lazily keep their own about (not their
    /// arguments' doc comment), and parse their arguments and the global flags as before.
    #[test]
    fn lazy_subcommands_keep_their_help_and_parse_their_arguments() {
        let mut cmd = Cli::command();
        cmd.build();
        let about = |name: &str| {
            cmd.find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default()
        };
        for (name, start) in [
            ("plan", "Report the drift"),
            ("apply", "Converge the host"),
            ("pull", "One run of a fleet host"),
            ("check", "Validate a manifest"),
        ] {
            assert!(about(name).starts_with(start), "{name}: {}", about(name));
        }
        let plan = cmd.find_subcommand("plan").expect("plan");
        for arg in ["jobs", "only", "report", "root", "manifest"] {
            assert!(
                plan.get_arguments().any(|a| a.get_id() == arg),
                "plan --{arg}"
            );
        }

        let cli =
            Cli::try_parse_from(["tend", "plan", "m.toml", "--jobs", "3", "-q"]).expect("parses");
        assert!(cli.quiet);
        match cli.command {
            Command::Plan(run) => {
                assert_eq!(run.jobs, Some(3));
                assert_eq!(run.manifest.manifest, std::path::PathBuf::from("m.toml"));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["tend", "plan", "--jobs", "0"]).is_err());
    }
}
