//! `git` against real repositories made with the git CLI, served by path, `file://` and
//! `git daemon` on loopback.

use std::path::PathBuf;
use std::process::Command;

use tend_tests::gitserve::git;
use tend_tests::{changed_fields, resource, with_status, Sandbox};

const ENV_EXAMPLE: &str = include_str!("../../fixtures/dify/env.example");

/// A repository shaped like Dify's: tags 1.11.4 and 1.12.1 (annotated), one more commit on main,
/// `docker/.env.example` from the real Dify file, `docker/.env` and `docker/volumes/` ignored.
struct Upstream {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Upstream {
    fn new() -> Upstream {
        let dir = tempfile::Builder::new()
            .prefix("tend-upstream-")
            .tempdir()
            .expect("tempdir");
        // Readable by a checkout's owner, who fetches from it.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let path = dir.path().join("dify.git");
        std::fs::create_dir_all(path.join("docker")).expect("mkdir");
        git(&path, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(path.join(".gitignore"), "docker/.env\ndocker/volumes/\n").expect("write");
        let old_example: String = ENV_EXAMPLE
            .lines()
            .take(1200)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(path.join("docker/.env.example"), old_example).expect("write");
        std::fs::write(path.join("README.md"), "Dify 1.11.4\n").expect("write");
        git(&path, &["add", "-A"]);
        git(&path, &["commit", "--quiet", "-m", "release 1.11.4"]);
        git(&path, &["tag", "-a", "1.11.4", "-m", "1.11.4"]);
        std::fs::write(path.join("docker/.env.example"), ENV_EXAMPLE).expect("write");
        std::fs::write(path.join("README.md"), "Dify 1.12.1\n").expect("write");
        std::fs::write(path.join("docker/new-in-1.12.txt"), "new\n").expect("write");
        git(&path, &["add", "-A"]);
        git(&path, &["commit", "--quiet", "-m", "release 1.12.1"]);
        git(&path, &["tag", "-a", "1.12.1", "-m", "1.12.1"]);
        std::fs::write(path.join("README.md"), "Dify main\n").expect("write");
        git(&path, &["commit", "--quiet", "-am", "after the release"]);
        Upstream { _dir: dir, path }
    }

    fn rev(&self, r: &str) -> String {
        git(&self.path, &["rev-parse", &format!("{r}^{{commit}}")])
    }

    fn url(&self) -> String {
        self.path.display().to_string()
    }
}

fn manifest(url: &str, extra: &str) -> String {
    format!("[vars]\ndify_version = \"1.11.4\"\n\n[git.dify]\npath = \"/opt/dify\"\nurl = \"{url}\"\nref = \"{{{{ dify_version }}}}\"\n{extra}\n")
}

fn head(sb: &Sandbox) -> String {
    git(&sb.path("/opt/dify"), &["rev-parse", "HEAD"])
}

fn porcelain(sb: &Sandbox) -> String {
    git(&sb.path("/opt/dify"), &["status", "--porcelain"])
}

#[test]
fn tag_timeline_keeps_ignored_files_byte_for_byte() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&up.url(), ""));

    let plan = sb.plan_json();
    let c = &resource(&plan, "git.dify")["changes"][0];
    assert_eq!(
        c["description"],
        format!("clone {} at 1.11.4 ({})", up.url(), &up.rev("1.11.4")[..7])
    );
    assert!(!sb.path("/opt/dify").exists());

    assert_eq!(sb.apply().code, 2);
    assert_eq!(head(&sb), up.rev("1.11.4"));
    assert_eq!(porcelain(&sb), "");
    assert_eq!(sb.read("/opt/dify/README.md"), "Dify 1.11.4\n");
    assert_eq!(sb.apply().code, 0, "second run");

    // The operator's .env and data, ignored by git, must survive every move.
    let env = "SECRET_KEY=mine\nDB_PASSWORD='p@ss word'\n";
    sb.write("/opt/dify/docker/.env", env);
    sb.write("/opt/dify/docker/volumes/db/data", "rows");

    let plan = sb
        .tend(
            "plan",
            &["--var", "dify_version=1.12.1", "--format", "json"],
        )
        .json();
    assert_eq!(changed_fields(&plan, "git.dify"), ["ref"]);
    let d = resource(&plan, "git.dify")["changes"][0]["description"]
        .as_str()
        .expect("description")
        .to_string();
    assert_eq!(
        d,
        format!(
            "ref: 1.11.4 ({}) → 1.12.1 ({}), 3 files change",
            &up.rev("1.11.4")[..7],
            &up.rev("1.12.1")[..7]
        )
    );

    assert_eq!(sb.tend("apply", &["--var", "dify_version=1.12.1"]).code, 2);
    assert_eq!(head(&sb), up.rev("1.12.1"));
    assert_eq!(porcelain(&sb), "");
    assert_eq!(sb.read("/opt/dify/README.md"), "Dify 1.12.1\n");
    assert_eq!(sb.read("/opt/dify/docker/.env"), env);
    assert_eq!(sb.read("/opt/dify/docker/volumes/db/data"), "rows");
    assert_eq!(sb.tend("apply", &["--var", "dify_version=1.12.1"]).code, 0);

    // And back.
    assert_eq!(sb.apply().code, 2);
    assert_eq!(head(&sb), up.rev("1.11.4"));
    assert_eq!(sb.read("/opt/dify/docker/.env"), env);
}

