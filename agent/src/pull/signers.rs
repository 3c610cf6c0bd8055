//! The allowed signers file (git's `gpg.ssh.allowedSignersFile`), read exactly as OpenSSH's
//! `sshsig.c` reads it, because it is the fleet's trust root and must mean what `git
//! verify-commit` (through `ssh-keygen -Y`) says it means:
//!
//! - a line is `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]`; `PRINCIPALS` is a pattern list
//!   (`*`, `?`, `!` negation) and may be quoted; options are `cert-authority`,
//!   `namespaces="PATTERNS"`, `valid-after="TIME"`, `valid-before="TIME"` (names in any case,
//!   values quoted, each at most once);
//! - a line that does not parse is skipped, as ssh-keygen skips it — tend names it in a warning;
//! - the principals a key stands for are those of the *first* line listing the key that is valid
//!   at the commit's time (`ssh-keygen -Y find-principals`); the commit verifies when one of them
//!   has a line (any line) whose principal patterns match it, listing that key, allowing
//!   namespace `git` and valid at that time (`ssh-keygen -Y verify -I PRINCIPAL -n git`).
//!
//! Deliberate refusals, each a skipped line or a refused signature with its reason:
//! `valid-after`/`valid-before` in local time (tend reads only UTC times, `…Z`), signatures made
//! with an SSH certificate (so `cert-authority` lines authorize nothing here), DSA keys.

use std::path::Path;

use ssh_key::public::KeyData;
use ssh_key::PublicKey;

use super::pattern::{match_list, ListMatch};

/// One line that parsed.
#[derive(Debug, Clone)]
pub(super) struct Line {
    /// The principal patterns, as written (unquoted).
    principals: Vec<u8>,
    key: KeyData,
    cert_authority: bool,
    namespaces: Option<Vec<u8>>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
}

/// A line ssh-keygen would skip, and why (for the warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Skipped {
    pub line: usize,
    pub reason: String,
}

/// The file's lines that parsed, in order, and those it skipped.
#[derive(Debug, Clone, Default)]
pub(super) struct AllowedSigners {
    lines: Vec<Line>,
    pub skipped: Vec<Skipped>,
}

/// The largest allowed signers file read (a fleet's is a few lines).
const MAX_FILE: u64 = 1 << 20;

impl AllowedSigners {
    /// The file says whose commits the host runs: like `pull.toml`, it is read only when it is a
    /// regular file tend's user owns that nobody else can write (no symlink followed). Every
    /// skipped line is a warning naming it.
    pub(super) fn load(path: &Path) -> Result<AllowedSigners, String> {
        super::check_trusted_path(path)?;
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
        let signers = AllowedSigners::parse(&bytes);
        for s in &signers.skipped {
            eprintln!(
                "warning: {}:{}: {}; the line is ignored, as ssh-keygen ignores it",
                path.display(),
                s.line,
                s.reason
            );
        }
        if signers.lines.is_empty() {
            return Err(format!(
                "{}: no usable line: no commit can verify against it",
                path.display()
            ));
        }
        Ok(signers)
    }

    pub(super) fn parse(bytes: &[u8]) -> AllowedSigners {
        let mut out = AllowedSigners::default();
        for (n, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            // C string functions end a line at its first NUL.
            let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
            match parse_line(raw) {
                Ok(Some(line)) => out.lines.push(line),
                Ok(None) => {}
                Err(reason) => out.skipped.push(Skipped {
                    line: n + 1,
                    reason,
                }),
            }
        }
        out
    }

