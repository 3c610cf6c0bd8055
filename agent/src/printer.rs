//! Human output: one line per resource that changes, fails or is skipped (in-sync ones too with
//! `-v`), its changes and diffs under it, and a summary line. Colour only on a terminal, never
//! with `NO_COLOR`. Results go to stdout; logs go to stderr through tracing.

use std::fmt::Write as _;

use crate::escape;

use crate::report::{Mode, RefreshStatus, Report, ResourceReport, Status};
use crate::secrets::Redactor;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    pub color: bool,
    pub verbose: bool,
    pub quiet: bool,
}

fn paint(style: &Style, code: &str, text: &str) -> String {
    if style.color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn marker(r: &ResourceReport) -> (&'static str, &'static str) {
    use tend_resources::Action;
    // From the changes' typed actions: a resource whose changes all create is `+`, all delete
    // is `-`; anything mixed or in place is `~`.
    let all = |a: Action| {
        !r.changes.is_empty()
            && r.changes
                .iter()
                .all(|c| c.action == a || c.action == Action::Note)
    };
    let creates = all(Action::Create) && r.changes.iter().any(|c| c.action == Action::Create);
    let removes = all(Action::Delete) && r.changes.iter().any(|c| c.action == Action::Delete);
    match r.status {
        Status::WouldChange | Status::Changed if creates => ("+", "32"),
        Status::WouldChange | Status::Changed if removes => ("-", "31"),
        Status::WouldChange | Status::Changed => ("~", "33"),
        Status::MayChange => ("?", "36"),
        Status::Unknown => ("?", "2"),
        Status::Failed | Status::WillFail => ("!", "31;1"),
        Status::Skipped => ("s", "35"),
        Status::NotApplied => ("~", "2"),
        Status::InSync => ("=", "2"),
        Status::Excluded => (" ", "2"),
    }
}

fn shown(r: &ResourceReport, style: &Style) -> bool {
    if style.quiet {
        return matches!(r.status, Status::Failed | Status::WillFail);
    }
    match r.status {
        Status::InSync if r.refresh.is_some() => true,
        Status::InSync | Status::Excluded => style.verbose,
        _ => true,
    }
}

pub(crate) fn render(report: &Report, style: &Style, redactor: &Redactor) -> String {
    let mut out = render_resources(&report.resources, style, redactor);
    out.push_str(&render_summary(report, style, redactor));
    out
}

/// The lines of these resources (those the style shows), in the order given.
pub(crate) fn render_resources<'a>(
    resources: impl IntoIterator<Item = &'a ResourceReport>,
    style: &Style,
    redactor: &Redactor,
) -> String {
    let mut out = String::new();
    for r in resources.into_iter().filter(|r| shown(r, style)) {
        let (mark, color) = marker(r);
        // A certificate's audit figures, on every line that shows it.
        let audit = match (r.observed.get("days_left"), r.observed.get("issuer")) {
            (Some(days), Some(issuer)) => format!(
                " ({days} days left, issued by {})",
                issuer.as_str().unwrap_or_default()
            ),
            // A service where no systemd runs: enablement was checked, running could not be.
            _ => match r.observed.get("active_state").and_then(|s| s.as_str()) {
                Some(s) if s.starts_with("unknown") => {
                    " (whether it runs is unknown: systemd is not running here)".to_string()
                }
                _ => String::new(),
            },
        };
        let label = match r.status {
            Status::InSync if r.refresh.is_none() => format!(" in sync{audit}"),
            Status::Failed => format!(" failed: {}", r.error.as_deref().unwrap_or("")),
            Status::WillFail => format!(" would fail: {}", r.error.as_deref().unwrap_or("")),
            Status::Skipped
            | Status::MayChange
            | Status::Unknown
            | Status::NotApplied
            | Status::Excluded => {
                format!(" {}", r.reason.as_deref().unwrap_or(""))
            }
            _ if r.changes.len() == 1 && r.changes[0].diff.is_none() => {
                format!(" {}", escape::line(&r.changes[0].description))
            }
            _ => String::new(),
        };
        // A multi-line error (a command's own message) stays indented under its resource.
        let label = escape::lines(&label).replace('\n', "\n    ");
        let _ = writeln!(
            out,
            "{} {}{}",
            paint(style, color, mark),
            paint(style, "1", &escape::line(&r.address)),
            label
        );
        let single_line = r.changes.len() == 1
            && r.changes[0].diff.is_none()
            && !matches!(r.status, Status::Failed | Status::WillFail);
        if !single_line && r.status != Status::Skipped {
            for c in &r.changes {
                let _ = writeln!(out, "    {}", escape::line(&c.description));
                if let Some(diff) = &c.diff {
                    for line in diff.lines() {
                        let line = &*escape::line(line);
                        let colored = match line.chars().next() {
                            Some('+') if !line.starts_with("+++") => paint(style, "32", line),
                            Some('-') if !line.starts_with("---") => paint(style, "31", line),
                            Some('@') => paint(style, "36", line),
                            _ => line.to_string(),
                        };
                        let _ = writeln!(out, "      {colored}");
                    }
                }
            }
        }
        for b in &r.backups {
            let _ = writeln!(out, "    old content kept in {}", escape::line(b));
        }
        for note in &r.notes {
            // Multi-line notes (command output) stay indented under their resource.
            for line in note.lines() {
                let _ = writeln!(out, "    {}", escape::line(line));
            }
        }
        if let Some(f) = &r.refresh {
            let verb = match f.status {
                RefreshStatus::WouldRun => "refresh would run",
                RefreshStatus::MayRun => "refresh may run",
                RefreshStatus::Ran => "refreshed",
                RefreshStatus::Failed => "refresh failed",
            };
            let _ = writeln!(
                out,
                "    {} (notified by {})",
                paint(style, "36", verb),
                f.notified_by.join(", ")
            );
            if let Some(e) = &f.error {
                for line in e.lines() {
                    let _ = writeln!(out, "      {}", escape::line(line));
                }
            }
        }
    }
    redactor.scrub(&out)
}

