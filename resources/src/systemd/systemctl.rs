//! Talking to systemd through `systemctl`: what it knows of a unit, and the verbs that change it.
//!
//! Two managers: the live one (PID 1 is systemd and the root is `/`), asked over its bus by
//! `systemctl show`; and none (a container, an image being built under `--root`), where only
//! what lives in files can be read or changed — enablement, the way `systemctl --root` does it —
//! and whether a unit runs is an honest unknown.
//!
//! `systemctl` is found on `PATH`, like every tool tend runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use crate::host::Probe;
use crate::process::{self, RunError};
use crate::resource::ResourceError;

use super::{bus, unit_files};

/// Queries answer at once; a start waits for the unit's own start timeout (90 s by default, far
/// longer for some), which is systemd's to enforce. This limit only catches a hung systemctl.
const QUERY_LIMIT: Duration = Duration::from_secs(30);
const VERB_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Which systemd tend talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    /// systemd is PID 1 of the host tend manages.
    Running,
    /// No systemd runs for this root: unit files only, `systemctl --root=ROOT`.
    Offline {
        /// The root whose unit files `systemctl --root` reads and changes.
        root: PathBuf,
    },
}

impl Manager {
    /// `sd_booted()` for the live root; never running for another `--root`.
    pub fn of(host: &Probe) -> Manager {
        // sd_booted(): whether systemd runs this machine, asked of the machine itself.
        #[allow(clippy::disallowed_methods)]
        let booted = Path::new("/run/systemd/system").is_dir();
        if host.root() == Path::new("/") && booted {
            Manager::Running
        } else {
            Manager::Offline {
                root: host.root().to_path_buf(),
            }
        }
    }

    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("systemctl");
        c.env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .arg("--no-pager")
            .arg("--no-ask-password");
        if let Manager::Offline { root } = self {
            c.arg(format!("--root={}", root.display()));
        }
        c
    }
}

/// What systemd knows of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// `UnitFileState` (`enabled`, `disabled`, `static`, `masked`, …), `not-found` when there is
    /// no such unit.
    pub file_state: String,
    /// `ActiveState` (`active`, `inactive`, `failed`, …); `None` when no systemd runs.
    pub active: Option<String>,
    /// systemd loaded the unit before its files last changed.
    pub need_reload: bool,
}

impl View {
    /// systemd knows no such unit.
    pub fn not_found(&self) -> bool {
        self.file_state == "not-found"
    }
}

fn failed(what: &str, e: RunError) -> ResourceError {
    match e {
        RunError::Spawn(e) if e.kind() == std::io::ErrorKind::NotFound => ResourceError::Command(
            format!("{what}: systemctl is not installed (is this a systemd host?)"),
        ),
        e => ResourceError::Command(format!("{what}: systemctl: {e}")),
    }
}

