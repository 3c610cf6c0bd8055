//! The project's containers as the engine lists them (one label-filtered call), and what a
//! service's containers say about it.

use super::*;

/// One container of the project, as the list call shows it.
#[derive(Debug, Clone)]
pub(super) struct Running {
    pub(super) id: String,
    pub(super) service: String,
    pub(super) running: bool,
    pub(super) state: String,
    pub(super) health: Health,
    /// The exit code of a container that exited ("Exited (0) 3 minutes ago").
    pub(super) exit_code: Option<i64>,
    pub(super) config_hash: Option<String>,
    /// The networks it is attached to, by name, sorted.
    pub(super) networks: Vec<String>,
    /// The image as the container names it (a tag, or an id once the tag moved on) and the id
    /// of the image it runs.
    pub(super) image: String,
    pub(super) image_id: String,
}

impl Running {
    pub(super) fn completed(&self) -> bool {
        !self.running && self.exit_code == Some(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// The project's containers (one-off `run` containers left out), in one API call.
pub(super) async fn containers(project: &str) -> Result<Vec<Running>, ResourceError> {
    let docker = crate::docker::engine().await?;
    let filters = crate::docker::label_filter(PROJECT_LABEL, project);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| crate::docker::api_error("cannot list the project's containers", e))?;
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
            let mut networks: Vec<String> = c
                .network_settings
                .and_then(|n| n.networks)
                .map(|m| m.into_keys().collect())
                .unwrap_or_default();
            networks.sort();
            let exit_code = status
                .strip_prefix("Exited (")
                .or_else(|| status.strip_prefix("Restarting ("))
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
                networks,
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
            })
        })
        .collect())
}

/// What a service's containers must still be, as the last converge left them: its recorded
/// configuration hash, replica count and networks. Changes made by hand to running containers
/// (recreated from an edited file since reverted, an environment typed on the command line,
/// `--scale`, a network disconnected) are drift, named by what differs.
pub(super) fn hand_made_change(
    service: &str,
    cs: &[&Running],
    recorded: &record::ServiceRecord,
) -> Option<Change> {
    if cs.len() != recorded.replicas {
        return Some(
            Change::new(
                format!("service {service}"),
                Some(format!("{} containers", cs.len())),
                Some(format!("{} containers", recorded.replicas)),
            )
            .described(format!(
                "service {service}: {} containers, compose file says {}",
                cs.len(),
                recorded.replicas
            ))
            .with_action(Action::Update)
            .about(service),
        );
    }
    let forced = |why: String| {
        Some(
            Change::new(
                format!("service {service}"),
                Some("running"),
                Some(RECREATE_FROM_FILE),
            )
            .with_action(Action::Recreate)
            .described(format!(
                "service {service}: {why} → recreate from the compose file"
            ))
            .about(service),
        )
    };
    if recorded.config_hash.is_some() && cs.iter().any(|c| c.config_hash != recorded.config_hash) {
        return forced(
            "its container runs another configuration than the last converge left (recreated by hand: another compose file or environment)".into(),
        );
    }
    // The engine lists a container's image by the name it was created from only while that name
    // still points to the image it runs; once the tag moved on (or went), by the image's id.
    if let Some(name) = recorded.image.as_deref() {
        if let Some(c) = cs
            .iter()
            .find(|c| c.running && c.image != name && c.image.starts_with("sha256:"))
        {
            return forced(format!(
                "runs image {}, but tag {name} no longer points to it",
                short_id(&c.image_id)
            ));
        }
    }
    if let Some(c) = cs
        .iter()
        .find(|c| c.running && c.networks != recorded.networks)
    {
        let missing: Vec<&str> = recorded
            .networks
            .iter()
            .filter(|n| !c.networks.contains(n))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = c
            .networks
            .iter()
            .filter(|n| !recorded.networks.contains(n))
            .map(String::as_str)
            .collect();
        let mut why = Vec::new();
        if !missing.is_empty() {
            why.push(format!("not attached to {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            why.push(format!("attached to {} besides", extra.join(", ")));
        }
        return forced(why.join("; "));
    }
    None
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// A container's environment as keyed fingerprints (`NAME` → fingerprint of its value): what
/// the record keeps, and what a plan compares, one inspect call each, never a value.
pub(super) async fn env_prints(
    host: &Probe,
    id: &str,
) -> Result<BTreeMap<String, String>, ResourceError> {
    let docker = crate::docker::engine().await?;
    let info = docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| crate::docker::api_error("cannot inspect a container", e))?;
    Ok(info
        .config
        .and_then(|c| c.env)
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), host.fingerprint(v.as_bytes())))
        .collect())
}

