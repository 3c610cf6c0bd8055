//! `apt_repo` and `package` against the real apt and dpkg of this machine, offline: a local
//! repository built here (`dpkg-deb`, `dpkg-scanpackages`, a `Release` signed with a throwaway
//! GPG key), served from a `file:` URI. Everything the tests install or write is removed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tend_tests::{changed_fields, resource, run, with_status, Run};

/// apt and dpkg are machine-wide: one test at a time.
static APT: Mutex<()> = Mutex::new(());

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    sh(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .expect("sum")
        .to_string()
}

/// A signed flat repository holding one tiny package.
struct LocalRepo {
    dir: tempfile::TempDir,
    fingerprint: String,
    package: String,
}

impl LocalRepo {
    fn build(tag: &str) -> LocalRepo {
        let dir = tempfile::Builder::new()
            .prefix("tend-apt-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let gnupg = root.join("gnupg");
        std::fs::create_dir(&gnupg).expect("mkdir");
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let gpg = || {
            let mut c = Command::new("gpg");
            c.env("GNUPGHOME", &gnupg).args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ]);
            c
        };
        sh(gpg().args([
            "--quick-gen-key",
            "tend test repository <repo@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]));
        let colons = sh(gpg().args(["--with-colons", "--list-keys"]));
        let fingerprint = colons
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fpr")
            .to_string();
        let key = sh(gpg().args(["--armor", "--export", &fingerprint]));
        std::fs::write(root.join("key.asc"), key).expect("write key");

        let package = format!("tend-test-{tag}");
        let pkg = root.join("pkg");
        std::fs::create_dir_all(pkg.join("DEBIAN")).expect("mkdir");
        std::fs::create_dir_all(pkg.join(format!("usr/share/{package}"))).expect("mkdir");
        std::fs::write(
            pkg.join(format!("usr/share/{package}/hello.txt")),
            "hello from a local repository\n",
        )
        .expect("write");
        std::fs::write(
            pkg.join("DEBIAN/control"),
            format!("Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: tend tests <t@example.invalid>\nDescription: tiny test package for tend\n"),
        )
        .expect("write control");
        let repo = root.join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        sh(Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(repo.join(format!("{package}_1.0-1_all.deb"))));
        let packages = sh(Command::new("dpkg-scanpackages")
            .args(["--multiversion", "."])
            .current_dir(&repo));
        std::fs::write(repo.join("Packages"), packages).expect("write Packages");
        let size = std::fs::metadata(repo.join("Packages"))
            .expect("meta")
            .len();
        let date = sh(Command::new("date").args(["-u", "-R"]));
        std::fs::write(
            repo.join("Release"),
            format!(
                "Origin: tend-test\nLabel: tend-test\nDate: {}\nSHA256:\n {} {size} Packages\n",
                date.trim(),
                sha256(&repo.join("Packages"))
            ),
        )
        .expect("write Release");
        sh(gpg()
            .args(["--local-user", &fingerprint, "--clearsign", "-o"])
            .arg(repo.join("InRelease"))
            .arg(repo.join("Release")));
        LocalRepo {
            dir,
            fingerprint,
            package,
        }
    }

    fn uri(&self) -> String {
        format!("file:{}", self.dir.path().join("repo").display())
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.asc")
    }
}

impl Drop for LocalRepo {
    fn drop(&mut self) {
        // gpg started an agent for the throwaway keyring: stop it with the keyring.
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.dir.path().join("gnupg"))
            .output();
    }
}

/// Removes what a test put on the machine, whatever happened.
struct Cleanup {
    names: Vec<String>,
    packages: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.names {
            for p in [
                format!("/etc/apt/sources.list.d/{n}.sources"),
                format!("/etc/apt/keyrings/{n}.asc"),
                format!("/etc/apt/keyrings/{n}.gpg"),
            ] {
                let _ = std::fs::remove_file(p);
            }
        }
        for p in &self.packages {
            let _ = Command::new("dpkg").args(["--purge", p]).output();
        }
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("ii"))
}

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(manifest: &str) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("tend-apt-run-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("m.toml"), manifest).expect("manifest");
        Host { dir }
    }

    fn write(&self, manifest: &str) {
        std::fs::write(self.dir.path().join("m.toml"), manifest).expect("manifest");
    }

    fn tend(&self, sub: &str) -> Run {
        let m = self.dir.path().join("m.toml");
        let state = self.dir.path().join("state");
        run(
            &[
                sub,
                m.to_str().expect("utf8"),
                "--state-dir",
                state.to_str().expect("utf8"),
                "--format",
                "json",
            ],
            &[],
        )
    }
}

