//! The policy language's bad input, as the operator sees it (snapshots, sandbox path filtered):
//! each refused with the file, line and caret where the mistake is, and the call chain that
//! reached it — never a crash, a hang or a partial load. `plan` refuses the same way.

use tend_tests::Sandbox;

/// `tend check` of `manifest` with `files` beside it: exit 1, nothing on stdout, and `plan`
/// saying the same; the filtered stderr.
fn rejected(files: &[(&str, &[u8])], manifest: &str) -> String {
    let sb = Sandbox::new();
    for (name, bytes) in files {
        let p = sb.dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }
    sb.write_manifest(manifest);
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let p = sb.plan();
    assert_eq!(p.code, 1);
    assert_eq!(sb.filter(&p.stderr), sb.filter(&r.stderr));
    sb.filter(&r.stderr)
}

/// A module that calls the next one, 40 deep.
#[test]
fn modules_nested_past_32_deep_are_refused_with_the_chain() {
    let mut files = Vec::new();
    for i in 0..40 {
        files.push((
            format!("m{i}.toml"),
            format!("[module.next]\nsource = \"m{}.toml\"\n", i + 1).into_bytes(),
        ));
    }
    files.push((
        "m40.toml".into(),
        b"[file.x]\npath = \"/etc/x\"\ncontent = \"x\"\n".to_vec(),
    ));
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    insta::assert_snapshot!(rejected(&files, "[module.top]\nsource = \"m0.toml\"\n"));
}

#[test]
fn for_each_past_10000_instances_is_refused() {
    insta::assert_snapshot!(rejected(
        &[],
        "[vars]\nn = 10001\n\n[file.many]\nfor_each = \"{{ range(n) | map('string') | list }}\"\npath = \"/srv/{{ each.key }}\"\ncontent = \"x\"\n",
    ));
}

#[test]
fn a_for_each_key_an_address_cannot_hold_is_refused() {
    insta::assert_snapshot!(rejected(
        &[],
        "[file.site]\nfor_each = [\"ok\", \"bad\\\"]key\"]\npath = \"/srv/{{ each.key | length }}\"\ncontent = \"x\"\n",
    ));
}

#[test]
fn a_data_layer_over_16_mib_is_refused() {
    let big = format!("pad = \"{}\"\n", "x".repeat(16 << 20));
    insta::assert_snapshot!(rejected(
        &[("common.toml", big.as_bytes())],
        "[data]\nlayers = [\"common.toml\"]\n\n[file.x]\npath = \"/etc/x\"\ncontent = \"{{ data.pad | length }}\"\n",
    ));
}

#[test]
fn a_data_layer_that_is_not_utf8_is_refused() {
    insta::assert_snapshot!(rejected(
        &[("common.toml", b"motd = \"caf\xe9\"\n")],
        "[data]\nlayers = [\"common.toml\"]\n\n[file.x]\npath = \"/etc/x\"\ncontent = \"{{ data.motd }}\"\n",
    ));
}

#[test]
fn a_data_layer_that_is_not_toml_is_located_in_the_layer() {
    insta::assert_snapshot!(rejected(
        &[("common.toml", b"motd = \"hi\"\nntp = [\"a\",\n")],
        "[data]\nlayers = [\"common.toml\"]\n\n[file.x]\npath = \"/etc/x\"\ncontent = \"{{ data.motd }}\"\n",
    ));
}

#[test]
fn a_module_source_through_a_link_out_of_the_tree_is_refused() {
    let sb = Sandbox::new();
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        outside.path().join("manifest.toml"),
        "[file.x]\npath = \"/etc/x\"\ncontent = \"x\"\n",
    )
    .expect("write");
    std::os::unix::fs::symlink(outside.path(), sb.dir.path().join("modules")).expect("symlink");
    sb.write_manifest("[module.m]\nsource = \"modules\"\n");
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    insta::assert_snapshot!(sb.filter(&r.stderr));
}

#[test]
fn a_wrong_input_type_inside_a_module_call_names_the_param_and_its_doc() {
    insta::assert_snapshot!(rejected(
        &[(
            "modules/site/manifest.toml",
            b"[params]\nport = { type = \"int\", doc = \"the port nginx listens on\" }\n\n[file.x]\npath = \"/etc/x\"\ncontent = \"{{ port }}\"\n",
        )],
        "[module.site]\nsource = \"modules/site\"\nvars = { port = \"eighty\" }\n",
    ));
}
