//! The flagship manifest as shipped: it loads, its graph orders the deployment as production
//! does, and its site renders as nginx-certbot expects.

use tend_tests::{resource, run, Sandbox};

fn manifest() -> String {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../manifests/dify.toml")
        .canonicalize()
        .expect("manifests/dify.toml")
        .display()
        .to_string()
}

#[test]
fn the_dify_graph_orders_the_deployment() {
    let r = run(&["graph", &manifest()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for edge in [
        r#""apt_repo.docker" -> "package.docker";"#,
        r#""git.dify" -> "env_file.dify" [style=dotted, label="path"];"#,
        r#""env_file.dify" -> "compose.dify" [style=dashed, label="notify"];"#,
        r#""git.dify" -> "compose.dify" [style=dotted, label="path"];"#,
        r#""package.docker" -> "service.docker";"#,
        r#""service.docker" -> "compose.dify";"#,
        r#""service.docker" -> "compose.nginx";"#,
        r#""nginx_site.dify" -> "compose.nginx" [style=dashed, label="notify"];"#,
        r#""directory.user_conf" -> "nginx_site.dify" [style=dotted, label="path"];"#,
        r#""compose.dify" -> "compose.nginx";"#,
        r#""compose.nginx" -> "cert.dify";"#,
    ] {
        assert!(r.stdout.contains(edge), "missing {edge} in\n{}", r.stdout);
    }
}

#[test]
fn the_dify_site_renders_for_nginx_certbot() {
    let sb = Sandbox::debian();
    let r = sb.tend_with_manifest(
        &manifest(),
        "plan",
        &[
            "--only",
            "nginx_site.dify",
            "--format",
            "json",
            "--var",
            "server_id=7",
        ],
    );
    let plan = r.json();
    let diff = resource(&plan, "nginx_site.dify")["changes"][0]["diff"]
        .as_str()
        .expect("diff")
        .to_string();
    for line in [
        "+++ b/data/nginx/user_conf.d/dify7.hostkey.in.conf",
        "+    server_name dify7.hostkey.in;",
        "+    http2 on;",
        "+    ssl_certificate_key     /etc/letsencrypt/live/dify7.hostkey.in/privkey.pem;",
        "+    ssl_dhparam /etc/letsencrypt/dhparams/dhparam.pem;",
        "+        root /var/www/letsencrypt;",
        "+        proxy_pass http://127.0.0.1:3000;",
    ] {
        assert!(diff.contains(line), "{line:?} in\n{diff}");
    }
}

/// The proxy half of the Dify deployment with stand-ins (no registry here): a compose stack whose
/// container has nginx, the site checked inside it, the certificate audited in its volume.
#[test]
fn proxy_stack_site_and_certificate_converge_together() {
    use tend_tests::docker::{
        docker, nginx_image, service_ids, unique, volume_mountpoint, Cleanup, Made,
    };
    use tend_tests::pki::certbot_layout;
    use tend_tests::{changed_fields, with_status};

    let image = nginx_image();
    let project = unique("tendp");
    let container = format!("{project}-nginx");
    let volume = format!("{project}_secrets");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        volumes: vec![volume.clone()],
        ..Made::default()
    });
    let sb = Sandbox::debian();
    sb.write(
        "/srv/nginx/compose.yml",
        &format!(
            "version: \"3.8\"\nservices:\n  nginx:\n    image: {image}\n    container_name: {container}\n    stop_signal: SIGKILL\n    volumes:\n      - secrets:/etc/letsencrypt\n      - ./conf:/etc/nginx/user_conf.d\nvolumes:\n  secrets:\n    name: {volume}\n"
        ),
    );
    let manifest = |extra: &str| {
        format!(
            r#"[directory.conf]
path = "/srv/nginx/conf"

[nginx_site.site]
path = "/srv/nginx/conf/p.tend.test.conf"
server_names = ["p.tend.test"]
upstream = "http://127.0.0.1:3000"
tls = {{ cert = "/etc/letsencrypt/live/p.tend.test/fullchain.pem", key = "/etc/letsencrypt/live/p.tend.test/privkey.pem" }}
http2 = "listen"
validate = "container:{container}"
extra = "{extra}"
notify = ["compose.proxy"]

[compose.proxy]
dir = "/srv/nginx"
files = ["compose.yml"]
project = "{project}"
refresh = "restart"

[cert.site]
names = ["p.tend.test"]
volume = "{volume}"
cert = "live/p.tend.test/fullchain.pem"
key = "live/p.tend.test/privkey.pem"
requires = ["compose.proxy"]
"#
        )
    };
    // First boot: no container to check in yet, no certificate yet.
    sb.write_manifest(&manifest("client_body_timeout 30s;"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 6, "changes, and the audit fails: {report:#}");
    assert!(resource(&report, "nginx_site.site")["notes"]
        .to_string()
        .contains("not checked: no container"));
    assert_eq!(
        resource(&report, "cert.site")["observed"]["state"],
        "missing"
    );
    let id = service_ids(&project)["nginx"].clone();

    // nginx-certbot would now obtain the certificate; here openssl writes it into the volume.
    certbot_layout(&volume_mountpoint(&volume), "p.tend.test", 80);
    let plan = sb.plan_json();
    assert_eq!(plan["exit_code"], 0, "{plan:#}");
    assert_eq!(with_status(&plan, "in_sync").len(), 4);

    // A site change is checked inside the running container, then restarts it (same container).
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]);
    sb.write_manifest(&manifest("client_body_timeout 60s;"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let notes = resource(&report, "nginx_site.site")["notes"].to_string();
    assert!(notes.contains("nginx -t accepted it"), "{notes}");
    assert_eq!(
        resource(&report, "compose.proxy")["refresh"]["status"],
        "ran"
    );
    assert_eq!(service_ids(&project)["nginx"], id);
    assert_ne!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]),
        started
    );
    let seen = docker(&[
        "exec",
        &container,
        "cat",
        "/etc/nginx/user_conf.d/p.tend.test.conf",
    ]);
    assert!(
        seen.contains("client_body_timeout 60s;"),
        "the container sees the new file"
    );

    // A broken one is refused inside the container: old file kept, nothing restarted.
    let good = sb.read("/srv/nginx/conf/p.tend.test.conf");
    sb.write_manifest(&manifest("client_body_timeout sixty;"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    let err = resource(&report, "nginx_site.site")["error"]
        .as_str()
        .expect("error");
    assert!(err.contains("client_body_timeout sixty;"), "{err}");
    assert_eq!(sb.read("/srv/nginx/conf/p.tend.test.conf"), good);
    assert!(resource(&report, "compose.proxy")["refresh"].is_null());
    assert_eq!(
        changed_fields(&sb.plan_json(), "nginx_site.site"),
        ["content"]
    );
}

/// Dify's real `docker/` directory at 1.12.1 (shared/fixtures), planned with the compose v2 plugin
/// the suite installs: compose reads the real file (it needs v2.20+), and the plan names the 12
/// services of the default profile (postgresql + weaviate), each to create — and writes nothing.
#[test]
fn the_real_dify_compose_file_plans_its_twelve_services_on_compose_v2() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/dify/tree-1.12.1/docker");
    assert!(
        fixture.is_dir(),
        "{} is missing: the suite runs with the project's shared/ beside it",
        fixture.display()
    );
    let sb = Sandbox::debian();
    let docker = sb.path("/opt/dify/docker");
    std::fs::create_dir_all(sb.path("/opt/dify")).expect("mkdir");
    let copied = std::process::Command::new("cp")
        .args(["-r"])
        .arg(&fixture)
        .arg(sb.path("/opt/dify"))
        .status()
        .expect("cp");
    assert!(copied.success());
    std::fs::copy(docker.join(".env.example"), docker.join(".env")).expect(".env");
    let project = tend_tests::docker::unique("tenddify");
    sb.write_manifest(&format!(
        "[compose.dify]\ndir = \"/opt/dify/docker\"\nproject = \"{project}\"\n"
    ));
    let plan = sb.plan_json();
    let mut services: Vec<String> = tend_tests::changed_fields(&plan, "compose.dify");
    services.sort();
    assert_eq!(
        services,
        [
            "service api",
            "service db_postgres",
            "service init_permissions",
            "service nginx",
            "service plugin_daemon",
            "service redis",
            "service sandbox",
            "service ssrf_proxy",
            "service weaviate",
            "service web",
            "service worker",
            "service worker_beat",
        ],
        "{plan:#}"
    );
    assert_eq!(
        resource(&plan, "compose.dify")["changes"][0]["action"],
        "create"
    );
}

