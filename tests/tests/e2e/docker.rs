//! Docker kinds against the real engine (dockerd from Debian's docker.io, compose v2 — the
//! production flavour, which scripts/test installs — or v1 when v2 is absent),
//! with the local busybox image only: nothing pulls. Every test uses unique names and removes
//! what it made, even when it fails.

use tend_tests::docker::{
    compose_spy, docker, docker_quiet, service_ids, test_image, unique, Cleanup, Made,
};
use tend_tests::{changed_fields, resource, with_status, Sandbox};

/// Three services: one with a healthcheck, one reading `GREETING` from `.env`, one idle; and a
/// one-shot `init` that `web` waits for (as Dify's `init_permissions`), converged once exited 0.
/// SIGKILL stops them at once (a shell as PID 1 ignores SIGTERM; compose would wait 10 s).
fn stack(image: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  init:
    image: {image}
    command: ["true"]
    restart: "no"
  web:
    depends_on:
      init:
        condition: service_completed_successfully
    image: {image}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      retries: 3
  worker:
    image: {image}
    command: ["sh", "-c", "echo hello $$GREETING; sleep 3600"]
    stop_signal: SIGKILL
    environment:
      GREETING: ${{GREETING}}
  idle:
    image: {image}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"#
    )
}

/// A project of one service, `proxy`, in /srv/proxy running `sh -c COMMAND` (`extra`: more YAML
/// under the service); returns the manifest for a content: a `file.site` at `site` that notifies
/// `compose.proxy`, whose notification does `refresh`.
fn notified_proxy(
    sb: &Sandbox,
    project: &str,
    command: &str,
    extra: &str,
    site: &str,
    refresh: &str,
) -> impl Fn(&str) -> String {
    let image = test_image();
    let command = command.replace('"', "\\\"");
    sb.write(
        "/srv/proxy/docker-compose.yml",
        &format!(
            "version: \"3.8\"\nservices:\n  proxy:\n    image: {image}\n    command: [\"sh\", \"-c\", \"{command}\"]\n    stop_signal: SIGKILL\n{extra}"
        ),
    );
    let (project, site, refresh) = (project.to_string(), site.to_string(), refresh.to_string());
    move |content: &str| {
        format!(
            "[file.site]\npath = \"{site}\"\ncontent = \"{content}\\n\"\nnotify = [\"compose.proxy\"]\n\n[compose.proxy]\ndir = \"/srv/proxy\"\nproject = \"{project}\"\nrefresh = \"{refresh}\"\n"
        )
    }
}

