//! What a fleet host remembers between pulls (`STATE/pull/state.json`, private): the last commit
//! it applied (the base of the descendant check, and what it falls back to), when it first saw
//! each commit (the clock of the staged rollout), and when it last reached the server.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// First sightings kept: enough for any rollout in flight.
const MAX_SEEN: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Record {
    /// The commit the last apply loaded its manifest from.
    #[serde(default)]
    pub applied: Option<String>,
    /// Who signed it (verified), when signatures were required.
    #[serde(default)]
    pub applied_signer: Option<String>,
    /// Commit → when this host first fetched it (Unix time).
    #[serde(default)]
    pub seen: BTreeMap<String, u64>,
    /// When the server was last reached (Unix time); 0 never.
    #[serde(default)]
    pub last_fetch: u64,
}

impl Record {
    pub(super) fn load(dir: &Path) -> Result<Record, String> {
        let path = dir.join("state.json");
        match tend_resources::host::read_private_file(&path) {
            Ok(None) => Ok(Record::default()),
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is damaged ({e}); move it away to start over (the next pull applies the current commit)",
                    path.display()
                )
            }),
            Err(e) => Err(e.to_string()),
        }
    }

    pub(super) fn save(&mut self, dir: &Path) -> Result<(), String> {
        if self.seen.len() > MAX_SEEN {
            let mut by_time: Vec<(u64, String)> =
                self.seen.iter().map(|(c, t)| (*t, c.clone())).collect();
            by_time.sort();
            for (_, c) in by_time.iter().take(self.seen.len() - MAX_SEEN) {
                self.seen.remove(c);
            }
        }
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        crate::state::write_private(dir, "state.json", &json)
            .map_err(|e| format!("cannot record the pull in {}: {e}", dir.display()))
    }

    /// When this host first saw `commit`, recording now if it never did.
    pub(super) fn first_seen(&mut self, commit: &str, now: u64) -> u64 {
        *self.seen.entry(commit.to_string()).or_insert(now)
    }
}

/// This host's offset in a rollout window of `window` seconds: stable (a hash of its machine id,
/// the same id systemd derives its timer splay from), spread evenly across the fleet.
/// The offset, and what it was drawn from: `machine-id`, `hostname` (an image before its first
/// boot has no machine id), or `none` (neither: every such host shares offset 0 — said in the
/// report and on stderr, never silently).
pub(super) fn offset_from(root: &Path, window: u64) -> (u64, &'static str) {
    if window == 0 {
        return (0, "none");
    }
    // Read as every file of a root is: inside it, a regular file, bounded (a FIFO or
    // `/dev/zero` planted in an image must not hang or fill the run). No machine id (a golden
    // image before its first boot): the root's own hostname, never the build machine's.
    let probe = tend_resources::host::Probe::new(root, root.join("var/lib/tend"));
    let read = |path: &str| {
        probe
            .read_limited(Path::new(path), 4096)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let (id, from) = match read("/etc/machine-id") {
        Some(id) => (id, "machine-id"),
        None => match read("/etc/hostname").or_else(|| {
            (root == Path::new("/"))
                .then(|| nix::unistd::gethostname().ok())
                .flatten()
                .map(|h| h.to_string_lossy().into_owned())
        }) {
            Some(h) => (h, "hostname"),
            None => return (0, "none"),
        },
    };
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("tend-rollout:{id}").as_bytes());
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(n) % window, from)
}

/// Now, in Unix seconds. In a debug build (the test suite's) `TEND_NOW` replaces the clock, for
/// tests of staged rollouts; a release build — what the package ships — never reads it, so no
/// environment can make a pending commit eligible early or date a fetch in the future.
pub(super) fn now() -> u64 {
    if cfg!(debug_assertions) {
        if let Some(t) = std::env::var("TEND_NOW").ok().and_then(|s| s.parse().ok()) {
            return t;
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_in_the_window_and_spread_by_machine_id() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
            std::fs::write(dir.path().join("etc/machine-id"), format!("{i:032x}\n")).expect("id");
            let o = offset_from(dir.path(), 3600).0;
            assert!(o < 3600);
            assert_eq!(o, offset_from(dir.path(), 3600).0, "stable");
            seen.insert(o / 360);
        }
        // 200 hosts over ten 6-minute slices: every slice has some.
        assert_eq!(seen.len(), 10, "{seen:?}");
        assert_eq!(offset_from(Path::new("/nonexistent"), 0).0, 0);
        // No machine id (an image before its first boot): the root's hostname, said so.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/hostname"), "web-7\n").expect("hostname");
        let (o, from) = offset_from(dir.path(), 3600);
        assert_eq!(from, "hostname");
        std::fs::write(dir.path().join("etc/hostname"), "web-8\n").expect("hostname");
        assert_ne!(offset_from(dir.path(), 3600).0, o, "hosts apart by name");
        std::fs::remove_file(dir.path().join("etc/hostname")).expect("rm");
        assert_eq!(offset_from(dir.path(), 3600), (0, "none"));
    }
}
