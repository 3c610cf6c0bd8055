//! Verified policy: a commit verifies when `git verify-commit` (with `gpg.format = ssh` and the
//! host's allowed signers file) would say it does — decided in-process, no gpg, no ssh-keygen
//! at run time:
//!
//! 1. the signature and the bytes it covers come from the raw commit object as git splits it
//!    (`signed_commit`);
//! 2. the signature is an armored `sshsig`, unwrapped as ssh-keygen unwraps it (any line
//!    length, text after the footer ignored), in namespace `git`, with no trailing data;
//! 3. the key's principals and whether one may sign for `git` at the committer's time are the
//!    allowed signers file's answer (`signers`), then the signature must verify.

use ssh_key::public::KeyData;
use ssh_key::{PublicKey, SshSig};

use super::signed_commit::SignedCommit;
use super::signers::AllowedSigners;

/// Why a commit is not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    Unsigned,
    NotSsh,
    BadSignature(String),
    /// The signing key's fingerprint, and why no principal stands for it.
    NotAllowed {
        key: String,
        why: String,
    },
    /// A signature tend deliberately does not verify (see docs/fleet.md).
    Unsupported(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str("it is not signed"),
            Refusal::NotSsh => {
                f.write_str("its signature is not an SSH signature (gpg.format = ssh)")
            }
            Refusal::BadSignature(why) => write!(f, "its signature does not verify: {why}"),
            Refusal::NotAllowed { key, why } => write!(f, "it is signed by {key}, but {why}"),
            Refusal::Unsupported(why) => {
                write!(f, "its signature is {why}, which tend does not verify")
            }
        }
    }
}

const BEGIN: &[u8] = b"-----BEGIN SSH SIGNATURE-----";
const END: &[u8] = b"\n-----END SSH SIGNATURE-----";

/// The principal the commit is verified for, or why it is not.
pub(super) fn verify(allowed: &AllowedSigners, commit: &SignedCommit) -> Result<String, Refusal> {
    if commit.signature.is_empty() {
        return Err(Refusal::Unsigned);
    }
    if !commit.signature.starts_with(BEGIN) {
        return Err(Refusal::NotSsh);
    }
    let sig = decode(&commit.signature)?;
    let key = sig.public_key().clone();
    if matches!(key, KeyData::SkEd25519(_) | KeyData::SkEcdsaSha2NistP256(_)) {
        return Err(Refusal::Unsupported(
            "made with a security key (sk-)".into(),
        ));
    }
    let principal = allowed
        .principal_for(&key, commit.committer_time)
        .map_err(|why| Refusal::NotAllowed {
            key: PublicKey::from(key.clone())
                .fingerprint(Default::default())
                .to_string(),
            why,
        })?;
    if sig.namespace() != "git" {
        return Err(Refusal::BadSignature(format!(
            "namespace {:?}, not \"git\"",
            sig.namespace()
        )));
    }
    // ssh-keygen verifies over an empty reserved field, whatever the signature carries.
    let canonical = SshSig::new(key.clone(), "git", sig.hash_alg(), sig.signature().clone())
        .map_err(|e| Refusal::BadSignature(e.to_string()))?;
    PublicKey::from(key)
        .verify("git", &commit.payload, &canonical)
        .map_err(|e| Refusal::BadSignature(e.to_string()))?;
    Ok(principal)
}

/// `sshsig_dearmor`, then the `sshsig` blob with nothing after it.
fn decode(armored: &[u8]) -> Result<SshSig, Refusal> {
    let bad = |why: &str| Refusal::BadSignature(why.to_string());
    let body = &armored[BEGIN.len()..];
    let body = body
        .strip_prefix(b"\r\n")
        .or_else(|| body.strip_prefix(b"\n"))
        .ok_or_else(|| bad("no line break after the header"))?;
    let end = body
        .windows(END.len())
        .position(|w| w == END)
        .ok_or_else(|| bad("no -----END SSH SIGNATURE----- line"))?;
    let blob = base64(&body[..end]).ok_or_else(|| bad("not base64"))?;
    let mut reader = &blob[..];
    let sig = <SshSig as ssh_encoding::Decode>::decode(&mut reader)
        .map_err(|e| Refusal::BadSignature(format!("not an SSH signature ({e})")))?;
    if !reader.is_empty() {
        return Err(bad("trailing data after the signature"));
    }
    Ok(sig)
}

/// OpenSSH's `b64_pton`: whitespace anywhere is skipped; padding as RFC 4648 with zero trailing
/// bits; anything else is refused.
fn base64(text: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut n) = (0u32, 0u32);
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        i += 1;
        if space(&c) {
            continue;
        }
        if c == b'=' {
            // state 2 needs a second `=`; state 3 ends here; 0 and 1 cannot be padded.
            let mut rest = text[i..].iter().filter(|c| !space(c));
            match n {
                2 => {
                    if rest.next() != Some(&b'=') {
                        return None;
                    }
                    if rest.next().is_some() || acc & 0xf != 0 {
                        return None;
                    }
                    out.push((acc >> 4) as u8);
                }
                3 => {
                    if rest.next().is_some() || acc & 0x3 != 0 {
                        return None;
                    }
                    out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
                }
                _ => return None,
            }
            return Some(out);
        }
        acc = (acc << 6) | value(c)?;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    (n == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpg_signature_or_none_is_refused_by_name() {
        let a = AllowedSigners::default();
        let commit = |sig: &[u8]| SignedCommit {
            signature: sig.to_vec(),
            payload: b"x".to_vec(),
            committer_time: 0,
        };
        assert_eq!(
            verify(&a, &commit(b"-----BEGIN PGP SIGNATURE-----\n")),
            Err(Refusal::NotSsh)
        );
        assert_eq!(verify(&a, &commit(b"")), Err(Refusal::Unsigned));
    }

    #[test]
    fn base64_reads_as_openssh_does() {
        assert_eq!(base64(b"aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64(b"aG\n k=\n").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64(b"aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64(b"aA==").as_deref(), Some(&b"h"[..]));
        assert_eq!(base64(b"aGk").as_deref(), None);
        assert_eq!(base64(b"aGl=").as_deref(), None);
        assert_eq!(base64(b"aGk=x").as_deref(), None);
        assert_eq!(base64(b"a*k=").as_deref(), None);
    }
}
