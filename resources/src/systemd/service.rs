//! `service`: a systemd unit enabled, disabled or masked, running or stopped, optionally with its
//! unit file and drop-ins.
//!
//! Files are `file`s (compared byte for byte, backed up, written atomically) under
//! `/etc/systemd/system`, written in `apply` with the rest of the wave's writes. systemd acts in
//! `settle`, once they are all on disk: one daemon-reload for the whole wave before anything is
//! started, enabled or restarted; a running unit whose files changed is restarted once, and a
//! notification on top of that does not restart it again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::systemctl::{self, Manager, View};
use crate::attrs::Ownership;
use crate::change::{Action, Change, Drift};
use crate::file::{content_fields, Content, File};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError, Value};
use crate::{grammar, Mutate, Probe};

/// The `service` kind: its name, summary and constructor.
pub const KIND: Kind = Kind {
    name: "service",
    summary: "a systemd unit: enabled/disabled/masked, running/stopped, unit file and drop-ins",
    build,
    prune: Some(PRUNE),
};

/// Where tend writes unit files: the administrator's directory, above what packages ship.
const UNIT_DIR: &str = "/etc/systemd/system";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enabled {
    Yes,
    No,
    Masked,
}

impl Enabled {
    fn word(self) -> &'static str {
        match self {
            Enabled::Yes => "enabled",
            Enabled::No => "disabled",
            Enabled::Masked => "masked",
        }
    }

    /// Whether systemd's `UnitFileState` already is what is asked. A unit with no `[Install]`
    /// section (`static`), or pulled in by another (`indirect`, `generated`), cannot be enabled
    /// or disabled: it is in sync either way. Runtime enablement does not survive a reboot, so it
    /// is drift.
    fn satisfied_by(self, state: &str) -> bool {
        match self {
            Enabled::Yes => matches!(
                state,
                "enabled" | "alias" | "static" | "indirect" | "generated"
            ),
            Enabled::No => matches!(
                state,
                "disabled" | "static" | "indirect" | "generated" | "alias"
            ),
            Enabled::Masked => state == "masked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Yes,
    No,
}

#[derive(Debug)]
/// A `service` resource, as its manifest table declared it.
pub struct Service {
    unit: String,
    enabled: Option<Enabled>,
    state: Option<Running>,
    /// The unit file and the drop-ins, when the manifest gives them.
    files: Vec<(String, File)>,
    paths: Vec<PathBuf>,
    reload: bool,
    /// Started or restarted by this run's apply: a notification does not restart it again.
    kicked: AtomicBool,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let name = f
        .address()
        .split_once('.')
        .map_or("", |(_, n)| n)
        .to_string();
    let unit = match f.string("unit")? {
        Some((t, span)) => {
            if !grammar::systemd_unit(&t.value) {
                return Err(SpecError::new(span, format!("`unit` = {:?} is not a systemd unit name", t.value))
                    .help("a unit name is NAME.TYPE, e.g. \"docker.service\" or \"tend.timer\" (letters, digits, `:_.\\@-`)"));
            }
            t.value
        }
        None if name.contains('.') => name.clone(),
        None => format!("{name}.service"),
    };
    if !grammar::systemd_unit(&unit) {
        return Err(SpecError::new(
            f.table_span(),
            format!("{} names no systemd unit ({unit:?})", f.address()),
        )
        .help(
            "name the resource after its unit (`[service.docker]`) or set `unit = \"NAME.TYPE\"`",
        ));
    }
    let enabled = match f.peek("enabled") {
        Some(Value::Str(_)) => {
            f.choice("enabled", &["masked"])?;
            Some(Enabled::Masked)
        }
        _ => f
            .bool("enabled")?
            .map(|b| if b { Enabled::Yes } else { Enabled::No }),
    };
    let state_span = f.span_of("state");
    let mut state = f.choice("state", &["running", "stopped"])?.map(|s| {
        if s == "running" {
            Running::Yes
        } else {
            Running::No
        }
    });
    if enabled == Some(Enabled::Masked) {
        if state == Some(Running::Yes) {
            return Err(SpecError::new(
                state_span,
                format!("{} is masked and also asked to be running", f.address()),
            )
            .help("a masked unit cannot start: drop `state` or unmask it"));
        }
        state = Some(Running::No);
    }
    let reload = f
        .choice("refresh", &["restart", "reload"])?
        .is_some_and(|r| r == "reload");
    let mut files = Vec::new();
    let (content, sensitive) = content_fields(f)?;
    if content != Content::Unmanaged {
        if enabled == Some(Enabled::Masked) {
            return Err(SpecError::new(
                f.table_span(),
                format!(
                    "{} is masked and also has a unit file: masking replaces {UNIT_DIR}/{unit} with a link to /dev/null",
                    f.address()
                ),
            ));
        }
        files.push((
            "unit_file".to_string(),
            File::managed(
                PathBuf::from(format!("{UNIT_DIR}/{unit}")),
                content,
                Ownership::default(),
                sensitive,
            ),
        ));
    }
    for (dropin, text, span) in f.text_table("dropins")?.unwrap_or_default() {
        if !grammar::systemd_dropin(&dropin) {
            return Err(
                SpecError::new(span, format!("drop-in name {dropin:?} is not NAME.conf"))
                    .help("systemd reads only drop-ins ending in .conf (letters, digits, `_.@-`)"),
            );
        }
        files.push((
            format!("dropin {dropin}"),
            File::managed(
                PathBuf::from(format!("{UNIT_DIR}/{unit}.d/{dropin}")),
                Content::Bytes(text.value.into_bytes()),
                Ownership::default(),
                text.sensitive,
            ),
        ));
    }
    let paths = files.iter().flat_map(|(_, f)| f.paths()).collect();
    Ok(Arc::new(Service {
        unit,
        enabled,
        state,
        files,
        paths,
        reload,
        kicked: AtomicBool::new(false),
    }))
}

/// A `service` is pruned only when tend wrote its unit file: stopped, disabled, its unit file and
/// drop-ins backed up and removed, systemd reloaded. One whose unit a package ships (tend only
/// enabled it, or added a drop-in) is never tend's to remove.
const PRUNE: crate::prune::Prune = crate::prune::Prune {
    keeps: |_, _| None,
    run: |host, paths| Box::pin(prune(host, paths)),
    created_by: &["unit_file"],
};

async fn prune(host: &Mutate, paths: &[PathBuf]) -> crate::prune::Done {
    let Some(unit) = paths
        .iter()
        .find(|p| p.parent() == Some(Path::new(UNIT_DIR)))
        .and_then(|p| p.file_name()?.to_str())
        .filter(|u| grammar::systemd_unit(u))
    else {
        return Err(ResourceError::Refused(format!(
            "it has no unit file of its own in {UNIT_DIR}: tend removes only units it wrote"
        )));
    };
    let manager = Manager::of(host.probe());
    let view = systemctl::view(&manager, host.probe(), unit).await?;
    let mut done = Vec::new();
    if view.active.as_deref().is_some_and(is_active) {
        systemctl::verb(&manager, "stop", &[unit]).await?;
        done.push(format!("stopped {unit}"));
    }
    if !Enabled::No.satisfied_by(&view.file_state)
        && view.file_state != "masked"
        && !view.not_found()
    {
        systemctl::verb(&manager, "disable", &[unit]).await?;
        done.push(format!("disabled {unit}"));
    }
    done.extend(crate::prune::files(host, paths).await?);
    let dropins = PathBuf::from(format!("{UNIT_DIR}/{unit}.d"));
    if matches!(host.metadata(&dropins), Ok(Some(m)) if m.is_dir())
        && host.remove_dir(&dropins).is_ok()
    {
        done.push(format!("removed {}", dropins.display()));
    }
    systemctl::unit_files_written();
    if systemctl::reload_if_needed(&manager, false).await? {
        done.push("systemctl daemon-reload".into());
    }
    Ok(done)
}

fn is_active(active: &str) -> bool {
    matches!(active, "active" | "reloading" | "activating" | "refreshing")
}

impl Service {
    /// The drift of the unit file and drop-ins, each change named after its file.
    async fn file_drift(&self, host: &Probe) -> Result<Vec<Change>, ResourceError> {
        let mut out = Vec::new();
        for (field, file) in &self.files {
            for c in file.check(host).await?.changes {
                let description = format!("{field}: {}", c.description);
                out.push(Change {
                    field: field.clone().into(),
                    description,
                    ..c
                });
            }
        }
        Ok(out)
    }

    fn systemd_drift(&self, manager: &Manager, view: &View, files_change: bool, drift: &mut Drift) {
        drift.observed.insert(
            "unit_file_state".into(),
            serde_json::Value::String(view.file_state.clone()),
        );
        if let Some(want) = self.enabled {
            if !want.satisfied_by(&view.file_state) {
                let mut c = Change::new("enabled", Some(&view.file_state), Some(want.word()));
                c.description = match (want, view.file_state.as_str()) {
                    (Enabled::Masked, _) => format!("mask (is {})", view.file_state),
                    (_, "masked") => format!("unmask and {}", verb_of(want)),
                    (_, have) => format!("{} (is {have})", verb_of(want)),
                };
                drift.push(c);
            }
        }
        let Some(active) = &view.active else {
            if self.state.is_some() {
                drift.observed.insert(
                    "active_state".into(),
                    serde_json::Value::String("unknown: systemd is not running".into()),
                );
            }
            return;
        };
        drift.observed.insert(
            "active_state".into(),
            serde_json::Value::String(active.clone()),
        );
        let running = is_active(active);
        match self.state {
            Some(Running::Yes) if !running => drift.push(
                Change::new("state", Some(active.as_str()), Some("running"))
                    .described(format!("start (is {active})"))
                    .with_action(Action::Run),
            ),
            Some(Running::No) if running => drift.push(
                Change::new("state", Some(active.as_str()), Some("stopped"))
                    .described(format!("stop (is {active})"))
                    .with_action(Action::Run),
            ),
            Some(Running::Yes) if files_change => drift.push(
                Change::note("restart", "restart: its unit files change").with_action(Action::Run),
            ),
            _ => {}
        }
        if view.need_reload && !files_change && *manager == Manager::Running {
            drift.push(Change::note(
                "daemon_reload",
                "daemon-reload: its unit files changed on disk since systemd loaded them",
            ));
        }
    }
}

fn verb_of(want: Enabled) -> &'static str {
    match want {
        Enabled::Yes => "enable",
        Enabled::No => "disable",
        Enabled::Masked => "mask",
    }
}

