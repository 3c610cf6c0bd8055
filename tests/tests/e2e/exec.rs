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

/// A root with a shell of its own (busybox) and the kernel's mount points, a marker in its
/// `/etc` that the build machine does not have.
fn image_root(sb: &tend_tests::Sandbox) {
    for d in ["bin", "proc", "sys", "dev", "run", "etc", "tmp"] {
        std::fs::create_dir_all(sb.path(&format!("/{d}"))).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", sb.path("/bin/busybox")).expect("busybox (busybox-static)");
    for tool in ["sh", "cat", "touch", "test", "ls", "grep", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", sb.path(&format!("/bin/{tool}"))).expect("ln");
    }
    sb.write("/etc/image-marker", "the image\n");
}

fn mounts_under(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(path.to_str().expect("utf8")))
        .collect()
}

#[test]
fn in_root_commands_and_guards_run_inside_the_image_and_leave_no_mount() {
    let sb = tend_tests::Sandbox::new();
    image_root(&sb);
    // The guard reads the image's /etc (the build machine has no such file): the command runs
    // once, then the guard holds. It sees the image's /proc mounted, as a post-install step would.
    sb.write_manifest(
        r#"
[exec.configure]
in_root = true
command = "cat /etc/image-marker > /etc/configured; test -e /proc/self/status && echo proc > /etc/saw-proc"
unless = "test -e /etc/configured"
"#,
    );
    let before = mounts_under(&sb.root());
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(sb.read("/etc/configured"), "the image\n");
    assert_eq!(sb.read("/etc/saw-proc"), "proc\n");
    assert!(
        !std::path::Path::new("/etc/configured").exists(),
        "nothing on the build machine"
    );
    assert_eq!(sb.apply().code, 0, "the guard read the image: converged");
    assert_eq!(mounts_under(&sb.root()), before, "no mount left behind");

    // Killed mid-command: the namespace goes with it, and its mounts.
    sb.write_manifest("[exec.slow]\nin_root = true\ncommand = \"sleep 317\"\n");
    let mut child = sb.command("apply", &[]).spawn().expect("spawn");
    let sleeper = || -> Option<String> {
        let out = std::process::Command::new("pgrep")
            .args(["-x", "-f", "sleep 317"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_string)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid = loop {
        if let Some(p) = sleeper() {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Mounted in its own namespace (its mount table has the image's /proc), never in the build
    // machine's.
    // (Its mount table is shown from its root: the image's /proc is its /proc.)
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    assert!(
        theirs
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/proc") && l.contains(" - proc ")),
        "{theirs}"
    );
    assert_eq!(
        mounts_under(&sb.root()),
        before,
        "invisible to the build machine"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sleeper().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command outlived tend"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        mounts_under(&sb.root()),
        before,
        "no mount left after SIGKILL"
    );

    // An image whose /proc points at a build-machine path: refused, nothing mounted there.
    std::fs::remove_dir(sb.path("/proc")).expect("rmdir");
    std::os::unix::fs::symlink("/tmp", sb.path("/proc")).expect("ln");
    sb.write_manifest("[exec.x]\nin_root = true\ncommand = \"true\"\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code & 4, 4, "{report:#}");
    let why = tend_tests::resource(&report, "exec.x")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("/proc is not a directory of the root"),
        "{why}"
    );
}

/// Under `--root`, a root with a shell of its own runs commands and guards inside it without
/// being told; `in_root = false` (or a root of files only) runs them on the build machine, and
/// `tend check` says when such a guard names the build machine's file.
#[test]
fn an_image_runs_commands_inside_by_default_and_check_warns_about_build_machine_guards() {
    let sb = tend_tests::Sandbox::new();
    image_root(&sb);
    sb.write_manifest(
        "[exec.configure]\ncommand = \"cat /etc/image-marker > /etc/configured\"\nunless = \"test -e /etc/configured\"\n",
    );
    let check = sb.tend("check", &[]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(!check.stderr.contains("warning"), "{}", check.stderr);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read("/etc/configured"), "the image\n");
    assert!(!std::path::Path::new("/etc/configured").exists());
    assert_eq!(sb.apply().code, 0, "the guard read the image: converged");

    sb.write_manifest(
        "[exec.locales]\nin_root = false\ncommand = \"true\"\nunless = \"grep -q '^en_US' /etc/locale.gen\"\n\n[exec.ok]\nin_root = false\ncommand = \"true\"\nunless = \"grep -q x $TEND_ROOT/etc/image-marker\"\n",
    );
    let check = sb.tend("check", &[]);
    assert_eq!(check.code, 0, "{check:?}");
    assert_eq!(
        check.stderr.trim_end(),
        "warning: exec.locales: its `unless` guard runs on the build machine (in_root = false) and names /etc/locale.gen, the build machine's file, not the image's: write \"$TEND_ROOT/etc/locale.gen\", or set in_root = true"
    );
}
