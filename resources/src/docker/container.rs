//! `container`: one container outside compose, checked by inspect against the fields the
//! manifest declares (and only those: an image's own environment or labels are not drift), and
//! created or recreated and started by apply. A notification restarts it, or runs a command in
//! it (`on_refresh = { exec = ["nginx", "-s", "reload"] }`).

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

pub const KIND: Kind = Kind {
    name: "container",
    summary: "a container (image, command, env, ports, volumes…) running as declared",
    build,
};

const RESTARTS: &[&str] = &["no", "always", "unless-stopped", "on-failure"];

#[derive(Debug)]
pub struct Container {
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

/// `[ip:]host:container[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    ip: String,
    host: String,
    container: String,
}

impl Port {
    fn parse(s: &str) -> Option<Port> {
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, p)) => (a, p),
            None => (s, "tcp"),
        };
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let (container, host, ip) = match parts.as_slice() {
            [c, h] => (*c, *h, ""),
            [c, h, ip] => (*c, *h, *ip),
            _ => return None,
        };
        let numeric = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
        if !numeric(container) || !numeric(host) || !matches!(proto, "tcp" | "udp" | "sctp") {
            return None;
        }
        Some(Port {
            ip: ip.to_string(),
            host: host.to_string(),
            container: format!("{container}/{proto}"),
        })
    }

    fn show(&self) -> String {
        match self.ip.as_str() {
            "" => format!("{}:{}", self.host, self.container),
            ip => format!("{ip}:{}:{}", self.host, self.container),
        }
    }
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (name, span) = f.required_string("name")?;
    if !crate::grammar::docker_object(&name.value) {
        return Err(SpecError::new(
            span,
            format!(
                "{:?} is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
                name.value
            ),
        ));
    }
    let present = f
        .choice("state", &["running", "absent"])?
        .unwrap_or("running")
        == "running";
    let image = match f.string("image")? {
        Some((t, span)) if !crate::grammar::image_reference(&t.value) => {
            return Err(SpecError::new(
                span,
                format!(
                    "{:?} is not an image reference such as \"repo:tag\"",
                    t.value
                ),
            ))
        }
        Some((t, _)) => t.value,
        None if !present => String::new(),
        None => {
            return Err(SpecError::new(
                f.table_span(),
                format!("{} is missing the required field `image`", f.address()),
            )
            .help("add `image = \"repo:tag\"`"))
        }
    };
    let command = argv(f, "command")?;
    let env = f
        .string_table("env")?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v, _)| (k, v.value, v.sensitive))
        .collect();
    let env_file = f.path("env_file")?.map(|(p, _)| p);
    let mut ports = Vec::new();
    for (t, span) in f.strings("ports")?.unwrap_or_default() {
        ports.push(Port::parse(&t.value).ok_or_else(|| {
            SpecError::new(
                span,
                format!("`ports` entries look like \"8080:80\", \"127.0.0.1:8080:80\" or \"53:53/udp\", not {:?}", t.value),
            )
        })?);
    }
    ports.sort();
    let mut volumes = Vec::new();
    for (t, span) in f.strings("volumes")?.unwrap_or_default() {
        if t.value.split(':').count() < 2 {
            return Err(SpecError::new(
                span,
                format!("`volumes` entries look like \"NAME:/path\" or \"/host/path:/path[:ro]\", not {:?}", t.value),
            ));
        }
        volumes.push(t.value);
    }
    let network_mode = f.string("network_mode")?.map(|(t, _)| t.value);
    let restart = f.choice("restart", RESTARTS)?;
    let labels = f.string_map("labels")?;
    let on_refresh = on_refresh(f)?;
    Ok(Arc::new(Container {
        name: name.value,
        image,
        command,
        env,
        env_file,
        ports,
        volumes,
        network_mode,
        restart,
        labels,
        present,
        on_refresh,
    }))
}

/// A list of strings, or a string run by `/bin/sh -c`.
fn argv(f: &mut Fields<'_>, name: &'static str) -> Result<Option<Vec<String>>, SpecError> {
    if let Some(Value::Str(_)) = f.peek(name) {
        return Ok(f
            .string(name)?
            .map(|(t, _)| vec!["/bin/sh".into(), "-c".into(), t.value]));
    }
    Ok(f.strings(name)?
        .map(|v| v.into_iter().map(|(t, _)| t.value).collect()))
}

