//! The engine: failures skip dependents and spare the rest, honest unknowns in plan,
//! refreshes listed and run once, `--only`, "did not converge".

use tend_tests::{files_manifest, resource, with_status, Sandbox};

#[test]
fn a_failure_skips_its_dependents_and_spares_unrelated_resources() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/etc/broken")).expect("mkdir");
    sb.write_manifest(
        r#"
[file.broken]
path = "/etc/broken"
content = "x"

[file.dependent]
path = "/etc/dependent"
content = "y"
requires = ["file.broken"]

[file.transitive]
path = "/etc/transitive"
content = "z"
requires = ["file.dependent"]

[file.unrelated]
path = "/etc/unrelated"
content = "u"
"#,
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 6, "changes and failures: {report:#}");
    assert_eq!(with_status(&report, "failed"), ["file.broken"]);
    assert_eq!(
        with_status(&report, "skipped"),
        ["file.dependent", "file.transitive"]
    );
    assert_eq!(
        resource(&report, "file.dependent")["reason"],
        "requires file.broken, which failed"
    );
    assert_eq!(
        resource(&report, "file.transitive")["reason"],
        "requires file.dependent, which was skipped"
    );
    assert_eq!(with_status(&report, "changed"), ["file.unrelated"]);
    assert!(!sb.path("/etc/dependent").exists());
    assert_eq!(sb.read("/etc/unrelated"), "u");

    // Plan predicts the same.
    let plan = sb.plan_json();
    assert_eq!(
        with_status(&plan, "skipped"),
        ["file.dependent", "file.transitive"]
    );
    let human = sb.plan();
    assert!(
        human.stdout.contains("! file.broken failed: "),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("s file.dependent requires file.broken, which failed"),
        "{}",
        human.stdout
    );
}

#[test]
fn plan_on_an_empty_host_lists_creations_and_honest_unknowns() {
    let sb = Sandbox::new();
    sb.write_manifest(
        r#"
[file.seed]
path = "/opt/app/seed.txt"
content = "seed"

[file.copy]
path = "/etc/app/copy.txt"
source = "/opt/app/seed.txt"
requires = ["file.seed"]
"#,
    );
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 2);
    assert_eq!(with_status(&plan, "would_change"), ["file.seed"]);
    assert_eq!(with_status(&plan, "may_change"), ["file.copy"]);
    let reason = resource(&plan, "file.copy")["reason"]
        .as_str()
        .expect("reason")
        .to_string();
    assert!(
        reason.starts_with(
            "may change once its dependencies apply (file.seed would change first): source "
        ),
        "{reason}"
    );
    assert!(!sb.path("/opt").exists());

    // Without the dependency, the same missing source is a failure, not an unknown.
    sb.write_manifest(
        "[file.copy]\npath = \"/etc/app/copy.txt\"\nsource = \"/opt/app/seed.txt\"\n",
    );
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 4);
    assert_eq!(with_status(&plan, "failed"), ["file.copy"]);
}

#[test]
fn refreshes_are_listed_in_plan_and_run_once_in_apply() {
    let sb = Sandbox::new();
    let log = sb.path("/refresh.log");
    sb.write_manifest(&format!(
        r#"
[file.a]
path = "/etc/a"
content = "a"
notify = ["exec.reload"]

[file.b]
path = "/etc/b"
content = "b"
notify = ["exec.reload"]

[exec.reload]
command = "echo reloaded >> {}"
refresh_only = true
"#,
        log.display()
    ));
    let plan = sb.plan_json();
    let refresh = &resource(&plan, "exec.reload")["refresh"];
    assert_eq!(refresh["status"], "would_run");
    assert_eq!(
        refresh["notified_by"],
        serde_json::json!(["file.a", "file.b"])
    );
    assert!(!log.exists());

    let (code, report) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(resource(&report, "exec.reload")["refresh"]["status"], "ran");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "reloaded\n",
        "exactly one refresh for two notifiers"
    );

    // Nothing changed: no refresh.
    let (code, report) = sb.apply_json();
    assert_eq!(code, 0);
    assert!(resource(&report, "exec.reload").get("refresh").is_none());
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "reloaded\n");

    // One notifier changes: one more refresh, naming it.
    sb.write("/etc/b", "tampered");
    let (_, report) = sb.apply_json();
    assert_eq!(
        resource(&report, "exec.reload")["refresh"]["notified_by"],
        serde_json::json!(["file.b"])
    );
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "reloaded\nreloaded\n"
    );
}

