//! `tend report fleet DIR...`: many hosts' JSON reports (`last-run.json`, `--report` files),
//! however they were collected (rsync, an object store sync, a log pipeline's file sink), read
//! into one view: a terminal table, JSON, or a self-contained static HTML page ([`page`]). No
//! server: the reports are the database.
//!
//! A report is read only if it is a regular file of at most 64 MiB, JSON, and of a schema this
//! tend knows; anything else is listed as refused with why. Per host the newest report counts.

pub(crate) mod page;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The largest report read.
const MAX_REPORT: u64 = 64 << 20;
/// How deep under each DIR reports are looked for (`DIR/HOST/last-run.json` is 1).
const MAX_DEPTH: usize = 4;

/// One host, as its newest report says.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Host {
    pub host: String,
    pub file: String,
    pub mode: String,
    pub exit_code: i64,
    pub started_at: String,
    /// Seconds since the run started (at reading time).
    pub age_seconds: u64,
    /// Older than `--stale-after`.
    pub stale: bool,
    pub policy_commit: Option<String>,
    /// Its policy commit is not the one most hosts run.
    pub old_policy: bool,
    pub counts: Counts,
    /// Every resource not in sync, as the report gives it (changes, diffs, errors).
    pub resources: Vec<serde_json::Value>,
    pub orphans: Vec<serde_json::Value>,
    /// Why the run could not start, when it could not.
    pub error: Option<String>,
}

/// A host's resources by outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Counts {
    pub total: u64,
    pub in_sync: u64,
    pub changed: u64,
    pub drift: u64,
    pub failed: u64,
    pub unknown: u64,
    pub orphans: u64,
}

/// A file that is not a report this tend can read, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refused {
    pub file: String,
    pub why: String,
}

/// The fleet as the reports say it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fleet {
    pub hosts: Vec<Host>,
    pub refused: Vec<Refused>,
    /// The policy commit most hosts run.
    pub policy_commit: Option<String>,
}

/// Every `*.json` under `dirs` (a file given directly is read as it is).
fn files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() && depth < MAX_DEPTH {
                walk(&p, depth + 1, out);
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        if d.is_file() {
            out.push(d.clone());
        } else {
            walk(d, 0, &mut out);
        }
    }
    out
}

/// Read the reports under `dirs`.
pub(crate) fn read(dirs: &[PathBuf], stale_after: Duration) -> Fleet {
    let now = SystemTime::now();
    let mut hosts: Vec<Host> = Vec::new();
    let mut refused = Vec::new();
    for f in files(dirs) {
        let shown = f.display().to_string();
        match read_one(&f, now, stale_after) {
            Ok(h) => match hosts.iter_mut().find(|x| x.host == h.host) {
                // The newest report of a host counts (its plan and its apply, or two copies).
                Some(x) if x.started_at < h.started_at => *x = h,
                Some(_) => {}
                None => hosts.push(h),
            },
            Err(why) => refused.push(Refused { file: shown, why }),
        }
    }
    // The commit most hosts run; a host on another is flagged.
    let mut by_commit: std::collections::BTreeMap<&str, usize> = Default::default();
    for h in &hosts {
        if let Some(c) = &h.policy_commit {
            *by_commit.entry(c.as_str()).or_default() += 1;
        }
    }
    let policy_commit = by_commit
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
        .map(|(c, _)| c.to_string());
    for h in &mut hosts {
        h.old_policy = matches!((&h.policy_commit, &policy_commit), (Some(a), Some(b)) if a != b);
    }
    hosts.sort_by(|a, b| {
        (b.counts.failed, b.counts.drift + b.counts.changed, &a.host).cmp(&(
            a.counts.failed,
            a.counts.drift + a.counts.changed,
            &b.host,
        ))
    });
    Fleet {
        hosts,
        refused,
        policy_commit,
    }
}