fn change_descriptions(report: &serde_json::Value, address: &str) -> Vec<String> {
    resource(report, address)["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["description"].as_str().expect("description").to_string())
        .collect()
}

#[test]
fn compose_timeline_recreates_exactly_what_changed() {
    let image = test_image();
    let project = unique("tendc");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    sb.write("/srv/app/docker-compose.yml", &stack(image));
    sb.write("/srv/app/.env", "# the greeting\nGREETING=world\n");
    sb.write_manifest(&format!(
        "[compose.app]\ndir = \"/srv/app\"\nproject = \"{project}\"\nwait_timeout = 60\n"
    ));
    let log = sb.dir.path().join("compose-calls.log");
    let path = compose_spy(&sb.dir.path().join("spy"), &log);
    // The spy's own log is the test's instrument, not a write of the plan.
    let log_str = log.display().to_string();
    let env = [
        ("PATH", path.as_str()),
        (tend_tests::plan_watch::ALLOW, log_str.as_str()),
    ];
    let json = |sub: &str| {
        let r = sb.tend_env(sub, &["--format", "json"], &env);
        (r.code, r.json())
    };

    let (code, plan) = json("plan");
    assert_eq!(code, 2, "{plan:#}");
    assert_eq!(
        changed_fields(&plan, "compose.app"),
        [
            "service idle",
            "service init",
            "service web",
            "service worker"
        ]
    );
    let (code, report) = json("apply");
    assert_eq!(code, 2, "{report:#}");
    let ids = service_ids(&project);
    let status = docker(&["inspect", "-f", "{{.State.Health.Status}}", &ids["web"]]);
    assert_eq!(status, "healthy", "apply waits for the healthcheck");
    assert_eq!(ids.len(), 4, "{ids:?}");
    let init = docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        &ids["init"],
    ]);
    assert_eq!(init, "exited 0", "the one-shot ran");

    // A no-op run: in sync, and not one compose process.
    std::fs::remove_file(&log).expect("reset the spy's log");
    let (code, report) = json("apply");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(with_status(&report, "in_sync"), ["compose.app"]);
    assert!(
        !log.exists(),
        "compose ran on a no-op: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // A container stopped behind tend's back: plan names that service only.
    docker(&["stop", "-t", "0", &ids["idle"]]);
    let (_, plan) = json("plan");
    assert_eq!(changed_fields(&plan, "compose.app"), ["service idle"]);
    assert_eq!(
        change_descriptions(&plan, "compose.app"),
        ["service idle: exited → start"]
    );
    assert_eq!(json("apply").0, 2);
    assert_eq!(
        service_ids(&project),
        ids,
        "starting a stopped container recreates nothing"
    );

    // A container paused by hand: plan says unpause (up alone cannot start a paused container),
    // apply unpauses it, recreating nothing, and the next plan is clean.
    docker(&["pause", &ids["idle"]]);
    let (code, plan) = json("plan");
    assert_eq!(code, 2);
    assert_eq!(
        change_descriptions(&plan, "compose.app"),
        ["service idle: paused → unpause"]
    );
    assert_eq!(json("apply").0, 2);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &ids["idle"]]),
        "running"
    );
    assert_eq!(service_ids(&project), ids, "unpausing recreates nothing");
    assert_eq!(json("plan").0, 0);

    // Changes made by hand to the running containers, each while the files stay as tend left
    // them: plan names the service and what differs, changing no container; apply repairs
    // exactly that, recreating nothing else; the next plan is clean.
    let compose = |args: &[&str]| {
        let mut all = vec!["compose", "-p", project.as_str(), "--project-directory"];
        let dir = sb.path("/srv/app");
        let dir = dir.to_str().expect("utf8").to_string();
        all.push(&dir);
        all.extend_from_slice(args);
        docker(&all)
    };
    // --scale worker=2, typed by hand.
    compose(&["up", "-d", "--no-recreate", "--scale", "worker=2", "worker"]);
    let (code, plan) = json("plan");
    assert_eq!(code, 2);
    assert_eq!(
        change_descriptions(&plan, "compose.app"),
        ["service worker: 2 containers, compose file says 1"]
    );
    assert_eq!(json("apply").0, 2);
    let now = service_ids(&project);
    assert_eq!(
        now, ids,
        "back to one worker, the same containers everywhere"
    );
    assert_eq!(json("plan").0, 0);
    // A network disconnected by hand.
    let network = format!("{project}_default");
    docker(&["network", "disconnect", &network, &ids["idle"]]);
    let (_, plan) = json("plan");
    assert_eq!(
        change_descriptions(&plan, "compose.app"),
        [format!(
            "service idle: not attached to {network} → recreate from the compose file"
        )]
    );
    assert_eq!(service_ids(&project), ids, "plan changed no container");
    assert_eq!(json("apply").0, 2);
    let now = service_ids(&project);
    assert_ne!(now["idle"], ids["idle"], "idle recreated, attached again");
    assert_eq!(now["web"], ids["web"], "web kept its container");
    assert_eq!(now["worker"], ids["worker"], "worker kept its container");
    assert_eq!(json("plan").0, 0);
    let ids = now;
    // Recreated by hand from an edited compose file, the file then put back.
    let file = sb.read("/srv/app/docker-compose.yml");
    sb.write(
        "/srv/app/docker-compose.yml",
        &file.replace(
            "command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n\"#",
            "command: [\"sleep\", \"3601\"]\n    stop_signal: SIGKILL\n\"#",
        ),
    );
    let edited = sb.read("/srv/app/docker-compose.yml");
    let edited = edited.replacen(
        "idle:\n    image",
        "idle:\n    labels: [\"by-hand=1\"]\n    image",
        1,
    );
    sb.write("/srv/app/docker-compose.yml", &edited);
    compose(&["up", "-d", "idle"]);
    sb.write("/srv/app/docker-compose.yml", &file);
    let by_hand = service_ids(&project);
    assert_ne!(by_hand["idle"], ids["idle"], "the hand recreated idle");
    let (_, plan) = json("plan");
    assert_eq!(changed_fields(&plan, "compose.app"), ["service idle"]);
    assert!(
        change_descriptions(&plan, "compose.app")[0]
            .starts_with("service idle: its container runs another configuration"),
        "{plan:#}"
    );
    assert_eq!(json("apply").0, 2);
    let now = service_ids(&project);
    assert_ne!(now["idle"], by_hand["idle"], "idle recreated from the file");
    assert_eq!(now["web"], ids["web"], "web kept its container");
    assert_eq!(json("plan").0, 0);
    let ids = now;

    // One `.env` variable that one service uses: exactly that service is recreated.
    sb.write("/srv/app/.env", "# the greeting\nGREETING=there\n");
    let (_, plan) = json("plan");
    assert_eq!(changed_fields(&plan, "compose.app"), ["service worker"]);
    assert_eq!(
        change_descriptions(&plan, "compose.app"),
        ["service worker: recreate (.env changed: GREETING)"]
    );
    assert_eq!(json("apply").0, 2);
    let after = service_ids(&project);
    assert_ne!(after["worker"], ids["worker"], "worker recreated");
    assert_eq!(after["web"], ids["web"], "web kept its container");
    assert_eq!(after["idle"], ids["idle"], "idle kept its container");
    let logs = docker(&["logs", &after["worker"]]);
    assert!(logs.contains("hello there"), "{logs}");
    assert_eq!(json("plan").0, 0, "converged");

    // Down removes the project.
    sb.write_manifest(&format!(
        "[compose.app]\ndir = \"/srv/app\"\nproject = \"{project}\"\nstate = \"down\"\n"
    ));
    let (_, plan) = json("plan");
    assert_eq!(changed_fields(&plan, "compose.app"), ["state"]);
    assert_eq!(json("apply").0, 2);
    assert!(service_ids(&project).is_empty());
    assert_eq!(json("plan").0, 0);
}

