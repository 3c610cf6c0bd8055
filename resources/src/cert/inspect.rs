//! Reading certificates: the names, issuer and validity of a PEM chain, whether a private key
//! belongs to its leaf, and whether each certificate is signed by the next (the chain as served;
//! trust in the root is the client's business, not an audit's).

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

#[derive(Debug, Clone)]
/// What a certificate says, as the audit reports it.
pub(crate) struct CertInfo {
    /// Subject alternative names (DNS names and IP addresses), else the common name.
    pub names: Vec<String>,
    /// The subject's distinguished name.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The raw SubjectPublicKeyInfo (DER).
    pub spki: Vec<u8>,
    /// The certificate as DER.
    pub der: Vec<u8>,
}

impl CertInfo {
    /// Whole days until it expires (negative once expired).
    pub(crate) fn days_left(&self, now: SystemTime) -> i64 {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        (self.not_after - now).div_euclid(86_400)
    }

    /// Whether `name` is covered (exactly, or by a `*.` wildcard one label deep).
    pub(crate) fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            match n.strip_prefix("*.") {
                Some(suffix) => name
                    .split_once('.')
                    .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
                None => n == name,
            }
        })
    }
}

/// Every certificate in a PEM file, in order. An empty list is an error.
pub(crate) fn parse_chain(pem: &[u8]) -> Result<Vec<CertInfo>, String> {
    let mut out = Vec::new();
    for (i, block) in Pem::iter_from_buffer(pem).enumerate() {
        let block = block.map_err(|e| format!("PEM block {}: {e}", i + 1))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        out.push(parse_der(&block.contents).map_err(|e| format!("certificate {}: {e}", i + 1))?);
    }
    if out.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(out)
}

fn parse_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, c) =
        x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push((*d).to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        names.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_string());
        }
    }
    Ok(CertInfo {
        names,
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        spki: c.public_key().raw.to_vec(),
        der: der.to_vec(),
    })
}

/// Each certificate must be signed by the next; the last one, if self-issued, by itself.
pub(crate) fn verify_chain(chain: &[CertInfo]) -> Result<(), String> {
    for (i, pair) in chain.windows(2).enumerate() {
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(&pair[0].der)
            .map_err(|e| e.to_string())?;
        let (_, issuer) = x509_parser::certificate::X509Certificate::from_der(&pair[1].der)
            .map_err(|e| e.to_string())?;
        c.verify_signature(Some(issuer.public_key())).map_err(|_| {
            format!(
                "certificate {} ({}) is not signed by the next one ({})",
                i + 1,
                pair[0].subject,
                pair[1].subject
            )
        })?;
    }
    if let Some(last) = chain.last() {
        if last.subject == last.issuer {
            let (_, c) = x509_parser::certificate::X509Certificate::from_der(&last.der)
                .map_err(|e| e.to_string())?;
            c.verify_signature(None)
                .map_err(|_| format!("the self-issued {} has a bad signature", last.subject))?;
        }
    }
    Ok(())
}

/// Whether the private key (PEM, PKCS#8) is the one of the certificate's public key.
pub(crate) fn key_matches(cert: &CertInfo, key_pem: &str) -> Result<bool, String> {
    let key =
        rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("unreadable private key: {e}"))?;
    Ok(rcgen::PublicKeyData::subject_public_key_info(&key) == cert.spki)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> CertInfo {
        CertInfo {
            names: names.iter().map(|s| s.to_string()).collect(),
            subject: String::new(),
            issuer: String::new(),
            not_before: 0,
            not_after: 0,
            spki: Vec::new(),
            der: Vec::new(),
        }
    }

    #[test]
    fn wildcards_cover_one_label() {
        let c = info(&["*.example.com", "example.com"]);
        assert!(c.covers("a.example.com"));
        assert!(c.covers("EXAMPLE.com"));
        assert!(!c.covers("a.b.example.com"));
        assert!(!c.covers("other.org"));
    }

    #[test]
    fn a_key_matches_its_certificate_only() {
        use crate::cert::keys::{generate, self_signed, KeyType};
        let k1 = generate(KeyType::EcdsaP256).expect("key");
        let k2 = generate(KeyType::EcdsaP256).expect("key");
        let pem = self_signed(&["x.example".into()], &k1, 10).expect("cert");
        let chain = parse_chain(pem.as_bytes()).expect("parses");
        assert!(key_matches(&chain[0], &k1.serialize_pem()).expect("reads"));
        assert!(!key_matches(&chain[0], &k2.serialize_pem()).expect("reads"));
        verify_chain(&chain).expect("a self-signed certificate verifies itself");
    }
}
