//! What a run found and did, as data: the JSON report (schema in `docs/report.md`), the state
//! file `last-run.json`, Prometheus textfile metrics, and the exit code.
//!
//! Secrets are scrubbed from the serialized text as a last line of defence: a value produced
//! by `secret()` never leaves the process, even through a field no provider marked sensitive.

use serde::Serialize;
use tend_resources::Change;

use crate::secrets::Redactor;

/// Version of the JSON report; bumped on any incompatible change. 2: `unknown` status and
/// `reason_class` (a check that could not be made is no longer "may change"), `interrupted`,
/// `error` (a run that could not start).
pub(crate) const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    Plan,
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// The host matches the manifest.
    InSync,
    /// Plan: apply would change this.
    WouldChange,
    /// Plan: cannot be checked until a dependency applies (an honest unknown).
    MayChange,
    /// Plan: could not be checked (a remote unreachable, a guard plan must not run). Not drift.
    Unknown,
    /// Apply: changed, and verified.
    Changed,
    /// Check, apply, verification or refresh failed.
    Failed,
    /// Plan: the host differs in a way apply cannot repair; apply would fail (the error says
    /// why). A failure for the exit code: an audit alerts on it.
    WillFail,
    /// Not run because a dependency failed or was skipped.
    Skipped,
    /// Drift in a dependency outside `--only`: checked, not applied.
    NotApplied,
    /// Outside `--only`, or `when` is false.
    Excluded,
}

