//! CLI surface: check, graph, facts, JSON report schema, state directory, lock, metrics.

use tend_tests::{run, Sandbox};

#[test]
fn check_validates_without_touching_the_host() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.a]\npath = \"/a\"\ncontent = \"{{ secret('x', 16) }}\"\n");
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .ends_with("valid, 1 resources (1 enabled), 0 ordering edges\n"),
        "{}",
        r.stdout
    );
    assert!(
        std::fs::read_dir(sb.root()).expect("ls").next().is_none(),
        "check wrote into the root"
    );
}

#[test]
fn facts_come_from_the_root() {
    let sb = Sandbox::new();
    sb.write(
        "/etc/os-release",
        "ID=ubuntu\nVERSION_ID=\"24.04\"\nVERSION_CODENAME=noble\n",
    );
    sb.write("/etc/hostname", "web7\n");
    let r = run(&["facts", "--root", sb.root().to_str().expect("utf8")], &[]);
    assert_eq!(r.code, 0);
    let f: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(f["os"]["id"], "ubuntu");
    assert_eq!(f["os"]["version_id"], "24.04");
    assert_eq!(f["os"]["codename"], "noble");
    assert_eq!(f["hostname"], "web7");
    assert!(f["cpus"].as_u64().expect("cpus") >= 1);
    assert!(f["memory_mb"].as_u64().expect("memory") > 0);
    assert!(["amd64", "arm64"].contains(&f["arch"].as_str().expect("arch")));
}

#[test]
fn report_schema_and_state_files() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.a]\npath = \"/a\"\ncontent = \"a\"\n");
    let metrics = sb.dir.path().join("tend.prom");
    let r = sb.tend(
        "apply",
        &[
            "--format",
            "json",
            "--metrics",
            metrics.to_str().expect("utf8"),
        ],
    );
    let report = r.json();
    assert_eq!(report["schema_version"], 3);
    assert_eq!(report["mode"], "apply");
    assert_eq!(report["exit_code"], 2);
    assert_eq!(
        report["manifest"]["sha256"].as_str().expect("sha").len(),
        64
    );
    for key in [
        "tend_version",
        "host",
        "root",
        "started_at",
        "duration_ms",
        "summary",
        "resources",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    let a = tend_tests::resource(&report, "file.a");
    assert_eq!(a["kind"], "file");
    assert_eq!(a["status"], "changed");
    assert_eq!(a["changes"][0]["field"], "state");
    assert_eq!(a["changes"][0]["sensitive"], false);

    use std::os::unix::fs::PermissionsExt;
    let state_mode = std::fs::metadata(sb.state_dir())
        .expect("state")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(state_mode, 0o700);
    let last: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.state_dir().join("last-run.json")).expect("last-run"),
    )
    .expect("json");
    assert_eq!(last["resources"], report["resources"]);
    let prom = std::fs::read_to_string(metrics).expect("metrics");
    assert!(
        prom.contains("\ntend_resources_by_status{mode=\"apply\",status=\"changed\"} 1\n"),
        "{prom}"
    );
    assert!(
        prom.contains("\ntend_last_run_exit_code{mode=\"apply\"} 2\n"),
        "{prom}"
    );
}

#[test]
fn a_held_lock_stops_a_second_apply_with_the_holders_pid() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.a]\npath = \"/a\"\ncontent = \"a\"\n");
    std::fs::create_dir_all(sb.state_dir()).expect("state dir");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(sb.state_dir().join("lock"))
        .expect("lock file");
    std::fs::write(
        sb.state_dir().join("lock"),
        "pid 4242, started 2026-01-01T00:00:00Z",
    )
    .expect("holder");
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .expect("flock");
    let r = sb.tend("apply", &["--lock-wait", "1"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("another tend run holds the lock"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("pid 4242, started 2026-01-01T00:00:00Z"),
        "{}",
        r.stderr
    );
    assert!(!sb.path("/a").exists());
    drop(held);
    assert_eq!(
        sb.apply().code,
        2,
        "the lock is free once its holder is gone"
    );
}

#[test]
fn var_overrides_reach_dependent_variables() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[vars]\nserver_id = \"42\"\ndomain = \"dify{{ server_id }}.hostkey.in\"\n\n[file.site]\npath = \"/etc/site\"\ncontent = \"{{ domain }}\"\n",
    );
    assert_eq!(sb.tend("apply", &["--var", "server_id=7"]).code, 2);
    assert_eq!(sb.read("/etc/site"), "dify7.hostkey.in");
}

#[test]
fn human_output_has_no_colour_with_no_color_and_a_summary_line() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.a]\npath = \"/a\"\ncontent = \"a\"\n");
    let r = sb.plan();
    assert!(!r.stdout.contains('\u{1b}'), "{}", r.stdout);
    let last = r.stdout.lines().last().expect("summary");
    assert!(last.starts_with("Plan: 1 to change ("), "{last}");
    let quiet = sb.tend("plan", &["-q"]);
    assert_eq!(quiet.stdout.lines().count(), 1, "{}", quiet.stdout);
    let verbose = sb.tend("apply", &[]);
    assert_eq!(verbose.code, 2);
    let v = sb.tend("plan", &["-v"]);
    assert!(v.stdout.contains("= file.a in sync"), "{}", v.stdout);
}

/// `tend status`: how the last apply ended, and why it failed, from last-run.json.
#[test]
fn status_says_why_the_last_apply_failed() {
    let sb = tend_tests::Sandbox::new();
    let root = sb.root();
    let root = root.to_str().expect("utf8");
    let none = tend_tests::run(&["status", "--root", root], &[]);
    assert_eq!(none.code, 1);
    assert!(
        none.stderr.contains("no run recorded in"),
        "{}",
        none.stderr
    );
    sb.write_manifest(
        "[exec.broken]\ncommand = [\"sh\", \"-c\", \"echo disk full >&2; exit 3\"]\ncreates = \"/never\"\n\n[file.ok]\npath = \"/etc/ok\"\ncontent = \"ok\\n\"\n",
    );
    assert_eq!(sb.apply().code, 6);
    let s = tend_tests::run(&["status", "--root", root], &[]);
    assert_eq!(s.code, 4, "{s:?}");
    assert!(s.stdout.starts_with("last run: apply "), "{}", s.stdout);
    assert!(
        s.stdout.contains(
            "\n  exec.broken failed: `sh -c echo disk full >&2; exit 3` exited with status 3:"
        ),
        "{}",
        s.stdout
    );
}