#[test]
fn a_stack_started_by_hand_is_adopted_not_recreated() {
    let image = test_image();
    let project = unique("tendh");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    sb.write("/srv/app/docker-compose.yml", &stack(image));
    sb.write("/srv/app/.env", "GREETING=world\n");
    let dir = sb.path("/srv/app");
    let up = tend_tests::docker::compose_command()
        .args(["-p", &project, "up", "-d"])
        .current_dir(&dir)
        .output()
        .expect("docker-compose up");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let ids = service_ids(&project);
    sb.write_manifest(&format!(
        "[compose.app]\ndir = \"/srv/app\"\nproject = \"{project}\"\nwait = false\n"
    ));
    let log = sb.dir.path().join("compose-calls.log");
    let path = compose_spy(&sb.dir.path().join("spy"), &log);
    // The spy's own log is the test's instrument, not a write of the plan.
    let log_str = log.display().to_string();
    let env = [
        ("PATH", path.as_str()),
        (tend_tests::plan_watch::ALLOW, log_str.as_str()),
    ];
    let plan = sb.tend_env("plan", &["--format", "json"], &env).json();
    assert_eq!(plan["exit_code"], 0, "{plan:#}");
    assert_eq!(with_status(&plan, "in_sync"), ["compose.app"]);
    let calls = std::fs::read_to_string(&log).expect("plan asked compose");
    assert!(calls.contains("config --hash"), "{calls}");
    // apply adopts it (records the fingerprint), and recreates nothing.
    assert_eq!(sb.tend_env("apply", &[], &env).code, 0);
    assert_eq!(service_ids(&project), ids);
    std::fs::remove_file(&log).expect("reset the spy's log");
    assert_eq!(sb.tend_env("apply", &[], &env).code, 0);
    assert!(!log.exists(), "adopted: the next run takes the fast path");
}