/// `on_refresh = "restart"` (the default) or `on_refresh = { exec = [...] }`.
fn on_refresh(f: &mut Fields<'_>) -> Result<Option<Vec<String>>, SpecError> {
    let help = "write `on_refresh = \"restart\"` or `on_refresh = { exec = [\"nginx\", \"-s\", \"reload\"] }`";
    match f.take("on_refresh") {
        None => Ok(None),
        Some(Spanned {
            value: Value::Str(t),
            span,
        }) => match t.value.as_str() {
            "restart" => Ok(None),
            other => Err(SpecError::new(
                span,
                format!("`on_refresh` must be \"restart\" or a table with `exec`, not {other:?}"),
            )
            .help(help)),
        },
        Some(Spanned {
            value: Value::Table(entries),
            span,
        }) => {
            let mut cmd = None;
            for e in entries {
                match (e.key.as_str(), e.value.value) {
                    ("exec", Value::Array(items)) => {
                        let mut argv = Vec::new();
                        for i in items {
                            match i.value {
                                Value::Str(t) => argv.push(t.value),
                                _ => {
                                    return Err(SpecError::new(
                                        i.span,
                                        "`on_refresh.exec` must be a list of strings",
                                    ))
                                }
                            }
                        }
                        if argv.is_empty() {
                            return Err(SpecError::new(
                                span,
                                "`on_refresh.exec` must not be empty",
                            ));
                        }
                        cmd = Some(argv);
                    }
                    (key, _) => {
                        return Err(SpecError::new(
                            e.key_span,
                            format!("`on_refresh` takes only `exec`, not `{key}`"),
                        )
                        .help(help))
                    }
                }
            }
            Ok(cmd)
        }
        Some(other) => Err(SpecError::new(
            other.span,
            format!(
                "`on_refresh` must be \"restart\" or a table, found {}",
                other.value.type_name()
            ),
        )
        .help(help)),
    }
}

impl Container {
    /// The declared environment: `env_file` first, then `env` (which wins, as in compose).
    fn environment(&self, host: &Probe) -> Result<Vec<(String, String, bool)>, ResourceError> {
        let mut out: Vec<(String, String, bool)> = Vec::new();
        if let Some(path) = &self.env_file {
            let Some(bytes) = host.read(path)? else {
                return Err(ResourceError::Missing(format!(
                    "the env_file {} does not exist",
                    path.display()
                )));
            };
            let text = String::from_utf8_lossy(&bytes);
            let doc = dotenv::parse::parse(&text).map_err(|e| {
                ResourceError::Failed(format!("{} line {}: {}", path.display(), e.line, e.message))
            })?;
            let values = dotenv::parse::evaluate(&doc, &|_| None).map_err(|e| {
                ResourceError::Failed(format!("{} line {}: {}", path.display(), e.line, e.message))
            })?;
            // Values of an env file are treated as secrets: the manifest cannot say otherwise.
            out.extend(values.into_iter().map(|(k, v)| (k, v, true)));
        }
        for (k, v, s) in &self.env {
            out.retain(|(ok, _, _)| ok != k);
            out.push((k.clone(), v.clone(), *s));
        }
        Ok(out)
    }

    async fn inspect(&self) -> Result<Option<ContainerInspectResponse>, ResourceError> {
        let docker = super::engine().await?;
        match docker.inspect_container(&self.name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if super::is_not_found(&e) => Ok(None),
            Err(e) => Err(super::api_error(
                &format!("cannot inspect container {}", self.name),
                e,
            )),
        }
    }