#[async_trait]
impl Resource for Service {
    fn paths(&self) -> Vec<PathBuf> {
        self.paths.clone()
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::from(self.file_drift(host).await?);
        let files_change = !drift.is_empty();
        let manager = Manager::of(host);
        let view = systemctl::view(&manager, host, &self.unit).await?;
        // Masking a unit not installed yet is allowed: it keeps a later install from starting it.
        if view.not_found() && !files_change && self.enabled != Some(Enabled::Masked) {
            // A unit a package of this manifest installs is an honest unknown in a plan that
            // would install it; anywhere else it is a failure.
            return Err(ResourceError::Missing(format!(
                "systemd knows no unit {}: install the package that ships it, or give its unit file (`content` or `template`)",
                self.unit
            )));
        }
        self.systemd_drift(&manager, &view, files_change, &mut drift);
        Ok(drift)
    }

    /// Writes the unit file and drop-ins (with the wave's other writes); systemd acts on them in
    /// [`Resource::settle`], once they are all on disk.
    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        for (_, file) in &self.files {
            let d = file.check(host.probe()).await?;
            if !d.is_empty() {
                let a = file.apply(host, &d).await?;
                applied.backups.extend(a.backups);
                systemctl::unit_files_written();
            }
        }
        Ok(applied)
    }

    /// One daemon-reload for every unit file the wave wrote (the first service to get here does
    /// it for all), then enable/disable/mask, then start, stop or restart.
    async fn settle(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let manager = Manager::of(host.probe());
        if systemctl::reload_if_needed(&manager, drift.touches("daemon_reload")).await? {
            applied
                .notes
                .push("systemd reloaded (daemon-reload)".into());
        }
        let unit = self.unit.as_str();
        if let Some(want) = self.enabled.filter(|_| drift.touches("enabled")) {
            let view = systemctl::view(&manager, host.probe(), unit).await?;
            if want != Enabled::Masked && view.file_state == "masked" {
                systemctl::verb(&manager, "unmask", &[unit]).await?;
            }
            let done = systemctl::verb(&manager, verb_of(want), &[unit]).await;
            if want == Enabled::Masked && done.is_err() && view.file_state != "not-found" {
                let local = Path::new(UNIT_DIR).join(unit);
                if host.metadata(&local)?.is_some_and(|m| m.is_file()) {
                    return Err(ResourceError::Refused(format!(
                        "cannot mask {unit}: its unit file is {}, which masking would replace with a link to /dev/null; remove that file first (masking is for units packages ship)",
                        host.real(&local).display()
                    )));
                }
            }
            done?;
        }
        if manager == Manager::Running {
            if drift.touches("state") {
                let verb = if self.state == Some(Running::Yes) {
                    self.kicked.store(true, Ordering::SeqCst);
                    "start"
                } else {
                    "stop"
                };
                systemctl::verb(&manager, verb, &[unit]).await?;
            } else if drift.touches("restart") {
                self.kicked.store(true, Ordering::SeqCst);
                systemctl::verb(&manager, "restart", &[unit]).await?;
                applied.notes.push(format!("{unit} restarted"));
            }
        }
        Ok(applied)
    }

    fn refreshable(&self) -> bool {
        self.state != Some(Running::No)
    }

    async fn refresh(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let manager = Manager::of(host.probe());
        if manager != Manager::Running {
            applied
                .notes
                .push("systemd is not running here: nothing to restart".into());
            return Ok(applied);
        }
        if self.kicked.load(Ordering::SeqCst) {
            applied.notes.push(format!(
                "{} was (re)started by this run already: not restarted again",
                self.unit
            ));
            return Ok(applied);
        }
        // A unit left unmanaged and stopped stays stopped: try-restart acts only on a running one.
        let verb = match (self.state, self.reload) {
            (Some(Running::Yes), false) => "restart",
            (Some(Running::Yes), true) => "reload",
            (_, false) => "try-restart",
            (_, true) => "try-reload-or-restart",
        };
        systemctl::reload_if_needed(&manager, false).await?;
        systemctl::verb(&manager, verb, &[&self.unit]).await?;
        applied
            .notes
            .push(format!("systemctl {verb} {}", self.unit));
        Ok(applied)
    }
}
