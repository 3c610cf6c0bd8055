//! `tend report fleet`: hosts' reports, as tend wrote them, read into a table, JSON and a static
//! page that headless Chromium (Debian's `chromium`) opens offline: its DOM is dumped and
//! checked, a filter is applied the way a link applies it (the URL's fragment), hostile text in
//! a report stays text, and a screenshot is kept in the test's output.

use std::process::Command;

use tend_tests::Sandbox;

/// Reports of three hosts: one in sync, one whose file drifted, one whose command fails.
fn reports(dir: &std::path::Path) {
    for (host, manifest, tamper) in [
        (
            "web1",
            "[file.motd]\npath = \"/etc/motd\"\ncontent = \"hello\\n\"\n",
            false,
        ),
        (
            "web2",
            "[file.motd]\npath = \"/etc/motd\"\ncontent = \"hello\\n\"\n",
            true,
        ),
        (
            "db1",
            "[exec.broken]\ncommand = [\"false\"]\ncreates = \"/never\"\n",
            false,
        ),
    ] {
        let sb = Sandbox::new();
        sb.write("/etc/hostname", &format!("{host}\n"));
        sb.write_manifest(manifest);
        sb.apply();
        if tamper {
            sb.write("/etc/motd", "tampered by hand\n");
        }
        let out = dir.join(host);
        std::fs::create_dir_all(&out).expect("mkdir");
        let file = out.join("last-run.json");
        sb.tend("plan", &["--report", file.to_str().expect("utf8")]);
        if host == "db1" {
            sb.tend("apply", &["--report", file.to_str().expect("utf8")]);
        }
    }
}

fn chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_fleet_page_shows_each_host_filters_by_status_and_never_runs_report_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    reports(dir.path());
    // A hostile report: markup in a host name and a resource address.
    let web2 = dir.path().join("web2/last-run.json");
    let mut evil: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&web2).expect("read")).expect("json");
    evil["host"] = "<img src=x onerror=\"document.title='pwned'\">".into();
    evil["resources"][0]["address"] = "<script>document.title='pwned2'</script>".into();
    std::fs::write(dir.path().join("evil.json"), evil.to_string()).expect("write");
    // Reports that are not: truncated, from a newer tend, not a report at all.
    std::fs::write(
        dir.path().join("truncated.json"),
        "{\"schema_version\": 3, \"res",
    )
    .expect("write");
    let mut future = evil.clone();
    future["schema_version"] = 99.into();
    std::fs::write(dir.path().join("future.json"), future.to_string()).expect("write");

    let d = dir.path().to_str().expect("utf8");
    let table = tend_tests::run(&["report", "fleet", d], &[]);
    assert_eq!(table.code, 4, "some reports were refused: {}", table.stderr);
    assert!(table.stdout.contains("refused"), "{}", table.stdout);
    assert!(table
        .stdout
        .contains("written by a newer tend (report schema 99"));
    let json = tend_tests::run(&["report", "fleet", d, "--json"], &[]).json();
    let hosts: Vec<&str> = json["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    // Failing first, then drifting, then the rest.
    assert_eq!(hosts[0], "db1", "{json:#}");
    assert_eq!(hosts.len(), 4);
    assert_eq!(json["refused"].as_array().map(Vec::len), Some(2));

    let page = dir.path().join("fleet.html");
    let r = tend_tests::run(
        &["report", "fleet", d, "--html", page.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    let url = format!("file://{}", page.display());
    let dom = chromium(&url, &["--dump-dom"]);
    assert!(dom.contains("<span id=\"hosts\">4</span>"), "{dom}");
    assert!(dom.contains("<span id=\"failing\">1</span>"));
    assert!(dom.contains("<span id=\"drifting\">2</span>"));
    assert!(
        dom.contains("tampered by hand"),
        "web2's diff is on the page"
    );
    // Report text stays text: no element made from it, no script run from it.
    assert!(dom.contains("<title>tend fleet: 4 hosts</title>"), "{dom}");
    assert!(!dom.contains("pwned</title>") && !dom.contains("<img src=\"x\""));
    assert!(dom.contains("&lt;script&gt;document.title='pwned2'&lt;/script&gt;"));
    // The filter a link carries: only the failing host's section shows.
    let failed = chromium(&format!("{url}#status=failed"), &["--dump-dom"]);
    assert!(failed.contains("<span id=\"shown\">1</span>"), "{failed}");
    let visible_sections = failed.matches("<section class=\"host\" ").count();
    let hidden_sections = failed.matches("<section class=\"host hidden\"").count();
    assert_eq!((visible_sections, hidden_sections), (1, 3), "{failed}");
    // A screenshot, kept beside the test's target directory for a person to look at.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
}

#[test]
fn huge_and_non_report_files_are_refused_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = std::fs::File::create(dir.path().join("huge.json")).expect("create");
    big.set_len(65 << 20).expect("sparse 65 MiB");
    std::fs::write(dir.path().join("other.json"), "{\"hello\": 1}").expect("write");
    let json = tend_tests::run(
        &[
            "report",
            "fleet",
            dir.path().to_str().expect("utf8"),
            "--json",
        ],
        &[],
    );
    assert_eq!(json.code, 4);
    let v = json.json();
    let why: Vec<&str> = v["refused"]
        .as_array()
        .expect("refused")
        .iter()
        .filter_map(|r| r["why"].as_str())
        .collect();
    assert_eq!(
        why,
        [
            "larger than 64 MiB",
            "not a tend report (no schema_version)"
        ]
    );
}
