//! `env_file` on the real Dify `.env.example`, and on the file shapes compose accepts.

use tend_tests::{changed_fields, resource, run, with_status, Sandbox};

const DIFY_EXAMPLE: &str = include_str!("../../fixtures/dify/env.example");

fn dify_manifest() -> &'static str {
    r#"
[env_file.dify]
path = "/opt/dify/docker/.env"
create_from = "/opt/dify/docker/.env.example"
add_missing_from = "/opt/dify/docker/.env.example"
mode = "0600"
secret_keys = ["DB_PASSWORD"]

[env_file.dify.set]
EXPOSE_NGINX_PORT = "127.0.0.1:3000"
EXPOSE_NGINX_SSL_PORT = "127.0.0.1:42743"
NGINX_HTTPS_ENABLED = "false"

[env_file.dify.on_create]
SECRET_KEY = "{{ secret('dify_secret_key', 42) }}"
DB_PASSWORD = "{{ secret('dify_db_password', 32) }}"
REDIS_PASSWORD = "{{ secret('dify_redis_password', 32) }}"
CELERY_BROKER_URL = "redis://:{{ secret('dify_redis_password', 32) }}@redis:6379/1"
"#
}

fn values(sb: &Sandbox, path: &str) -> serde_json::Value {
    let r = run(
        &["inspect", "env", sb.path(path).to_str().expect("utf8")],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).expect("json")
}

#[test]
fn dify_env_timeline() {
    let sb = Sandbox::new();
    sb.write("/opt/dify/docker/.env.example", DIFY_EXAMPLE);
    sb.write_manifest(dify_manifest());

    let plan = sb.plan_json();
    let fields = changed_fields(&plan, "env_file.dify");
    assert_eq!(
        fields,
        [
            "state",
            "EXPOSE_NGINX_PORT",
            "EXPOSE_NGINX_SSL_PORT",
            "SECRET_KEY",
            "DB_PASSWORD",
            "REDIS_PASSWORD",
            "CELERY_BROKER_URL"
        ]
    );
    let port = &resource(&plan, "env_file.dify")["changes"][1];
    assert_eq!(
        port["description"],
        "EXPOSE_NGINX_PORT: \"80\" → \"127.0.0.1:3000\""
    );
    assert!(!sb.path("/opt/dify/docker/.env").exists());

    let apply = sb.apply();
    assert_eq!(apply.code, 2, "{}", apply.stdout);
    let v = values(&sb, "/opt/dify/docker/.env");
    assert_eq!(v["EXPOSE_NGINX_PORT"], "127.0.0.1:3000");
    assert_eq!(v["EXPOSE_NGINX_SSL_PORT"], "127.0.0.1:42743");
    assert_eq!(v["COMPOSE_PROFILES"], "weaviate,postgresql");
    let redis = v["REDIS_PASSWORD"]
        .as_str()
        .expect("redis password")
        .to_string();
    assert_eq!(redis.len(), 32);
    assert_eq!(
        v["CELERY_BROKER_URL"],
        format!("redis://:{redis}@redis:6379/1"),
        "the broker URL embeds the same password"
    );
    assert_ne!(
        v["SECRET_KEY"],
        "sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U"
    );
    assert_eq!(sb.mode("/opt/dify/docker/.env"), 0o600);
    // Every other line of the example is untouched.
    let written = sb.read("/opt/dify/docker/.env");
    let changed = DIFY_EXAMPLE
        .lines()
        .zip(written.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 2 + 4, "two proxy ports and four first-run secrets");
    assert_eq!(DIFY_EXAMPLE.lines().count(), written.lines().count());
    for secret in [
        &redis,
        v["SECRET_KEY"].as_str().expect("key"),
        v["DB_PASSWORD"].as_str().expect("db"),
    ] {
        assert!(
            !apply.stdout.contains(secret) && !apply.stderr.contains(secret),
            "secret leaked:\n{}",
            apply.stdout
        );
    }

    let again = sb.apply();
    assert_eq!(again.code, 0, "second run:\n{}", again.stdout);

    // A key changed by hand: plan names that key only; on_create keys are never rewritten.
    let text = written
        .replace("EXPOSE_NGINX_PORT=127.0.0.1:3000", "EXPOSE_NGINX_PORT=8080")
        .replace(
            &format!("DB_PASSWORD={}", v["DB_PASSWORD"].as_str().expect("db")),
            "DB_PASSWORD=changed-by-hand",
        );
    sb.write("/opt/dify/docker/.env", &text);
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["env_file.dify"]);
    assert_eq!(
        changed_fields(&plan, "env_file.dify"),
        ["EXPOSE_NGINX_PORT"]
    );
    assert_eq!(
        resource(&plan, "env_file.dify")["changes"][0]["description"],
        "EXPOSE_NGINX_PORT: \"8080\" → \"127.0.0.1:3000\""
    );
    assert_eq!(sb.apply().code, 2);
    let v = values(&sb, "/opt/dify/docker/.env");
    assert_eq!(v["EXPOSE_NGINX_PORT"], "127.0.0.1:3000");
    assert_eq!(
        v["DB_PASSWORD"], "changed-by-hand",
        "on_create keys belong to the operator after creation"
    );
    assert_eq!(sb.apply().code, 0);

    // An upgrade brings a new key in .env.example: it is appended, nothing else moves.
    let mut example = DIFY_EXAMPLE.to_string();
    example.push_str("# New in the next release\nNEW_FEATURE_FLAG=enabled\n");
    sb.write("/opt/dify/docker/.env.example", &example);
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "env_file.dify"), ["NEW_FEATURE_FLAG"]);
    assert_eq!(sb.apply().code, 2);
    assert!(sb
        .read("/opt/dify/docker/.env")
        .ends_with("\nNEW_FEATURE_FLAG=enabled\n"));
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn secret_keys_never_show_their_values() {
    let sb = Sandbox::new();
    sb.write("/srv/.env", "API_TOKEN=old-token-value\nOTHER=1\n");
    sb.write_manifest(
        "[env_file.app]\npath = \"/srv/.env\"\nsecret_keys = [\"API_TOKEN\"]\n[env_file.app.set]\nAPI_TOKEN = \"new-token-value\"\n",
    );
    let plan = sb.plan();
    assert_eq!(plan.code, 2);
    let line = plan
        .stdout
        .lines()
        .find(|l| l.contains("API_TOKEN"))
        .expect("a line for the key");
    // `(sensitive) ab12… → cd34…`: fingerprints under the host key, never the values.
    let shape = line
        .split("API_TOKEN: (sensitive) ")
        .nth(1)
        .expect("sensitive marker");
    let parts: Vec<&str> = shape.split(" → ").collect();
    assert!(
        parts.len() == 2
            && parts
                .iter()
                .all(|p| p.chars().count() == 5 && p.ends_with('…'))
            && parts[0] != parts[1],
        "{}",
        plan.stdout
    );
    let json = sb.tend("apply", &["--format", "json"]);
    for text in [
        &plan.stdout,
        &json.stdout,
        &json.stderr,
        &sb.read("/var/lib/tend/last-run.json"),
    ] {
        assert!(
            !text.contains("old-token-value") && !text.contains("new-token-value"),
            "{text}"
        );
    }
    assert_eq!(sb.read("/srv/.env"), "API_TOKEN=new-token-value\nOTHER=1\n");
}

