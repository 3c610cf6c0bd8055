//! `nginx_site` against the real nginx: Debian's on the host, and the same binary inside a
//! container (checked through the Docker API).

use tend_tests::docker::{docker, nginx_image, unique, Cleanup, Made};
use tend_tests::{changed_fields, resource, with_status, Sandbox};

/// The Dify site as production writes it (certificates under /etc/letsencrypt/live/, which do
/// not exist here: the check stands in a temporary pair). Debian 12's nginx 1.22 takes HTTP/2 on
/// the listen line.
fn site(validate: &str, extra: &str) -> String {
    format!(
        r#"[nginx_site.dify]
path = "/data/nginx/user_conf.d/dify42.hostkey.in.conf"
server_names = ["dify42.hostkey.in"]
upstream = "http://127.0.0.1:3000"
acme_webroot = "/var/www/letsencrypt"
tls = {{ cert = "/etc/letsencrypt/live/dify42.hostkey.in/fullchain.pem", key = "/etc/letsencrypt/live/dify42.hostkey.in/privkey.pem", chain = "/etc/letsencrypt/live/dify42.hostkey.in/chain.pem", dhparam = "/etc/letsencrypt/dhparams/dhparam.pem" }}
http2 = "listen"
validate = "{validate}"
{extra}
"#
    )
}

const PATH: &str = "/data/nginx/user_conf.d/dify42.hostkey.in.conf";

#[test]
fn dify_site_passes_real_nginx_and_converges() {
    let sb = Sandbox::new();
    sb.write_manifest(&site("host", ""));
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 2, "{plan:#}");
    let diff = resource(&plan, "nginx_site.dify")["changes"][0]["diff"]
        .as_str()
        .expect("plan shows the rendered file as a diff")
        .to_string();
    assert!(
        diff.contains(
            "+    ssl_certificate_key     /etc/letsencrypt/live/dify42.hostkey.in/privkey.pem;"
        ),
        "{diff}"
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let notes = resource(&report, "nginx_site.dify")["notes"].to_string();
    assert!(
        notes.contains("nginx -t accepted it") && notes.contains("temporary self-signed pair"),
        "{notes}"
    );
    let text = sb.read(PATH);
    for line in [
        "    listen 443 ssl http2;",
        "        proxy_pass http://127.0.0.1:3000;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        return 301 https://$host$request_uri;",
        "        root /var/www/letsencrypt;",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert_eq!(sb.apply().code, 0, "second run: zero changes");

    // Edited by hand: plan names the content, apply puts it back (the old bytes kept).
    sb.write(PATH, &text.replace("3600s", "60s"));
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "nginx_site.dify"), ["content"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(
        resource(&report, "nginx_site.dify")["backups"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(sb.read(PATH), text);
}

#[test]
fn a_broken_extra_directive_is_rejected_and_the_live_file_kept() {
    let sb = Sandbox::new();
    sb.write_manifest(&site("host", ""));
    assert_eq!(sb.apply().code, 2);
    let good = sb.read(PATH);
    sb.write_manifest(&site(
        "host",
        "extra = \"add_header X-Frame-Options DENY;\\nbogus_directive on;\"",
    ));
    // Plan already says so: the host's nginx checks it in a throwaway configuration.
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 4, "{plan:#}");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    let err = resource(&report, "nginx_site.dify")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.starts_with("nginx -t rejected the rendered site; the live file was not touched"),
        "{err}"
    );
    assert!(
        err.contains("unknown directive \"bogus_directive\", line "),
        "{err}"
    );
    assert!(
        err.contains("of the rendered site: bogus_directive on;"),
        "{err}"
    );
    assert_eq!(sb.read(PATH), good, "the live file keeps its old bytes");
    let human = sb.apply();
    assert_eq!(human.code, 4);
    assert!(
        human
            .stdout
            .contains("! nginx_site.dify failed: nginx -t rejected"),
        "{}",
        human.stdout
    );
}

#[test]
fn checked_inside_a_running_container() {
    let image = nginx_image();
    let name = unique("tendx");
    let _cleanup = Cleanup(Made {
        containers: vec![name.clone()],
        ..Made::default()
    });
    docker(&["run", "-d", "--name", &name, image]);
    let sb = Sandbox::new();
    let validate = format!("container:{name}");
    sb.write_manifest(&site(&validate, ""));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let notes = resource(&report, "nginx_site.dify")["notes"].to_string();
    assert!(notes.contains("nginx -t accepted it"), "{notes}");
    let left = docker(&["exec", &name, "ls", "/tmp"]);
    assert_eq!(left, "", "the candidate is removed from the container");
    let good = sb.read(PATH);

    sb.write_manifest(&site(&validate, "extra = \"bogus_directive on;\""));
    assert_eq!(
        with_status(&sb.plan_json(), "would_change"),
        ["nginx_site.dify"],
        "plan does not exec into containers"
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    let err = resource(&report, "nginx_site.dify")["error"]
        .as_str()
        .expect("error");
    assert!(
        err.contains("of the rendered site: bogus_directive on;"),
        "{err}"
    );
    assert_eq!(sb.read(PATH), good);

    // No container (a first boot: its stack comes up after the site file): written unchecked,
    // and the report says so.
    docker(&["rm", "-f", &name]);
    sb.write_manifest(&site(&validate, "extra = \"client_body_timeout 30s;\""));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let notes = resource(&report, "nginx_site.dify")["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "not checked: no container {name} yet (first boot)"
        )),
        "{notes}"
    );
    assert!(sb.read(PATH).contains("    client_body_timeout 30s;\n"));
}

