//! The policy language: `for_each` over lists and tables (literal or from variables), instances
//! with stable addresses, structured variables, and what left the manifest listed until the
//! operator lets it go.

use tend_tests::{orphans, resource, with_status, Sandbox};

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
            "paths": ["/etc/nginx/sites/b.example.conf"],
            "created": true,
            "state": "left_in_place"
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

/// A policy laid out for roles: data layers per host, per role (from a local fact a
/// provisioning step wrote) and common, most specific first.
fn layered(sb: &Sandbox, role: &str) {
    sb.write("/etc/hostname", "web1\n");
    sb.write("/etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
    sb.write(
        "/etc/tend/facts.d/role.toml",
        &format!("role = \"{role}\"\n"),
    );
    std::fs::create_dir_all(sb.dir.path().join("hosts")).expect("mkdir");
    std::fs::create_dir_all(sb.dir.path().join("roles")).expect("mkdir");
    sb.write_beside(
        "common.toml",
        "motd = \"welcome\"\nntp = [\"0.pool\", \"1.pool\"]\n\n[db]\npassword = \"s3cret-in-data\"\n\n[vhosts.\"default.example\"]\nupstream = \"127.0.0.1:80\"\n",
    );
    sb.write_beside(
        "roles/web.toml",
        "motd = \"web server\"\n\n[vhosts.\"shop.example\"]\nupstream = \"127.0.0.1:3000\"\n",
    );
    sb.write_beside("roles/db.toml", "motd = \"database\"\n");
    sb.write_beside("hosts/web1.toml", "ntp = [\"ntp.internal\"]\n");
    sb.write_manifest(
        r#"
[data]
layers = ["hosts/{{ facts.hostname }}.toml", "roles/{{ facts.local.role }}.toml", "common.toml"]
secret = ["db.password"]

[file.motd]
path = "/etc/motd"
content = "{{ data.motd }} ({{ data.ntp | join(',') }})\n"

[file.db]
path = "/etc/db.conf"
content = "password={{ data.db.password }}\n"

[file.site]
for_each = "{{ data.vhosts }}"
path = "/etc/nginx/sites/{{ each.key }}.conf"
content = "upstream {{ each.value.upstream }}\n"
"#,
    );
}

#[test]
fn data_layers_merge_by_host_and_role_and_explain_every_value() {
    let sb = Sandbox::new();
    layered(&sb, "web");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(sb.read("/etc/motd"), "web server (ntp.internal)\n");
    assert!(sb.path("/etc/nginx/sites/shop.example.conf").exists());
    assert!(
        !report.to_string().contains("s3cret-in-data"),
        "a secret data key is never shown"
    );
    assert_eq!(sb.plan().code, 0);

    let explain = sb.tend("data", &["--explain"]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain.stdout.contains(
            "motd = \"web server\"\n    from roles/web.toml:1\n    overrides common.toml:1\n"
        ),
        "{}",
        explain.stdout
    );
    assert!(explain.stdout.contains(
        "ntp = [\"ntp.internal\"]\n    from hosts/web1.toml:1\n    overrides common.toml:2\n"
    ));
    assert!(explain.stdout.contains("db.password = \"(sensitive)\"\n"));
    assert!(!explain.stdout.contains("s3cret"));
    let one = sb.tend("data", &["vhosts.\"shop.example\".upstream"]);
    assert_eq!(one.stdout, "\"127.0.0.1:3000\"\n");

    // The host changes role: its web-only vhost becomes an orphan; its motd follows the role.
    sb.write("/etc/tend/facts.d/role.toml", "role = \"db\"\n");
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["file.motd"]);
    assert_eq!(
        plan["orphans"][0]["address"], "file.site[\"shop.example\"]",
        "{plan:#}"
    );
}

