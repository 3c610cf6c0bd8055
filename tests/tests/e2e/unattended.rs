//! What the users who never watch a run see: exit codes, the record of a run that could not
//! start, metrics a real `promtool` accepts, a graceful stop on SIGTERM that leaves no process
//! behind, and the type traps a manifest or a `--var` could fall into.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tend_tests::{changed_fields, files_manifest, resource, run, tend_bin, Sandbox};

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let sb = Sandbox::new();
    sb.write_manifest("[vars]\nport = \"80\"\n");
    let m = sb.manifest_path();
    let m = m.to_str().expect("utf8");
    for args in [
        vec!["plna"],
        vec!["plan", "--bogus"],
        vec![],
        vec!["apply", m, "--lock-wait", "-1"],
        vec!["plan", m, "--var", "port"],
        vec!["plan", m, "--jobs", "100000"],
    ] {
        let r = run(&args, &[]);
        assert_eq!(r.code, 1, "tend {args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty(), "tend {args:?} says why");
    }
    for args in [vec!["--help"], vec!["--version"], vec!["plan", "--help"]] {
        assert_eq!(run(&args, &[]).code, 0, "tend {args:?}");
    }
}

#[test]
fn a_run_that_cannot_start_still_leaves_its_record() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n");
    let report = sb.dir.path().join("report.json");
    let metrics = sb.dir.path().join("tend.prom");
    let args = [
        "--report",
        report.to_str().expect("utf8"),
        "--metrics",
        metrics.to_str().expect("utf8"),
    ];
    assert_eq!(sb.tend("apply", &args).code, 2);
    assert!(std::fs::read_to_string(&metrics)
        .expect("metrics")
        .contains("tend_last_run_exit_code{mode=\"apply\"} 2"));
    // The manifest breaks: the metrics must not keep saying 2.
    sb.write_manifest("[file.motd]\npath = \"/etc/motd\"\ncontnt = \"hi\\n\"\n");
    let r = sb.tend("apply", &args);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("contnt"), "{}", r.stderr);
    let text = std::fs::read_to_string(&metrics).expect("metrics");
    assert!(
        text.contains("tend_last_run_exit_code{mode=\"apply\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tend_last_run_started{mode=\"apply\"} 0"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(json["exit_code"], 1);
    assert!(json["error"].as_str().expect("error").contains("contnt"));
    let last: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.state_dir().join("last-run.json")).expect("last-run"),
    )
    .expect("json");
    assert_eq!(last["exit_code"], 1);
    assert_eq!(last["error_class"], "manifest_invalid", "{last:#}");
    // Each way of not starting says which it is: a selector that matches nothing is usage.
    sb.write_manifest("[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n");
    let r = sb.tend("apply", &["--only", "file.nope"]);
    assert_eq!(r.code, 1);
    let last: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.state_dir().join("last-run.json")).expect("last-run"),
    )
    .expect("json");
    assert_eq!(last["error_class"], "usage", "{last:#}");
}

fn promtool_accepts(file: &std::path::Path) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).expect("open"))
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool rejects {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plan_and_apply_metrics_pass_promtool_and_count_drift_by_kind() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[file.a]\npath = \"/etc/a\"\ncontent = \"a\\n\"\n\n[file.b]\npath = \"/etc/b\"\ncontent = \"b\\n\"\n\n\
         [directory.d]\npath = \"/srv/d\"\n",
    );
    let metrics = sb.dir.path().join("plan.prom");
    let m = metrics.to_str().expect("utf8");
    assert_eq!(sb.tend("plan", &["--metrics", m]).code, 2);
    let text = std::fs::read_to_string(&metrics).expect("metrics");
    assert!(
        text.contains("tend_pending_changes{mode=\"plan\",kind=\"file\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("tend_pending_changes{mode=\"plan\",kind=\"directory\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tend_resources_by_status{mode=\"plan\",status=\"would_change\"} 3"),
        "{text}"
    );
    promtool_accepts(&metrics);
    let applied = sb.dir.path().join("apply.prom");
    assert_eq!(
        sb.tend("apply", &["--metrics", applied.to_str().expect("utf8")])
            .code,
        2
    );
    promtool_accepts(&applied);
    assert_eq!(sb.tend("plan", &["--metrics", m]).code, 0);
    promtool_accepts(&metrics);
}