fn read_one(f: &Path, now: SystemTime, stale_after: Duration) -> Result<Host, String> {
    use tend_resources::host::Unread;
    // Opened once and judged by what was opened: a FIFO put among the reports is refused at
    // once (not waited on), a link is not followed.
    let (_, bytes) =
        tend_resources::host::read_unfollowed(f, MAX_REPORT).map_err(|why| match why {
            Unread::Open(e) | Unread::Read(e) => e.to_string(),
            Unread::Link => "a symlink (not followed)".to_string(),
            Unread::NotRegular => "not a regular file".to_string(),
            Unread::TooLarge => format!("larger than {} MiB", MAX_REPORT >> 20),
        })?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    let schema = v["schema_version"]
        .as_u64()
        .ok_or("not a tend report (no schema_version)")?;
    if schema > u64::from(crate::report::SCHEMA_VERSION) {
        return Err(format!(
            "written by a newer tend (report schema {schema}; this tend reads up to {})",
            crate::report::SCHEMA_VERSION
        ));
    }
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let started_at = text("started_at");
    let started = humantime::parse_rfc3339_weak(&started_at)
        .map_err(|e| format!("not a tend report (started_at {started_at:?}: {e})"))?;
    let age = now.duration_since(started).unwrap_or_default();
    let host = match text("host") {
        h if h.is_empty() => f.display().to_string(),
        h => h,
    };
    let resources: Vec<serde_json::Value> = v["resources"]
        .as_array()
        .ok_or("not a tend report (no resources)")?
        .iter()
        .filter(|r| !matches!(r["status"].as_str(), Some("in_sync" | "excluded")))
        .cloned()
        .collect();
    let s = &v["summary"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let orphans = v["orphans"].as_array().cloned().unwrap_or_default();
    let counts = Counts {
        total: n("total"),
        in_sync: n("in_sync"),
        changed: n("changed"),
        drift: n("would_change") + n("may_change"),
        failed: n("failed") + n("will_fail") + n("skipped"),
        unknown: n("unknown"),
        orphans: orphans.iter().filter(|o| o["state"] != "pruned").count() as u64,
    };
    Ok(Host {
        host,
        file: f.display().to_string(),
        mode: text("mode"),
        exit_code: v["exit_code"].as_i64().unwrap_or(-1),
        started_at,
        age_seconds: age.as_secs(),
        stale: age > stale_after,
        policy_commit: v["pull"]["applied"]["commit"].as_str().map(str::to_string),
        old_policy: false,
        counts,
        resources,
        orphans,
        error: v["error"].as_str().map(str::to_string),
    })
}

/// The terminal table.
pub(crate) fn table(fleet: &Fleet) -> String {
    let mut out = format!(
        "{:<32} {:<5} {:>4} {:>7} {:>5} {:>6} {:>7} {:>7} {:>8}  {}\n",
        "HOST", "MODE", "EXIT", "CHANGED", "DRIFT", "FAILED", "UNKNOWN", "ORPHANS", "AGE", "POLICY"
    );
    for h in &fleet.hosts {
        let mut age = humantime::format_duration(Duration::from_secs(h.age_seconds / 60 * 60))
            .to_string()
            .replace(' ', "");
        if h.age_seconds < 60 {
            age = "<1m".into();
        }
        if h.stale {
            age.push('!');
        }
        let commit = match &h.policy_commit {
            Some(c) => {
                let short = &c[..c.len().min(12)];
                if h.old_policy {
                    format!("{short} (old)")
                } else {
                    short.to_string()
                }
            }
            None => "-".into(),
        };
        out.push_str(&format!(
            "{:<32} {:<5} {:>4} {:>7} {:>5} {:>6} {:>7} {:>7} {:>8}  {}\n",
            crate::escape::line(&h.host),
            h.mode,
            h.exit_code,
            h.counts.changed,
            h.counts.drift,
            h.counts.failed,
            h.counts.unknown,
            h.counts.orphans,
            age,
            commit
        ));
    }
    for r in &fleet.refused {
        out.push_str(&format!(
            "refused {}: {}\n",
            crate::escape::line(&r.file),
            crate::escape::line(&r.why)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a collected directory may hold in place of a report: each refused at once, with why.
    #[test]
    fn a_fifo_or_a_link_in_place_of_a_report_is_refused_not_waited_on_or_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("web1.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let link = dir.path().join("web2.json");
        std::os::unix::fs::symlink("/etc/hostname", &link).expect("symlink");
        let now = SystemTime::now();
        let started = std::time::Instant::now();
        let why = read_one(&fifo, now, Duration::from_secs(60)).err();
        assert_eq!(why.as_deref(), Some("not a regular file"));
        assert!(started.elapsed() < Duration::from_secs(2));
        let why = read_one(&link, now, Duration::from_secs(60)).err();
        assert_eq!(why.as_deref(), Some("a symlink (not followed)"));
    }
}