#[test]
fn refresh_restart_through_a_notify_from_a_file() {
    let project = unique("tendr");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    let manifest = notified_proxy(
        &sb,
        &project,
        "cat /conf/site.conf; sleep 3600",
        "    volumes:\n      - ./conf:/conf:ro\n",
        "/srv/proxy/conf/site.conf",
        "restart",
    );
    sb.write_manifest(&manifest("first"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let id = service_ids(&project)["proxy"].clone();
    assert_eq!(sb.apply().code, 0);
    // The bind-mounted file changes; compose cannot see it, the notify restarts the service.
    sb.write_manifest(&manifest("second"));
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["file.site"]);
    assert_eq!(
        resource(&plan, "compose.proxy")["refresh"]["notified_by"][0],
        "file.site"
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        resource(&report, "compose.proxy")["refresh"]["status"],
        "ran"
    );
    assert_eq!(
        service_ids(&project)["proxy"],
        id,
        "restarted, not recreated"
    );
    // The first run created the file (a change, so a restart too); the second changed it.
    let logs = docker(&["logs", &id]);
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        ["first", "first", "second"],
        "each restart re-read the file"
    );
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn container_timeline_and_on_refresh_exec() {
    let image = test_image();
    let name = unique("tendk");
    let _cleanup = Cleanup(Made {
        containers: vec![name.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    let manifest = |greeting: &str, conf: &str| {
        format!(
            "[file.conf]\npath = \"/etc/app.conf\"\ncontent = \"{conf}\\n\"\nnotify = [\"container.app\"]\n\n[container.app]\nname = \"{name}\"\nimage = \"{image}\"\ncommand = [\"sleep\", \"3600\"]\nenv = {{ GREETING = \"{greeting}\" }}\nlabels = {{ \"org.example.role\" = \"app\" }}\nrestart = \"unless-stopped\"\non_refresh = {{ exec = [\"sh\", \"-c\", \"echo reloaded >> /reloads\"] }}\n"
        )
    };
    sb.write_manifest(&manifest("hello", "a"));
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "container.app"), ["state"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );
    let id = docker(&["inspect", "-f", "{{.Id}}", &name]);
    // Created in this run: the notify from file.conf ran the exec once.
    assert_eq!(docker(&["exec", &name, "cat", "/reloads"]), "reloaded");
    assert_eq!(sb.apply().code, 0, "second run: zero changes");

    // Stopped by hand: plan names the state only; apply starts the same container.
    docker(&["stop", "-t", "0", &name]);
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "container.app"), ["state"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &name]), id);

    // The config file changes: the container is refreshed by the exec, not restarted.
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &name]);
    sb.write_manifest(&manifest("hello", "b"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(
        resource(&report, "container.app")["refresh"]["status"],
        "ran"
    );
    assert_eq!(
        docker(&["exec", &name, "cat", "/reloads"]),
        "reloaded\nreloaded"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &name]),
        started,
        "an exec refresh does not restart the container"
    );

    // A declared field changes: recreated with it.
    sb.write_manifest(&manifest("bonjour", "b"));
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "container.app"), ["env GREETING"]);
    assert_eq!(sb.apply().code, 2);
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &name]);
    assert!(env.contains("GREETING=bonjour"), "{env}");
    assert_ne!(docker(&["inspect", "-f", "{{.Id}}", &name]), id);
    assert_eq!(sb.apply().code, 0);

    // A label added by hand is not drift; one removed is.
    docker(&["rm", "-f", &name]);
    assert_eq!(changed_fields(&sb.plan_json(), "container.app"), ["state"]);
}

