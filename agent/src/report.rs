//! What a run found and did, as data: the JSON report (schema in `docs/report.md`), the state
//! file `last-run.json`, Prometheus textfile metrics, and the exit code.
//!
//! Secrets are scrubbed from the serialized text as a last line of defence: a value produced
//! by `secret()` never leaves the process, even through a field no provider marked sensitive.

use serde::Serialize;
use tend_resources::Change;

use crate::secrets::Redactor;

/// Version of the JSON report; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Plan,
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The host matches the manifest.
    InSync,
    /// Plan: apply would change this.
    WouldChange,
    /// Plan: cannot be checked until a dependency applies (an honest unknown).
    MayChange,
    /// Apply: changed, and verified.
    Changed,
    /// Check, apply, verification or refresh failed.
    Failed,
    /// Not run because a dependency failed or was skipped.
    Skipped,
    /// Drift in a dependency outside `--only`: checked, not applied.
    NotApplied,
    /// Outside `--only`, or `when` is false.
    Excluded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshStatus {
    WouldRun,
    Ran,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refresh {
    pub notified_by: Vec<String>,
    pub status: RefreshStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceReport {
    pub address: String,
    pub kind: String,
    pub name: String,
    pub status: Status,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the check read for an audit (a certificate's names, issuer, days left).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub observed: std::collections::BTreeMap<String, serde_json::Value>,
    pub duration_ms: u64,
}

impl ResourceReport {
    pub fn new(address: &str, kind: &str, name: &str, status: Status) -> ResourceReport {
        ResourceReport {
            address: address.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            status,
            changes: Vec::new(),
            error: None,
            reason: None,
            refresh: None,
            backups: Vec::new(),
            notes: Vec::new(),
            observed: Default::default(),
            duration_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub in_sync: usize,
    pub would_change: usize,
    pub may_change: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_applied: usize,
    pub excluded: usize,
    pub refreshes: usize,
}

impl Summary {
    pub fn of(resources: &[ResourceReport]) -> Summary {
        let mut s = Summary {
            total: resources.len(),
            ..Summary::default()
        };
        for r in resources {
            match r.status {
                Status::InSync => s.in_sync += 1,
                Status::WouldChange => s.would_change += 1,
                Status::MayChange => s.may_change += 1,
                Status::Changed => s.changed += 1,
                Status::Failed => s.failed += 1,
                Status::Skipped => s.skipped += 1,
                Status::NotApplied => s.not_applied += 1,
                Status::Excluded => s.excluded += 1,
            }
            if r.refresh
                .as_ref()
                .is_some_and(|f| f.status != RefreshStatus::Failed)
            {
                s.refreshes += 1;
            }
        }
        s
    }

    /// Puppet's detailed exit codes: 0 nothing, 2 changes (or drift), 4 failures, 6 both.
    pub fn exit_code(&self) -> i32 {
        let changes =
            self.would_change + self.may_change + self.changed + self.not_applied + self.refreshes
                > 0;
        let failures = self.failed > 0;
        i32::from(changes) * 2 + i32::from(failures) * 4
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestInfo {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tend_version: &'static str,
    pub mode: Mode,
    pub host: String,
    pub root: String,
    pub manifest: ManifestInfo,
    pub started_at: String,
    pub duration_ms: u64,
    pub exit_code: i32,
    pub summary: Summary,
    pub resources: Vec<ResourceReport>,
}

impl Report {
    /// The report as JSON text, every known secret scrubbed.
    pub fn to_json(&self, redactor: &Redactor) -> String {
        let text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        redactor.scrub(&text) + "\n"
    }

    /// Prometheus textfile-collector metrics.
    pub fn to_metrics(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP tend_{name} {help}\n# TYPE tend_{name} gauge\ntend_{name} {value}\n"
            ));
        };
        gauge(
            "last_run_timestamp_seconds",
            "When the last run started (Unix time).",
            unix_now().to_string(),
        );
        gauge(
            "last_run_duration_seconds",
            "How long the last run took.",
            format!("{:.3}", self.duration_ms as f64 / 1000.0),
        );
        gauge(
            "last_run_exit_code",
            "Exit code of the last run (0, 2, 4 or 6).",
            self.exit_code.to_string(),
        );
        gauge(
            "resources",
            "Resources in the manifest.",
            s.total.to_string(),
        );
        gauge(
            "resources_changed",
            "Resources changed by the last run.",
            s.changed.to_string(),
        );
        gauge(
            "resources_failed",
            "Resources that failed in the last run.",
            s.failed.to_string(),
        );
        gauge(
            "resources_skipped",
            "Resources skipped because a dependency failed.",
            s.skipped.to_string(),
        );
        gauge(
            "resources_in_sync",
            "Resources already in sync.",
            s.in_sync.to_string(),
        );
        out
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(statuses: &[Status]) -> Summary {
        let rs: Vec<_> = statuses
            .iter()
            .map(|s| ResourceReport::new("file.a", "file", "a", *s))
            .collect();
        Summary::of(&rs)
    }

    #[test]
    fn exit_codes_follow_puppet() {
        assert_eq!(with(&[Status::InSync, Status::Excluded]).exit_code(), 0);
        assert_eq!(with(&[Status::Changed]).exit_code(), 2);
        assert_eq!(with(&[Status::WouldChange]).exit_code(), 2);
        assert_eq!(with(&[Status::MayChange]).exit_code(), 2);
        assert_eq!(with(&[Status::Failed, Status::Skipped]).exit_code(), 4);
        assert_eq!(with(&[Status::Failed, Status::Changed]).exit_code(), 6);
    }
}
