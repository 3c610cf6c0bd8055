//! Native ACME v2 (instant-acme), HTTP-01: through a webroot that the site's nginx serves, or a
//! listener tend opens itself on a port (standalone). The account key is kept in the state
//! directory (0600) and reused; a CA that refused or failed is not asked again before a backoff
//! (1 h, doubling, at most a day), so a broken host on a timer cannot burn the CA's rate limits.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::keys;
use crate::host::{Mutate, Probe};
use crate::resource::ResourceError;

/// Let's Encrypt's production directory.
pub(crate) const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous limits).
pub(crate) const LETSENCRYPT_STAGING: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, PartialEq, Eq)]
/// How the CA is shown that we control the name.
pub(crate) enum Challenge {
    /// A directory served at `/.well-known/acme-challenge/` on port 80 of every name.
    Webroot(PathBuf),
    /// tend answers the challenge itself on this port.
    Standalone(u16),
}

#[derive(Debug, Clone)]
/// An ACME order as the manifest describes it.
pub(crate) struct AcmeSpec {
    /// The CA's directory URL.
    pub directory: String,
    /// Contact address for the account.
    pub email: Option<String>,
    /// The challenge to answer.
    pub challenge: Challenge,
    /// Extra CA certificates to trust when talking to the directory (a test CA).
    pub ca_bundle: Option<PathBuf>,
    /// External account binding: key id and the base64url HMAC key.
    pub eab: Option<(String, String)>,
}

/// What a successful order gives: the new key and the certificate chain (leaf first).
pub(crate) struct Issued {
    /// The private key, PEM.
    pub key_pem: String,
    /// The certificate and its chain, PEM, leaf first.
    pub chain_pem: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Backoff {
    failures: u32,
    /// Unix seconds.
    last_failure: u64,
    last_error: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn state_file(host: &Probe, kind: &str, name: &str) -> PathBuf {
    host.state_dir().join("acme").join(kind).join(name)
}

fn write_state(host: &Mutate, path: &Path, bytes: &[u8]) -> Result<(), ResourceError> {
    host.write_state_file(path, bytes)?;
    Ok(())
}

/// A file name for a directory URL (accounts are per CA).
fn slug(url: &str) -> String {
    crate::host::sha256_hex(url.as_bytes())[..16].to_string()
}

/// How long to wait after `failures` consecutive failures.
fn backoff_delay(failures: u32) -> u64 {
    let hours = 1u64 << failures.saturating_sub(1).min(5);
    (hours * 3600).min(86_400)
}

/// Refuse to contact the CA again before the backoff has passed.
pub(crate) fn check_backoff(host: &Probe, cert_id: &str) -> Result<(), ResourceError> {
    let Ok(Some(bytes)) = crate::host::read_private_file(&state_file(host, "backoff", cert_id))
    else {
        return Ok(());
    };
    let Ok(b) = serde_json::from_slice::<Backoff>(&bytes) else {
        return Ok(());
    };
    let next = b.last_failure + backoff_delay(b.failures);
    if b.failures > 0 && now() < next {
        let wait = next - now();
        return Err(ResourceError::Failed(format!(
            "not asking the CA again for {} min after {} failed attempt(s) (rate limits); last error: {}",
            wait.div_ceil(60),
            b.failures,
            b.last_error
        )));
    }
    Ok(())
}

fn record_failure(host: &Mutate, cert_id: &str, error: &str) {
    let path = state_file(host, "backoff", cert_id);
    let mut b: Backoff = crate::host::read_private_file(&path)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    b.failures += 1;
    b.last_failure = now();
    b.last_error = error.to_string();
    if let Ok(bytes) = serde_json::to_vec(&b) {
        let _ = write_state(host, &path, &bytes);
    }
}

fn clear_failures(host: &Mutate, cert_id: &str) {
    let _ = host.remove_state_file(&state_file(host, "backoff", cert_id));
}

/// A CA error in words: the problem type and its detail when the CA sent one.
fn explain(e: instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p
                .r#type
                .as_deref()
                .map(|t| {
                    t.trim_start_matches("urn:ietf:params:acme:error:")
                        .to_string()
                })
                .unwrap_or_else(|| "error".into());
            let hint = match kind.as_str() {
                "rateLimited" => " (the CA's rate limit: wait before trying again)",
                "unauthorized" | "connection" | "dns" | "incorrectResponse" => {
                    " (the CA could not fetch the challenge: is port 80 of every name served from the webroot?)"
                }
                "externalAccountRequired" => " (this CA needs `eab`)",
                _ => "",
            };
            format!(
                "the CA answered {kind}: {}{hint}",
                p.detail.unwrap_or_default()
            )
        }
        other => format!("ACME request failed: {other}"),
    }
}

