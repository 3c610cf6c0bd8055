//! Building an image with `apply --root`: told that the state directory is inside it, then
//! sealed — what is one machine's alone removed, so each clone makes its own at its first run.

use tend_tests::Sandbox;

#[test]
fn a_sealed_image_carries_no_key_secret_machine_id_or_ssh_host_key() {
    let sb = Sandbox::new();
    sb.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    sb.write("/etc/ssh/ssh_host_ed25519_key", "private\n");
    sb.write("/etc/ssh/ssh_host_ed25519_key.pub", "public\n");
    sb.write("/etc/ssh/sshd_config", "Port 22\n");
    sb.write_manifest(
        "[file.token]\npath = \"/etc/app/token\"\ncontent = \"{{ secret('app_token') }}\\n\"\n",
    );
    let built = sb.apply();
    assert_eq!(built.code, 2, "{built:?}");
    assert!(
        built.stderr.contains("is inside the image: its host key, stored secrets and records go with every machine cloned from it; run `tend image seal --root"),
        "{}",
        built.stderr
    );
    let token = sb.read("/etc/app/token");
    assert!(sb.path("/var/lib/tend/host.key").exists());
    assert!(sb.path("/var/lib/tend/secrets").exists());

    let root = sb.root();
    let seal = tend_tests::run(
        &["image", "seal", "--root", root.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(seal.code, 0, "{seal:?}");
    for said in [
        "emptied ",
        "/etc/machine-id (made at first boot)",
        "removed ",
        "/etc/ssh/ssh_host_ed25519_key\n",
        "/var/lib/tend/host.key",
        "/var/lib/tend/secrets",
        "/var/lib/tend/last-run.json",
    ] {
        assert!(seal.stdout.contains(said), "{said} in {}", seal.stdout);
    }
    assert_eq!(
        sb.read("/etc/machine-id"),
        "",
        "empty, for systemd's first boot"
    );
    assert!(!sb.path("/etc/ssh/ssh_host_ed25519_key").exists());
    assert_eq!(
        sb.read("/etc/ssh/sshd_config"),
        "Port 22\n",
        "the rest of /etc/ssh stays"
    );
    assert!(!sb.path("/var/lib/tend/host.key").exists());
    assert!(!sb.path("/var/lib/tend/secrets").exists());
    assert!(
        !sb.path("/var/lib/tend/backups").exists(),
        "no backup of what seal changed"
    );
    let again = tend_tests::run(
        &["image", "seal", "--root", root.to_str().expect("utf8")],
        &[],
    );
    assert_eq!(again.stdout, "nothing to remove: the image is sealed\n");

    // A clone's first run makes its own key and secret.
    assert_eq!(sb.apply().code, 2);
    assert_ne!(
        sb.read("/etc/app/token"),
        token,
        "a fresh secret per machine"
    );
    assert!(sb.path("/var/lib/tend/host.key").exists());

    let live = tend_tests::run(&["image", "seal", "--root", "/"], &[]);
    assert_eq!(live.code, 1);
    assert!(
        live.stderr.contains("never on the running machine"),
        "{}",
        live.stderr
    );
}

/// Every regular file under `dir` (not following links), hashed with its path and mode: what
/// "nothing on the build machine changed" is held to.
fn tree_hash(dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                files.push((e.path(), m.mode(), m.is_file()));
            }
        }
    }
    files.sort();
    for (p, mode, regular) in files {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update(mode.to_le_bytes());
        if regular {
            h.update(std::fs::read(&p).unwrap_or_default());
        }
    }
    format!("{:x}", h.finalize())
}

/// The manifest an image is built with, and the one the fleet's policy adds to it per role.
const BASELINE: &str = r#"
[file.motd]
path = "/etc/motd"
content = "{{ facts.os.pretty_name }}, managed by tend\n"

[exec.locale]
command = "echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen"
unless = "grep -q '^en_US.UTF-8' /etc/locale.gen"

[user.app]
name = "app"
system = true

[file.unit]
path = "/etc/systemd/system/tend-hello.service"
content = "[Unit]\nDescription=hello\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"

[service.tend-hello]
enabled = true
requires = ["file.unit"]

