//! Accounts: the `user` and `group` kinds. The check reads `/etc/passwd`, `/etc/group` and
//! `/etc/shadow` in-process (under `--root`, the root's: no process on a no-op); apply acts
//! through shadow-utils (`useradd`, `usermod`, `userdel`, `groupadd`, `groupmod`, `groupdel`,
//! with `--prefix ROOT` under `--root`), the tools every Debian host's own scripts use, so that
//! `/etc/shadow`, `/etc/gshadow`, their backups and locks are kept exactly as they keep them.

pub(crate) mod authorized_keys;
pub(crate) mod db;
pub(crate) mod group;
pub(crate) mod user;

use std::path::Path;
use std::time::Duration;

use crate::host::Mutate;
use crate::resource::ResourceError;
use crate::spec::{Span, SpecError};

/// How long one shadow-utils command may run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A user or group name as shadow-utils accepts it by default: a lower-case letter or `_`, then
/// lower-case letters, digits, `_` or `-` (a trailing `$` for machine accounts), at most 32
/// bytes.
pub(crate) fn check_name(span: &Span, what: &str, name: &str) -> Result<(), SpecError> {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut bytes = body.bytes();
    let ok = name.len() <= 32
        && matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if ok {
        return Ok(());
    }
    Err(
        SpecError::new(span.clone(), format!("{name:?} is not a valid {what} name"))
            .help("shadow-utils takes a lower-case letter or `_`, then lower-case letters, digits, `_` or `-`, at most 32 characters"),
    )
}

/// Run a shadow-utils tool on the host (or on the root's files, `--prefix ROOT`), with `input`
/// on its stdin when given (what must not appear in its arguments). Its refusal is a failure
/// quoting its own words.
pub(crate) async fn tool(
    host: &Mutate,
    program: &str,
    args: &[String],
    input: Option<Vec<u8>>,
) -> Result<(), ResourceError> {
    let sbin = Path::new("/usr/sbin").join(program);
    // The build machine's tool (shadow-utils acts on `--prefix`), looked up where Debian puts it.
    #[allow(clippy::disallowed_methods)]
    let exe = if sbin.exists() { sbin } else { program.into() };
    let mut c = tokio::process::Command::new(&exe);
    let root = host.root();
    if root != Path::new("/") {
        // chpasswd has no --prefix: it chroots (with -e it needs no PAM module inside).
        c.arg(if program == "chpasswd" {
            "--root"
        } else {
            "--prefix"
        })
        .arg(root);
    }
    c.args(args);
    let shown = format!("{program} {}", args.join(" "));
    let out = match input {
        Some(bytes) => crate::process::capture_with_input(c, bytes, TIMEOUT).await,
        None => crate::process::capture(c, TIMEOUT).await,
    }
    .map_err(|e| ResourceError::Command(format!("{shown}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(ResourceError::Command(format!(
        "{shown} failed ({}): {}",
        out.status
            .code()
            .map_or("killed by a signal".to_string(), |c| format!("exit {c}")),
        said.trim()
    )))
}