#[test]
fn an_unrun_guard_is_unknown_not_drift() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[exec.migrate]\ncommand = [\"true\"]\nunless = [\"test\", \"-e\", \"/nonexistent\"]\n",
    );
    let r = sb.tend("plan", &["--format", "json"]);
    let report = r.json();
    let e = resource(&report, "exec.migrate");
    assert_eq!(e["status"], "unknown");
    assert_eq!(e["reason_class"], "guard_not_run");
    assert_eq!(
        r.code, 0,
        "an audit of a host with nothing to change exits 0"
    );
    assert_eq!(report["summary"]["unknown"], 1);
}

#[test]
fn sigterm_ends_the_run_gracefully_and_leaves_no_process_behind() {
    let sb = Sandbox::new();
    let marker = sb.path("/marker");
    sb.write_manifest(&format!(
        "[exec.slow]\ncommand = [\"sh\", \"-c\", \"sleep 30; touch {m}\"]\ncreates = \"/marker\"\ntimeout = 60\n\n\
         [file.after]\npath = \"/etc/after\"\ncontent = \"x\"\nrequires = [\"exec.slow\"]\n",
        m = marker.display()
    ));
    let report = sb.dir.path().join("report.json");
    let child = sb
        .command("apply", &["--report", report.to_str().expect("utf8")])
        // Its own session, so the test can look for every process of it afterwards.
        .process_group(0)
        .spawn()
        .expect("spawn tend");
    let pgid = child.id() as i32;
    // Wait until the exec's sleep runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Command::new("pgrep")
        .args(["-f", &format!("sleep 30; touch {}", marker.display())])
        .output()
        .expect("pgrep")
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the exec never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let out = child.wait_with_output().expect("wait");
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 4 || code == 6, "exit {code}");
    std::thread::sleep(Duration::from_secs(1));
    let left = Command::new("pgrep")
        .args(["-f", &format!("sleep 30; touch {}", marker.display())])
        .output()
        .expect("pgrep");
    assert!(
        !left.status.success(),
        "a process of the run outlived it: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(json["interrupted"], true);
    assert_eq!(resource(&json, "file.after")["status"], "skipped");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Apply (interrupted)"), "{stdout}");
    assert!(
        !marker.exists(),
        "the killed command went on changing the host"
    );
    // The next run converges.
    sb.write_manifest("[file.after]\npath = \"/etc/after\"\ncontent = \"x\"\n");
    assert_eq!(sb.apply().code, 2);
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let sb = Sandbox::new();
    let mut manifest = String::new();
    for i in 0..200 {
        manifest.push_str(&format!(
            "[file.f{i}]\npath = \"/etc/f{i}\"\ncontent = \"{i}\\n\"\n"
        ));
    }
    sb.write_manifest(&manifest);
    let root = sb.root();
    let script = format!(
        "{} plan {} --root {} | head -1; echo \"status ${{PIPESTATUS[0]}}\"",
        tend_bin().display(),
        sb.manifest_path().display(),
        root.display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("status 2"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn decimal_modes_and_mistyped_vars_are_errors_that_say_what_to_write() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\nmode = 644\n");
    let r = sb.plan();
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("is a decimal integer (as a number it is mode 1204)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("mode = \"0644\" or mode = 0o644"),
        "{}",
        r.stderr
    );
    // TOML's own octal is a mode as written, the same as the quoted string, and stays so
    // through the stored parse of the manifest (apply stores it; the next runs decode it).
    sb.write_manifest("[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\nmode = 0o640\n");
    let r = sb.apply();
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(sb.mode("/etc/f"), 0o640);
    for _ in 0..2 {
        let r = sb.plan();
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    // Drift in the mode: plan names exactly that field, and writes nothing.
    sb.set_mode("/etc/f", 0o644);
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 2);
    assert_eq!(changed_fields(&plan, "file.f"), ["mode"]);
    assert_eq!(sb.mode("/etc/f"), 0o644, "plan wrote nothing");
    sb.write_manifest("[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\nmode = 0o17777\n");
    let r = sb.plan();
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not a mode"), "{}", r.stderr);
    // A mode string is three or four octal digits, as chmod reads them.
    for (mode, ok) in [
        ("644", true),
        ("0644", true),
        ("4755", true),
        ("+644", false),
        ("0o644", false),
        ("0x1a4", false),
        ("64", false),
        ("00644", false),
        ("0648", false),
    ] {
        sb.write_manifest(&format!(
            "[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\nmode = \"{mode}\"\n"
        ));
        let r = sb.tend("check", &[]);
        assert_eq!(r.code == 0, ok, "mode {mode:?}: {}", r.stderr);
        if !ok {
            assert!(
                r.stderr.contains("three or four digits 0-7"),
                "{}",
                r.stderr
            );
        }
    }
    // A secret in a mode is refused without repeating it.
    sb.write_manifest(
        "[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\nmode = \"{{ secret('m', 12) }}\"\n",
    );
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("holds a secret value"), "{}", r.stderr);

    sb.write_manifest(
        "[vars]\ndebug = true\n\n[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\nwhen = \"{{ debug }}\"\n",
    );
    let r = sb.tend("plan", &["--var", "debug=false", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(resource(&r.json(), "file.f")["status"], "excluded");
    let r = sb.tend("plan", &["--var", "debug=maybe"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is a boolean"), "{}", r.stderr);
}

#[test]
fn an_unknown_owner_fails_in_plan_not_at_apply() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\nowner = \"no-such-user\"\n");
    let r = sb.tend("plan", &["--format", "json"]);
    assert_eq!(r.code, 4);
    let report = r.json();
    let f = resource(&report, "file.f");
    assert_eq!(f["status"], "failed");
    assert!(f["error"]
        .as_str()
        .expect("error")
        .contains("no user named \"no-such-user\""));
}

#[test]
fn a_fact_the_root_does_not_have_is_undefined_and_said() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.f]\npath = \"/etc/f\"\ncontent = \"{{ facts.os.codename }}\"\n");
    let r = sb.plan();
    assert_eq!(
        r.code, 1,
        "an empty fact must not render as an empty string"
    );
    assert!(
        r.stderr.contains("etc/os-release (facts.os.*)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("facts.os.codename"), "{}", r.stderr);
    sb.write("/etc/os-release", "ID=debian\nVERSION_CODENAME=bookworm\n");
    let r = sb.tend("plan", &["--format", "json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.contains("bookworm"));
}

#[test]
fn an_apply_whose_manifest_does_not_load_leaves_no_state_directory() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[file.f]\npath = \"/etc/f\"\ncontent = \"{{ secret('k', 16) }}\"\nmoed = \"0600\"\n",
    );
    let r = sb.apply();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        !sb.state_dir().exists(),
        "a failed load created the state directory"
    );
    // Fixed, the secret is generated once and kept.
    sb.write_manifest(
        "[file.f]\npath = \"/etc/f\"\ncontent = \"{{ secret('k', 16) }}\"\nmode = \"0600\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    let first = sb.read("/etc/f");
    assert_eq!(first.len(), 16);
    assert_eq!(
        std::fs::read_to_string(sb.state_dir().join("secrets/k")).expect("stored"),
        first
    );
    assert_eq!(sb.apply().code, 0);
    assert_eq!(sb.read("/etc/f"), first);
}

#[test]
fn apply_prints_each_wave_as_it_finishes_and_a_heartbeat_while_busy() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    sb.write_manifest(
        "[file.first]\npath = \"/etc/first\"\ncontent = \"1\"\n\n\
         [exec.slow]\ncommand = \"sleep 4; touch \\\"$TEND_ROOT/slow\\\"\"\ncreates = \"/slow\"\nrequires = [\"file.first\"]\n",
    );
    let root = sb.root();
    let mut child = Command::new(tend_bin())
        .args([
            "apply",
            sb.manifest_path().to_str().expect("utf8"),
            "--root",
            root.to_str().expect("utf8"),
        ])
        .env("NO_COLOR", "1")
        .env("TEND_HEARTBEAT_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf8");
    assert!(first.starts_with("+ file.first"), "{first}");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the first wave's line came only when the run had ended"
    );
    let rest: Vec<String> = lines.map(|l| l.expect("utf8")).collect();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        rest.iter()
            .any(|l| l.starts_with("+ exec.slow") || l.starts_with("~ exec.slow")),
        "{rest:?}"
    );
    assert!(
        rest.last()
            .expect("summary")
            .starts_with("Apply: 2 changed"),
        "{rest:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("still applying after"), "{stderr}");
    assert!(stderr.contains("exec.slow ("), "{stderr}");
}