#[test]
fn image_rebuilt_only_when_its_context_changes() {
    let base = test_image();
    let tag = format!("tend-test/{}:1", unique("img"));
    let _cleanup = Cleanup(Made {
        images: vec![tag.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    sb.write(
        "/srv/build/Dockerfile",
        &format!("FROM {base}\nCOPY hello.txt /hello.txt\nARG COMMIT_SHA\nRUN echo $COMMIT_SHA > /commit\n"),
    );
    sb.write("/srv/build/hello.txt", "hello\n");
    sb.write("/srv/build/.dockerignore", "*.tmp\n");
    sb.write_manifest(&format!(
        "[image.app]\nname = \"{tag}\"\ncontext = \"/srv/build\"\nbuild_args = {{ COMMIT_SHA = \"abc123\" }}\n"
    ));
    assert_eq!(changed_fields(&sb.plan_json(), "image.app"), ["image"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    let out = docker(&["run", "--rm", &tag, "cat", "/hello.txt", "/commit"]);
    assert_eq!(out, "hello\nabc123");
    assert_eq!(sb.apply().code, 0, "unchanged context: no rebuild");

    // An ignored file changes: still nothing to do.
    sb.write("/srv/build/scratch.tmp", "noise");
    assert_eq!(
        sb.apply().code,
        0,
        ".dockerignore'd files are not part of the context"
    );
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), id);

    // One byte of the context changes: rebuilt.
    sb.write("/srv/build/hello.txt", "hellO\n");
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "image.app"), ["context"]);
    assert_eq!(sb.apply().code, 2);
    assert_ne!(docker(&["image", "inspect", "-f", "{{.Id}}", &tag]), id);
    assert_eq!(docker(&["run", "--rm", &tag, "cat", "/hello.txt"]), "hellO");
    assert_eq!(sb.apply().code, 0);

    // Removed by hand: plan names the image, apply builds it again.
    docker(&["rmi", &tag]);
    assert_eq!(changed_fields(&sb.plan_json(), "image.app"), ["image"]);
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn volume_and_network_timeline() {
    let vol = unique("tendv");
    let net = unique("tendn");
    let _cleanup = Cleanup(Made {
        volumes: vec![vol.clone()],
        networks: vec![net.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    let manifest = |state: &str, role: &str| {
        format!(
            "[volume.data]\nname = \"{vol}\"\nlabels = {{ role = \"{role}\" }}\n\n[network.back]\nname = \"{net}\"\nstate = \"{state}\"\nlabels = {{ role = \"{role}\" }}\n"
        )
    };
    sb.write_manifest(&manifest("present", "db"));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(
        docker(&["volume", "inspect", "-f", "{{.Labels.role}}", &vol]),
        "db"
    );
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Labels.role}}", &net]),
        "db"
    );
    assert_eq!(sb.apply().code, 0);
    // The network removed by hand: plan names it alone.
    docker(&["network", "rm", &net]);
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "would_change"), ["network.back"]);
    assert_eq!(changed_fields(&plan, "network.back"), ["state"]);
    assert_eq!(sb.apply().code, 2);

    // Labels differ: the network (nothing attached) is recreated; the volume is refused,
    // because recreating it would delete its data.
    sb.write_manifest(&manifest("present", "cache"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 6, "changed and failed: {report:#}");
    let err = resource(&report, "volume.data")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.contains("would delete its data") && err.contains(&format!("docker volume rm {vol}")),
        "{err}"
    );
    assert_eq!(resource(&report, "network.back")["status"], "changed");
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Labels.role}}", &net]),
        "cache"
    );
    assert_eq!(
        docker(&["volume", "inspect", "-f", "{{.Labels.role}}", &vol]),
        "db",
        "data kept"
    );

    sb.write_manifest(&manifest("absent", "db"));
    assert_eq!(sb.apply().code, 2);
    assert!(!docker_quiet(&["network", "inspect", &net]));
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn unreachable_engine_fails_docker_resources_only() {
    let sb = Sandbox::new();
    sb.write(
        "/srv/app/docker-compose.yml",
        &stack(tend_tests::docker::IMAGE),
    );
    sb.write_manifest(
        "[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n\n[compose.app]\ndir = \"/srv/app\"\nproject = \"never\"\n\n[container.c]\nname = \"never\"\nimage = \"x:1\"\n",
    );
    let r = sb.tend_env(
        "apply",
        &["--format", "json"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let report = r.json();
    assert_eq!(r.code, 6, "changed and failed: {report:#}");
    assert_eq!(resource(&report, "file.motd")["status"], "changed");
    assert_eq!(sb.read("/etc/motd"), "hi\n");
    for address in ["compose.app", "container.c"] {
        let err = resource(&report, address)["error"].as_str().expect("error");
        assert!(
            err.starts_with("Docker engine not reachable at unix:///nonexistent/docker.sock"),
            "{address}: {err}"
        );
    }
}

#[test]
fn restart_on_recreate_restarts_the_proxy_when_its_upstream_is_recreated() {
    let image = test_image();
    let project = unique("tendn");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    sb.write(
        "/srv/dify/docker-compose.yml",
        &format!(
            "version: \"3.8\"\nservices:\n  api:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n    environment:\n      SECRET: ${{SECRET_KEY}}\n  nginx:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n"
        ),
    );
    sb.write("/srv/dify/.env", "SECRET_KEY=one\n");
    sb.write_manifest(&format!(
        "[compose.dify]\ndir = \"/srv/dify\"\nproject = \"{project}\"\nrestart_on_recreate = [\"nginx\"]\n"
    ));
    assert_eq!(sb.apply().code, 2);
    let ids = service_ids(&project);
    let started = |id: &str| docker(&["inspect", "-f", "{{.State.StartedAt}}", id]);
    let nginx_started = started(&ids["nginx"]);
    assert_eq!(sb.apply().code, 0);
    assert_eq!(
        started(&ids["nginx"]),
        nginx_started,
        "no-op: nothing restarted"
    );

    sb.write("/srv/dify/.env", "SECRET_KEY=two\n");
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "compose.dify"), ["service api"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let after = service_ids(&project);
    assert_ne!(after["api"], ids["api"], "api recreated");
    assert_eq!(after["nginx"], ids["nginx"], "nginx kept its container");
    assert_ne!(started(&ids["nginx"]), nginx_started, "nginx restarted");
    let notes = resource(&report, "compose.dify")["notes"].to_string();
    assert!(notes.contains("restarted: nginx"), "{notes}");
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn docker_resources_may_change_when_docker_is_not_installed_yet() {
    let sb = Sandbox::new();
    sb.write(
        "/srv/app/docker-compose.yml",
        &stack(tend_tests::docker::IMAGE),
    );
    sb.write_manifest(
        "[exec.install_docker]\ncommand = \"true\"\ncreates = \"/usr/bin/dockerd\"\n\n[compose.app]\ndir = \"/srv/app\"\nproject = \"never\"\nrequires = [\"exec.install_docker\"]\n",
    );
    let r = sb.tend_env(
        "plan",
        &["--format", "json"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let plan = r.json();
    assert_eq!(r.code, 2, "{plan:#}");
    assert_eq!(with_status(&plan, "may_change"), ["compose.app"]);
    let reason = resource(&plan, "compose.app")["reason"]
        .as_str()
        .expect("reason");
    assert!(
        reason.starts_with(
            "may change once its dependencies apply (exec.install_docker would change first)"
        ),
        "{reason}"
    );
}

#[test]
fn an_image_that_cannot_be_pulled_fails_clearly() {
    let sb = Sandbox::new();
    sb.write_manifest("[image.app]\nname = \"127.0.0.1:9/tend-none:1\"\npull = true\n");
    let plan = sb.plan_json();
    assert_eq!(changed_fields(&plan, "image.app"), ["image"]);
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    let err = resource(&report, "image.app")["error"]
        .as_str()
        .expect("error");
    assert!(
        err.starts_with(
            "cannot pull 127.0.0.1:9/tend-none:1 (is the registry reachable from this host?)"
        ),
        "{err}"
    );
    sb.write_manifest("[image.app]\nname = \"tend-test/none:1\"\n");
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    let err = resource(&report, "image.app")["error"]
        .as_str()
        .expect("error");
    assert!(
        err.contains("set `context` to build it or `pull = true`"),
        "{err}"
    );
}

#[test]
fn refresh_signal_reaches_the_running_containers() {
    let project = unique("tends");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    let manifest = notified_proxy(
        &sb,
        &project,
        "trap 'echo hup >> /hups' HUP; while :; do sleep 1; done",
        "",
        "/srv/proxy/site.conf",
        "signal:HUP",
    );
    sb.write_manifest(&manifest("a"));
    assert_eq!(sb.apply().code, 2);
    let id = service_ids(&project)["proxy"].clone();
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]);
    let hups = || {
        std::process::Command::new("docker")
            .args(["exec", &id, "cat", "/hups"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    };
    let wait_for = |n: usize| {
        let t = std::time::Instant::now();
        while hups() < n && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        hups()
    };
    assert_eq!(wait_for(1), 1, "the first run's notify sent one HUP");
    sb.write_manifest(&manifest("b"));
    let (code, report) = sb.apply_json();
    assert_eq!(code, 2, "{report:#}");
    let notes = resource(&report, "compose.proxy")["notes"].to_string();
    assert!(notes.contains("sent SIGHUP to proxy"), "{notes}");
    assert_eq!(wait_for(2), 2);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]),
        started,
        "not restarted"
    );
    assert_eq!(sb.apply().code, 0);
}

/// Dify's middleware way of running compose: `docker compose --env-file middleware.env -f
/// docker-compose.middleware.yaml -p dify up -d` — `env_files` is `--env-file`: compose
/// interpolates from it (not `.env`), including `COMPOSE_PROFILES`, and a change to one of its
/// keys recreates exactly the service that uses it.
#[test]
fn env_files_replace_dot_env_as_with_difys_middleware() {
    let image = test_image();
    let project = unique("tendm");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    sb.write(
        "/srv/dify/docker/docker-compose.middleware.yaml",
        &format!(
            r#"services:
  db:
    image: {image}
    profiles: ["postgresql"]
    command: ["sh", "-c", "echo db $$PGUSER; sleep 3600"]
    stop_signal: SIGKILL
    environment:
      PGUSER: ${{DB_USERNAME}}
  redis:
    image: {image}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
  weaviate:
    image: {image}
    profiles: ["weaviate"]
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"#
        ),
    );
    // `.env` says otherwise: it must not be read.
    sb.write(
        "/srv/dify/docker/.env",
        "DB_USERNAME=wrong\nCOMPOSE_PROFILES=weaviate\n",
    );
    sb.write(
        "/srv/dify/docker/middleware.env",
        "COMPOSE_PROFILES=postgresql\nDB_USERNAME=postgres\n",
    );
    sb.write_manifest(&format!(
        "[compose.middleware]\ndir = \"/srv/dify/docker\"\nfiles = [\"docker-compose.middleware.yaml\"]\nenv_files = [\"middleware.env\"]\nproject = \"{project}\"\nwait_timeout = 60\n"
    ));
    let first = sb.apply();
    assert_eq!(first.code, 2, "{first:?}");
    let ids = service_ids(&project);
    assert_eq!(
        ids.keys().map(String::as_str).collect::<Vec<_>>(),
        ["db", "redis"],
        "profiles from middleware.env, not .env"
    );
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &ids["db"]]);
    assert!(env.contains("PGUSER=postgres"), "{env}");
    assert_eq!(sb.apply().code, 0, "second run: zero changes");

    // `.env` changes: nothing compose reads here changed.
    sb.write("/srv/dify/docker/.env", "DB_USERNAME=other\n");
    assert_eq!(sb.plan().code, 0);
    // middleware.env changes one key: db is recreated, redis is not.
    sb.write(
        "/srv/dify/docker/middleware.env",
        "COMPOSE_PROFILES=postgresql\nDB_USERNAME=dify\n",
    );
    let plan = sb.plan_json();
    let descriptions = change_descriptions(&plan, "compose.middleware");
    assert_eq!(
        descriptions,
        ["service db: recreate (middleware.env changed: DB_USERNAME)"],
        "{plan:#}"
    );
    assert_eq!(sb.apply().code, 2);
    let after = service_ids(&project);
    assert_ne!(after["db"], ids["db"]);
    assert_eq!(after["redis"], ids["redis"]);

    // A missing env file is named, as compose would fail on it.
    std::fs::remove_file(sb.path("/srv/dify/docker/middleware.env")).expect("rm");
    let r = sb.apply();
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stdout
            .contains("the env file /srv/dify/docker/middleware.env does not exist"),
        "{}",
        r.stdout
    );
}

