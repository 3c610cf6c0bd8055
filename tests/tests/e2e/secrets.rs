//! Secrets: generated once, stable, private, and never in any output.

use tend_tests::Sandbox;

#[test]
fn secret_values_never_reach_output_and_stay_stable() {
    let sb = Sandbox::new();
    sb.write_manifest(
        r#"
[file.env]
path = "/srv/app.env"
content = "DB_PASSWORD={{ secret('db_password', 24) }}\n"
mode = "0600"

[file.leaky]
path = "/srv/leaky.txt"
content = "not marked: {{ secret('db_password', 24) }}\n"

[exec.uses]
command = "echo password is {{ secret('db_password', 24) }}"
creates = "/never"
"#,
    );
    let report_file = sb.dir.path().join("report.json");
    let plan = sb.tend(
        "plan",
        &["--report", report_file.to_str().expect("utf8"), "-vv"],
    );
    let apply = sb.tend("apply", &["-vv"]);
    let apply_json = sb.tend(
        "apply",
        &["--format", "json", "--log-format", "json", "-vv"],
    );
    let secret =
        std::fs::read_to_string(sb.state_dir().join("secrets/db_password")).expect("stored secret");
    assert_eq!(secret.len(), 24);
    assert_eq!(sb.read("/srv/app.env"), format!("DB_PASSWORD={secret}\n"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sb.state_dir().join("secrets/db_password"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let last_run = std::fs::read_to_string(sb.state_dir().join("last-run.json")).expect("last-run");
    let report = std::fs::read_to_string(&report_file).expect("report");
    for (what, text) in [
        ("plan stdout", &plan.stdout),
        ("plan stderr", &plan.stderr),
        ("apply stdout", &apply.stdout),
        ("apply stderr", &apply.stderr),
        ("json stdout", &apply_json.stdout),
        ("json stderr", &apply_json.stderr),
        ("last-run.json", &last_run),
        ("report", &report),
    ] {
        assert!(!text.contains(&secret), "{what} leaks the secret:\n{text}");
    }
    assert!(apply.stdout.contains("(sensitive)"), "{}", apply.stdout);
    // The secret stays the same on later runs: the file is in sync.
    let again = sb.plan_json();
    assert_eq!(
        tend_tests::resource(&again, "file.env")["status"],
        "in_sync"
    );
}

/// A file whose content holds a secret is created readable by its owner only, unless the
/// manifest names a mode.
#[test]
fn a_new_file_holding_a_secret_is_created_0600() {
    let sb = tend_tests::Sandbox::new();
    sb.write_manifest(
        "[file.key]\npath = \"/etc/app/key\"\ncontent = \"{{ secret('k', 24) }}\"\n\n\
         [file.plain]\npath = \"/etc/app/plain\"\ncontent = \"x\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.mode("/etc/app/key"), 0o600);
    assert_eq!(sb.mode("/etc/app/plain"), 0o644);
    assert_eq!(sb.apply().code, 0, "second run: zero changes");
}

/// A secret in a field that is shown (an owner, a package name, a path) is a load error that
/// does not repeat it — derived values too, which no scrubbing of exact values would catch.
#[test]
fn a_secret_where_it_would_be_shown_is_a_load_error() {
    let sb = tend_tests::Sandbox::new();
    for (manifest, field) in [
        (
            "[file.f]\npath = \"/f\"\ncontent = \"x\"\nowner = \"{{ secret('o', 12) | upper }}\"\n",
            "owner",
        ),
        (
            "[package.p]\nnames = [\"curl\", \"{{ secret('p', 12)[:6] }}\"]\n",
            "names",
        ),
        (
            "[file.f]\npath = \"/etc/{{ secret('d', 12) }}\"\ncontent = \"x\"\n",
            "path",
        ),
        (
            "[exec.e]\ncommand = \"true\"\nuser = \"{{ secret('u', 12) }}\"\n",
            "user",
        ),
    ] {
        sb.write_manifest(manifest);
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{manifest}: {r:?}");
        assert!(
            r.stderr.contains(&format!("`{field}` of"))
                && r.stderr.contains("cannot hold a secret"),
            "{manifest}: {}",
            r.stderr
        );
    }
    // Where tend hides it, a secret is welcome.
    sb.write_manifest(
        "[exec.e]\ncommand = \"true\"\nenv = { TOKEN = \"{{ secret('t', 12) }}\" }\n\n\
         [file.f]\npath = \"/f\"\ncontent = \"{{ secret('c', 12) }}\"\n",
    );
    assert_eq!(sb.tend("check", &[]).code, 0);
}