/// The variables whose value differs between two fingerprinted environments (added and removed
/// ones included), sorted.
pub(super) fn env_keys_differing(
    was: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<String> = was
        .keys()
        .chain(now.keys())
        .filter(|k| was.get(*k) != now.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The new state of a service that apply recreates with `--force-recreate`: compose alone would
/// not, since its files did not change.
pub(super) const RECREATE_FROM_FILE: &str = "recreated from the compose file";

/// The engine's state of a paused container.
pub(super) const PAUSED: &str = "paused";

/// The engine's state of a container its restart policy keeps restarting (it exits, waits,
/// starts again). `up` leaves it alone and recreating it from the same inputs repeats the loop:
/// apply cannot repair it, so plan says it would fail.
pub(super) const RESTARTING: &str = "restarting";

/// Why apply cannot repair the services restarting in a loop that `drift` names (none: `None`).
pub(super) fn restart_loop(drift: &Drift) -> Option<String> {
    let looping: Vec<&str> = drift
        .changes
        .iter()
        .filter(|c| c.old.as_deref() == Some(RESTARTING))
        .filter_map(|c| c.subject.as_deref())
        .collect();
    if looping.is_empty() {
        return None;
    }
    Some(format!(
        "{} restarting in a loop with the inputs as declared; apply cannot repair {} (see `docker compose logs {}`)",
        looping.join(", "),
        if looping.len() == 1 { "it" } else { "them" },
        looping.join(" ")
    ))
}

/// Unpause the project's paused containers of `services` (through the Docker API).
pub(super) async fn unpause(project: &str, services: &[String]) -> Result<(), ResourceError> {
    let docker = crate::docker::engine().await?;
    for c in containers(project)
        .await?
        .into_iter()
        .filter(|c| c.state == PAUSED && services.contains(&c.service))
    {
        docker.unpause_container(&c.id).await.map_err(|e| {
            crate::docker::api_error(&format!("cannot unpause service {}", c.service), e)
        })?;
    }
    Ok(())
}

/// The change for a service whose containers exist but are not all up and healthy (a one-shot
/// service is in sync once it exited with 0).
pub(super) fn runtime_change(service: &str, cs: &[&Running], one_shot: bool) -> Option<Change> {
    if one_shot && !cs.is_empty() && cs.iter().all(|c| c.running || c.completed()) {
        return None;
    }
    if cs.is_empty() {
        return Some(
            Change::created(format!("service {service}"), "running")
                .described(format!("service {service}: no container → create"))
                .about(service),
        );
    }
    // Paused by hand: `up` would fail on it (a paused container cannot be started); apply
    // unpauses it, recreating nothing.
    if cs.iter().any(|c| c.state == PAUSED) {
        return Some(
            Change::new(format!("service {service}"), Some(PAUSED), Some("running"))
                .described(format!("service {service}: paused → unpause"))
                .with_action(Action::Update)
                .about(service),
        );
    }
    if let Some(c) = cs.iter().find(|c| c.state == RESTARTING) {
        let exit = c
            .exit_code
            .map(|n| format!(", last exit {n}"))
            .unwrap_or_default();
        return Some(
            Change::new(
                format!("service {service}"),
                Some(RESTARTING),
                Some("running"),
            )
            .described(format!(
                "service {service}: restarting in a loop{exit} (apply cannot repair this)"
            ))
            .with_action(Action::Update)
            .about(service),
        );
    }
    if let Some(c) = cs.iter().find(|c| !c.running) {
        return Some(
            Change::new(
                format!("service {service}"),
                Some(c.state.as_str()),
                Some("running"),
            )
            .described(format!("service {service}: {} → start", c.state))
            .with_action(Action::Run)
            .about(service),
        );
    }
    if cs.iter().any(|c| c.health == Health::Unhealthy) {
        return Some(
            Change::new(
                format!("service {service}"),
                Some("unhealthy"),
                Some("healthy"),
            )
            .described(format!("service {service}: unhealthy → restart"))
            .with_action(Action::Restart)
            .about(service),
        );
    }
    None
}

pub(super) fn by_service(list: &[Running]) -> BTreeMap<&str, Vec<&Running>> {
    let mut m: BTreeMap<&str, Vec<&Running>> = BTreeMap::new();
    for c in list {
        m.entry(c.service.as_str()).or_default().push(c);
    }
    m
}