/// `git daemon` serving the upstream's parent directory on a free loopback port.
struct Daemon(tend_tests::gitserve::GitDaemon);

impl Daemon {
    fn serve(up: &Upstream) -> Daemon {
        Daemon(tend_tests::gitserve::GitDaemon::serve(
            up.path.parent().expect("parent"),
        ))
    }

    fn url(&self) -> String {
        self.0.url("dify.git")
    }
}

#[test]
fn shallow_clone_then_move_to_another_tag() {
    let up = Upstream::new();
    let daemon = Daemon::serve(&up);
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&daemon.url(), "depth = 1"));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(head(&sb), up.rev("1.11.4"));
    assert_eq!(
        git(
            &sb.path("/opt/dify"),
            &["rev-parse", "--is-shallow-repository"]
        ),
        "true"
    );
    assert_eq!(
        git(&sb.path("/opt/dify"), &["rev-list", "--count", "HEAD"]),
        "1"
    );
    assert_eq!(sb.apply().code, 0);
    assert_eq!(sb.tend("apply", &["--var", "dify_version=1.12.1"]).code, 2);
    assert_eq!(head(&sb), up.rev("1.12.1"));
    assert_eq!(porcelain(&sb), "");
    assert_eq!(sb.tend("apply", &["--var", "dify_version=1.12.1"]).code, 0);
}

