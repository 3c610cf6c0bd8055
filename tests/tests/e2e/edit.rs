//! `line` and `block` as a timeline on files packages own (CRLF, no final newline, bytes that
//! are not UTF-8), several edits of one file planned as the one file apply writes, and
//! `validate` with the real `sshd -t` refusing a broken sshd configuration before it replaces
//! the live one.

use tend_tests::{changed_fields, resource, with_status, Sandbox};

const EDITS: &str = r#"
[line.root]
path = "/etc/ssh/sshd_config"
line = "PermitRootLogin no"
match = "^#?PermitRootLogin"

[line.password]
path = "/etc/ssh/sshd_config"
line = "PasswordAuthentication no"
match = "^#?PasswordAuthentication"

[block.ciphers]
path = "/etc/ssh/sshd_config"
content = """
Ciphers aes256-gcm@openssh.com
MACs hmac-sha2-512-etm@openssh.com
"""
after = "^Port "

[line.pam]
path = "/etc/ssh/sshd_config"
match = "^UsePAM"
state = "absent"

[line.binary]
path = "/etc/binary.conf"
line = "key = value"
"#;

/// CRLF line endings, no final newline.
const SSHD: &[u8] =
    b"Port 22\r\n#PermitRootLogin prohibit-password\r\nPasswordAuthentication yes\r\nUsePAM yes\r\nX11Forwarding no";
/// Not UTF-8.
const BINARY: &[u8] = b"\xff\xfe magic\n\x80 other\n";

fn read(sb: &Sandbox, path: &str) -> Vec<u8> {
    std::fs::read(sb.path(path)).expect("read")
}

#[test]
fn lines_and_blocks_edit_exactly_their_lines_and_keep_every_other_byte() {
    let sb = Sandbox::new();
    sb.write_manifest(EDITS);
    std::fs::create_dir_all(sb.path("/etc/ssh")).expect("mkdir");
    std::fs::write(sb.path("/etc/ssh/sshd_config"), SSHD).expect("write");
    std::fs::write(sb.path("/etc/binary.conf"), BINARY).expect("write");

    // Five edits, two files: each planned from what the edit before it leaves.
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 2, "{plan:#}");
    assert_eq!(
        with_status(&plan, "would_change"),
        [
            "line.root",
            "line.password",
            "block.ciphers",
            "line.pam",
            "line.binary"
        ]
    );
    let diff = |r: &serde_json::Value, a: &str| {
        resource(r, a)["changes"][0]["diff"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let d = diff(&plan, "line.password");
    assert!(
        d.contains(
            " PermitRootLogin no\r\n-PasswordAuthentication yes\r\n+PasswordAuthentication no\r\n"
        ),
        "the second edit is planned on the first one's result: {d}"
    );
    assert_eq!(
        read(&sb, "/etc/ssh/sshd_config"),
        SSHD,
        "plan wrote nothing"
    );

    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        read(&sb, "/etc/ssh/sshd_config"),
        b"Port 22\r\n# BEGIN tend ciphers\r\nCiphers aes256-gcm@openssh.com\r\nMACs hmac-sha2-512-etm@openssh.com\r\n# END tend ciphers\r\nPermitRootLogin no\r\nPasswordAuthentication no\r\nX11Forwarding no"
    );
    assert_eq!(
        read(&sb, "/etc/binary.conf"),
        b"\xff\xfe magic\n\x80 other\nkey = value\n"
    );
    let again = sb.plan();
    assert_eq!(again.code, 0, "{}", again.stdout);

    // Hands on the file: the comment put back, the block's content edited. Plan names exactly
    // those two, writes nothing; apply repairs them and nothing else.
    let touched = String::from_utf8(read(&sb, "/etc/ssh/sshd_config"))
        .expect("utf8")
        .replace("PermitRootLogin no", "PermitRootLogin yes")
        .replace("MACs hmac-sha2-512-etm@openssh.com", "MACs hmac-md5");
    std::fs::write(sb.path("/etc/ssh/sshd_config"), &touched).expect("write");
    let plan = sb.plan_json();
    assert_eq!(
        with_status(&plan, "would_change"),
        ["line.root", "block.ciphers"]
    );
    assert_eq!(changed_fields(&plan, "line.root"), ["content"]);
    assert!(diff(&plan, "block.ciphers")
        .contains("-MACs hmac-md5\r\n+MACs hmac-sha2-512-etm@openssh.com\r\n"));
    assert_eq!(read(&sb, "/etc/ssh/sshd_config"), touched.as_bytes());
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.plan().code, 0);

    // A block removed: its lines go, the rest stays.
    sb.write_manifest(&EDITS.replace(
        "after = \"^Port \"",
        "after = \"^Port \"\nstate = \"absent\"",
    ).replace("content = \"\"\"\nCiphers aes256-gcm@openssh.com\nMACs hmac-sha2-512-etm@openssh.com\n\"\"\"\n", ""));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        read(&sb, "/etc/ssh/sshd_config"),
        b"Port 22\r\nPermitRootLogin no\r\nPasswordAuthentication no\r\nX11Forwarding no"
    );
    assert_eq!(sb.plan().code, 0);
}

