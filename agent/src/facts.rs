//! Facts about the host that templates see as `facts.*`. Under `--root`, the OS facts come from
//! the root's files (`/etc/os-release`, `/etc/hostname`), so a manifest renders for the system
//! being prepared, not for the machine preparing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Facts {
    pub os: OsFacts,
    /// Debian architecture name: amd64, arm64, armhf, i386, …
    pub arch: String,
    pub hostname: String,
    pub cpus: usize,
    pub memory_mb: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct OsFacts {
    pub id: String,
    pub version_id: String,
    pub codename: String,
    pub pretty_name: String,
}

impl Facts {
    pub fn gather(root: &Path) -> Facts {
        Facts::gather_reporting(root).0
    }

    /// The facts, and what could not be read (for a warning: under `--root`, a root without
    /// `etc/os-release` or `etc/hostname` leaves those facts undefined, not empty).
    ///
    /// Gathered once per root in a process: a run's facts are one snapshot, whether it loads its
    /// manifest once or twice (a freshly stored secret), and the fuzzer loads it a million
    /// times.
    pub fn gather_reporting(root: &Path) -> (Facts, Vec<String>) {
        type Seen = Vec<(PathBuf, (Facts, Vec<String>))>;
        static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, known)) = seen.iter().find(|(r, _)| r == root) {
            return known.clone();
        }
        let gathered = Facts::gather_now(root);
        seen.push((root.to_path_buf(), gathered.clone()));
        gathered
    }

    fn gather_now(root: &Path) -> (Facts, Vec<String>) {
        // Through the probe: an image's `etc/hostname -> /etc/shadow` is read inside the root
        // (or refused), never from the machine preparing it.
        let probe = tend_resources::Probe::new(root, root);
        let read = |p: &str| {
            probe
                .read_limited(Path::new(p), 1 << 20)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let mut missing = Vec::new();
        let os_release = read("/etc/os-release")
            .or_else(|| read("/usr/lib/os-release"))
            .unwrap_or_else(|| {
                missing.push(format!(
                    "{} (facts.os.*)",
                    root.join("etc/os-release").display()
                ));
                String::new()
            });
        let uname = nix::sys::utsname::uname().ok();
        let machine = uname
            .as_ref()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_default();
        let hostname = if root == Path::new("/") {
            uname
                .as_ref()
                .map(|u| u.nodename().to_string_lossy().into_owned())
        } else {
            read("/etc/hostname").map(|s| s.trim().to_string())
        }
        .unwrap_or_else(|| {
            missing.push(format!(
                "{} (facts.hostname)",
                root.join("etc/hostname").display()
            ));
            String::new()
        });
        let facts = Facts {
            os: parse_os_release(&os_release),
            arch: debian_arch(&machine).to_string(),
            hostname,
            cpus: tend_resources::process::cpus(),
            memory_mb: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| mem_total_kb(&m))
                .map_or(0, |kb| kb / 1024),
        };
        (facts, missing)
    }

    /// What templates see: every fact that has a value. An empty one is left out, so a template
    /// that uses it fails as an undefined name would, instead of rendering an empty string.
    pub fn template_value(&self) -> serde_json::Value {
        fn prune(v: serde_json::Value) -> Option<serde_json::Value> {
            match v {
                serde_json::Value::String(s) if s.is_empty() => None,
                serde_json::Value::Object(m) => Some(serde_json::Value::Object(
                    m.into_iter()
                        .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                        .collect(),
                )),
                other => Some(other),
            }
        }
        prune(serde_json::to_value(self).unwrap_or_default()).unwrap_or_default()
    }
}

pub fn parse_os_release(text: &str) -> OsFacts {
    let map: BTreeMap<&str, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect();
    let get = |k: &str| map.get(k).cloned().unwrap_or_default();
    let codename = map
        .get("VERSION_CODENAME")
        .or_else(|| map.get("UBUNTU_CODENAME"))
        .cloned()
        .unwrap_or_default();
    OsFacts {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        codename,
        pretty_name: get("PRETTY_NAME"),
    }
}

/// The kernel's machine name in Debian's architecture naming (what apt sources use).
pub fn debian_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv6l" => "armhf",
        "i386" | "i486" | "i586" | "i686" => "i386",
        "ppc64le" => "ppc64el",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

fn mem_total_kb(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_of_debian_12() {
        let os = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        assert_eq!(
            (os.id.as_str(), os.version_id.as_str(), os.codename.as_str()),
            ("debian", "12", "bookworm")
        );
    }

    #[test]
    fn ubuntu_codename_falls_back() {
        let os = parse_os_release("ID=ubuntu\nUBUNTU_CODENAME=noble\n");
        assert_eq!(os.codename, "noble");
    }

    #[test]
    fn arch_in_debian_naming() {
        assert_eq!(debian_arch("x86_64"), "amd64");
        assert_eq!(debian_arch("aarch64"), "arm64");
    }
}