/// A tag re-pointed under a running service (a new image built or pulled by hand under the same
/// name): the service runs the old image, and compose's files did not change. Plan names it,
/// changing no container; apply recreates that service on the image the tag names now.
#[test]
fn a_tag_repointed_under_a_running_service_is_drift() {
    let base = test_image();
    let project = unique("tendt");
    let tag = format!("tend-test/{project}:1");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        images: vec![tag.clone()],
        ..Made::default()
    });
    docker(&["tag", base, &tag]);
    let sb = Sandbox::new();
    sb.write(
        "/srv/app/docker-compose.yml",
        &format!("services:\n  app:\n    image: {tag}\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n"),
    );
    sb.write_manifest(&format!(
        "[compose.app]\ndir = \"/srv/app\"\nproject = \"{project}\"\npull = \"never\"\n"
    ));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.plan().code, 0);
    let before = service_ids(&project);
    // A new image under the same tag.
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nLABEL rebuilt=\"{project}\"\n"),
    )
    .expect("Dockerfile");
    docker(&[
        "build",
        "-q",
        "-t",
        &tag,
        ctx.path().to_str().expect("utf8"),
    ]);
    let plan = sb.plan_json();
    let said = change_descriptions(&plan, "compose.app");
    assert_eq!(said.len(), 1, "{plan:#}");
    assert!(
        said[0].starts_with("service app: runs image ")
            && said[0].contains(&format!("but tag {tag} no longer points to it")),
        "{said:?}"
    );
    assert_eq!(service_ids(&project), before, "plan changed no container");
    let (code, _) = sb.apply_json();
    assert_eq!(code, 2);
    let after = service_ids(&project);
    assert_ne!(
        after["app"], before["app"],
        "app recreated on the new image"
    );
    let runs = docker(&["inspect", "-f", "{{.Image}}", &after["app"]]);
    let tagged = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert_eq!(runs, tagged);
    assert_eq!(sb.plan().code, 0);
}

