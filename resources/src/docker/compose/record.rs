//! What tend keeps of a project after each successful `up` (`STATE/docker/compose/P.json`):
//! the inputs' fingerprint, the services, keyed fingerprints of `.env` values, the CLI.

use super::*;

/// What tend recorded after the last successful `up` of a project.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) fingerprint: String,
    /// The services that were up then.
    pub(super) services: Vec<String>,
    /// sha256 of each input file.
    pub(super) inputs: BTreeMap<String, String>,
    /// Keyed fingerprints of the `.env` values, to say which keys changed.
    pub(super) env_keys: BTreeMap<String, String>,
    pub(super) cli: String,
    pub(super) cli_version: String,
    /// What each running service's containers were after the converge (absent in records
    /// written before tend kept it: then only running is checked).
    #[serde(default)]
    pub(super) state: BTreeMap<String, ServiceRecord>,
}

/// One service as the last converge left it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ServiceRecord {
    pub(super) config_hash: Option<String>,
    pub(super) replicas: usize,
    pub(super) networks: Vec<String>,
    /// The image by the name the service gives it (its tag), when the container named one.
    #[serde(default)]
    pub(super) image: Option<String>,
    /// Its container's environment, a keyed fingerprint per variable (never a value): to say
    /// which variables a container recreated by hand runs with otherwise.
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
}

impl Record {
    pub(super) fn path(host: &Probe, project: &str) -> PathBuf {
        host.state_dir()
            .join("docker/compose")
            .join(format!("{project}.json"))
    }

    pub(super) fn load(host: &Probe, project: &str) -> Option<Record> {
        let bytes = crate::host::read_private_file(&Record::path(host, project)).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    pub(super) fn save(&self, host: &Mutate, project: &str) -> Result<(), ResourceError> {
        let path = Record::path(host, project);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| ResourceError::Failed(format!("cannot record the project: {e}")))?;
        host.write_state_file(&path, &bytes)?;
        Ok(())
    }

    pub(super) fn forget(host: &Mutate, project: &str) {
        let _ = host.remove_state_file(&Record::path(host, project));
    }
}

impl Compose {
    pub(super) async fn record(
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
        let mut state: BTreeMap<String, ServiceRecord> = BTreeMap::new();
        for s in &services {
            let cs: Vec<&running::Running> = now.iter().filter(|c| &c.service == s).collect();
            let env = match cs.iter().find(|c| c.running) {
                Some(c) => running::env_prints(host, &c.id).await.unwrap_or_default(),
                None => BTreeMap::new(),
            };
            state.insert(
                s.clone(),
                ServiceRecord {
                    config_hash: cs.iter().find_map(|c| c.config_hash.clone()),
                    replicas: cs.len(),
                    networks: cs
                        .iter()
                        .find(|c| c.running)
                        .map(|c| c.networks.clone())
                        .unwrap_or_default(),
                    image: cs
                        .iter()
                        .map(|c| c.image.clone())
                        .find(|i| !i.is_empty() && !i.starts_with("sha256:")),
                    env,
                },
            );
        }
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
            state,
        }
        .save(host, &project.name)
    }
}