#[test]
fn local_facts_anyone_could_write_are_not_trusted_and_bad_layers_are_located() {
    let sb = Sandbox::new();
    layered(&sb, "web");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        sb.path("/etc/tend/facts.d/role.toml"),
        std::fs::Permissions::from_mode(0o666),
    )
    .expect("chmod");
    let r = sb.plan();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("facts.local: skipped, it is writable by others (mode 0666)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("undefined variable `facts.local.role`"),
        "{}",
        r.stderr
    );

    // A directory a user owns: they could swap any file in it after a check; none is read.
    let sb = Sandbox::new();
    layered(&sb, "web");
    std::os::unix::fs::chown(sb.path("/etc/tend/facts.d"), Some(65534), None).expect("chown");
    let r = sb.plan();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("facts.local: skipped, the directory is owned by uid 65534"),
        "{}",
        r.stderr
    );
    // A link in place of a file is not followed.
    let sb = Sandbox::new();
    layered(&sb, "web");
    let real = sb.path("/etc/tend/role.real");
    std::fs::rename(sb.path("/etc/tend/facts.d/role.toml"), &real).expect("rename");
    std::os::unix::fs::symlink(&real, sb.path("/etc/tend/facts.d/role.toml")).expect("symlink");
    let r = sb.plan();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("facts.local: skipped, it is a symlink"),
        "{}",
        r.stderr
    );

    let sb = Sandbox::new();
    layered(&sb, "web");
    sb.write_beside("roles/web.toml", "motd = \n");
    let r = sb.plan();
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid TOML in data layer"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("roles/web.toml:1:"),
        "located in the layer: {}",
        r.stderr
    );
    // A FIFO where a layer should be: refused at once, never waited on.
    let fifo = sb.dir.path().join("fifo.toml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    sb.write_manifest("[data]\nlayers = [\"fifo.toml\"]\n");
    let r = sb.plan();
    assert!(
        r.stderr
            .contains("data layer \"fifo.toml\": is not a regular file"),
        "{}",
        r.stderr
    );
    sb.write_manifest("[data]\nlayers = [\"../outside.toml\"]\n");
    let r = sb.plan();
    assert!(
        r.stderr
            .contains("must be a path inside the manifest's directory"),
        "{}",
        r.stderr
    );
    sb.write_manifest("[vars]\nrole = \"web\"\n\n[data]\nlayers = [\"roles/{{ role }}.toml\"]\n");
    let r = sb.plan();
    assert!(
        r.stderr.contains("a layer may use facts only"),
        "{}",
        r.stderr
    );
}

/// The reference fleet policy (manifests/fleet): the baseline module on every host, vhosts from
/// data on web hosts, a host's exceptions in its own layer, and a host that changes role.
#[test]
fn the_reference_fleet_policy_converges_a_web_host_and_follows_a_role_change() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/fleet/manifest.toml")
        .canonicalize()
        .expect("manifests/fleet/manifest.toml");
    let manifest = manifest.to_str().expect("utf8");
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/etc/skel")).expect("mkdir");
    std::fs::create_dir_all(sb.path("/home")).expect("mkdir");
    for f in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
        std::fs::copy(format!("/etc/{f}"), sb.path(&format!("/etc/{f}"))).expect("copy");
    }
    sb.write("/etc/hostname", "web-canary\n");
    sb.write("/etc/tend/facts.d/role.toml", "role = \"web\"\n");
    std::fs::create_dir_all(sb.path("/etc/ssh/sshd_config.d")).expect("mkdir");

    let applied = sb.tend_with_manifest(manifest, "apply", &["--format", "json"]);
    assert_eq!(applied.code, 2, "{}\n{}", applied.stdout, applied.stderr);
    assert!(sb.read("/etc/passwd").contains("\nalice:"));
    assert!(sb
        .read("/home/alice/.ssh/authorized_keys")
        .contains("alice@laptop"));
    assert!(sb.read("/etc/login.defs").contains("\nUMASK\t\t027\n"));
    assert_eq!(
        sb.read("/etc/sysctl.d/60-tend-baseline-setting-kernel.kptr_restrict.conf")
            .lines()
            .last(),
        Some("kernel.kptr_restrict = 2")
    );
    // The host's own layer wins over its role's for the shop's upstream.
    assert!(sb
        .read("/etc/nginx/sites-enabled/shop.example.com.conf")
        .contains("proxy_pass http://127.0.0.1:4001;"));
    assert!(sb
        .read("/etc/nginx/sites-enabled/www.example.com.conf")
        .contains("proxy_pass http://127.0.0.1:3000;"));
    let again = sb.tend_with_manifest(manifest, "plan", &[]);
    assert_eq!(again.code, 0, "{}", again.stdout);

    // The host becomes a database server: its motd and kernel settings follow the role, its
    // vhosts are listed as orphans, left in place.
    sb.write("/etc/tend/facts.d/role.toml", "role = \"db\"\n");
    let plan = sb
        .tend_with_manifest(manifest, "plan", &["--format", "json"])
        .json();
    assert_eq!(
        with_status(&plan, "would_change"),
        [
            "module.baseline.sysctl.setting[\"vm.swappiness\"]",
            "module.baseline.file.motd"
        ],
        "{plan:#}"
    );
    let orphans: Vec<&str> = plan["orphans"]
        .as_array()
        .expect("orphans")
        .iter()
        .filter_map(|o| o["address"].as_str())
        .collect();
    assert_eq!(
        orphans,
        [
            "module.vhost[\"shop.example.com\"].file.site",
            "module.vhost[\"www.example.com\"].file.site"
        ]
    );
}

