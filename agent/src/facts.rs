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
    /// The fully qualified name: the hostname when it has a dot, else the first dotted name
    /// `/etc/hosts` gives it.
    pub fqdn: String,
    /// `/etc/machine-id` (32 hex digits), when there is one.
    pub machine_id: String,
    /// The running kernel's release (not under `--root`: the image's kernel is not running).
    pub kernel: String,
    /// `container`, `vm` or `none`, as systemd-detect-virt would say it, read without running
    /// it (not under `--root`).
    pub virtualization: String,
    pub cpus: usize,
    pub memory_mb: u64,
    /// Network interfaces (not under `--root`): name → `{ ipv4 = [...], ipv6 = [...] }`.
    pub interfaces: BTreeMap<String, Addresses>,
    /// The first IPv4 address of the interface the default route leaves by (not under `--root`).
    pub ipv4: String,
    /// The first global IPv6 address of the interface the IPv6 default route leaves by.
    pub ipv6: String,
    /// Every `/etc/tend/facts.d/*.toml`, merged in name order: the place a provisioning step
    /// writes `role = "web"`. Trusted as `pull.toml` is (root's, writable by nobody else, no
    /// symlink); a file that is not is skipped with a warning.
    pub local: serde_json::Value,
}

/// One interface's addresses, as text.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Addresses {
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
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
        let live = root == Path::new("/");
        let machine_id = read("/etc/machine-id")
            .map(|s| s.trim().to_string())
            .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_default();
        let fqdn = fqdn(&hostname, read("/etc/hosts").as_deref());
        let kernel = if live {
            uname
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let virtualization = if live {
            virtualization().to_string()
        } else {
            String::new()
        };
        let local = local_facts(&probe, &mut missing);
        let interfaces = if live { interfaces() } else { BTreeMap::new() };
        // IPv4: destination 0.0.0.0; IPv6: destination ::/0 (the interface is the last column).
        let default_v4 = live
            .then(|| default_route("/proc/net/route", 0, &[(1, "00000000")]))
            .flatten();
        let default_v6 = live
            .then(|| {
                default_route(
                    "/proc/net/ipv6_route",
                    9,
                    &[(0, "00000000000000000000000000000000"), (1, "00")],
                )
            })
            .flatten();
        let first = |iface: Option<String>, v6: bool| {
            iface
                .and_then(|i| interfaces.get(&i))
                .and_then(|a| {
                    if v6 {
                        a.ipv6.iter().find(|x| !x.starts_with("fe80")).cloned()
                    } else {
                        a.ipv4.first().cloned()
                    }
                })
                .unwrap_or_default()
        };
        let ipv4 = first(default_v4, false);
        let ipv6 = first(default_v6, true);
        let facts = Facts {
            os: parse_os_release(&os_release),
            arch: debian_arch(&machine).to_string(),
            fqdn,
            machine_id,
            kernel,
            virtualization,
            local,
            ipv4,
            ipv6,
            interfaces,
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

/// The fully qualified name of `hostname`: itself when dotted, else the first dotted name of an
/// `/etc/hosts` line that lists it (as `hostname -f` finds it through files); the hostname
/// when none does.
pub(crate) fn fqdn(hostname: &str, hosts: Option<&str>) -> String {
    if hostname.contains('.') || hostname.is_empty() {
        return hostname.to_string();
    }
    hosts
        .into_iter()
        .flat_map(str::lines)
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let names: Vec<&str> = l.split_whitespace().skip(1).collect();
            let lists_it = names
                .iter()
                .any(|n| *n == hostname || n.split('.').next() == Some(hostname));
            lists_it
                .then(|| names.into_iter().find(|n| n.contains('.')))
                .flatten()
        })
        .next()
        .map_or_else(|| hostname.to_string(), str::to_string)
}

/// Every interface's addresses (getifaddrs, in-process), loopback left out.
fn interfaces() -> BTreeMap<String, Addresses> {
    let mut out: BTreeMap<String, Addresses> = BTreeMap::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for a in addrs {
        if a.interface_name == "lo" {
            continue;
        }
        let Some(addr) = a.address else { continue };
        let entry = out.entry(a.interface_name.clone()).or_default();
        if let Some(v4) = addr.as_sockaddr_in() {
            entry.ipv4.push(v4.ip().to_string());
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            entry.ipv6.push(v6.ip().to_string());
        }
    }
    out
}

/// The interface of the default route in a `/proc/net` route table: the first row whose columns
/// `zero` (index, text) all match, its interface in column `iface_col`.
fn default_route(file: &str, iface_col: usize, zero: &[(usize, &str)]) -> Option<String> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        zero.iter()
            .all(|(i, z)| cols.get(*i) == Some(z))
            .then(|| cols.get(iface_col).map(|s| s.to_string()))
            .flatten()
            .filter(|i| i != "lo")
    })
}

