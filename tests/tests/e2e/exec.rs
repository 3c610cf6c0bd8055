//! `exec`: guards, plan honesty about guards, output and failures.

use tend_tests::{resource, with_status, Sandbox};

#[test]
fn creates_guard_timeline() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[exec.init]\ncommand = [\"/bin/sh\", \"-c\", \"echo initialised; touch \\\"$TEND_ROOT/var/initialised\\\"\"]\ncreates = \"/var/initialised\"\n",
    );
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["exec.init"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert!(sb.path("/var/initialised").exists());
    assert_eq!(
        resource(&report, "exec.init")["notes"][0],
        "output:\n  initialised"
    );
    assert_eq!(sb.apply().code, 0);
    std::fs::remove_file(sb.path("/var/initialised")).expect("rm");
    assert_eq!(with_status(&sb.plan_json(), "would_change"), ["exec.init"]);
}

#[test]
fn guards_run_in_plan_only_when_declared_read_only() {
    let sb = Sandbox::new();
    let marker = sb.path("/guard-ran");
    sb.write_manifest(&format!(
        "[exec.a]\ncommand = \"true\"\nunless = \"touch {m}; false\"\n\n[exec.b]\ncommand = \"true\"\nunless = \"test -e /\"\nreadonly_guards = true\n",
        m = marker.display()
    ));
    let plan = sb.plan_json();
    // An un-run guard is unknown, not drift: the audit of this host exits 0.
    assert_eq!(plan["exit_code"], 0);
    assert_eq!(with_status(&plan, "unknown"), ["exec.a"]);
    assert_eq!(resource(&plan, "exec.a")["reason_class"], "guard_not_run");
    assert!(resource(&plan, "exec.a")["reason"]
        .as_str()
        .expect("reason")
        .starts_with("unknown: guard not run in plan"));
    assert_eq!(
        with_status(&plan, "in_sync"),
        ["exec.b"],
        "a read-only guard runs in plan"
    );
    assert!(
        !marker.exists(),
        "plan ran a guard that was not declared read-only"
    );
}

#[test]
fn failing_command_quotes_its_last_lines() {
    let sb = Sandbox::new();
    sb.write_manifest("[exec.bad]\ncommand = \"echo first; echo 'E: something broke' >&2; exit 3\"\ncreates = \"/never\"\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "exec.bad")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert_eq!(err, "`/bin/sh -c echo first; echo 'E: something broke' >&2; exit 3` exited with status 3:\n  first\n  E: something broke");
}

#[test]
fn timeout_kills_the_command() {
    let sb = Sandbox::new();
    sb.write_manifest("[exec.slow]\ncommand = \"sleep 30\"\ntimeout = 1\ncreates = \"/never\"\n");
    let started = std::time::Instant::now();
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    assert!(started.elapsed().as_secs() < 20);
    assert_eq!(
        resource(&report, "exec.slow")["error"],
        "`/bin/sh -c sleep 30` did not finish within 1 s and was killed"
    );
}

#[test]
fn cwd_env_and_user_reach_the_command() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/work")).expect("mkdir");
    sb.write_manifest(
        r#"
[exec.where]
command = "pwd; echo \"$GREETING\"; id -u"
cwd = "/work"
env = { GREETING = "hello from env" }
creates = "/never"

[exec.nobody]
command = ["id", "-u"]
user = "65534"
creates = "/never"
"#,
    );
    let (_, report) = sb.apply_json();
    // The commands succeed but their guard never holds: the run fails with "did not converge",
    // and each command's output is in its notes.
    let error = resource(&report, "exec.where")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(error.starts_with("did not converge"), "{error}");
    assert_eq!(
        resource(&report, "exec.where")["notes"][0],
        format!(
            "output:\n  {}\n  hello from env\n  0",
            sb.path("/work").display()
        )
    );
    assert_eq!(
        resource(&report, "exec.nobody")["notes"][0],
        "output:\n  65534"
    );
}