/// The closing lines: an interruption, if any, then the summary, always last.
pub(crate) fn render_summary(report: &Report, style: &Style, redactor: &Redactor) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let mut parts = Vec::new();
    let mut part = |n: usize, what: &str| {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    };
    match report.mode {
        Mode::Plan => {
            part(s.would_change, "to change");
            part(s.may_change, "may change");
            part(s.unknown, "not checkable (not drift)");
        }
        Mode::Apply => part(s.changed, "changed"),
    }
    part(s.not_applied, "not applied (outside --only)");
    part(
        s.refreshes,
        if report.mode == Mode::Plan {
            "refreshes to run"
        } else {
            "refreshed"
        },
    );
    let orphans = |state| report.orphans.iter().filter(|o| o.state == state).count();
    part(orphans(crate::orphans::State::ToBePruned), "to prune");
    part(orphans(crate::orphans::State::Pruned), "pruned");
    part(s.failed, "failed");
    part(
        orphans(crate::orphans::State::PruneFailed),
        "not pruned (failed)",
    );
    part(s.will_fail, "would fail (apply cannot repair)");
    part(s.skipped, "skipped");
    part(s.in_sync, "in sync");
    part(s.excluded, "excluded");
    if parts.is_empty() {
        parts.push("no resources".into());
    }
    for o in &report.orphans {
        let _ = writeln!(
            out,
            "{} {}",
            paint(style, "33", "-"),
            crate::escape::line(&crate::orphans::describe(o))
        );
    }
    if report.interrupted {
        // A plan owes nothing: it never wrote the journal.
        let owed = match report.mode {
            Mode::Apply => " Refreshes still owed are in the journal: the next run performs them.",
            Mode::Plan => "",
        };
        let _ = writeln!(
            out,
            "{}",
            paint(
                style,
                "31;1",
                &format!(
                    "Interrupted: tend was asked to stop; resources marked `s` did not start.{owed}"
                )
            )
        );
    }
    let head = match (report.mode, report.interrupted) {
        (Mode::Plan, false) => "Plan",
        (Mode::Apply, false) => "Apply",
        (Mode::Plan, true) => "Plan (interrupted)",
        (Mode::Apply, true) => "Apply (interrupted)",
    };
    let _ = writeln!(
        out,
        "{head}: {} ({})",
        parts.join(", "),
        elapsed(report.duration_ms)
    );
    redactor.scrub(&out)
}

fn elapsed(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{render_summary, Style};
    use crate::report::{ManifestInfo, Mode, Report, Summary};
    use crate::secrets::Redactor;

    fn interrupted(mode: Mode) -> String {
        let report = Report {
            schema_version: crate::report::SCHEMA_VERSION,
            interrupted: true,
            error: None,
            error_class: None,
            tend_version: "0",
            mode,
            host: "h".into(),
            root: "/".into(),
            manifest: ManifestInfo {
                path: "m.toml".into(),
                sha256: String::new(),
            },
            started_at: String::new(),
            duration_ms: 1,
            exit_code: 4,
            summary: Summary::of(&[]),
            resources: Vec::new(),
            pull: None,
            unprivileged: false,
            orphans: Vec::new(),
        };
        let style = Style {
            color: false,
            verbose: false,
            quiet: false,
        };
        render_summary(&report, &style, &Redactor::new(Vec::new()))
    }

    /// An interrupted apply says where the refreshes it owes are; a plan, which never writes
    /// the journal, does not claim any.
    #[test]
    fn only_an_interrupted_apply_speaks_of_refreshes_owed() {
        let apply = interrupted(Mode::Apply);
        assert!(
            apply.contains("did not start. Refreshes still owed are in the journal"),
            "{apply}"
        );
        assert!(apply.contains("Apply (interrupted)"), "{apply}");
        let plan = interrupted(Mode::Plan);
        assert!(
            plan.contains("resources marked `s` did not start.\n"),
            "{plan}"
        );
        assert!(!plan.contains("journal"), "{plan}");
        assert!(plan.contains("Plan (interrupted)"), "{plan}");
    }
}