async fn account(host: &Mutate, spec: &AcmeSpec) -> Result<Account, String> {
    let builder = || match &spec.ca_bundle {
        Some(pem) => Account::builder_with_root(pem).map_err(explain),
        None => Account::builder().map_err(explain),
    };
    let path = state_file(host, "accounts", &format!("{}.json", slug(&spec.directory)));
    if let Ok(Some(bytes)) = crate::host::read_private_file(&path) {
        if let Ok(creds) = serde_json::from_slice::<AccountCredentials>(&bytes) {
            return builder()?.from_credentials(creds).await.map_err(explain);
        }
    }
    let contact: Vec<String> = spec.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match &spec.eab {
        Some((kid, key)) => Some(ExternalAccountKey::new(kid.clone(), &base64_decode(key)?)),
        None => None,
    };
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            spec.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(explain)?;
    let bytes = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
    write_state(host, &path, &bytes).map_err(|e| e.to_string())?;
    Ok(account)
}

/// base64url (no padding) as EAB keys are given.
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().trim_end_matches('=').chars() {
        let v = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '-' | '+' => 62,
            '_' | '/' => 63,
            _ => return Err(format!("the EAB key is not base64url: {c:?}")),
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Answers `GET /.well-known/acme-challenge/TOKEN` with the key authorization, until dropped.
struct Standalone {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answers = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

async fn standalone(port: u16, answers: Answers) -> Result<Standalone, String> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| format!("cannot listen on port {port} for the challenge: {e}"))?;
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("");
                let body = path
                    .strip_prefix("/.well-known/acme-challenge/")
                    .and_then(|t| {
                        let known = answers.lock().ok()?;
                        known
                            .iter()
                            .find(|(tok, _)| tok == t)
                            .map(|(_, ka)| ka.clone())
                    });
                let resp = match body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(Standalone { task })
}

/// Order a certificate for `names`; `cert_id` names its backoff record.
pub(crate) async fn issue(
    host: &Mutate,
    spec: &AcmeSpec,
    cert_id: &str,
    names: &[String],
    key_type: keys::KeyType,
) -> Result<Issued, ResourceError> {
    check_backoff(host, cert_id)?;
    match order(host, spec, names, key_type).await {
        Ok(issued) => {
            clear_failures(host, cert_id);
            Ok(issued)
        }
        Err(e) => {
            record_failure(host, cert_id, &e);
            Err(ResourceError::Failed(e))
        }
    }
}

async fn order(
    host: &Mutate,
    spec: &AcmeSpec,
    names: &[String],
    key_type: keys::KeyType,
) -> Result<Issued, String> {
    let account = account(host, spec).await?;
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(explain)?;
    let mut written: Vec<PathBuf> = Vec::new();
    let answers: Answers = Default::default();
    // The listener is up before the CA is told to look.
    let _server = match &spec.challenge {
        Challenge::Standalone(port) => Some(standalone(*port, answers.clone()).await?),
        Challenge::Webroot(_) => None,
    };
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(explain)?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or("the CA offers no HTTP-01 challenge for this name")?;
            let ka = challenge.key_authorization().as_str().to_string();
            let token = challenge.token.clone();
            match &spec.challenge {
                Challenge::Webroot(root) => {
                    // Through the host handle: the webroot may belong to a web server's user,
                    // who must not be able to redirect root's write.
                    let file = root.join(".well-known/acme-challenge").join(&token);
                    host.create_parents(&file).map_err(|e| e.to_string())?;
                    let attrs = crate::host::Attrs {
                        mode: Some(0o644),
                        uid: None,
                        gid: None,
                    };
                    // Visible now, not at the end of the wave: the CA fetches it while we wait.
                    host.immediate()
                        .write_atomic(&file, ka.as_bytes(), attrs)
                        .map_err(|e| e.to_string())?;
                    written.push(file);
                }
                Challenge::Standalone(_) => {
                    if let Ok(mut a) = answers.lock() {
                        a.push((token, ka));
                    }
                }
            }
            challenge.set_ready().await.map_err(explain)?;
        }
    }
    let retry = RetryPolicy::new().timeout(Duration::from_secs(90));
    let status = order.poll_ready(&retry).await.map_err(explain);
    for f in &written {
        let _ = host.remove_file(f);
    }
    let status = status?;
    if status != OrderStatus::Ready {
        let why = order
            .state()
            .error
            .as_ref()
            .and_then(|p| p.detail.clone())
            .unwrap_or_else(|| "no detail".into());
        return Err(format!(
            "the order is {status:?}, not ready: the CA could not validate every name ({why})"
        ));
    }
    let key = keys::generate(key_type).map_err(|e| e.to_string())?;
    let csr = keys::csr(names, &key).map_err(|e| e.to_string())?;
    order.finalize_csr(&csr).await.map_err(explain)?;
    let chain_pem = order.poll_certificate(&retry).await.map_err(explain)?;
    Ok(Issued {
        key_pem: key.serialize_pem(),
        chain_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_day() {
        assert_eq!(backoff_delay(1), 3600);
        assert_eq!(backoff_delay(2), 7200);
        assert_eq!(backoff_delay(5), 16 * 3600);
        assert_eq!(backoff_delay(9), 86_400);
    }

    #[test]
    fn eab_keys_decode() {
        assert_eq!(base64_decode("aGVsbG8").expect("decodes"), b"hello");
        assert_eq!(base64_decode("-_8").expect("decodes"), [0xfb, 0xff]);
        assert!(base64_decode("a b").is_err());
    }
}
