//! `user` and `group` on a root holding this Debian host's own account files, acted on by the
//! real shadow-utils (`--prefix`): created, re-run with no change, changed by hand with
//! shadow-utils and named as exactly that, a uid another account holds refused, removed with
//! its home kept unless asked.

use std::process::Command;

use tend_tests::{changed_fields, resource, with_status, Sandbox};

/// A sandbox whose root has the host's account files (passwd, group, shadow, gshadow,
/// login.defs, skel): what useradd --prefix needs.
fn accounts_root() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/etc/skel")).expect("mkdir");
    for f in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
        std::fs::copy(format!("/etc/{f}"), sb.path(&format!("/etc/{f}"))).expect("copy");
    }
    std::fs::create_dir_all(sb.path("/home")).expect("mkdir home");
    sb
}

fn line_of(sb: &Sandbox, file: &str, name: &str) -> String {
    sb.read(file)
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_default()
        .to_string()
}

fn by_hand(sb: &Sandbox, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .arg("--prefix")
        .arg(sb.root())
        .args(args)
        .output()
        .expect(program);
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const MANIFEST: &str = r#"
[group.ops]
name = "tendops"
gid = 4711
members_add = ["tendbob"]

[group.web]
name = "tendweb"
system = true

[user.bob]
name = "tendbob"
uid = 4712
shell = "/bin/bash"
comment = "Bob the operator"
create_home = false

[user.alice]
name = "tendalice"
uid = 4713
group = "tendops"
groups = ["tendweb"]
shell = "/bin/bash"
comment = "Alice"
password_hash = "$y$j9T$abcdefghijklmnopqrstu.$0123456789abcdefghijklmnopqrstuvwxyzABCDE"
expires = "2030-01-31"
"#;

#[test]
fn users_and_groups_converge_through_shadow_utils_and_name_each_drift() {
    let sb = accounts_root();
    sb.write_manifest(MANIFEST);
    let plan = sb.plan_json();
    // bob does not exist yet: tendops' members may change once he is made; plan creates both.
    assert_eq!(plan["exit_code"], 2, "{plan:#}");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        line_of(&sb, "/etc/group", "tendops"),
        "tendops:x:4711:tendbob"
    );
    assert!(line_of(&sb, "/etc/group", "tendweb").ends_with(":tendalice"));
    assert_eq!(
        line_of(&sb, "/etc/passwd", "tendalice"),
        "tendalice:x:4713:4711:Alice:/home/tendalice:/bin/bash"
    );
    assert_eq!(
        line_of(&sb, "/etc/passwd", "tendbob"),
        "tendbob:x:4712:4712:Bob the operator:/home/tendbob:/bin/bash"
    );
    assert!(sb.path("/home/tendalice").is_dir(), "useradd made the home");
    assert!(!sb.path("/home/tendbob").exists(), "create_home = false");
    let shadow = line_of(&sb, "/etc/shadow", "tendalice");
    assert!(
        shadow.starts_with("tendalice:$y$j9T$abcdefghijklmnopqrstu.$0123456789"),
        "{shadow}"
    );
    // 2030-01-31 is day 21945 since 1970-01-01, as chage counts.
    assert_eq!(shadow.split(':').nth(7), Some("21945"));
    let report_text = report.to_string();
    assert!(
        !report_text.contains("abcdefghijklmnopqrstu"),
        "the hash is never shown"
    );
    let again = sb.plan();
    assert_eq!(again.code, 0, "{}", again.stdout);

    // By hand, with shadow-utils: a shell, a group membership, the password, a lock.
    by_hand(&sb, "usermod", &["--shell", "/bin/sh", "tendalice"]);
    by_hand(&sb, "groupmod", &["--users", "", "tendops"]);
    by_hand(&sb, "usermod", &["--lock", "tendbob"]);
    let before = std::fs::read(sb.path("/etc/shadow")).expect("read");
    let plan = sb.plan_json();
    assert_eq!(
        with_status(&plan, "would_change"),
        ["group.ops", "user.alice"],
        "{plan:#}"
    );
    assert_eq!(changed_fields(&plan, "user.alice"), ["shell"]);
    assert_eq!(changed_fields(&plan, "group.ops"), ["members"]);
    assert_eq!(
        std::fs::read(sb.path("/etc/shadow")).expect("read"),
        before,
        "plan wrote nothing"
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        line_of(&sb, "/etc/group", "tendops"),
        "tendops:x:4711:tendbob"
    );
    assert!(line_of(&sb, "/etc/passwd", "tendalice").ends_with(":/bin/bash"));
    assert_eq!(sb.plan().code, 0);

    // The hash changed by hand: named, never shown; repaired through chpasswd's stdin.
    by_hand(
        &sb,
        "usermod",
        &["--password", "$6$other$hash", "tendalice"],
    );
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "user.alice"), ["password_hash"]);
    assert!(!plan.to_string().contains("$6$other$hash"));
    assert_eq!(sb.apply().code, 2);
    assert!(line_of(&sb, "/etc/shadow", "tendalice").starts_with("tendalice:$y$j9T$"));
    assert_eq!(sb.plan().code, 0);
}

