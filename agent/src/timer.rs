//! `tend timer install|remove|status`: tend run by systemd on a schedule.
//!
//! `install` writes `tend.service` (a oneshot `tend apply`) and `tend.timer` to
//! `/etc/systemd/system` — above the disabled copies the Debian package ships in
//! `/lib/systemd/system` — reloads systemd and enables the timer. With `--root` it writes under
//! the root and enables offline (`systemctl --root`), touching nothing of the live system, so an
//! image build can bake it in. `remove` undoes exactly that. Both are idempotent.
//!
//! The service is written for a run nobody watches: exit 2 ("changed") is success, a stop sends
//! SIGTERM to tend alone (`KillMode=mixed`: tend ends its own children's process groups and
//! waits for dpkg, see docs/cli.md) and gives it 15 minutes before systemd kills what is left,
//! and it runs at low CPU and I/O priority. No `Restart=`: the next tick is the retry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tend_resources::host::{Attrs, HostError, Mutate, Probe};
use tend_resources::systemd::systemctl::{self, Manager};

use crate::cli::{TimerInstallArgs, TimerTarget};
use crate::{absolute, output, state, StartError};

const UNIT_DIR: &str = "/etc/systemd/system";
/// The unit pair a timer is: `tend.service`/`tend.timer` converge; the audit pair
/// `tend-audit.service`/`tend-audit.timer` (`--plan`) only plans, and may sit beside them.
#[derive(Debug, Clone, Copy)]
struct Units {
    service: &'static str,
    timer: &'static str,
}

impl Units {
    fn of(t: &TimerTarget) -> Units {
        if t.plan {
            Units {
                service: "tend-audit.service",
                timer: "tend-audit.timer",
            }
        } else {
            Units {
                service: "tend.service",
                timer: "tend.timer",
            }
        }
    }
}
/// How long a stop waits for tend's graceful end (dpkg mid-transaction finishes first).
const STOP_TIMEOUT: &str = "15min";

/// Exit code of `status` when the timer is not installed or not enabled (`systemctl status`'s).
const NOT_ACTIVE: i32 = 3;

fn root_of(t: &TimerTarget) -> PathBuf {
    t.root
        .as_deref()
        .map_or_else(|| PathBuf::from("/"), absolute)
}

fn runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Host(format!("cannot start the runtime: {e}")))
}

