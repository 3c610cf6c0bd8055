//! Every class of manifest error, as the operator sees it: message, file:line:column, the
//! source line, a caret, and help. Snapshots (insta) with the sandbox path filtered.

use tend_tests::Sandbox;

/// `tend check` on `manifest`: must exit 1, before touching anything; returns stderr.
fn rejected(manifest: &str, extra: &[&str]) -> String {
    let sb = Sandbox::new();
    sb.write_manifest(manifest);
    let r = sb.tend("check", extra);
    assert_eq!(
        r.code, 1,
        "expected exit 1, got {}:\n{}{}",
        r.code, r.stdout, r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        !sb.state_dir().exists(),
        "check created the state directory"
    );
    // plan refuses the same way, before checking anything.
    let p = sb.plan();
    assert_eq!(p.code, 1);
    assert_eq!(sb.filter(&p.stderr), sb.filter(&r.stderr));
    sb.filter(&r.stderr)
}

#[test]
fn unknown_kind_lists_the_kinds() {
    insta::assert_snapshot!(rejected("[fiel.motd]\npath = \"/etc/motd\"\n", &[]));
}

#[test]
fn unknown_field_suggests_the_nearest() {
    insta::assert_snapshot!(rejected(
        "[file.motd]\npath = \"/etc/motd\"\ncontnet = \"hi\"\n",
        &[]
    ));
}

#[test]
fn wrong_type_names_the_expected_type() {
    insta::assert_snapshot!(rejected(
        "[file.motd]\npath = \"/etc/motd\"\nsensitive = \"yes\"\n",
        &[]
    ));
}

#[test]
fn bad_choice_suggests_the_nearest() {
    insta::assert_snapshot!(rejected(
        "[file.motd]\npath = \"/etc/motd\"\nstate = \"abssent\"\n",
        &[]
    ));
}

#[test]
fn missing_required_field() {
    insta::assert_snapshot!(rejected("[file.motd]\ncontent = \"hi\"\n", &[]));
}

#[test]
fn relative_path_is_refused() {
    insta::assert_snapshot!(rejected("[directory.d]\npath = \"srv/data\"\n", &[]));
}

#[test]
fn dangling_reference() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/a\"\nrequires = [\"directory.dta\"]\n\n[directory.data]\npath = \"/data\"\n",
        &[]
    ));
}

#[test]
fn cycle_is_printed() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/a\"\nrequires = [\"file.b\"]\n\n[file.b]\npath = \"/b\"\nrequires = [\"file.c\"]\n\n[file.c]\npath = \"/c\"\nrequires = [\"file.a\"]\n",
        &[]
    ));
}

#[test]
fn bad_template_syntax() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/a\"\ncontent = \"{{ name \"\n",
        &[]
    ));
}

/// MiniJinja panicked on this `when` ("empty lexer stack"): tend crashed with exit 101.
#[test]
fn a_when_written_as_a_template_is_located_not_a_crash() {
    insta::assert_snapshot!(rejected(
        "[vars]\nrole = \"web\"\n\n[file.a]\npath = \"/a\"\ncontent = \"x\"\nwhen = \"role }}/a\"\n",
        &[]
    ));
}

#[test]
fn undefined_variable_suggests_the_nearest() {
    insta::assert_snapshot!(rejected(
        "[vars]\nserver_id = \"42\"\n\n[file.a]\npath = \"/a\"\ncontent = \"id {{ server_di }}\"\n",
        &[]
    ));
}

#[test]
fn undefined_fact() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/a\"\ncontent = \"{{ facts.os.codname }}\"\n",
        &[]
    ));
}

#[test]
fn variable_cycle() {
    insta::assert_snapshot!(rejected("[vars]\na = \"{{ b }}\"\nb = \"x{{ a }}\"\n", &[]));
}

#[test]
fn invalid_toml() {
    insta::assert_snapshot!(rejected("[file.a]\npath = \"/a\ncontent = 1\n", &[]));
}

#[test]
fn notify_target_without_refresh() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/a\"\nnotify = [\"file.b\"]\n\n[file.b]\npath = \"/b\"\n",
        &[]
    ));
}

