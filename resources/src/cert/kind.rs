//! The `cert` kind: a certificate whose state every plan reports (names, issuer, days left, in
//! the report's `observed`), and which is missing, unreadable, expired, expiring within the
//! window, short of a name, not matching its key or not chaining is drift. Who fixes the drift is
//! the `provider`: `audit` cannot (the certificate belongs to another tool, nginx-certbot; apply is
//! a failure naming the reason, and `notify` still kicks whatever renews it), `self_signed` makes
//! one with rcgen, `acme` orders one from an ACME CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::json;

use super::acme::{self, AcmeSpec, Challenge};
use super::inspect;
use super::keys::{self, KeyType};
use crate::attrs::Ownership;
use crate::change::{Change, Drift};
use crate::host::{Attrs, Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError, Value};

pub const KIND: Kind = Kind {
    name: "cert",
    summary: "a TLS certificate audited on every run; renewed self-signed or through ACME",
    build,
};

#[derive(Debug)]
enum Provider {
    Audit,
    SelfSigned { days: u32 },
    Acme(AcmeSpec),
}

/// Where the files are: host paths, or paths inside a Docker volume.
#[derive(Debug)]
enum Location {
    Host,
    Volume(String),
}

#[derive(Debug)]
pub struct Cert {
    address: String,
    names: Vec<String>,
    cert: PathBuf,
    key: Option<PathBuf>,
    chain: Option<PathBuf>,
    location: Location,
    renew_before_days: i64,
    key_type: KeyType,
    provider: Provider,
    attrs: Ownership,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let names = f.string_list("names")?;
    if names.is_empty() {
        return Err(SpecError::new(
            f.table_span(),
            format!("{} needs `names`, at least one", f.address()),
        ));
    }
    let volume = f.string("volume")?.map(|(t, _)| t.value);
    // In a volume, paths are relative to its root; on the host, absolute.
    let path = |f: &mut Fields<'_>, name: &'static str| -> Result<Option<PathBuf>, SpecError> {
        if volume.is_some() {
            return Ok(f
                .string(name)?
                .map(|(t, _)| PathBuf::from(t.value.trim_start_matches('/'))));
        }
        Ok(f.path(name)?.map(|(p, _)| p))
    };
    let Some(cert) = path(f, "cert")? else {
        return Err(SpecError::new(
            f.table_span(),
            format!("{} is missing the required field `cert`", f.address()),
        )
        .help(
            "add `cert = \"/etc/ssl/NAME/fullchain.pem\"` (the certificate, or leaf and chain)",
        ));
    };
    let key = path(f, "key")?;
    let chain = path(f, "chain")?;
    let renew_before_days = match f.int("renew_before_days")? {
        None => 30,
        Some((d, _)) if d >= 0 => d,
        Some((_, span)) => {
            return Err(SpecError::new(
                span,
                "`renew_before_days` must not be negative",
            ))
        }
    };
    let key_type = f
        .choice("key_type", KeyType::NAMES)?
        .and_then(KeyType::parse)
        .unwrap_or(KeyType::EcdsaP256);
    let provider_span = f.span_of("provider");
    let provider = match f
        .choice("provider", &["audit", "self_signed", "acme"])?
        .unwrap_or("audit")
    {
        "self_signed" => Provider::SelfSigned {
            days: match f.int("days")? {
                None => 365,
                Some((d, _)) if (1..=3650).contains(&d) => d as u32,
                Some((_, span)) => return Err(SpecError::new(span, "`days` must be 1 to 3650")),
            },
        },
        "acme" => Provider::Acme(acme_spec(f)?),
        _ => Provider::Audit,
    };
    let location = match volume {
        Some(_) if !matches!(provider, Provider::Audit) => {
            return Err(SpecError::new(
                provider_span,
                "a certificate in a Docker volume is audited only: the container that owns the volume renews it",
            )
            .help("remove `volume`, or set provider = \"audit\""))
        }
        Some(v) => Location::Volume(v),
        None => Location::Host,
    };
    if key.is_none() && !matches!(provider, Provider::Audit) {
        return Err(SpecError::new(
            f.table_span(),
            format!(
                "{} issues a certificate and needs `key`, where its private key goes",
                f.address()
            ),
        ));
    }
    let attrs = Ownership::from_fields(f)?;
    Ok(Arc::new(Cert {
        address: f.address().to_string(),
        names,
        cert,
        key,
        chain,
        location,
        renew_before_days,
        key_type,
        provider,
        attrs,
    }))
}

