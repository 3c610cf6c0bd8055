//! `tend pull` against real repositories: commits signed by git itself (`gpg.format = ssh`) with
//! keys made by `ssh-keygen`, served by path and by `git daemon` on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use tend_tests::gitserve::{git, GitDaemon};
use tend_tests::signed::keygen;
use tend_tests::{plan_watch, run, Run, Sandbox};

/// A policy repository, an operator's signing key, a key nobody allowed, and the allowed
/// signers file that names the first.
struct Policy {
    signed: tend_tests::signed::SignedRepo,
}

#[derive(Clone, Copy)]
enum Sign {
    Ops,
    Stranger,
    Unsigned,
}

impl Policy {
    fn new() -> Policy {
        let signed = tend_tests::signed::SignedRepo::new();
        keygen(&signed.dir.path().join("stranger"), "stranger");
        // A comment in the allowed signers file, as operators write them.
        let allowed = signed.dir.path().join("allowed_signers");
        let text = std::fs::read_to_string(&allowed).expect("allowed_signers");
        std::fs::write(&allowed, format!("# who may sign policy\n{text}")).expect("write");
        Policy { signed }
    }

    fn dir(&self) -> &Path {
        self.signed.dir.path()
    }

    fn repo(&self) -> PathBuf {
        self.signed.repo()
    }

    fn allowed(&self) -> String {
        self.dir().join("allowed_signers").display().to_string()
    }

    /// Commit `motd` as the manifest's content; the new commit's id.
    fn commit(&self, motd: &str, message: &str, sign: Sign) -> String {
        let repo = self.repo();
        std::fs::write(
            repo.join("manifest.toml"),
            format!("[file.motd]\npath = \"/etc/motd\"\ncontent = \"{motd}\\n\"\n"),
        )
        .expect("manifest");
        git(&repo, &["add", "manifest.toml"]);
        let key = match sign {
            Sign::Ops => Some(self.dir().join("ops.pub")),
            Sign::Stranger => Some(self.dir().join("stranger.pub")),
            Sign::Unsigned => None,
        };
        match key {
            Some(k) => git(
                &repo,
                &[
                    "-c",
                    &format!("user.signingkey={}", k.display()),
                    "commit",
                    "-q",
                    "-S",
                    "-m",
                    message,
                ],
            ),
            None => git(&repo, &["commit", "-q", "--no-gpg-sign", "-m", message]),
        };
        git(&repo, &["rev-parse", "HEAD"])
    }
}