/// `--prune`: what tend created and left the manifest goes (a file backed up, `tend restore`
/// puts it back); what was there before tend managed it stays, listed with why.
#[test]
fn prune_removes_only_what_tend_created_and_restore_undoes_it() {
    let sb = Sandbox::new();
    sb.write("/etc/old", "there before tend\n");
    sb.write_manifest(
        "[file.new]\npath = \"/etc/new.conf\"\ncontent = \"x\\n\"\n\n[file.old]\npath = \"/etc/old\"\ncontent = \"managed\\n\"\n\n[directory.d]\npath = \"/srv/d\"\n\n[symlink.l]\npath = \"/etc/l\"\ntarget = \"/etc/new.conf\"\n\n[file.keep]\npath = \"/etc/keep\"\ncontent = \"k\\n\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    sb.write_manifest("[file.keep]\npath = \"/etc/keep\"\ncontent = \"k\\n\"\n");
    // `plan --prune` says what `apply --prune` would do, and does none of it.
    let preview = sb.tend("plan", &["--prune", "--format", "json"]);
    assert_eq!(preview.code, 2, "{}", preview.stdout);
    let states = orphans(&preview.json(), "state");
    for (address, state) in [
        ("file.new", "to_be_pruned"),
        ("directory.d", "to_be_pruned"),
        ("symlink.l", "to_be_pruned"),
        ("file.old", "left_in_place"),
    ] {
        assert!(
            states.contains(&(address.to_string(), state.to_string())),
            "{address}: {states:?}"
        );
    }
    assert!(sb.path("/etc/new.conf").exists(), "plan --prune removed it");
    let (code, report) = {
        let r = sb.tend("apply", &["--prune", "--format", "json"]);
        (r.code, r.json())
    };
    assert_eq!(code, 2, "what was pruned is a change: {report:#}");
    let pruned = orphans(&report, "pruned");
    assert_eq!(pruned.len(), 4, "{pruned:?}");
    assert!(pruned.iter().any(|(a, p)| a == "file.new"
        && p.starts_with("pruned: removed /etc/new.conf (old content kept in ")));
    assert!(pruned
        .iter()
        .any(|(a, p)| a == "directory.d" && p == "pruned: removed /srv/d"));
    assert!(pruned
        .iter()
        .any(|(a, p)| a == "symlink.l" && p == "pruned: removed /etc/l"));
    assert!(pruned
        .iter()
        .any(|(a, p)| a == "file.old"
            && p == "not pruned: tend did not create it (it was there before)"));
    assert!(!sb.path("/etc/new.conf").exists());
    assert!(!sb.path("/srv/d").exists());
    assert!(std::fs::symlink_metadata(sb.path("/etc/l")).is_err());
    assert_eq!(
        sb.read("/etc/old"),
        "managed\n",
        "what was there before stays"
    );
    // The one that stays is still listed; the pruned ones are not.
    let plan = sb.plan_json();
    let left: Vec<&str> = plan["orphans"]
        .as_array()
        .expect("orphans")
        .iter()
        .filter_map(|o| o["address"].as_str())
        .collect();
    assert_eq!(left, ["file.old"]);
    // And a pruned file comes back with restore.
    assert_eq!(sb.restore("/etc/new.conf", &[]).code, 0);
    assert_eq!(sb.read("/etc/new.conf"), "x\n");
}

