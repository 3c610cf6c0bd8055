//! Run records for the log pipeline an operator already runs: one entry per resource that is
//! not in sync (drift, changed, failed, unknown, would fail, skipped) and per orphan, and one per
//! run, sent to journald's native socket (datagrams, in-process: no `logger`, no `systemd-cat`)
//! when it exists, and with `--log-format json` as JSON lines on stderr.
//!
//! Fields: `MESSAGE_ID` (one fixed id per event kind), `TEND_RUN_ID`, `TEND_MODE`,
//! `TEND_RESOURCE`, `TEND_KIND`, `TEND_STATUS`, `TEND_REASON_CLASS`, `TEND_FIELDS` (the changed
//! fields' names), `TEND_POLICY_COMMIT`, `PRIORITY` by status. Values never: a field's name is
//! not a secret, its content may be; error texts pass through the run's redactor, as every output.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::report::{word, Report, ResourceReport, Status};
use crate::secrets::Redactor;

/// journald's native socket.
const SOCKET: &str = "/run/systemd/journal/socket";

/// The longest value sent: a record is one datagram.
const MAX_VALUE: usize = 4096;

/// One id per event kind (`journalctl MESSAGE_ID=…`, and the catalog's key).
pub(crate) mod message_id {
    /// A run finished (`TEND_EXIT_CODE`, counts).
    pub(crate) const RUN: &str = "4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f60";
    /// Plan: a resource differs from the manifest (would or may change).
    pub(crate) const DRIFT: &str = "4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f61";
    /// Apply: a resource was changed.
    pub(crate) const CHANGED: &str = "4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f62";
    /// A resource failed, would fail, or was skipped for a failed dependency.
    pub(crate) const FAILED: &str = "4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f63";
    /// A resource could not be checked (not drift).
    pub(crate) const UNKNOWN: &str = "4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f64";
    /// A resource left the manifest and was left in place.
    pub(crate) const ORPHAN: &str = "4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f65";
}

