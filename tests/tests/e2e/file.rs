//! `file` as a timeline: apply, re-run with no change, perturb, plan names exactly the drift,
//! apply restores it.

use tend_tests::{changed_fields, resource, with_status, Sandbox};

const MANIFEST: &str = r#"
[file.motd]
path = "/etc/motd"
content = "welcome\n"
mode = "0640"

[file.other]
path = "/etc/other"
content = "other\n"
"#;

#[test]
fn file_timeline_converges_and_names_each_drift() {
    let sb = Sandbox::new();
    sb.write_manifest(MANIFEST);

    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "first apply changes: {report:#}");
    assert_eq!(with_status(&report, "changed"), ["file.motd", "file.other"]);
    assert_eq!(sb.read("/etc/motd"), "welcome\n");
    assert_eq!(sb.mode("/etc/motd"), 0o640);
    assert_eq!(sb.mode("/etc/other"), 0o644, "default mode of a new file");

    let again = sb.apply();
    assert_eq!(again.code, 0, "second apply is a no-op:\n{}", again.stdout);
    assert!(
        again.stdout.contains("Apply: 2 in sync"),
        "{}",
        again.stdout
    );

    // Content drift: plan names file.motd / content, with a diff, and changes nothing.
    sb.write("/etc/motd", "tampered\n");
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 2);
    assert_eq!(with_status(&plan, "would_change"), ["file.motd"]);
    assert_eq!(changed_fields(&plan, "file.motd"), ["content"]);
    let diff = resource(&plan, "file.motd")["changes"][0]["diff"]
        .as_str()
        .expect("diff")
        .to_string();
    assert!(diff.contains("-tampered\n+welcome\n"), "{diff}");
    assert_eq!(
        sb.read("/etc/motd"),
        "tampered\n",
        "plan must not change the host"
    );

    let (code, report) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(sb.read("/etc/motd"), "welcome\n");
    // The replaced content was kept, and the report says where.
    let backup = resource(&report, "file.motd")["backups"][0]
        .as_str()
        .expect("backup path")
        .to_string();
    assert_eq!(
        std::fs::read_to_string(&backup).expect("backup"),
        "tampered\n"
    );

    // Mode drift: only the mode is named.
    sb.set_mode("/etc/motd", 0o666);
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "file.motd"), ["mode"]);
    assert_eq!(
        resource(&plan, "file.motd")["changes"][0]["description"],
        "mode: 0666 → 0640"
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.mode("/etc/motd"), 0o640);

    // A deleted file is a creation.
    std::fs::remove_file(sb.path("/etc/other")).expect("rm");
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["file.other"]);
    assert_eq!(changed_fields(&plan, "file.other"), ["state"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read("/etc/other"), "other\n");
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn absent_file_is_removed_and_kept_as_backup() {
    let sb = Sandbox::new();
    sb.write("/etc/old.conf", "legacy\n");
    sb.write_manifest("[file.old]\npath = \"/etc/old.conf\"\nstate = \"absent\"\n");
    let plan = sb.plan();
    assert_eq!(plan.code, 2);
    assert!(plan.stdout.contains("- file.old remove"), "{}", plan.stdout);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2);
    assert!(!sb.path("/etc/old.conf").exists());
    let backup = resource(&report, "file.old")["backups"][0]
        .as_str()
        .expect("backup")
        .to_string();
    assert_eq!(
        std::fs::read_to_string(backup).expect("read backup"),
        "legacy\n"
    );
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn template_and_source_files() {
    let sb = Sandbox::new();
    sb.write_beside(
        "motd.j2",
        "host {{ name }}: {% for p in ports %}{{ p }} {% endfor %}\n",
    );
    sb.write_beside("blob.bin", "\u{0}\u{1}binary");
    sb.write("/srv/seed.txt", "seed\n");
    sb.write_manifest(
        r#"
[vars]
name = "web1"
ports = "unused"

[file.motd]
path = "/etc/motd"
template = "motd.j2"

[file.blob]
path = "/opt/blob.bin"
source = "blob.bin"

[file.copy]
path = "/opt/copy.txt"
source = "/srv/seed.txt"
"#,
    );
    // `ports` is a string: the template iterates its characters, which is still well defined.
    assert_eq!(sb.apply().code, 2);
    assert!(
        sb.read("/etc/motd").starts_with("host web1: u n u s e d"),
        "{}",
        sb.read("/etc/motd")
    );
    assert_eq!(
        std::fs::read(sb.path("/opt/blob.bin")).expect("blob"),
        b"\x00\x01binary"
    );
    assert_eq!(sb.read("/opt/copy.txt"), "seed\n");
    assert_eq!(sb.apply().code, 0);

    // The host source changes: the copy drifts.
    sb.write("/srv/seed.txt", "seed v2\n");
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["file.copy"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read("/opt/copy.txt"), "seed v2\n");
}

#[test]
fn owner_and_group_by_name_from_the_roots_databases() {
    let sb = Sandbox::new();
    sb.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nweb:x:1234:1234::/srv:/bin/false\n",
    );
    sb.write("/etc/group", "root:x:0:\nweb:x:1234:\n");
    sb.write_manifest("[file.f]\npath = \"/srv/f\"\ncontent = \"x\"\nowner = \"web\"\ngroup = \"web\"\nmode = \"0600\"\n");
    assert_eq!(sb.apply().code, 2);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(sb.path("/srv/f")).expect("meta");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (1234, 1234, 0o600)
    );
    assert_eq!(sb.apply().code, 0);

    std::os::unix::fs::chown(sb.path("/srv/f"), Some(0), None).expect("chown");
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "file.f"), ["owner"]);
    assert_eq!(
        resource(&plan, "file.f")["changes"][0]["description"],
        "owner: 0 → 1234 (web)"
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        std::fs::metadata(sb.path("/srv/f")).expect("meta").uid(),
        1234
    );
}

#[test]
fn a_directory_in_the_way_is_a_failure_not_a_replacement() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/etc/motd")).expect("mkdir");
    sb.write("/etc/motd/keep", "precious");
    sb.write_manifest("[file.motd]\npath = \"/etc/motd\"\ncontent = \"x\"\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "file.motd")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.ends_with("/etc/motd exists and is not a regular file"),
        "{err}"
    );
    assert_eq!(sb.read("/etc/motd/keep"), "precious");
}

#[test]
fn atomic_replace_leaves_no_temporary_files() {
    let sb = Sandbox::new();
    let mut m = String::new();
    for i in 0..50 {
        m.push_str(&format!(
            "[file.f{i}]\npath = \"/data/f{i}\"\ncontent = \"{}\"\n",
            "x".repeat(i * 100)
        ));
    }
    sb.write_manifest(&m);
    assert_eq!(sb.apply().code, 2);
    let names: Vec<String> = std::fs::read_dir(sb.path("/data"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 50, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with('f')), "{names:?}");
}