#[test]
fn a_missing_file_is_created_only_when_asked_and_an_unclosed_block_is_refused() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[line.a]\npath = \"/etc/new.conf\"\nline = \"a = 1\"\n\n[line.b]\npath = \"/etc/made.conf\"\nline = \"b = 2\"\ncreate = true\n",
    );
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "failed"), ["line.a"], "{plan:#}");
    assert!(resource(&plan, "line.a")["error"]
        .as_str()
        .unwrap_or_default()
        .contains("does not exist (set create = true to create it)"));
    assert_eq!(changed_fields(&plan, "line.b"), ["state"]);
    assert!(!sb.path("/etc/made.conf").exists(), "plan wrote nothing");
    sb.tend("apply", &["--only", "line.b"]);
    assert_eq!(sb.read("/etc/made.conf"), "b = 2\n");

    sb.write("/etc/half.conf", "a\n# BEGIN tend x\nb\n");
    sb.write_manifest("[block.x]\npath = \"/etc/half.conf\"\ncontent = \"c\\n\"\n");
    let plan = sb.plan_json();
    let why = resource(&plan, "block.x")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.ends_with("/etc/half.conf:2 opens the block (# BEGIN tend x) but no line after it closes it (# END tend x); tend will not guess where it ends"),
        "{why}"
    );
    assert_eq!(sb.apply().code & 4, 4);
    assert_eq!(sb.read("/etc/half.conf"), "a\n# BEGIN tend x\nb\n");
}

#[test]
fn bad_edits_are_load_errors_at_their_field() {
    let sb = Sandbox::new();
    for (manifest, says) in [
        (
            "[line.a]\npath = \"/etc/a\"\nline = \"x\"\nmatch = \"(unclosed\"\n",
            "match is not a valid regular expression",
        ),
        (
            "[line.a]\npath = \"/etc/a\"\nline = \"x\\ny\"\n",
            "line holds a line break",
        ),
        ("[line.a]\npath = \"/etc/a\"\n", "line.a has no `line`"),
        (
            "[block.a]\npath = \"/etc/a\"\ncontent = \"x\\n# BEGIN tend a\\n\"\n",
            "content holds one of the block's own marker lines",
        ),
        (
            "[file.a]\npath = \"/etc/a\"\ncontent = \"x\"\nvalidate = \"sshd -t -f\"\n",
            "validate does not name the file it checks (%s)",
        ),
        (
            "[file.a]\npath = \"/etc/a\"\ncontent = \"x\\n\"\n\n[line.a]\npath = \"/etc/a\"\nline = \"y\"\n",
            "line.a edits /etc/a, whose whole content file.a sets",
        ),
        (
            "[line.a]\npath = \"/etc/a\"\nline = \"x\"\nafter = \"a\"\nbefore = \"b\"\n",
            "`after` and `before` cannot both be set",
        ),
    ] {
        sb.write_manifest(manifest);
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{manifest}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{manifest}: {}", r.stderr);
        assert!(r.stderr.contains("manifest.toml:"), "located: {}", r.stderr);
    }
}

#[test]
fn validate_runs_the_real_sshd_before_a_broken_config_replaces_the_live_one() {
    let sb = Sandbox::new();
    let good = "PermitRootLogin no\n";
    sb.write("/etc/ssh/sshd_config.d/tend.conf", good);
    let manifest = |content: &str| {
        format!(
            "[file.dropin]\npath = \"/etc/ssh/sshd_config.d/tend.conf\"\ncontent = \"{content}\\n\"\nvalidate = \"/usr/sbin/sshd -t -f %s\"\n\n[line.banner]\npath = \"/etc/ssh/sshd_config.d/banner.conf\"\nline = \"Banner none\"\ncreate = true\nvalidate = \"/usr/sbin/sshd -t -f %s\"\n"
        )
    };
    // A broken drop-in: plan says apply would fail (the failure bit), naming sshd's reason.
    sb.write_manifest(&manifest("PermitRootLogin maybe"));
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"].as_i64().unwrap_or(0) & 4, 4, "{plan:#}");
    assert_eq!(with_status(&plan, "will_fail"), ["file.dropin"]);
    let why = resource(&plan, "file.dropin")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("refused the new content (exit 255)")
            && why.contains("tend.conf line 1: unsupported option \"maybe\""),
        "{why}"
    );
    assert!(
        !why.contains("tend-validate-"),
        "the live path, not the temporary: {why}"
    );
    // Apply refuses it too, and the live file is untouched.
    let (code, report) = sb.apply_json();
    assert_eq!(code & 4, 4, "{report:#}");
    assert_eq!(with_status(&report, "failed"), ["file.dropin"]);
    assert_eq!(sb.read("/etc/ssh/sshd_config.d/tend.conf"), good);
    assert_eq!(
        sb.read("/etc/ssh/sshd_config.d/banner.conf"),
        "Banner none\n"
    );
    // A good one goes in.
    sb.write_manifest(&manifest("PermitRootLogin prohibit-password"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        sb.read("/etc/ssh/sshd_config.d/tend.conf"),
        "PermitRootLogin prohibit-password\n"
    );
    assert_eq!(sb.plan().code, 0);
    // A line whose file would no longer pass: refused, the file as it was.
    sb.write_manifest(
        &manifest("PermitRootLogin prohibit-password").replace("Banner none", "Banner"),
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code & 4, 4, "{report:#}");
    assert_eq!(with_status(&report, "failed"), ["line.banner"]);
    assert_eq!(
        sb.read("/etc/ssh/sshd_config.d/banner.conf"),
        "Banner none\n"
    );
}