/// One record: its fields in order.
pub(crate) type Record = Vec<(&'static str, String)>;

/// The records of a run.
pub(crate) fn records(report: &Report, run_id: &str, redactor: &Redactor) -> Vec<Record> {
    let mode = word(&report.mode);
    let commit = report
        .pull
        .as_ref()
        .and_then(|p| p.applied.as_ref())
        .map(|c| c.commit.clone());
    let base = |message: String, id: &str, priority: u8| -> Record {
        let mut r: Record = vec![
            ("MESSAGE", cut(&redactor.scrub(&message))),
            ("MESSAGE_ID", id.to_string()),
            ("PRIORITY", priority.to_string()),
            ("SYSLOG_IDENTIFIER", "tend".to_string()),
            ("TEND_RUN_ID", run_id.to_string()),
            ("TEND_MODE", mode.clone()),
        ];
        if let Some(c) = &commit {
            r.push(("TEND_POLICY_COMMIT", c.clone()));
        }
        r
    };
    let mut out = Vec::new();
    for r in report.resources.iter().filter(|r| !quiet(r.status)) {
        let (id, priority) = match r.status {
            Status::WouldChange | Status::MayChange => (message_id::DRIFT, 5),
            Status::Changed => (message_id::CHANGED, 5),
            Status::Unknown => (message_id::UNKNOWN, 4),
            _ => (message_id::FAILED, 3),
        };
        let fields = changed_fields(r);
        let why = r
            .error
            .as_deref()
            .or(r.reason.as_deref())
            .and_then(|e| e.lines().next())
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let what = if fields.is_empty() {
            String::new()
        } else {
            format!(" ({fields})")
        };
        let mut rec = base(
            format!(
                "tend {mode}: {} {}{what}{why}",
                r.address,
                word(&r.status).replace('_', " ")
            ),
            id,
            priority,
        );
        rec.push(("TEND_RESOURCE", r.address.clone()));
        rec.push(("TEND_KIND", r.kind.clone()));
        rec.push(("TEND_STATUS", word(&r.status)));
        if let Some(c) = r.reason_class {
            rec.push(("TEND_REASON_CLASS", word(&c)));
        }
        if !fields.is_empty() {
            rec.push(("TEND_FIELDS", fields));
        }
        out.push(rec);
    }
    for o in &report.orphans {
        let mut rec = base(
            format!("tend {mode}: {}", crate::orphans::describe(o)),
            message_id::ORPHAN,
            5,
        );
        rec.push(("TEND_RESOURCE", o.address.clone()));
        rec.push(("TEND_KIND", o.kind.clone()));
        rec.push(("TEND_STATUS", "orphan".to_string()));
        out.push(rec);
    }
    let s = &report.summary;
    let failures = s.failed + s.will_fail > 0 || report.error.is_some();
    let mut rec = base(
        format!(
            "tend {mode}: exit {} ({} resources: {} changed, {} would change, {} failed, {} unknown)",
            report.exit_code,
            s.total,
            s.changed,
            s.would_change + s.may_change,
            s.failed + s.will_fail,
            s.unknown
        ),
        message_id::RUN,
        if failures { 3 } else { 6 },
    );
    rec.push(("TEND_EXIT_CODE", report.exit_code.to_string()));
    rec.push((
        "TEND_STATUS",
        if failures { "failed" } else { "ok" }.to_string(),
    ));
    if let Some(e) = &report.error {
        rec.push(("TEND_ERROR", cut(&redactor.scrub(e))));
    }
    out.push(rec);
    out
}

/// Statuses that make no record: nothing to say about them.
fn quiet(s: Status) -> bool {
    matches!(s, Status::InSync | Status::Excluded | Status::NotApplied)
}

/// The names of a resource's changed fields, comma-separated (notes left out).
fn changed_fields(r: &ResourceReport) -> String {
    let mut f: Vec<String> = r
        .changes
        .iter()
        .filter(|c| c.action != tend_resources::Action::Note)
        .map(|c| c.field.to_string())
        .collect();
    f.dedup();
    f.join(",")
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_VALUE) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// One record in journald's native format: `KEY=value\n`, or for a value holding a newline
/// `KEY\n` + its length (64-bit little-endian) + the value + `\n`.
pub(crate) fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in record {
        out.extend_from_slice(k.as_bytes());
        if v.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// Send the records to journald when its socket is there (nothing, silently, when it is not: a
/// host without journald, an image build). One that cannot be sent is said once on stderr.
pub(crate) fn send(records: &[Record]) {
    send_to(Path::new(SOCKET), records);
}

fn send_to(socket: &Path, records: &[Record]) {
    if !socket.exists() {
        return;
    }
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    for r in records {
        if let Err(e) = sock.send_to(&encode(r), socket) {
            eprintln!(
                "warning: cannot send the run's records to journald ({}): {e}",
                socket.display()
            );
            return;
        }
    }
}

/// The records as JSON lines (`--log-format json`).
pub(crate) fn json_lines(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        let obj: serde_json::Map<String, serde_json::Value> = r
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v.clone())))
            .collect();
        out.push_str(&serde_json::Value::Object(obj).to_string());
        out.push('\n');
    }
    out
}

/// A run id: 32 hex digits, random.
pub(crate) fn run_id() -> String {
    let b: [u8; 16] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_with_a_newline_is_sent_with_its_length() {
        let r: Record = vec![("MESSAGE", "a\nb".into()), ("PRIORITY", "5".into())];
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\nPRIORITY=5\n");
        assert_eq!(encode(&r), want);
    }

    #[test]
    fn records_reach_a_datagram_socket_as_journald_reads_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).expect("bind");
        let r: Record = vec![
            ("MESSAGE", "hello".into()),
            ("TEND_STATUS", "failed".into()),
        ];
        send_to(&path, &[r]);
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"MESSAGE=hello\nTEND_STATUS=failed\n");
    }
}