#[test]
fn depth_over_a_file_url_fetches_in_full_and_says_so() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&format!("file://{}", up.url()), "depth = 1"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2);
    assert_eq!(head(&sb), up.rev("1.11.4"));
    assert_eq!(
        resource(&report, "git.dify")["notes"][0],
        format!(
            "file://{} is a local repository, which cannot be fetched shallow: fetched in full",
            up.url()
        )
    );
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn a_tag_moved_upstream_is_drift_or_with_a_pin_a_failure() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    let pinned = up.rev("1.11.4");
    sb.write_manifest(&manifest(&up.url(), ""));
    assert_eq!(sb.apply().code, 2);

    // Upstream re-points 1.11.4 at the newest commit.
    git(
        &up.path,
        &["tag", "-f", "-a", "1.11.4", "-m", "moved", "main"],
    );
    let moved = up.rev("1.11.4");
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "git.dify"), ["tag", "ref"]);
    assert_eq!(
        resource(&plan, "git.dify")["changes"][0]["description"],
        format!(
            "tag 1.11.4 moved upstream: {} here, {} on the remote",
            &pinned[..7],
            &moved[..7]
        )
    );

    // With a pin, the move is a failure and nothing is touched.
    sb.write_manifest(&manifest(&up.url(), &format!("commit = \"{pinned}\"")));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    assert_eq!(
        resource(&report, "git.dify")["error"],
        format!(
            "tag 1.11.4 now points to {}, expected {pinned} (the commit pin); nothing was touched",
            &moved[..7]
        )
    );
    assert_eq!(head(&sb), pinned);

    // Without it, apply follows the tag.
    sb.write_manifest(&manifest(&up.url(), ""));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(head(&sb), moved);
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn local_changes_fail_by_default_and_are_saved_before_a_discard() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&up.url(), ""));
    assert_eq!(sb.apply().code, 2);
    sb.write("/opt/dify/README.md", "my local fix\n");

    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "git.dify"), ["local_changes"]);
    assert_eq!(
        resource(&plan, "git.dify")["changes"][0]["description"],
        "local changes in tracked files: README.md"
    );
    // Apply would stop there: plan says so, with the failure bit, instead of a change.
    assert_eq!(resource(&plan, "git.dify")["status"], "will_fail");
    assert_eq!(plan["exit_code"], 4);

    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "git.dify")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.starts_with("local changes in tracked files would be lost: README.md; "),
        "{err}"
    );
    assert_eq!(
        sb.read("/opt/dify/README.md"),
        "my local fix\n",
        "fail leaves them as they are"
    );

    sb.write_manifest(&manifest(&up.url(), "on_local_changes = \"discard\""));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2);
    let patch = resource(&report, "git.dify")["backups"][0]
        .as_str()
        .expect("patch path")
        .to_string();
    let text = std::fs::read_to_string(&patch).expect("patch");
    assert!(text.contains("-Dify 1.11.4\n+my local fix\n"), "{text}");
    assert_eq!(sb.read("/opt/dify/README.md"), "Dify 1.11.4\n");
    assert_eq!(porcelain(&sb), "");
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn wrong_remote_url_is_corrected() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&up.url(), ""));
    assert_eq!(sb.apply().code, 2);
    git(
        &sb.path("/opt/dify"),
        &[
            "remote",
            "set-url",
            "origin",
            "https://example.invalid/fork.git",
        ],
    );
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["git.dify"]);
    assert_eq!(changed_fields(&plan, "git.dify"), ["url"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        git(&sb.path("/opt/dify"), &["remote", "get-url", "origin"]),
        up.url()
    );
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn a_non_repository_path_is_refused_untouched() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    sb.write("/opt/dify/precious.txt", "keep");
    sb.write_manifest(&manifest(&up.url(), ""));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4);
    let err = resource(&report, "git.dify")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.ends_with("/opt/dify exists and is not a git repository; nothing was touched"),
        "{err}"
    );
    assert_eq!(sb.read("/opt/dify/precious.txt"), "keep");
    assert!(!sb.path("/opt/dify/.git").exists());
}

#[test]
fn an_unreachable_remote_fails_clearly_and_spares_the_rest() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sb = Sandbox::new();
    sb.write_manifest(&format!(
        "{}\n[file.other]\npath = \"/etc/other\"\ncontent = \"x\"\n",
        manifest(&format!("git://127.0.0.1:{port}/nothing.git"), "")
    ));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 6);
    let err = resource(&report, "git.dify")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "cannot reach git://127.0.0.1:{port}/nothing.git: "
        )),
        "{err}"
    );
    assert_eq!(resource(&report, "file.other")["status"], "changed");
}

