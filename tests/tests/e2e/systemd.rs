//! The `service` kind and `tend timer` against a real systemd (252, booted as PID 1 in a
//! container, tend installed from its .deb), and offline under `--root` where none runs.

use std::time::{Duration, Instant};

use tend_tests::systemd::Booted;
use tend_tests::{changed_fields, orphans, resource, Sandbox};

fn unit(env: &str) -> String {
    format!(
        "[Unit]\nDescription=a test loop\n\n[Service]\nEnvironment=WHO={env}\nExecStart=/bin/sh -c 'while :; do sleep 1; done'\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

fn manifest(units: &[(&str, &str)], extra: &str) -> String {
    let mut m = String::new();
    for (name, env) in units {
        m.push_str(&format!(
            "[service.{name}]\nenabled = true\nstate = \"running\"\ncontent = '''\n{}'''\n\n",
            unit(env)
        ));
    }
    m.push_str(extra);
    m
}

fn count(calls: &[String], verb: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.split_whitespace().any(|w| w == verb))
        .count()
}

#[test]
fn a_service_is_enabled_started_kept_and_restarted_once_per_change() {
    let sys = Booted::new();
    sys.write(
        "/m/m.toml",
        &manifest(&[("loop1", "a"), ("loop2", "a")], ""),
    );

    let plan = sys.plan(&["--format", "json", "/m/m.toml"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_eq!(
        changed_fields(&plan.json(), "service.loop1"),
        ["unit_file", "enabled", "state"]
    );
    assert_eq!(sys.sh("test -e /etc/systemd/system/loop1.service").code, 1);
    sys.systemctl_calls();

    let first = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(first.code, 2, "{first:?}");
    let calls = sys.systemctl_calls();
    // Two unit files written in one wave: one reload for both, before either starts.
    assert_eq!(count(&calls, "daemon-reload"), 1, "{calls:#?}");
    let reload = calls.iter().position(|c| c.contains("daemon-reload"));
    let start = calls.iter().position(|c| c.contains("start "));
    assert!(reload < start, "{calls:#?}");
    for u in ["loop1", "loop2"] {
        assert_eq!(sys.property(u, "UnitFileState"), "enabled");
        assert_eq!(sys.property(u, "ActiveState"), "active");
    }

    let second = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(second.code, 0, "{second:?}");
    // A no-op run reads systemd over its bus, in-process: no systemctl at all.
    let calls = sys.systemctl_calls();
    assert!(
        calls.is_empty(),
        "a no-op run spawned systemctl: {calls:#?}"
    );
    let plan = sys.plan(&["--format", "json", "/m/m.toml"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(sys.systemctl_calls(), Vec::<String>::new());
    assert_eq!(
        resource(&plan.json(), "service.loop1")["observed"]["active_state"],
        "active",
        "the bus answered what systemd knows"
    );

    // Drift made by hand: stopped, disabled. Plan names exactly that.
    sys.sh("/usr/bin/systemctl stop loop1; /usr/bin/systemctl disable loop2");
    let plan = sys.plan(&["--format", "json", "/m/m.toml"]);
    assert_eq!(plan.code, 2);
    let report = plan.json();
    assert_eq!(changed_fields(&report, "service.loop1"), ["state"]);
    assert_eq!(changed_fields(&report, "service.loop2"), ["enabled"]);
    assert_eq!(
        resource(&report, "service.loop1")["observed"]["active_state"],
        "inactive"
    );
    assert_eq!(
        sys.property("loop1", "ActiveState"),
        "inactive",
        "plan started it"
    );
    let repair = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(repair.code, 2, "{repair:?}");
    assert_eq!(sys.property("loop1", "ActiveState"), "active");
    assert_eq!(sys.property("loop2", "UnitFileState"), "enabled");
    sys.systemctl_calls();

    // A changed unit file: one daemon-reload, one restart (a new main process), nothing else.
    let pid = sys.property("loop1", "MainPID");
    sys.write(
        "/m/m.toml",
        &manifest(&[("loop1", "b"), ("loop2", "a")], ""),
    );
    let plan = sys.plan(&["--format", "json", "/m/m.toml"]);
    assert_eq!(
        changed_fields(&plan.json(), "service.loop1"),
        ["unit_file", "restart"]
    );
    let change = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(change.code, 2, "{change:?}");
    let calls = sys.systemctl_calls();
    assert_eq!(count(&calls, "daemon-reload"), 1, "{calls:#?}");
    assert_eq!(count(&calls, "restart"), 1, "{calls:#?}");
    assert_ne!(sys.property("loop1", "MainPID"), pid);
    assert!(sys.property("loop1", "Environment").contains("WHO=b"));
    assert_eq!(sys.tend(&["apply", "/m/m.toml"]).code, 0);
}

/// A unit tend wrote that left the manifest: plan says apply would prune it (and writes nothing);
/// apply stops it, disables it, backs up and removes its unit file and drop-in, reloads systemd
/// once; a unit only enabled by tend (its file is the package's) stays, listed with why; `tend
/// restore` puts the unit file back.
#[test]
fn a_pruned_unit_is_stopped_disabled_and_removed_and_a_packaged_one_stays() {
    let sys = Booted::new();
    // A unit "a package shipped": tend only enables it.
    sys.write("/lib/systemd/system/shipped.service", &unit("p"));
    sys.sh("/usr/bin/systemctl daemon-reload");
    sys.write(
        "/m/m.toml",
        &format!(
            "{}[service.shipped]\nenabled = true\nstate = \"running\"\n\n[service.loop2]\nenabled = true\nstate = \"running\"\ndropins = {{ \"env.conf\" = \"[Service]\\nEnvironment=X=1\\n\" }}\ncontent = \'\'\'\n{}\'\'\'\n",
            manifest(&[("loop1", "a")], ""),
            unit("b")
        ),
    );
    let first = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(first.code, 2, "{first:?}");
    for u in ["loop1", "loop2", "shipped"] {
        assert_eq!(sys.property(u, "ActiveState"), "active", "{u}");
    }
    sys.write(
        "/m/m.toml",
        &format!(
            "[prune]\nkinds = [\"service\"]\n\n{}",
            manifest(&[("loop1", "a")], "")
        ),
    );
    let plan = sys.plan(&["--format", "json", "/m/m.toml"]);
    assert_eq!(
        plan.code, 2,
        "a prune to come is a pending change: {plan:?}"
    );
    let said = orphans(&plan.json(), "pruned");
    assert!(
        said.contains(&(
            "service.loop2".into(),
            "to be pruned by apply: /etc/systemd/system/loop2.service, /etc/systemd/system/loop2.service.d/env.conf".into()
        )),
        "{said:?}"
    );
    assert!(
        said.contains(&(
            "service.shipped".into(),
            "not pruned: tend did not create it (it was there before)".into()
        )),
        "{said:?}"
    );
    assert_eq!(
        sys.property("loop2", "ActiveState"),
        "active",
        "plan stopped it"
    );
    let loop2_pid = sys.property("loop2", "MainPID");
    sys.systemctl_calls();

    let apply = sys.tend(&["apply", "--format", "json", "/m/m.toml"]);
    assert_eq!(apply.code, 2, "{apply:?}");
    let pruned = apply.json()["orphans"]
        .as_array()
        .expect("orphans")
        .iter()
        .find(|o| o["address"] == "service.loop2")
        .map(|o| o["pruned"].as_str().unwrap_or_default().to_string())
        .expect("loop2 listed");
    assert!(
        pruned.starts_with("pruned: stopped loop2.service, disabled loop2.service, removed /etc/systemd/system/loop2.service (old content kept in "),
        "{pruned}"
    );
    assert!(
        pruned.ends_with("removed /etc/systemd/system/loop2.service.d, systemctl daemon-reload"),
        "{pruned}"
    );
    let calls = sys.systemctl_calls();
    assert_eq!(count(&calls, "daemon-reload"), 1, "{calls:#?}");
    assert_eq!(sys.property("loop2", "LoadState"), "not-found");
    assert_eq!(
        sys.sh("test -e /etc/systemd/system/loop2.service || test -e /etc/systemd/system/loop2.service.d || test -e /etc/systemd/system/multi-user.target.wants/loop2.service").code,
        1,
        "unit file, drop-ins and the enablement link are gone"
    );
    assert_eq!(
        sys.sh(&format!("test -d /proc/{loop2_pid}")).code,
        1,
        "loop2's process is gone"
    );
    assert_eq!(sys.property("shipped", "ActiveState"), "active");
    assert_eq!(sys.property("loop1", "ActiveState"), "active");
    // Pruned once: the next run is a no-op that lists only what stays.
    let again = sys.tend(&["apply", "--format", "json", "/m/m.toml"]);
    assert_eq!(again.code, 0, "{again:?}");
    let left: Vec<String> = again.json()["orphans"]
        .as_array()
        .expect("orphans")
        .iter()
        .filter_map(|o| o["address"].as_str().map(String::from))
        .collect();
    assert_eq!(left, ["service.shipped"]);
    // The unit file comes back with restore.
    let back = sys.tend(&["restore", "/etc/systemd/system/loop2.service"]);
    assert_eq!(back.code, 0, "{back:?}");
    assert!(sys
        .sh("cat /etc/systemd/system/loop2.service")
        .stdout
        .contains("WHO=b"));
}

/// A unit file edited behind systemd's back (no daemon-reload) is read over the bus as
/// `NeedDaemonReload` and planned as one daemon-reload; apply makes it, and the next run is a
/// no-op. A service notified with `refresh = "reload"` is reloaded, not restarted (same main
/// process).
#[test]
fn a_stale_unit_is_reloaded_and_a_reload_refresh_keeps_the_process() {
    let sys = Booted::new();
    let shipped = |env: &str| unit(env).replace("[Install]", "ExecReload=/bin/true\n\n[Install]");
    sys.write("/lib/systemd/system/loop3.service", &shipped("a"));
    sys.sh("/usr/bin/systemctl daemon-reload");
    let m = r#"
[file.conf]
path = "/etc/loop3.conf"
content = "one\n"
notify = ["service.loop3"]

[service.loop3]
enabled = true
state = "running"
refresh = "reload"
"#;
    sys.write("/m/m.toml", m);
    let first = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(first.code, 2, "{first:?}");
    assert_eq!(sys.property("loop3", "ActiveState"), "active");
    assert_eq!(sys.tend(&["apply", "/m/m.toml"]).code, 0);

    // Edited by hand, not reloaded: systemd says so, over the bus, and plan names exactly that.
    sys.write("/lib/systemd/system/loop3.service", &shipped("b"));
    assert_eq!(sys.property("loop3", "NeedDaemonReload"), "yes");
    sys.systemctl_calls();
    let plan = sys.plan(&["--format", "json", "/m/m.toml"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_eq!(
        changed_fields(&plan.json(), "service.loop3"),
        ["daemon_reload"]
    );
    assert_eq!(
        sys.systemctl_calls(),
        Vec::<String>::new(),
        "plan asked over the bus"
    );
    let repair = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(repair.code, 2, "{repair:?}");
    assert_eq!(count(&sys.systemctl_calls(), "daemon-reload"), 1);
    assert_eq!(sys.property("loop3", "NeedDaemonReload"), "no");
    assert_eq!(sys.tend(&["apply", "/m/m.toml"]).code, 0);

    // Notified: reloaded, the same main process.
    let pid = sys.property("loop3", "MainPID");
    sys.write("/m/m.toml", &m.replace("one", "two"));
    let notified = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(notified.code, 2, "{notified:?}");
    let calls = sys.systemctl_calls();
    assert_eq!(count(&calls, "reload"), 1, "{calls:#?}");
    assert_eq!(count(&calls, "restart"), 0, "{calls:#?}");
    assert_eq!(sys.property("loop3", "MainPID"), pid);
}

#[test]
fn notified_services_restart_once_and_masked_ones_stay_down() {
    let sys = Booted::new();
    let extra = r#"
[file.conf]
path = "/etc/loop.conf"
content = "one\n"
notify = ["service.loop1"]

[service.unwanted]
unit = "loop2.service"
enabled = "masked"
"#;
    // Shipped by a "package" (in /lib): what masking is for.
    sys.write("/lib/systemd/system/loop2.service", &unit("x"));
    sys.sh("/usr/bin/systemctl daemon-reload; /usr/bin/systemctl enable --now loop2");
    sys.write("/m/m.toml", &manifest(&[("loop1", "a")], extra));
    let first = sys.tend(&["apply", "--format", "json", "/m/m.toml"]);
    assert_eq!(first.code, 2, "{}\n{}", first.stderr, first.stdout);
    let report = first.json();
    // Started by this very run: the notification does not restart it again.
    let notes = resource(&report, "service.loop1")["notes"].to_string();
    assert!(notes.contains("not restarted again"), "{report:#}");
    assert_eq!(sys.property("loop2", "UnitFileState"), "masked");
    assert_eq!(sys.property("loop2", "ActiveState"), "inactive");
    assert_eq!(sys.tend(&["apply", "/m/m.toml"]).code, 0);

    let pid = sys.property("loop1", "MainPID");
    sys.systemctl_calls();
    sys.write(
        "/m/m.toml",
        &manifest(&[("loop1", "a")], &extra.replace("one", "two")),
    );
    let second = sys.tend(&["apply", "/m/m.toml"]);
    assert_eq!(second.code, 2, "{second:?}");
    assert_eq!(count(&sys.systemctl_calls(), "restart"), 1);
    assert_ne!(sys.property("loop1", "MainPID"), pid);

    // A unit systemd does not know, with no unit file: a plain failure, named.
    sys.write("/m/bad.toml", "[service.nosuch]\nenabled = true\n");
    let bad = sys.plan(&["/m/bad.toml"]);
    assert_eq!(bad.code, 4, "{bad:?}");
    assert!(
        bad.stdout.contains("systemd knows no unit nosuch.service"),
        "{bad:?}"
    );
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_timer_installs_runs_reports_and_removes_cleanly() {
    let sys = Booted::new();
    sys.write(
        "/etc/tend/manifest.toml",
        "[file.motd]\npath = \"/etc/motd\"\ncontent = \"managed\\n\"\n",
    );
    let install_args = [
        "timer",
        "install",
        "--splay",
        "7min",
        "--metrics",
        "/var/lib/tend-metrics/tend.prom",
    ];
    let install = sys.tend(&install_args);
    assert_eq!(install.code, 2, "{install:?}");
    assert!(install.stdout.contains("enabled tend.timer"), "{install:?}");
    assert!(
        install
            .stderr
            .contains("/var/lib/tend-metrics does not exist"),
        "{install:?}"
    );
    assert_eq!(sys.sh("mkdir /var/lib/tend-metrics").code, 0);
    let again = sys.tend(&install_args);
    assert_eq!(again.code, 0, "installing twice changes nothing: {again:?}");

    let timers = sys
        .sh("systemctl list-timers --all --no-pager tend.timer")
        .stdout;
    assert!(
        timers.contains("tend.timer") && timers.contains("tend.service"),
        "{timers}"
    );
    assert_eq!(sys.property("tend.timer", "RandomizedDelayUSec"), "7min");
    assert_eq!(sys.property("tend.timer", "FixedRandomDelay"), "yes");
    assert_eq!(sys.property("tend.timer", "Persistent"), "yes");
    let verify = sys.sh(
        "systemd-analyze verify /etc/systemd/system/tend.service /etc/systemd/system/tend.timer 2>&1",
    );
    assert_eq!(verify.code, 0, "{verify:?}");
    assert_eq!(verify.stdout.trim(), "", "{verify:?}");
    let status = sys.tend(&["timer", "status"]);
    assert!(status.stdout.contains("next run: "), "{status:?}");
    assert!(
        status.stdout.contains("last run: none recorded"),
        "{status:?}"
    );

    // A run with drift: it converges, exits 2, and systemd calls that success.
    let run = sys.sh("systemctl start tend.service");
    assert_eq!(
        run.code,
        0,
        "{run:?}\n{}",
        sys.sh("journalctl -u tend.service --no-pager").stdout
    );
    assert_eq!(sys.property("tend.service", "Result"), "success");
    assert_eq!(sys.property("tend.service", "ExecMainStatus"), "2");
    assert_eq!(sys.sh("cat /etc/motd").stdout, "managed\n");
    let last = sys.sh("cat /var/lib/tend/last-run.json").stdout;
    let last: serde_json::Value = serde_json::from_str(&last).expect("last-run.json");
    assert_eq!(last["exit_code"], 2);
    let metrics = sys.sh("cat /var/lib/tend-metrics/tend.prom").stdout;
    assert!(
        metrics.contains("tend_last_run_exit_code{mode=\"apply\"} 2"),
        "{metrics}"
    );
    // And the next one is a no-op: exit 0.
    assert_eq!(sys.sh("systemctl start tend.service").code, 0);
    assert_eq!(sys.property("tend.service", "ExecMainStatus"), "0");
    let status = sys.tend(&["timer", "status"]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("exit 0"), "{status:?}");

    // A broken manifest: the unit fails, and status says so.
    sys.write("/etc/tend/manifest.toml", "[file.motd\n");
    let broken = sys.sh("systemctl start tend.service");
    assert_ne!(broken.code, 0);
    assert_eq!(sys.property("tend.service", "Result"), "exit-code");
    assert_eq!(sys.property("tend.service", "ExecMainStatus"), "1");
    let status = sys.tend(&["timer", "status"]);
    assert_eq!(status.code, 4, "{status:?}");
    // It says why, not only how many.
    assert!(status.stdout.contains("could not start: "), "{status:?}");

    let remove = sys.tend(&["timer", "remove"]);
    assert_eq!(remove.code, 2, "{remove:?}");
    assert_eq!(
        sys.sh("ls /etc/systemd/system/ | grep -c tend")
            .stdout
            .trim(),
        "0"
    );
    assert_eq!(
        sys.sh("ls /etc/systemd/system/timers.target.wants/ | grep -c tend")
            .stdout
            .trim(),
        "0"
    );
    let timers = sys.sh("systemctl list-timers --all --no-pager").stdout;
    assert!(!timers.contains("tend.timer"), "{timers}");
    // What is left is the package's own copy, disabled as shipped.
    assert_eq!(sys.property("tend.timer", "UnitFileState"), "disabled");
    assert_eq!(sys.tend(&["timer", "remove"]).code, 0);
    assert_eq!(sys.tend(&["timer", "status"]).code, 3);
}

#[test]
fn stopping_the_service_mid_run_is_graceful_and_leaves_no_process() {
    let sys = Booted::new();
    sys.write(
        "/etc/tend/manifest.toml",
        "[exec.slow]\ncommand = \"sleep 300\"\ncreates = \"/tmp/never\"\ntimeout = 600\n",
    );
    assert_eq!(sys.tend(&["timer", "install"]).code, 2);
    sys.sh("systemctl start --no-block tend.service");
    wait_for("the slow command", || sys.sh("pgrep -x sleep").code == 0);
    let started = Instant::now();
    let stop = sys.sh("systemctl stop tend.service");
    assert_eq!(stop.code, 0, "{stop:?}");
    // tend's own stop (SIGTERM to the group, SIGKILL after 5 s), far inside TimeoutStopSec.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sys.sh("pgrep -x sleep").code,
        1,
        "the command outlived tend"
    );
    let last = sys.sh("cat /var/lib/tend/last-run.json").stdout;
    let last: serde_json::Value = serde_json::from_str(&last).expect("last-run.json");
    assert_eq!(last["interrupted"], true, "{last:#}");
    assert_eq!(sys.property("tend.service", "ExecMainStatus"), "4");
}

/// Where no systemd runs (an image being built): unit files and enablement are applied offline,
/// the way `systemctl --root` does it, and whether a unit runs is an honest unknown.
#[test]
fn offline_under_root_enablement_is_applied_and_running_is_unknown() {
    let sb = Sandbox::debian();
    let with_dropin = |nice: u8| {
        manifest(&[("loop1", "a")], "").replace(
            "[service.loop1]\n",
            &format!("[service.loop1]\ndropins = {{ \"limits.conf\" = \"[Service]\\nNice={nice}\\n\" }}\n"),
        )
    };
    sb.write_manifest(&with_dropin(5));
    let first = sb.apply();
    assert_eq!(first.code, 2, "{first:?}");
    assert!(sb
        .path("/etc/systemd/system/multi-user.target.wants/loop1.service")
        .symlink_metadata()
        .is_ok());
    // The converged root's no-op reads enablement from the unit files: no systemctl.
    let root = sb.root();
    let manifest = sb.manifest_path();
    let (noop, programs) = tend_tests::run_counting_programs(&[
        "apply",
        manifest.to_str().expect("utf8"),
        "--root",
        root.to_str().expect("utf8"),
    ]);
    assert_eq!(noop.code, 0, "{noop:?}");
    assert_eq!(programs, Vec::<String>::new(), "a no-op apply ran programs");
    let plan = sb.tend("plan", &["--format", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let r = plan.json();
    let observed = &resource(&r, "service.loop1")["observed"];
    assert_eq!(observed["unit_file_state"], "enabled");
    assert_eq!(observed["active_state"], "unknown: systemd is not running");
    let human = sb.tend("plan", &["-v"]);
    assert!(
        human
            .stdout
            .contains("whether it runs is unknown: systemd is not running here"),
        "{human:?}"
    );
    std::fs::remove_file(sb.path("/etc/systemd/system/multi-user.target.wants/loop1.service"))
        .expect("rm");
    let plan = sb.tend("plan", &["--format", "json"]);
    assert_eq!(changed_fields(&plan.json(), "service.loop1"), ["enabled"]);
    assert_eq!(sb.apply().code, 2);
    // The drop-in: written beside the unit, and an edit by hand is drift named after it.
    let dropin = "/etc/systemd/system/loop1.service.d/limits.conf";
    assert_eq!(sb.read(dropin), "[Service]\nNice=5\n");
    sb.write(dropin, "[Service]\nNice=0\n");
    let plan = sb.tend("plan", &["--format", "json"]);
    assert_eq!(
        changed_fields(&plan.json(), "service.loop1"),
        ["dropin limits.conf"]
    );
    sb.write_manifest(&with_dropin(7));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read(dropin), "[Service]\nNice=7\n");
    assert_eq!(sb.tend("plan", &[]).code, 0);

    // The timer baked into an image: written under the root, enabled offline, removed cleanly.
    let root = sb.root();
    let root = root.to_str().expect("utf8");
    let install = tend_tests::run(&["timer", "install", "--root", root], &[]);
    assert_eq!(install.code, 2, "{install:?}");
    let service = sb.read("/etc/systemd/system/tend.service");
    assert!(
        service.contains("ExecStart=/usr/bin/tend apply --lock-wait 600 /etc/tend/manifest.toml"),
        "{service}"
    );
    assert!(sb
        .path("/etc/systemd/system/timers.target.wants/tend.timer")
        .symlink_metadata()
        .is_ok());
    // A fleet host's timer runs `tend pull`.
    let fleet = tend_tests::run(
        &[
            "timer",
            "install",
            "--root",
            root,
            "--pull",
            "git://git.example/policy",
            "--allowed-signers",
            "/etc/tend/allowed_signers",
            "--rollout-window",
            "2h",
        ],
        &[],
    );
    assert_eq!(fleet.code, 2, "{fleet:?}");
    let service = sb.read("/etc/systemd/system/tend.service");
    assert!(
        service.contains("ExecStart=/usr/bin/tend pull --lock-wait 600 --url git://git.example/policy --allowed-signers /etc/tend/allowed_signers --rollout-window 7200s\n"),
        "{service}"
    );
    assert!(service.contains("\nTimeoutStartSec=7200s\n"), "{service}");
    // An audit timer beside it: its own units, plan only, no lock to wait for.
    let audit = tend_tests::run(&["timer", "install", "--root", root, "--plan"], &[]);
    assert_eq!(audit.code, 2, "{audit:?}");
    let audit_service = sb.read("/etc/systemd/system/tend-audit.service");
    assert!(
        audit_service.contains("ExecStart=/usr/bin/tend plan /etc/tend/manifest.toml\n"),
        "{audit_service}"
    );
    assert!(sb
        .read("/etc/systemd/system/tend-audit.timer")
        .contains("Unit=tend-audit.service"));
    assert!(sb
        .path("/etc/systemd/system/timers.target.wants/tend-audit.timer")
        .symlink_metadata()
        .is_ok());
    assert_eq!(
        sb.read("/etc/systemd/system/tend.service"),
        service,
        "the converging timer is left as it is"
    );
    // `timer install --pull` of the fleet's policy, with more flags.
    let pull_install = |extra: &[&str]| {
        let mut args = vec![
            "timer",
            "install",
            "--root",
            root,
            "--pull",
            "git://git.example/policy",
            "--allowed-signers",
            "/etc/tend/allowed_signers",
        ];
        args.extend_from_slice(extra);
        tend_tests::run(&args, &[])
    };
    let audit_pull = pull_install(&["--plan"]);
    assert_eq!(audit_pull.code, 2, "{audit_pull:?}");
    assert!(sb.read("/etc/systemd/system/tend-audit.service").contains(
        "ExecStart=/usr/bin/tend pull --plan --lock-wait 600 --url git://git.example/policy"
    ));
    // A role's manifest inside the policy repository.
    let role = pull_install(&["--manifest", "roles/web.toml"]);
    assert_eq!(role.code, 2, "{role:?}");
    assert!(sb
        .read("/etc/systemd/system/tend.service")
        .contains("--allowed-signers /etc/tend/allowed_signers --manifest roles/web.toml\n"));
    let outside = pull_install(&["--manifest", "../web.toml"]);
    assert_eq!(outside.code, 1, "{outside:?}");
    assert_eq!(
        tend_tests::run(&["timer", "remove", "--root", root, "--plan"], &[]).code,
        2
    );
    assert!(!sb.path("/etc/systemd/system/tend-audit.service").exists());
    assert!(sb.path("/etc/systemd/system/tend.service").exists());
    // No allowed signers, none in pull.toml: every run would refuse; so does the install.
    let unsigned = &[
        "timer",
        "install",
        "--root",
        root,
        "--pull",
        "git://git.example/policy",
    ];
    let refused = tend_tests::run(unsigned, &[]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("no allowed signers"), "{refused:?}");
    let insecure = tend_tests::run(&[&unsigned[..], &["--insecure-unsigned"]].concat(), &[]);
    assert_eq!(insecure.code, 2, "{insecure:?}");
    assert!(sb
        .read("/etc/systemd/system/tend.service")
        .contains("--url git://git.example/policy --insecure-unsigned\n"));
    let remove = tend_tests::run(&["timer", "remove", "--root", root], &[]);
    assert_eq!(remove.code, 2, "{remove:?}");
    assert!(!sb.path("/etc/systemd/system/tend.service").exists());
    assert!(sb
        .path("/etc/systemd/system/timers.target.wants/tend.timer")
        .symlink_metadata()
        .is_err());
}

#[test]
fn service_fields_are_checked_at_load() {
    let sb = Sandbox::new();
    for (text, needle) in [
        (
            "[service.x]\nunit = \"-x.service\"\n",
            "is not a systemd unit name",
        ),
        (
            "[service.x]\nenabled = \"masked\"\nstate = \"running\"\n",
            "masked and also asked to be running",
        ),
        ("[service.x]\nenabled = \"yes\"\n", "enabled"),
        (
            "[service.x]\ndropins = { \"../x.conf\" = \"\" }\n",
            "is not NAME.conf",
        ),
    ] {
        sb.write_manifest(text);
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{text}: {r:?}");
        assert!(r.stderr.contains(needle), "{text}: {}", r.stderr);
    }
}

/// Every run leaves its records in the journal, read back with `journalctl -o json` field by
/// field: one per resource not in sync, one per run; a secret's value never in them.
#[test]
fn each_run_leaves_records_in_journald_that_name_what_drifted_and_why() {
    let sys = Booted::new();
    sys.write(
        "/etc/tend/manifest.toml",
        r#"
[file.motd]
path = "/etc/motd"
content = "managed\n"

[file.token]
path = "/etc/token"
content = "token={{ secret('api_token') }}\n"

[exec.broken]
command = ["sh", "-c", "echo boom >&2; exit 3"]
creates = "/nonexistent-never"
"#,
    );
    let run = sys.tend(&["apply"]);
    assert_eq!(run.code, 6, "{run:?}");
    let token = sys.sh("cat /etc/token").stdout;
    let secret = token.trim().trim_start_matches("token=").to_string();
    assert!(secret.len() >= 16, "{token}");
    let query = |filter: &str| -> Vec<serde_json::Value> {
        sys.sh("journalctl --sync");
        sys.sh(&format!(
            "journalctl -o json --no-pager SYSLOG_IDENTIFIER=tend {filter}"
        ))
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal JSON"))
        .collect()
    };
    let changed = query("TEND_STATUS=changed");
    let addresses: Vec<&str> = changed
        .iter()
        .filter_map(|r| r["TEND_RESOURCE"].as_str())
        .collect();
    assert_eq!(addresses, ["file.motd", "file.token"], "{changed:#?}");
    let motd = &changed[0];
    assert_eq!(motd["TEND_KIND"], "file");
    assert_eq!(motd["TEND_MODE"], "apply");
    assert_eq!(motd["TEND_FIELDS"], "content", "Debian ships an /etc/motd");
    assert_eq!(motd["PRIORITY"], "5");
    assert_eq!(motd["MESSAGE_ID"], "4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f62");
    let failed = query("TEND_STATUS=failed");
    let broken = failed
        .iter()
        .find(|r| r["TEND_RESOURCE"] == "exec.broken")
        .expect("a record for exec.broken");
    assert_eq!(broken["PRIORITY"], "3");
    assert_eq!(broken["TEND_REASON_CLASS"], "failed");
    assert!(
        broken["MESSAGE"]
            .as_str()
            .unwrap_or_default()
            .contains("exit 3"),
        "{broken:#}"
    );
    let runs = query("MESSAGE_ID=4c2f3b0e8d0a4c7e9f6a1b2c3d4e5f60");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["TEND_EXIT_CODE"], "6");
    assert_eq!(runs[0]["TEND_RUN_ID"], motd["TEND_RUN_ID"], "one run id");
    // A plan of the same host: the drift it finds, with its own run id.
    sys.sh("echo tampered > /etc/motd");
    // (exec.broken would run again: drift too, not a failure a plan can know.)
    assert_eq!(sys.tend(&["plan"]).code, 2);
    let drift = query("TEND_MODE=plan TEND_RESOURCE=file.motd");
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0]["TEND_STATUS"], "would_change");
    assert_eq!(drift[0]["TEND_FIELDS"], "content");
    assert_ne!(drift[0]["TEND_RUN_ID"], motd["TEND_RUN_ID"]);
    let all = sys
        .sh("journalctl -o json --no-pager SYSLOG_IDENTIFIER=tend")
        .stdout;
    assert!(!all.contains(&secret), "a secret reached the journal");
}

/// Accounts on a booted Debian, through its own shadow-utils (no --root): what `id` and
/// `getent` say after apply is what the manifest says, and a second run starts no process.
#[test]
fn users_groups_and_keys_converge_on_a_booted_debian() {
    let sys = Booted::new();
    sys.write(
        "/etc/tend/manifest.toml",
        r#"
[group.ops]
name = "ops"
gid = 4700

[user.alice]
name = "alice"
uid = 4701
groups = ["ops"]
shell = "/bin/bash"
comment = "Alice"

[authorized_keys.alice]
user = "alice"
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHV3bXWqsoSRKyLoAq/qOgoeKhL9Dz5mfTNZoTB0Ysrs alice@laptop"]
exclusive = true

[sysctl.swappiness]
key = "vm.swappiness"
value = 10
persist = true
"#,
    );
    // The live value may be read-only in a container: only the persisted file is asked for.
    let run = sys.tend(&[
        "apply",
        "--only",
        "group.ops,user.alice,authorized_keys.alice",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        sys.sh("id alice").stdout.trim(),
        "uid=4701(alice) gid=4701(alice) groups=4701(alice),4700(ops)"
    );
    assert_eq!(
        sys.sh("getent passwd alice").stdout.trim(),
        "alice:x:4701:4701:Alice:/home/alice:/bin/bash"
    );
    assert_eq!(
        sys.sh("stat -c '%a %U' /home/alice/.ssh /home/alice/.ssh/authorized_keys")
            .stdout
            .trim(),
        "700 alice\n600 alice"
    );
    let again = sys.tend(&[
        "plan",
        "--only",
        "group.ops,user.alice,authorized_keys.alice",
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    // Changed by hand with the host's own tool: named, repaired.
    sys.sh("usermod -s /bin/sh alice");
    let plan = sys
        .tend(&["plan", "--only", "user.alice", "--format", "json"])
        .json();
    assert_eq!(changed_fields(&plan, "user.alice"), ["shell"]);
    assert_eq!(sys.tend(&["apply", "--only", "user.alice"]).code, 2);
    assert_eq!(
        sys.sh("getent passwd alice | cut -d: -f7").stdout.trim(),
        "/bin/bash"
    );
}
