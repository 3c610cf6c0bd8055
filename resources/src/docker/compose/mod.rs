//! `compose`: a docker compose project that is up (or down), recreated exactly when its inputs
//! change and never on a no-op run.
//!
//! The fast path spawns nothing: one API call lists the project's containers, and a fingerprint
//! of every input compose reads (the compose files, `.env`, each referenced `env_file`, the
//! profiles, the manifest's variables, the CLI's identity) is compared with the one recorded at
//! the last successful `up`. When they match and every recorded service is running (healthy where
//! it has a healthcheck), the project is in sync. Otherwise compose is asked for each service's
//! config hash (`config --hash '*'`), which is what compose itself compares with the
//! `com.docker.compose.config-hash` label to decide a recreate: so plan names exactly the
//! services `up` would create or recreate, with the inputs that changed. A project that an
//! operator started by hand and that matches is adopted, not recreated.
//!
//! The rooms: `running` (the containers the engine lists), `record` (what tend keeps after an
//! `up`), `up` (apply: up, refresh, wait, down); the check and the fingerprint are here.

mod record;
mod running;
mod up;

use record::Record;
use running::{by_service, containers, runtime_change, Health};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::query_parameters::ListContainersOptionsBuilder;
use serde::{Deserialize, Serialize};

use super::compose_cli::{self, Cli, Invocation};
use super::compose_files::{self, Project};
use crate::change::{Action, Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `compose` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "compose",
    summary: "a docker compose project up or down, recreated only when its inputs change",
    build,
    prune: None,
};

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";
const HASH_LABEL: &str = "com.docker.compose.config-hash";
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
/// How long one compose command may take (pulls of large images included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug)]
/// A `compose` resource, as its manifest table declared it.
pub(crate) struct Compose {
    dir: PathBuf,
    project: Option<String>,
    files: Vec<PathBuf>,
    profiles: Vec<String>,
    up: bool,
    wait: bool,
    wait_timeout: Duration,
    remove_orphans: bool,
    pull: &'static str,
    refresh: Refresh,
    restart_on_recreate: Vec<String>,
    env: BTreeMap<String, String>,
    /// `--env-file`s, relative to `dir` or absolute; none: compose reads `.env`.
    env_files: Vec<PathBuf>,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (dir, _) = f.required_path("dir")?;
    let project = match f.string("project")? {
        Some((t, span)) if !crate::grammar::compose_project(&t.value) => {
            return Err(SpecError::new(
                span,
                format!(
                    "{:?} is not a compose project name ([a-z0-9][a-z0-9_-]*)",
                    t.value
                ),
            ))
        }
        other => other.map(|(t, _)| t.value),
    };
    let files = f
        .string_list("files")?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let profiles = f.string_list("profiles")?;
    let up = f.choice("state", &["up", "down"])?.unwrap_or("up") == "up";
    let wait = f.bool("wait")?.unwrap_or(true);
    let wait_timeout = f.seconds("wait_timeout", 300)?;
    let remove_orphans = f.bool("remove_orphans")?.unwrap_or(false);
    let pull = f
        .choice("pull", &["missing", "always", "never"])?
        .unwrap_or("missing");
    let refresh = match f.string("refresh")? {
        None => Refresh::Up,
        Some((t, span)) => match t.value.as_str() {
            "up" => Refresh::Up,
            "restart" => Refresh::Restart,
            other => match other.strip_prefix("signal:") {
                Some(sig) if SIGNALS.contains(&sig.trim_start_matches("SIG")) => {
                    Refresh::Signal(format!("SIG{}", sig.trim_start_matches("SIG")))
                }
                _ => {
                    return Err(SpecError::new(
                        span,
                        format!("`refresh` must be \"up\", \"restart\" or \"signal:NAME\" (HUP, USR1, USR2, …), not {other:?}"),
                    ))
                }
            },
        },
    };
    let restart_on_recreate = f.string_list("restart_on_recreate")?;
    let env = f.string_map("env")?.into_iter().collect();
    let env_files = f
        .string_list("env_files")?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    Ok(Arc::new(Compose {
        env_files,
        dir,
        project,
        files,
        profiles,
        up,
        wait,
        wait_timeout,
        remove_orphans,
        pull,
        refresh,
        restart_on_recreate,
        env,
    }))
}

