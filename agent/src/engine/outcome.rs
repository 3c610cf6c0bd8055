//! The reports every path of the engine builds alike: excluded, interrupted, skipped after a
//! dependency, and the reason class of whatever is not in sync.

use tend_resources::ResourceError;

use crate::engine::graph::Graph;
use crate::manifest::Manifest;
use crate::report::{ReasonClass, ResourceReport, Status};

pub(super) fn base_report(m: &Manifest, i: usize, status: Status) -> ResourceReport {
    let d = &m.resources[i];
    ResourceReport::new(&d.address, d.kind, &d.name, status)
}

pub(super) fn excluded(m: &Manifest, i: usize) -> ResourceReport {
    let mut r = base_report(m, i, Status::Excluded);
    if m.resources[i].enabled {
        r.reason = Some("not selected by --only".into());
        r.reason_class = Some(ReasonClass::NotSelected);
    } else {
        r.reason = Some("`when` is false".into());
        r.reason_class = Some(ReasonClass::WhenFalse);
    }
    r
}

/// A resource that did not start because the run was asked to stop.
pub(super) fn interrupted(m: &Manifest, i: usize) -> ResourceReport {
    let mut r = base_report(m, i, Status::Skipped);
    mark_interrupted(&mut r);
    r
}

pub(super) fn mark_interrupted(r: &mut ResourceReport) {
    r.status = Status::Skipped;
    r.reason = Some("not started: tend was asked to stop".into());
    r.reason_class = Some(ReasonClass::Interrupted);
}

/// The reason class every resource that is not in sync carries, where its creation did not set a
/// more precise one.
pub(super) fn classify(r: &mut ResourceReport) {
    if r.reason_class.is_some() {
        return;
    }
    r.reason_class = match r.status {
        Status::InSync => None,
        Status::WouldChange => Some(ReasonClass::WouldChange),
        Status::MayChange => Some(ReasonClass::UnknownUntilDependenciesApply),
        Status::Unknown => Some(ReasonClass::Unreachable),
        Status::Changed => Some(ReasonClass::Changed),
        Status::Failed | Status::WillFail => Some(ReasonClass::Failed),
        Status::Skipped => Some(ReasonClass::DependencyFailed),
        Status::NotApplied => Some(ReasonClass::OutsideOnly),
        Status::Excluded => Some(ReasonClass::NotSelected),
    };
}

/// A check that failed only because the kernel refused tend a read (`EACCES`, `EPERM`), not
/// one of tend's own refusals (an untrusted link is a failure wherever it is met).
pub(super) fn denied(e: &ResourceError) -> bool {
    matches!(e, ResourceError::Host(h) if matches!(h.source.raw_os_error(), Some(13 | 1)))
}

/// Why a resource is skipped, if a dependency failed or was skipped.
pub(super) fn skip_reason(
    m: &Manifest,
    g: &Graph,
    i: usize,
    reports: &[Option<ResourceReport>],
) -> Option<String> {
    g.deps[i].iter().find_map(|e| {
        let r = reports[e.on].as_ref()?;
        let dep = &m.resources[e.on].address;
        // A notifier that kicks its targets when it fails (an audited certificate) must not
        // also get them skipped.
        if e.kind == crate::engine::graph::EdgeKind::Notify
            && m.resources[e.on].resource.notifies_on_failure()
        {
            return None;
        }
        let how = match e.kind {
            crate::engine::graph::EdgeKind::Requires => "requires",
            crate::engine::graph::EdgeKind::Notify => "is notified by",
            crate::engine::graph::EdgeKind::Path => "depends on",
        };
        match r.status {
            Status::Failed => Some(format!("{how} {dep}, which failed")),
            Status::WillFail => Some(format!("{how} {dep}, which would fail")),
            Status::Skipped => Some(format!("{how} {dep}, which was skipped")),
            _ => None,
        }
    })
}
