//! A commit's signature and the bytes it signs, split exactly as git splits them
//! (`parse_buffer_signed_by_header` in git's commit.c), from the raw object — never from
//! libgit2's `extract_signature`, which finds a `gpgsig` past the end of the headers (in the
//! message), where git sees none.
//!
//! The headers end at the first empty line; everything after it is the message and is signed
//! as it is. A `gpgsig ` header and its continuation lines (a leading space, removed) are the
//! signature; two such headers are joined, as git joins them. Any other header starting with
//! `gpgsig` (`gpgsig-sha256`: the signature over the object's SHA-256 form) and its continuation
//! lines are left out of both. Every other byte is the payload, in order.

/// What git finds in a commit object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SignedCommit {
    /// The joined `gpgsig` value; empty when the commit is unsigned.
    pub signature: Vec<u8>,
    /// The object without its signature headers: what the signature covers.
    pub payload: Vec<u8>,
    /// The committer's time (seconds since the epoch): the time git verifies the key at
    /// (`-Overify-time`), 0 when the header is missing or unreadable.
    pub committer_time: u64,
}

pub(super) fn split(object: &[u8]) -> SignedCommit {
    const HEADER: &[u8] = b"gpgsig";
    let mut signature = Vec::new();
    let mut payload = Vec::with_capacity(object.len());
    let (mut in_signature, mut other_signature) = (false, false);
    let mut rest = object;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        let sig = if in_signature && line.first() == Some(&b' ') {
            Some(&line[1..])
        } else if line.starts_with(HEADER) && line.get(HEADER.len()) == Some(&b' ') {
            other_signature = false;
            Some(&line[HEADER.len() + 1..])
        } else {
            if line.starts_with(HEADER) {
                other_signature = true;
            } else if other_signature && line.first() != Some(&b' ') {
                other_signature = false;
            }
            None
        };
        match sig {
            Some(s) => {
                signature.extend_from_slice(s);
                in_signature = true;
            }
            None => {
                if line.first() == Some(&b'\n') {
                    // The message: all of it, as it is.
                    payload.extend_from_slice(rest);
                    break;
                }
                if !other_signature {
                    payload.extend_from_slice(line);
                }
                in_signature = false;
            }
        }
        rest = &rest[end..];
        // git walks a C string: a line that starts with NUL ends the object for it.
        if rest.first() == Some(&0) {
            break;
        }
    }
    let committer_time = committer_time(&payload);
    SignedCommit {
        signature,
        payload,
        committer_time,
    }
}

/// `committer NAME <EMAIL> SECONDS ZONE` among the headers.
fn committer_time(payload: &[u8]) -> u64 {
    payload
        .split(|&b| b == b'\n')
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(b"committer "))
        .and_then(|l| {
            let after = &l[l.iter().rposition(|&b| b == b'>')? + 1..];
            let text = std::str::from_utf8(after).ok()?;
            text.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_comes_from_the_headers_only() {
        let object = b"tree t\ncommitter c <c> 1700000000 +0000\ngpgsig -----BEGIN\n one\n two\nencoding x\n\nmessage\ngpgsig -----BEGIN\n three\n";
        let c = split(object);
        assert_eq!(c.signature, b"-----BEGIN\none\ntwo\n");
        assert_eq!(
            c.payload,
            &b"tree t\ncommitter c <c> 1700000000 +0000\nencoding x\n\nmessage\ngpgsig -----BEGIN\n three\n"[..]
        );
        assert_eq!(c.committer_time, 1_700_000_000);
    }

    #[test]
    fn a_signature_in_the_message_is_no_signature() {
        let c = split(b"tree t\n\nmsg\ngpgsig -----BEGIN SSH SIGNATURE-----\n x\n");
        assert!(c.signature.is_empty());
        assert_eq!(
            c.payload,
            &b"tree t\n\nmsg\ngpgsig -----BEGIN SSH SIGNATURE-----\n x\n"[..]
        );
    }

    #[test]
    fn other_signature_headers_are_left_out_of_both() {
        let c = split(b"tree t\ngpgsig-sha256 junk\n more\ngpgsig A\n B\n\nm\n");
        assert_eq!(c.signature, b"A\nB\n");
        assert_eq!(c.payload, b"tree t\n\nm\n");
        let two = split(b"tree t\ngpgsig A\ngpgsig B\n\n");
        assert_eq!(two.signature, b"A\nB\n");
    }
}
