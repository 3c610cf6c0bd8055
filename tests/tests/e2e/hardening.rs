//! Tests that try to break tend: SIGKILL mid-apply, concurrent runs, a run killed between a
//! change and its refresh, backups and restore, hostile symlinks.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tend_tests::{resource, run, tend_bin, Sandbox};

fn spawn(sb: &Sandbox, args: &[&str]) -> Child {
    Command::new(tend_bin())
        .arg("apply")
        .arg(sb.manifest_path())
        .arg("--root")
        .arg(sb.root())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tend")
}

/// SIGKILL `child` and reap it; whether it was still running when killed (a kill that came after
/// the run had ended killed nothing).
fn kill(child: &mut Child) -> bool {
    let running = matches!(child.try_wait(), Ok(None));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    running
}

/// Files under `dir` whose name marks a tend temporary.
fn temporaries(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with(".tend-tmp.") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

fn content(version: usize, i: usize) -> String {
    // Every tenth file is large (256 KiB), so a kill can land in the middle of a write.
    let body = if i.is_multiple_of(10) {
        "x".repeat(256 << 10)
    } else {
        "y".repeat(64)
    };
    format!("version {version} of file {i}\n{body}\nend {version}\n")
}

fn versioned_manifest(sb: &Sandbox, version: usize, files: usize) {
    let mut m = String::new();
    for i in 0..files {
        sb.write_beside(&format!("v{version}-f{i}.txt"), &content(version, i));
        m.push_str(&format!(
            "[file.f{i}]\npath = \"/data/d{}/f{i}\"\nsource = \"v{version}-f{i}.txt\"\n",
            i % 10
        ));
    }
    sb.write_manifest(&m);
}

#[test]
fn sigkill_at_many_moments_never_leaves_a_mixed_file() {
    const FILES: usize = 100;
    let sb = Sandbox::new();
    versioned_manifest(&sb, 0, FILES);
    // How long a run that rewrites every file takes here: the kills are spread over it.
    let started = std::time::Instant::now();
    assert_eq!(sb.apply().code, 2);
    let run_time = started.elapsed();
    let mut current = 0;
    let mut kills = 0;
    let mut interrupted_mid_run = 0;
    for attempt in 0..52u64 {
        let next = current + 1;
        versioned_manifest(&sb, next, FILES);
        let mut child = spawn(&sb, &["-q"]);
        // Spread the kills over the whole run: start-up, loading, early and late writes.
        std::thread::sleep(run_time.mul_f64(attempt as f64 / 52.0));
        kills += usize::from(kill(&mut child));
        let mut new_ones = 0;
        for i in 0..FILES {
            let got = sb.read(&format!("/data/d{}/f{i}", i % 10));
            assert!(
                got == content(current, i) || got == content(next, i),
                "attempt {attempt}: file {i} is neither wholly version {current} nor {next} ({} bytes)",
                got.len()
            );
            new_ones += usize::from(got == content(next, i));
        }
        // Killed half-way: some files already new, or temporaries written and not yet renamed.
        if (new_ones > 0 && new_ones < FILES) || !temporaries(&sb.root()).is_empty() {
            interrupted_mid_run += 1;
        }
        // The next run converges and leaves no temporary behind.
        let r = sb.apply();
        assert!(
            r.code == 0 || r.code == 2,
            "attempt {attempt}: {}{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(
            temporaries(&sb.root()),
            Vec::<String>::new(),
            "attempt {attempt}"
        );
        if attempt % 10 == 0 {
            assert_eq!(
                sb.apply().code,
                0,
                "attempt {attempt}: a third run must have nothing to do"
            );
        }
        current = next;
    }
    // Most kills found tend still running (the last few come late in the run).
    assert!(kills >= 40, "only {kills} of 52 kills found tend running");
    // The kills must have landed in the middle of runs, not only before or after them.
    assert!(
        interrupted_mid_run >= 5,
        "only {interrupted_mid_run} kills interrupted a run half-way"
    );
}

#[test]
fn concurrent_applies_wait_or_fail_naming_the_holder() {
    let sb = Sandbox::new();
    let marker = sb.path("/var/slow-done");
    sb.write_manifest(&format!(
        "[exec.slow]\ncommand = \"sleep 2; touch {}\"\ncreates = \"/var/slow-done\"\n",
        marker.display()
    ));
    std::fs::create_dir_all(sb.path("/var")).expect("mkdir");
    let first = spawn(&sb, &["--format", "json"]);
    // Wait until the first run holds the lock (it records itself in the lock file).
    let lock = sb.state_dir().join("lock");
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.starts_with("pid ")) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let impatient = sb.tend("apply", &["--format", "json"]);
    assert_eq!(impatient.code, 1);
    assert!(
        impatient.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        impatient.stderr
    );
    let patient = sb.tend("apply", &["--lock-wait", "20", "--format", "json"]);
    let first_out = first.wait_with_output().expect("first");
    assert_eq!(first_out.status.code(), Some(2));
    let first_report: serde_json::Value =
        serde_json::from_slice(&first_out.stdout).expect("first report is whole");
    assert_eq!(resource(&first_report, "exec.slow")["status"], "changed");
    // The waiting run started after the first finished: it found nothing to do.
    assert_eq!(patient.code, 0, "{}", patient.stderr);
    assert_eq!(resource(&patient.json(), "exec.slow")["status"], "in_sync");
}