/// The shipped middleware example on Dify's real `docker/` tree: `middleware.env` made from the
/// example the tree ships, then compose run with `--env-file middleware.env` plans exactly the
/// services its `COMPOSE_PROFILES=${DB_TYPE:-postgresql},weaviate` selects, and brings them up
/// with the stand-in images.
#[test]
fn the_middleware_example_brings_up_difys_middleware_from_middleware_env() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/dify/tree-1.12.1/docker");
    let sb = Sandbox::debian();
    std::fs::create_dir_all(sb.path("/opt/dify")).expect("mkdir");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&fixture)
        .arg(sb.path("/opt/dify"))
        .status()
        .expect("cp");
    assert!(copied.success());
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/examples/dify-middleware.toml")
        .display()
        .to_string();
    let env = sb.tend_with_manifest(&example, "apply", &["--only", "env_file.middleware"]);
    assert_eq!(env.code, 2, "{env:?}");
    assert!(sb
        .read("/opt/dify/docker/middleware.env")
        .contains("DB_TYPE=postgresql"));
    let plan = sb.tend_with_manifest(&example, "plan", &["--format", "json"]);
    let plan = plan.json();
    let mut services = tend_tests::changed_fields(&plan, "compose.middleware");
    services.sort();
    assert_eq!(
        services,
        [
            "service db_postgres",
            "service plugin_daemon",
            "service redis",
            "service sandbox",
            "service ssrf_proxy",
            "service weaviate",
        ],
        "{plan:#}"
    );

    // Brought up with the stand-ins, on ports of its own (set in middleware.env, which tend then
    // keeps: only DB_TYPE is managed).
    let standins = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dify-standins"),
    )
    .output()
    .expect("scripts/dify-standins");
    assert!(
        standins.status.success(),
        "{}",
        String::from_utf8_lossy(&standins.stderr)
    );
    let _cleanup = tend_tests::docker::Cleanup(tend_tests::docker::Made {
        projects: vec!["dify".into()],
        ..Default::default()
    });
    let mut env = sb.read("/opt/dify/docker/middleware.env");
    for key in [
        "EXPOSE_POSTGRES_PORT",
        "EXPOSE_MYSQL_PORT",
        "EXPOSE_REDIS_PORT",
        "EXPOSE_SANDBOX_PORT",
        "EXPOSE_SSRF_PROXY_PORT",
        "EXPOSE_WEAVIATE_PORT",
        "EXPOSE_WEAVIATE_GRPC_PORT",
        "EXPOSE_PLUGIN_DAEMON_PORT",
        "EXPOSE_PLUGIN_DEBUGGING_PORT",
    ] {
        let port = format!("{key}=127.0.0.1:{}", tend_tests::pki::free_port());
        env = env
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}=")))
            .chain(std::iter::once(port.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    sb.write("/opt/dify/docker/middleware.env", &env);
    let up = sb.tend_with_manifest(&example, "apply", &[]);
    assert_eq!(up.code, 2, "{up:?}");
    let ids = tend_tests::docker::service_ids("dify");
    let mut running: Vec<&str> = ids.keys().map(String::as_str).collect();
    running.sort_unstable();
    assert_eq!(
        running,
        [
            "db_postgres",
            "plugin_daemon",
            "redis",
            "sandbox",
            "ssrf_proxy",
            "weaviate"
        ]
    );
    assert_eq!(sb.tend_with_manifest(&example, "apply", &[]).code, 0);
}

/// The two switches a host without Docker's repository or GitHub needs: the repository from a
/// variable, and Docker's apt repository and packages left out (the service still managed).
#[test]
fn the_dify_manifest_takes_a_mirror_and_leaves_an_existing_engine_alone() {
    let sb = Sandbox::debian();
    let r = sb.tend_with_manifest(
        &manifest(),
        "plan",
        &[
            "--format",
            "json",
            "--var",
            "docker_from_docker_repo=false",
            "--var",
            "dify_repo=/srv/mirror/dify.git",
        ],
    );
    let plan = r.json();
    let excluded = tend_tests::with_status(&plan, "excluded");
    assert_eq!(excluded, ["apt_repo.docker", "package.docker"], "{plan:#}");
    let git = resource(&plan, "git.dify");
    assert!(
        git["changes"][0]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("clone /srv/mirror/dify.git at 1.12.1"),
        "{git:#}"
    );
    assert_ne!(resource(&plan, "service.docker")["status"], "excluded");
}

/// A local repository shaped like Dify's: `docker/` of each fixture tree, committed and tagged
/// 1.11.4 then 1.12.1, with the ignore rules Dify's own `.gitignore` has for what compose and
/// its containers write into the checkout.
fn dify_repository(dir: &std::path::Path) -> std::path::PathBuf {
    use tend_tests::gitserve::git;
    let repo = dir.join("dify.git");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join(".gitignore"),
        "docker/.env\ndocker/volumes/\ndocker/nginx/conf.d/default.conf\ndocker/middleware.env\n",
    )
    .expect(".gitignore");
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/dify");
    for tag in ["1.11.4", "1.12.1"] {
        let _ = std::fs::remove_dir_all(repo.join("docker"));
        let copied = std::process::Command::new("cp")
            .arg("-r")
            .arg(fixtures.join(format!("tree-{tag}/docker")))
            .arg(&repo)
            .status()
            .expect("cp");
        assert!(copied.success());
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("Dify {tag}")]);
        git(&repo, &["tag", "-a", tag, "-m", tag]);
    }
    repo
}