#[test]
fn crlf_no_final_newline_duplicates_and_export_are_preserved() {
    let sb = Sandbox::new();
    sb.write(
        "/a/.env",
        "# app\r\nexport MODE=dev\r\nPORT=1\r\nPORT=2 # the last one wins\r\nKEEP='x y'",
    );
    sb.write_manifest(
        r#"
[env_file.a]
path = "/a/.env"
absent = ["KEEP"]
[env_file.a.set]
MODE = "prod"
PORT = "8080"
NEW = "needs quoting #1"
"#,
    );
    let plan = sb.plan_json();
    assert_eq!(
        changed_fields(&plan, "env_file.a"),
        ["MODE", "PORT", "NEW", "KEEP"]
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        sb.read("/a/.env"),
        "# app\r\nexport MODE=prod\r\nPORT=8080\r\nPORT=8080 # the last one wins\r\nNEW='needs quoting #1'\r\n"
    );
    assert_eq!(sb.apply().code, 0);
    let v = values(&sb, "/a/.env");
    assert_eq!(
        v,
        serde_json::json!({"MODE": "prod", "PORT": "8080", "NEW": "needs quoting #1"})
    );
}

#[test]
fn a_file_compose_would_reject_is_a_failure_naming_the_line() {
    let sb = Sandbox::new();
    sb.write("/a/.env", "A=1\nB=\"s3cret-value\nC=3\n");
    sb.write_manifest("[env_file.a]\npath = \"/a/.env\"\n[env_file.a.set]\nA = \"2\"\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "env_file.a")["error"]
        .as_str()
        .expect("error")
        .to_string();
    // The line and the column, never the value (it may be a secret).
    assert!(err.ends_with("/a/.env: line 2: unterminated quoted value: the \" at column 3 is never closed (docker compose would reject this file)"), "{err}");
    assert!(!serde_json::to_string(&report)
        .expect("json")
        .contains("s3cret"));
    assert_eq!(sb.read("/a/.env"), "A=1\nB=\"s3cret-value\nC=3\n");

    let r = run(
        &["inspect", "env", sb.path("/a/.env").to_str().expect("utf8")],
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.trim().ends_with(
            "/a/.env: line 2: unterminated quoted value: the \" at column 3 is never closed"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("s3cret") && !r.stdout.contains("s3cret"));

    // A substitution that never closes: its place, not the value.
    sb.write("/a/.env", "A=1\nB=s3cret${C\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "env_file.a")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.ends_with("/a/.env: line 2: Invalid template: the `${` at character 7 of the value is never closed (docker compose would reject this file)"),
        "{err}"
    );
    assert!(!serde_json::to_string(&report)
        .expect("json")
        .contains("s3cret"));
    assert_eq!(sb.read("/a/.env"), "A=1\nB=s3cret${C\n");
}

#[test]
fn inspect_env_consults_the_process_environment_first() {
    let sb = Sandbox::new();
    sb.write("/x.env", "VECTOR_STORE=weaviate\nCOMPOSE_PROFILES=${VECTOR_STORE:-x},${DB_TYPE:-postgresql}\nFROM_ENV\n");
    let path = sb.path("/x.env");
    let r = run(
        &["inspect", "env", path.to_str().expect("utf8")],
        &[("VECTOR_STORE", "qdrant"), ("FROM_ENV", "yes")],
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"VECTOR_STORE": "weaviate", "COMPOSE_PROFILES": "qdrant,postgresql", "FROM_ENV": "yes"})
    );
}

