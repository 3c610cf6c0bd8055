//! The dpkg database (`/var/lib/dpkg/status`), read directly: a no-op check of many packages
//! costs a file read, not a process per package.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use crate::host::{HostError, Probe};

/// One package's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Package name.
    pub name: String,
    /// Architecture (`amd64`, `all`…).
    pub arch: String,
    /// Installed version.
    pub version: String,
    /// `Status:` as written: want, error flag, state (`install ok installed`).
    pub status: String,
}

impl Installed {
    /// Only `install ok installed` counts as installed.
    pub fn is_installed(&self) -> bool {
        self.status == "install ok installed"
    }

    /// The state word: `installed`, `half-installed`, `config-files`, `unpacked`, …
    pub fn state(&self) -> &str {
        self.status.rsplit(' ').next().unwrap_or("")
    }
}

/// The parsed database: package name → records (one per architecture).
#[derive(Debug, Default)]
pub struct Db {
    /// Installed packages by name (one per architecture).
    pub packages: HashMap<String, Vec<Installed>>,
}

impl Db {
    /// Read the text of `/var/lib/dpkg/status`.
    pub fn parse(text: &str) -> Db {
        let mut packages: HashMap<String, Vec<Installed>> = HashMap::new();
        for stanza in text.split("\n\n") {
            let (mut name, mut arch, mut version, mut status) = ("", "", "", "");
            for line in stanza.lines() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    continue; // continuation of a multi-line field
                }
                if let Some((k, v)) = line.split_once(':') {
                    let v = v.trim();
                    match k {
                        "Package" => name = v,
                        "Architecture" => arch = v,
                        "Version" => version = v,
                        "Status" => status = v,
                        _ => {}
                    }
                }
            }
            if !name.is_empty() {
                packages
                    .entry(name.to_string())
                    .or_default()
                    .push(Installed {
                        name: name.to_string(),
                        arch: arch.to_string(),
                        version: version.to_string(),
                        status: status.to_string(),
                    });
            }
        }
        Db { packages }
    }

    /// The record for `spec` (`name` or `name:arch`): an installed one if any.
    pub fn find(&self, spec: &str) -> Option<&Installed> {
        let (name, arch) = match spec.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (spec, None),
        };
        let records = self.packages.get(name)?;
        let matching = records
            .iter()
            .filter(|r| arch.is_none_or(|a| r.arch == a || r.arch == "all"));
        let mut best = None;
        for r in matching {
            if r.is_installed() {
                return Some(r);
            }
            best.get_or_insert(r);
        }
        best
    }
}

type Cache = Mutex<HashMap<PathBuf, (SystemTime, Arc<Db>)>>;

/// The database under the probe's root, parsed once per change of the file.
pub fn read(host: &Probe) -> Result<Arc<Db>, HostError> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let status = Path::new("/var/lib/dpkg/status");
    let path = host.real(status);
    let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
    let mtime = host
        .metadata(status)?
        .ok_or_else(missing)
        .and_then(|m| m.modified())
        .map_err(|e| HostError::new("read", path.clone(), e))?;
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(c) = cache.lock() {
        if let Some((t, db)) = c.get(&path) {
            if *t == mtime {
                return Ok(db.clone());
            }
        }
    }
    // A database of every package Debian has is tens of MiB; a gigabyte is not a database.
    let bytes = host
        .read_limited(status, 1 << 30)?
        .ok_or_else(|| HostError::new("read", path.clone(), missing()))?;
    let db = Arc::new(Db::parse(&String::from_utf8_lossy(&bytes)));
    if let Ok(mut c) = cache.lock() {
        c.insert(path, (mtime, db.clone()));
    }
    Ok(db)
}

/// Whether `version` matches `pattern`: exact, or a glob with `*` (`5:27.*`).
pub fn version_matches(pattern: &str, version: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == version;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = version;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: hello\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: 2.10-3\nDescription: x\n long text\n\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\nPackage: broken\nStatus: install reinstreq half-installed\nArchitecture: all\nVersion: 0.1\n";

    #[test]
    fn states_are_read_exactly() {
        let db = Db::parse(STATUS);
        assert!(db.find("hello").is_some_and(Installed::is_installed));
        assert_eq!(
            db.find("hello:amd64").map(|r| r.version.as_str()),
            Some("2.10-3")
        );
        assert_eq!(db.find("gone").map(Installed::state), Some("config-files"));
        assert_eq!(
            db.find("broken").map(Installed::state),
            Some("half-installed")
        );
        assert!(db.find("absent").is_none());
    }

    #[test]
    fn version_globs() {
        assert!(version_matches("5:27.*", "5:27.3.1-1~debian.12~bookworm"));
        assert!(!version_matches("5:27.*", "5:28.0.0-1"));
        assert!(version_matches("2.10-3", "2.10-3"));
        assert!(version_matches("*bookworm*", "1.0~bookworm1"));
    }
}