#[test]
fn http2_auto_follows_the_validating_nginx() {
    // Debian 12's nginx is 1.22: `listen … http2`, and the rendered file says why.
    let sb = Sandbox::new();
    let version = std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .expect("nginx -v");
    let said = String::from_utf8_lossy(&version.stderr).into_owned();
    sb.write_manifest(
        "[nginx_site.s]\npath = \"/etc/nginx/sites/s.conf\"\nserver_names = [\"s.example\"]\nupstream = \"http://127.0.0.1:3000\"\ntls = { cert = \"/etc/ssl/s.pem\", key = \"/etc/ssl/s.key\" }\n",
    );
    assert_eq!(sb.apply().code, 2);
    let text = sb.read("/etc/nginx/sites/s.conf");
    let modern = said
        .split("nginx/")
        .nth(1)
        .and_then(|v| {
            let mut p = v.split('.').map(|n| {
                n.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<u32>()
                    .unwrap_or(0)
            });
            Some((p.next()?, p.next()?, p.next().unwrap_or(0)))
        })
        .expect("a version")
        >= (1, 25, 1);
    if modern {
        assert!(text.contains("    http2 on;\n"), "{text}");
    } else {
        assert!(text.contains("    listen 443 ssl http2;\n"), "{text}");
        assert!(!text.contains("http2 on;"), "{text}");
        assert!(text.contains("older than 1.25.1"), "{text}");
    }
    assert_eq!(sb.apply().code, 0, "auto is stable from run to run");
}

/// `nginx -t` creates every log file a configuration names: in a plan, the site's own
/// `access_log` must land in the candidate's private directory, not on the host (the plan
/// watcher fails this test otherwise).
#[test]
fn planning_a_site_whose_extra_names_a_log_writes_nothing() {
    let sb = Sandbox::new();
    let log = sb.dir.path().join("created-by-nginx-t.log");
    sb.write_manifest(&format!(
        "[nginx_site.s]\npath = \"/etc/nginx/sites/s.conf\"\nserver_names = [\"s.example\"]\nupstream = \"http://127.0.0.1:3000\"\ntls = {{ cert = \"/etc/ssl/s.pem\", key = \"/etc/ssl/s.key\" }}\nextra = \"access_log {} combined;\"\n",
        log.display()
    ));
    let plan = sb.plan();
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(!log.exists(), "nginx -t created {}", log.display());
    // Apply validates the same way and installs the site as written.
    assert_eq!(sb.apply().code, 2);
    assert!(sb
        .read("/etc/nginx/sites/s.conf")
        .contains(&format!("access_log {} combined;", log.display())));
}

/// A site that left the manifest is pruned when `[prune]` names `nginx_site`: its file backed up
/// and removed, the reload it notified run; `tend restore` puts it back.
#[test]
fn a_site_that_left_the_manifest_is_pruned_and_nginx_reloaded() {
    let sb = Sandbox::new();
    let reload = "[exec.nginx_reload]\ncommand = \"echo reload >> $TEND_ROOT/nginx-reloads\"\nrefresh_only = true\n";
    sb.write_manifest(&format!(
        "{}notify = [\"exec.nginx_reload\"]\n\n{reload}",
        site("host", "")
    ));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read("/nginx-reloads"), "reload\n");
    sb.write_manifest(&format!("[prune]\nkinds = [\"nginx_site\"]\n\n{reload}"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let pruned = report["orphans"][0]["pruned"].as_str().unwrap_or_default();
    assert!(
        pruned.starts_with(&format!("pruned: removed {PATH} (old content kept in ")),
        "{report:#}"
    );
    assert!(!sb.path(PATH).exists());
    assert_eq!(sb.read("/nginx-reloads"), "reload\nreload\n");
    assert_eq!(sb.apply().code, 0);
    assert_eq!(sb.restore(PATH, &[]).code, 0);
    assert!(sb.read(PATH).contains("server_name dify42.hostkey.in;"));
}