/// The `.env.example` is not there yet, but the dependency that creates it says what it will
/// hold: plan checks the `.env` against that, exactly as apply will find it.
#[test]
fn create_from_a_source_a_dependency_would_create_is_planned_against_it() {
    let sb = Sandbox::new();
    sb.write_manifest(
        r#"
[file.example]
path = "/opt/app/.env.example"
content = "A=1\n"

[env_file.app]
path = "/opt/app/.env"
create_from = "/opt/app/.env.example"
requires = ["file.example"]
[env_file.app.set]
A = "2"
"#,
    );
    let plan = sb.plan_json();
    assert_eq!(
        with_status(&plan, "would_change"),
        ["file.example", "env_file.app"]
    );
    let env = tend_tests::resource(&plan, "env_file.app");
    assert!(
        env["reason"]
            .as_str()
            .unwrap_or("")
            .contains("checked against /opt/app/.env.example as file.example would leave it"),
        "{env:#}"
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read("/opt/app/.env"), "A=2\n");
    assert_eq!(
        sb.mode("/opt/app/.env"),
        0o600,
        "a created .env defaults to 0600"
    );
}

#[test]
fn a_broken_line_holding_a_secret_is_named_never_quoted() {
    let sb = Sandbox::new();
    sb.write(
        "/srv/app/.env",
        "HOST=db\nDB_PASSWORD=\"hunter2-very-secret\nPORT=5432\n",
    );
    sb.write_manifest(
        "[env_file.app]\npath = \"/srv/app/.env\"\nsecret_keys = [\"DB_PASSWORD\"]\n[env_file.app.set]\nPORT = \"5433\"\n",
    );
    for args in [&["plan"][..], &["apply"][..]] {
        let r = sb.tend(args[0], &["--format", "json"]);
        assert_eq!(r.code, 4, "{}", r.stdout);
        assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
        assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
        let err = r.json()["resources"][0]["error"]
            .as_str()
            .expect("error")
            .to_string();
        assert!(
            err.contains("line 2: the value of DB_PASSWORD is malformed (not shown: DB_PASSWORD is sensitive)"),
            "{err}"
        );
    }
}

#[test]
fn lines_that_are_not_utf8_keep_their_bytes() {
    let sb = Sandbox::new();
    let original = b"# caf\xe9 latin-1 comment\nA=1\nB=\xff\xfe\n".to_vec();
    std::fs::create_dir_all(sb.path("/srv")).expect("mkdir");
    std::fs::write(sb.path("/srv/.env"), &original).expect("write");
    sb.write_manifest("[env_file.e]\npath = \"/srv/.env\"\n[env_file.e.set]\nA = \"2\"\n");
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        std::fs::read(sb.path("/srv/.env")).expect("read"),
        b"# caf\xe9 latin-1 comment\nA=2\nB=\xff\xfe\n".to_vec()
    );
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn a_leftover_temporary_beside_the_env_is_drift_and_removed() {
    let sb = Sandbox::new();
    sb.write_manifest("[env_file.e]\npath = \"/srv/.env\"\n[env_file.e.set]\nA = \"1\"\n");
    assert_eq!(sb.apply().code, 2);
    sb.write("/srv/.tend-tmp..env", "A=1\nSECRET=old\n");
    let plan = sb.plan_json();
    assert_eq!(
        tend_tests::changed_fields(&plan, "env_file.e"),
        ["leftover"]
    );
    assert_eq!(sb.apply().code, 2);
    assert!(!sb.path("/srv/.tend-tmp..env").exists());
    assert_eq!(sb.apply().code, 0);
}

