//! What users read most, snapshotted: the human plan and apply output and the JSON report of a
//! manifest that touches every kind a sandbox can hold without a Docker engine or a CA. A change
//! of wording or schema is then a reviewed diff. Times, dates, digests and the sandbox's path are
//! filtered.

use tend_tests::Sandbox;

const MANIFEST: &str = r#"
[directory.app]
path = "/srv/app"
mode = "0750"

[file.conf]
path = "/srv/app/app.conf"
content = "listen = 127.0.0.1:8080\nworkers = 4\n"
mode = "0640"
notify = ["exec.reload"]

[env_file.app]
path = "/srv/app/.env"
[env_file.app.set]
PORT = "8080"
DEBUG = "false"

[exec.reload]
command = ["true"]
refresh_only = true

[exec.init]
command = "touch \"$TEND_ROOT/srv/app/.initialised\""
creates = "/srv/app/.initialised"
requires = ["directory.app"]

[nginx_site.app]
path = "/etc/nginx/sites/app.conf"
server_names = ["app.tend.test"]
upstream = "http://127.0.0.1:8080"
tls = { cert = "/etc/ssl/app/cert.pem", key = "/etc/ssl/app/key.pem" }
http2 = "listen"
validate = "off"

[cert.app]
names = ["app.tend.test"]
cert = "/etc/ssl/app/cert.pem"
key = "/etc/ssl/app/key.pem"
provider = "self_signed"
days = 90

[file.old]
path = "/etc/old.conf"
state = "absent"
"#;

fn filters(sb: &Sandbox) -> Vec<(String, String)> {
    vec![
        (
            regex_escape(sb.dir.path().to_str().expect("utf8")),
            "[SANDBOX]".into(),
        ),
        (r"\(\d+ ms\)".into(), "([MS] ms)".into()),
        (
            r#""duration_ms": \d+"#.into(),
            r#""duration_ms": [MS]"#.into(),
        ),
        (
            r#""started_at": "[^"]+""#.into(),
            r#""started_at": "[TIME]""#.into(),
        ),
        (
            r#""not_after": "[^"]+""#.into(),
            r#""not_after": "[TIME]""#.into(),
        ),
        (
            r#""not_before": "[^"]+""#.into(),
            r#""not_before": "[TIME]""#.into(),
        ),
        // A certificate issued this run: its whole days left depend on the time of day.
        (
            r#""days_left": \d+"#.into(),
            r#""days_left": [DAYS]"#.into(),
        ),
        (r"\(\d+ days left".into(), "([DAYS] days left".into()),
        (r"[0-9a-f]{64}".into(), "[SHA256]".into()),
        (r"sha256 [0-9a-f]{12}".into(), "sha256 [SHA]".into()),
        (r#""host": "[^"]*""#.into(), r#""host": "[HOST]""#.into()),
        (
            r#""tend_version": "[^"]+""#.into(),
            r#""tend_version": "[VERSION]""#.into(),
        ),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[test]
fn plan_apply_and_report_read_as_snapshotted() {
    let sb = Sandbox::new();
    sb.write_manifest(MANIFEST);
    sb.write("/etc/old.conf", "stale\n");
    sb.write(
        "/srv/app/.env",
        "# the app's settings\nPORT=80\nNAME=shop\n",
    );
    let plan = sb.tend("plan", &["-v"]);
    assert_eq!(plan.code, 2, "{}", plan.stderr);
    let apply = sb.tend("apply", &[]);
    assert_eq!(apply.code, 2, "{}", apply.stderr);
    let noop = sb.tend("apply", &["--format", "json"]);
    assert_eq!(noop.code, 0, "{}", noop.stderr);
    sb.write("/srv/app/app.conf", "listen = 0.0.0.0:8080\nworkers = 4\n");
    let report = sb.tend("apply", &["--format", "json"]);
    assert_eq!(report.code, 2, "{}", report.stderr);
    let filters = filters(&sb);
    let filters: Vec<(&str, &str)> = filters
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    insta::with_settings!({ filters => filters }, {
        insta::assert_snapshot!("plan_human", plan.stdout);
        insta::assert_snapshot!("apply_human", apply.stdout);
        insta::assert_snapshot!("repair_report_json", report.stdout);
    });
}
