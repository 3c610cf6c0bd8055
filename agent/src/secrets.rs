//! `secret(name, len)`: random alphanumeric values generated once, kept in the state directory
//! (`secrets/NAME`, mode 0600, directory 0700) and identical on every later run.
//!
//! Every value handed out is remembered, so the printers can scrub it from anything they write:
//! a secret that slips into a field no one marked sensitive still never reaches stdout, a report
//! or a log.

use std::collections::HashMap;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::distributions::Alphanumeric;
use rand::Rng;

/// How secrets are obtained in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMode {
    /// Read, or generate and store.
    Persist,
    /// `apply` before it holds the lock: read, or generate and remember; [`SecretStore::persist_fresh`]
    /// stores them once the lock is held, so a manifest that does not load leaves no trace.
    Deferred,
    /// `plan`: read when stored; otherwise a throwaway value (apply would generate one).
    ReadOnly,
    /// `check`: never touch the host; throwaway values only.
    Ephemeral,
}

/// The values of `secret(NAME)`: generated once, kept in the state directory (or not, by mode).
#[derive(Debug)]
pub struct SecretStore {
    dir: PathBuf,
    mode: SecretMode,
    cache: Mutex<HashMap<String, String>>,
    /// Generated in `Deferred` mode, not stored yet.
    fresh: Mutex<Vec<String>>,
}

/// The shortest secret `secret(NAME, LEN)` makes.
pub const MIN_LEN: usize = 8;
/// The longest.
pub const MAX_LEN: usize = 4096;

impl SecretStore {
    /// The store of `state_dir`, used as `mode` allows.
    pub fn new(state_dir: &Path, mode: SecretMode) -> SecretStore {
        SecretStore {
            dir: state_dir.join("secrets"),
            mode,
            cache: Mutex::new(HashMap::new()),
            fresh: Mutex::new(Vec::new()),
        }
    }

    /// The secret `name`, `len` characters long when it is first generated.
    pub fn get(&self, name: &str, len: usize) -> Result<String, String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            || name.starts_with('.')
        {
            return Err(format!(
                "secret name {name:?} must be letters, digits, `_`, `-` or `.`"
            ));
        }
        if !(MIN_LEN..=MAX_LEN).contains(&len) {
            return Err(format!(
                "secret length must be between {MIN_LEN} and {MAX_LEN}, not {len}"
            ));
        }
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "secret store poisoned".to_string())?;
        if let Some(v) = cache.get(name) {
            return Ok(v.clone());
        }
        let file = self.dir.join(name);
        let stored = match self.mode {
            SecretMode::Ephemeral => None,
            _ => match tend_resources::host::read_private_file(&file) {
                Ok(Some(v)) => {
                    let v = String::from_utf8(v).map_err(|_| {
                        format!(
                            "stored secret {} is not UTF-8; remove it to generate a new one",
                            file.display()
                        )
                    })?;
                    let v = v.trim_end_matches('\n').to_string();
                    // A short stored value would be redacted character by character, garbling
                    // all output; an empty one everywhere. Refuse it instead.
                    if v.chars().count() < MIN_LEN {
                        return Err(format!(
                            "stored secret {} holds {} characters, fewer than the minimum {MIN_LEN}; \
                             remove the file to generate a new one (and update what uses it)",
                            file.display(),
                            v.chars().count()
                        ));
                    }
                    Some(v)
                }
                Ok(None) => None,
                Err(e) => return Err(e.to_string()),
            },
        };
        let value = match stored {
            Some(v) => v,
            None => {
                let v = generate(len);
                match self.mode {
                    SecretMode::Persist => self.store(name, &v)?,
                    SecretMode::Deferred => self
                        .fresh
                        .lock()
                        .map_err(|_| "secret store poisoned".to_string())?
                        .push(name.to_string()),
                    _ => {}
                }
                v
            }
        };
        cache.insert(name.to_string(), value.clone());
        Ok(value)
    }

    fn store(&self, name: &str, value: &str) -> Result<(), String> {
        let state = self.dir.parent().unwrap_or(Path::new("/"));
        crate::state::ensure_private_dir(state).map_err(|e| e.to_string())?;
        crate::state::write_private(&self.dir, name, value.as_bytes()).map_err(|e| e.to_string())
    }

    /// Store the secrets generated in `Deferred` mode (the caller holds the run lock). `Ok(false)`
    /// when another run stored one of them first: the manifest must be loaded again to use the
    /// stored value.
    pub fn persist_fresh(&self) -> Result<bool, String> {
        let fresh = std::mem::take(
            &mut *self
                .fresh
                .lock()
                .map_err(|_| "secret store poisoned".to_string())?,
        );
        let cache = self
            .cache
            .lock()
            .map_err(|_| "secret store poisoned".to_string())?;
        for name in &fresh {
            let stored = tend_resources::host::read_private_file(&self.dir.join(name))
                .map_err(|e| e.to_string())?;
            if stored.is_some() {
                return Ok(false);
            }
        }
        for name in &fresh {
            if let Some(v) = cache.get(name) {
                self.store(name, v)?;
            }
        }
        Ok(true)
    }

    /// Every secret value handed out so far (for scrubbing output).
    pub fn values(&self) -> Vec<String> {
        self.cache
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Alphanumeric only: safe unquoted in .env files, URLs and shell words.
fn generate(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Replaces every known secret value in `text` with `(sensitive)`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    /// A redactor of `values` (ones shorter than [`MIN_LEN`] are not secrets tend made).
    pub fn new(mut values: Vec<String>) -> Redactor {
        // Longest first, so a secret that contains another is replaced whole.
        // Values shorter than a secret may be are not secrets tend made (and would garble
        // every line they were scrubbed from).
        values.retain(|v| v.chars().count() >= MIN_LEN);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Redactor { values }
    }

    /// `text` with every secret value replaced by the redaction mark.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), tend_resources::REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_secret_is_stable_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let a = SecretStore::new(&state, SecretMode::Persist)
            .get("db", 24)
            .expect("get");
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        let b = SecretStore::new(&state, SecretMode::Persist)
            .get("db", 24)
            .expect("again");
        assert_eq!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("secrets/db"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let plan = SecretStore::new(&state, SecretMode::ReadOnly)
            .get("db", 24)
            .expect("plan");
        assert_eq!(plan, a);
    }

    #[test]
    fn plan_never_writes_a_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        SecretStore::new(dir.path(), SecretMode::ReadOnly)
            .get("x", 16)
            .expect("get");
        assert!(!dir.path().join("secrets").exists());
    }

    #[test]
    fn bad_names_and_lengths_are_refused() {
        let s = SecretStore::new(Path::new("/nonexistent"), SecretMode::Ephemeral);
        assert!(s.get("../etc/passwd", 16).is_err());
        assert!(s.get("ok", 2).is_err());
    }

    #[test]
    fn redactor_scrubs_every_occurrence() {
        let r = Redactor::new(vec!["s3cr3tvalue".into()]);
        assert_eq!(
            r.scrub("a=s3cr3tvalue b=s3cr3tvalue"),
            "a=(sensitive) b=(sensitive)"
        );
    }
}
