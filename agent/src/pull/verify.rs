//! Verified policy: a commit's SSH signature (git's `gpg.format = ssh`: an `sshsig` over the
//! commit without its `gpgsig` header, namespace `git`) checked in-process against an allowed
//! signers file (git's `gpg.ssh.allowedSignersFile` format) — no gpg, no ssh-keygen at run time.

use std::path::Path;

use ssh_key::{PublicKey, SshSig};

/// One key allowed to sign, with the principals it stands for.
#[derive(Debug, Clone)]
pub(super) struct Signer {
    pub principals: String,
    key: PublicKey,
    /// `namespaces="…"`: the namespaces this key may sign in (all when empty).
    namespaces: Vec<String>,
}

/// The allowed signers: `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]` a line, `#` comments.
#[derive(Debug, Clone, Default)]
pub(super) struct AllowedSigners {
    pub signers: Vec<Signer>,
}

/// The largest allowed signers file read (a fleet's is a few lines).
const MAX_FILE: u64 = 1 << 20;

impl AllowedSigners {
    /// The file says whose commits the host runs: like `pull.toml`, it is read only when it is a
    /// regular file tend's user owns that nobody else can write (no symlink followed).
    pub(super) fn load(path: &Path) -> Result<AllowedSigners, String> {
        let bytes = tend_resources::host::read_private_file(path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}: no such file", path.display()))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(format!(
                "{}: {} bytes; an allowed signers file is at most 1 MiB",
                path.display(),
                bytes.len()
            ));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
        AllowedSigners::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub(super) fn parse(text: &str) -> Result<AllowedSigners, String> {
        let mut signers = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |msg: String| format!("line {}: {msg}", n + 1);
            let (principals, rest) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| at("expected PRINCIPALS [OPTIONS] KEYTYPE KEY".into()))?;
            let rest = rest.trim_start();
            let mut namespaces = Vec::new();
            // Options come before the key type, which always starts with ssh- or ecdsa-/sk-.
            let key_text = if is_key_type(rest) {
                rest
            } else {
                let (options, key) = split_options(rest).map_err(at)?;
                for opt in options {
                    let (name, value) = opt.split_once('=').unwrap_or((opt.as_str(), ""));
                    match name.to_ascii_lowercase().as_str() {
                        "namespaces" => {
                            namespaces = value
                                .trim_matches('"')
                                .split(',')
                                .map(|s| s.trim().to_string())
                                .collect();
                        }
                        other => {
                            return Err(at(format!(
                                "option `{other}` is not supported by tend (namespaces= is)"
                            )))
                        }
                    }
                }
                key
            };
            let key = PublicKey::from_openssh(key_text.trim())
                .map_err(|e| at(format!("not a public key ({e})")))?;
            signers.push(Signer {
                principals: principals.to_string(),
                key,
                namespaces,
            });
        }
        Ok(AllowedSigners { signers })
    }
}

fn is_key_type(s: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-"].iter().any(|p| s.starts_with(p))
}

/// `opt1,opt2="a,b" KEY…` → the options and what follows them (quotes may hold commas and
/// spaces).
fn split_options(s: &str) -> Result<(Vec<String>, &str), String> {
    let mut options = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => options.push(std::mem::take(&mut current)),
            c if c.is_whitespace() && !quoted => {
                options.push(std::mem::take(&mut current));
                return Ok((options, &s[i..]));
            }
            c => current.push(c),
        }
    }
    Err("expected a key after the options".into())
}

/// Why a commit is not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    Unsigned,
    NotSsh,
    BadSignature(String),
    UnknownKey(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str("it is not signed"),
            Refusal::NotSsh => {
                f.write_str("its signature is not an SSH signature (gpg.format = ssh)")
            }
            Refusal::BadSignature(why) => write!(f, "its signature does not verify: {why}"),
            Refusal::UnknownKey(fp) => {
                write!(
                    f,
                    "it is signed by {fp}, a key the allowed signers file does not list"
                )
            }
        }
    }
}

/// Verify `signature` (an armored sshsig) over `signed` against `allowed`: the principals of the
/// key that signed.
pub(super) fn verify(
    allowed: &AllowedSigners,
    signature: &[u8],
    signed: &[u8],
) -> Result<String, Refusal> {
    let text = std::str::from_utf8(signature).map_err(|_| Refusal::NotSsh)?;
    if !text
        .trim_start()
        .starts_with("-----BEGIN SSH SIGNATURE-----")
    {
        return Err(Refusal::NotSsh);
    }
    let sig = SshSig::from_pem(text.trim()).map_err(|e| Refusal::BadSignature(e.to_string()))?;
    if sig.namespace() != "git" {
        return Err(Refusal::BadSignature(format!(
            "namespace {:?}, not \"git\"",
            sig.namespace()
        )));
    }
    let signer = allowed
        .signers
        .iter()
        .find(|s| s.key.key_data() == sig.public_key())
        .ok_or_else(|| {
            Refusal::UnknownKey(
                PublicKey::from(sig.public_key().clone())
                    .fingerprint(Default::default())
                    .to_string(),
            )
        })?;
    if !signer.namespaces.is_empty() && !signer.namespaces.iter().any(|n| n == "git") {
        return Err(Refusal::UnknownKey(format!(
            "{} (allowed only for namespaces {})",
            signer.principals,
            signer.namespaces.join(",")
        )));
    }
    signer
        .key
        .verify("git", signed, &sig)
        .map_err(|e| Refusal::BadSignature(e.to_string()))?;
    Ok(signer.principals.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILXPkJPI4TMFWZP4xRBQjNeizUG99KuZCt9G23rX48kz";

    #[test]
    fn allowed_signers_lines_parse_with_and_without_options() {
        let a = AllowedSigners::parse(&format!(
            "# ops\nops@example.com {KEY} laptop\n\nci@example.com,bot namespaces=\"git,file\" {KEY}\n"
        ))
        .expect("parse");
        assert_eq!(a.signers.len(), 2);
        assert_eq!(a.signers[1].principals, "ci@example.com,bot");
        assert_eq!(a.signers[1].namespaces, ["git", "file"]);
        let e = AllowedSigners::parse(&format!("x cert-authority {KEY}\n")).expect_err("refused");
        assert!(
            e.contains("line 1: option `cert-authority` is not supported"),
            "{e}"
        );
        let e = AllowedSigners::parse("x ssh-ed25519 AAAA\n").expect_err("refused");
        assert!(e.contains("line 1: not a public key"), "{e}");
    }

    #[test]
    fn a_gpg_signature_or_none_is_refused_by_name() {
        let a = AllowedSigners::parse(&format!("x {KEY}\n")).expect("parse");
        assert_eq!(
            verify(&a, b"-----BEGIN PGP SIGNATURE-----\n", b"x"),
            Err(Refusal::NotSsh)
        );
    }
}
