//! The policy language: `for_each` over lists and tables (literal or from variables), instances
//! with stable addresses, structured variables, and what left the manifest listed until the
//! operator lets it go.

use tend_tests::{resource, with_status, Sandbox};

const SITES: &str = r#"
[vars]
sites = { "a.example" = { upstream = "127.0.0.1:3000" }, "b.example" = { upstream = "127.0.0.1:4000" } }
admins = ["alice", "bob"]
site_table = "{{ sites }}"

[file.site]
for_each = "{{ site_table }}"
path = "/etc/nginx/sites/{{ each.key }}.conf"
content = "server_name {{ each.key }};\nproxy_pass http://{{ each.value.upstream }};\n"

[directory.home]
for_each = "{{ admins }}"
path = "/home/{{ each.key }}"

[file.motd]
path = "/etc/motd"
content = "admins: {{ admins | join(', ') }}\n"
requires = ["file.site"]
"#;

#[test]
fn for_each_instances_have_stable_addresses_and_leaving_one_out_orphans_it_alone() {
    let sb = Sandbox::new();
    sb.write_manifest(SITES);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        with_status(&report, "changed"),
        [
            "file.site[\"a.example\"]",
            "file.site[\"b.example\"]",
            "directory.home[\"alice\"]",
            "directory.home[\"bob\"]",
            "file.motd"
        ]
    );
    assert_eq!(
        sb.read("/etc/nginx/sites/b.example.conf"),
        "server_name b.example;\nproxy_pass http://127.0.0.1:4000;\n"
    );
    assert_eq!(sb.read("/etc/motd"), "admins: alice, bob\n");
    assert_eq!(sb.plan().code, 0);

    // One site retired from the data: the other keeps its address (no change planned for it),
    // and the retired one is an orphan, left in place and said so.
    sb.write_manifest(&SITES.replace(", \"b.example\" = { upstream = \"127.0.0.1:4000\" }", ""));
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 0, "{plan:#}");
    assert_eq!(
        plan["orphans"],
        serde_json::json!([{
            "address": "file.site[\"b.example\"]",
            "kind": "file",
            "paths": ["/etc/nginx/sites/b.example.conf"]
        }])
    );
    let text = sb.plan();
    assert!(
        text.stdout.contains("- file.site[\"b.example\"] no longer in the manifest: /etc/nginx/sites/b.example.conf left in place"),
        "{}",
        text.stdout
    );
    let metrics = sb.dir.path().join("m.prom");
    sb.tend("plan", &["--metrics", metrics.to_str().expect("utf8")]);
    let prom = std::fs::read_to_string(&metrics).expect("metrics");
    assert!(
        prom.contains("tend_orphaned_resources{mode=\"plan\"} 1\n"),
        "{prom}"
    );
    // Listed after an apply too, until forgotten; the file is never touched.
    assert_eq!(sb.apply().code, 0);
    assert_eq!(sb.plan_json()["orphans"].as_array().map(Vec::len), Some(1));
    assert_eq!(sb.tend("apply", &["--forget-orphans"]).code, 0);
    assert!(sb.plan_json().get("orphans").is_none());
    assert!(sb.path("/etc/nginx/sites/b.example.conf").exists());
}

#[test]
fn selecting_and_requiring_a_for_each_resource_takes_every_instance() {
    let sb = Sandbox::new();
    sb.write_manifest(SITES);
    let plan = sb
        .tend("plan", &["--only", "file.site", "--format", "json"])
        .json();
    assert_eq!(
        with_status(&plan, "would_change"),
        ["file.site[\"a.example\"]", "file.site[\"b.example\"]"]
    );
    let plan = sb
        .tend(
            "plan",
            &["--only", "file.site[\"b.example\"]", "--format", "json"],
        )
        .json();
    assert_eq!(
        with_status(&plan, "would_change"),
        ["file.site[\"b.example\"]"]
    );
    // file.motd requires the group: ordered after each instance.
    let (_, report) = sb.apply_json();
    assert_eq!(resource(&report, "file.motd")["status"], "changed");
}

#[test]
fn bad_for_each_and_structured_vars_are_located_errors() {
    let sb = Sandbox::new();
    for (manifest, says) in [
        (
            "[file.a]\nfor_each = \"not a list\"\npath = \"/etc/a\"\n",
            "for_each of file.a must be a list or a table",
        ),
        (
            "[file.a]\nfor_each = [\"x y\"]\npath = \"/etc/{{ each.key }}\"\n",
            "for_each of file.a: the key \"x y\" cannot be part of an address",
        ),
        (
            "[file.a]\nfor_each = [\"x\", \"x\"]\npath = \"/etc/{{ each.key }}\"\n",
            "the key \"x\" comes twice",
        ),
        (
            "[file.a]\nfor_each = [\"x\", \"y\"]\npath = \"/etc/a\"\n",
            "file.a[\"y\"] manages /etc/a, which file.a[\"x\"] manages too",
        ),
        (
            "[file.a]\nfor_each = \"{{ nope }}\"\npath = \"/etc/a\"\n",
            "in for_each of file.a: undefined variable `nope`",
        ),
        (
            "[file.a]\npath = \"/etc/{{ each.key }}\"\n",
            "undefined variable `each.key`",
        ),
    ] {
        sb.write_manifest(manifest);
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{manifest}: {}", r.stdout);
        assert!(r.stderr.contains(says), "{manifest}: {}", r.stderr);
        assert!(r.stderr.contains("manifest.toml:"), "located: {}", r.stderr);
    }
    // A list variable from the command line is JSON.
    sb.write_manifest("[vars]\nnames = [\"a\"]\n\n[directory.d]\nfor_each = \"{{ names }}\"\npath = \"/srv/{{ each.key }}\"\n");
    let plan = sb
        .tend(
            "plan",
            &["--var", "names=[\"x\",\"y\"]", "--format", "json"],
        )
        .json();
    assert_eq!(
        with_status(&plan, "would_change"),
        ["directory.d[\"x\"]", "directory.d[\"y\"]"]
    );
    let r = sb.tend("plan", &["--var", "names=x"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("`names` is a list in [vars]; give it as JSON"),
        "{}",
        r.stderr
    );
}