/// `[prune] kinds` in the manifest prunes those kinds on every apply (no flag): a directory tend
/// made goes, a file of a kind not named stays, listed with why; a kind tend never removes is a
/// load error.
#[test]
fn the_manifests_prune_table_names_the_kinds_removed() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[directory.d]\npath = \"/srv/d\"\n\n[directory.full]\npath = \"/srv/full\"\n\n[file.f]\npath = \"/etc/f\"\ncontent = \"x\\n\"\n\n[file.keep]\npath = \"/etc/keep\"\ncontent = \"k\\n\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    // Someone put a file in a directory tend made: it is not tend's to remove.
    sb.write("/srv/full/theirs", "theirs\n");
    sb.write_manifest(
        "[prune]\nkinds = [\"directory\"]\n\n[file.keep]\npath = \"/etc/keep\"\ncontent = \"k\\n\"\n",
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let pruned = orphans(&report, "pruned");
    assert!(
        pruned.contains(&("directory.d".into(), "pruned: removed /srv/d".into())),
        "{pruned:?}"
    );
    assert!(
        pruned.contains(&(
            "directory.full".into(),
            "not pruned: /srv/full is not empty (1 entry)".into()
        )),
        "{pruned:?}"
    );
    assert_eq!(sb.read("/srv/full/theirs"), "theirs\n");
    assert!(
        pruned.contains(&(
            "file.f".into(),
            "not pruned: [prune] kinds does not name file (or give --prune)".into()
        )),
        "{pruned:?}"
    );
    assert!(!sb.path("/srv/d").exists());
    assert_eq!(sb.read("/etc/f"), "x\n");
    sb.write_manifest("[prune]\nkinds = [\"package\"]\n");
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("tend does not remove an orphaned \"package\": only what it created of file, directory, symlink, nginx_site, service"),
        "{}",
        r.stderr
    );
}

/// A removal that fails is a failure of the run, said everywhere an unattended host is read:
/// the exit code, the report's `state`, the failure-reason metric and `tend status`. Here
/// another user replaced the orphan's directory with a symlink of theirs: pruning does not
/// follow it, and what it points at stays.
#[test]
fn a_prune_that_fails_is_a_failure_with_its_reason() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[file.x]\npath = \"/etc/app/x.conf\"\ncontent = \"x\\n\"\n\n[file.keep]\npath = \"/etc/keep\"\ncontent = \"k\\n\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    std::fs::rename(sb.path("/etc/app"), sb.path("/etc/app-real")).expect("move");
    std::os::unix::fs::symlink("app-real", sb.path("/etc/app")).expect("link");
    std::os::unix::fs::lchown(sb.path("/etc/app"), Some(65534), Some(65534)).expect("lchown");
    sb.write_manifest(
        "[prune]\nkinds = [\"file\"]\n\n[file.keep]\npath = \"/etc/keep\"\ncontent = \"k\\n\"\n",
    );
    let metrics = sb.dir.path().join("tend.prom");
    let r = sb.tend(
        "apply",
        &[
            "--format",
            "json",
            "--metrics",
            metrics.to_str().expect("utf8"),
        ],
    );
    assert_eq!(r.code, 4, "{}", r.stdout);
    let report = r.json();
    let states = orphans(&report, "state");
    assert_eq!(states, [("file.x".to_string(), "prune_failed".to_string())]);
    let why = &orphans(&report, "pruned")[0].1;
    assert!(
        why.starts_with("not pruned: ") && why.contains("symlink"),
        "{why}"
    );
    assert_eq!(sb.read("/etc/app-real/x.conf"), "x\n", "followed the link");
    let text = std::fs::read_to_string(&metrics).expect("metrics");
    assert!(
        text.contains("tend_last_failure_reason{mode=\"apply\",reason_class=\"prune_failed\"} 1"),
        "{text}"
    );
    let root = sb.root();
    let status = tend_tests::run(&["status", "--root", root.to_str().expect("utf8")], &[]);
    assert_eq!(status.code, 4, "{}", status.stdout);
    assert!(
        status.stdout.contains("file.x not pruned: "),
        "{}",
        status.stdout
    );
    // Still listed, and still failing, until the link is dealt with.
    assert_eq!(sb.apply().code, 4);
}

