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