/// The real paths compose is given (vetted: no planted symlink on the way).
struct RealPaths {
    files: Vec<PathBuf>,
    dir: PathBuf,
    env_files: Vec<PathBuf>,
}

/// What a notification does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refresh {
    /// `up -d`: what changed in the files is applied.
    Up,
    /// `up -d`, then every running service restarted (bind-mounted files compose cannot see).
    Restart,
    /// `up -d`, then this signal to every running container: nginx-certbot re-reads its site
    /// files on SIGHUP without dropping connections.
    Signal(String),
}

/// Signals a refresh may send (without the `SIG` prefix).
const SIGNALS: &[&str] = &["HUP", "USR1", "USR2", "INT", "QUIT", "TERM", "WINCH"];

impl Compose {
    /// The project as compose would read it.
    fn project(&self, host: &Probe) -> Result<Project, ResourceError> {
        compose_files::read(
            host,
            &self.dir,
            &self.files,
            self.project.as_deref(),
            &self.env_files,
        )
    }

    fn fingerprint(&self, host: &Probe, project: &Project, cli: &Cli) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", host.fingerprint(v.as_bytes())))
            .collect();
        let profiles = self.profiles.join(",");
        let files: Vec<String> = project
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        let files = files.join(",");
        let env = env.join(",");
        let mut parts: Vec<(&str, &str)> = vec![
            ("project", project.name.as_str()),
            ("files", files.as_str()),
            ("profiles", profiles.as_str()),
            ("env", env.as_str()),
            ("cli", cli.identity.as_str()),
        ];
        parts.extend(project.inputs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        compose_files::digest_of(parts)
    }

    /// The project's files and directory as real paths (under `--root`), for running compose:
    /// every component vetted first (no symlink another user planted), since compose resolves
    /// them again itself.
    fn real_paths(&self, host: &Probe, project: &Project) -> Result<RealPaths, ResourceError> {
        let vetted = |p: &std::path::Path| -> Result<PathBuf, ResourceError> {
            Ok(host.resolved(p)?.unwrap_or_else(|| host.real(p)))
        };
        let all = |ps: &[PathBuf]| ps.iter().map(|f| vetted(f)).collect::<Result<Vec<_>, _>>();
        Ok(RealPaths {
            files: all(&project.files)?,
            dir: vetted(&self.dir)?,
            // Only the manifest's: without them compose finds `.env` in the directory itself.
            env_files: if self.env_files.is_empty() {
                Vec::new()
            } else {
                all(&project.env_files)?
            },
        })
    }

    fn invocation<'a>(
        &'a self,
        cli: &'a Cli,
        project: &'a Project,
        real: &'a RealPaths,
    ) -> Invocation<'a> {
        Invocation {
            cli,
            project: &project.name,
            dir: &real.dir,
            files: &real.files,
            env_files: &real.env_files,
            profiles: &self.profiles,
            env: &self.env,
            timeout: COMMAND_TIMEOUT,
        }
    }

    /// Why the inputs differ from the record, in words: "docker-compose.yml changed",
    /// ".env changed: NGINX_PORT".
    fn reasons(
        &self,
        host: &Probe,
        project: &Project,
        cli: &Cli,
        record: Option<&Record>,
    ) -> Vec<String> {
        let Some(r) = record else {
            return vec!["no record of a previous up by tend".into()];
        };
        let mut out = Vec::new();
        let env_paths: Vec<String> = project
            .env_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        for (path, digest) in &project.inputs {
            if r.inputs.get(path) == Some(digest) {
                continue;
            }
            let name = std::path::Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            if env_paths.contains(path) {
                let now: BTreeMap<&str, String> = project
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), host.fingerprint(v.as_bytes())))
                    .collect();
                let keys: BTreeSet<&str> = now
                    .keys()
                    .copied()
                    .chain(r.env_keys.keys().map(String::as_str))
                    .collect();
                let changed: Vec<&str> = keys
                    .into_iter()
                    .filter(|k| now.get(k) != r.env_keys.get(*k))
                    .collect();
                if changed.is_empty() {
                    out.push(format!("{name} changed"));
                } else {
                    out.push(format!("{name} changed: {}", changed.join(", ")));
                }
            } else if r.inputs.contains_key(path) {
                out.push(format!("{name} changed"));
            } else {
                out.push(format!("{name} is new"));
            }
        }
        for path in r.inputs.keys().filter(|p| !project.inputs.contains_key(*p)) {
            out.push(format!("{path} no longer read"));
        }
        if r.cli != cli.identity {
            out.push(format!(
                "the compose CLI changed ({} → {})",
                r.cli, cli.identity
            ));
        }
        if out.is_empty() {
            out.push("the compose CLI, profiles or variables changed".into());
        }
        out
    }
}