/// One argument of `ExecStart=` (systemd.service(5) quoting): plain when it is plain, else
/// double-quoted with `\` and `"` escaped; `%` (specifiers) and `$` (variables) doubled.
fn exec_arg(a: &str) -> Result<String, StartError> {
    if a.chars().any(char::is_control) {
        return Err(StartError::Usage(format!(
            "{a:?} holds a control character: it cannot go into a unit file"
        )));
    }
    let escaped = a.replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._:=,+-%$@".contains(c))
    {
        return Ok(escaped);
    }
    Ok(format!(
        "\"{}\"",
        escaped.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Whole seconds, as systemd reads them.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// The two unit files `install` writes.
pub(crate) fn render_units(
    args: &TimerInstallArgs,
    exec: &Path,
) -> Result<(String, String), StartError> {
    let units = Units::of(&args.target);
    let audit = args.target.plan;
    let mut argv: Vec<String> = vec![
        exec.display().to_string(),
        match (args.pull.is_some(), audit) {
            (true, _) => "pull",
            (false, true) => "plan",
            (false, false) => "apply",
        }
        .into(),
    ];
    if audit && args.pull.is_some() {
        argv.push("--plan".into());
    }
    // A plan takes no lock (it writes nothing); an apply waits for one held.
    if !audit || args.pull.is_some() {
        argv.extend(["--lock-wait".into(), args.lock_wait.to_string()]);
    }
    if let Some(url) = &args.pull {
        if let Some(url) = url {
            argv.extend(["--url".into(), url.clone()]);
        }
        if let Some(f) = &args.allowed_signers {
            argv.extend([
                "--allowed-signers".into(),
                absolute(f).display().to_string(),
            ]);
        }
        if args.insecure_unsigned {
            argv.push("--insecure-unsigned".into());
        }
        // Inside the repository, as `tend pull --manifest` takes it.
        if let Some(m) = &args.manifest {
            if m.is_absolute()
                || !m
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(StartError::Usage(format!(
                    "--manifest {} with --pull: a path inside the policy repository (relative, no `..`)",
                    m.display()
                )));
            }
            argv.extend(["--manifest".into(), m.display().to_string()]);
        }
        if let Some(w) = args.rollout_window {
            argv.extend(["--rollout-window".into(), secs(*w)]);
        }
    }
    for (flag, path) in [("--metrics", &args.metrics), ("--report", &args.report)] {
        if let Some(p) = path {
            argv.push(flag.into());
            argv.push(absolute(p).display().to_string());
        }
    }
    for (k, v) in &args.vars {
        argv.push("--var".into());
        argv.push(format!("{k}={v}"));
    }
    if args.pull.is_none() {
        let manifest = args
            .manifest
            .as_deref()
            .map_or_else(|| PathBuf::from(crate::cli::DEFAULT_MANIFEST), absolute);
        argv.push(manifest.display().to_string());
    }
    let exec_start = argv
        .iter()
        .map(|a| exec_arg(a))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    let service = format!(
        "# Written by `tend timer install`; `tend timer remove` removes it.
[Unit]
Description=tend: {verb} this host {what}
Documentation=man:tend(1)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={exec_start}
# 2 means \"changed\" (or, for an audit, \"drift found\"): the run succeeded.
SuccessExitStatus=2
# A stop is SIGTERM to tend alone: it ends the commands it started and waits for dpkg.
KillMode=mixed
TimeoutStopSec={STOP_TIMEOUT}
# A run that hangs is stopped: a oneshot has no start timeout otherwise, and one hung run would
# hold back every later one.
TimeoutStartSec={run_timeout}
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
",
        verb = if audit { "audit" } else { "converge" },
        what = match (args.pull.is_some(), audit) {
            (true, false) => "to its policy",
            (false, false) => "to its manifest",
            (true, true) => "against its policy (plan only)",
            (false, true) => "against its manifest (plan only)",
        },
        run_timeout = secs(*args.run_timeout),
    );
    let schedule = match args.every {
        Some(every) => format!("OnUnitActiveSec={}\n", secs(*every)),
        None => {
            if args.on_calendar.chars().any(char::is_control) {
                return Err(StartError::Usage(
                    "--on-calendar holds a control character".into(),
                ));
            }
            format!(
                "OnCalendar={}\n# Runs missed while the host was off are caught up at boot.\nPersistent=true\n",
                args.on_calendar
            )
        }
    };
    let timer = format!(
        "# Written by `tend timer install`; `tend timer remove` removes it.
[Unit]
Description=Run {service} on a schedule
Documentation=man:tend(1)

[Timer]
OnBootSec={on_boot}
{schedule}# The splay: each host's delay in [0, RandomizedDelaySec) is its own and stable.
RandomizedDelaySec={splay}
FixedRandomDelay=true
Unit={service}

[Install]
WantedBy=timers.target
",
        on_boot = secs(*args.on_boot),
        splay = secs(*args.splay),
        service = units.service,
    );
    Ok((service, timer))
}

fn host_error(e: HostError) -> StartError {
    StartError::Host(e.to_string())
}

/// The host handle `install` and `remove` write through: the same fd-resolved, no-symlink seam
/// as every resource, minted by the run lock (no unit is rewritten under a running run).
fn mutate(root: &Path) -> Result<(state::RunLock, Mutate), StartError> {
    let state_dir = root.join("var/lib/tend");
    let lock = state::lock(&state_dir, Duration::from_secs(LOCK_WAIT))?;
    let host = lock.mutate(Probe::new(root, state_dir));
    Ok((lock, host))
}

/// How long `timer install`/`remove` wait for a run that holds the lock.
const LOCK_WAIT: u64 = 60;

/// Refuse a calendar spec systemd would not parse, before anything is written.
async fn check_calendar(spec: &str) -> Result<(), StartError> {
    let mut c = tokio::process::Command::new("systemd-analyze");
    c.args(["calendar", "--", spec]);
    match tend_resources::process::capture(c, Duration::from_secs(10)).await {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(StartError::Usage(format!(
            "--on-calendar {spec:?}: systemd does not read it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        // No systemd-analyze (a minimal image): systemd itself will say it when it loads the timer.
        Err(_) => Ok(()),
    }
}

pub(crate) fn install(args: &TimerInstallArgs, quiet: bool) -> Result<i32, StartError> {
    let root = root_of(&args.target);
    if matches!(args.pull, Some(None))
        && !crate::pull::config_names_url(&root.join("etc/tend/pull.toml"))
    {
        return Err(StartError::Usage(format!(
            "--pull with no URL takes the policy's url from {}, which names none (or cannot be \
             read): give --pull URL, or set url = \"…\" there",
            root.join("etc/tend/pull.toml").display()
        )));
    }
    if args.pull.is_some() && args.allowed_signers.is_none() && !args.insecure_unsigned {
        let config = root.join("etc/tend/pull.toml");
        if !crate::pull::config_verifies(&config) {
            return Err(StartError::Usage(format!(
                "no allowed signers: every run would refuse to start. Give --allowed-signers FILE \
                 (or allowed_signers in {}); --insecure-unsigned installs a timer that runs \
                 unverified policy as root",
                config.display()
            )));
        }
    }
    let exec = match &args.exec {
        Some(p) => absolute(p),
        None if args.target.root.is_some() => PathBuf::from("/usr/bin/tend"),
        None => std::env::current_exe()
            .map_err(|e| StartError::Host(format!("cannot tell where tend is: {e}")))?,
    };
    let (service, timer) = render_units(args, &exec)?;
    // Each run would fail on it (exit 4) until someone made it: say so now.
    for path in [&args.metrics, &args.report].into_iter().flatten() {
        let dir = absolute(path);
        if let Some(dir) = dir.parent() {
            let real = root.join(dir.strip_prefix("/").unwrap_or(dir));
            if !real.is_dir() {
                tracing::warn!(
                    "{} does not exist: every run will fail to write {} until it does",
                    dir.display(),
                    path.display()
                );
            }
        }
    }
    let (_lock, host) = mutate(&root)?;
    let manager = Manager::of(host.probe());
    let units = Units::of(&args.target);
    let (service_unit, timer_unit) = (units.service, units.timer);
    let rt = runtime()?;
    rt.block_on(async {
        if args.every.is_none() {
            check_calendar(&args.on_calendar).await?;
        }
        let mut wrote = Vec::new();
        for (name, text) in [(service_unit, &service), (timer_unit, &timer)] {
            let path = Path::new(UNIT_DIR).join(name);
            if host.read(&path).map_err(host_error)?.as_deref() != Some(text.as_bytes()) {
                host.create_parents(&path).map_err(host_error)?;
                let attrs = Attrs {
                    mode: Some(0o644),
                    uid: Some(0),
                    gid: Some(0),
                };
                host.write_atomic(&path, text.as_bytes(), attrs)
                    .map_err(host_error)?;
                wrote.push(host.real(&path).display().to_string());
                systemctl::unit_files_written();
            }
        }
        let fail = |e: tend_resources::ResourceError| StartError::Host(e.to_string());
        systemctl::reload_if_needed(&manager, false)
            .await
            .map_err(fail)?;
        let state = systemctl::view(&manager, host.probe(), timer_unit)
            .await
            .map_err(fail)?;
        let enabled = state.file_state == "enabled";
        if !enabled {
            systemctl::verb(&manager, "enable", &[timer_unit])
                .await
                .map_err(fail)?;
        }
        let started = manager == Manager::Running
            && state.active.as_deref() != Some("active")
            && {
                systemctl::verb(&manager, "start", &[timer_unit])
                    .await
                    .map_err(fail)?;
                true
            };
        if !quiet {
            let mut out = String::new();
            for w in &wrote {
                out.push_str(&format!("wrote {w}\n"));
            }
            if !enabled {
                out.push_str(&format!("enabled {timer_unit}\n"));
            }
            if started {
                out.push_str(&format!("started {timer_unit}\n"));
            }
            if out.is_empty() {
                out.push_str(&format!("{timer_unit} is installed as asked: nothing changed\n"));
            } else if manager != Manager::Running {
                out.push_str(
                    "systemd is not running here: the timer starts at the next boot of this system\n",
                );
            }
            output::stdout(&out);
        }
        // Like apply: 2 when something changed, for scripts that want to know.
        Ok(if wrote.is_empty() && enabled && !started {
            0
        } else {
            2
        })
    })
}

pub(crate) fn remove(t: &TimerTarget, quiet: bool) -> Result<i32, StartError> {
    let root = root_of(t);
    let Units {
        service: service_unit,
        timer: timer_unit,
    } = Units::of(t);
    let (_lock, host) = mutate(&root)?;
    let manager = Manager::of(host.probe());
    let fail = |e: tend_resources::ResourceError| StartError::Host(e.to_string());
    runtime()?.block_on(async {
        let mut out = String::new();
        let timer = systemctl::view(&manager, host.probe(), timer_unit)
            .await
            .map_err(fail)?;
        if timer.file_state == "enabled" {
            systemctl::verb(&manager, "disable", &[timer_unit])
                .await
                .map_err(fail)?;
            out.push_str(&format!("disabled {timer_unit}\n"));
        }
        if timer.active.as_deref() == Some("active") {
            // The timer stops; a run in progress (tend.service) finishes.
            systemctl::verb(&manager, "stop", &[timer_unit])
                .await
                .map_err(fail)?;
            out.push_str(&format!("stopped {timer_unit}\n"));
        }
        for name in [timer_unit, service_unit] {
            let path = Path::new(UNIT_DIR).join(name);
            if host.metadata(&path).map_err(host_error)?.is_some() {
                host.remove_file(&path).map_err(host_error)?;
                out.push_str(&format!("removed {}\n", host.real(&path).display()));
                systemctl::unit_files_written();
            }
        }
        systemctl::reload_if_needed(&manager, false)
            .await
            .map_err(fail)?;
        let changed = !out.is_empty();
        if !quiet {
            if !changed {
                out.push_str(&format!(
                    "{timer_unit} is not installed: nothing to remove\n"
                ));
            }
            output::stdout(&out);
        }
        Ok(if changed { 2 } else { 0 })
    })
}

pub(crate) fn status(t: &TimerTarget) -> Result<i32, StartError> {
    let root = root_of(t);
    let Units {
        timer: timer_unit, ..
    } = Units::of(t);
    let probe = Probe::new(&root, root.join("var/lib/tend"));
    let manager = Manager::of(&probe);
    let fail = |e: tend_resources::ResourceError| StartError::Host(e.to_string());
    let state_dir = t
        .state_dir
        .as_deref()
        .map_or_else(|| root.join("var/lib/tend"), absolute);
    let rt = runtime()?;
    let timer = rt
        .block_on(systemctl::view(&manager, &probe, timer_unit))
        .map_err(fail)?;
    let mut out = String::new();
    let mut code = 0;
    if timer.not_found() {
        out.push_str(&format!(
            "{timer_unit}: not installed (`tend timer install{}` sets it up)\n",
            if t.plan { " --plan" } else { "" }
        ));
        code = NOT_ACTIVE;
    } else {
        let active = timer
            .active
            .as_deref()
            .unwrap_or("unknown: systemd is not running here");
        out.push_str(&format!("{timer_unit}: {}, {active}\n", timer.file_state));
        if timer.file_state != "enabled" {
            code = NOT_ACTIVE;
        }
        if manager == Manager::Running {
            let props = rt
                .block_on(systemctl::show(
                    &manager,
                    timer_unit,
                    "NextElapseUSecRealtime,LastTriggerUSec",
                ))
                .unwrap_or_default();
            let get = |k: &str| {
                props
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty() && v != "n/a")
            };
            out.push_str(&format!(
                "next run: {}\n",
                get("NextElapseUSecRealtime").unwrap_or_else(|| "none scheduled".into())
            ));
            out.push_str(&format!(
                "last started: {}\n",
                get("LastTriggerUSec").unwrap_or_else(|| "never".into())
            ));
        }
    }
    match last_run(&state_dir) {
        Ok(Some(line)) => {
            out.push_str(&format!("last run: {}\n", line.text));
            if line.failed && code == 0 {
                code = 4;
            }
        }
        Ok(None) => out.push_str(&format!(
            "last run: none recorded in {}\n",
            state_dir.display()
        )),
        Err(e) => {
            out.push_str(&format!("last run: {e}\n"));
            if code == 0 {
                code = 4;
            }
        }
    }
    output::stdout(&out);
    Ok(code)
}

pub(crate) struct LastRun {
    pub(crate) text: String,
    pub(crate) failed: bool,
}

/// One line on the last run from `last-run.json`: when, what, how it ended.
pub(crate) fn last_run(state_dir: &Path) -> Result<Option<LastRun>, String> {
    let path = state_dir.join("last-run.json");
    let Some(bytes) = tend_resources::host::read_private_file(&path).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a report: {e}", path.display()))?;
    let s = &v["summary"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let code = v["exit_code"].as_i64().unwrap_or(-1);
    let interrupted = v["interrupted"].as_bool().unwrap_or(false);
    let text = format!(
        "{} {} at {}: exit {code}{} ({} changed, {} failed, {} in sync, {} unknown)",
        v["mode"].as_str().unwrap_or("?"),
        v["manifest"]["path"].as_str().unwrap_or("?"),
        v["started_at"].as_str().unwrap_or("?"),
        if interrupted { ", interrupted" } else { "" },
        n("changed") + n("would_change"),
        n("failed"),
        n("in_sync"),
        n("unknown"),
    );
    Ok(Some(LastRun {
        text: text + &reasons(&v),
        failed: code & 4 != 0 || code == 1 || code < 0,
    }))
}

/// The most failures `status` lists by name; the rest are counted.
const MAX_REASONS: usize = 10;

/// Why the last run failed, a line each: the run that could not start, the pull's refusal or
/// outage, each failed (or would-fail) resource with its error's first line.
fn reasons(v: &serde_json::Value) -> String {
    let first = |t: &str| crate::escape::line(t.lines().next().unwrap_or("")).into_owned();
    let mut out = String::new();
    if let Some(e) = v["error"].as_str() {
        out.push_str(&format!("\n  could not start: {}", first(e)));
    }
    let pull = &v["pull"];
    if let Some(r) = pull["refused"].as_object() {
        out.push_str(&format!(
            "\n  refused commit {}: {}",
            r.get("commit")
                .and_then(|c| c.as_str())
                .map_or("?", |c| &c[..c.len().min(12)]),
            first(r.get("reason").and_then(|c| c.as_str()).unwrap_or(""))
        ));
    }
    if pull["stale"].as_bool().unwrap_or(false) {
        out.push_str(&format!(
            "\n  policy server not reached ({} s since it last was): {}",
            pull["policy_age_seconds"].as_u64().unwrap_or(0),
            first(pull["fetch_error"].as_str().unwrap_or(""))
        ));
    }
    let failed: Vec<&serde_json::Value> = v["resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| matches!(r["status"].as_str(), Some("failed" | "will_fail")))
                .collect()
        })
        .unwrap_or_default();
    for r in failed.iter().take(MAX_REASONS) {
        out.push_str(&format!(
            "\n  {} {}: {}",
            first(r["address"].as_str().unwrap_or("?")),
            if r["status"] == "will_fail" {
                "would fail"
            } else {
                "failed"
            },
            first(r["error"].as_str().unwrap_or(""))
        ));
    }
    if failed.len() > MAX_REASONS {
        out.push_str(&format!("\n  and {} more", failed.len() - MAX_REASONS));
    }
    // A removal `--prune` (or `[prune]`) asked for that failed: the failure bit, said here too.
    for o in v["orphans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["state"] == "prune_failed")
        .take(MAX_REASONS)
    {
        out.push_str(&format!(
            "\n  {} not pruned: {}",
            first(o["address"].as_str().unwrap_or("?")),
            first(
                o["pruned"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("not pruned: ")
            )
        ));
    }
    out
}
