//! The `cert` kind: a certificate whose state every plan reports (names, issuer, days left, in
//! the report's `observed`), and which is missing, unreadable, expired, expiring within the
//! window, short of a name, not matching its key or not chaining is drift. Who fixes the drift is
//! the `provider`: `audit` cannot (the certificate belongs to another tool, nginx-certbot; apply is
//! a failure naming the reason, and `notify` still kicks whatever renews it), `self_signed` makes
//! one with rcgen, `acme` orders one from an ACME CA.
//!
//! The rooms: `spec` (the manifest's fields), `audit` (reading the certificate and saying what is
//! wrong with it), `files` (the key and certificate files: attributes, installing new ones).

mod audit;
mod files;
mod spec;

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

use audit::rfc3339;
#[cfg(test)]
use files::split_pem;

/// The `cert` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "cert",
    summary: "a TLS certificate audited on every run; renewed self-signed or through ACME",
    build: spec::build,
    prune: None,
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
/// A `cert` resource, as its manifest table declared it.
pub(crate) struct Cert {
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
        // An audited certificate that falls short is the owning tool's to renew: apply can only
        // fail on it, so plan says so (an audit alerts on it) rather than promise a change.
        if matches!(self.provider, Provider::Audit) {
            let why: Vec<&str> = drift
                .changes
                .iter()
                .filter(|c| c.field.part_attribute().is_none())
                .map(|c| c.description.as_str())
                .collect();
            if !why.is_empty() {
                drift.will_fail = Some(format!(
                    "audit only: tend does not renew this certificate (the tool that owns it does): {}",
                    why.join("; ")
                ));
            }
        }
        Ok(drift)
    }

    fn notifies_on_failure(&self) -> bool {
        matches!(self.provider, Provider::Audit)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        // Only modes and owners differ: fixed in place, nothing renewed (an audited
        // certificate's files too: that is not a renewal).
        if drift
            .changes
            .iter()
            .all(|c| c.field.part_attribute().is_some())
        {
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