#[async_trait]
impl Resource for Compose {
    fn reads(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dir.clone()];
        if self.env_files.is_empty() {
            v.push(self.dir.join(".env"));
        }
        v.extend(self.env_files.iter().map(|f| self.dir.join(f)));
        v.extend(self.files.iter().map(|f| self.dir.join(f)));
        v
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let project = self.project(host)?;
        let list = containers(&project.name).await?;
        let mut drift = Drift::none();
        if !self.up {
            if !list.is_empty() {
                let services: BTreeSet<&str> = list.iter().map(|c| c.service.as_str()).collect();
                drift.push(
                    Change::new("state", Some("up"), Some("down")).described(format!(
                        "state: up ({} containers: {}) → down",
                        list.len(),
                        services.into_iter().collect::<Vec<_>>().join(", ")
                    )),
                );
            }
            return Ok(drift);
        }
        let cli = compose_cli::find().await?;
        let record = Record::load(host, &project.name);
        let fingerprint = self.fingerprint(host, &project, cli);
        let services = by_service(&list);
        if let Some(r) = record.as_ref().filter(|r| r.fingerprint == fingerprint) {
            for s in &r.services {
                let cs = services.get(s.as_str()).cloned().unwrap_or_default();
                let one_shot = project.one_shots.contains(s);
                if let Some(c) = runtime_change(s, &cs, one_shot) {
                    drift.push(c);
                } else if let Some((rec, mut c)) = r
                    .state
                    .get(s)
                    .filter(|_| !one_shot)
                    .and_then(|rec| running::hand_made_change(s, &cs, rec).map(|c| (rec, c)))
                {
                    // Another configuration: say which variables differ, when it is those (one
                    // inspect call, only on drift; fingerprints, never values).
                    let other_config = cs.iter().any(|c| c.config_hash != rec.config_hash);
                    if let (true, false, Some(c0)) = (
                        other_config,
                        rec.env.is_empty(),
                        cs.iter().find(|c| c.running),
                    ) {
                        if let Ok(now) = running::env_prints(host, &c0.id).await {
                            let keys = running::env_keys_differing(&rec.env, &now);
                            if !keys.is_empty() {
                                c.description = format!(
                                    "service {s}: environment differs from the last converge ({}) → recreate from the compose file",
                                    keys.join(", ")
                                );
                            }
                        }
                    }
                    drift.push(c);
                }
            }
            drift.will_fail = running::restart_loop(&drift);
            return Ok(drift);
        }
        // Slow path: the inputs changed since the last up, or tend never brought it up.
        let real = self.real_paths(host, &project)?;
        let inv = self.invocation(cli, &project, &real);
        let hashes = self.config_hashes(&inv).await?;
        let reasons = self.reasons(host, &project, cli, record.as_ref());
        for (service, hash) in &hashes {
            let cs = services.get(service.as_str()).cloned().unwrap_or_default();
            if !cs.is_empty() && cs.iter().any(|c| c.config_hash.as_deref() != Some(hash)) {
                drift.push(
                    Change::new(
                        format!("service {service}"),
                        Some("running"),
                        Some("recreated"),
                    )
                    .with_action(Action::Recreate)
                    .described(format!(
                        "service {service}: recreate ({})",
                        reasons.join("; ")
                    ))
                    .about(service.as_str()),
                );
            } else if let Some(c) =
                runtime_change(service, &cs, project.one_shots.contains(service))
            {
                drift.push(c);
            }
        }
        // Compose recreates a running service when it recreates one it depends on (Dify's nginx
        // after api and web): name it, so plan says all that up will do.
        let mut recreated: BTreeSet<String> = drift
            .changes
            .iter()
            .filter(|c| c.action == Action::Recreate)
            .filter_map(|c| c.subject.clone())
            .collect();
        loop {
            let more: Vec<(String, Vec<String>)> = project
                .depends_on
                .iter()
                .filter(|(s, _)| !recreated.contains(*s))
                .filter(|(s, _)| {
                    services
                        .get(s.as_str())
                        .is_some_and(|cs| cs.iter().any(|c| c.running))
                })
                .filter_map(|(s, deps)| {
                    let why: Vec<String> = deps
                        .iter()
                        .filter(|d| recreated.contains(*d))
                        .cloned()
                        .collect();
                    (!why.is_empty()).then(|| (s.clone(), why))
                })
                .collect();
            if more.is_empty() {
                break;
            }
            for (s, why) in more {
                drift
                    .changes
                    .retain(|c| c.subject.as_deref() != Some(s.as_str()));
                drift.push(
                    Change::new(format!("service {s}"), Some("running"), Some("recreated"))
                        .with_action(Action::Recreate)
                        .described(format!(
                            "service {s}: recreate (it depends on {}, which {} recreated)",
                            why.join(", "),
                            if why.len() == 1 { "is" } else { "are" }
                        ))
                        .about(s.as_str()),
                );
                recreated.insert(s);
            }
        }
        // Recreations follow from the inputs as read: a dependency that may rewrite one (the
        // `.env`) makes them uncertain, unlike a stopped service that up starts either way.
        for c in drift
            .changes
            .iter_mut()
            .filter(|c| c.action == Action::Recreate)
        {
            c.from_input = true;
        }
        if self.remove_orphans {
            for s in services.keys().filter(|s| !hashes.contains_key(**s)) {
                drift.push(
                    Change::removed(format!("service {s}"), "running")
                        .described(format!("service {s}: orphan → remove"))
                        .about(*s),
                );
            }
        }
        drift.will_fail = running::restart_loop(&drift);
        Ok(drift)
    }

    /// Running as declared (started by hand, or by an older record): apply adopts it, so the
    /// next check takes the fast path. A record is a write: only with a `Mutate`.
    async fn check_for_apply(&self, host: &Mutate) -> Result<Drift, ResourceError> {
        let drift = self.check(host.probe()).await?;
        if drift.is_empty() && self.up {
            let project = self.project(host)?;
            let cli = compose_cli::find().await?;
            let fingerprint = self.fingerprint(host, &project, cli);
            let current =
                Record::load(host, &project.name).is_some_and(|r| r.fingerprint == fingerprint);
            if !current {
                self.record(host, &project, cli, None).await?;
            }
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        if !self.up {
            return self.down(host).await;
        }
        let unhealthy: Vec<String> = drift
            .changes
            .iter()
            .filter(|c| c.action == Action::Restart)
            .filter_map(|c| c.subject.clone())
            .collect();
        let paused: Vec<String> = drift
            .changes
            .iter()
            .filter(|c| c.old.as_deref() == Some(running::PAUSED))
            .filter_map(|c| c.subject.clone())
            .collect();
        if !paused.is_empty() {
            let project = self.project(host)?;
            running::unpause(&project.name, &paused).await?;
        }
        let forced: Vec<String> = drift
            .changes
            .iter()
            .filter(|c| c.new.as_deref() == Some(running::RECREATE_FROM_FILE))
            .filter_map(|c| c.subject.clone())
            .collect();
        let scaled: Vec<(String, usize)> = drift
            .changes
            .iter()
            .filter(|c| c.old.as_deref().is_some_and(|o| o.ends_with(" containers")))
            .filter_map(|c| {
                let n = c
                    .new
                    .as_deref()?
                    .strip_suffix(" containers")?
                    .parse()
                    .ok()?;
                Some((c.subject.clone()?, n))
            })
            .collect();
        let mut applied = self.up(host, &unhealthy, &Refresh::Up).await?;
        if !forced.is_empty() || !scaled.is_empty() {
            applied
                .notes
                .extend(self.repair_by_hand_changes(host, &forced, &scaled).await?);
        }
        // What up could repair is repaired; a restart loop stays and the run says so.
        if let Some(why) = running::restart_loop(drift) {
            return Err(ResourceError::Failed(why));
        }
        Ok(applied)
    }

    fn refreshable(&self) -> bool {
        true
    }

    async fn refresh(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        if !self.up {
            return Ok(Applied::default());
        }
        self.up(host, &[], &self.refresh).await
    }
}