#[test]
fn only_applies_the_selection_and_checks_its_dependencies() {
    let sb = Sandbox::new();
    sb.write_manifest(
        r#"
[directory.app]
path = "/srv/app"

[file.conf]
path = "/srv/app/conf"
content = "c"
tags = ["web"]

[file.elsewhere]
path = "/etc/elsewhere"
content = "e"
"#,
    );
    // The dependency already exists but with the wrong mode: checked, reported, not applied.
    std::fs::create_dir_all(sb.path("/srv/app")).expect("mkdir");
    sb.set_mode("/srv/app", 0o700);
    let r = sb.tend("apply", &["--only", "tag:web", "--format", "json"]);
    let report = r.json();
    assert_eq!(r.code, 2);
    assert_eq!(with_status(&report, "changed"), ["file.conf"]);
    assert_eq!(with_status(&report, "excluded"), ["file.elsewhere"]);
    assert!(!sb.path("/etc/elsewhere").exists());

    let r = sb.tend("plan", &["--only", "file.conf", "--format", "json"]);
    assert_eq!(r.json()["summary"]["in_sync"], 2, "{}", r.stdout);

    let bad = sb.tend("plan", &["--only", "file.cnof"]);
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr.trim(),
        "error: --only file.cnof matches no resource in the manifest; did you mean `file.conf`?"
    );
}

