//! Keys and certificates tend makes itself: private keys (`ecdsa-p256` with rcgen; RSA through
//! `openssl genpkey`, because ring cannot generate RSA keys), self-signed certificates, and
//! certificate signing requests for ACME.

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use crate::resource::ResourceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The kinds of private key tend makes.
pub(crate) enum KeyType {
    /// ECDSA on P-256 (the default).
    EcdsaP256,
    /// RSA, 2048 bits.
    Rsa2048,
    /// RSA, 4096 bits.
    Rsa4096,
}

impl KeyType {
    /// The names the manifest uses for them.
    pub(crate) const NAMES: &'static [&'static str] = &["ecdsa-p256", "rsa-2048", "rsa-4096"];

    /// The key type a manifest name stands for.
    pub(crate) fn parse(s: &str) -> Option<KeyType> {
        match s {
            "ecdsa-p256" => Some(KeyType::EcdsaP256),
            "rsa-2048" => Some(KeyType::Rsa2048),
            "rsa-4096" => Some(KeyType::Rsa4096),
            _ => None,
        }
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> ResourceError {
    ResourceError::Failed(format!("{what}: {e}"))
}

/// A new private key.
// openssl genpkey computes a key and touches nothing; it runs in apply only, briefly.
#[allow(clippy::disallowed_methods)]
pub(crate) fn generate(kind: KeyType) -> Result<KeyPair, ResourceError> {
    let bits = match kind {
        KeyType::EcdsaP256 => {
            return KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| failed("cannot generate an ECDSA key", e))
        }
        KeyType::Rsa2048 => "2048",
        KeyType::Rsa4096 => "4096",
    };
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            failed(
                "cannot run openssl to generate an RSA key (install openssl)",
                e,
            )
        })?;
    if !out.status.success() {
        return Err(failed(
            "openssl genpkey failed",
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    let pem = String::from_utf8_lossy(&out.stdout);
    KeyPair::from_pem(&pem).map_err(|e| failed("cannot read the RSA key openssl made", e))
}

fn params(names: &[String]) -> Result<CertificateParams, ResourceError> {
    let mut p = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| failed("invalid certificate names", e))?;
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| failed(&format!("invalid name {n:?}"), e)),
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    if let Some(first) = names.first() {
        dn.push(DnType::CommonName, first.clone());
    }
    p.distinguished_name = dn;
    Ok(p)
}

/// A self-signed certificate for `names`, valid from an hour ago for `days` days.
pub(crate) fn self_signed(
    names: &[String],
    key: &KeyPair,
    days: u32,
) -> Result<String, ResourceError> {
    let mut p = params(names)?;
    let now = SystemTime::now();
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + Duration::from_secs(u64::from(days) * 86_400)).into();
    let cert = p
        .self_signed(key)
        .map_err(|e| failed("cannot make a self-signed certificate", e))?;
    Ok(cert.pem())
}

/// A certificate signing request for `names` (DER), for ACME.
pub(crate) fn csr(names: &[String], key: &KeyPair) -> Result<Vec<u8>, ResourceError> {
    let p = params(names)?;
    let req = p
        .serialize_request(key)
        .map_err(|e| failed("cannot make a certificate request", e))?;
    Ok(req.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_name_every_name() {
        let key = generate(KeyType::EcdsaP256).expect("key");
        let names = vec!["a.example".to_string(), "127.0.0.1".to_string()];
        let pem = self_signed(&names, &key, 30).expect("cert");
        let info = crate::cert::inspect::parse_chain(pem.as_bytes()).expect("parses");
        assert_eq!(info[0].names, names);
        assert!(info[0].days_left(SystemTime::now()) >= 29);
    }
}