#[test]
fn a_service_restarting_in_a_loop_is_planned_as_a_failure_not_a_repair() {
    let image = test_image();
    let project = unique("tendt");
    let _cleanup = Cleanup(Made {
        projects: vec![project.clone()],
        ..Made::default()
    });
    let sb = Sandbox::new();
    // Runs while /data/ok exists; without it, exits 3 and its restart policy starts it again.
    sb.write(
        "/srv/app/docker-compose.yml",
        &format!(
            "services:\n  app:\n    image: {image}\n    restart: always\n    volumes: [\"./data:/data\"]\n    command: [\"sh\", \"-c\", \"while test -f /data/ok; do sleep 0.2; done; exit 3\"]\n    stop_signal: SIGKILL\n"
        ),
    );
    sb.write("/srv/app/data/ok", "");
    sb.write_manifest(&format!(
        "[compose.app]\ndir = \"/srv/app\"\nproject = \"{project}\"\npull = \"never\"\n"
    ));
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.plan().code, 0);
    let before = service_ids(&project);
    std::fs::remove_file(sb.path("/srv/app/data/ok")).expect("remove ok");
    let state = || docker(&["inspect", "-f", "{{.State.Status}}", &before["app"]]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while state() != "restarting" {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never entered its restart loop: {}",
            state()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Plan: a failure an audit alerts on (exit bit 4), not a start apply would pretend to make.
    let plan = sb.plan_json();
    assert_eq!(with_status(&plan, "will_fail"), ["compose.app"], "{plan:#}");
    assert_eq!(plan["exit_code"].as_i64().expect("exit code") & 4, 4);
    let why = resource(&plan, "compose.app")["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        why.contains("app restarting in a loop") && why.contains("docker compose logs app"),
        "{why}"
    );
    assert_eq!(
        change_descriptions(&plan, "compose.app"),
        ["service app: restarting in a loop, last exit 3 (apply cannot repair this)"]
    );
    assert_eq!(service_ids(&project), before, "plan changed no container");
    // Apply fails with the same reason and recreates nothing.
    let (code, applied) = sb.apply_json();
    assert_eq!(code & 4, 4, "{applied:#}");
    assert_eq!(with_status(&applied, "failed"), ["compose.app"]);
    assert_eq!(service_ids(&project), before, "apply recreated nothing");
    // Once the cause is gone, the loop ends on its own and plan is clean again.
    sb.write("/srv/app/data/ok", "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while state() != "running" {
        assert!(std::time::Instant::now() < deadline, "it never came back");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(sb.plan().code, 0);
}