#[test]
fn clone_from_git_daemon_on_loopback_and_follow_a_branch() {
    let up = Upstream::new();
    let daemon = Daemon::serve(&up);
    let sb = Sandbox::new();
    sb.write_manifest(&format!(
        "[git.app]\npath = \"/srv/app\"\nurl = \"{}\"\nref = \"main\"\n",
        daemon.url()
    ));
    assert_eq!(sb.apply().code, 2);
    let checkout = sb.path("/srv/app");
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), up.rev("main"));
    assert_eq!(
        git(&checkout, &["symbolic-ref", "HEAD"]),
        "refs/heads/main",
        "a branch is checked out as a branch"
    );
    assert_eq!(sb.apply().code, 0);
    // Upstream moves on: plan sees it through ls-remote, without fetching.
    std::fs::write(up.path.join("README.md"), "newer\n").expect("write");
    git(&up.path, &["commit", "--quiet", "-am", "newer"]);
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "git.app"), ["ref"]);
    assert_eq!(sb.read("/srv/app/README.md"), "Dify main\n");
    assert_eq!(sb.apply().code, 2);
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), up.rev("main"));
    assert_eq!(sb.read("/srv/app/README.md"), "newer\n");
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn an_env_file_inside_the_checkout_is_ordered_after_it() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    sb.write_manifest(&format!(
        "{}\n[env_file.dify]\npath = \"/opt/dify/docker/.env\"\ncreate_from = \"/opt/dify/docker/.env.example\"\n[env_file.dify.set]\nEXPOSE_NGINX_PORT = \"127.0.0.1:3000\"\n",
        manifest(&up.url(), "")
    ));
    let plan = sb.plan_json();
    assert_eq!(
        with_status(&plan, "may_change"),
        ["env_file.dify"],
        "{plan:#}"
    );
    assert_eq!(sb.apply().code, 2);
    assert!(sb
        .read("/opt/dify/docker/.env")
        .contains("\nEXPOSE_NGINX_PORT=127.0.0.1:3000\n"));
    assert_eq!(porcelain(&sb), "", ".env is ignored by the checkout");
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn staged_and_deleted_tracked_files_count_as_local_changes() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&up.url(), ""));
    assert_eq!(sb.apply().code, 2);
    let checkout = sb.path("/opt/dify");
    sb.write("/opt/dify/README.md", "staged edit\n");
    git(&checkout, &["add", "README.md"]);
    std::fs::remove_file(checkout.join("docker/.env.example")).expect("rm");
    let plan = sb.plan_json();
    assert_eq!(
        resource(&plan, "git.dify")["changes"][0]["description"],
        "local changes in tracked files: README.md, docker/.env.example"
    );
    // An untracked file is not a local change.
    git(&checkout, &["checkout", "HEAD", "--", "."]);
    git(&checkout, &["reset", "--quiet"]);
    sb.write("/opt/dify/notes.txt", "mine");
    assert_eq!(sb.plan().code, 0, "{}", sb.plan().stdout);
}

#[test]
fn plan_with_an_unreachable_remote_is_an_honest_unknown() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(
        &format!("git://127.0.0.1:{port}/nothing.git"),
        "",
    ));
    // Nothing is there: the clone is certain, only its commit is unknown.
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 2);
    assert_eq!(with_status(&plan, "would_change"), ["git.dify"]);
    let change = resource(&plan, "git.dify")["changes"][0]["description"]
        .as_str()
        .expect("description")
        .to_string();
    assert!(
        change.contains(&format!(
            "(commit unknown: cannot reach git://127.0.0.1:{port}/nothing.git: "
        )),
        "{change}"
    );
}

#[test]
fn plan_of_a_checkout_whose_remote_is_unreachable_is_unknown_not_drift() {
    let up = Upstream::new();
    let daemon = Daemon::serve(&up);
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&daemon.url(), ""));
    // A branch: where it points is the server's to say (a tag known locally is not).
    let branch = git(&up.path, &["symbolic-ref", "--short", "HEAD"]);
    let var = format!("dify_version={branch}");
    assert_eq!(sb.tend("apply", &["--var", &var]).code, 2);
    assert_eq!(sb.tend("plan", &["--var", &var]).code, 0);
    // The server goes away: an auditor on this converged host still gets 0, and the report
    // says what could not be checked.
    drop(daemon);
    let plan = sb.tend("plan", &["--format", "json", "--var", &var]);
    let report = plan.json();
    assert_eq!(plan.code, 0, "{report:#}");
    let git = resource(&report, "git.dify");
    assert_eq!(git["status"], "unknown");
    assert_eq!(git["reason_class"], "unreachable");
    assert_eq!(report["summary"]["unknown"], 1);
}