#[test]
fn shipped_examples_converge_and_then_plan_exits_0() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    for name in ["motd.toml", "app-config.toml"] {
        let sb = Sandbox::new();
        sb.write(
            "/etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        );
        sb.write("/etc/hostname", "web1\n");
        let manifest = examples.join(name);
        let manifest = manifest.to_str().expect("utf8");
        let first = sb.tend_with_manifest(manifest, "apply", &[]);
        assert_eq!(first.code, 2, "{name}: {}{}", first.stdout, first.stderr);
        assert!(!first.stderr.contains("WARN"), "{name}: {}", first.stderr);
        let plan = sb.tend_with_manifest(manifest, "plan", &[]);
        assert_eq!(plan.code, 0, "{name}: {}{}", plan.stdout, plan.stderr);
    }
}

/// A stop that comes while the run is still loading its manifest, which then fails to load:
/// the stop is taken (said on stderr) rather than killing the process on the spot, and the run
/// still leaves its record of a start that failed — exit 1, the error, marked interrupted.
#[test]
fn a_stop_while_a_bad_manifest_loads_still_leaves_the_failed_start_record() {
    let sb = Sandbox::new();
    // Long enough to load (over a second in a debug build) that the stop lands during it.
    let mut manifest = files_manifest(40_000);
    manifest.push_str("[file.bad]\npath = \"/srv/bad\"\ncolour = \"red\"\n");
    sb.write_manifest(&manifest);
    let report = sb.dir.path().join("report.json");
    let child = sb
        .command("plan", &["--report", report.to_str().expect("utf8")])
        .spawn()
        .expect("spawn tend");
    // Once the main thread holds the stop signals (SigBlk has SIGTERM, bit 15), it is loading.
    let status = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("SigBlk:").map(|h| h.trim().to_string()))
            })
            .and_then(|h| u64::from_str_radix(&h, 16).ok())
            .is_some_and(|mask| mask & (1 << 14) != 0);
        if held {
            break;
        }
        assert!(Instant::now() < deadline, "tend never started loading");
        std::thread::sleep(Duration::from_millis(2));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("SIGTERM while the run was starting"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the failed-start record"))
            .expect("json");
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["interrupted"], true);
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{json}"
    );
}

/// SIGKILL gives tend no chance to stop what it started: the kernel kills its command with it
/// (PR_SET_PDEATHSIG), so no command goes on changing the host with no run to answer for it.
#[test]
fn a_command_dies_with_tend_when_tend_is_killed() {
    let sb = Sandbox::new();
    sb.write_manifest("[exec.long]\ncommand = [\"/bin/sleep\", \"307\"]\n");
    let mut child = sb.command("apply", &[]).spawn().expect("tend");
    let alive = || {
        std::process::Command::new("pgrep")
            .args(["-f", "^/bin/sleep 307$"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let started = std::time::Instant::now();
    while !alive() && started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(alive(), "the command started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let _ = child.wait();
    let killed = std::time::Instant::now();
    while alive() && killed.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(), "the command outlived tend");
}