    /// `ssh-keygen -Y find-principals`: the principals of the first line for `key` valid at
    /// `time` (namespaces are not looked at), one per comma up to the first empty one.
    fn find_principals(&self, key: &KeyData, time: u64) -> Vec<Vec<u8>> {
        let Some(line) = self
            .lines
            .iter()
            .find(|l| !l.cert_authority && &l.key == key && l.valid_at(time))
        else {
            return Vec::new();
        };
        line.principals
            .split(|&b| b == b',')
            .take_while(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// `ssh-keygen -Y verify -I principal -n namespace`: any line whose principal patterns
    /// match, listing `key`, allowing `namespace` and valid at `time`.
    fn allows(&self, key: &KeyData, principal: &[u8], namespace: &[u8], time: u64) -> bool {
        self.lines.iter().any(|l| {
            match_list(principal, &l.principals) == ListMatch::Positive
                && !l.cert_authority
                && &l.key == key
                && l.namespaces
                    .as_deref()
                    .is_none_or(|ns| match_list(namespace, ns) == ListMatch::Positive)
                && l.valid_at(time)
        })
    }

    /// The principal a signature by `key` at `time` verifies for (`git verify-commit`'s
    /// answer), or why none does.
    pub(super) fn principal_for(&self, key: &KeyData, time: u64) -> Result<String, String> {
        let principals = self.find_principals(key, time);
        if principals.is_empty() {
            return Err(if self.lines.iter().any(|l| &l.key == key) {
                "the allowed signers file lists its key only on lines that do not apply at the commit's time or to plain keys".into()
            } else {
                "the allowed signers file does not list its key".into()
            });
        }
        principals
            .iter()
            .find(|p| self.allows(key, p, b"git", time))
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .ok_or_else(|| {
                format!(
                    "no line allows principal {} with this key for namespace \"git\"",
                    principals
                        .iter()
                        .map(|p| format!("{:?}", String::from_utf8_lossy(p)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

impl Line {
    fn valid_at(&self, time: u64) -> bool {
        self.valid_after.is_none_or(|a| time >= a) && self.valid_before.is_none_or(|b| time <= b)
    }
}

const WHITESPACE: &[u8] = b" \t\r\n";

/// One line, as `parse_principals_key_and_options` reads it: `Ok(None)` for a blank or comment
/// line, `Err` with ssh-keygen's reason for a line it skips.
fn parse_line(line: &[u8]) -> Result<Option<Line>, String> {
    let start = line
        .iter()
        .position(|b| !WHITESPACE.contains(b))
        .unwrap_or(line.len());
    let line = &line[start..];
    if line.is_empty() || line[0] == b'#' {
        return Ok(None);
    }
    let (principals, rest) = principals_token(line).ok_or("invalid line")?;
    let (key, options) = match read_key(rest) {
        Ok(key) => (key, &b""[..]),
        Err(_) => {
            // No key where the key type should be: options come first.
            let end = past_options(rest).ok_or("invalid options")?;
            if end >= rest.len() {
                return Err("missing key".into());
            }
            let mut after = &rest[end + 1..];
            while let [b' ' | b'\t', tail @ ..] = after {
                after = tail;
            }
            let key = read_key(after).map_err(|e| format!("invalid key ({e})"))?;
            (key, &rest[..end])
        }
    };
    let options = parse_options(options).map_err(|e| format!("bad options: {e}"))?;
    Ok(Some(Line {
        principals,
        key,
        cert_authority: options.cert_authority,
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
    }))
}

/// `strdelimw`: the first token, up to whitespace; a `"` removes itself and makes what runs to
/// the next `"` part of the token. `None` when no whitespace follows (no key) or a quote is
/// never closed.
fn principals_token(line: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let at = line
        .iter()
        .position(|b| WHITESPACE.contains(b) || *b == b'"')?;
    if line[at] == b'"' {
        let close = at + 1 + line[at + 1..].iter().position(|&b| b == b'"')?;
        let mut token = line[..at].to_vec();
        token.extend_from_slice(&line[at + 1..close]);
        let rest = &line[close + 1..];
        let skip = rest
            .iter()
            .position(|b| !WHITESPACE.contains(b))
            .unwrap_or(rest.len());
        return Some((token, &rest[skip..]));
    }
    let rest = &line[at + 1..];
    let skip = rest
        .iter()
        .position(|b| !WHITESPACE.contains(b))
        .unwrap_or(rest.len());
    Some((line[..at].to_vec(), &rest[skip..]))
}

/// `sshkey_read`: `KEYTYPE BASE64` at the start of `s` (a comment may follow).
fn read_key(s: &[u8]) -> Result<KeyData, String> {
    let type_end = s
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .ok_or("no key")?;
    let key_type = &s[..type_end];
    let mut rest = &s[type_end..];
    while let [b' ' | b'\t', tail @ ..] = rest {
        rest = tail;
    }
    if rest.is_empty() {
        return Err("no key".into());
    }
    let blob_end = rest
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(rest.len());
    let blob: Vec<u8> = rest[..blob_end]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let key_type = std::str::from_utf8(key_type).map_err(|_| "not a key type")?;
    if !KNOWN_TYPES.contains(&key_type) {
        return Err(format!("unknown key type {key_type:?}"));
    }
    let blob = std::str::from_utf8(&blob).map_err(|_| "not base64")?;
    let key = PublicKey::from_openssh(&format!("{key_type} {blob}")).map_err(|e| e.to_string())?;
    if key.algorithm().as_str() != key_type {
        return Err(format!(
            "the key is {}, the line says {key_type}",
            key.algorithm().as_str()
        ));
    }
    Ok(key.key_data().clone())
}

/// The key types OpenSSH reads on an allowed signers line that tend verifies with; a DSA or
/// certificate type is not among them (the line is skipped, with the reason).
const KNOWN_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// `sshkey_advance_past_options`: where the options end (unquoted blank), or `None` for an
/// unterminated quote.
fn past_options(s: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 0;
    while i < s.len() && (quoted || (s[i] != b' ' && s[i] != b'\t')) {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
            i += 1;
        } else if s[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    (!(i == s.len() && quoted)).then_some(i)
}

/// What a line's options say.
#[derive(Debug, Default)]
struct Options {
    cert_authority: bool,
    namespaces: Option<Vec<u8>>,
    valid_after: Option<u64>,
    valid_before: Option<u64>,
}

/// `sshsigopt_parse`: the options, or ssh-keygen's reason for refusing them.
fn parse_options(mut s: &[u8]) -> Result<Options, &'static str> {
    let mut line = Options::default();
    while let Some(&c) = s.first() {
        if c == b' ' || c == b'\t' {
            break;
        }
        if let Some(rest) = strip_prefix_ci(s, b"cert-authority") {
            line.cert_authority = true;
            s = rest;
        } else if let Some(rest) = option_value(s, b"namespaces") {
            if line.namespaces.is_some() {
                return Err("multiple \"namespaces\" clauses");
            }
            let (value, rest) = dequote(rest)?;
            line.namespaces = Some(value);
            s = rest;
        } else if let Some(rest) = option_value(s, b"valid-after") {
            if line.valid_after.is_some() {
                return Err("multiple \"valid-after\" clauses");
            }
            let (value, rest) = dequote(rest)?;
            line.valid_after = Some(time(&value).ok_or("invalid \"valid-after\" time")?);
            s = rest;
        } else if let Some(rest) = option_value(s, b"valid-before") {
            if line.valid_before.is_some() {
                return Err("multiple \"valid-before\" clauses");
            }
            let (value, rest) = dequote(rest)?;
            line.valid_before = Some(time(&value).ok_or("invalid \"valid-before\" time")?);
            s = rest;
        }
        match s.first() {
            None | Some(b' ' | b'\t') => break,
            Some(b',') => {
                s = &s[1..];
                if s.is_empty() {
                    return Err("unexpected end-of-options");
                }
            }
            Some(_) => return Err("unknown key option"),
        }
    }
    if let (Some(a), Some(b)) = (line.valid_after, line.valid_before) {
        if b <= a {
            return Err("\"valid-before\" time is before \"valid-after\"");
        }
    }
    Ok(line)
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// `opt_match`: `NAME=` in any case.
fn option_value<'a>(s: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    strip_prefix_ci(s, name)?.strip_prefix(b"=")
}

/// `opt_dequote`: a quoted value (`\"` inside stands for `"`) and what follows it.
fn dequote(s: &[u8]) -> Result<(Vec<u8>, &[u8]), &'static str> {
    let Some(mut s) = s.strip_prefix(b"\"") else {
        return Err("missing start quote");
    };
    let mut value = Vec::new();
    while let Some(&c) = s.first() {
        if c == b'"' {
            return Ok((value, &s[1..]));
        }
        if c == b'\\' && s.get(1) == Some(&b'"') {
            s = &s[1..];
        }
        value.push(s[0]);
        s = &s[1..];
    }
    Err("missing end quote")
}

/// `parse_absolute_time` for UTC times: `YYYYMMDD[HHMM[SS]]` followed by `Z` or `UTC`. A time
/// without the suffix is local time for ssh-keygen; tend does not read the host's time zone and
/// refuses it (`None`, so the line is skipped with the reason).
fn time(value: &[u8]) -> Option<u64> {
    let digits = if value.len() > 1 && value[value.len() - 1..].eq_ignore_ascii_case(b"z") {
        &value[..value.len() - 1]
    } else if value.len() > 3 && value[value.len() - 3..].eq_ignore_ascii_case(b"utc") {
        &value[..value.len() - 3]
    } else {
        return None;
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        digits
            .get(r)
            .map(|d| d.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0')))
            .unwrap_or(0)
    };
    let (y, mo, d, h, mi, s) = (
        num(0..4),
        num(4..6),
        num(6..8),
        num(8..10),
        num(10..12),
        num(12..14),
    );
    // strptime's ranges; timegm carries an overlong day into the next month.
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 61 {
        return None;
    }
    let secs = days_from_civil(y, mo, 1) + d - 1;
    u64::try_from(secs * 86_400 + h * 3600 + mi * 60 + s).ok()
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILXPkJPI4TMFWZP4xRBQjNeizUG99KuZCt9G23rX48kz";

    fn key() -> KeyData {
        PublicKey::from_openssh(KEY)
            .expect("key")
            .key_data()
            .clone()
    }

    #[test]
    fn lines_parse_with_and_without_options() {
        let a = AllowedSigners::parse(
            format!(
                "# ops\nops@example.com {KEY} laptop\n\nx,\"ci bot\" NAMESPACES=\"git,file\" {KEY}\n"
            )
            .as_bytes(),
        );
        assert!(a.skipped.is_empty(), "{:?}", a.skipped);
        assert_eq!(a.lines.len(), 2);
        assert_eq!(a.lines[1].principals, b"x,ci bot");
        assert_eq!(a.lines[1].namespaces.as_deref(), Some(&b"git,file"[..]));
    }

    #[test]
    fn a_bad_line_is_skipped_with_ssh_keygens_reason() {
        let a = AllowedSigners::parse(
            format!(
                "a namespaces=git {KEY}\nb namespaces=\"git\",namespaces=\"git\" {KEY}\nc no-touch-required {KEY}\nd ssh-ed25519 AAAA\ne\nf {KEY}\n"
            )
            .as_bytes(),
        );
        let reasons: Vec<_> = a
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        assert_eq!(reasons[0], (1, "bad options: missing start quote"));
        assert_eq!(
            reasons[1],
            (2, "bad options: multiple \"namespaces\" clauses")
        );
        assert_eq!(reasons[2], (3, "bad options: unknown key option"));
        assert_eq!(reasons[3].0, 4);
        assert!(reasons[3].1.starts_with("invalid key"), "{:?}", reasons[3]);
        assert_eq!(reasons[4], (5, "missing key"));
        assert_eq!(a.lines.len(), 1);
        assert_eq!(a.principal_for(&key(), 0), Ok("f".into()));
    }

    #[test]
    fn principals_and_namespaces_are_pattern_lists() {
        let verdict = |file: &str| AllowedSigners::parse(file.as_bytes()).principal_for(&key(), 0);
        assert!(verdict(&format!("!ops@example.com {KEY}\n")).is_err());
        assert!(verdict(&format!("!ops@example.com,ops@example.com {KEY}\n")).is_err());
        assert!(verdict(&format!("ops namespaces=\"file, git\" {KEY}\n")).is_err());
        assert!(verdict(&format!("ops namespaces=\" git\" {KEY}\n")).is_err());
        assert_eq!(
            verdict(&format!("ops namespaces=\"!file,*\" {KEY}\n")),
            Ok("ops".into())
        );
        // The first line names the principal; a later line may allow it for git.
        assert_eq!(
            verdict(&format!(
                "ops namespaces=\"file\" {KEY}\nops namespaces=\"git\" {KEY}\n"
            )),
            Ok("ops".into())
        );
        // A cert-authority line authorizes no plain key.
        assert!(verdict(&format!("ops cert-authority {KEY}\n")).is_err());
    }

    #[test]
    fn validity_times_are_utc_and_inclusive() {
        assert_eq!(time(b"19700101Z"), Some(0));
        assert_eq!(time(b"20261207001031Z"), Some(1_796_602_231));
        assert_eq!(time(b"202612070010UTC"), Some(1_796_602_200));
        assert_eq!(time(b"20261207"), None);
        assert_eq!(time(b"2026120Z"), None);
        let a = AllowedSigners::parse(
            format!("ops valid-after=\"20261207Z\",valid-before=\"20261208Z\" {KEY}\n").as_bytes(),
        );
        assert!(a.principal_for(&key(), 1_796_601_599).is_err());
        assert!(a.principal_for(&key(), 1_796_601_600).is_ok());
        assert!(a.principal_for(&key(), 1_796_688_000).is_ok());
        assert!(a.principal_for(&key(), 1_796_688_001).is_err());
    }
}
