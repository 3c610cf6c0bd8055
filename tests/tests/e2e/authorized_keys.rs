//! `authorized_keys` held to OpenSSH: after apply, the suite's own sshd lets the key in; after
//! the key is dropped with `exclusive`, it does not. Lines tend does not manage stay byte for
//! byte, and a `~/.ssh` a user pointed at root's is refused, naming it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use tend_tests::{resource, with_status, Sandbox};

fn keygen(dir: &Path, name: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(dir.join(name))
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .expect("pub")
        .trim()
        .to_string()
}

/// sshd on a free loopback port, reading root's keys from the sandbox's `/root/.ssh`.
struct Sshd {
    _child: tend_tests::Reaped,
    port: u16,
}

impl Sshd {
    fn start(dir: &Path, keys: &Path) -> Sshd {
        keygen(dir, "host_key");
        let port = tend_tests::pki::free_port();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {keys}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
                d = dir.display(),
                keys = keys.display()
            ),
        )
        .expect("sshd_config");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).expect("log"))
            .spawn()
            .expect("sshd");
        tend_tests::pki::wait_for(port, "sshd", &dir.join("sshd.log"));
        Sshd {
            _child: tend_tests::Reaped(child),
            port,
        }
    }

    /// Whether `ssh -i KEY root@127.0.0.1 true` gets in.
    fn login(&self, key: &Path) -> bool {
        Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                &self.port.to_string(),
                "-i",
            ])
            .arg(key)
            .args(["root@127.0.0.1", "true"])
            .status()
            .expect("ssh")
            .success()
    }
}

#[test]
fn a_key_tend_adds_lets_its_holder_in_and_exclusive_takes_it_away() {
    let keys = tempfile::tempdir().expect("tempdir");
    let alice = keygen(keys.path(), "alice");
    let bob = keygen(keys.path(), "bob");
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/etc")).expect("mkdir");
    std::fs::write(sb.path("/etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").expect("passwd");
    std::fs::create_dir_all(sb.path("/root/.ssh")).expect("mkdir");
    std::fs::set_permissions(
        sb.path("/root/.ssh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    // What is there already: a comment, bob's key with options, no final newline.
    let before = format!("# keys of the on-call rota\r\nfrom=\"10.0.0.0/8\" {bob}");
    std::fs::write(sb.path("/root/.ssh/authorized_keys"), &before).expect("write");
    let sshd = Sshd::start(keys.path(), &sb.path("/root/.ssh/authorized_keys"));
    assert!(
        !sshd.login(&keys.path().join("alice")),
        "alice is not in yet"
    );

    sb.write_manifest(&format!(
        "[authorized_keys.root]\nuser = \"root\"\nkeys = [\"{alice}\"]\n"
    ));
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["authorized_keys.root"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        sb.read("/root/.ssh/authorized_keys"),
        format!("{before}\n{alice}\n"),
        "every line tend does not manage kept byte for byte"
    );
    let dir = std::fs::metadata(sb.path("/root/.ssh")).expect("stat");
    let file = std::fs::metadata(sb.path("/root/.ssh/authorized_keys")).expect("stat");
    assert_eq!((dir.mode() & 0o7777, file.mode() & 0o7777), (0o700, 0o600));
    assert!(sshd.login(&keys.path().join("alice")), "sshd lets alice in");
    assert_eq!(sb.plan().code, 0);

    // By hand: alice's line deleted, the file made group-writable (sshd's StrictModes would then
    // refuse every key). Plan names exactly those two, changes neither; apply repairs both.
    let kept = format!("{before}\n");
    std::fs::write(sb.path("/root/.ssh/authorized_keys"), &kept).expect("write");
    sb.set_mode("/root/.ssh/authorized_keys", 0o620);
    let plan = sb.plan_json();
    let mut fields = tend_tests::changed_fields(&plan, "authorized_keys.root");
    fields.sort();
    assert_eq!(fields, ["file.attrs", "keys"], "{plan:#}");
    assert_eq!(
        sb.read("/root/.ssh/authorized_keys"),
        kept,
        "plan wrote nothing"
    );
    assert_eq!(sb.mode("/root/.ssh/authorized_keys"), 0o620);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.mode("/root/.ssh/authorized_keys"), 0o600);
    assert!(sshd.login(&keys.path().join("alice")), "alice is back in");
    assert_eq!(sb.plan().code, 0);

    // Exclusive, with bob only: alice's key goes, bob's line and the comment stay.
    sb.write_manifest(&format!(
        "[authorized_keys.root]\nuser = \"root\"\nkeys = [\"from=\\\"10.0.0.0/8\\\" {bob}\"]\nexclusive = true\n"
    ));
    let plan = sb.plan_json();
    let diff = resource(&plan, "authorized_keys.root")["changes"][0]["diff"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(diff.contains(&format!("-{alice}")), "{diff}");
    assert_eq!(sb.apply().code, 2);
    assert!(!sshd.login(&keys.path().join("alice")), "alice is out");
    assert_eq!(sb.read("/root/.ssh/authorized_keys"), format!("{before}\n"));
    assert_eq!(sb.plan().code, 0);
}

#[test]
fn a_users_ssh_directory_pointing_at_roots_is_refused() {
    let keys = tempfile::tempdir().expect("tempdir");
    let alice = keygen(keys.path(), "alice");
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/etc")).expect("mkdir");
    std::fs::write(
        sb.path("/etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\neve:x:65534:65534:eve:/home/eve:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::create_dir_all(sb.path("/root/.ssh")).expect("mkdir");
    std::fs::write(sb.path("/root/.ssh/authorized_keys"), "root's own\n").expect("write");
    std::fs::create_dir_all(sb.path("/home/eve")).expect("mkdir");
    std::os::unix::fs::chown(sb.path("/home/eve"), Some(65534), Some(65534)).expect("chown");
    // eve points her ~/.ssh at root's (the link is hers).
    std::os::unix::fs::symlink("/root/.ssh", sb.path("/home/eve/.ssh")).expect("ln");
    std::os::unix::fs::lchown(sb.path("/home/eve/.ssh"), Some(65534), Some(65534)).expect("lchown");
    sb.write_manifest(&format!(
        "[authorized_keys.eve]\nuser = \"eve\"\nkeys = [\"{alice}\"]\n"
    ));
    let plan = sb.plan_json();
    let why = resource(&plan, "authorized_keys.eve")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("/home/eve/.ssh"), "{why}");
    assert_eq!(sb.apply().code & 4, 4);
    assert_eq!(sb.read("/root/.ssh/authorized_keys"), "root's own\n");

    // Bad keys are load errors naming the key.
    sb.write_manifest(
        "[authorized_keys.eve]\nuser = \"eve\"\nkeys = [\"ssh-ed25519 not-base64 x\"]\n",
    );
    let r = sb.tend("check", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("\"ssh-ed25519 not-base64 x\"… is not an authorized_keys line"),
        "{}",
        r.stderr
    );
}
