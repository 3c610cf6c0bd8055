//! `cert` against real certificates (made by openssl with exact dates) and a real ACME server
//! (pebble on loopback, validating HTTP-01 through nginx serving the webroot).

use tend_tests::docker::{docker, unique, volume_mountpoint, Cleanup, Made};
use tend_tests::pki::{asn1_time, cert, certbot_layout, key, Pebble};
use tend_tests::{changed_fields, resource, with_status, Sandbox};

/// Days left are whole days, rounded down: a certificate made to end N days from now has N
/// left within the second it was made, N - 1 after.
fn assert_days_left(observed: &serde_json::Value, n: i64) {
    let d = observed["days_left"].as_i64().expect("days_left");
    assert!(
        d == n || d == n - 1,
        "days_left {d}, expected {n} or {}: {observed}",
        n - 1
    );
}

#[test]
fn acme_issue_renew_and_notify_once() {
    let sb = Sandbox::new();
    let webroot = sb.path("/var/www/acme");
    let pebble = Pebble::start(&webroot);
    let manifest = format!(
        r#"[cert.site]
names = ["site.tend.test", "www.site.tend.test"]
cert = "/etc/ssl/site/fullchain.pem"
key = "/etc/ssl/site/privkey.pem"
chain = "/etc/ssl/site/chain.pem"
provider = "acme"
directory = "{dir}"
ca_bundle = "{ca}"
email = "ops@tend.test"
challenge = {{ webroot = "/var/www/acme" }}
notify = ["exec.reload"]

[exec.reload]
command = "echo reloaded >> $TEND_ROOT/reloads"
refresh_only = true
"#,
        dir = pebble.directory,
        ca = pebble.ca_bundle.display()
    );
    sb.write_manifest(&manifest);
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "cert.site"), ["cert"]);
    assert_eq!(pebble.orders(), 0, "plan never orders");

    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(pebble.orders(), 1);
    assert_eq!(sb.mode("/etc/ssl/site/privkey.pem"), 0o600);
    let observed = &resource(&report, "cert.site")["observed"];
    assert_eq!(observed["state"], "valid", "{observed}");
    assert!(
        observed["issuer"]
            .as_str()
            .expect("issuer")
            .contains("Pebble Intermediate"),
        "{observed}"
    );
    assert_eq!(observed["names"][1], "www.site.tend.test");
    assert_eq!(sb.read("/reloads"), "reloaded\n");
    assert_eq!(
        std::fs::read_dir(webroot.join(".well-known/acme-challenge"))
            .expect("dir")
            .count(),
        0,
        "challenge files removed"
    );

    // Second run: nothing to do, no new order at the CA, no reload.
    let (code, report) = sb.apply_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        pebble.orders(),
        1,
        "a valid certificate is never re-ordered"
    );
    assert_eq!(sb.read("/reloads"), "reloaded\n");

    // A chain file that no longer holds the fullchain's intermediates is named, in plan.
    let good_chain = sb.read("/etc/ssl/site/chain.pem");
    let leaf_only = sb
        .read("/etc/ssl/site/fullchain.pem")
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .expect("leaf")
        .to_string();
    sb.write("/etc/ssl/site/chain.pem", &leaf_only);
    assert_eq!(changed_fields(&sb.plan_json(), "cert.site"), ["chain"]);
    sb.write("/etc/ssl/site/chain.pem", &good_chain);

    // A certificate inside the renewal window (made with openssl: 5 days left).
    let k = sb.path("/etc/ssl/site/privkey.pem");
    let c = sb.path("/etc/ssl/site/fullchain.pem");
    cert(
        &c,
        &k,
        &["site.tend.test", "www.site.tend.test"],
        &asn1_time(-1),
        &asn1_time(5),
    );
    std::fs::copy(&c, sb.path("/etc/ssl/site/chain.pem")).expect("chain");
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "cert.site"), ["expiry"]);
    assert_days_left(&resource(&plan, "cert.site")["observed"], 5);
    assert_eq!(
        resource(&plan, "exec.reload")["refresh"]["status"],
        "would_run"
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(pebble.orders(), 2, "renewed");
    assert_eq!(
        sb.read("/reloads"),
        "reloaded\nreloaded\n",
        "dependents notified once"
    );
    assert_eq!(sb.plan_json()["exit_code"], 0);
}

