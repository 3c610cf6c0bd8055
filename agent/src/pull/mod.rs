//! `tend pull`: one run of a fleet host, on infrastructure it already has — a git server and
//! Prometheus, no server of tend's own.
//!
//! 1. Fetch the ref into the cache in the state directory (`fetch`).
//! 2. Decide which commit to converge to: the fetched one when it is verified (signed by an
//!    allowed key, `verify`), descends from the last applied one (no replayed old commit, no
//!    rewritten history), and is eligible here (staged rollout, `record::offset_from`); otherwise the
//!    last applied commit — re-verified, so a revoked key stops it too — and the run says why
//!    and sets the failure bit. An unreachable server is the same: the last good policy, stale,
//!    with its age.
//! 3. Export that commit's tree and plan or apply its manifest: the engine's run, with the pull's
//!    decision in the report (`pull`) and the metrics (`tend_pull_*`).

mod bounded;
mod fetch;
mod pattern;
mod record;
mod signed_commit;
mod signers;
mod verify;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use git2::Oid;
use serde::Deserialize;

use crate::cli::{ApplyArgs, Cli, ManifestArgs, PullArgs, RunArgs};
use crate::report::{PendingCommit, PolicyCommit, PullStatus, RefusedCommit};
use crate::{run, state, StartError};
use record::Record;
use signers::AllowedSigners;

/// `/etc/tend/pull.toml`: defaults for the flags (flags win).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    manifest: Option<String>,
    allowed_signers: Option<PathBuf>,
    allow_unsigned: Option<bool>,
    require_ref_trailer: Option<bool>,
    allow_rollback: Option<bool>,
    fetch_timeout: Option<String>,
    rollout_window: Option<String>,
    rollout_offset: Option<String>,
    ssh_key: Option<PathBuf>,
    token_env: Option<String>,
    metrics: Option<PathBuf>,
    report: Option<PathBuf>,
}