#[test]
fn drift_that_apply_cannot_fix_is_did_not_converge() {
    let sb = Sandbox::new();
    // The command succeeds but never creates what its guard looks for.
    sb.write_manifest("[exec.lazy]\ncommand = \"true\"\ncreates = \"/var/done\"\n\n[file.fine]\npath = \"/etc/fine\"\ncontent = \"f\"\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 6);
    let err = resource(&report, "exec.lazy")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert_eq!(
        err,
        "did not converge: still run `/bin/sh -c true`: /var/done does not exist"
    );
    assert_eq!(with_status(&report, "changed"), ["file.fine"]);
}

#[test]
fn when_false_excludes_a_resource() {
    let sb = Sandbox::new();
    sb.write("/etc/os-release", "ID=debian\nVERSION_CODENAME=bookworm\n");
    sb.write_manifest(
        r#"
[file.debian]
path = "/etc/debian-only"
content = "{{ facts.os.codename }}"
when = "facts.os.id == 'debian'"

[file.ubuntu]
path = "/etc/ubuntu-only"
content = "u"
when = "facts.os.id == 'ubuntu'"
"#,
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(sb.read("/etc/debian-only"), "bookworm");
    assert!(!sb.path("/etc/ubuntu-only").exists());
    assert_eq!(
        resource(&report, "file.ubuntu")["reason"],
        "`when` is false"
    );
}

#[test]
fn independent_resources_run_concurrently_and_all_converge() {
    let sb = Sandbox::new();
    let mut m = String::new();
    for i in 0..200 {
        m.push_str(&format!(
            "[file.f{i}]\npath = \"/many/d{}/f{i}\"\ncontent = \"{i}\"\n",
            i % 7
        ));
    }
    // Four commands that each wait (at most 10 s) until all four have started: they converge
    // only if the engine runs them at once — a serial engine fails every one.
    let barrier = sb.dir.path().join("barrier");
    std::fs::create_dir(&barrier).expect("mkdir");
    for i in 0..4 {
        m.push_str(&format!(
            "[exec.wait{i}]\ncommand = \"touch {b}/{i}; for t in $(seq 100); do [ $(ls {b} | wc -l) -ge 4 ] && touch $TEND_ROOT/done{i} && exit 0; sleep 0.1; done; exit 1\"\ncreates = \"/done{i}\"\n",
            b = barrier.display()
        ));
    }
    sb.write_manifest(&m);
    let r = sb.tend("apply", &["--jobs", "8", "--format", "json"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json()["summary"]["changed"], 204);
    let r = sb.tend("apply", &["--jobs", "8", "--format", "json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["summary"]["in_sync"], 204);
}

/// The watcher every plan of this suite runs under (`tend_tests::plan_watch`) sees a write made
/// during a plan — here by a guard declared read-only that is not — and names it.
#[test]
fn the_plan_watcher_catches_a_write() {
    let sb = Sandbox::new();
    let marker = sb.dir.path().join("written-during-plan");
    sb.write_manifest(&format!(
        "[exec.a]\ncommand = \"true\"\nunless = \"touch {}; false\"\nreadonly_guards = true\n",
        marker.display()
    ));
    let manifest = sb.manifest_path();
    let root = sb.root();
    let (_, violations) = tend_tests::plan_watch::run(
        &tend_tests::tend_bin(),
        &[
            "plan",
            manifest.to_str().expect("utf8"),
            "--root",
            root.to_str().expect("utf8"),
        ],
        &[],
    );
    assert!(
        violations
            .iter()
            .any(|v| v.contains(&marker.display().to_string())),
        "{violations:?}"
    );
}

/// A run resolves each directory once while nothing has changed, and afresh from its first
/// change on: an exec in the first wave that replaces a directory must not leave the second wave
/// looking into the old, unlinked one — its file would be written where nobody sees it, and
/// every later run would create it again.
#[test]
fn a_directory_the_run_replaces_is_resolved_afresh_after_the_change() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/srv/d")).expect("mkdir");
    std::fs::write(sb.path("/srv/d/g"), "g").expect("write");
    sb.write_manifest(
        r#"
[file.g]
path = "/srv/d/g"
content = "g"

[exec.replace]
command = "rm -rf \"$TEND_ROOT/srv/d\" && mkdir \"$TEND_ROOT/srv/d\" && printf g > \"$TEND_ROOT/srv/d/g\" && touch \"$TEND_ROOT/srv/replaced\""
creates = "/srv/replaced"

[file.f]
path = "/srv/d/f"
content = "f"
requires = ["exec.replace"]
"#,
    );
    let first = sb.apply();
    assert_eq!(first.code, 2, "{first:?}");
    assert_eq!(
        std::fs::read_to_string(sb.path("/srv/d/f")).ok().as_deref(),
        Some("f"),
        "file.f was written into the directory that is there now"
    );
    let again = sb.apply();
    assert_eq!(again.code, 0, "{again:?}");
}

/// Apply stores the manifest's parsed tree in the state directory, and a run uses it only for
/// the very same manifest bytes: an edited manifest is parsed again (and its change planned), a
/// damaged or untrusted stored tree is ignored, and plan stores nothing.
#[test]
fn the_stored_manifest_tree_serves_only_the_same_manifest() {
    let sb = Sandbox::new();
    let tree = sb.path("/var/lib/tend/manifest-tree.bin");
    sb.write_manifest("[file.a]\npath = \"/etc/a\"\ncontent = \"one\"\n");
    let plan = sb.plan_json();
    assert_eq!(resource(&plan, "file.a")["status"], "would_change");
    assert!(!tree.exists(), "plan stored the tree");
    assert_eq!(sb.apply().code, 2);
    assert!(tree.exists(), "apply stores the tree");
    let stored = std::fs::read(&tree).expect("tree");

    // An edited manifest: parsed again, its change planned and applied, its tree stored.
    sb.write_manifest("[file.a]\npath = \"/etc/a\"\ncontent = \"two\"\n");
    let plan = sb.plan_json();
    assert_eq!(
        resource(&plan, "file.a")["status"],
        "would_change",
        "{plan:#}"
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        std::fs::read_to_string(sb.path("/etc/a")).expect("a"),
        "two"
    );
    assert_ne!(std::fs::read(&tree).expect("tree"), stored);
    assert_eq!(sb.apply().code, 0);

    // A damaged tree for the same manifest: ignored, the manifest parsed.
    let good = std::fs::read(&tree).expect("tree");
    std::fs::write(&tree, &good[..good.len() / 2]).expect("truncate");
    let plan = sb.plan_json();
    assert_eq!(resource(&plan, "file.a")["status"], "in_sync", "{plan:#}");

    // One that others could have written: not trusted, said so, the manifest parsed.
    std::fs::write(&tree, &good).expect("restore");
    std::fs::set_permissions(&tree, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod");
    let plan = sb.tend("plan", &[]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stderr.contains("not using the stored manifest tree"),
        "{plan:?}"
    );
}

/// A run keeps a bounded number of directories open for reuse: a manifest spread over more
/// directories than the process may hold descriptors converges and checks under a small limit.
#[test]
fn a_manifest_over_more_directories_than_descriptors_still_checks() {
    let sb = Sandbox::new();
    let manifest: String = (0..600)
        .map(|i| format!("[file.f{i}]\npath = \"/srv/d{i}/f\"\ncontent = \"{i}\"\n\n"))
        .collect();
    sb.write_manifest(&manifest);
    assert_eq!(sb.apply().code, 2);
    let root = sb.root();
    let run = |sub: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 300 && exec \"$0\" \"$@\"")
            .arg(tend_tests::tend_bin())
            .args([sub, "-q"])
            .arg(sb.manifest_path())
            .arg("--root")
            .arg(&root)
            .output()
            .expect("run tend")
    };
    let noop = run("apply");
    assert_eq!(
        noop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&noop.stderr)
    );
}

/// A plan of the whole manifest checks resources while the rest still loads (`early`): what it
/// reports is exactly what the same plan reports when every resource is checked after loading
/// (`--only`, which never checks early), drift, dependencies and exclusions included.
#[test]
fn a_plan_that_checks_while_loading_reports_what_a_plan_after_loading_does() {
    let sb = Sandbox::new();
    let mut manifest: String = (0..150)
        .map(|i| {
            format!(
                "[file.f{i}]\npath = \"/srv/d{}/f{i}\"\ncontent = \"{i}\\n\"\nmode = \"0640\"\n\n",
                i % 7
            )
        })
        .collect();
    manifest.push_str(
        "[file.later]\npath = \"/srv/later\"\ncontent = \"x\"\nrequires = [\"file.f3\"]\n\n\
         [file.off]\npath = \"/srv/off\"\ncontent = \"x\"\nwhen = \"1 == 2\"\n",
    );
    sb.write_manifest(&manifest);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.apply().code, 0, "converged");
    std::fs::write(sb.path("/srv/d0/f7"), "seven\n").expect("perturb content");
    std::fs::set_permissions(
        sb.path("/srv/d3/f80"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("perturb mode");
    std::fs::remove_file(sb.path("/srv/d2/f149")).expect("remove");
    std::fs::write(sb.path("/srv/d3/f3"), "drift\n").expect("perturb a dependency");

    let summary = |plan: &serde_json::Value| -> Vec<String> {
        plan["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| {
                let changes: Vec<String> = r["changes"]
                    .as_array()
                    .map(|c| c.iter().map(|c| c["field"].to_string()).collect())
                    .unwrap_or_default();
                format!(
                    "{} {} {:?} {}",
                    r["address"], r["status"], changes, r["reason"]
                )
            })
            .collect()
    };
    let early = sb.tend("plan", &["--format", "json"]);
    assert_eq!(early.code, 2, "{early:?}");
    let after = sb.tend("plan", &["--format", "json", "--only", "file"]);
    assert_eq!(after.code, 2, "{after:?}");
    let (early, after) = (early.json(), after.json());
    assert_eq!(summary(&early), summary(&after));
    let changed: Vec<&str> = early["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["status"] == "would_change")
        .map(|r| r["address"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(changed, ["file.f3", "file.f7", "file.f80", "file.f149"]);
    assert_eq!(resource(&early, "file.off")["status"], "excluded");
    assert_eq!(resource(&early, "file.f0")["status"], "in_sync");
}

/// A manifest whose last resource is invalid fails to load though the resources before it were
/// already being checked: the run reports the located error and nothing of the checks.
#[test]
fn a_manifest_that_fails_after_checks_began_fails_as_before() {
    let sb = Sandbox::new();
    let mut manifest = files_manifest(100);
    manifest.push_str("[file.bad]\npath = \"/srv/bad\"\ncontent = \"x\"\ncolour = \"red\"\n");
    sb.write_manifest(&manifest);
    let line = manifest.lines().count();
    let plan = sb.tend("plan", &["--format", "json"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stderr.contains(&format!("manifest.toml:{line}:1")) && plan.stderr.contains("colour"),
        "{plan:?}"
    );
    assert!(!plan.stdout.contains("in_sync"), "{plan:?}");
    assert!(
        !sb.path("/var/lib/tend").exists(),
        "a failed plan wrote state"
    );
}

/// A dependency that would rewrite what a resource reads: where it can say what it will write
/// (a file with inline content), the resource is checked against that and plan is exact; where
/// it cannot (a file copied from a host source that changed), plan keeps what it is sure of — a
/// drift that follows from the manifest alone stays "would change" (more may follow), a
/// resource with none "may change" — and a refresh owed only by a notifier that may change "may
/// run", while one owed by a certain change "would run". Apply does what plan said.
#[test]
fn plan_is_exact_where_a_dependency_can_say_what_it_writes_and_honest_where_not() {
    let sb = tend_tests::Sandbox::new();
    let rest = "[env_file.e]\npath = \"/srv/.env\"\nadd_missing_from = \"/srv/example\"\nnotify = [\"exec.restart\"]\n\
                [env_file.e.set]\nB = \"2\"\n\n\
                [exec.restart]\ncommand = \"true\"\nrefresh_only = true\n";
    sb.write_manifest(&format!(
        "[file.example]\npath = \"/srv/example\"\ncontent = \"A=1\\n\"\n\n{rest}"
    ));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.plan().code, 0);
    // The file changed by hand: apply puts back what the manifest says, so the .env is checked
    // against that — in sync, no refresh owed.
    sb.write("/srv/example", "A=1\nC=3\n");
    let report = sb.plan_json();
    assert_eq!(resource(&report, "file.example")["status"], "would_change");
    assert_eq!(resource(&report, "env_file.e")["status"], "in_sync");
    assert!(resource(&report, "exec.restart")["refresh"].is_null());
    let (code, done) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(resource(&done, "env_file.e")["status"], "in_sync");
    assert!(resource(&done, "exec.restart")["refresh"].is_null());

    // Copied from a host source that changed: no telling what the .env gains.
    sb.write("/srv/upstream", "A=1\n");
    sb.write_manifest(&format!(
        "[file.example]\npath = \"/srv/example\"\nsource = \"/srv/upstream\"\n\n{rest}"
    ));
    assert_eq!(sb.apply().code, 0, "the same content: nothing to do");
    sb.write("/srv/upstream", "A=1\nC=3\n");
    let report = sb.plan_json();
    assert_eq!(resource(&report, "env_file.e")["status"], "may_change");
    assert_eq!(
        resource(&report, "exec.restart")["refresh"]["status"],
        "may_run"
    );
    assert!(sb.plan().stdout.contains("refresh may run"));
    let (code, done) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(resource(&done, "env_file.e")["status"], "changed");
    assert_eq!(resource(&done, "exec.restart")["refresh"]["status"], "ran");
    // A managed key removed by hand too: that much is certain, and so is the refresh.
    sb.write("/srv/upstream", "A=1\nC=3\nD=4\n");
    let env = sb.read("/srv/.env");
    sb.write("/srv/.env", &env.replace("B=2\n", ""));
    let report = sb.plan_json();
    let e = resource(&report, "env_file.e");
    assert_eq!(e["status"], "would_change", "{e:#}");
    assert_eq!(tend_tests::changed_fields(&report, "env_file.e"), ["B"]);
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("more may change once file.example applies"),
        "{e:#}"
    );
    assert_eq!(
        resource(&report, "exec.restart")["refresh"]["status"],
        "would_run"
    );
    let (code, done) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(tend_tests::changed_fields(&done, "env_file.e"), ["B", "D"]);
    assert_eq!(resource(&done, "exec.restart")["refresh"]["status"], "ran");
    assert_eq!(sb.plan().code, 0);
}

/// Each failure says what kind it is (`error_class`), for a fleet to count by: a command that
/// exited with a failure, something on the host in the way, content its format refuses, a host
/// operation the kernel refused — each a real failure of its own resource in one apply.
#[test]
fn each_failure_says_its_class() {
    let sb = Sandbox::new();
    sb.write("/etc/l", "a regular file where the link goes\n");
    sb.write("/app/.env", "A=1\nC=\"unterminated\n");
    sb.write("/blocker", "a file where a directory must be\n");
    sb.write_manifest(
        "[exec.fails]\ncommand = \"exit 3\"\n\n\
         [symlink.l]\npath = \"/etc/l\"\ntarget = \"/etc/target\"\n\n\
         [env_file.e]\npath = \"/app/.env\"\nset = { B = \"2\" }\n\n\
         [file.f]\npath = \"/blocker/f\"\ncontent = \"x\\n\"\n",
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    for (address, class) in [
        ("exec.fails", "command"),
        ("symlink.l", "refused"),
        ("env_file.e", "invalid"),
        ("file.f", "host"),
    ] {
        let r = resource(&report, address);
        assert_eq!(r["status"], "failed", "{address}: {r:#}");
        assert_eq!(r["error_class"], class, "{address}: {r:#}");
    }
    // Nothing it refused was touched.
    assert_eq!(sb.read("/etc/l"), "a regular file where the link goes\n");
    assert_eq!(sb.read("/app/.env"), "A=1\nC=\"unterminated\n");
}