/// The apt lock of the tests, a fresh signed repository, its apt name, and what removes it all.
fn fixture() -> (
    std::sync::MutexGuard<'static, ()>,
    LocalRepo,
    String,
    Cleanup,
) {
    let serial = APT.lock().unwrap_or_else(|e| e.into_inner());
    let tag = format!("{:08x}", rand_u32());
    let repo = LocalRepo::build(&tag);
    let name = format!("tend-test-{tag}");
    let cleanup = Cleanup {
        names: vec![name.clone()],
        packages: vec![repo.package.clone()],
    };
    (serial, repo, name, cleanup)
}

fn manifest(repo: &LocalRepo, name: &str, fingerprint: &str, state: &str) -> String {
    format!(
        r#"
[apt_repo.local]
name = "{name}"
uris = "{uri}"
suites = "./"
key = {{ path = "{key}" }}
fingerprint = "{fingerprint}"

[package.hello]
names = ["{package}"]
state = "{state}"
requires = ["apt_repo.local"]
# Only this repository's lists are fetched (no other mirror): the test runs offline.
cache_max_age = 31536000
"#,
        uri = repo.uri(),
        key = repo.key().display(),
        package = repo.package,
    )
}

#[test]
fn local_signed_repository_timeline() {
    let (_serial, repo, name, _cleanup) = fixture();
    let host = Host::new(&manifest(&repo, &name, &repo.fingerprint, "present"));

    let plan = host.tend("plan").json();
    assert_eq!(changed_fields(&plan, "apt_repo.local"), ["key", "sources"]);
    assert_eq!(
        with_status(&plan, "would_change"),
        ["apt_repo.local", "package.hello"]
    );
    assert!(!Path::new(&format!("/etc/apt/sources.list.d/{name}.sources")).exists());

    let apply = host.tend("apply");
    assert_eq!(apply.code, 2, "{}", apply.stdout);
    assert!(installed(&repo.package));
    assert_eq!(
        std::fs::read_to_string(format!("/usr/share/{}/hello.txt", repo.package))
            .expect("installed file"),
        "hello from a local repository\n"
    );
    let sources = std::fs::read_to_string(format!("/etc/apt/sources.list.d/{name}.sources"))
        .expect("sources");
    assert!(
        sources.contains(&format!("Signed-By: /etc/apt/keyrings/{name}.asc\n")),
        "{sources}"
    );
    assert_eq!(host.tend("apply").code, 0, "second run");

    // The sources file edited by hand: plan names that file only, apply puts it back.
    let sources_path = format!("/etc/apt/sources.list.d/{name}.sources");
    std::fs::write(
        &sources_path,
        sources.replace("Suites: ./", "Suites: ./\nEnabled: no"),
    )
    .expect("edit");
    let plan = host.tend("plan").json();
    assert_eq!(with_status(&plan, "would_change"), ["apt_repo.local"]);
    assert_eq!(changed_fields(&plan, "apt_repo.local"), ["sources"]);
    let diff = resource(&plan, "apt_repo.local")["changes"][0]["diff"]
        .as_str()
        .expect("diff")
        .to_string();
    assert!(diff.contains("-Enabled: no\n"), "{diff}");
    assert_eq!(host.tend("apply").code, 2);
    assert_eq!(
        std::fs::read_to_string(&sources_path).expect("sources"),
        sources
    );
    assert_eq!(host.tend("apply").code, 0);

    // Removed by hand: plan names exactly that package.
    sh(Command::new("apt-get")
        .args(["remove", "-y", "-q", &repo.package])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    let plan = host.tend("plan").json();
    assert_eq!(with_status(&plan, "would_change"), ["package.hello"]);
    assert_eq!(
        changed_fields(&plan, "package.hello"),
        vec![repo.package.as_str()]
    );
    assert_eq!(host.tend("apply").code, 2);
    assert!(installed(&repo.package));

    // state = "absent" removes it.
    host.write(&manifest(&repo, &name, &repo.fingerprint, "absent"));
    let (plan, apply) = (host.tend("plan").json(), host.tend("apply"));
    assert_eq!(
        resource(&plan, "package.hello")["changes"][0]["description"],
        format!("{}: installed 1.0-1 → removed", repo.package)
    );
    assert_eq!(apply.code, 2, "{}", apply.stdout);
    assert!(!installed(&repo.package));
    assert_eq!(host.tend("apply").code, 0);

    // A version glob, resolved against what apt offers: installs 1.0-1, then is in sync.
    let pinned = |glob: &str| {
        manifest(&repo, &name, &repo.fingerprint, "present").replace(
            "state = \"present\"",
            &format!(
                "state = \"present\"\nversions = {{ {} = \"{glob}\" }}",
                repo.package
            ),
        )
    };
    host.write(&pinned("1.*"));
    let apply = host.tend("apply");
    assert_eq!(apply.code, 2, "{}{}", apply.stdout, apply.stderr);
    assert!(installed(&repo.package));
    assert_eq!(host.tend("apply").code, 0);
    // A glob nothing installed or offered matches: plan names the package, apply says why.
    host.write(&pinned("2.*"));
    let plan = host.tend("plan").json();
    assert_eq!(with_status(&plan, "would_change"), ["package.hello"]);
    let apply = host.tend("apply");
    assert_eq!(apply.code, 4, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply.stdout.contains("matching 2.*"),
        "{}{}",
        apply.stdout,
        apply.stderr
    );
}

#[test]
fn a_wrong_fingerprint_writes_nothing() {
    let (_serial, repo, name, _cleanup) = fixture();
    let wrong = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88";
    let host = Host::new(&manifest(&repo, &name, wrong, "present"));
    let r = host.tend("apply");
    assert_eq!(r.code, 4, "{}", r.stdout);
    let report = r.json();
    let err = resource(&report, "apt_repo.local")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert_eq!(
        err,
        format!(
            "the key's fingerprint is {}, expected {wrong}; nothing was written",
            repo.fingerprint
        )
    );
    assert_eq!(resource(&report, "package.hello")["status"], "skipped");
    for p in [
        format!("/etc/apt/sources.list.d/{name}.sources"),
        format!("/etc/apt/keyrings/{name}.asc"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} was written");
    }
}

#[test]
fn a_package_from_debians_archive_installs_and_removes() {
    let _serial = APT.lock().unwrap_or_else(|e| e.into_inner());
    if installed("hello") {
        eprintln!("hello is installed on this machine already; the test would remove it: skipped");
        return;
    }
    if installed("sl") {
        eprintln!("sl is installed on this machine already; the test would remove it: skipped");
        return;
    }
    let _cleanup = Cleanup {
        names: vec![],
        packages: vec!["hello".into(), "sl".into()],
    };
    // Two packages of one wave: their apt-get runs one after the other, never racing for
    // dpkg's lock (the second would wait on tend's own first, and warn about it).
    let host =
        Host::new("[package.hello]\nnames = [\"hello\"]\n\n[package.sl]\nnames = [\"sl\"]\n");
    let r = host.tend("apply");
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        !r.stderr.contains("the dpkg lock is held by process"),
        "tend raced itself for the dpkg lock: {}",
        r.stderr
    );
    assert!(installed("hello") && installed("sl"));
    assert!(Path::new("/usr/bin/hello").exists());
    assert_eq!(host.tend("apply").code, 0);
    host.write(
        "[package.hello]\nnames = [\"hello\"]\nstate = \"absent\"\n\n[package.sl]\nnames = [\"sl\"]\nstate = \"absent\"\n",
    );
    assert_eq!(host.tend("apply").code, 2);
    assert!(!installed("hello") && !installed("sl"));
    assert_eq!(host.tend("plan").code, 0);
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    t ^ std::process::id()
}