/// OpenSSH's sshd on a free loopback port, accepting one client key for root; the upstream is
/// reached as `ssh://root@127.0.0.1:PORT/…`. Host keys are checked against `~/.ssh/known_hosts`
/// of the HOME tend runs with.
struct Sshd {
    _child: tend_tests::Reaped,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("tend-sshd-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let keygen = |name: &str| {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "tend-test", "-f"])
                .arg(d.join(name))
                .output()
                .expect("ssh-keygen (install openssh-client)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        keygen("host_key");
        keygen("client_key");
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let port = tend_tests::pki::free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
                dir = d.display()
            ),
        )
        .expect("sshd_config");
        // sshd's privilege separation directory (created by its systemd unit on a real host).
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).expect("log"))
            .spawn()
            .expect("sshd (install openssh-server)");
        tend_tests::pki::wait_for(port, "sshd", &d.join("sshd.log"));
        Sshd {
            _child: tend_tests::Reaped(child),
            port,
            dir,
        }
    }

    fn url(&self, up: &Upstream) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, up.path.display())
    }

    fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A HOME whose known_hosts lists this server's host key (or not).
    fn home(&self, trusted: bool) -> tempfile::TempDir {
        let home = tempfile::tempdir().expect("home");
        std::fs::create_dir_all(home.path().join(".ssh")).expect("mkdir .ssh");
        if trusted {
            let key =
                std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("host key");
            let mut parts = key.split_whitespace();
            let line = format!(
                "[127.0.0.1]:{} {} {}\n",
                self.port,
                parts.next().expect("type"),
                parts.next().expect("key")
            );
            std::fs::write(home.path().join(".ssh/known_hosts"), line).expect("known_hosts");
        }
        home
    }
}

#[test]
fn clone_over_ssh_with_a_key_and_a_known_host() {
    let up = Upstream::new();
    let sshd = Sshd::start();
    let sb = Sandbox::new();
    let extra = format!("ssh_key = \"{}\"", sshd.client_key().display());
    sb.write_manifest(&manifest(&sshd.url(&up), &extra));

    // A host key nobody vouched for: refused, nothing cloned.
    let stranger = sshd.home(false);
    let r = sb.tend_env(
        "apply",
        &["--format", "json"],
        &[("HOME", stranger.path().to_str().expect("utf8"))],
    );
    let report = r.json();
    assert_eq!(r.code, 4, "{report:#}");
    let err = resource(&report, "git.dify")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.starts_with("refusing ssh://root@127.0.0.1:") && err.contains("known_hosts"),
        "{err}"
    );
    // Plan says the same: an unknown host key is no network trouble that may go away.
    let r = sb.tend_env(
        "plan",
        &["--format", "json"],
        &[("HOME", stranger.path().to_str().expect("utf8"))],
    );
    assert_eq!(resource(&r.json(), "git.dify")["status"], "failed");
    assert!(!sb.path("/opt/dify/.git").exists());

    let home = sshd.home(true);
    let env = [("HOME", home.path().to_str().expect("utf8"))];
    let r = sb.tend_env("apply", &["--format", "json"], &env);
    assert_eq!(r.code, 2, "{:#}", r.json());
    assert_eq!(head(&sb), up.rev("1.11.4"));
    assert_eq!(
        sb.tend_env("apply", &[], &env).code,
        0,
        "second run: zero changes"
    );
    // Plan asks the remote over SSH too (ls-remote): a moved tag would show.
    let r = sb.tend_env(
        "plan",
        &["--format", "json", "--var", "dify_version=1.12.1"],
        &env,
    );
    assert_eq!(changed_fields(&r.json(), "git.dify"), ["ref"]);
}

/// git's smart HTTP (git-http-backend through fcgiwrap) behind nginx with TLS and basic auth, on
/// a free loopback port; the certificate is signed by a test CA given to tend as SSL_CERT_FILE.
struct HttpsGit {
    _children: Vec<tend_tests::Reaped>,
    port: u16,
    dir: tempfile::TempDir,
}