/// `tend pull --url URL --allowed-signers F --root ROOT ARGS` (no /etc/tend/pull.toml), with
/// `TEND_NOW` when given.
fn pull(sb: &Sandbox, url: &str, allowed: &str, args: &[&str], now: Option<u64>) -> Run {
    let root = sb.root();
    let mut all = vec![
        "pull",
        "--url",
        url,
        "--allowed-signers",
        allowed,
        "--root",
        root.to_str().expect("utf8"),
        "--config",
        "/nonexistent/pull.toml",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let now = now.map(|n| n.to_string());
    let env: Vec<(&str, &str)> = now.iter().map(|n| ("TEND_NOW", n.as_str())).collect();
    run(&all, &env)
}

fn pulled(r: &Run) -> serde_json::Value {
    r.json()["pull"].clone()
}

#[test]
fn signed_commits_apply_and_unsigned_foreign_or_replayed_ones_are_refused() {
    let p = Policy::new();
    let sb = Sandbox::debian();
    let url = p.repo().display().to_string();
    let allowed = p.allowed();

    let v1 = p.commit("v1", "first policy", Sign::Ops);
    let first = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(first.code, 2, "{first:?}");
    assert_eq!(sb.read("/etc/motd"), "v1\n");
    let status = pulled(&first);
    assert_eq!(status["applied"]["commit"], v1.as_str());
    assert_eq!(status["applied"]["signer"], "ops@example.com");
    // Nothing changed upstream: no object crosses the wire, nothing to do.
    let again = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(pulled(&again)["fetched_bytes"], 0);

    // Unsigned: refused, named; the last verified commit is still converged (a hand edit is
    // repaired from it), and the failure bit says something is wrong.
    let v2 = p.commit("v2", "unsigned change", Sign::Unsigned);
    sb.write("/etc/motd", "edited by hand\n");
    let refused = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(refused.code, 6, "{refused:?}");
    assert_eq!(sb.read("/etc/motd"), "v1\n");
    let status = pulled(&refused);
    assert_eq!(status["refused"]["commit"], v2.as_str());
    assert_eq!(status["refused"]["reason"], "it is not signed");
    assert_eq!(status["applied"]["commit"], v1.as_str());
    assert!(
        refused
            .stderr
            .contains(&format!("refused commit {}", &v2[..12])),
        "{}",
        refused.stderr
    );

    // Signed by a key nobody allowed: refused, with its fingerprint.
    let v3 = p.commit("v3", "stranger", Sign::Stranger);
    let stranger = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(stranger.code, 4, "{stranger:?}");
    let reason = pulled(&stranger)["refused"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        reason.contains("the allowed signers file does not list its key"),
        "{reason}"
    );
    assert_eq!(pulled(&stranger)["refused"]["commit"], v3.as_str());

    // Signed again by ops: applied.
    let v4 = p.commit("v4", "fixed", Sign::Ops);
    let ok = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(ok.code, 2, "{ok:?}");
    assert_eq!(sb.read("/etc/motd"), "v4\n");
    assert_eq!(pulled(&ok)["applied"]["commit"], v4.as_str());

    // The branch forced back to the old signed v1: a replay, refused; accepted only when asked.
    git(&p.repo(), &["reset", "-q", "--hard", &v1]);
    let replay = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(replay.code, 4, "{replay:?}");
    let reason = pulled(&replay)["refused"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        reason.contains(&format!("does not descend from {v4}")),
        "{reason}"
    );
    assert_eq!(sb.read("/etc/motd"), "v4\n");
    let rollback = pull(&sb, &url, &allowed, &["--allow-rollback"], None);
    assert_eq!(rollback.code, 2, "{rollback:?}");
    assert_eq!(sb.read("/etc/motd"), "v1\n");

    // Without a policy applied before, nothing verified: the run cannot start, and says why.
    let fresh = Sandbox::debian();
    p.commit("v5", "unsigned again", Sign::Unsigned);
    let none = pull(&fresh, &url, &allowed, &[], None);
    assert_eq!(none.code, 1, "{none:?}");
    assert!(
        none.stderr.contains("no verified policy to converge to"),
        "{}",
        none.stderr
    );
    assert!(!fresh.path("/etc/motd").exists());
    // A mistyped local path says so (libgit2 alone would say "unsupported URL protocol").
    let typo = pull(&fresh, "/srv/no/such/policy.git", &allowed, &[], None);
    assert_eq!(typo.code, 1);
    assert!(
        typo.stderr
            .contains("cannot fetch main from /srv/no/such/policy.git: no repository at this path"),
        "{}",
        typo.stderr
    );
}

#[test]
fn an_unreachable_server_keeps_the_last_good_policy_and_reports_its_age() {
    let p = Policy::new();
    let mut daemon = GitDaemon::serve(p.dir());
    let url = daemon.url("policy.git");
    let sb = Sandbox::debian();
    let metrics = sb.root().join("metrics.prom");
    let metrics_arg = metrics.display().to_string();
    let t0 = 1_800_000_000;
    let v1 = p.commit("v1", "first", Sign::Ops);
    let first = pull(
        &sb,
        &url,
        &p.allowed(),
        &["--metrics", &metrics_arg],
        Some(t0),
    );
    assert_eq!(first.code, 2, "{first:?}");

    daemon.stop();
    sb.write("/etc/motd", "drifted\n");
    let stale = pull(
        &sb,
        &url,
        &p.allowed(),
        &["--metrics", &metrics_arg],
        Some(t0 + 3600),
    );
    assert_eq!(stale.code, 6, "{stale:?}");
    assert_eq!(sb.read("/etc/motd"), "v1\n");
    let status = pulled(&stale);
    assert_eq!(status["stale"], true);
    assert_eq!(status["policy_age_seconds"], 3600);
    assert_eq!(status["applied"]["commit"], v1.as_str());
    assert!(
        stale.stderr.contains("last reached 3600 s ago"),
        "{}",
        stale.stderr
    );

    let text = std::fs::read_to_string(&metrics).expect("metrics");
    for line in [
        "tend_pull_fetch_success{mode=\"apply\"} 0",
        "tend_pull_policy_age_seconds{mode=\"apply\"} 3600",
        &format!("tend_pull_commit_info{{mode=\"apply\",role=\"applied\",commit=\"{v1}\"}} 1"),
        "tend_pull_verification_failed{mode=\"apply\"} 0",
        "tend_resource_status{mode=\"apply\",resource=\"file.motd\",kind=\"file\",status=\"changed\"} 1",
        "tend_last_failure_reason{mode=\"apply\",reason_class=\"pull_unreachable\"} 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics).expect("open"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn a_staged_rollout_waits_per_host_and_an_immediate_trailer_skips_the_wait() {
    let p = Policy::new();
    let url = p.repo().display().to_string();
    let allowed = p.allowed();
    let early = Sandbox::debian();
    let late = Sandbox::debian();
    let window = ["--rollout-window", "1h"];
    let at = |sb: &Sandbox, offset: &str, now: u64| {
        let mut args = window.to_vec();
        args.extend(["--rollout-offset", offset]);
        pull(sb, &url, &allowed, &args, Some(now))
    };
    let t0 = 1_800_000_000;
    p.commit("v1", "first", Sign::Ops);
    // A host with no policy yet takes the current one at once.
    assert_eq!(at(&early, "0s", t0).code, 2);
    assert_eq!(at(&late, "50m", t0).code, 2);

    let v2 = p.commit("v2", "gradual change", Sign::Ops);
    let t1 = t0 + 600;
    assert_eq!(at(&early, "0s", t1).code, 2);
    assert_eq!(early.read("/etc/motd"), "v2\n");
    let waiting = at(&late, "50m", t1);
    assert_eq!(waiting.code, 0, "{waiting:?}");
    assert_eq!(late.read("/etc/motd"), "v1\n");
    let pending = &pulled(&waiting)["pending"];
    assert_eq!(pending["commit"], v2.as_str());
    assert_eq!(pending["eligible_at_unix"], t1 + 3000);
    assert_eq!(pending["eligible_in_seconds"], 3000);

    // A plan says the same and writes nothing on the host (only the fetch cache).
    let root = late.root();
    let state = late.root().join("var/lib/tend/pull");
    let now = (t1 + 10).to_string();
    let args = [
        "pull",
        "--plan",
        "--url",
        &url,
        "--allowed-signers",
        &allowed,
        "--root",
        root.to_str().expect("utf8"),
        "--config",
        "/nonexistent/pull.toml",
        "--rollout-window",
        "1h",
        "--rollout-offset",
        "50m",
        "--format",
        "json",
    ];
    let (out, violations) = plan_watch::run(
        &tend_tests::tend_bin(),
        &args,
        &[
            ("TEND_NOW", now.as_str()),
            (plan_watch::ALLOW, state.to_str().expect("utf8")),
        ],
    );
    assert!(
        violations.is_empty(),
        "pull --plan wrote:\n{}",
        violations.join("\n")
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["pull"]["pending"]["commit"], v2.as_str());
    assert_eq!(report["exit_code"], 0);

    assert_eq!(at(&late, "50m", t1 + 2999).code, 0);
    assert_eq!(late.read("/etc/motd"), "v1\n");
    assert_eq!(at(&late, "50m", t1 + 3000).code, 2);
    assert_eq!(late.read("/etc/motd"), "v2\n");

    // The urgent fix: eligible everywhere at once.
    let repo = p.repo();
    std::fs::write(
        repo.join("manifest.toml"),
        "[file.motd]\npath = \"/etc/motd\"\ncontent = \"v3\\n\"\n",
    )
    .expect("manifest");
    let key = p.dir().join("ops.pub").display().to_string();
    git(&repo, &["add", "manifest.toml"]);
    git(
        &repo,
        &[
            "-c",
            &format!("user.signingkey={key}"),
            "commit",
            "-q",
            "-S",
            "-m",
            "revert the bad change",
            "-m",
            "Tend-Rollout: immediate",
        ],
    );
    let t2 = t1 + 3100;
    assert_eq!(at(&early, "0s", t2).code, 2);
    assert_eq!(at(&late, "50m", t2).code, 2);
    assert_eq!(late.read("/etc/motd"), "v3\n");
}

#[test]
fn the_config_file_gives_defaults_and_must_be_trusted() {
    let p = Policy::new();
    p.commit("v1", "first", Sign::Ops);
    let sb = Sandbox::debian();
    let config = sb.root().join("pull.toml");
    std::fs::write(
        &config,
        format!(
            "url = \"{}\"\nallowed_signers = \"{}\"\n",
            p.repo().display(),
            p.allowed()
        ),
    )
    .expect("config");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let root = sb.root();
    let args = [
        "pull",
        "--root",
        root.to_str().expect("utf8"),
        "--config",
        config.to_str().expect("utf8"),
    ];
    let r = run(&args, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(sb.read("/etc/motd"), "v1\n");
    // Others could add their key to the allowed signers: refused, and the run's records say it
    // could not start (not the last good run's figures).
    let signers = p.allowed();
    std::fs::set_permissions(&signers, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let metrics = sb.root().join("tend.prom");
    let metrics = metrics.to_str().expect("utf8");
    let mut with_metrics = args.to_vec();
    with_metrics.extend(["--metrics", metrics]);
    let r = run(&with_metrics, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("nobody else can write"), "{}", r.stderr);
    let text = std::fs::read_to_string(metrics).expect("metrics written");
    assert!(
        text.contains("tend_last_run_started{mode=\"apply\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("tend_last_run_exit_code{mode=\"apply\"} 1"),
        "{text}"
    );
    std::fs::set_permissions(&signers, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // Others could change where policy comes from: refused.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let r = run(&args, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("nobody else can write"), "{}", r.stderr);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&config, "url = \"x\"\nbranch = \"main\"\n").expect("config");
    let r = run(&args, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unknown field `branch`"), "{}", r.stderr);
}

/// The alert rules shipped in docs/fleet pass the real promtool (`check rules`, and their unit
/// tests with `test rules`), and every query of the Grafana dashboard parses as PromQL.
#[test]
fn the_fleet_alert_rules_and_dashboard_pass_promtool() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fleet");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&docs)
            .output()
            .expect("promtool (Debian package prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(docs.join("dashboard.json")).expect("dashboard.json"),
    )
    .expect("dashboard.json is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    // promtool parses expressions in rule files: each query as a recording rule.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(e).expect("quote")
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).expect("write");
    let out = Command::new("promtool")
        .args(["check", "rules", "dashboard.yml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A policy tree is files only: a symlink in a signed commit (it could lead the manifest's
/// templates outside the commit) is refused, and nothing is applied.
#[test]
fn a_symlink_in_the_policy_tree_is_refused() {
    let p = Policy::new();
    let repo = p.repo();
    std::os::unix::fs::symlink("/etc", repo.join("templates")).expect("symlink");
    git(&repo, &["add", "templates"]);
    let c = p.commit("v1", "a tree with a link", Sign::Ops);
    let sb = Sandbox::debian();
    let r = pull(&sb, &repo.display().to_string(), &p.allowed(), &[], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "commit {c}: templates is a symlink; tend pull does not follow links"
        )),
        "{}",
        r.stderr
    );
    assert!(!sb.path("/etc/motd").exists());
}

/// With no allowed signers, pull refuses to start rather than run whatever the server sends;
/// `--insecure-unsigned` runs it, and says so in the output, the report and the metrics.
#[test]
fn without_allowed_signers_pull_refuses_unless_told_to_run_unverified_policy() {
    let p = Policy::new();
    p.commit("v1", "unsigned policy", Sign::Unsigned);
    let sb = Sandbox::debian();
    let root = sb.root();
    let url = p.repo().display().to_string();
    let base = [
        "pull",
        "--url",
        url.as_str(),
        "--root",
        root.to_str().expect("utf8"),
        "--config",
        "/nonexistent/pull.toml",
    ];
    let refused = run(&base, &[]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("no allowed signers")
            && refused.stderr.contains("--insecure-unsigned"),
        "{}",
        refused.stderr
    );
    assert!(!sb.path("/etc/motd").exists(), "nothing ran");
    let metrics = root.join("tend.prom");
    let metrics = metrics.to_str().expect("utf8");
    let insecure = run(
        &[
            &base[..],
            &[
                "--insecure-unsigned",
                "--format",
                "json",
                "--metrics",
                metrics,
            ],
        ]
        .concat(),
        &[],
    );
    assert_eq!(insecure.code, 2, "{insecure:?}");
    assert!(
        insecure
            .stderr
            .contains("warning: policy signatures are not verified"),
        "{}",
        insecure.stderr
    );
    assert_eq!(pulled(&insecure)["unverified"], true);
    let text = std::fs::read_to_string(metrics).expect("metrics");
    assert!(text.contains("tend_pull_unverified 1"), "{text}");
    assert_eq!(sb.read("/etc/motd"), "v1\n");
}

/// A server that accepts the connection and never answers: the fetch gives up after
/// `--fetch-timeout`, and the run says the server was not reached.
#[test]
fn a_server_that_never_answers_times_out() {
    let p = Policy::new();
    let sb = Sandbox::debian();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and hold every connection without a byte in answer.
    let _held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().flatten() {
            conns.push(c);
        }
    });
    let url = format!("git://127.0.0.1:{port}/policy.git");
    let started = std::time::Instant::now();
    let r = pull(&sb, &url, &p.allowed(), &["--fetch-timeout", "2s"], None);
    let took = started.elapsed();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot fetch main"), "{}", r.stderr);
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
}

/// A delta bomb: a pack of a few kilobytes whose one delta inflates to 1.5 GiB, sent before
/// anything can be verified. The fetch's memory budget stops it at once, the run says so, and
/// nothing is applied.
#[test]
fn a_delta_bomb_is_stopped_by_the_fetch_budget_before_it_inflates() {
    let p = Policy::new();
    let sb = Sandbox::debian();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/delta_bomb_server.py");
    let mut server = std::process::Command::new("python3")
        .arg(&script)
        .arg((3u64 << 29).to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
        &mut port,
    )
    .expect("port");
    let url = format!("git://127.0.0.1:{}/policy.git", port.trim());
    let r = pull(&sb, &url, &p.allowed(), &[], None);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("inflates past the fetch's memory budget"),
        "{}",
        r.stderr
    );
    assert!(!sb.path("/etc/motd").exists());
}

/// The allowed signers file in a directory a user owns is refused: the user could swap it for
/// a file of theirs (or a hard link to any file root can read) between two runs.
#[test]
fn allowed_signers_in_a_users_directory_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let p = Policy::new();
    p.commit("v1", "first", Sign::Ops);
    let sb = Sandbox::debian();
    let users = sb.dir.path().join("home");
    std::fs::create_dir(&users).expect("mkdir");
    std::fs::copy(p.allowed(), users.join("allowed_signers")).expect("copy");
    std::fs::set_permissions(
        users.join("allowed_signers"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    std::os::unix::fs::chown(&users, Some(65534), Some(65534)).expect("chown");
    let signers = users.join("allowed_signers").display().to_string();
    let url = p.repo().display().to_string();
    let r = pull(&sb, &url, &signers, &[], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("is owned by uid 65534") && r.stderr.contains("whom tend trusts"),
        "{}",
        r.stderr
    );
    assert!(!sb.path("/etc/motd").exists());
}

/// A signature binds a commit, not the branch it is served as: a signed commit whose
/// `Tend-Ref` trailer names another branch is refused; with `--require-ref-trailer` so is one
/// that names none. The report and metrics carry the applied commit's own time.
#[test]
fn a_signed_commit_bound_to_another_ref_is_refused() {
    let p = Policy::new();
    let sb = Sandbox::debian();
    let url = p.repo().display().to_string();
    let allowed = p.allowed();
    let v1 = p.commit("v1", "first\n\nTend-Ref: main", Sign::Ops);
    let first = pull(&sb, &url, &allowed, &["--require-ref-trailer"], None);
    assert_eq!(first.code, 2, "{first:?}");
    let applied = &pulled(&first)["applied"];
    assert_eq!(applied["commit"], v1.as_str());
    assert!(applied["committed_unix"].as_i64().unwrap_or(0) > 1_600_000_000);
    // Signed on a work-in-progress branch, then served as main.
    let wip = p.commit("wip", "experiment\n\nTend-Ref: wip", Sign::Ops);
    let r = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(pulled(&r)["refused"]["commit"], wip.as_str());
    let reason = pulled(&r)["refused"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("signed for ref \"wip\""), "{reason}");
    assert_eq!(sb.read("/etc/motd"), "v1\n");
    // No trailer at all: accepted, unless the host requires one.
    let bare = p.commit("v2", "no trailer", Sign::Ops);
    let r = pull(&sb, &url, &allowed, &["--require-ref-trailer"], None);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(pulled(&r)["refused"]["commit"], bare.as_str());
    let r = pull(&sb, &url, &allowed, &[], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(sb.read("/etc/motd"), "v2\n");
}

/// A signed policy repository holding the reference fleet policy (modules, data layers per
/// host and role): pulled by two hosts of different roles, each converges its own share.
#[test]
fn a_signed_policy_with_modules_and_data_layers_converges_each_role() {
    let p = Policy::new();
    let repo = p.repo();
    let fleet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/fleet");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", fleet.display()))
        .arg(&repo)
        .status()
        .expect("cp");
    assert!(copy.success());
    git(&repo, &["add", "-A"]);
    let key = format!("user.signingkey={}", p.dir().join("ops.pub").display());
    git(
        &repo,
        &["-c", &key, "commit", "-q", "-S", "-m", "the fleet policy"],
    );
    let host = |role: &str, name: &str| {
        let sb = Sandbox::new();
        std::fs::create_dir_all(sb.path("/etc/skel")).expect("mkdir");
        std::fs::create_dir_all(sb.path("/home")).expect("mkdir");
        std::fs::create_dir_all(sb.path("/etc/ssh/sshd_config.d")).expect("mkdir");
        for f in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
            std::fs::copy(format!("/etc/{f}"), sb.path(&format!("/etc/{f}"))).expect("copy");
        }
        sb.write("/etc/hostname", &format!("{name}\n"));
        sb.write(
            "/etc/tend/facts.d/role.toml",
            &format!("role = \"{role}\"\n"),
        );
        sb
    };
    let url = repo.display().to_string();
    let web = host("web", "web1");
    let r = pull(&web, &url, &p.allowed(), &[], None);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(web
        .path("/etc/nginx/sites-enabled/www.example.com.conf")
        .exists());
    assert!(web.read("/etc/motd").starts_with("Web server"));
    let db = host("db", "db1");
    let r = pull(&db, &url, &p.allowed(), &[], None);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        !db.path("/etc/nginx/sites-enabled").exists(),
        "no vhost on a db host"
    );
    assert!(db.read("/etc/motd").starts_with("Database server"));
    assert!(db
        .read("/etc/sysctl.d/60-tend-baseline-setting-vm.swappiness.conf")
        .ends_with("vm.swappiness = 1\n"));
    // Each converged: a second pull changes nothing.
    assert_eq!(pull(&web, &url, &p.allowed(), &[], None).code, 0);
    assert_eq!(pull(&db, &url, &p.allowed(), &[], None).code, 0);
}