#[test]
fn a_refresh_owed_by_a_killed_run_is_performed_by_the_next() {
    let sb = Sandbox::new();
    let log = sb.path("/reload.log");
    let marker = sb.path("/slow-done");
    sb.write_manifest(&format!(
        r#"
[file.conf]
path = "/etc/app.conf"
content = "v1"
notify = ["exec.reload"]

[exec.slow]
command = "sleep 3; touch {marker}"
creates = "/slow-done"
requires = ["file.conf"]

[exec.reload]
command = "echo reload >> {log}"
refresh_only = true
requires = ["exec.slow"]
"#,
        marker = marker.display(),
        log = log.display()
    ));
    let mut child = spawn(&sb, &["-q"]);
    let journal = sb.state_dir().join("journal.json");
    let started = Instant::now();
    while !(sb.path("/etc/app.conf").exists() && journal.exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the notifier never changed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(&mut child);
    assert!(!log.exists(), "the refresh ran before the kill");
    assert_eq!(
        std::fs::metadata(&journal)
            .expect("journal")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Plan says what is owed, and why.
    let plan = sb.plan_json();
    let refresh = &resource(&plan, "exec.reload")["refresh"];
    assert_eq!(refresh["status"], "would_run");
    assert_eq!(
        refresh["notified_by"][0],
        "file.conf (journaled by an interrupted run)"
    );

    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        resource(&report, "file.conf")["status"],
        "in_sync",
        "the change itself was done"
    );
    assert_eq!(resource(&report, "exec.reload")["refresh"]["status"], "ran");
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "reload\n");
    // Paid once: the next run owes nothing.
    let (code, _) = sb.apply_json();
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "reload\n");
}

#[test]
fn backups_are_pruned_per_path_and_restore_puts_one_back() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.conf]\npath = \"/etc/app.conf\"\ncontent = \"managed\\n\"\n");
    assert_eq!(sb.apply().code, 2);
    for n in 0..6 {
        sb.write("/etc/app.conf", &format!("local edit {n}\n"));
        assert_eq!(sb.tend("apply", &["--keep-backups", "3"]).code, 2);
    }
    let root = sb.root();
    let state = sb.state_dir();
    let list = sb.restore("/etc/app.conf", &["--list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);
    let blobs = std::fs::read_dir(state.join("backups"))
        .expect("ls")
        .flatten()
        .filter(|e| e.path().is_file())
        .count();
    assert_eq!(blobs, 3, "pruned contents are deleted");

    // The newest backup is the last local edit.
    let r = sb.restore("/etc/app.conf", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("restored {}", sb.path("/etc/app.conf").display())),
        "{}",
        r.stdout
    );
    assert_eq!(sb.read("/etc/app.conf"), "local edit 5\n");
    // An older one by prefix.
    let oldest = list
        .stdout
        .lines()
        .last()
        .expect("oldest")
        .split_whitespace()
        .next()
        .expect("sha")
        .to_string();
    let r = run(
        &[
            "restore",
            "/etc/app.conf",
            "--from",
            &oldest[..10],
            "--root",
            root.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sb.read("/etc/app.conf"), "local edit 3\n");
    let bad = run(
        &[
            "restore",
            "/etc/app.conf",
            "--from",
            "zzzz",
            "--root",
            root.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("no backup of"), "{}", bad.stderr);
}

#[test]
fn a_parent_symlink_owned_by_another_user_is_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/elsewhere")).expect("mkdir");
    std::fs::create_dir_all(sb.path("/srv")).expect("mkdir");
    std::os::unix::fs::symlink(sb.path("/elsewhere"), sb.path("/srv/app")).expect("symlink");
    nix::unistd::fchownat(
        None,
        &sb.path("/srv/app"),
        Some(nix::unistd::Uid::from_raw(4321)),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
    sb.write_manifest("[file.conf]\npath = \"/srv/app/conf\"\ncontent = \"x\"\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "file.conf")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.contains("srv/app is a symlink owned by uid 4321, who could point it anywhere"),
        "{err}"
    );
    assert!(!sb.path("/elsewhere/conf").exists());
}

#[test]
fn sensitive_file_changes_show_fingerprints_that_compare_across_runs() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[file.key]\npath = \"/etc/key\"\ncontent = \"secret-one\"\nsensitive = true\n",
    );
    assert_eq!(sb.apply().code, 2);
    sb.write("/etc/key", "tampered");
    let first = sb.plan();
    let second = sb.plan();
    let line = first
        .stdout
        .lines()
        .find(|l| l.contains("content: (sensitive)"))
        .expect("content line")
        .to_string();
    assert_eq!(
        second
            .stdout
            .lines()
            .find(|l| l.contains("content: (sensitive)")),
        Some(line.as_str()),
        "same host key, same fingerprints"
    );
    assert!(
        !first.stdout.contains("secret-one") && !first.stdout.contains("tampered"),
        "{}",
        first.stdout
    );
    assert_eq!(
        std::fs::metadata(sb.state_dir().join("host.key"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn a_temporary_left_beside_an_in_sync_file_is_removed() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.conf]\npath = \"/etc/app.conf\"\ncontent = \"v1\"\n");
    assert_eq!(sb.apply().code, 2);
    // What a run killed between the write and the rename leaves behind.
    sb.write("/etc/.tend-tmp.app.conf", "half of v2");
    let plan = sb.plan_json();
    assert_eq!(
        resource(&plan, "file.conf")["changes"][0]["description"],
        "remove .tend-tmp.app.conf, left by an interrupted run"
    );
    assert_eq!(sb.apply().code, 2);
    assert!(!sb.path("/etc/.tend-tmp.app.conf").exists());
    assert_eq!(sb.read("/etc/app.conf"), "v1");
    assert_eq!(sb.apply().code, 0);
}
