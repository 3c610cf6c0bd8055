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

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::query_parameters::ListContainersOptionsBuilder;
use serde::{Deserialize, Serialize};

use super::compose_cli::{self, Cli, Invocation};
use super::compose_files::{self, Project};
use crate::change::{Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

pub const KIND: Kind = Kind {
    name: "compose",
    summary: "a docker compose project up or down, recreated only when its inputs change",
    build,
};

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";
const HASH_LABEL: &str = "com.docker.compose.config-hash";
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
/// How long one compose command may take (pulls of large images included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Compose {
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
    Ok(Arc::new(Compose {
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

/// What tend recorded after the last successful `up` of a project.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    fingerprint: String,
    /// The services that were up then.
    services: Vec<String>,
    /// sha256 of each input file.
    inputs: BTreeMap<String, String>,
    /// Keyed fingerprints of the `.env` values, to say which keys changed.
    env_keys: BTreeMap<String, String>,
    cli: String,
    cli_version: String,
}

impl Record {
    fn path(host: &Probe, project: &str) -> PathBuf {
        host.state_dir()
            .join("docker/compose")
            .join(format!("{project}.json"))
    }

    fn load(host: &Probe, project: &str) -> Option<Record> {
        let bytes = std::fs::read(Record::path(host, project)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, host: &Mutate, project: &str) -> Result<(), ResourceError> {
        let path = Record::path(host, project);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| ResourceError::Failed(format!("cannot record the project: {e}")))?;
        crate::host::write_state_file(&path, &bytes)?;
        Ok(())
    }

    fn forget(host: &Mutate, project: &str) {
        let _ = host.remove_state_file(&Record::path(host, project));
    }
}

/// One container of the project, as the list call shows it.
#[derive(Debug, Clone)]
struct Running {
    id: String,
    service: String,
    running: bool,
    state: String,
    health: Health,
    /// The exit code of a container that exited ("Exited (0) 3 minutes ago").
    exit_code: Option<i64>,
    config_hash: Option<String>,
}

impl Running {
    fn completed(&self) -> bool {
        !self.running && self.exit_code == Some(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// The project's containers (one-off `run` containers left out), in one API call.
async fn containers(project: &str) -> Result<Vec<Running>, ResourceError> {
    let docker = super::engine().await?;
    let filters = super::label_filter(PROJECT_LABEL, project);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| super::api_error("cannot list the project's containers", e))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            if labels.get(ONEOFF_LABEL).is_some_and(|v| v == "True") {
                return None;
            }
            let status = c.status.unwrap_or_default();
            // API 1.41 has no health field in the list: the status text carries it.
            let health = if status.contains("(healthy)") {
                Health::Healthy
            } else if status.contains("(unhealthy)") {
                Health::Unhealthy
            } else if status.contains("(health: starting)") {
                Health::Starting
            } else {
                Health::None
            };
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            let exit_code = status
                .strip_prefix("Exited (")
                .and_then(|r| r.split_once(')'))
                .and_then(|(code, _)| code.parse().ok());
            Some(Running {
                exit_code,
                id: c.id.unwrap_or_default(),
                service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                running: state == "running",
                state,
                health,
                config_hash: labels.get(HASH_LABEL).cloned(),
            })
        })
        .collect())
}

/// The change for a service whose containers exist but are not all up and healthy (a one-shot
/// service is in sync once it exited with 0).
fn runtime_change(service: &str, cs: &[&Running], one_shot: bool) -> Option<Change> {
    if one_shot && !cs.is_empty() && cs.iter().all(|c| c.running || c.completed()) {
        return None;
    }
    if cs.is_empty() {
        return Some(
            Change::new(
                format!("service {service}"),
                Some("absent"),
                Some("running"),
            )
            .described(format!("service {service}: no container → create")),
        );
    }
    if let Some(c) = cs.iter().find(|c| !c.running) {
        return Some(
            Change::new(
                format!("service {service}"),
                Some(c.state.as_str()),
                Some("running"),
            )
            .described(format!("service {service}: {} → start", c.state)),
        );
    }
    if cs.iter().any(|c| c.health == Health::Unhealthy) {
        return Some(
            Change::new(
                format!("service {service}"),
                Some("unhealthy"),
                Some("healthy"),
            )
            .described(format!("service {service}: unhealthy → restart")),
        );
    }
    None
}

fn by_service(list: &[Running]) -> BTreeMap<&str, Vec<&Running>> {
    let mut m: BTreeMap<&str, Vec<&Running>> = BTreeMap::new();
    for c in list {
        m.entry(c.service.as_str()).or_default().push(c);
    }
    m
}

impl Compose {
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
    fn real_paths(
        &self,
        host: &Probe,
        project: &Project,
    ) -> Result<(Vec<PathBuf>, PathBuf), ResourceError> {
        let vetted = |p: &std::path::Path| -> Result<PathBuf, ResourceError> {
            Ok(host.resolved(p)?.unwrap_or_else(|| host.real(p)))
        };
        let files = project
            .files
            .iter()
            .map(|f| vetted(f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((files, vetted(&self.dir)?))
    }

    fn invocation<'a>(
        &'a self,
        cli: &'a Cli,
        project: &'a Project,
        real_files: &'a [PathBuf],
        dir: &'a std::path::Path,
    ) -> Invocation<'a> {
        Invocation {
            cli,
            project: &project.name,
            dir,
            files: real_files,
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
        let env_path = self.dir.join(".env").display().to_string();
        for (path, digest) in &project.inputs {
            if r.inputs.get(path) == Some(digest) {
                continue;
            }
            let name = std::path::Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            if *path == env_path {
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
                    out.push(".env changed".into());
                } else {
                    out.push(format!(".env changed: {}", changed.join(", ")));
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

    async fn record(
        &self,
        host: &Mutate,
        project: &Project,
        cli: &Cli,
        version: Option<String>,
    ) -> Result<(), ResourceError> {
        let now = containers(&project.name).await?;
        let services: BTreeSet<String> = now
            .iter()
            .filter(|c| c.running)
            .map(|c| c.service.clone())
            .collect();
        let previous = Record::load(host, &project.name);
        let cli_version = match version {
            Some(v) => v,
            None => match previous.as_ref().filter(|r| r.cli == cli.identity) {
                Some(r) => r.cli_version.clone(),
                None => compose_cli::version(cli).await,
            },
        };
        Record {
            fingerprint: self.fingerprint(host, project, cli),
            services: services.into_iter().collect(),
            inputs: project.inputs.clone(),
            env_keys: project
                .env
                .iter()
                .map(|(k, v)| (k.clone(), host.fingerprint(v.as_bytes())))
                .collect(),
            cli: cli.identity.clone(),
            cli_version,
        }
        .save(host, &project.name)
    }

    /// Compose's config hash of every service it would run.
    async fn config_hashes(
        &self,
        inv: &Invocation<'_>,
    ) -> Result<BTreeMap<String, String>, ResourceError> {
        let out = inv.run_ok(&["config", "--hash", "*"]).await?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let (s, h) = l.trim().split_once(' ')?;
                Some((s.to_string(), h.trim().to_string()))
            })
            .collect())
    }

    async fn wait_ready(&self, project: &Project) -> Result<(), ResourceError> {
        let started = Instant::now();
        loop {
            let list = containers(&project.name).await?;
            if let Some(c) = list.iter().find(|c| {
                project.one_shots.contains(&c.service)
                    && !c.running
                    && c.exit_code.is_some_and(|x| x != 0)
            }) {
                return Err(ResourceError::Failed(format!(
                    "the one-shot service {} exited with {} (see: docker logs {})",
                    c.service,
                    c.exit_code.unwrap_or_default(),
                    &c.id[..c.id.len().min(12)]
                )));
            }
            let waiting: Vec<String> = list
                .iter()
                .filter(|c| !(project.one_shots.contains(&c.service) && c.completed()))
                .filter(|c| !c.running || matches!(c.health, Health::Starting | Health::Unhealthy))
                .map(|c| {
                    let why = if let (false, Some(code)) = (c.running, c.exit_code) {
                        format!("exited with {code}")
                    } else if !c.running {
                        c.state.clone()
                    } else if c.health == Health::Starting {
                        "health: starting".into()
                    } else {
                        "unhealthy".into()
                    };
                    format!("{} ({why})", c.service)
                })
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.wait_timeout {
                return Err(ResourceError::Failed(format!(
                    "services not running and healthy after {} s: {}",
                    self.wait_timeout.as_secs(),
                    waiting.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `up -d`, then the restarts and the wait; returns what the operator should read.
    async fn up(
        &self,
        host: &Mutate,
        restart_unhealthy: &[String],
        refresh: &Refresh,
    ) -> Result<Applied, ResourceError> {
        let restart_all = *refresh == Refresh::Restart;
        let cli = compose_cli::find().await?;
        let project = compose_files::read(host, &self.dir, &self.files, self.project.as_deref())?;
        let (real_files, dir) = self.real_paths(host, &project)?;
        let inv = self.invocation(cli, &project, &real_files, &dir);
        let before = containers(&project.name).await?;
        let mut applied = Applied::default();
        let v2 = matches!(cli.flavour, compose_cli::Flavour::V2 { .. });
        if self.pull == "always" && !v2 {
            inv.run_ok(&["pull"]).await?;
        }
        let mut args = vec!["up", "--detach"];
        if v2 {
            args.extend(["--pull", self.pull]);
        }
        if self.remove_orphans {
            args.push("--remove-orphans");
        }
        let out = inv.run_ok(&args).await?;
        let said = out.summary();
        if !said.is_empty() {
            applied
                .notes
                .push(format!("{}:\n{said}", inv.command_line(&args)));
        }
        let after = containers(&project.name).await?;
        let old_ids: BTreeSet<&str> = before.iter().map(|c| c.id.as_str()).collect();
        let recreated: BTreeSet<&str> = after
            .iter()
            .filter(|c| !old_ids.contains(c.id.as_str()))
            .map(|c| c.service.as_str())
            .collect();
        let docker = super::engine().await?;
        let mut restart: BTreeSet<&str> = BTreeSet::new();
        if restart_all {
            restart.extend(
                after
                    .iter()
                    .filter(|c| c.running)
                    .map(|c| c.service.as_str()),
            );
        }
        restart.extend(restart_unhealthy.iter().map(String::as_str));
        // nginx resolves its upstreams once at start: recreating api/web under it leaves it
        // answering 502 until it restarts.
        if recreated
            .iter()
            .any(|s| !self.restart_on_recreate.iter().any(|r| r == s))
        {
            for s in &self.restart_on_recreate {
                if !recreated.contains(s.as_str()) {
                    restart.insert(s);
                }
            }
        }
        for c in after
            .iter()
            .filter(|c| restart.contains(c.service.as_str()))
        {
            docker
                .restart_container(
                    &c.id,
                    None::<bollard::query_parameters::RestartContainerOptions>,
                )
                .await
                .map_err(|e| super::api_error(&format!("cannot restart {}", c.service), e))?;
        }
        if !restart.is_empty() {
            let list: Vec<&str> = restart.into_iter().collect();
            applied
                .notes
                .push(format!("restarted: {}", list.join(", ")));
        }
        if let Refresh::Signal(sig) = refresh {
            let now = containers(&project.name).await?;
            let mut told = BTreeSet::new();
            for c in now.iter().filter(|c| c.running) {
                let opts = bollard::query_parameters::KillContainerOptionsBuilder::default()
                    .signal(sig)
                    .build();
                docker
                    .kill_container(&c.id, Some(opts))
                    .await
                    .map_err(|e| {
                        super::api_error(&format!("cannot send {sig} to {}", c.service), e)
                    })?;
                told.insert(c.service.as_str());
            }
            let told: Vec<&str> = told.into_iter().collect();
            applied
                .notes
                .push(format!("sent {sig} to {}", told.join(", ")));
        }
        if self.wait {
            self.wait_ready(&project).await?;
        }
        self.record(host, &project, cli, None).await?;
        Ok(applied)
    }
}

#[async_trait]
impl Resource for Compose {
    fn reads(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dir.clone(), self.dir.join(".env")];
        v.extend(self.files.iter().map(|f| self.dir.join(f)));
        v
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let project = compose_files::read(host, &self.dir, &self.files, self.project.as_deref())?;
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
                if let Some(c) = runtime_change(s, &cs, project.one_shots.contains(s)) {
                    drift.push(c);
                }
            }
            return Ok(drift);
        }
        // Slow path: the inputs changed since the last up, or tend never brought it up.
        let (real_files, dir) = self.real_paths(host, &project)?;
        let inv = self.invocation(cli, &project, &real_files, &dir);
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
                    .with_action(crate::Action::Recreate)
                    .described(format!(
                        "service {service}: recreate ({})",
                        reasons.join("; ")
                    )),
                );
            } else if let Some(c) =
                runtime_change(service, &cs, project.one_shots.contains(service))
            {
                drift.push(c);
            }
        }
        if self.remove_orphans {
            for s in services.keys().filter(|s| !hashes.contains_key(**s)) {
                drift.push(
                    Change::new(format!("service {s}"), Some("running"), Some("absent"))
                        .described(format!("service {s}: orphan → remove")),
                );
            }
        }
        Ok(drift)
    }

    /// Running as declared (started by hand, or by an older record): apply adopts it, so the
    /// next check takes the fast path. A record is a write: only with a `Mutate`.
    async fn check_for_apply(&self, host: &Mutate) -> Result<Drift, ResourceError> {
        let drift = self.check(host.probe()).await?;
        if drift.is_empty() && self.up {
            let project =
                compose_files::read(host, &self.dir, &self.files, self.project.as_deref())?;
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
            .filter(|c| c.old.as_deref() == Some("unhealthy"))
            .filter_map(|c| c.field.strip_prefix("service ").map(str::to_string))
            .collect();
        self.up(host, &unhealthy, &Refresh::Up).await
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

impl Compose {
    async fn down(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        let project = compose_files::read(host, &self.dir, &self.files, self.project.as_deref())?;
        let cli = compose_cli::find().await?;
        let (real_files, dir) = self.real_paths(host, &project)?;
        let inv = self.invocation(cli, &project, &real_files, &dir);
        let mut args = vec!["down"];
        if self.remove_orphans {
            args.push("--remove-orphans");
        }
        inv.run_ok(&args).await?;
        let name = project.name;
        Record::forget(host, &name);
        Ok(Applied::default())
    }
}