/// `container`, `vm` or `none`, from what systemd-detect-virt reads first.
fn virtualization() -> &'static str {
    let exists = |p: &str| Path::new(p).exists();
    let container = exists("/.dockerenv")
        || exists("/run/.containerenv")
        || exists("/run/systemd/container")
        || std::fs::read("/proc/1/environ")
            .map(|e| e.split(|b| *b == 0).any(|v| v.starts_with(b"container=")))
            .unwrap_or(false);
    if container {
        return "container";
    }
    let hypervisor = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "hypervisor"))
        })
        .unwrap_or(false);
    if hypervisor || exists("/sys/hypervisor/type") {
        "vm"
    } else {
        "none"
    }
}

/// The directory of local facts, inside the root.
pub(crate) const LOCAL_FACTS: &str = "/etc/tend/facts.d";

/// `/etc/tend/facts.d/*.toml`, merged in name order (a later file's keys win, tables merged).
/// The directory is opened once and judged by the opened directory, each file is opened once
/// relative to it (no link followed, no wait on a FIFO) and judged by the opened file: a
/// directory or file another user could change is skipped, with a warning, as a whole.
fn local_facts(probe: &tend_resources::Probe, warnings: &mut Vec<String>) -> serde_json::Value {
    use rustix::fs::{openat, Mode, OFlags};
    let dir = Path::new(LOCAL_FACTS);
    let shown_dir = probe.real(dir).display().to_string();
    let mut merged = serde_json::Value::Object(Default::default());
    let Ok(Some(dir_fd)) = probe.open_dir(dir) else {
        return merged;
    };
    // Readable (the probe's handle may be a path-only one), still the directory checked.
    let Ok(dir_file) = openat(
        &dir_fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(std::fs::File::from) else {
        return merged;
    };
    match dir_file.metadata() {
        Ok(m) => {
            if let Some(who) = crate::state::changeable_by_others(&m) {
                warnings.push(format!(
                    "{shown_dir} (facts.local: skipped, the directory is {who}; local facts are trusted only from a directory nobody else can change)"
                ));
                return merged;
            }
        }
        Err(_) => return merged,
    }
    let Ok(entries) = rustix::fs::Dir::read_from(&dir_file) else {
        return merged;
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n.ends_with(".toml") && !n.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        let shown = format!("{shown_dir}/{name}");
        let opened = openat(
            &dir_file,
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let file = match opened {
            Ok(fd) => std::fs::File::from(fd),
            Err(rustix::io::Errno::NOENT) => continue,
            Err(rustix::io::Errno::LOOP) => {
                warnings.push(format!(
                    "{shown} (facts.local: skipped, it is a symlink; local facts are trusted only as root's files nobody else can write)"
                ));
                continue;
            }
            Err(e) => {
                warnings.push(format!(
                    "{shown} (facts.local: skipped, cannot open it: {e})"
                ));
                continue;
            }
        };
        let text = match trusted_text(&file) {
            Ok(t) => t,
            Err(why) => {
                warnings.push(format!(
                    "{shown} (facts.local: skipped, it is {why}; local facts are trusted only as root's files nobody else can write)"
                ));
                continue;
            }
        };
        match text.parse::<toml::Table>() {
            Ok(t) => merge(
                &mut merged,
                serde_json::to_value(t).unwrap_or(serde_json::Value::Null),
            ),
            Err(e) => warnings.push(format!(
                "{shown} (facts.local: skipped, not TOML: {})",
                e.message()
            )),
        }
    }
    merged
}

/// The text of an opened local facts file, if it is a regular file of root's (or tend's user)
/// that nobody else can write, of at most 1 MiB; else why not.
fn trusted_text(file: &std::fs::File) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    use tend_resources::host::Unread;
    const MAX: u64 = 1 << 20;
    let (m, bytes) = tend_resources::host::read_opened(file, MAX).map_err(|why| match why {
        Unread::Open(e) | Unread::Read(e) => e.to_string(),
        Unread::Link => "a symlink".to_string(),
        Unread::NotRegular => "not a regular file".to_string(),
        Unread::TooLarge => format!("larger than {} MiB", MAX >> 20),
    })?;
    if m.uid() != 0 && m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!("owned by uid {}", m.uid()));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by others (mode {:04o})",
            m.mode() & 0o7777
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())
}

/// `over` merged into `base`: tables deeply, anything else replaced.
pub(crate) fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

pub(crate) fn parse_os_release(text: &str) -> OsFacts {
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
pub(crate) fn debian_arch(machine: &str) -> &str {
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