/// Read `unit`'s state: a read-only query, which plan makes too.
pub async fn view(m: &Manager, host: &Probe, unit: &str) -> Result<View, ResourceError> {
    let what = format!("cannot read the state of {unit}");
    match m {
        Manager::Running => {
            // In-process first (no process on a converged host); systemctl when the bus cannot
            // answer (not root, an older systemd, a type this client does not read).
            let names = [
                "LoadState",
                "UnitFileState",
                "ActiveState",
                "NeedDaemonReload",
            ];
            let props: Vec<(String, String)> = match bus::unit_properties(unit, &names, QUERY_LIMIT)
                .await
            {
                Ok(values) => names
                    .iter()
                    .zip(values)
                    .map(|(k, v)| {
                        let v = match v {
                            bus::Value::Str(s) => s,
                            bus::Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
                Err(e) => {
                    tracing::debug!("{unit}: systemd's bus did not answer ({e}); asking systemctl");
                    show(m, unit, &names.join(","))
                        .await
                        .map_err(|e| ResourceError::Command(format!("{what}: {e}")))?
                }
            };
            let prop = |k: &str| {
                props
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let load = prop("LoadState");
            let file_state = match (load.as_str(), prop("UnitFileState")) {
                ("not-found", _) => "not-found".to_string(),
                (_, s) if s.is_empty() => load,
                (_, s) => s,
            };
            Ok(View {
                file_state,
                active: Some(prop("ActiveState")),
                need_reload: prop("NeedDaemonReload") == "yes",
            })
        }
        Manager::Offline { .. } => {
            if let Some(word) = unit_files::proven_state(host, unit) {
                return Ok(View {
                    file_state: word.to_string(),
                    active: None,
                    need_reload: false,
                });
            }
            let mut c = m.command();
            c.args(["is-enabled", "--", unit]);
            let out = process::capture(c, QUERY_LIMIT)
                .await
                .map_err(|e| failed(&what, e))?;
            // is-enabled exits 1 for "disabled" and the like: the word on stdout is the answer.
            let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let file_state = if !word.is_empty() {
                word
            } else if stderr.contains("No such file") || stderr.contains("not found") {
                "not-found".to_string()
            } else {
                return Err(ResourceError::Command(format!(
                    "{what}: systemctl is-enabled: {}",
                    stderr.trim()
                )));
            };
            Ok(View {
                file_state,
                active: None,
                need_reload: false,
            })
        }
    }
}

/// `systemctl show --property=PROPS UNIT` of the running manager, as key/value pairs (a
/// read-only query).
pub async fn show(m: &Manager, unit: &str, props: &str) -> Result<Vec<(String, String)>, String> {
    let mut c = m.command();
    c.arg("show")
        .arg(format!("--property={props}"))
        .args(["--", unit]);
    let out = process::capture(c, QUERY_LIMIT)
        .await
        .map_err(|e| format!("systemctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "systemctl show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Run one verb (`enable`, `start`, `daemon-reload`…) on `units`.
pub async fn verb(m: &Manager, verb: &str, units: &[&str]) -> Result<(), ResourceError> {
    let mut c = m.command();
    c.arg(verb);
    if !units.is_empty() {
        c.arg("--").args(units);
    }
    let what = format!("systemctl {verb} {}", units.join(" "));
    let out = process::capture(c, VERB_LIMIT)
        .await
        .map_err(|e| failed(what.trim(), e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut msg = format!("{} failed ({})", what.trim(), out.status);
        if !stderr.trim().is_empty() {
            msg.push_str(&format!(": {}", stderr.trim()));
        }
        if matches!(verb, "start" | "restart" | "reload" | "try-restart") {
            msg.push_str(&format!(
                " — see `systemctl status {0}` and `journalctl -u {0}`",
                units.join(" ")
            ));
        }
        return Err(ResourceError::Command(msg));
    }
    Ok(())
}

/// Unit files written by this run, and how many of them the last daemon-reload saw: every
/// `service` that wrote one bumps the first, and before anything is started, enabled or
/// restarted, [`reload_if_needed`] reloads once for all of them — one `daemon-reload` per run
/// however many units changed together, never a start against a stale unit.
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static RELOADED: LazyLock<tokio::sync::Mutex<u64>> = LazyLock::new(|| tokio::sync::Mutex::new(0));

/// A unit file or drop-in was written: systemd must reload before it acts on units again.
pub fn unit_files_written() {
    WRITTEN.fetch_add(1, Ordering::SeqCst);
}

/// `daemon-reload` if a unit file was written since the last one (or `force`: systemd said it
/// needs one). Returns whether it reloaded. Offline, there is nothing to reload.
pub async fn reload_if_needed(m: &Manager, force: bool) -> Result<bool, ResourceError> {
    if *m != Manager::Running {
        return Ok(false);
    }
    let mut seen = RELOADED.lock().await;
    let now = WRITTEN.load(Ordering::SeqCst);
    if now == *seen && !force {
        return Ok(false);
    }
    verb(m, "daemon-reload", &[]).await?;
    *seen = now;
    Ok(true)
}
