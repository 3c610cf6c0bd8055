//! `directory` as a timeline.

use tend_tests::{changed_fields, with_status, Sandbox};

#[test]
fn directory_timeline() {
    let sb = Sandbox::new();
    sb.write_manifest("[directory.data]\npath = \"/data/nginx/user_conf.d\"\nmode = \"0750\"\n");
    let plan = sb.plan();
    assert_eq!(plan.code, 2);
    assert!(
        plan.stdout.contains("+ directory.data create (mode 0750)"),
        "{}",
        plan.stdout
    );
    assert!(!sb.path("/data").exists(), "plan created something");

    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.mode("/data/nginx/user_conf.d"), 0o750);
    assert_eq!(
        sb.mode("/data/nginx"),
        0o755,
        "parents get the default mode"
    );
    assert_eq!(sb.apply().code, 0);

    sb.set_mode("/data/nginx/user_conf.d", 0o777);
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["directory.data"]);
    assert_eq!(changed_fields(&plan, "directory.data"), ["mode"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.mode("/data/nginx/user_conf.d"), 0o750);

    std::fs::remove_dir(sb.path("/data/nginx/user_conf.d")).expect("rmdir");
    assert_eq!(changed_fields(&sb.plan_json(), "directory.data"), ["state"]);
    assert_eq!(sb.apply().code, 2);
    assert!(sb.path("/data/nginx/user_conf.d").is_dir());
}

#[test]
fn absent_directory_is_removed_only_when_empty() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/old/empty")).expect("mkdir");
    sb.write("/old/full/data", "keep me");
    sb.write_manifest(
        "[directory.empty]\npath = \"/old/empty\"\nstate = \"absent\"\n\n[directory.full]\npath = \"/old/full\"\nstate = \"absent\"\n",
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 6, "one removed, one refused: {report:#}");
    assert!(!sb.path("/old/empty").exists());
    assert_eq!(sb.read("/old/full/data"), "keep me");
    let err = tend_tests::resource(&report, "directory.full")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.contains("holds 1 entries; tend removes only empty directories"),
        "{err}"
    );
}

#[test]
fn file_inside_a_managed_directory_is_ordered_after_it() {
    let sb = Sandbox::new();
    // The file comes first in the manifest; the graph orders it after its directory.
    sb.write_manifest(
        "[file.conf]\npath = \"/srv/app/conf\"\ncontent = \"x\"\n\n[directory.app]\npath = \"/srv/app\"\nmode = \"0700\"\n",
    );
    let dot = sb.tend("graph", &[]);
    assert_eq!(dot.code, 0);
    assert!(
        dot.stdout
            .contains("\"directory.app\" -> \"file.conf\" [style=dotted, label=\"path\"];"),
        "{}",
        dot.stdout
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        sb.mode("/srv/app"),
        0o700,
        "the directory resource created it, not the file's parent creation"
    );
}