/// Why a resource is not in sync, for machines: a fleet's drift count is `would_change` (and
/// perhaps `unknown_until_dependencies_apply`), never the classes that say a check could not be
/// made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReasonClass {
    /// Plan: the host differs; apply would change it.
    WouldChange,
    /// Plan: what it reads is managed by a dependency that would change first.
    UnknownUntilDependenciesApply,
    /// Plan: a remote did not answer.
    Unreachable,
    /// Plan: tend may not read what it must check (an audit run as a user other than root).
    Permission,
    /// Plan: a guard plan does not run.
    GuardNotRun,
    /// Apply: changed and verified.
    Changed,
    /// Check, apply, verification or refresh failed.
    Failed,
    /// A dependency failed or was skipped.
    DependencyFailed,
    /// Not started: the run was asked to stop.
    Interrupted,
    /// Drift in a dependency outside `--only`.
    OutsideOnly,
    /// Not selected by `--only`.
    NotSelected,
    /// `when` is false.
    WhenFalse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RefreshStatus {
    WouldRun,
    /// Owed only if a notifier that may change does change (plan).
    MayRun,
    Ran,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Refresh {
    pub notified_by: Vec<String>,
    pub status: RefreshStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ResourceReport {
    pub address: String,
    pub kind: String,
    pub name: String,
    pub status: Status,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is, for machines: `command`, `refused`, `invalid`,
    /// `docker`, `host`, `unreachable`, `missing`, `not_converged`, `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set on every resource that is not in sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_class: Option<ReasonClass>,
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
    /// Failed: why, and what kind of failure that is (`error_class`).
    pub(crate) fn fail(&mut self, error: String, class: &'static str) {
        self.status = Status::Failed;
        self.error = Some(error);
        self.error_class = Some(class);
    }

    pub(crate) fn new(address: &str, kind: &str, name: &str, status: Status) -> ResourceReport {
        ResourceReport {
            address: address.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            status,
            changes: Vec::new(),
            error: None,
            error_class: None,
            reason: None,
            reason_class: None,
            refresh: None,
            backups: Vec::new(),
            notes: Vec::new(),
            observed: Default::default(),
            duration_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    pub total: usize,
    pub in_sync: usize,
    pub would_change: usize,
    pub may_change: usize,
    pub unknown: usize,
    pub changed: usize,
    pub failed: usize,
    pub will_fail: usize,
    pub skipped: usize,
    pub not_applied: usize,
    pub excluded: usize,
    pub refreshes: usize,
}

impl Summary {
    pub(crate) fn of(resources: &[ResourceReport]) -> Summary {
        let mut s = Summary {
            total: resources.len(),
            ..Summary::default()
        };
        for r in resources {
            match r.status {
                Status::InSync => s.in_sync += 1,
                Status::WouldChange => s.would_change += 1,
                Status::MayChange => s.may_change += 1,
                Status::Unknown => s.unknown += 1,
                Status::Changed => s.changed += 1,
                Status::Failed => s.failed += 1,
                Status::WillFail => s.will_fail += 1,
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
    pub(crate) fn exit_code(&self) -> i32 {
        let changes =
            self.would_change + self.may_change + self.changed + self.not_applied + self.refreshes
                > 0;
        let failures = self.failed + self.will_fail > 0;
        i32::from(changes) * 2 + i32::from(failures) * 4
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ManifestInfo {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub schema_version: u32,
    /// The run was asked to stop (SIGTERM, SIGINT, SIGHUP) and did not start everything.
    pub interrupted: bool,
    /// Why the run could not start (then `resources` is empty and `exit_code` 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure to start `error` is, for machines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<&'static str>,
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
    /// `tend pull`: which commit the run converged to, which is pending, which was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullStatus>,
    /// The run was not root's: what it could not read is `unknown` (reason class
    /// `permission`), and a plan then uses no state directory it cannot trust.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unprivileged: bool,
    /// Resources an earlier apply managed that the manifest no longer declares: left in place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<crate::orphans::Managed>,
}

/// One commit of the policy repository, as the report names it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyCommit {
    pub commit: String,
    /// Its first line.
    pub summary: String,
    /// The principals of the key that signed it (verified), when signatures are required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Its committer time (Unix seconds): how old the policy is, whatever the server replays.
    pub committed_unix: i64,
}

/// A fetched commit this host waits for (staged rollout).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PendingCommit {
    pub commit: String,
    pub summary: String,
    /// When it becomes eligible here (RFC 3339) and in how many seconds.
    pub eligible_at: String,
    pub eligible_at_unix: u64,
    pub eligible_in_seconds: u64,
}

/// A fetched commit that was not accepted, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RefusedCommit {
    pub commit: String,
    pub reason: String,
}

/// What `tend pull` fetched and decided, in the report (`pull`) and the metrics (`tend_pull_*`).
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct PullStatus {
    /// The server (credentials redacted) and the ref.
    pub url: String,
    pub reference: String,
    /// The commit this run loaded its manifest from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<PolicyCommit>,
    /// Where the ref pointed on the server this run (absent when it was not reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingCommit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedCommit>,
    /// The server was not reached: the run converged to the last good policy.
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_error: Option<String>,
    /// Seconds since the server was last reached (0 when it was, this run).
    pub policy_age_seconds: u64,
    /// When the server was last reached (Unix time), 0 never.
    pub last_fetch_unix: u64,
    /// Bytes the fetch received (0: nothing had changed).
    pub fetched_bytes: usize,
    /// No signature was verified (`--insecure-unsigned` / `allow_unsigned`).
    pub unverified: bool,
    /// What this host's rollout offset was drawn from: `machine-id`, `hostname` (no machine id
    /// yet), `rollout_offset` (set), `none` (neither: offset 0, as every such host's).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rollout_offset_from: String,
}

impl PullStatus {
    /// A refused commit or an unreachable server: the run sets the failure bit, whatever it
    /// converged.
    pub(crate) fn failed(&self) -> bool {
        self.stale || self.refused.is_some()
    }
}

impl Report {
    /// The report as JSON text, every known secret scrubbed.
    pub(crate) fn to_json(&self, redactor: &Redactor) -> String {
        let text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        redactor.scrub(&text) + "\n"
    }

    /// Prometheus textfile-collector metrics (node_exporter), for plan and apply alike: an audit
    /// on a timer is as visible as a converging run. Every gauge carries `mode="plan"` or
    /// `mode="apply"`, so one host may export both (to two files).
    pub(crate) fn to_metrics(&self) -> String {
        let s = &self.summary;
        let mode = match self.mode {
            Mode::Plan => "plan",
            Mode::Apply => "apply",
        };
        let mut out = String::new();
        let mut family = |name: &str, help: &str, samples: Vec<(String, String)>| {
            out.push_str(&format!(
                "# HELP tend_{name} {help}\n# TYPE tend_{name} gauge\n"
            ));
            for (labels, value) in samples {
                out.push_str(&format!("tend_{name}{{mode=\"{mode}\"{labels}}} {value}\n"));
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        family(
            "last_run_timestamp_seconds",
            "When the last run started (Unix time).",
            one(unix_now().to_string()),
        );
        family(
            "last_run_duration_seconds",
            "How long the last run took.",
            one(format!("{:.3}", self.duration_ms as f64 / 1000.0)),
        );
        family(
            "last_run_exit_code",
            "Exit code of the last run (0 nothing to do, 1 could not start, 2 changes or drift, 4 failures, 6 both).",
            one(self.exit_code.to_string()),
        );
        family(
            "last_run_interrupted",
            "1 when the last run was asked to stop before it finished.",
            one(u8::from(self.interrupted).to_string()),
        );
        family(
            "last_run_started",
            "0 when the last run could not start (bad manifest, arguments, lock held).",
            one(u8::from(self.error.is_none()).to_string()),
        );
        family(
            "resources",
            "Resources in the manifest.",
            one(s.total.to_string()),
        );
        let statuses = [
            ("in_sync", s.in_sync),
            ("would_change", s.would_change),
            ("may_change", s.may_change),
            ("unknown", s.unknown),
            ("changed", s.changed),
            ("failed", s.failed),
            ("will_fail", s.will_fail),
            ("skipped", s.skipped),
            ("not_applied", s.not_applied),
            ("excluded", s.excluded),
        ];
        family(
            "resources_by_status",
            "Resources by outcome of the last run (would_change: drift a plan found; unknown: not checkable, not drift).",
            statuses
                .iter()
                .map(|(st, n)| (format!(",status=\"{st}\""), n.to_string()))
                .collect(),
        );
        // Puppet users asked for this as `noop_pending`: what would change, by kind.
        let mut pending: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &self.resources {
            if matches!(r.status, Status::WouldChange | Status::MayChange) {
                *pending.entry(r.kind.as_str()).or_default() += 1;
            }
        }
        family(
            "pending_changes",
            "Resources a plan says would (or may) change, by kind.",
            pending
                .iter()
                .map(|(k, n)| (format!(",kind=\"{k}\""), n.to_string()))
                .collect(),
        );
        // What drifts where: a series per resource not in sync (at most MAX_RESOURCE_SERIES, so a
        // host with thousands of drifting files cannot flood Prometheus), the rest counted.
        let off: Vec<&ResourceReport> = self
            .resources
            .iter()
            .filter(|r| !matches!(r.status, Status::InSync | Status::Excluded))
            .collect();
        family(
            "resource_status",
            "1 for each resource not in sync, by status (at most 200 series; the rest in tend_resources_unlisted).",
            off.iter()
                .take(MAX_RESOURCE_SERIES)
                .map(|r| {
                    (
                        format!(
                            ",resource=\"{}\",kind=\"{}\",status=\"{}\"",
                            label(&r.address),
                            label(&r.kind),
                            word(&r.status)
                        ),
                        "1".to_string(),
                    )
                })
                .collect(),
        );
        family(
            "orphaned_resources",
            "Resources an earlier apply managed that the manifest no longer declares (left in place).",
            one(self
                .orphans
                .iter()
                .filter(|o| o.state != crate::orphans::State::Pruned)
                .count().to_string()),
        );
        family(
            "resources_unlisted",
            "Resources not in sync beyond the ones tend_resource_status lists.",
            one(off.len().saturating_sub(MAX_RESOURCE_SERIES).to_string()),
        );
        let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
        for r in self.resources.iter().filter(|r| {
            matches!(
                r.status,
                Status::Failed | Status::WillFail | Status::Skipped
            )
        }) {
            let class = r
                .reason_class
                .map_or_else(|| "failed".to_string(), |c| word(&c));
            *reasons.entry(class).or_default() += 1;
        }
        let prune_failed = self
            .orphans
            .iter()
            .filter(|o| o.state == crate::orphans::State::PruneFailed)
            .count();
        if prune_failed > 0 {
            *reasons.entry("prune_failed".into()).or_default() += prune_failed;
        }
        if let Some(p) = &self.pull {
            if p.refused.is_some() {
                *reasons.entry("pull_refused".into()).or_default() += 1;
            }
            if p.stale {
                *reasons.entry("pull_unreachable".into()).or_default() += 1;
            }
        }
        family(
            "last_failure_reason",
            "Why the last run failed: resources (and pull decisions) by reason class.",
            reasons
                .iter()
                .map(|(c, n)| (format!(",reason_class=\"{c}\""), n.to_string()))
                .collect(),
        );
        if let Some(p) = &self.pull {
            family(
                "pull_fetch_success",
                "1 when the last pull reached the policy server.",
                one(u8::from(!p.stale).to_string()),
            );
            family(
                "pull_last_fetch_timestamp_seconds",
                "When the policy server was last reached (Unix time; 0 never).",
                one(p.last_fetch_unix.to_string()),
            );
            family(
                "pull_policy_age_seconds",
                "Seconds since the policy server was last reached (how stale the policy may be).",
                one(p.policy_age_seconds.to_string()),
            );
            family(
                "pull_verification_failed",
                "1 when the fetched commit was refused (unsigned, wrongly signed, or a rollback).",
                one(u8::from(p.refused.is_some()).to_string()),
            );
            family(
                "pull_commit_timestamp_seconds",
                "Committer time of the applied policy commit (a replayed or frozen policy stops growing newer).",
                one(p.applied.as_ref().map_or(0, |c| c.committed_unix).to_string()),
            );
            family(
                "pull_unverified",
                "1 when the host runs policy without verifying signatures (--insecure-unsigned).",
                one(u8::from(p.unverified).to_string()),
            );
            family(
                "pull_fetch_bytes",
                "Bytes the last fetch received (0: nothing had changed).",
                one(p.fetched_bytes.to_string()),
            );
            let mut commits = Vec::new();
            let mut info = |role: &str, commit: &str| {
                commits.push((
                    format!(",role=\"{role}\",commit=\"{commit}\""),
                    "1".to_string(),
                ));
            };
            if let Some(c) = &p.applied {
                info("applied", &c.commit);
            }
            if let Some(c) = &p.fetched {
                info("fetched", c);
            }
            if let Some(c) = &p.pending {
                info("pending", &c.commit);
            }
            if let Some(c) = &p.refused {
                info("refused", &c.commit);
            }
            family(
                "pull_commit_info",
                "The policy commits of the last pull, by role: applied, fetched, pending (staged rollout), refused.",
                commits,
            );
            family(
                "pull_pending_eligible_timestamp_seconds",
                "When the pending commit becomes eligible on this host (Unix time; 0 none pending).",
                one(p.pending.as_ref().map_or(0, |c| c.eligible_at_unix).to_string()),
            );
        }
        out
    }
}

/// Series of `tend_resource_status` at most: the rest are counted in `tend_resources_unlisted`.
const MAX_RESOURCE_SERIES: usize = 200;

/// A Prometheus label value: backslash, double quote and line feed escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snake_case word a status or reason class serializes as.
pub(crate) fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
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
        assert_eq!(
            with(&[Status::WillFail, Status::WouldChange]).exit_code(),
            6
        );
    }

    #[test]
    fn metrics_name_what_drifts_where_within_a_bound() {
        let mut resources: Vec<ResourceReport> = (0..250)
            .map(|i| {
                ResourceReport::new(
                    &format!("file.f{i}"),
                    "file",
                    &format!("f{i}"),
                    Status::WouldChange,
                )
            })
            .collect();
        resources.push(ResourceReport::new("file.ok", "file", "ok", Status::InSync));
        let mut failed = ResourceReport::new("cert.web", "cert", "web", Status::WillFail);
        failed.reason_class = Some(ReasonClass::Failed);
        resources.insert(0, failed);
        let report = Report {
            schema_version: SCHEMA_VERSION,
            interrupted: false,
            error: None,
            error_class: None,
            tend_version: "0",
            mode: Mode::Plan,
            host: "h".into(),
            root: "/".into(),
            manifest: ManifestInfo {
                path: "/m".into(),
                sha256: String::new(),
            },
            started_at: String::new(),
            duration_ms: 1,
            exit_code: 6,
            summary: Summary::of(&resources),
            resources,
            pull: None,
            unprivileged: false,
            orphans: Vec::new(),
        };
        let text = report.to_metrics();
        let series = text
            .lines()
            .filter(|l| l.starts_with("tend_resource_status{"))
            .count();
        assert_eq!(series, MAX_RESOURCE_SERIES);
        assert!(text.contains(
            "tend_resource_status{mode=\"plan\",resource=\"cert.web\",kind=\"cert\",status=\"will_fail\"} 1"
        ));
        assert!(
            !text.contains("resource=\"file.ok\""),
            "in sync is not listed"
        );
        assert!(
            text.contains("tend_resources_unlisted{mode=\"plan\"} 51\n"),
            "{text}"
        );
        assert!(
            text.contains("tend_last_failure_reason{mode=\"plan\",reason_class=\"failed\"} 1\n")
        );
    }
}