/// A file that says where policy comes from or whom to trust must lie where only tend's user
/// can change any directory on the way to it: a user who can rename an entry of a parent (or
/// hard-link a root file there) could swap in their own. A sticky directory (`/tmp`) protects
/// what root owns in it. Symlinks on the way are resolved and the real directories checked.
pub(crate) fn check_trusted_path(path: &Path) -> Result<(), String> {
    let Ok(real) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some(who) = state::changeable_by_others(&meta) {
            return Err(format!(
                "{}: its directory {} is {who}: a file that says whom tend trusts must lie where only root can change it",
                path.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

impl Config {
    /// The file when it exists. It says where policy comes from and whom to trust: only a
    /// regular file owned by tend's user that nobody else can write, in directories nobody
    /// else can change, is read.
    fn load(path: &Path) -> Result<Config, StartError> {
        check_trusted_path(path).map_err(StartError::Config)?;
        let bytes = tend_resources::host::read_private_file(path)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let Some(bytes) = bytes else {
            return Ok(Config::default());
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| StartError::Config(format!("{}: not UTF-8", path.display())))?;
        toml::from_str(&text).map_err(|e| StartError::Config(format!("{}: {e}", path.display())))
    }
}

/// Seconds a policy server may take to accept or to answer before the fetch gives up.
const DEFAULT_FETCH_TIMEOUT: u64 = 60;

/// Whether the config file at `path` says how (or that it need not) verify: `allowed_signers`
/// or `allow_unsigned = true`.
/// Whether the config file at `path` names the policy's URL (what `timer install --pull` with no
/// URL runs from).
pub(crate) fn config_names_url(path: &Path) -> bool {
    Config::load(path).is_ok_and(|c| c.url.is_some())
}

pub(crate) fn config_verifies(path: &Path) -> bool {
    Config::load(path)
        .is_ok_and(|c| c.allowed_signers.is_some() || c.allow_unsigned.unwrap_or(false))
}

fn duration(flag: &str, text: &str) -> Result<u64, StartError> {
    humantime::parse_duration(text)
        .map(|d| d.as_secs())
        .map_err(|e| StartError::Usage(format!("{flag} {text:?}: {e}")))
}

/// Everything one pull resolved from its flags and the config file.
struct Settings {
    url: String,
    reference: String,
    manifest: String,
    allowed: Option<AllowedSigners>,
    allow_rollback: bool,
    require_ref_trailer: bool,
    fetch_timeout: u64,
    window: u64,
    offset: Option<u64>,
    ssh_key: Option<PathBuf>,
    token_env: Option<String>,
    run: RunArgs,
    apply: Option<ApplyArgs>,
}

/// The run a pull makes, as far as its flags say: the manifest at `manifest` in the exported tree,
/// the state directory resolved as every run resolves it (absolute, `ROOT/var/lib/tend` by
/// default).
fn run_args(args: &PullArgs, manifest: &str) -> RunArgs {
    let mut run = RunArgs {
        manifest: ManifestArgs {
            manifest: PathBuf::new(),
            vars: args.vars.clone(),
            root: args.root.clone(),
        },
        flags: args.run.clone(),
    };
    let state_dir = crate::state_dir_of(&run);
    run.manifest.manifest = state_dir.join("pull/tree").join(manifest);
    run.flags.state_dir = Some(state_dir);
    run
}

fn settings(args: &PullArgs) -> Result<Settings, StartError> {
    let cfg = Config::load(&args.config)?;
    let url = args.url.clone().or(cfg.url).ok_or_else(|| {
        StartError::Usage(format!(
            "no policy repository: give --url or `url` in {}",
            args.config.display()
        ))
    })?;
    let reference = args
        .reference
        .clone()
        .or(cfg.reference)
        .unwrap_or_else(|| "main".into());
    if reference.starts_with('-') || reference.contains("..") || reference.contains(':') {
        return Err(StartError::Usage(format!(
            "--ref {reference:?} is not a branch or tag name"
        )));
    }
    let manifest = args
        .manifest_path
        .clone()
        .or(cfg.manifest)
        .unwrap_or_else(|| "manifest.toml".into());
    if Path::new(&manifest).is_absolute()
        || Path::new(&manifest)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(StartError::Usage(format!(
            "--manifest {manifest:?}: a path inside the repository (relative, no `..`)"
        )));
    }
    let unsigned = args.insecure_unsigned || cfg.allow_unsigned.unwrap_or(false);
    let signers_file = args.allowed_signers.clone().or(cfg.allowed_signers);
    if signers_file.is_none() && !unsigned {
        return Err(StartError::Usage(format!(
            "no allowed signers: tend pull runs only policy signed by a key you trust. Give \
             --allowed-signers FILE (or allowed_signers in {}); --insecure-unsigned \
             (allow_unsigned = true) runs whatever the server sends, as root",
            args.config.display()
        )));
    }
    let allowed = signers_file
        .map(|p| AllowedSigners::load(&p))
        .transpose()
        .map_err(StartError::Config)?;
    let fetch_timeout = match args.fetch_timeout {
        Some(d) => d.as_secs(),
        None => cfg
            .fetch_timeout
            .as_deref()
            .map(|t| duration("fetch_timeout", t))
            .transpose()?
            .unwrap_or(DEFAULT_FETCH_TIMEOUT),
    }
    .max(1);
    let window = match args.rollout_window {
        Some(d) => d.as_secs(),
        None => cfg
            .rollout_window
            .as_deref()
            .map(|t| duration("rollout_window", t))
            .transpose()?
            .unwrap_or(0),
    };
    let offset = match args.rollout_offset {
        Some(d) => Some(d.as_secs()),
        None => cfg
            .rollout_offset
            .as_deref()
            .map(|t| duration("rollout_offset", t))
            .transpose()?,
    };
    let mut run = run_args(args, &manifest);
    run.flags.report = run.flags.report.take().or(cfg.report);
    run.flags.metrics = run.flags.metrics.take().or(cfg.metrics);
    let apply = (!args.plan).then(|| ApplyArgs {
        run: run.clone(),
        flags: args.apply.clone(),
    });
    Ok(Settings {
        url,
        reference,
        manifest,
        allowed,
        allow_rollback: args.allow_rollback || cfg.allow_rollback.unwrap_or(false),
        require_ref_trailer: args.require_ref_trailer || cfg.require_ref_trailer.unwrap_or(false),
        fetch_timeout,
        window,
        offset,
        ssh_key: args.ssh_key.clone().or(cfg.ssh_key),
        token_env: args.token_env.clone().or(cfg.token_env),
        run,
        apply,
    })
}

pub(crate) fn pull(cli: &Cli, args: &PullArgs) -> Result<i32, StartError> {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let s = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            // A broken pull.toml or allowed signers file is a run that could not start: its
            // records say so (what the flags name of them), not the last good run's.
            let run = run_args(
                args,
                args.manifest_path.as_deref().unwrap_or("manifest.toml"),
            );
            run::record_failed_start(&run, !args.plan, None, started, &started_at, &e);
            return Err(e);
        }
    };
    let mut status = PullStatus {
        url: tend_resources::git::redact_url(&s.url),
        reference: s.reference.clone(),
        unverified: s.allowed.is_none(),
        ..PullStatus::default()
    };
    if status.unverified {
        eprintln!(
            "warning: policy signatures are not verified (--insecure-unsigned): this host runs, as root, whatever {} sends",
            status.url
        );
    }
    match decide(&s, &mut status) {
        Ok((commit, mut record)) => {
            tell(cli, args, &status);
            let code = run::run_engine(cli, &s.run, s.apply.as_ref(), Some(&status));
            let pull_dir = pull_dir(&s);
            if s.apply.is_some() && code.is_ok() {
                record.applied = Some(commit.commit.clone());
                record.applied_signer = commit.signer.clone();
            }
            if let Err(e) = record.save(&pull_dir) {
                eprintln!("error: {e}");
                return code.map(|c| c | 4);
            }
            code
        }
        Err(e) => {
            run::record_failed_start(
                &s.run,
                s.apply.is_some(),
                Some(&status),
                started,
                &started_at,
                &e,
            );
            Err(e)
        }
    }
}

fn short(c: &str) -> &str {
    &c[..c.len().min(12)]
}

/// What the pull decided, before the run's own output: refusals and a stale policy on stderr
/// always (a timer's journal shows them), the policy and a pending commit on stdout.
fn tell(cli: &Cli, args: &PullArgs, p: &PullStatus) {
    let Some(applied) = &p.applied else { return };
    if let Some(r) = &p.refused {
        eprintln!(
            "error: refused commit {}: {}; converging to the last verified commit {}",
            short(&r.commit),
            crate::escape::line(&r.reason),
            short(&applied.commit)
        );
    }
    if let Some(e) = &p.fetch_error {
        eprintln!(
            "error: {}; converging to the last good commit {} (the server was last reached {})",
            crate::escape::line(e),
            short(&applied.commit),
            match p.last_fetch_unix {
                0 => "never".to_string(),
                _ => format!("{} s ago", p.policy_age_seconds),
            }
        );
    }
    if cli.quiet || args.run.format != crate::cli::Format::Human {
        return;
    }
    let mut out = format!(
        "Policy: {} \"{}\"{} ({} {})\n",
        short(&applied.commit),
        crate::escape::line(&applied.summary),
        applied
            .signer
            .as_deref()
            .map(|s| format!(", signed by {s}"))
            .unwrap_or_default(),
        p.url,
        p.reference
    );
    if let Some(c) = &p.pending {
        out.push_str(&format!(
            "Pending: {} \"{}\" becomes eligible here at {} (in {} s)\n",
            short(&c.commit),
            crate::escape::line(&c.summary),
            c.eligible_at,
            c.eligible_in_seconds
        ));
    }
    crate::output::stdout(&out);
}

fn pull_dir(s: &Settings) -> PathBuf {
    crate::state_dir_of(&s.run).join("pull")
}

/// Fetch, verify and choose; export the chosen commit's tree. Fills `status` as it goes (also
/// when it fails, for the record of a run that could not start).
fn decide(s: &Settings, status: &mut PullStatus) -> Result<(PolicyCommit, Record), StartError> {
    let other = StartError::State;
    let policy = StartError::Policy;
    let state_dir = crate::state_dir_of(&s.run);
    let root = crate::root_of(&s.run.manifest);
    state::check_path(&root, &state_dir)
        .and_then(|()| state::ensure_private_dir(&state_dir))
        .map_err(|e| other(format!("the state directory {}: {e}", state_dir.display())))?;
    let dir = pull_dir(s);
    state::ensure_private_dir(&dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
    let mut record = Record::load(&dir).map_err(other)?;
    let now = record::now();
    // Before libgit2's first use, while tend has one thread.
    tend_resources::git::tls::start_deferred();
    tend_resources::git::tls::set_network_timeout(s.fetch_timeout);
    let cache = dir.join("repo.git");
    // Made here (on first use), fetched into by a bounded child, then read afresh.
    drop(fetch::open(&cache).map_err(other)?);
    let source = fetch::Source {
        url: &s.url,
        reference: &s.reference,
        ssh_key: s.ssh_key.as_deref(),
        token_env: s.token_env.as_deref(),
    };
    let fetched = bounded::fetch(&cache, &source, bounded::WALL);
    let repo = fetch::open(&cache).map_err(other)?;
    let candidate = match fetched {
        Ok(f) => {
            record.last_fetch = now;
            status.fetched = Some(f.commit.to_string());
            status.fetched_bytes = f.bytes;
            Some(f.commit)
        }
        Err(e) => {
            status.stale = true;
            status.fetch_error = Some(e);
            None
        }
    };
    status.last_fetch_unix = record.last_fetch;
    status.policy_age_seconds = if record.last_fetch == 0 {
        0
    } else {
        now.saturating_sub(record.last_fetch)
    };
    let applied = record
        .applied
        .as_deref()
        .and_then(|c| Oid::from_str(c).ok())
        .filter(|c| repo.find_commit(*c).is_ok());
    let mut chosen = applied;
    if let Some(c) = candidate.filter(|c| Some(*c) != applied) {
        match accept(s, &repo, c, applied) {
            Err(reason) => {
                status.refused = Some(RefusedCommit {
                    commit: c.to_string(),
                    reason,
                });
            }
            Ok(()) => {
                let seen = record.first_seen(&c.to_string(), now);
                let immediate = fetch::trailer(&repo, c, "Tend-Rollout")
                    .is_some_and(|v| v.eq_ignore_ascii_case("immediate"));
                let offset = match s.offset {
                    Some(o) => {
                        status.rollout_offset_from = "rollout_offset".into();
                        o
                    }
                    None => {
                        let (o, from) = record::offset_from(&root, s.window);
                        status.rollout_offset_from = from.into();
                        if from == "none" && s.window > 0 {
                            eprintln!(
                                "warning: no /etc/machine-id and no hostname: this host's rollout offset is 0, as every such host's (set rollout_offset)"
                            );
                        }
                        o
                    }
                }
                .min(s.window);
                let eligible_at = seen + offset;
                // A host with no policy yet takes the current one at once: waiting would leave
                // it unconfigured, not safer.
                if applied.is_none() || immediate || s.window == 0 || now >= eligible_at {
                    chosen = Some(c);
                } else {
                    status.pending = Some(PendingCommit {
                        commit: c.to_string(),
                        summary: fetch::describe(&repo, c).1,
                        eligible_at: humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_secs(eligible_at),
                        )
                        .to_string(),
                        eligible_at_unix: eligible_at,
                        eligible_in_seconds: eligible_at - now,
                    });
                }
            }
        }
    }
    let Some(commit) = chosen else {
        let why = match (&status.refused, &status.fetch_error) {
            (Some(r), _) => format!("commit {} is refused: {}", r.commit, r.reason),
            (None, Some(e)) => e.clone(),
            (None, None) => "nothing fetched".into(),
        };
        return Err(policy(format!(
            "no verified policy to converge to (no commit was applied here before): {why}"
        )));
    };
    // The commit converged to is verified every run: a key removed from the allowed signers
    // stops the policy it signed, here and now.
    let signer = match &s.allowed {
        Some(allowed) => Some(check_signature(allowed, &repo, commit).map_err(|why| {
            policy(format!(
                "the last applied commit {commit} no longer verifies: {why}; nothing to converge to"
            ))
        })?),
        None => None,
    };
    let tree = dir.join("tree");
    let marker = dir.join("tree.commit");
    let exported = tend_resources::host::read_private_file(&marker)
        .ok()
        .flatten()
        .is_some_and(|b| b == commit.to_string().as_bytes());
    if !exported || !tree.is_dir() {
        // All or nothing: the tree is exported beside the current one and takes its place only
        // when complete; the marker names it only then. A failed export leaves no partial tree
        // to be loaded under another commit's name.
        let _ = std::fs::remove_file(&marker);
        let fresh = dir.join("tree.new");
        fetch::export(&repo, commit, &fresh).map_err(other)?;
        let old = dir.join("tree.old");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| other(format!("{}: {e}", old.display())))?;
        }
        if tree.exists() {
            std::fs::rename(&tree, &old).map_err(|e| other(format!("{}: {e}", tree.display())))?;
        }
        std::fs::rename(&fresh, &tree).map_err(|e| other(format!("{}: {e}", tree.display())))?;
        let _ = std::fs::remove_dir_all(&old);
        state::write_private(&dir, "tree.commit", commit.to_string().as_bytes())
            .map_err(|e| other(e.to_string()))?;
    }
    if !tree.join(&s.manifest).is_file() {
        return Err(policy(format!(
            "commit {commit} has no {} (--manifest)",
            s.manifest
        )));
    }
    let (committed_unix, summary) = fetch::describe(&repo, commit);
    let policy = PolicyCommit {
        commit: commit.to_string(),
        summary,
        signer,
        committed_unix,
    };
    status.applied = Some(policy.clone());
    Ok((policy, record))
}

