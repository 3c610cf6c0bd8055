//! What inspect shows against the declared fields (and only those: an image's own environment
//! or labels are not drift).

use super::*;

impl Container {
    /// The declared environment: `env_file` first, then `env` (which wins, as in compose).
    pub(super) fn environment(
        &self,
        host: &Probe,
    ) -> Result<Vec<(String, String, bool)>, ResourceError> {
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
                ResourceError::Invalid(format!("{} line {}: {}", path.display(), e.line, e.message))
            })?;
            let values = dotenv::parse::evaluate(&doc, &|_| None).map_err(|e| {
                ResourceError::Invalid(format!("{} line {}: {}", path.display(), e.line, e.message))
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

    pub(super) async fn inspect(&self) -> Result<Option<ContainerInspectResponse>, ResourceError> {
        let docker = crate::docker::engine().await?;
        match docker.inspect_container(&self.name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if crate::docker::is_not_found(&e) => Ok(None),
            Err(e) => Err(crate::docker::api_error(
                &format!("cannot inspect container {}", self.name),
                e,
            )),
        }
    }

    /// Differences in the declared fields (everything but the running state).
    pub(super) async fn config_drift(
        &self,
        host: &Probe,
        c: &ContainerInspectResponse,
    ) -> Result<Vec<Change>, ResourceError> {
        let docker = crate::docker::engine().await?;
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
                Err(e) if crate::docker::is_not_found(&e) => {
                    return Err(ResourceError::Missing(format!(
                        "image {} is not present",
                        self.image
                    )))
                }
                Err(e) => return Err(crate::docker::api_error("cannot inspect the image", e)),
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
        let missing = crate::docker::labels_differ(&self.labels, config.labels.as_ref());
        if !missing.is_empty() {
            out.push(Change::new(
                "labels",
                None::<String>,
                Some(missing.join(", ")),
            ));
        }
        Ok(out)
    }
}