    /// Differences in the declared fields (everything but the running state).
    async fn config_drift(
        &self,
        host: &Probe,
        c: &ContainerInspectResponse,
    ) -> Result<Vec<Change>, ResourceError> {
        let docker = super::engine().await?;
        let mut out = Vec::new();
        let config = c.config.clone().unwrap_or_default();
        let hc = c.host_config.clone().unwrap_or_default();
        let image = config.image.clone().unwrap_or_default();
        if image != self.image {
            out.push(Change::new("image", Some(image), Some(self.image.clone())));
        } else {
            // Same name, newer image (rebuilt or pulled): the container still runs the old one.
            match docker.inspect_image(&self.image).await {
                Ok(img) => {
                    let want = img.id.unwrap_or_default();
                    let have = c.image.clone().unwrap_or_default();
                    if want != have {
                        out.push(
                            Change::new("image", Some(short(&have)), Some(short(&want))).described(
                                format!(
                                    "image: {} was updated ({} → {})",
                                    self.image,
                                    short(&have),
                                    short(&want)
                                ),
                            ),
                        );
                    }
                }
                Err(e) if super::is_not_found(&e) => {
                    return Err(ResourceError::Missing(format!(
                        "image {} is not present",
                        self.image
                    )))
                }
                Err(e) => return Err(super::api_error("cannot inspect the image", e)),
            }
        }
        if let Some(cmd) = &self.command {
            let have = config.cmd.clone().unwrap_or_default();
            if &have != cmd {
                out.push(Change::new(
                    "command",
                    Some(have.join(" ")),
                    Some(cmd.join(" ")),
                ));
            }
        }
        let have_env: HashMap<&str, &str> = config
            .env
            .iter()
            .flatten()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        for (k, v, sensitive) in self.environment(host)? {
            let have = have_env.get(k.as_str()).copied();
            if have == Some(v.as_str()) {
                continue;
            }
            out.push(if sensitive {
                let show = |x: Option<&str>| {
                    x.map(|x| host.fingerprint(x.as_bytes()))
                        .unwrap_or_else(|| "(none)".into())
                };
                Change::sensitive(
                    format!("env {k}"),
                    format!("env {k}: (sensitive) {} → {}", show(have), show(Some(&v))),
                )
            } else {
                Change::new(format!("env {k}"), have, Some(v))
            });
        }
        let have_ports: BTreeSet<Port> = hc
            .port_bindings
            .iter()
            .flatten()
            .flat_map(|(container, bindings)| {
                bindings.iter().flatten().map(move |b| Port {
                    ip: b.host_ip.clone().unwrap_or_default(),
                    host: b.host_port.clone().unwrap_or_default(),
                    container: container.clone(),
                })
            })
            .collect();
        let want_ports: BTreeSet<Port> = self.ports.iter().cloned().collect();
        if have_ports != want_ports {
            let show = |s: &BTreeSet<Port>| s.iter().map(Port::show).collect::<Vec<_>>().join(", ");
            out.push(Change::new(
                "ports",
                Some(show(&have_ports)),
                Some(show(&want_ports)),
            ));
        }
        let have_binds: BTreeSet<&String> = hc.binds.iter().flatten().collect();
        let want_binds: BTreeSet<&String> = self.volumes.iter().collect();
        if have_binds != want_binds {
            let show =
                |s: &BTreeSet<&String>| s.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ");
            out.push(Change::new(
                "volumes",
                Some(show(&have_binds)),
                Some(show(&want_binds)),
            ));
        }
        if let Some(mode) = &self.network_mode {
            let have = hc.network_mode.clone().unwrap_or_default();
            if &have != mode {
                out.push(Change::new("network_mode", Some(have), Some(mode.clone())));
            }
        }
        if let Some(want) = self.restart {
            let have = hc
                .restart_policy
                .and_then(|p| p.name)
                .map(|n| n.to_string())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "no".into());
            if have != want {
                out.push(Change::new("restart", Some(have), Some(want)));
            }
        }
        let missing = super::labels_differ(&self.labels, config.labels.as_ref());
        if !missing.is_empty() {
            out.push(Change::new(
                "labels",
                None::<String>,
                Some(missing.join(", ")),
            ));
        }
        Ok(out)
    }

    async fn create_and_start(&self, host: &Probe) -> Result<(), ResourceError> {
        let docker = super::engine().await?;
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
            .map_err(|e| super::api_error(&format!("cannot create container {}", self.name), e))?;
        self.start().await
    }

    async fn start(&self) -> Result<(), ResourceError> {
        let docker = super::engine().await?;
        docker
            .start_container(&self.name, None::<StartContainerOptions>)
            .await
            .map_err(|e| super::api_error(&format!("cannot start container {}", self.name), e))
    }

    async fn remove(&self) -> Result<(), ResourceError> {
        let docker = super::engine().await?;
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        docker
            .remove_container(&self.name, Some(opts))
            .await
            .map_err(|e| super::api_error(&format!("cannot remove container {}", self.name), e))
    }

    /// Run `argv` in the container; a non-zero exit is a failure quoting its output.
    async fn exec(&self, argv: &[String]) -> Result<String, ResourceError> {
        let (status, said) = super::exec_in(&self.name, argv).await?;
        if status != Some(0) {
            return Err(ResourceError::Failed(format!(
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
fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
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
                Change::new("state", Some("present"), Some("absent"))
                    .described(format!("remove container {}", self.name)),
            ),
            (None, true) => drift.push(
                Change::new("state", Some("absent"), Some("running"))
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
            self.remove().await?;
            return Ok(Applied::default());
        }
        let exists = self.inspect().await?.is_some();
        // Anything but starting a stopped container (its `state`, a Run) needs a new one.
        let recreate = drift.changes.iter().any(|c| c.action != Action::Run);
        if exists && recreate {
            self.remove().await?;
        }
        if !exists || recreate {
            self.create_and_start(host).await?;
        } else {
            self.start().await?;
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
                let docker = super::engine().await?;
                docker
                    .restart_container(&self.name, None::<RestartContainerOptions>)
                    .await
                    .map_err(|e| {
                        super::api_error(&format!("cannot restart container {}", self.name), e)
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