[file.token]
path = "/etc/app/token"
mode = "0600"
content = "{{ secret('app_token') }}\n"
"#;

const ROLE: &str = r#"
[file.role]
path = "/etc/role"
content = "{{ facts.local.role }}\n"
"#;

/// The whole provisioning path, with real components: an image root (debootstrap, cached)
/// planned read-only and built with `apply --root` (a command and its guard inside it, a user,
/// a unit enabled offline, a secret), sealed, booted with systemd as PID 1 and Debian's
/// cloud-init (NoCloud seed), whose user-data installs tend, sets the host's role and pulls the
/// signed policy: the first boot converges (only the role's file and the fresh secret change),
/// a second pull changes nothing, the machine-id and host key are the machine's own, and the
/// build machine was not touched.
#[test]
fn an_image_built_with_root_boots_with_cloud_init_and_converges_from_signed_policy() {
    use std::process::Command;
    let started = std::time::Instant::now();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let out = Command::new(workspace.join("scripts/cloud-image"))
        .output()
        .expect("scripts/cloud-image");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tarball = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let deb = tend_tests::systemd::package();
    let work = tempfile::Builder::new()
        .prefix("tend-image-")
        .tempdir()
        .expect("tempdir");
    let root = work.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    let sh = |c: &mut Command| {
        let out = c.output().expect("run");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sh(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-xf")
        .arg(&tarball));
    let unpacked = started.elapsed();
    let etc_before = tree_hash(std::path::Path::new("/etc"));

    // Build: planned read-only (the suite's watcher), applied, converged.
    let manifest = work.path().join("baseline.toml");
    std::fs::write(&manifest, BASELINE).expect("manifest");
    let m = manifest.to_str().expect("utf8").to_string();
    let r = root.to_str().expect("utf8").to_string();
    let plan = tend_tests::run(&["plan", &m, "--root", &r, "--format", "json"], &[]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    let build = tend_tests::run(&["apply", &m, "--root", &r, "--format", "json"], &[]);
    assert_eq!(build.code, 2, "{}{}", build.stdout, build.stderr);
    let again = tend_tests::run(&["apply", &m, "--root", &r], &[]);
    assert_eq!(again.code, 0, "the image converged: {}", again.stdout);
    assert!(std::fs::read_to_string(root.join("etc/locale.gen"))
        .expect("locale.gen")
        .contains("\nen_US.UTF-8 UTF-8\n"));
    // The link names the unit's path inside the image.
    assert!(root
        .join("etc/systemd/system/multi-user.target.wants/tend-hello.service")
        .symlink_metadata()
        .is_ok());
    let built_token = std::fs::read_to_string(root.join("etc/app/token")).expect("token");
    let built_key = std::fs::read(root.join("var/lib/tend/host.key")).expect("host key");
    let seal = tend_tests::run(&["image", "seal", "--root", &r], &[]);
    assert_eq!(seal.code, 0, "{seal:?}");
    assert_eq!(
        tree_hash(std::path::Path::new("/etc")),
        etc_before,
        "the build machine's /etc changed"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&r), "a mount left in the image: {mounts}");
    let built = started.elapsed();

    // The fleet's signed policy (served by path, mounted into the machine), the package, and
    // the first boot's user-data.
    let policy = tend_tests::signed::SignedRepo::new();
    let head = policy.commit(
        &[("manifest.toml", &format!("{BASELINE}{ROLE}"))],
        "web baseline",
    );
    std::fs::create_dir_all(root.join("var/cache/tend")).expect("mkdir");
    std::fs::copy(&deb, root.join("var/cache/tend/tend.deb")).expect("copy deb");
    let seed = root.join("var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&seed).expect("mkdir");
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: tend-e2e-1\nlocal-hostname: web1\n",
    )
    .expect("meta-data");
    let indent = |t: &str| {
        t.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    std::fs::write(
        seed.join("user-data"),
        format!(
            "#cloud-config\nwrite_files:\n  - path: /etc/tend/pull.toml\n    permissions: \"0644\"\n    content: |\n{}  - path: /etc/tend/allowed_signers\n    permissions: \"0644\"\n    content: |\n{}  - path: /etc/tend/facts.d/role.toml\n    permissions: \"0644\"\n    content: |\n{}runcmd:\n  - [dpkg, -i, /var/cache/tend/tend.deb]\n  - [sh, -c, 'tend pull; test $? -le 2']\n  - [sh, -c, 'tend timer install --pull; test $? -le 2']\n",
            indent("url = \"/srv/policy/policy.git\"\nref = \"main\"\nmanifest = \"manifest.toml\"\nallowed_signers = \"/etc/tend/allowed_signers\"\n"),
            indent(&policy.allowed_text()),
            indent("role = \"web\"\n"),
        ),
    )
    .expect("user-data");
    // The container shares no network: nothing for cloud-init to configure.
    std::fs::write(
        root.join("etc/cloud/cloud.cfg.d/99-tend-e2e.cfg"),
        "network: {config: disabled}\n",
    )
    .expect("cloud.cfg.d");

    let image = tend_tests::docker::unique("tend-e2e/cloud:");
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{r}' -c . | docker import -c 'CMD [\"/sbin/init\"]' - '{image}'"
        ))
        .output()
        .expect("docker import");
    assert!(import.status.success(), "{import:?}");
    struct Gone(String, String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
            let _ = Command::new("docker").args(["rmi", "-f", &self.1]).output();
        }
    }
    let name = tend_tests::docker::unique("tend-cloud-");
    let _gone = Gone(name.clone(), image.clone());
    let policy_dir = policy.dir.path().to_str().expect("utf8").to_string();
    sh(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "--cap-add",
        "SYS_ADMIN",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "-v",
        &format!("{policy_dir}:/srv/policy:ro"),
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        &image,
        "/sbin/init",
    ]));
    let exec = |script: &str| {
        let out = Command::new("docker")
            .args(["exec", &name, "sh", "-c", script])
            .output()
            .expect("docker exec");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // cloud-init's own word that its stages (the runcmd included) are done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    let status = loop {
        let (_, s) = exec("cloud-init status --long 2>&1");
        if s.contains("status: done") || s.contains("status: error") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cloud-init did not finish: {s}\n{}",
            exec("tail -50 /var/log/cloud-init-output.log").1
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let booted = started.elapsed();
    let output = exec("cat /var/log/cloud-init-output.log").1;
    assert!(status.contains("status: done"), "{status}\n{output}");

    // The first boot pulled the signed policy and converged.
    let (_, last) = exec("cat /var/lib/tend/last-run.json");
    let last: serde_json::Value = serde_json::from_str(&last).expect("last-run.json");
    assert_eq!(last["pull"]["applied"]["commit"], head.as_str(), "{last:#}");
    let mut changed = tend_tests::with_status(&last, "changed");
    changed.sort();
    assert_eq!(
        changed,
        ["file.role", "file.token"],
        "only the role and the fresh secret: {output}"
    );
    assert_eq!(exec("cat /etc/role").1, "web\n");
    assert_ne!(
        exec("cat /etc/app/token").1,
        built_token,
        "a secret of its own"
    );
    let (code, again) = exec("tend pull");
    assert_eq!(code, 0, "a second pull changes nothing: {again}");
    let (_, machine_id) = exec("cat /etc/machine-id");
    assert_eq!(machine_id.trim().len(), 32, "{machine_id}");
    let (_, key) = exec("od -An -tx1 /var/lib/tend/host.key | tr -d ' \\n'");
    let built_hex: String = built_key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(key.len(), 64, "{key}");
    assert_ne!(key, built_hex, "a host key of its own");
    let (code, timer) = exec("systemctl is-enabled tend.timer");
    assert_eq!(code, 0, "{timer}");
    let (_, unit) = exec("systemctl cat tend.service");
    assert!(
        unit.contains("ExecStart=/usr/bin/tend pull --lock-wait"),
        "{unit}"
    );
    let (_, hello) = exec("systemctl is-enabled tend-hello.service");
    assert_eq!(hello.trim(), "enabled");
    eprintln!(
        "provisioning: unpacked {:.1} s, built and sealed {:.1} s, first boot converged {:.1} s",
        unpacked.as_secs_f64(),
        built.as_secs_f64(),
        booted.as_secs_f64()
    );
}
