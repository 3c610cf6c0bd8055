//! `symlink` as a timeline: created, re-run with no change, re-pointed by hand and named as
//! exactly that, a file in its place refused unless `force` (then backed up), owned without
//! following the link, and removed.

use std::os::unix::fs::MetadataExt;

use tend_tests::{changed_fields, resource, with_status, Sandbox};

const MANIFEST: &str = r#"
[symlink.editor]
path = "/etc/alternatives/editor"
target = "/usr/bin/vim.basic"
owner = "65534"

[symlink.relative]
path = "/srv/current"
target = "releases/1.12.1"
"#;

#[test]
fn symlink_timeline_converges_and_names_each_drift() {
    let sb = Sandbox::new();
    sb.write_manifest(MANIFEST);
    sb.write("/usr/bin/vim.basic", "the target, which must stay root's\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let link = sb.path("/etc/alternatives/editor");
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        std::path::Path::new("/usr/bin/vim.basic"),
        "the target as written, not resolved under the root"
    );
    assert_eq!(
        std::fs::symlink_metadata(&link).expect("lstat").uid(),
        65534
    );
    let target_owner = std::fs::metadata(sb.path("/usr/bin/vim.basic"))
        .expect("stat")
        .uid();
    assert_eq!(
        target_owner, 0,
        "the link's owner was set, not its target's"
    );
    assert_eq!(
        std::fs::read_link(sb.path("/srv/current")).expect("link"),
        std::path::Path::new("releases/1.12.1")
    );
    assert_eq!(sb.plan().code, 0);

    // Re-pointed by hand: plan names the target of that link only, and writes nothing.
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink("/usr/bin/nano", &link).expect("ln");
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["symlink.editor"]);
    assert_eq!(changed_fields(&plan, "symlink.editor"), ["target", "owner"]);
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        std::path::Path::new("/usr/bin/nano")
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        std::path::Path::new("/usr/bin/vim.basic")
    );
    assert_eq!(sb.plan().code, 0);

    // A regular file in its place: refused, the file kept; with force, backed up and replaced.
    std::fs::remove_file(sb.path("/srv/current")).expect("rm");
    sb.write("/srv/current", "data someone keeps here\n");
    let plan = sb.plan_json();
    let why = resource(&plan, "symlink.relative")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.ends_with("/srv/current is a regular file, not a symlink; set force = true to replace it with the link (its content is backed up first)"),
        "{why}"
    );
    assert_eq!(sb.apply().code & 4, 4);
    assert_eq!(sb.read("/srv/current"), "data someone keeps here\n");
    sb.write_manifest(&format!("{MANIFEST}force = true\n"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let backup = resource(&report, "symlink.relative")["backups"][0]
        .as_str()
        .expect("backup")
        .to_string();
    assert_eq!(
        std::fs::read_to_string(backup).expect("backup"),
        "data someone keeps here\n"
    );
    assert!(std::fs::symlink_metadata(sb.path("/srv/current"))
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(sb.plan().code, 0);

    // Absent: the link goes, its target stays.
    sb.write_manifest(
        "[symlink.editor]\npath = \"/etc/alternatives/editor\"\nstate = \"absent\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(sb.path("/usr/bin/vim.basic").exists());
    assert_eq!(sb.plan().code, 0);
}