/// A `--root` made by `debootstrap --variant=minbase` (downloads Debian's base system from
/// Debian's archive, a few minutes): `package` installs into it with apt chrooted there, and the
/// host's dpkg database is untouched.
#[test]
fn package_installs_into_a_debootstrap_root_and_leaves_the_host_alone() {
    let _serial = APT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::Builder::new()
        .prefix("tend-debootstrap-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().join("root");
    let codename = std::fs::read_to_string("/etc/os-release")
        .expect("os-release")
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_string))
        .expect("codename");
    sh(Command::new("debootstrap")
        .args(["--variant=minbase", &codename])
        .arg(&root)
        .arg("http://deb.debian.org/debian"));
    let host_status = std::fs::read("/var/lib/dpkg/status").expect("host status");
    let manifest = dir.path().join("m.toml");
    // cron's post-install starts its daemon (`invoke-rc.d cron start`) — not in an image.
    std::fs::write(
        &manifest,
        "[package.hello]\nnames = [\"hello\"]\n\n[package.cron]\nnames = [\"cron\"]\n",
    )
    .expect("manifest");
    let args = |sub: &'static str| {
        vec![
            sub.to_string(),
            manifest.display().to_string(),
            "--root".into(),
            root.display().to_string(),
            "--format".into(),
            "json".into(),
        ]
    };
    let tend = |sub: &'static str| {
        let a = args(sub);
        run(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let plan = tend("plan");
    assert_eq!(plan.code, 2, "{}", plan.stdout);
    assert_eq!(
        resource(&plan.json(), "package.hello")["changes"][0]["description"],
        "hello: not installed → install"
    );
    let apply = tend("apply");
    assert_eq!(apply.code, 2, "{}", apply.stdout);
    assert!(root.join("usr/bin/hello").exists());
    let inside = std::fs::read_to_string(root.join("var/lib/dpkg/status")).expect("root status");
    assert!(inside.contains("Package: hello\nStatus: install ok installed\n"));
    assert_eq!(
        std::fs::read("/var/lib/dpkg/status").expect("host status"),
        host_status,
        "the host's database changed"
    );
    // No daemon was started from the image, the policy-rc.d that said so is gone again, and
    // nothing apt's maintainer scripts had mounted (/proc, /sys, /dev, /run) is left.
    assert!(inside.contains("Package: cron\nStatus: install ok installed\n"));
    let real_root = root.canonicalize().expect("root");
    let running: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path().join("root")).is_ok_and(|r| r.starts_with(&real_root))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(running.is_empty(), "processes in the image: {running:?}");
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(real_root.to_str().expect("utf8")),
        "{mounts}"
    );
    assert_eq!(tend("apply").code, 0);

    // A run killed while apt ran leaves tend's policy-rc.d behind: the next apt run in the image
    // takes it away again; one the image ships itself is left alone.
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(
        &policy,
        "#!/bin/sh\n# installed by tend for an image build: no service starts here\nexit 101\n",
    )
    .expect("policy-rc.d");
    std::fs::write(
        &manifest,
        "[package.hello]\nnames = [\"hello\"]\nstate = \"absent\"\n",
    )
    .expect("manifest");
    assert_eq!(tend("apply").code, 2);
    assert!(!root.join("usr/bin/hello").exists());
    assert!(!policy.exists(), "tend's leftover policy-rc.d removed");
    std::fs::write(&policy, "#!/bin/sh\nexit 0\n").expect("the image's own");
    std::fs::write(&manifest, "[package.hello]\nnames = [\"hello\"]\n").expect("manifest");
    assert_eq!(tend("apply").code, 2);
    assert_eq!(
        std::fs::read_to_string(&policy).expect("kept"),
        "#!/bin/sh\nexit 0\n",
        "the image's own policy-rc.d kept"
    );
}

/// A repository whose server does not answer: `apt-get update` exits 0 all the same, so the
/// lists are not claimed "updated": the package that needed them fails with apt's own warning,
/// said once, not forty times.
#[test]
fn an_unreachable_repository_fails_the_update_with_apts_words() {
    let (_serial, repo, name, _cleanup) = fixture();
    let text = manifest(&repo, &name, &repo.fingerprint, "present").replace(
        &format!("uris = \"{}\"", repo.uri()),
        "uris = \"http://127.0.0.1:9/debian/\"",
    );
    let host = Host::new(&text);
    let apply = host.tend("apply");
    assert_eq!(apply.code, 6, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply
            .stdout
            .contains("apt-get update could not fetch every package index"),
        "{}",
        apply.stdout
    );
    assert!(
        apply
            .stdout
            .contains("W: Failed to fetch http://127.0.0.1:9/debian/"),
        "{}",
        apply.stdout
    );
    assert!(
        !apply.stdout.contains("updated the package lists"),
        "{}",
        apply.stdout
    );
    let warnings = apply.stdout.matches("W: Failed to fetch").count();
    assert!(warnings <= 2, "deduplicated: {warnings}\n{}", apply.stdout);
}