/// A pruned resource's notify targets are refreshed, as when it changed (nginx reloads without
/// the site): plan says so beforehand and names the prune as a pending change; apply runs the
/// refresh once; the next run owes nothing.
#[test]
fn what_a_pruned_resource_notified_is_refreshed() {
    let sb = Sandbox::new();
    let reload =
        "[exec.reload]\ncommand = \"echo reloaded >> $TEND_ROOT/reloads\"\nrefresh_only = true\n";
    sb.write_manifest(&format!(
        "[file.site_a]\npath = \"/etc/sites/a.conf\"\ncontent = \"a\\n\"\nnotify = [\"exec.reload\"]\n\n[file.site_b]\npath = \"/etc/sites/b.conf\"\ncontent = \"b\\n\"\nnotify = [\"exec.reload\"]\n\n{reload}"
    ));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        sb.read("/reloads"),
        "reloaded\n",
        "one refresh for two changes"
    );
    sb.write_manifest(&format!(
        "[prune]\nkinds = [\"file\"]\n\n[file.site_b]\npath = \"/etc/sites/b.conf\"\ncontent = \"b\\n\"\nnotify = [\"exec.reload\"]\n\n{reload}"
    ));
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 2, "{plan:#}");
    assert_eq!(
        plan["orphans"][0]["pruned"], "to be pruned by apply: /etc/sites/a.conf",
        "{plan:#}"
    );
    assert_eq!(
        resource(&plan, "exec.reload")["refresh"]["notified_by"],
        serde_json::json!(["file.site_a (pruned)"]),
        "{plan:#}"
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert!(!sb.path("/etc/sites/a.conf").exists());
    assert_eq!(
        resource(&report, "exec.reload")["refresh"]["notified_by"],
        serde_json::json!(["file.site_a (pruned)"]),
        "{report:#}"
    );
    assert_eq!(sb.read("/reloads"), "reloaded\nreloaded\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 0, "nothing owed once it ran: {report:#}");
    assert_eq!(sb.read("/reloads"), "reloaded\nreloaded\n");
}

/// The network facts, held to iproute2's view of the same host.
#[test]
fn network_facts_agree_with_iproute2() {
    let facts = tend_tests::run(&["facts"], &[]).json();
    let ip = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)");
        serde_json::from_slice(&out.stdout).expect("ip -j")
    };
    let route = ip(&["-j", "-4", "route", "show", "default"]);
    let Some(dev) = route[0]["dev"].as_str() else {
        // No IPv4 default route here: then there is no ipv4 fact either.
        assert!(facts.get("ipv4").is_none(), "{facts:#}");
        return;
    };
    let addr = ip(&["-j", "-4", "addr", "show", "dev", dev]);
    let local = addr[0]["addr_info"][0]["local"]
        .as_str()
        .expect("an address");
    assert_eq!(facts["ipv4"], local, "{facts:#}");
    let listed: Vec<&str> = facts["interfaces"][dev]["ipv4"]
        .as_array()
        .expect("the interface's addresses")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(listed.contains(&local), "{listed:?}");
}