impl HttpsGit {
    const TOKEN: &'static str = "t0ken-for-tests";

    fn serve(up: &Upstream) -> HttpsGit {
        let base = up.path.parent().expect("parent").to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("tend-https-git-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        tend_tests::pki::server_cert(d, "127.0.0.1", "IP:127.0.0.1");
        let out = Command::new("openssl")
            .args(["passwd", "-apr1", HttpsGit::TOKEN])
            .output()
            .expect("openssl");
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();

        std::fs::write(d.join("htpasswd"), format!("x-access-token:{hash}\n")).expect("htpasswd");
        let port = tend_tests::pki::free_port();
        let s = |p: &str| d.join(p).display().to_string();
        std::fs::write(
            d.join("nginx.conf"),
            format!(
                "user root;\nerror_log {err};\npid {pid};\ndaemon off;\nevents {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    location / {{\n      auth_basic \"git\";\n      auth_basic_user_file {htpasswd};\n      include /etc/nginx/fastcgi_params;\n      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;\n      fastcgi_param GIT_PROJECT_ROOT {root};\n      fastcgi_param GIT_HTTP_EXPORT_ALL \"\";\n      fastcgi_param PATH_INFO $uri;\n      fastcgi_param REMOTE_USER $remote_user;\n      fastcgi_pass unix:{sock};\n    }}\n  }}\n}}\n",
                err = s("nginx-error.log"),
                pid = s("nginx.pid"),
                cert = s("cert.pem"),
                key = s("key.pem"),
                htpasswd = s("htpasswd"),
                root = base.display(),
                sock = s("fcgiwrap.sock"),
            ),
        )
        .expect("nginx.conf");
        let quiet = || std::process::Stdio::null();
        let fcgi = Command::new("fcgiwrap")
            .args(["-s", &format!("unix:{}", s("fcgiwrap.sock"))])
            .stdin(quiet())
            .stdout(quiet())
            .stderr(quiet())
            .spawn()
            .expect("fcgiwrap (install fcgiwrap)");
        // Workers as root: fcgiwrap's socket belongs to root (the tests run as root).
        let nginx = Command::new("nginx")
            .args(["-p", &format!("{}/", d.display()), "-c", &s("nginx.conf")])
            .stdin(quiet())
            .stdout(quiet())
            .stderr(quiet())
            .spawn()
            .expect("nginx");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || !d.join("fcgiwrap.sock").exists()
        {
            assert!(
                started.elapsed().as_secs() < 10,
                "nginx or fcgiwrap did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        HttpsGit {
            _children: vec![tend_tests::Reaped(fcgi), tend_tests::Reaped(nginx)],
            port,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/dify.git", self.port)
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }
}

#[test]
fn clone_over_https_with_a_token_that_is_never_printed() {
    let up = Upstream::new();
    let server = HttpsGit::serve(&up);
    let sb = Sandbox::new();
    sb.write_manifest(&manifest(&server.url(), "token_env = \"DIFY_GIT_TOKEN\""));
    let ca = server.ca();

    // No token in the environment: the failure names the variable.
    let r = sb.tend_env("apply", &["--format", "json"], &[("SSL_CERT_FILE", &ca)]);
    let report = r.json();
    assert_eq!(r.code, 4, "{report:#}");
    let err = resource(&report, "git.dify")["error"]
        .as_str()
        .expect("error");
    assert!(err.contains("DIFY_GIT_TOKEN"), "{err}");

    // A wrong token: refused, nothing cloned.
    let r = sb.tend_env(
        "apply",
        &["--format", "json"],
        &[("SSL_CERT_FILE", &ca), ("DIFY_GIT_TOKEN", "wrong")],
    );
    assert_eq!(r.code, 4, "{}", r.stdout);
    let err = resource(&r.json(), "git.dify")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.contains("credentials refused") && !err.contains("wrong"),
        "{err}"
    );
    assert!(!sb.path("/opt/dify/.git").exists());

    // The CA bundle is loaded only when https is used (libgit2 starts without it): a server whose
    // CA the system does not trust is still refused.
    let untrusted = sb.tend_env(
        "apply",
        &["--format", "json"],
        &[("DIFY_GIT_TOKEN", HttpsGit::TOKEN)],
    );
    assert_eq!(untrusted.code, 4, "{}", untrusted.stdout);
    let err = resource(&untrusted.json(), "git.dify")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("certificate"), "{err}");

    let env = [
        ("SSL_CERT_FILE", ca.as_str()),
        ("DIFY_GIT_TOKEN", HttpsGit::TOKEN),
    ];
    let r = sb.tend_env("apply", &["--format", "json"], &env);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(head(&sb), up.rev("1.11.4"));
    let r2 = sb.tend_env("apply", &["-v"], &env);
    assert_eq!(r2.code, 0, "second run: zero changes");
    for out in [&r.stdout, &r.stderr, &r2.stdout, &r2.stderr] {
        assert!(!out.contains(HttpsGit::TOKEN), "the token leaked: {out}");
    }
    let last = std::fs::read_to_string(sb.state_dir().join("last-run.json")).expect("last run");
    assert!(!last.contains(HttpsGit::TOKEN));
}

#[test]
fn owner_and_group_apply_to_the_whole_checkout() {
    use std::os::unix::fs::MetadataExt;
    let up = Upstream::new();
    let sb = Sandbox::new();
    // The checkout is written as app: app must be able to reach it.
    for d in [sb.dir.path().to_path_buf(), sb.root()] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
    sb.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/srv/app:/bin/sh\n",
    );
    sb.write("/etc/group", "root:x:0:\napp:x:1234:\n");
    sb.write_manifest(&manifest(&up.url(), "owner = \"app\"\ngroup = \"app\""));
    let r = sb.apply();
    assert_eq!(r.code, 2, "{}", r.stdout);
    for p in [
        "/opt/dify",
        "/opt/dify/docker/.env.example",
        "/opt/dify/.git/HEAD",
    ] {
        let m = std::fs::symlink_metadata(sb.path(p)).expect("metadata");
        assert_eq!((m.uid(), m.gid()), (1234, 1234), "{p}");
    }
    assert_eq!(sb.apply().code, 0, "second run: zero changes");
    std::os::unix::fs::lchown(sb.path("/opt/dify"), Some(0), Some(0)).expect("chown");
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "git.dify"), ["owner", "group"]);
    assert_eq!(sb.apply().code, 2);
    let m = std::fs::metadata(sb.path("/opt/dify")).expect("metadata");
    assert_eq!((m.uid(), m.gid()), (1234, 1234));
}