fn acme_spec(f: &mut Fields<'_>) -> Result<AcmeSpec, SpecError> {
    let directory = match f.string("directory")? {
        None => acme::LETSENCRYPT.to_string(),
        Some((t, _)) => match t.value.as_str() {
            "letsencrypt" => acme::LETSENCRYPT.to_string(),
            "letsencrypt-staging" => acme::LETSENCRYPT_STAGING.to_string(),
            url if url.starts_with("https://") => url.to_string(),
            _ => {
                return Err(SpecError::new(
                    f.span_of("directory"),
                    format!("`directory` must be an https:// URL, \"letsencrypt\" or \"letsencrypt-staging\", not {:?}", t.value),
                ))
            }
        },
    };
    let email = f.string("email")?.map(|(t, _)| t.value);
    let help = "write challenge = { webroot = \"/var/www/letsencrypt\" } or challenge = { standalone = 80 }";
    let span = f.span_of("challenge");
    let challenge = match f.take("challenge").map(|s| s.value) {
        Some(Value::Table(entries)) if entries.len() == 1 => {
            let e = &entries[0];
            match (e.key.as_str(), &e.value.value) {
                ("webroot", Value::Str(t)) if t.value.starts_with('/') => {
                    Challenge::Webroot(PathBuf::from(&t.value))
                }
                ("standalone", Value::Int(p)) if (1..=65535).contains(p) => {
                    Challenge::Standalone(*p as u16)
                }
                _ => {
                    return Err(SpecError::new(
                        e.key_span.clone(),
                        "`challenge` takes `webroot` (an absolute path) or `standalone` (a port)",
                    )
                    .help(help))
                }
            }
        }
        None => {
            return Err(SpecError::new(
                f.table_span(),
                format!("{} uses ACME and needs `challenge`", f.address()),
            )
            .help(help))
        }
        Some(_) => {
            return Err(SpecError::new(span, "`challenge` must be a table with one key").help(help))
        }
    };
    let ca_bundle = f.path("ca_bundle")?.map(|(p, _)| p);
    let eab = match f.string_table("eab")? {
        None => None,
        Some(entries) => {
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(n, _, _)| n == k)
                    .map(|(_, v, _)| v.value.clone())
            };
            match (get("kid"), get("hmac_key")) {
                (Some(kid), Some(key)) => Some((kid, key)),
                _ => {
                    return Err(SpecError::new(
                        f.span_of("eab"),
                        "`eab` needs `kid` and `hmac_key`",
                    ))
                }
            }
        }
    };
    Ok(AcmeSpec {
        directory,
        email,
        challenge,
        ca_bundle,
        eab,
    })
}

