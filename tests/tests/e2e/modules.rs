//! Modules: typed inputs checked at load, resources addressed `module.NAME.KIND.NAME`, templates
//! relative to the module, `for_each` instances of a module, the call's `requires` for all of it,
//! and every mistake located in the file that holds it, with the call chain.

use tend_tests::{changed_fields, with_status, Sandbox};

fn policy(sb: &Sandbox) {
    let dir = sb.dir.path();
    std::fs::create_dir_all(dir.join("modules/baseline")).expect("mkdir");
    std::fs::create_dir_all(dir.join("modules/site")).expect("mkdir");
    sb.write_beside(
        "modules/baseline/manifest.toml",
        r#"
[params]
admins = { type = "list", doc = "admin user names" }
motd = { type = "string", default = "managed by tend" }

[file.motd]
path = "/etc/motd"
template = "motd.j2"

[directory.home]
for_each = "{{ admins }}"
path = "/home/{{ each.key }}"

[file.readme]
for_each = "{{ admins }}"
path = "/home/{{ each.key }}/README"
content = "hi {{ each.key }}\n"
requires = ["directory.home"]
"#,
    );
    sb.write_beside(
        "modules/baseline/motd.j2",
        "{{ motd }} for {{ admins | join(', ') }}\n",
    );
    sb.write_beside(
        "modules/site/manifest.toml",
        r#"
[params]
domain = { type = "string" }
upstream = { type = "string" }

[file.site]
path = "/etc/nginx/sites/{{ domain }}.conf"
content = "server_name {{ domain }}; proxy_pass {{ upstream }};\n"
"#,
    );
}

const MANIFEST: &str = r#"
[vars]
admins = ["alice", "bob"]
sites = { "a.example" = "127.0.0.1:3000", "b.example" = "127.0.0.1:4000" }

[module.baseline]
source = "modules/baseline"
vars = { admins = "{{ admins }}" }

[module.web]
source = "modules/site"
for_each = "{{ sites }}"
vars = { domain = "{{ each.key }}", upstream = "{{ each.value }}" }
requires = ["module.baseline"]

[file.after]
path = "/etc/after"
content = "x\n"
requires = ["module.web"]
"#;

#[test]
fn modules_converge_with_typed_inputs_and_stable_addresses() {
    let sb = Sandbox::new();
    policy(&sb);
    sb.write_manifest(MANIFEST);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        with_status(&report, "changed"),
        [
            "module.baseline.file.motd",
            "module.baseline.directory.home[\"alice\"]",
            "module.baseline.directory.home[\"bob\"]",
            "module.baseline.file.readme[\"alice\"]",
            "module.baseline.file.readme[\"bob\"]",
            "module.web[\"a.example\"].file.site",
            "module.web[\"b.example\"].file.site",
            "file.after"
        ]
    );
    assert_eq!(sb.read("/etc/motd"), "managed by tend for alice, bob\n");
    assert_eq!(
        sb.read("/etc/nginx/sites/b.example.conf"),
        "server_name b.example; proxy_pass 127.0.0.1:4000;\n"
    );
    assert_eq!(sb.plan().code, 0);
    // Drift in a module's file: named by its full address.
    sb.write("/etc/motd", "hand edit\n");
    let plan = sb.plan_json();
    assert_eq!(
        with_status(&plan, "would_change"),
        ["module.baseline.file.motd"]
    );
    assert_eq!(
        changed_fields(&plan, "module.baseline.file.motd"),
        ["content"]
    );
    assert_eq!(sb.apply().code, 2);
    // One site retired: its module instance's resources are orphans, the other renames nothing.
    sb.write_manifest(&MANIFEST.replace(", \"b.example\" = \"127.0.0.1:4000\"", ""));
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 0, "{plan:#}");
    assert_eq!(
        plan["orphans"][0]["address"],
        "module.web[\"b.example\"].file.site"
    );
    // --only a module selects its resources.
    let only = sb
        .tend("plan", &["--only", "module.baseline", "--format", "json"])
        .json();
    assert_eq!(only["summary"]["in_sync"], 5, "{only:#}");
}