/// The upgrade's false negative: moving the checkout to a tag whose `.env.example` has new keys
/// must not plan the `.env` as in sync. The target commit is in the local object database (a
/// local upstream's fetch brought every tag), so plan reads the new `.env.example` from it and
/// names exactly the keys apply appends.
#[test]
fn a_tag_move_plans_the_keys_the_new_env_example_brings() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    let env_file = "\n[env_file.dify]\npath = \"/opt/dify/docker/.env\"\ncreate_from = \"/opt/dify/docker/.env.example\"\nadd_missing_from = \"/opt/dify/docker/.env.example\"\n";
    sb.write_manifest(&(manifest(&up.url(), "") + env_file));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.plan().code, 0);
    let before = sb.read("/opt/dify/docker/.env");
    let upgrade = ["--var", "dify_version=1.12.1"];
    let plan = sb.tend("plan", &[&upgrade[..], &["--format", "json"]].concat());
    let report = plan.json();
    assert_eq!(resource(&report, "git.dify")["status"], "would_change");
    let env = resource(&report, "env_file.dify");
    assert_eq!(env["status"], "would_change", "{env:#}");
    assert!(
        env["reason"]
            .as_str()
            .expect("reason")
            .contains("checked against /opt/dify/docker/.env.example as git.dify would leave it"),
        "{env:#}"
    );
    let planned = changed_fields(&report, "env_file.dify");
    assert!(!planned.is_empty());
    let apply = sb.tend("apply", &[&upgrade[..], &["--format", "json"]].concat());
    assert_eq!(apply.code, 2);
    // Exactly the keys plan named were appended, nothing else in .env moved.
    assert_eq!(changed_fields(&apply.json(), "env_file.dify"), planned);
    let after = sb.read("/opt/dify/docker/.env");
    assert!(after.starts_with(&before), "nothing else in .env moved");
    for key in &planned {
        assert!(after.contains(&format!("\n{key}=")), "{key} appended");
    }
    assert_eq!(sb.tend("plan", &upgrade).code, 0);
}