impl Cert {
    /// The real path of a file, on the host or inside the volume (resolved through the API).
    async fn real(&self, host: &Probe, path: &Path) -> Result<PathBuf, ResourceError> {
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
    async fn read(&self, host: &Probe, path: &Path) -> Result<Option<Vec<u8>>, ResourceError> {
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

    fn shown(&self, path: &Path) -> String {
        match &self.location {
            Location::Host => path.display().to_string(),
            Location::Volume(v) => format!("{v}:/{}", path.display()),
        }
    }

    /// Every way the certificate falls short, and what an audit wants to see.
    async fn inspect(&self, host: &Probe, drift: &mut Drift) -> Result<(), ResourceError> {
        let shown = self.shown(&self.cert);
        let Some(bytes) = self.read(host, &self.cert).await? else {
            drift.push(
                Change::new("cert", Some("missing"), Some("present"))
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
        let expired = leaf.not_after <= unix(now);
        o.insert(
            "state".into(),
            json!(if expired {
                "expired"
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

    /// The files on the host and the attributes each must have: the certificate and chain
    /// with the declared `mode` (when given), the key 0600; all with the declared owner and group.
    fn attr_targets(&self) -> Vec<(&'static str, &Path, Ownership)> {
        if !matches!(self.location, Location::Host) {
            return Vec::new();
        }
        let key_attrs = Ownership {
            mode: Some(0o600),
            ..self.attrs.clone()
        };
        let mut v = vec![("cert", self.cert.as_path(), self.attrs.clone())];
        if let Some(k) = &self.key {
            v.push(("key", k.as_path(), key_attrs));
        }
        if let Some(c) = &self.chain {
            v.push(("chain", c.as_path(), self.attrs.clone()));
        }
        v
    }

    /// Modes and owners of the certificate's files, as `file` checks them (`cert.mode`,
    /// `key.owner`, …). A key tend wrote is 0600 whatever the manifest says.
    fn check_attrs(&self, host: &Probe, drift: &mut Drift) -> Result<(), ResourceError> {
        let audited_key_free =
            matches!(self.provider, Provider::Audit) && self.attrs == Ownership::default();
        if audited_key_free {
            return Ok(());
        }
        for (what, path, want) in self.attr_targets() {
            let Some(meta) = host.metadata(path)? else {
                continue;
            };
            let mut d = Drift::none();
            want.check(host, &meta, &mut d)?;
            for mut c in d.changes {
                c.description = format!("{what} {}: {}", path.display(), c.description);
                c.field = format!("{what}.{}", c.field);
                drift.push(c);
            }
        }
        Ok(())
    }

    fn fix_attrs(&self, host: &Mutate, drift: &Drift) -> Result<(), ResourceError> {
        for (what, path, want) in self.attr_targets() {
            let touched: Vec<&str> = drift
                .changes
                .iter()
                .filter_map(|c| {
                    attr_field(&c.field)
                        .filter(|(w, _)| *w == what)
                        .map(|(_, f)| f)
                })
                .collect();
            if touched.is_empty() {
                continue;
            }
            let ids = want.resolve(host)?;
            let uid = ids.uid.filter(|_| touched.contains(&"owner"));
            let gid = ids.gid.filter(|_| touched.contains(&"group"));
            let mode = ids
                .mode
                .filter(|_| touched.contains(&"mode") || uid.is_some() || gid.is_some());
            host.set_attrs(path, uid, gid, mode)?;
        }
        Ok(())
    }

    /// Write the key (0600), the certificate (leaf and chain, as fullchain) and the chain file.
    fn install(
        &self,
        host: &Mutate,
        key_pem: &str,
        chain_pem: &str,
    ) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let base = self.attrs.resolve(host)?;
        let key_attrs = Attrs {
            mode: Some(0o600),
            ..base
        };
        let cert_attrs = Attrs {
            mode: Some(base.mode.unwrap_or(0o644)),
            ..base
        };
        // The private key is never kept as a backup: an old key has no use but to leak.
        if let Some(key) = &self.key {
            host.create_parents(key)?;
            host.write_atomic(key, key_pem.as_bytes(), key_attrs)?;
        }
        host.create_parents(&self.cert)?;
        applied.backups.extend(host.replace_file(
            &self.cert,
            chain_pem.as_bytes(),
            cert_attrs,
            0o644,
        )?);
        if let Some(chain) = &self.chain {
            let rest: String = split_pem(chain_pem).into_iter().skip(1).collect();
            let rest = if rest.is_empty() {
                chain_pem.to_string()
            } else {
                rest
            };
            host.create_parents(chain)?;
            applied
                .backups
                .extend(host.replace_file(chain, rest.as_bytes(), cert_attrs, 0o644)?);
        }
        Ok(applied)
    }
}

/// `cert.mode` → (`cert`, `mode`): a change of one file's attributes.
fn attr_field(field: &str) -> Option<(&str, &str)> {
    let (what, f) = field.split_once('.')?;
    (matches!(what, "cert" | "key" | "chain") && matches!(f, "mode" | "owner" | "group"))
        .then_some((what, f))
}

/// The PEM blocks of a file, each with its END line.
fn split_pem(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in pem.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END ") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[async_trait]
impl Resource for Cert {
    fn paths(&self) -> Vec<PathBuf> {
        match (&self.location, &self.provider) {
            (Location::Host, Provider::SelfSigned { .. } | Provider::Acme(_)) => {
                let mut v = vec![self.cert.clone()];
                v.extend(self.key.clone());
                v.extend(self.chain.clone());
                v
            }
            _ => Vec::new(),
        }
    }

    fn reads(&self) -> Vec<PathBuf> {
        match (&self.location, &self.provider) {
            (Location::Host, Provider::Audit) => {
                let mut v = vec![self.cert.clone()];
                v.extend(self.key.clone());
                v.extend(self.chain.clone());
                v
            }
            _ => Vec::new(),
        }
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        self.inspect(host, &mut drift).await?;
        self.check_attrs(host, &mut drift)?;
        Ok(drift)
    }

    fn notifies_on_failure(&self) -> bool {
        matches!(self.provider, Provider::Audit)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        // Only modes and owners differ: fixed in place, nothing renewed (an audited
        // certificate's files too: that is not a renewal).
        if drift.changes.iter().all(|c| attr_field(&c.field).is_some()) {
            self.fix_attrs(host, drift)?;
            return Ok(Applied::default());
        }
        match &self.provider {
            Provider::Audit => {
                let why: Vec<&str> = drift
                    .changes
                    .iter()
                    .map(|c| c.description.as_str())
                    .collect();
                Err(ResourceError::Failed(format!(
                    "audit only: tend does not renew this certificate (the tool that owns it does): {}",
                    why.join("; ")
                )))
            }
            Provider::SelfSigned { days } => {
                let key = keys::generate(self.key_type)?;
                let cert = keys::self_signed(&self.names, &key, *days)?;
                let mut applied = self.install(host, &key.serialize_pem(), &cert)?;
                applied.notes.push(format!("self-signed for {} days", days));
                Ok(applied)
            }
            Provider::Acme(spec) => {
                let id = crate::host::sha256_hex(self.address.as_bytes())[..16].to_string();
                let issued = acme::issue(host, spec, &id, &self.names, self.key_type).await?;
                let leaf = inspect::parse_chain(issued.chain_pem.as_bytes()).map_err(|e| {
                    ResourceError::Failed(format!("the CA sent an unreadable certificate: {e}"))
                })?;
                let mut applied = self.install(host, &issued.key_pem, &issued.chain_pem)?;
                applied.notes.push(format!(
                    "issued by {} until {}",
                    leaf[0].issuer,
                    rfc3339(leaf[0].not_after)
                ));
                Ok(applied)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_split() {
        let pem = "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----\n";
        let blocks = split_pem(pem);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].contains("BB"));
    }

    #[test]
    fn times_read_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