#[test]
fn acme_failures_are_explained_and_backed_off() {
    let sb = Sandbox::new();
    // The webroot nginx serves is not the one the manifest writes to: validation fails.
    let pebble = Pebble::start(&sb.path("/var/www/elsewhere"));
    sb.write_manifest(&format!(
        "[cert.site]\nnames = [\"bad.tend.test\"]\ncert = \"/etc/ssl/bad/fullchain.pem\"\nkey = \"/etc/ssl/bad/privkey.pem\"\nprovider = \"acme\"\ndirectory = \"{}\"\nca_bundle = \"{}\"\nchallenge = {{ webroot = \"/var/www/acme\" }}\n",
        pebble.directory,
        pebble.ca_bundle.display()
    ));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    let err = resource(&report, "cert.site")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(err.contains("the CA could not"), "{err}");
    assert_eq!(pebble.orders(), 1);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "cert.site")["error"]
        .as_str()
        .expect("error");
    assert!(
        err.starts_with("not asking the CA again for 60 min after 1 failed attempt(s)"),
        "{err}"
    );
    assert_eq!(pebble.orders(), 1, "backed off: no new order");
}

#[test]
fn audit_names_every_defect_and_kicks_the_renewer() {
    let sb = Sandbox::new();
    let k = sb.path("/certs/key.pem");
    let other = sb.path("/certs/other-key.pem");
    key(&k);
    key(&other);
    let now = asn1_time(-1);
    cert(
        &sb.path("/certs/valid.pem"),
        &k,
        &["a.tend.test"],
        &now,
        &asn1_time(60),
    );
    cert(
        &sb.path("/certs/expired.pem"),
        &k,
        &["a.tend.test"],
        &asn1_time(-90),
        &asn1_time(-2),
    );
    cert(
        &sb.path("/certs/names.pem"),
        &k,
        &["b.tend.test"],
        &now,
        &asn1_time(60),
    );
    cert(
        &sb.path("/certs/mismatch.pem"),
        &other,
        &["a.tend.test"],
        &now,
        &asn1_time(60),
    );
    // Valid for 60 days, starting in 5: every client refuses it today.
    cert(
        &sb.path("/certs/future.pem"),
        &k,
        &["a.tend.test"],
        &asn1_time(5),
        &asn1_time(60),
    );
    // openssl, the reference, says so too.
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(sb.path("/certs/future.pem"))
        .arg(sb.path("/certs/future.pem"))
        .output()
        .expect("openssl");
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("not yet valid")
            || String::from_utf8_lossy(&verify.stderr).contains("not yet valid"),
        "{verify:?}"
    );
    // A leaf followed by a certificate that did not sign it.
    let broken = sb.read("/certs/valid.pem") + &sb.read("/certs/mismatch.pem");
    sb.write("/certs/chain.pem", &broken);
    let one = |name: &str, file: &str, extra: &str| {
        format!("[cert.{name}]\nnames = [\"a.tend.test\"]\ncert = \"/certs/{file}\"\nkey = \"/certs/key.pem\"\n{extra}\n")
    };
    sb.write_manifest(
        &[
            one("valid", "valid.pem", ""),
            one("expired", "expired.pem", "notify = [\"exec.kick\"]"),
            one("names", "names.pem", ""),
            one("mismatch", "mismatch.pem", ""),
            one("missing", "missing.pem", ""),
            one("chain", "chain.pem", ""),
            one("future", "future.pem", ""),
            "[exec.kick]\ncommand = \"echo kicked >> $TEND_ROOT/kicks\"\nrefresh_only = true\n"
                .to_string(),
        ]
        .join("\n"),
    );
    let plan = sb.plan_json();
    // Apply can only fail on an audited certificate that falls short: plan says so, and an
    // audit alerts on it (the failure bit), with the renewer's kick still planned.
    assert_eq!(plan["exit_code"], 6, "{plan:#}");
    assert_eq!(with_status(&plan, "in_sync"), ["cert.valid", "exec.kick"]);
    assert_eq!(
        with_status(&plan, "will_fail"),
        [
            "cert.expired",
            "cert.names",
            "cert.mismatch",
            "cert.missing",
            "cert.chain",
            "cert.future"
        ]
    );
    assert!(resource(&plan, "cert.expired")["error"]
        .as_str()
        .unwrap_or("")
        .starts_with("audit only: tend does not renew this certificate"));
    assert_eq!(
        resource(&plan, "exec.kick")["refresh"]["status"],
        "would_run"
    );
    let text = sb.plan();
    assert_eq!(text.code, 6);
    assert!(
        text.stdout
            .contains("! cert.expired would fail: audit only"),
        "{}",
        text.stdout
    );
    let valid = &resource(&plan, "cert.valid")["observed"];
    assert_days_left(valid, 60);
    assert_eq!(valid["names"][0], "a.tend.test");
    assert!(valid["issuer"]
        .as_str()
        .expect("issuer")
        .contains("a.tend.test"));
    assert_eq!(changed_fields(&plan, "cert.expired"), ["expiry"]);
    assert_eq!(
        resource(&plan, "cert.expired")["observed"]["state"],
        "expired"
    );
    assert_eq!(changed_fields(&plan, "cert.names"), ["names"]);
    assert_eq!(changed_fields(&plan, "cert.mismatch"), ["key"]);
    assert_eq!(changed_fields(&plan, "cert.missing"), ["cert"]);
    assert_eq!(changed_fields(&plan, "cert.chain"), ["chain"]);
    assert_eq!(changed_fields(&plan, "cert.future"), ["validity"]);
    assert_eq!(
        resource(&plan, "cert.future")["observed"]["state"],
        "not_yet_valid"
    );
    let desc = resource(&plan, "cert.names")["changes"][0]["description"]
        .as_str()
        .expect("d");
    assert_eq!(
        desc,
        "names not covered: a.tend.test (the certificate has b.tend.test)"
    );

    // Apply cannot fix an audited certificate: a failure with the reason; the renewer is kicked.
    let (code, report) = sb.apply_json();
    assert_eq!(code, 6, "failures, and the kick ran: {report:#}");
    let err = resource(&report, "cert.expired")["error"]
        .as_str()
        .expect("error");
    assert!(
        err.starts_with("audit only: tend does not renew this certificate"),
        "{err}"
    );
    assert!(
        err.contains("certificate expired 2 days ago")
            || err.contains("certificate expired 3 days ago"),
        "{err}"
    );
    assert_eq!(resource(&report, "exec.kick")["refresh"]["status"], "ran");
    assert_eq!(sb.read("/kicks"), "kicked\n");
    assert_eq!(resource(&report, "cert.valid")["status"], "in_sync");
}

