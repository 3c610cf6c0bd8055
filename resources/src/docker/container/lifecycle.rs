//! Create, start, remove and exec in a container through the engine's API.

use super::*;

impl Container {
    // Each mutation of the engine takes the write handle: plan, which holds none, cannot call it.
    pub(super) async fn create_and_start(&self, host: &Mutate) -> Result<(), ResourceError> {
        let docker = crate::docker::engine().await?;
        let mut port_bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
        for p in &self.ports {
            port_bindings
                .entry(p.container.clone())
                .or_default()
                .push(PortBinding {
                    host_ip: Some(p.ip.clone()),
                    host_port: Some(p.host.clone()),
                });
        }
        let env: Vec<String> = self
            .environment(host)?
            .into_iter()
            .map(|(k, v, _)| format!("{k}={v}"))
            .collect();
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.command.clone(),
            env: Some(env),
            labels: Some(self.labels.iter().cloned().collect()),
            exposed_ports: Some(port_bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                binds: Some(self.volumes.clone()),
                port_bindings: Some(
                    port_bindings
                        .into_iter()
                        .map(|(k, v)| (k, Some(v)))
                        .collect(),
                ),
                network_mode: self.network_mode.clone(),
                restart_policy: self.restart.map(|r| RestartPolicy {
                    name: Some(match r {
                        "always" => RestartPolicyNameEnum::ALWAYS,
                        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                        _ => RestartPolicyNameEnum::NO,
                    }),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&self.name)
            .build();
        docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| {
                crate::docker::api_error(&format!("cannot create container {}", self.name), e)
            })?;
        self.start(host).await
    }

    pub(super) async fn start(&self, _host: &Mutate) -> Result<(), ResourceError> {
        let docker = crate::docker::engine().await?;
        docker
            .start_container(&self.name, None::<StartContainerOptions>)
            .await
            .map_err(|e| {
                crate::docker::api_error(&format!("cannot start container {}", self.name), e)
            })
    }

    pub(super) async fn remove(&self, _host: &Mutate) -> Result<(), ResourceError> {
        let docker = crate::docker::engine().await?;
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        docker
            .remove_container(&self.name, Some(opts))
            .await
            .map_err(|e| {
                crate::docker::api_error(&format!("cannot remove container {}", self.name), e)
            })
    }

    /// Run `argv` in the container; a non-zero exit is a failure quoting its output.
    pub(super) async fn exec(&self, argv: &[String]) -> Result<String, ResourceError> {
        let (status, said) = crate::docker::exec_in(&self.name, argv).await?;
        if status != Some(0) {
            return Err(ResourceError::Command(format!(
                "{} in {} exited with {}:\n{}",
                argv.join(" "),
                self.name,
                status.map_or("no status".into(), |s| s.to_string()),
                said.trim_end()
            )));
        }
        Ok(said)
    }
}

/// `sha256:0123456789ab` (12 hex digits, as docker shows image IDs).
pub(super) fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}
