//! `container`: one container outside compose, checked by inspect against the fields the
//! manifest declares (and only those: an image's own environment or labels are not drift), and
//! created or recreated and started by apply. A notification restarts it, or runs a command in
//! it (`on_refresh = { exec = ["nginx", "-s", "reload"] }`).

//!
//! The rooms: `spec` (the manifest's fields), `drift` (what inspect shows against them),
//! `lifecycle` (create, start, remove, exec through the engine's API).

mod drift;
mod lifecycle;
mod spec;

use lifecycle::short;
use spec::Port;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RestartContainerOptions,
    StartContainerOptions,
};

use crate::change::{Action, Change, Drift};
use crate::dotenv;
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, Spanned, SpecError, Value};

/// The `container` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "container",
    summary: "a container (image, command, env, ports, volumes…) running as declared",
    build: spec::build,
    prune: None,
};

const RESTARTS: &[&str] = &["no", "always", "unless-stopped", "on-failure"];

#[derive(Debug)]
/// A `container` resource, as its manifest table declared it.
pub(crate) struct Container {
    name: String,
    image: String,
    command: Option<Vec<String>>,
    /// Key, value, and whether the value is a secret.
    env: Vec<(String, String, bool)>,
    env_file: Option<PathBuf>,
    ports: Vec<Port>,
    volumes: Vec<String>,
    network_mode: Option<String>,
    restart: Option<&'static str>,
    labels: Vec<(String, String)>,
    present: bool,
    on_refresh: Option<Vec<String>>,
}

#[async_trait]
impl Resource for Container {
    fn reads(&self) -> Vec<PathBuf> {
        self.env_file.iter().cloned().collect()
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let found = self.inspect().await?;
        let mut drift = Drift::none();
        match (found, self.present) {
            (None, false) => {}
            (Some(_), false) => drift.push(
                Change::removed("state", "present")
                    .described(format!("remove container {}", self.name)),
            ),
            (None, true) => drift.push(
                Change::created("state", "running")
                    .described(format!("create container {}", self.name)),
            ),
            (Some(c), true) => {
                for change in self.config_drift(host, &c).await? {
                    drift.push(change);
                }
                let state = c.state.clone().unwrap_or_default();
                if state.running != Some(true) {
                    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
                    drift.push(
                        Change::new("state", Some(status), Some("running"))
                            .with_action(Action::Run),
                    );
                }
            }
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        if !self.present {
            self.remove(host).await?;
            return Ok(Applied::default());
        }
        let exists = self.inspect().await?.is_some();
        // Anything but starting a stopped container (its `state`, a Run) needs a new one.
        let recreate = drift.changes.iter().any(|c| c.action != Action::Run);
        if exists && recreate {
            self.remove(host).await?;
        }
        if !exists || recreate {
            self.create_and_start(host).await?;
        } else {
            self.start(host).await?;
        }
        Ok(Applied::default())
    }

    fn refreshable(&self) -> bool {
        self.present
    }

    async fn refresh(&self, _host: &Mutate) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        match &self.on_refresh {
            Some(argv) => {
                let said = self.exec(argv).await?;
                applied
                    .notes
                    .push(format!("ran {} in {}", argv.join(" "), self.name));
                if !said.trim().is_empty() {
                    applied.notes.push(said.trim_end().to_string());
                }
            }
            None => {
                let docker = crate::docker::engine().await?;
                docker
                    .restart_container(&self.name, None::<RestartContainerOptions>)
                    .await
                    .map_err(|e| {
                        crate::docker::api_error(
                            &format!("cannot restart container {}", self.name),
                            e,
                        )
                    })?;
                applied.notes.push(format!("restarted {}", self.name));
            }
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_in_every_spelling() {
        let p = Port::parse("127.0.0.1:8080:80").expect("parses");
        assert_eq!(
            (p.ip.as_str(), p.host.as_str(), p.container.as_str()),
            ("127.0.0.1", "8080", "80/tcp")
        );
        assert_eq!(
            Port::parse("53:53/udp").expect("parses").container,
            "53/udp"
        );
        assert_eq!(
            Port::parse("8080:80").expect("parses").show(),
            "8080:80/tcp"
        );
        assert!(Port::parse("80").is_none());
        assert!(Port::parse("a:80").is_none());
        assert!(Port::parse("1:2/icmp").is_none());
    }
}
