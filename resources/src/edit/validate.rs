//! `validate`: a command that checks a candidate file before it replaces the live one (Ansible's
//! `validate`, Puppet's `validate_cmd`): `sshd -t -f %s`, `visudo -cf %s`, `nginx -t -c %s`.
//!
//! The candidate is written to a private temporary directory (mode 0700, removed after), `%s`
//! is replaced by its path, shell-quoted, and the command runs through `sh -c` with a time limit.
//! A refusal leaves the live file untouched and fails the resource with the command's output —
//! unless what was validated holds a secret, when the output is withheld (a validator may echo
//! the line it refuses).

use std::path::Path;
use std::time::Duration;

use crate::spec::{Fields, SpecError};

/// How long a validator may run.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The most of a validator's output a failure shows.
const SHOWN: usize = 4096;

/// A validation command with `%s` where the candidate's path goes.
#[derive(Debug, Clone)]
pub struct Validate {
    command: String,
}

impl Validate {
    /// The `validate` field, if present: it must name the candidate with `%s`.
    pub fn from_fields(f: &mut Fields<'_>) -> Result<Option<Validate>, SpecError> {
        let Some((t, span)) = f.string("validate")? else {
            return Ok(None);
        };
        if !t.value.contains("%s") {
            return Err(
                SpecError::new(span, "validate does not name the file it checks (%s)").help(
                    "e.g. validate = \"sshd -t -f %s\": %s is replaced by the candidate's path",
                ),
            );
        }
        Ok(Some(Validate { command: t.value }))
    }

    /// The command as the manifest gives it.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Run the validator on `candidate` (the bytes that would replace `path`). `Err` says why it
    /// refused, for the operator.
    pub async fn run(&self, path: &Path, candidate: &[u8], sensitive: bool) -> Result<(), String> {
        let dir = tempfile::Builder::new()
            .prefix("tend-validate-")
            .tempdir()
            .map_err(|e| format!("validate: cannot make a private directory: {e}"))?;
        let name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "candidate".into());
        let file = dir.path().join(name);
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // The candidate, in tend's own private temporary directory (0700, made just now).
            #[allow(clippy::disallowed_methods)]
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| format!("validate: cannot write the candidate: {e}"))?;
            f.write_all(candidate)
                .map_err(|e| format!("validate: cannot write the candidate: {e}"))?;
        }
        let quoted = shell_quote(&file.to_string_lossy());
        let line = self.command.replace("%s", &quoted);
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(&line);
        let out = crate::process::capture(c, TIMEOUT)
            .await
            .map_err(|e| format!("validate `{}`: {e}", self.command))?;
        if out.status.success() {
            return Ok(());
        }
        let how = match out.status.code() {
            Some(n) => format!("exit {n}"),
            None => "killed by a signal".to_string(),
        };
        if sensitive {
            return Err(format!(
                "validate `{}` refused the new content ({how}); its output is withheld because the content holds a secret",
                self.command
            ));
        }
        let mut said = String::from_utf8_lossy(&out.stderr).into_owned();
        said.push_str(&String::from_utf8_lossy(&out.stdout));
        // The temporary path means nothing to the operator: name the live file.
        let said = said.replace(
            &file.to_string_lossy().into_owned(),
            &path.to_string_lossy(),
        );
        let said = said.trim();
        let said = match said.char_indices().nth(SHOWN) {
            Some((i, _)) => format!("{}…", &said[..i]),
            None => said.to_string(),
        };
        Err(format!(
            "validate `{}` refused the new content ({how}): {said}",
            self.command
        ))
    }
}

/// `s` as one word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
