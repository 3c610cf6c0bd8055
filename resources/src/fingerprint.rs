//! Fingerprints of secret values: the first hex digits of HMAC-SHA256 under a per-host key kept
//! in the state directory (mode 0600). An audit sees *that* a secret changed
//! (`(sensitive) ab12… → cd34…`), and a guessed password cannot be confirmed offline from a log,
//! because the key never leaves the host.

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `ab12…`: four hex digits of the HMAC.
pub(crate) fn short(key: &[u8], value: &[u8]) -> String {
    let mac = hmac_sha256(key, value);
    format!("{:02x}{:02x}…", mac[0], mac[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn long_keys_are_hashed_first() {
        // RFC 4231 test case 6: a 131-byte key.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(mac[..4], [0x60, 0xe4, 0x31, 0x59]);
    }

    #[test]
    fn fingerprints_depend_on_the_key() {
        assert_ne!(short(b"host-a", b"password"), short(b"host-b", b"password"));
        assert_eq!(short(b"k", b"v").chars().count(), 5);
    }
}