#[test]
fn audit_a_certificate_inside_a_docker_volume() {
    let volume = unique("tendcerts");
    let _cleanup = Cleanup(Made {
        volumes: vec![volume.clone()],
        ..Made::default()
    });
    docker(&["volume", "create", &volume]);
    // As certbot leaves it: live/NAME/*.pem are relative symlinks into archive/NAME/.
    certbot_layout(&volume_mountpoint(&volume), "d.tend.test", 45);
    let sb = Sandbox::new();
    sb.write_manifest(&format!(
        "[cert.dify]\nnames = [\"d.tend.test\"]\nvolume = \"{volume}\"\ncert = \"live/d.tend.test/fullchain.pem\"\nkey = \"live/d.tend.test/privkey.pem\"\n"
    ));
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 0, "{plan:#}");
    let o = &resource(&plan, "cert.dify")["observed"];
    assert_days_left(o, 45);
    assert_eq!(o["state"], "valid");
    // Renewal window of 50 days: the same certificate is now due.
    sb.write_manifest(&format!(
        "[cert.dify]\nnames = [\"d.tend.test\"]\nvolume = \"{volume}\"\ncert = \"live/d.tend.test/fullchain.pem\"\nkey = \"live/d.tend.test/privkey.pem\"\nrenew_before_days = 50\n"
    ));
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "cert.dify"), ["expiry"]);
}