#[test]
fn two_resources_on_one_path() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/etc/x\"\n\n[file.b]\npath = \"/etc/x\"\n",
        &[]
    ));
}

/// Spellings of one path are one path: `..` is resolved as tend resolves it on the host.
#[test]
fn two_spellings_of_one_path_are_one_path() {
    for other in ["/etc/y/../x", "/etc//x", "/etc/./x/", "/../etc/x"] {
        let sb = Sandbox::new();
        sb.write_manifest(&format!(
            "[file.a]\npath = \"/etc/x\"\n\n[file.b]\npath = \"{other}\"\n"
        ));
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{other}: {r:?}");
        assert!(
            r.stderr
                .contains("file.b manages /etc/x, which file.a manages too"),
            "{other}: {}",
            r.stderr
        );
    }
}

#[test]
fn conflicting_content_sources() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/a\"\ncontent = \"x\"\nsource = \"/b\"\n",
        &[]
    ));
}

#[test]
fn several_errors_are_reported_together() {
    insta::assert_snapshot!(rejected(
        "[file.a]\npath = \"/a\"\nmdoe = \"0644\"\n\n[file.b]\npath = \"/b\"\nowner = 0\n",
        &[]
    ));
}

#[test]
fn unknown_var_override() {
    let sb = Sandbox::new();
    sb.write_manifest("[vars]\nserver_id = \"1\"\n");
    let r = sb.tend("check", &["--var", "sever_id=7"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.trim(), "error: --var sever_id: the manifest has no variable `sever_id` in [vars]; did you mean `server_id`?");
}

#[test]
fn missing_manifest() {
    let r = tend_tests::run(&["plan", "/nonexistent/manifest.toml"], &[]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim(),
        "error: cannot read manifest /nonexistent/manifest.toml: No such file or directory (os error 2)"
    );
}

/// Whatever bytes the manifest holds, tend answers with an error or a result, never a panic.
#[test]
fn hostile_inputs_never_panic() {
    let inputs = [
        "",
        "[",
        "]]]",
        "[file]",
        "[file.a]",
        "file = 1",
        "[file.a]\npath = 1",
        "[file.a.b.c]\npath=\"/x\"",
        "[vars]\nx = [1]",
        "[vars]\nvars = \"x\"",
        "[file.\"a b\"]\npath=\"/x\"",
        "[file.a]\npath=\"/x\"\nrequires = \"file.b\"",
        "[file.a]\npath=\"/x\"\nwhen = 3",
        "[file.a]\npath=\"/x\"\ncontent = \"{% for %}\"",
        "[file.a]\npath=\"/x\"\nmode = \"999\"",
        "[file.a]\npath=\"/x\"\nmode = 99999",
        "x = 1979-05-27T07:32:00Z",
        "[exec.a]\ncommand = []",
        "[exec.a]\ncommand = [1]",
        "[file.a]\npath=\"/\u{e9}\u{0}\"\ncontent=\"{{ secret('a/b') }}\"",
        "\u{feff}[file.a]\npath=\"/x\"",
    ];
    for input in inputs {
        let sb = Sandbox::new();
        sb.write_manifest(input);
        let r = sb.tend("check", &[]);
        assert!(
            r.code == 0 || r.code == 1,
            "input {input:?}: exit {}\n{}",
            r.code,
            r.stderr
        );
        assert!(
            !r.stderr.contains("panicked"),
            "input {input:?} panicked:\n{}",
            r.stderr
        );
    }
}

/// A variable has a size budget: 40 values of 16 MiB are refused at once, not copied into
/// every template for seconds and gigabytes.
#[test]
fn oversized_variables_are_refused_quickly() {
    let sb = Sandbox::new();
    let big = "x".repeat(2 << 20);
    sb.write_manifest(&format!(
        "[vars]\nbig = \"{big}\"\n\n[file.f]\npath = \"/f\"\ncontent = \"{{{{ big }}}}\"\n"
    ));
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("a variable holds at most 1 MiB"),
        "{}",
        &r.stderr[..r.stderr.len().min(500)]
    );
    assert!(r.stderr.len() < 4000, "the error does not quote the value");
}