#[test]
fn module_mistakes_are_located_where_they_are_with_the_call_chain() {
    let sb = Sandbox::new();
    policy(&sb);
    let check = |manifest: &str| {
        sb.write_manifest(manifest);
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{manifest}: {}", r.stdout);
        r.stderr
    };
    let e = check(&MANIFEST.replace("vars = { admins = ", "vars = { admin = "));
    assert!(e.contains("module.baseline has no input `admin`"), "{e}");
    assert!(e.contains("help: did you mean `admins`?"), "{e}");
    assert!(
        e.contains("module.baseline is missing its required input `admins` (list)"),
        "{e}"
    );
    let e = check(&MANIFEST.replace("\"{{ admins }}\" }", "\"alice\" }"));
    assert!(
        e.contains("input `admins` must be a list, found a string"),
        "{e}"
    );
    let e = check(&MANIFEST.replace("modules/site", "../elsewhere"));
    assert!(
        e.contains("must be a path inside the manifest's directory"),
        "{e}"
    );
    // A mistake inside the module: located in the module's file, with where it was reached from.
    sb.write_beside(
        "modules/site/manifest.toml",
        "[params]\ndomain = { type = \"string\" }\nupstream = { type = \"string\" }\n\n[file.site]\npath = \"/etc/{{ domain }}\"\ncontnet = \"x\"\n",
    );
    let e = check(MANIFEST);
    assert!(e.contains("modules/site/manifest.toml:7:1"), "{e}");
    assert!(e.contains("note: imported from"), "{e}");
    assert!(
        e.contains("unknown field `contnet` in module.web[\"b.example\"].file.site"),
        "each instance named: {e}"
    );
    // A module that reaches itself prints the chain.
    sb.write_beside(
        "modules/site/manifest.toml",
        "[params]\ndomain = { type = \"string\" }\nupstream = { type = \"string\" }\n\n[module.again]\nsource = \"manifest.toml\"\nvars = { domain = \"d\", upstream = \"u\" }\n",
    );
    let e = check(MANIFEST);
    assert!(e.contains("module.again includes itself: "), "{e}");
}

#[test]
fn templates_include_files_beside_the_module_that_uses_them() {
    let sb = Sandbox::new();
    let dir = sb.dir.path();
    std::fs::create_dir_all(dir.join("modules/site/parts")).expect("mkdir");
    sb.write_beside(
        "modules/site/manifest.toml",
        "[params]\ndomain = { type = \"string\" }\n\n[file.site]\npath = \"/etc/{{ domain }}.conf\"\ntemplate = \"site.j2\"\n",
    );
    sb.write_beside(
        "modules/site/site.j2",
        "{% include \"parts/header.j2\" %}server_name {{ domain }};\n",
    );
    sb.write_beside(
        "modules/site/parts/header.j2",
        "# {{ domain }}, managed by tend\n",
    );
    sb.write_beside("top.j2", "top\n");
    sb.write_manifest(
        "[module.a]\nsource = \"modules/site\"\nvars = { domain = \"a.example\" }\n\n[file.top]\npath = \"/etc/top\"\ncontent = \"{% include 'top.j2' %}\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        sb.read("/etc/a.example.conf"),
        "# a.example, managed by tend\nserver_name a.example;\n"
    );
    assert_eq!(sb.read("/etc/top"), "top\n");
    // Out of the manifest's directory: refused (the engine does not even ask for `..`).
    sb.write_manifest(
        "[file.top]\npath = \"/etc/top\"\ncontent = \"{% include '../outside.j2' %}\"\n",
    );
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("template not found") && r.stderr.contains("../outside.j2"),
        "{}",
        r.stderr
    );
}