#[test]
fn a_uid_another_account_holds_is_refused_and_removal_keeps_the_home() {
    let sb = accounts_root();
    sb.write_manifest("[user.x]\nname = \"tendx\"\nuid = 0\n");
    let plan = sb.plan_json();
    let why = resource(&plan, "user.x")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(why, "uid 0 belongs to user root; user tendx cannot have it");
    sb.write_manifest("[user.x]\nname = \"tendx\"\n");
    assert_eq!(sb.apply().code, 2);
    assert!(sb.path("/home/tendx").is_dir());
    sb.write_manifest("[user.x]\nname = \"tendx\"\nstate = \"absent\"\n");
    let plan = sb.plan_json();
    assert_eq!(
        resource(&plan, "user.x")["changes"][0]["description"],
        "remove (its home directory is kept)"
    );
    assert_eq!(sb.apply().code, 2);
    assert!(line_of(&sb, "/etc/passwd", "tendx").is_empty());
    assert!(sb.path("/home/tendx").is_dir(), "the home is kept");
    assert_eq!(sb.plan().code, 0);
    for (manifest, says) in [
        (
            "[user.x]\nname = \"Bad Name\"\n",
            "\"Bad Name\" is not a valid user name",
        ),
        (
            "[group.x]\nname = \"ops\"\nmembers = [\"a\"]\nmembers_add = [\"b\"]\n",
            "`members` and `members_add` cannot both be set",
        ),
        (
            "[user.x]\nname = \"x\"\nexpires = \"next year\"\n",
            "expires \"next year\" is not a date",
        ),
    ] {
        sb.write_manifest(manifest);
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{manifest}");
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
}

#[test]
fn a_converged_baseline_starts_no_process() {
    let sb = accounts_root();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHV3bXWqsoSRKyLoAq/qOgoeKhL9Dz5mfTNZoTB0Ysrs admin@laptop";
    sb.write("/etc/ssh/sshd_config", "Port 22\n#PermitRootLogin yes\n");
    sb.write_manifest(&format!(
        r#"
[group.admins]
name = "tendadmins"

[user.admin]
name = "tendadmin"
groups = ["tendadmins"]
shell = "/bin/bash"

[authorized_keys.admin]
user = "tendadmin"
keys = ["{key}"]
exclusive = true

[line.root_login]
path = "/etc/ssh/sshd_config"
line = "PermitRootLogin no"
match = "^#?PermitRootLogin"

[block.ciphers]
path = "/etc/ssh/sshd_config"
content = "Ciphers aes256-gcm@openssh.com\n"

[symlink.editor]
path = "/etc/alternatives/editor"
target = "/usr/bin/vim.basic"

[sysctl.forward]
key = "net.ipv4.ip_forward"
value = 0
"#
    ));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let root = sb.root();
    let manifest = sb.manifest_path();
    for sub in ["plan", "apply"] {
        let (run, programs) = tend_tests::run_counting_programs(&[
            sub,
            manifest.to_str().expect("utf8"),
            "--root",
            root.to_str().expect("utf8"),
        ]);
        assert_eq!(run.code, 0, "{sub}: {}{}", run.stdout, run.stderr);
        assert!(
            programs.is_empty(),
            "{sub} of a converged baseline ran {programs:?}"
        );
    }
}

/// shadow-utils' own answer about an account in the root: `passwd -S` (`L` locked, `P` usable
/// password, `NP` none) and `chage -l`'s "Account expires".
fn reference(sb: &Sandbox, name: &str) -> (String, String) {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .arg("-R")
            .arg(sb.root())
            .args(args)
            .output()
            .expect(program);
        assert!(out.status.success(), "{program}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = run("passwd", &["-S", name])
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let expires = run("chage", &["-l", name])
        .lines()
        .find_map(|l| l.strip_prefix("Account expires"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    (status, expires)
}

/// tend's verdict beside shadow-utils', case by case: an account changed by hand with
/// `usermod`, read back by `passwd -S` and `chage -l`, and planned by tend against a manifest
/// stating the same or another value. Every row must agree: in sync exactly where shadow-utils
/// shows the manifest's value, and the drift naming exactly that field otherwise.
#[test]
fn lock_expiry_and_password_agree_with_passwd_and_chage_case_by_case() {
    const HASH: &str = "$6$tendsalt$Zb0yl3P6cYpVXyZ1jzWq1Ch8cXb2k2vU3b1n0s6WnM6rX1Qy5T4Qb9o3K8m2yH0uV7dG6fA5sJ4lP3kQ2wE1r.";
    const OTHER: &str = "$6$othersalt$hVwK6vT5jVbq3lGgR5yD2sUo0bW3mN8cQ1xF4zL7aP9eH6kJ2tY5rI0uO3iS8dC7vB4nM1lZ6xA9qW2eE3rT.";
    // (what is done by hand, shadow-utils' (passwd -S, chage "Account expires"), the manifest's
    // fields, tend's drift: the fields it names, none when in sync)
    type Case = (
        &'static [&'static [&'static str]],
        (&'static str, &'static str),
        &'static str,
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (&[&["-L"]], ("L", "never"), "locked = true", &[]),
        (&[&["-L"]], ("L", "never"), "locked = false", &["locked"]),
        (&[&["-p", HASH]], ("P", "never"), "locked = false", &[]),
        (
            &[&["-p", HASH]],
            ("P", "never"),
            "locked = true",
            &["locked"],
        ),
        (
            &[&["-p", HASH]],
            ("P", "never"),
            "password_hash = \"HASH\"",
            &[],
        ),
        (
            &[&["-p", OTHER]],
            ("P", "never"),
            "password_hash = \"HASH\"",
            &["password_hash"],
        ),
        // A locked account keeps its hash behind `!`: the hash is still the manifest's.
        (
            &[&["-p", HASH], &["-L"]],
            ("L", "never"),
            "password_hash = \"HASH\"\nlocked = true",
            &[],
        ),
        (
            &[&["-e", "2030-01-31"]],
            ("NP", "Jan 31, 2030"),
            "expires = \"2030-01-31\"",
            &[],
        ),
        (
            &[&["-e", "2030-01-31"]],
            ("NP", "Jan 31, 2030"),
            "expires = \"2031-01-01\"",
            &["expires"],
        ),
        (
            &[&["-e", "2030-01-31"]],
            ("NP", "Jan 31, 2030"),
            "expires = \"never\"",
            &["expires"],
        ),
        (
            &[&["-e", "2030-01-31"], &["-e", ""]],
            ("NP", "never"),
            "expires = \"never\"",
            &[],
        ),
    ];
    for (i, (by_hand_steps, want_ref, fields, want_drift)) in cases.iter().enumerate() {
        let sb = accounts_root();
        by_hand(&sb, "useradd", &["-M", "tendcase"]);
        if want_ref.0 == "NP" {
            // useradd leaves `!` (locked, no password): passwd -d makes it "no password".
            let out = Command::new("passwd")
                .arg("-R")
                .arg(sb.root())
                .args(["-d", "tendcase"])
                .output()
                .expect("passwd -d");
            assert!(out.status.success(), "{out:?}");
        }
        for step in *by_hand_steps {
            let mut args: Vec<&str> = step.to_vec();
            args.push("tendcase");
            by_hand(&sb, "usermod", &args);
        }
        let got_ref = reference(&sb, "tendcase");
        assert_eq!(
            (got_ref.0.as_str(), got_ref.1.as_str()),
            *want_ref,
            "case {i}: shadow-utils"
        );
        sb.write_manifest(&format!(
            "[user.case]\nname = \"tendcase\"\ncreate_home = false\n{}\n",
            fields.replace("HASH", HASH)
        ));
        let plan = sb.plan_json();
        let mut got: Vec<String> = changed_fields(&plan, "user.case");
        got.sort();
        assert_eq!(got, want_drift.to_vec(), "case {i} ({fields}): {plan:#}");
    }
}