/// Across a moving checkout, plan is exact where it can be read: a target commit already in the
/// local object database that holds the same `.env.example` leaves the `.env` in sync (and its
/// refresh unowed); one that holds another is planned against it. Apply does what plan said.
#[test]
fn plan_across_a_moving_checkout_is_exact_where_the_target_can_be_read() {
    let up = Upstream::new();
    let sb = Sandbox::new();
    let env_file = "\n[env_file.dify]\npath = \"/opt/dify/docker/.env\"\ncreate_from = \"/opt/dify/docker/.env.example\"\nadd_missing_from = \"/opt/dify/docker/.env.example\"\nnotify = [\"exec.restart\"]\n[env_file.dify.set]\nEXPOSE_NGINX_PORT = \"127.0.0.1:3000\"\n\n[exec.restart]\ncommand = \"true\"\nrefresh_only = true\n";
    sb.write_manifest(&(manifest(&up.url(), "") + env_file));
    let run = |sub: &str, v: &str, json: bool| {
        let var = format!("dify_version={v}");
        let mut args = vec!["--var", var.as_str()];
        if json {
            args.extend(["--format", "json"]);
        }
        sb.tend(sub, &args)
    };
    assert_eq!(run("apply", "1.12.1", false).code, 2);
    assert_eq!(run("plan", "1.12.1", false).code, 0);

    // main differs from 1.12.1 by the README only, and a local upstream's fetch brought it.
    let plan = run("plan", "main", true);
    let report = plan.json();
    assert_eq!(resource(&report, "git.dify")["status"], "would_change");
    let env = resource(&report, "env_file.dify");
    assert_eq!(env["status"], "in_sync", "{env:#}");
    assert!(resource(&report, "exec.restart")["refresh"].is_null());
    let env_before = sb.read("/opt/dify/docker/.env");
    let apply = run("apply", "main", true);
    let (code, done) = (apply.code, apply.json());
    assert_eq!(code, 2);
    assert_eq!(resource(&done, "env_file.dify")["status"], "in_sync");
    assert!(resource(&done, "exec.restart")["refresh"].is_null());
    assert_eq!(sb.read("/opt/dify/docker/.env"), env_before);

    // Back to 1.11.4 (another .env.example) with a managed key removed by hand: planned against
    // 1.11.4's file, exactly that key; the refresh is certain with it.
    let edited: String = env_before
        .lines()
        .filter(|l| !l.starts_with("EXPOSE_NGINX_PORT="))
        .map(|l| format!("{l}\n"))
        .collect();
    sb.write("/opt/dify/docker/.env", &edited);
    let plan = run("plan", "1.11.4", true);
    let report = plan.json();
    let env = resource(&report, "env_file.dify");
    assert_eq!(env["status"], "would_change", "{env:#}");
    assert_eq!(
        changed_fields(&report, "env_file.dify"),
        ["EXPOSE_NGINX_PORT"]
    );
    assert_eq!(
        resource(&report, "exec.restart")["refresh"]["status"],
        "would_run"
    );

    // Only a key appended from upstream may follow: the refresh only may run.
    sb.write("/opt/dify/docker/.env", &env_before);
    let plan = run("plan", "1.11.4", true);
    let report = plan.json();
    assert_eq!(
        resource(&report, "env_file.dify")["status"],
        "in_sync",
        "1.11.4 adds no key the .env lacks"
    );
    let text = run("plan", "1.11.4", false).stdout;
    assert!(!text.contains("refresh would run"), "{text}");
}