#[test]
fn self_signed_timeline() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[cert.internal]\nnames = [\"internal.tend.test\"]\ncert = \"/etc/ssl/internal/cert.pem\"\nkey = \"/etc/ssl/internal/key.pem\"\nprovider = \"self_signed\"\ndays = 90\nrenew_before_days = 10\n",
    );
    assert_eq!(changed_fields(&sb.plan_json(), "cert.internal"), ["cert"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_days_left(&resource(&report, "cert.internal")["observed"], 90);
    assert_eq!(sb.mode("/etc/ssl/internal/key.pem"), 0o600);
    assert_eq!(sb.apply().code, 0);
    // Another key put in place by hand: the pair no longer matches.
    key(&sb.path("/etc/ssl/internal/key.pem"));
    assert_eq!(changed_fields(&sb.plan_json(), "cert.internal"), ["key"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.plan_json()["exit_code"], 0);
}

#[test]
fn acme_standalone_answers_the_challenge_itself() {
    let pebble = Pebble::start_standalone();
    let sb = Sandbox::new();
    sb.write_manifest(&format!(
        "[cert.api]\nnames = [\"api.tend.test\"]\ncert = \"/etc/ssl/api/fullchain.pem\"\nkey = \"/etc/ssl/api/privkey.pem\"\nprovider = \"acme\"\nkey_type = \"rsa-2048\"\ndirectory = \"{}\"\nca_bundle = \"{}\"\nchallenge = {{ standalone = {} }}\n",
        pebble.directory,
        pebble.ca_bundle.display(),
        pebble.http_port
    ));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(pebble.orders(), 1);
    let key = sb.read("/etc/ssl/api/privkey.pem");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pebble.http_port)).is_err(),
        "the challenge listener is closed after the order"
    );
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn a_certificates_modes_and_owners_are_checked_and_fixed_in_place() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[cert.internal]\nnames = [\"internal.tend.test\"]\ncert = \"/etc/ssl/internal/cert.pem\"\nkey = \"/etc/ssl/internal/key.pem\"\nprovider = \"self_signed\"\ndays = 90\nmode = \"0640\"\ngroup = \"0\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.mode("/etc/ssl/internal/cert.pem"), 0o640);
    assert_eq!(sb.apply().code, 0);
    // Loosened by hand: named, and fixed in place without a new certificate.
    let before = sb.read("/etc/ssl/internal/cert.pem");
    sb.set_mode("/etc/ssl/internal/key.pem", 0o644);
    sb.set_mode("/etc/ssl/internal/cert.pem", 0o666);
    let plan = sb.plan_json();
    let mut fields = changed_fields(&plan, "cert.internal");
    fields.sort();
    assert_eq!(fields, ["cert.mode", "key.mode"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.mode("/etc/ssl/internal/key.pem"), 0o600);
    assert_eq!(sb.mode("/etc/ssl/internal/cert.pem"), 0o640);
    assert_eq!(sb.read("/etc/ssl/internal/cert.pem"), before, "not renewed");
    assert_eq!(sb.plan_json()["exit_code"], 0);
}
