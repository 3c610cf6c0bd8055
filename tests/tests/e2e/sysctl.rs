//! `sysctl`: live values in a network namespace the test makes (`unshare --net`: these
//! parameters are per namespace, so the host's stay as they are), the persisted file under
//! `--root`, and what the kernel does not have.

use tend_tests::{changed_fields, resource, tend_bin, with_status, Sandbox};

const LIVE: &str = r#"
[sysctl.forward]
key = "net.ipv4.ip_forward"
value = 0
persist = false

[sysctl.backlog]
key = "net/core/somaxconn"
value = "1024"
persist = false

[sysctl.ports]
key = "net.ipv4.ip_local_port_range"
value = "10000   60000"
persist = false
"#;

#[test]
fn live_values_converge_in_a_network_namespace_and_drift_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, LIVE).expect("write");
    let host_backlog = std::fs::read_to_string("/proc/sys/net/core/somaxconn").expect("read");
    let tend = tend_bin();
    let run = |script: &str| {
        let out = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c", script])
            .env("TEND", &tend)
            .env("M", &manifest)
            .env("S", dir.path().join("state"))
            .env("NO_COLOR", "1")
            .output()
            .expect("unshare");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // One namespace for the whole timeline: apply, plan, a value changed by hand, plan (JSON),
    // apply, plan.
    let out = run(r#"
        echo 1 > /proc/sys/net/ipv4/ip_forward
        "$TEND" apply "$M" --state-dir "$S" >/dev/null; echo "apply=$?"
        "$TEND" plan "$M" --state-dir "$S" >/dev/null; echo "plan=$?"
        echo "ports=$(cat /proc/sys/net/ipv4/ip_local_port_range)"
        echo 2048 > /proc/sys/net/core/somaxconn
        "$TEND" plan "$M" --state-dir "$S" --format json > "$S.json"; echo "drift=$?"
        echo "after-plan=$(cat /proc/sys/net/core/somaxconn)"
        "$TEND" apply "$M" --state-dir "$S" >/dev/null; echo "repair=$?"
        "$TEND" plan "$M" --state-dir "$S" >/dev/null; echo "clean=$?"
    "#);
    for want in [
        "apply=2",
        "plan=0",
        "ports=10000\t60000",
        "drift=2",
        "after-plan=2048",
        "repair=2",
        "clean=0",
    ] {
        assert!(out.lines().any(|l| l == want), "{want} in:\n{out}");
    }
    let plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state.json")).expect("report"),
    )
    .expect("json");
    assert_eq!(with_status(&plan, "would_change"), ["sysctl.backlog"]);
    assert_eq!(changed_fields(&plan, "sysctl.backlog"), ["value"]);
    let c = &resource(&plan, "sysctl.backlog")["changes"][0];
    assert_eq!(
        (c["old"].as_str(), c["new"].as_str()),
        (Some("2048"), Some("1024"))
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").expect("read"),
        host_backlog,
        "the host's own value is untouched"
    );
}

#[test]
fn a_parameter_the_kernel_lacks_fails_and_a_bad_key_is_a_load_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        "[sysctl.nope]\nkey = \"net.ipv4.no_such_thing\"\nvalue = 1\npersist = false\n",
    )
    .expect("write");
    let state = dir.path().join("state");
    let r = tend_tests::run(
        &[
            "plan",
            manifest.to_str().expect("utf8"),
            "--state-dir",
            state.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(r.code & 4, 4, "{}", r.stdout);
    assert!(
        r.stdout.contains("the running kernel has no parameter net.ipv4.no_such_thing (/proc/sys/net/ipv4/no_such_thing does not exist)"),
        "{}",
        r.stdout
    );
    let sb = Sandbox::new();
    sb.write_manifest("[sysctl.bad]\nkey = \"net..ip_forward\"\nvalue = 1\n");
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("\"net..ip_forward\" is not a sysctl key"),
        "{}",
        r.stderr
    );
}

#[test]
fn under_root_the_file_is_managed_and_the_running_kernel_left_alone() {
    let sb = Sandbox::new();
    sb.write_manifest("[sysctl.forward]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        sb.read("/etc/sysctl.d/60-tend-forward.conf"),
        "# Managed by tend (sysctl.forward).\nnet.ipv4.ip_forward = 1\n"
    );
    assert_eq!(
        resource(&report, "sysctl.forward")["observed"]["live"],
        "not read under --root"
    );
    // The reference reads the persisted file as tend wrote it: procps' `sysctl -p` applies it
    // (in a network namespace of its own, so the host's value stays as it is).
    let file = sb.path("/etc/sysctl.d/60-tend-forward.conf");
    let out = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward && sysctl -p \"$0\" && cat /proc/sys/net/ipv4/ip_forward"])
        .arg(&file)
        .output()
        .expect("unshare, sysctl (procps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "net.ipv4.ip_forward = 1\n1\n"
    );
    assert_eq!(sb.plan().code, 0);
    sb.write(
        "/etc/sysctl.d/60-tend-forward.conf",
        "net.ipv4.ip_forward = 0\n",
    );
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "sysctl.forward"), ["file.content"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.plan().code, 0);
}