/// The shipped manifest's Dify half on Dify's real compose file (compose v2), with the stand-in
/// images (`scripts/dify-standins`): a fresh host at 1.11.4 converges in one apply and answers
/// through Dify's own nginx on 127.0.0.1:3000; the next apply changes nothing; the upgrade to
/// 1.12.1 is planned as may-change downstream of the tag move, appends exactly the three new
/// `.env` keys, recreates exactly the services whose image or environment changed and Dify's
/// nginx that depends on them — each named in the report — and answers 1.12.1.
#[test]
fn dify_on_its_real_compose_file_converges_and_upgrades_exactly_what_changed() {
    use tend_tests::docker::{service_ids, Cleanup, Made};
    use tend_tests::pki;
    const DOMAIN: &str = "dify42.hostkey.in";
    let sb = Sandbox::debian();
    // What nginx-certbot would obtain for the domain: a certbot layout, issued by a test CA of
    // its own (as Let's Encrypt issues it), baked into the nginx-certbot stand-in, which copies
    // it into its volume at start. Clients trust the CA, not the certificate.
    let le = sb.dir.path().join("letsencrypt");
    let live = le.join("live").join(DOMAIN);
    let ca_dir = sb.dir.path().join("test-ca");
    std::fs::create_dir_all(&ca_dir).expect("mkdir");
    pki::server_cert_days(&ca_dir, DOMAIN, &format!("DNS:{DOMAIN}"), 90);
    std::fs::create_dir_all(&live).expect("mkdir");
    std::fs::copy(ca_dir.join("key.pem"), live.join("privkey.pem")).expect("privkey");
    std::fs::copy(ca_dir.join("cert.pem"), live.join("cert.pem")).expect("cert");
    std::fs::copy(ca_dir.join("ca.pem"), live.join("chain.pem")).expect("chain");
    let fullchain = [
        std::fs::read_to_string(ca_dir.join("cert.pem")).expect("cert"),
        std::fs::read_to_string(ca_dir.join("ca.pem")).expect("ca"),
    ]
    .concat();
    std::fs::write(live.join("fullchain.pem"), fullchain).expect("fullchain");
    let ca = ca_dir.join("ca.pem");
    std::fs::create_dir_all(le.join("dhparams")).expect("mkdir");
    let dh = std::process::Command::new("openssl")
        .args(["dhparam", "-dsaparam", "-out"])
        .arg(le.join("dhparams/dhparam.pem"))
        .arg("2048")
        .output()
        .expect("openssl dhparam");
    assert!(dh.status.success());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = std::process::Command::new(root.join("scripts/dify-standins"))
        .arg("--certbot-certs")
        .arg(&le)
        .output()
        .expect("scripts/dify-standins");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    // The project names the manifest's stacks get (Dify's own `docker`; `nginx-certbot`).
    let _cleanup = Cleanup(Made {
        projects: vec!["docker".into(), "nginx-certbot".into()],
        volumes: vec!["nginx_secrets".into()],
        ..Made::default()
    });
    let repo = dify_repository(sb.dir.path());
    // docker.service as the package installs it, enabled: what service.docker checks offline.
    sb.write(
        "/lib/systemd/system/docker.service",
        "[Unit]\nDescription=Docker\n[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\n",
    );
    std::fs::create_dir_all(sb.path("/etc/systemd/system/multi-user.target.wants")).expect("mkdir");
    std::os::unix::fs::symlink(
        "/lib/systemd/system/docker.service",
        sb.path("/etc/systemd/system/multi-user.target.wants/docker.service"),
    )
    .expect("symlink");
    // A Debian host with the prerequisites installed (the dpkg database tend reads directly).
    let status: String = ["ca-certificates", "curl", "gnupg", "git"]
        .iter()
        .map(|p| {
            format!(
                "Package: {p}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n"
            )
        })
        .collect();
    sb.write("/var/lib/dpkg/status", &status);
    let repo_var = format!("dify_repo={}", repo.display());
    let run = |sub: &str, version: &str, extra: &[&str]| {
        let version = format!("dify_version={version}");
        let mut args = vec![
            // The stand-in's nginx is Debian 12's (1.22): HTTP/2 on the listen line.
            "--var",
            "nginx_http2=listen",
            "--var",
            &repo_var,
            "--var",
            &version,
            "--var",
            "docker_from_docker_repo=false",
        ];
        args.extend_from_slice(extra);
        sb.tend_with_manifest(&manifest(), sub, &args)
    };
    let get = |path: &str| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                &format!("http://127.0.0.1:3000{path}"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };

    let https = || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--resolve",
                &format!("{DOMAIN}:443:127.0.0.1"),
            ])
            .arg("--cacert")
            .arg(&ca)
            .arg(format!("https://{DOMAIN}/"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };

    // A fresh host: one apply converges the whole manifest (the packages aside: this host has
    // its engine), and the certificate nginx-certbot put in its volume passes the audit.
    let first = run("apply", "1.11.4", &["--format", "json"]);
    assert_eq!(first.code, 2, "{}\n{}", first.stdout, first.stderr);
    let report = first.json();
    assert_eq!(
        resource(&report, "cert.dify")["status"],
        "in_sync",
        "{report:#}"
    );
    // Through both proxies: nginx-certbot (TLS, host network) → 127.0.0.1:3000 → Dify's nginx
    // → web.
    assert_eq!(https(), "dify-web 1.11.4");
    let redirect = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args([
            "--resolve",
            &format!("{DOMAIN}:80:127.0.0.1"),
            &format!("http://{DOMAIN}/"),
        ])
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&redirect.stdout),
        format!("301 https://{DOMAIN}/")
    );
    // Dify's nginx listens on loopback only.
    let ports = tend_tests::docker::docker(&[
        "ps",
        "--filter",
        "label=com.docker.compose.project=docker",
        "--filter",
        "label=com.docker.compose.service=nginx",
        "--format",
        "{{.Ports}}",
    ]);
    assert!(ports.contains("127.0.0.1:3000->80/tcp"), "{ports}");
    assert!(!ports.contains("0.0.0.0:3000"), "{ports}");
    assert_eq!(get("/"), "dify-web 1.11.4");
    assert_eq!(get("/console/api/"), "dify-api 1.11.4");
    let before = service_ids("docker");
    assert_eq!(before.len(), 12, "{before:?}");
    // The next apply is a no-op that runs no program at all: compose's fingerprint fast path,
    // libgit2's status, the dpkg database read directly, enablement read from the unit files.
    let root = sb.root();
    let manifest_path = manifest();
    let (second, programs) = tend_tests::run_counting_programs(&[
        "apply",
        &manifest_path,
        "--root",
        root.to_str().expect("utf8"),
        "--var",
        "nginx_http2=listen",
        "--var",
        &repo_var,
        "--var",
        "dify_version=1.11.4",
        "--var",
        "docker_from_docker_repo=false",
    ]);
    assert_eq!(second.code, 0, "{}", second.stdout);
    assert_eq!(programs, Vec::<String>::new(), "a no-op apply ran programs");
    let env_before = sb.read("/opt/dify/docker/.env");

    // The migration case: an operator edited the compose file in the checkout. The upgrade stops
    // at the checkout, names the file, and loses nothing; nothing after it runs.
    let compose_file = "/opt/dify/docker/docker-compose.yaml";
    let original = sb.read(compose_file);
    let edited = format!("{original}\n# tuned by hand: workers raised\n");
    sb.write(compose_file, &edited);
    let stopped = run("apply", "1.12.1", &["--format", "json"]);
    assert_eq!(stopped.code, 4, "{}", stopped.stdout);
    let report = stopped.json();
    let err = resource(&report, "git.dify")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("docker/docker-compose.yaml"), "{err}");
    assert_eq!(resource(&report, "compose.dify")["status"], "skipped");
    assert_eq!(sb.read(compose_file), edited, "the operator's edit is kept");
    assert_eq!(service_ids("docker"), before, "nothing was recreated");
    sb.write(compose_file, &original);

    // The upgrade, planned: the tag moves. The target commit is in the checkout's object
    // database already (a local upstream's fetch brings every tag), so the .env is planned
    // against 1.12.1's .env.example: exactly the three keys it gains. The stack, which reads
    // that .env, may change once it is written.
    let plan = run("plan", "1.12.1", &["--format", "json"]).json();
    assert_eq!(
        resource(&plan, "git.dify")["status"],
        "would_change",
        "{plan:#}"
    );
    assert_eq!(
        resource(&plan, "env_file.dify")["status"],
        "would_change",
        "{plan:#}"
    );
    assert_eq!(
        tend_tests::changed_fields(&plan, "env_file.dify"),
        [
            "SMTP_LOCAL_HOSTNAME",
            "PLUGIN_MODEL_SCHEMA_CACHE_TTL",
            "SANDBOX_EXPIRED_RECORDS_CLEAN_TASK_LOCK_TTL"
        ]
    );
    assert_eq!(
        resource(&plan, "compose.dify")["status"],
        "may_change",
        "{plan:#}"
    );
    let upgrade = run("apply", "1.12.1", &["--format", "json"]);
    assert_eq!(upgrade.code, 2, "{}", upgrade.stdout);

    // Exactly the three new keys, appended; nothing else in .env moved.
    let env_after = sb.read("/opt/dify/docker/.env");
    assert!(
        env_after.starts_with(&env_before),
        "lines before the new keys changed"
    );
    let added: Vec<&str> = env_after[env_before.len()..]
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(
        added,
        [
            "SMTP_LOCAL_HOSTNAME",
            "PLUGIN_MODEL_SCHEMA_CACHE_TTL",
            "SANDBOX_EXPIRED_RECORDS_CLEAN_TASK_LOCK_TTL"
        ]
    );
    // Exactly the services whose image or environment changed are new containers, and Dify's
    // nginx, which compose recreates because api and web are (it resolved them at its start):
    // the report named each before compose did it.
    let after = service_ids("docker");
    let mut recreated: Vec<&str> = after
        .iter()
        .filter(|(s, id)| before.get(*s) != Some(id))
        .map(|(s, _)| s.as_str())
        .collect();
    recreated.sort_unstable();
    let expected = [
        "api",
        "nginx",
        "plugin_daemon",
        "web",
        "worker",
        "worker_beat",
    ];
    assert_eq!(recreated, expected, "{}", upgrade.stdout);
    let mut named = tend_tests::changed_fields(&upgrade.json(), "compose.dify");
    named.sort();
    let expected_fields: Vec<String> = expected.iter().map(|s| format!("service {s}")).collect();
    assert_eq!(named, expected_fields);
    assert_eq!(get("/"), "dify-web 1.12.1");
    assert_eq!(get("/console/api/"), "dify-api 1.12.1");
    assert_eq!(https(), "dify-web 1.12.1");
    assert_eq!(run("apply", "1.12.1", &[]).code, 0);

    // Drift on the running stack, made by hand: a stopped container, a managed `.env` key, the
    // site. Plan names exactly those; apply repairs them; HTTPS answers again.
    tend_tests::docker::docker(&["stop", "-t", "1", &after["worker"]]);
    let env_path = "/opt/dify/docker/.env";
    let env = sb.read(env_path).replace(
        "EXPOSE_NGINX_PORT=127.0.0.1:3000",
        "EXPOSE_NGINX_PORT=127.0.0.1:3001",
    );
    sb.write(env_path, &env);
    let site = format!("/data/nginx/user_conf.d/{DOMAIN}.conf");
    let site_text = sb.read(&site);
    sb.write(&site, &format!("{site_text}# edited by hand\n"));
    let plan = run("plan", "1.12.1", &["--format", "json"]).json();
    assert_eq!(
        tend_tests::with_status(&plan, "would_change"),
        ["env_file.dify", "nginx_site.dify", "compose.dify"],
        "{plan:#}"
    );
    assert_eq!(
        tend_tests::changed_fields(&plan, "env_file.dify"),
        ["EXPOSE_NGINX_PORT"]
    );
    assert_eq!(
        tend_tests::changed_fields(&plan, "nginx_site.dify"),
        ["content"]
    );
    // The stack reads the edited .env, which env_file.dify restores first: it is checked
    // against the .env as apply will leave it, so plan names the stopped worker alone, not the
    // recreations the edited file would cause.
    let stack = resource(&plan, "compose.dify");
    assert_eq!(
        tend_tests::changed_fields(&plan, "compose.dify"),
        ["service worker"],
        "{stack:#}"
    );
    assert!(
        stack["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("checked against /opt/dify/docker/.env as env_file.dify would leave it"),
        "{stack:#}"
    );
    let repair = run("apply", "1.12.1", &[]);
    assert_eq!(repair.code, 2, "{}", repair.stdout);
    assert_eq!(https(), "dify-web 1.12.1");
    assert_eq!(run("plan", "1.12.1", &[]).code, 0);

    // Controls: Dify's nginx restarted by hand, and every managed file touched (mtime only):
    // no drift.
    let settled = service_ids("docker");
    tend_tests::docker::docker(&["restart", "-t", "1", &settled["nginx"]]);
    for f in [env_path, site.as_str()] {
        let status = std::process::Command::new("touch")
            .arg(sb.path(f))
            .status()
            .expect("touch");
        assert!(status.success());
    }
    assert_eq!(
        run("plan", "1.12.1", &[]).code,
        0,
        "a restart or a touch is no drift"
    );

    // The hazard docs/dify.md names: `LOG_LEVEL=DEBUG docker compose up -d` typed by hand. The
    // containers now run an environment the manifest does not say: plan names the services
    // (their configuration is not the last converge's), changing no container; apply recreates
    // exactly those from the files; HTTPS answers; the next plan is clean.
    let dir = sb.path("/opt/dify/docker");
    let by_hand = std::process::Command::new("docker")
        .args(["compose", "-p", "docker", "--project-directory"])
        .arg(&dir)
        .args(["up", "-d", "--no-deps", "api", "worker"])
        .env("LOG_LEVEL", "DEBUG")
        .output()
        .expect("docker compose");
    assert!(
        by_hand.status.success(),
        "{}",
        String::from_utf8_lossy(&by_hand.stderr)
    );
    let debug = service_ids("docker");
    assert_ne!(
        debug["api"], settled["api"],
        "compose recreated api by hand"
    );
    let plan = run("plan", "1.12.1", &["--format", "json"]).json();
    let said: Vec<String> = resource(&plan, "compose.dify")["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["description"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        tend_tests::changed_fields(&plan, "compose.dify"),
        ["service api", "service worker"],
        "{said:?}"
    );
    // Which variables, never their values.
    assert_eq!(
        said,
        [
            "service api: environment differs from the last converge (LOG_LEVEL) → recreate from the compose file",
            "service worker: environment differs from the last converge (LOG_LEVEL) → recreate from the compose file"
        ],
    );
    assert!(!said.iter().any(|d| d.contains("DEBUG")));
    assert_eq!(service_ids("docker"), debug, "plan changed no container");
    let fixed = run("apply", "1.12.1", &["--format", "json"]);
    assert_eq!(fixed.code, 2, "{}", fixed.stdout);
    let after = service_ids("docker");
    assert_ne!(after["api"], debug["api"], "api recreated from the files");
    assert_ne!(
        after["worker"], debug["worker"],
        "worker recreated from the files"
    );
    for s in ["web", "db_postgres", "redis", "sandbox", "weaviate"] {
        assert_eq!(after.get(s), settled.get(s), "{s} kept its container");
    }
    let env = tend_tests::docker::docker(&["inspect", "-f", "{{json .Config.Env}}", &after["api"]]);
    assert!(!env.contains("LOG_LEVEL=DEBUG"), "{env}");
    assert_eq!(https(), "dify-web 1.12.1");
    assert_eq!(run("plan", "1.12.1", &[]).code, 0);

    // Three more hands on the running stack, each planned as exactly that service and what
    // differs (no container changed by the plan), repaired by apply touching nothing else, with
    // HTTPS answering after and the next plan clean.
    let compose_by_hand = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(["compose", "-p", "docker", "--project-directory"])
            .arg(&dir)
            .args(args)
            .output()
            .expect("docker compose");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let descriptions = |plan: &serde_json::Value| -> Vec<String> {
        resource(plan, "compose.dify")["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| c["description"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let settled = service_ids("docker");
    let worker_ids = || {
        tend_tests::docker::docker(&[
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.compose.project=docker",
            "--filter",
            "label=com.docker.compose.service=worker",
        ])
        .lines()
        .count()
    };
    type Event<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let events: [Event; 3] = [
        (
            "web paused",
            Box::new(|| {
                tend_tests::docker::docker(&["pause", &settled["web"]]);
            }),
            "service web: paused → unpause",
        ),
        (
            "worker scaled to 2",
            Box::new(|| compose_by_hand(&["up", "-d", "--scale", "worker=2"])),
            "service worker: 2 containers, compose file says 1",
        ),
        (
            "web disconnected from its network",
            Box::new(|| {
                tend_tests::docker::docker(&[
                    "network",
                    "disconnect",
                    "docker_default",
                    &settled["web"],
                ]);
            }),
            "service web: not attached to docker_default → recreate from the compose file",
        ),
    ];
    for (event, make, expected) in events {
        make();
        let touched = service_ids("docker");
        let plan = run("plan", "1.12.1", &["--format", "json"]).json();
        assert_eq!(plan["exit_code"], 2, "{event}: {plan:#}");
        assert_eq!(descriptions(&plan), [expected], "{event}");
        assert_eq!(
            service_ids("docker"),
            touched,
            "{event}: plan changed no container"
        );
        let fixed = run("apply", "1.12.1", &["--format", "json"]);
        assert_eq!(fixed.code, 2, "{event}: {}", fixed.stdout);
        let now = service_ids("docker");
        for (s, id) in &settled {
            if s != "web" || !expected.contains("recreate") {
                assert_eq!(now.get(s), Some(id), "{event}: {s} kept its container");
            }
        }
        assert_eq!(worker_ids(), 1, "{event}: one worker");
        assert_eq!(https(), "dify-web 1.12.1", "{event}");
        assert_eq!(run("plan", "1.12.1", &[]).code, 0, "{event}: clean after");
    }
}