/// Whether a fetched commit may replace the applied one: verified, and not a rollback.
fn accept(
    s: &Settings,
    repo: &git2::Repository,
    c: Oid,
    applied: Option<Oid>,
) -> Result<(), String> {
    if let Some(allowed) = &s.allowed {
        check_signature(allowed, repo, c)?;
    }
    // A signature binds the commit, not the branch it is served as: a signed commit from a
    // work-in-progress branch served as `main` carries `Tend-Ref: wip` (signed, in its message)
    // and is refused here; `require_ref_trailer` refuses a commit that names no ref at all.
    match fetch::trailer(repo, c, "Tend-Ref") {
        Some(r) if r != s.reference => {
            return Err(format!(
                "it is signed for ref {r:?} (its Tend-Ref trailer), not {:?}",
                s.reference
            ))
        }
        None if s.require_ref_trailer => {
            return Err(format!(
                "it has no Tend-Ref trailer naming {:?}, and require_ref_trailer is set",
                s.reference
            ))
        }
        _ => {}
    }
    if let Some(base) = applied {
        if !s.allow_rollback && !fetch::descends(repo, c, base) {
            return Err(format!(
                "it does not descend from {base}, the last commit applied here (a replayed old commit or rewritten history; --allow-rollback accepts it)"
            ));
        }
    }
    Ok(())
}

fn check_signature(
    allowed: &AllowedSigners,
    repo: &git2::Repository,
    c: Oid,
) -> Result<String, String> {
    let object = fetch::raw_commit(repo, c)?;
    verify::verify(allowed, &signed_commit::split(&object)).map_err(|r| r.to_string())
}