/// Found by the `env_edit` fuzz target: a last line with no `=` and no line break is a variable
/// with no name to compose; appending a key would turn it into an error. tend edits no such file,
/// and says which line (never its text: it may be a secret).
#[test]
fn a_last_line_without_equals_is_refused_not_broken() {
    let sb = Sandbox::new();
    sb.write("/srv/app/.env", "A=1\nsecret words");
    sb.write_manifest(
        "[env_file.app]\npath = \"/srv/app/.env\"\n\n[env_file.app.set]\nB = \"2\"\n",
    );
    let r = sb.apply();
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stdout.contains("line 2 has no `=`"), "{}", r.stdout);
    assert!(!r.stdout.contains("secret words"), "{}", r.stdout);
    assert_eq!(sb.read("/srv/app/.env"), "A=1\nsecret words");
}

#[test]
fn removing_a_key_another_value_requires_is_refused_before_writing() {
    let sb = Sandbox::new();
    let before = "B=1\nA=${B?B is needed by A}\nC=2\n";
    sb.write("/a/.env", before);
    sb.write_manifest("[env_file.a]\npath = \"/a/.env\"\nabsent = [\"B\"]\n");
    // Plan says what apply would do: fail, naming the line that needs B.
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 4);
    let want = "/a/.env: after this change line 1: required variable B is missing a value: B is needed by A (docker compose would reject the file); nothing written";
    let err = resource(&plan, "env_file.a")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(err.ends_with(want), "{err}");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "env_file.a")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(err.ends_with(want), "{err}");
    assert_eq!(sb.read("/a/.env"), before, "nothing written");
    // Emptying it is refused the same way when the reference wants a non-empty value.
    sb.write("/a/.env", "B=1\nA=${B:?}\n");
    sb.write_manifest("[env_file.a]\npath = \"/a/.env\"\n[env_file.a.set]\nB = \"\"\n");
    let (code, _) = sb.apply_json();
    assert_eq!(code, 4);
    assert_eq!(sb.read("/a/.env"), "B=1\nA=${B:?}\n");
    // Without the reference the same removal applies, and a second run changes nothing.
    sb.write("/a/.env", "A=1\nB=1\n");
    sb.write_manifest("[env_file.a]\npath = \"/a/.env\"\nabsent = [\"B\"]\n");
    assert_eq!(sb.apply_json().0, 2, "changed");
    assert_eq!(sb.read("/a/.env"), "A=1\n");
    assert_eq!(sb.plan_json()["exit_code"], 0);
    assert_eq!(sb.apply_json().0, 0, "nothing left to change");
}

/// `validate` on an `.env`: the candidate is checked before it replaces the live file; a refusal
/// is planned as a failure and leaves the file as it was.
#[test]
fn validate_checks_the_env_file_before_it_is_replaced() {
    let sb = tend_tests::Sandbox::new();
    sb.write("/srv/app/.env", "DB_PORT=5432\n");
    let manifest = |set: &str| {
        format!(
            "[env_file.app]\npath = \"/srv/app/.env\"\nset = {{ {set} }}\nvalidate = \"grep -q '^DB_HOST=' %s\"\n"
        )
    };
    sb.write_manifest(&manifest("DB_PORT = \"5433\""));
    let plan = sb.plan_json();
    assert_eq!(
        tend_tests::with_status(&plan, "will_fail"),
        ["env_file.app"],
        "{plan:#}"
    );
    let (code, _) = sb.apply_json();
    assert_eq!(code & 4, 4);
    assert_eq!(
        sb.read("/srv/app/.env"),
        "DB_PORT=5432\n",
        "the live file as it was"
    );
    sb.write_manifest(&manifest("DB_PORT = \"5433\", DB_HOST = \"db\""));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read("/srv/app/.env"), "DB_PORT=5433\nDB_HOST=db\n");
    assert_eq!(sb.plan().code, 0);
}
