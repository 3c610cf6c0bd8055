//! A real systemd to test against: a Debian 12 root (scripts/systemd-image) booted in a container
//! with `/sbin/init` as PID 1, with tend installed from its `.deb` (scripts/package --dev) by
//! `dpkg -i`, as an operator would.
//!
//! `systemctl` in the container is wrapped by a logging stand-in at `/usr/local/bin/systemctl`
//! (first on PATH; it execs the real one), so that a test can count the daemon-reloads and
//! restarts tend asked for.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::docker::{docker, docker_quiet, unique};
use crate::{plan_watch, Run};

/// What scripts/systemd-image builds.
pub const IMAGE: &str = "tend-test/systemd:bookworm-2";

/// Where the stand-in logs each systemctl call, one line of arguments each.
pub const SYSTEMCTL_LOG: &str = "/var/log/systemctl-calls";

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The package of this tree's tend, built once per test run (`scripts/package --dev`: the debug
/// build, stripped), and the image, made when missing.
pub fn package() -> PathBuf {
    static BUILD: Once = Once::new();
    let root = workspace();
    BUILD.call_once(|| {
        crate::tend_bin();
        for script in ["scripts/systemd-image", "scripts/package"] {
            let mut c = Command::new(root.join(script));
            if script == "scripts/package" {
                c.arg("--dev");
            }
            let out = c.current_dir(&root).output().expect("run script");
            assert!(
                out.status.success(),
                "{script} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    let dir = root.join("target/debian");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("target/debian")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs.pop().expect("a .deb in target/debian")
}

/// A booted systemd container with tend installed; removed when dropped.
pub struct Booted {
    pub id: String,
}

impl Booted {
    pub fn new() -> Booted {
        let deb = package();
        let name = unique("tend-systemd-");
        // What boots systemd 252 here without --privileged (which this engine refuses).
        let id = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--cap-add",
            "SYS_ADMIN",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            IMAGE,
            "/sbin/init",
        ]);
        let booted = Booted { id };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = booted.sh("systemctl is-system-running").stdout;
            if matches!(state.trim(), "running" | "degraded") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not boot: {state}\n{}",
                booted.sh("systemctl --failed --no-pager").stdout
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        docker(&[
            "cp",
            deb.to_str().expect("utf8"),
            &format!("{}:/tmp/tend.deb", booted.id),
        ]);
        let install = booted.sh("dpkg -i /tmp/tend.deb");
        assert_eq!(install.code, 0, "dpkg -i: {install:?}");
        booted.write(
            "/usr/local/bin/systemctl",
            &format!("#!/bin/sh\necho \"$*\" >> {SYSTEMCTL_LOG}\nexec /usr/bin/systemctl \"$@\"\n"),
        );
        booted.sh("chmod 755 /usr/local/bin/systemctl");
        booted
    }

    /// `sh -c SCRIPT` in the container.
    pub fn sh(&self, script: &str) -> Run {
        let out = Command::new("docker")
            .args(["exec", &self.id, "sh", "-c", script])
            .output()
            .expect("docker exec");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Write a file in the container.
    pub fn write(&self, path: &str, text: &str) {
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                &self.id,
                "sh",
                "-c",
                &format!("mkdir -p \"$(dirname '{path}')\" && cat > '{path}'"),
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("docker exec");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
            .expect("write");
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success(), "writing {path}");
    }

    /// `tend ARGS` in the container (the installed /usr/bin/tend), no colour.
    pub fn tend(&self, args: &[&str]) -> Run {
        let out = Command::new("docker")
            .args(["exec", "-e", "NO_COLOR=1", &self.id, "tend"])
            .args(args)
            .output()
            .expect("docker exec tend");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `tend plan ARGS` under strace in the container: asserts it wrote nothing (its children,
    /// systemctl among them, included) and returns what it printed.
    pub fn plan(&self, args: &[&str]) -> Run {
        let mut argv = vec![
            "exec",
            "-e",
            "NO_COLOR=1",
            "-e",
            "TMPDIR=/tmp/plan-tmp",
            &self.id,
            "strace",
            "-f",
            "-qq",
            "-y",
            "-s",
            "4096",
            "-e",
            plan_watch::TRACED,
            "-o",
            "/tmp/plan-trace",
            "--",
            "tend",
            "plan",
        ];
        argv.extend_from_slice(args);
        self.sh("rm -rf /tmp/plan-tmp /tmp/plan-trace; mkdir /tmp/plan-tmp");
        let out = Command::new("docker")
            .args(&argv)
            .output()
            .expect("docker exec strace tend plan");
        let trace = self.sh("cat /tmp/plan-trace").stdout;
        assert!(trace.contains("openat"), "no trace of the plan: {trace}");
        // The stand-in's log is the test's instrument, not tend's doing.
        let allowed: Vec<PathBuf> = ["/tmp/plan-tmp", "/dev", "/proc", SYSTEMCTL_LOG]
            .iter()
            .map(PathBuf::from)
            .collect();
        let violations = plan_watch::violations(&trace, &allowed);
        assert!(
            violations.is_empty(),
            "tend plan {} wrote in the container:\n{}",
            args.join(" "),
            violations.join("\n")
        );
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The systemctl calls logged since the last call of this, one line each.
    pub fn systemctl_calls(&self) -> Vec<String> {
        let text = self
            .sh(&format!(
                "cat {SYSTEMCTL_LOG} 2>/dev/null; : > {SYSTEMCTL_LOG}"
            ))
            .stdout;
        text.lines().map(str::to_string).collect()
    }

    /// One property of a unit (`systemctl show -p`).
    pub fn property(&self, unit: &str, prop: &str) -> String {
        self.sh(&format!("/usr/bin/systemctl show -p {prop} --value {unit}"))
            .stdout
            .trim()
            .to_string()
    }
}

impl Default for Booted {
    fn default() -> Booted {
        Booted::new()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        docker_quiet(&["rm", "-f", &self.id]);
    }
}
