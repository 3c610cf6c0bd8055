//! Reading the certificate (from the host or a Docker volume) and saying what is wrong with it:
//! the drift every plan reports, and the audit figures in `observed`.

use super::*;

impl Cert {
    /// The real path of a file, on the host or inside the volume (resolved through the API).
    pub(super) async fn real(&self, host: &Probe, path: &Path) -> Result<PathBuf, ResourceError> {
        match &self.location {
            Location::Host => Ok(host.real(path)),
            Location::Volume(name) => {
                let docker = crate::docker::engine().await?;
                let vol = docker.inspect_volume(name).await.map_err(|e| {
                    if crate::docker::is_not_found(&e) {
                        ResourceError::Missing(format!("volume {name} does not exist"))
                    } else {
                        crate::docker::api_error(&format!("cannot inspect volume {name}"), e)
                    }
                })?;
                Ok(Path::new(&vol.mountpoint).join(path))
            }
        }
    }

    /// A certificate file: on the host through the probe, in a volume through a probe rooted at
    /// its mountpoint — certbot's `live/` links resolve inside the volume, and a link a
    /// container planted cannot send root's read outside it.
    pub(super) async fn read(
        &self,
        host: &Probe,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, ResourceError> {
        const MAX_PEM: u64 = 1 << 20;
        match &self.location {
            Location::Host => Ok(host.read_limited(path, MAX_PEM)?),
            Location::Volume(_) => {
                let mountpoint = self.real(host, Path::new("")).await?;
                let volume = Probe::new(mountpoint, host.state_dir());
                Ok(volume.read_limited(&Path::new("/").join(path), MAX_PEM)?)
            }
        }
    }

    pub(super) fn shown(&self, path: &Path) -> String {
        match &self.location {
            Location::Host => path.display().to_string(),
            Location::Volume(v) => format!("{v}:/{}", path.display()),
        }
    }

    /// Every way the certificate falls short, and what an audit wants to see.
    pub(super) async fn inspect(
        &self,
        host: &Probe,
        drift: &mut Drift,
    ) -> Result<(), ResourceError> {
        let shown = self.shown(&self.cert);
        let Some(bytes) = self.read(host, &self.cert).await? else {
            drift.push(
                Change::new("cert", Some("missing"), Some("present"))
                    .with_action(crate::Action::Create)
                    .described(format!("certificate {shown} is missing")),
            );
            drift.observed.insert("state".into(), json!("missing"));
            return Ok(());
        };
        let chain = match inspect::parse_chain(&bytes) {
            Ok(c) => c,
            Err(e) => {
                drift.push(
                    Change::new("cert", Some("unreadable"), Some("valid"))
                        .described(format!("certificate {shown} is unreadable: {e}")),
                );
                drift.observed.insert("state".into(), json!("unreadable"));
                return Ok(());
            }
        };
        let leaf = &chain[0];
        let now = SystemTime::now();
        let days = leaf.days_left(now);
        let o = &mut drift.observed;
        o.insert("names".into(), json!(leaf.names));
        o.insert("issuer".into(), json!(leaf.issuer));
        o.insert("subject".into(), json!(leaf.subject));
        o.insert("not_after".into(), json!(rfc3339(leaf.not_after)));
        o.insert("days_left".into(), json!(days));
        o.insert("not_before".into(), json!(rfc3339(leaf.not_before)));
        let expired = leaf.not_after <= unix(now);
        // A certificate whose validity has not begun is refused by every client today, however
        // far its end is (issued for later, or this host's clock is behind).
        let premature = leaf.not_before > unix(now);
        o.insert(
            "state".into(),
            json!(if expired {
                "expired"
            } else if premature {
                "not_yet_valid"
            } else if days < self.renew_before_days {
                "expiring"
            } else {
                "valid"
            }),
        );
        if expired {
            drift.push(
                Change::new(
                    "expiry",
                    Some(format!("expired {}", rfc3339(leaf.not_after))),
                    Some("valid"),
                )
                .described(format!(
                    "certificate expired {} days ago ({})",
                    -days,
                    rfc3339(leaf.not_after)
                )),
            );
        } else if premature {
            drift.push(
                Change::new(
                    "validity",
                    Some(format!("not valid until {}", rfc3339(leaf.not_before))),
                    Some("valid"),
                )
                .described(format!(
                    "certificate is not valid until {} (issued for later, or this host's clock is behind)",
                    rfc3339(leaf.not_before)
                )),
            );
        } else if days < self.renew_before_days {
            drift.push(
                Change::new(
                    "expiry",
                    Some(format!("{days} days left")),
                    Some(format!("at least {} days", self.renew_before_days)),
                )
                .described(format!(
                    "certificate expires in {days} days ({}), within renew_before_days = {}",
                    rfc3339(leaf.not_after),
                    self.renew_before_days
                )),
            );
        }
        let uncovered: Vec<&str> = self
            .names
            .iter()
            .filter(|n| !leaf.covers(n))
            .map(String::as_str)
            .collect();
        if !uncovered.is_empty() {
            drift.push(
                Change::new(
                    "names",
                    Some(leaf.names.join(", ")),
                    Some(self.names.join(", ")),
                )
                .described(format!(
                    "names not covered: {} (the certificate has {})",
                    uncovered.join(", "),
                    leaf.names.join(", ")
                )),
            );
        }
        if let Some(key) = &self.key {
            let shown = self.shown(key);
            match self.read(host, key).await? {
                None => drift.push(
                    Change::new("key", Some("missing"), Some("present"))
                        .with_action(crate::Action::Create)
                        .described(format!("private key {shown} is missing")),
                ),
                Some(k) => match inspect::key_matches(leaf, &String::from_utf8_lossy(&k)) {
                    Ok(true) => {}
                    Ok(false) => drift.push(
                        Change::new("key", Some("another key"), Some("the certificate's key"))
                            .described(format!(
                                "private key {shown} does not match the certificate"
                            )),
                    ),
                    Err(e) => drift.push(
                        Change::new("key", Some("unreadable"), Some("the certificate's key"))
                            .described(format!("private key {shown}: {e}")),
                    ),
                },
            }
        }
        let extra_chain = match &self.chain {
            None => None,
            Some(p) => match self.read(host, p).await? {
                None => {
                    drift.push(
                        Change::new("chain", Some("missing"), Some("present"))
                            .with_action(crate::Action::Create)
                            .described(format!("chain {} is missing", self.shown(p))),
                    );
                    None
                }
                Some(b) => match inspect::parse_chain(&b) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        drift.push(
                            Change::new("chain", Some("unreadable"), Some("valid"))
                                .described(format!("chain {} is unreadable: {e}", self.shown(p))),
                        );
                        None
                    }
                },
            },
        };
        // A chain file beside a fullchain holds the same intermediates (certbot's chain.pem,
        // what tend writes): a stale one is what OCSP stapling and some clients are given.
        if let (Some(extra), true) = (&extra_chain, chain.len() > 1) {
            let same = extra.len() == chain.len() - 1
                && extra.iter().zip(&chain[1..]).all(|(a, b)| a.der == b.der);
            if !same {
                let p = self.chain.as_deref().unwrap_or(Path::new(""));
                drift.push(
                    Change::new("chain", Some("mismatch"), Some("the certificate's chain"))
                        .described(format!(
                            "chain {} does not hold the intermediates of {}",
                            self.shown(p),
                            self.shown(&self.cert)
                        )),
                );
            }
        }
        // The chain as served: the certificate file's own chain (fullchain), else the chain file.
        let mut full = chain.clone();
        if full.len() == 1 {
            if let Some(extra) = &extra_chain {
                full.extend(extra.iter().cloned());
            }
        }
        if let Err(e) = inspect::verify_chain(&full) {
            drift.push(
                Change::new("chain", Some("broken"), Some("verifying"))
                    .described(format!("chain does not verify: {e}")),
            );
        }
        Ok(())
    }
}

pub(super) fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
