//! Helpers for the end-to-end tests: build and run the real `tend` binary against a `--root`
//! sandbox in a temporary directory, and read what it printed and reported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

pub mod docker;
pub mod gitserve;
pub mod pki;
pub mod plan_watch;
pub mod signed;
pub mod systemd;

/// The `tend` binary of this workspace, built on first use (the tests crate cannot depend on
/// another package's binary, so it asks cargo once).
pub fn tend_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-HASH → target/<profile>/tend
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join("tend");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "tend", "--bin", "tend"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of tend failed");
    });
    bin
}

/// A background process a test started (a server on loopback): killed and reaped when dropped,
/// so a failing test leaves nothing running.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one `tend` invocation did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON report (for runs made with `--format json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary root with a manifest beside it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("tend-e2e-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("root")).expect("mkdir root");
        Sandbox { dir }
    }

    /// A sandbox whose root says it is Debian 12 (`etc/os-release`, `etc/hostname`), for
    /// manifests that use facts: a root without them leaves those facts undefined.
    pub fn debian() -> Sandbox {
        let sb = Sandbox::new();
        sb.write(
            "/etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        );
        sb.write("/etc/hostname", "dify-test\n");
        sb
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The real path of a host path inside the root.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root().join(host_path.trim_start_matches('/'))
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.path().join("manifest.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("/var/lib/tend")
    }

    pub fn write_manifest(&self, text: &str) {
        std::fs::write(self.manifest_path(), text).expect("write manifest");
    }

    /// Write a file next to the manifest (templates, sources).
    pub fn write_beside(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write file");
    }

    pub fn read(&self, host_path: &str) -> String {
        std::fs::read_to_string(self.path(host_path))
            .unwrap_or_else(|e| panic!("read {host_path}: {e}"))
    }

    pub fn write(&self, host_path: &str, text: &str) {
        let p = self.path(host_path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    pub fn mode(&self, host_path: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.path(host_path))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    pub fn set_mode(&self, host_path: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path(host_path), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }

    /// `tend SUBCOMMAND MANIFEST --root ROOT ARGS…`
    pub fn tend(&self, sub: &str, args: &[&str]) -> Run {
        self.tend_env(sub, args, &[])
    }

    /// `tend SUBCOMMAND MANIFEST --root ROOT ARGS…` with another manifest (one shipped in
    /// `manifests/`).
    pub fn tend_with_manifest(&self, manifest: &str, sub: &str, args: &[&str]) -> Run {
        let root = self.root();
        let mut all: Vec<&str> = vec![sub, manifest, "--root", root.to_str().expect("utf8")];
        all.extend_from_slice(args);
        run(&all, &[])
    }

    /// Like [`Sandbox::tend`], with extra environment variables.
    pub fn tend_env(&self, sub: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let manifest = self.manifest_path();
        let root = self.root();
        let mut all: Vec<&str> = vec![
            sub,
            manifest.to_str().expect("utf8"),
            "--root",
            root.to_str().expect("utf8"),
        ];
        all.extend_from_slice(args);
        run(&all, env)
    }

    /// `tend SUBCOMMAND MANIFEST --root ROOT ARGS…`, not started: for a test that must act on
    /// the run while it runs (a signal). No colour, no `RUST_LOG`, output piped.
    pub fn command(&self, sub: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(tend_bin());
        cmd.arg(sub)
            .arg(self.manifest_path())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    /// `tend restore PATH --root ROOT ARGS…`
    pub fn restore(&self, path: &str, args: &[&str]) -> Run {
        let root = self.root();
        let mut all: Vec<&str> = vec!["restore", path, "--root", root.to_str().expect("utf8")];
        all.extend_from_slice(args);
        run(&all, &[])
    }

    pub fn plan(&self) -> Run {
        self.tend("plan", &[])
    }

    pub fn apply(&self) -> Run {
        self.tend("apply", &[])
    }

    pub fn plan_json(&self) -> serde_json::Value {
        let r = self.tend("plan", &["--format", "json"]);
        r.json()
    }

    pub fn apply_json(&self) -> (i32, serde_json::Value) {
        let r = self.tend("apply", &["--format", "json"]);
        (r.code, r.json())
    }

    /// Replace this sandbox's temporary paths with stable names, for snapshots.
    pub fn filter(&self, text: &str) -> String {
        text.replace(self.dir.path().to_str().expect("utf8"), "[SANDBOX]")
    }
}

/// A manifest of `n` files, `file.fI` at `/srv/fI` holding `I`.
pub fn files_manifest(n: usize) -> String {
    (0..n)
        .map(|i| format!("[file.f{i}]\npath = \"/srv/f{i}\"\ncontent = \"{i}\"\n\n"))
        .collect()
}

/// Run the binary with arguments and extra environment; no colour.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    // Every plan is watched for writes (see `plan_watch`).
    if args.first() == Some(&"plan") {
        let (out, violations) = plan_watch::run(&tend_bin(), args, env);
        assert!(
            violations.is_empty(),
            "tend {} wrote to the host:\n{}",
            args.join(" "),
            violations.join("\n")
        );
        return Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
    }
    let mut cmd = Command::new(tend_bin());
    cmd.args(args).env("NO_COLOR", "1").env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tend");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `tend ARGS` under `strace -f` and return, with its output, every program it (and its
/// children) ran — each successful `execve` after tend's own: what a run costs in processes.
pub fn run_counting_programs(args: &[&str]) -> (Run, Vec<String>) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let trace = scratch.path().join("trace");
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=execve",
            "-e",
            "status=successful",
            "-o",
        ])
        .arg(&trace)
        .arg("--")
        .arg(tend_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run strace (Debian package strace)");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let mut programs: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once("execve(\"")?.1.split_once('"'))
        .map(|(p, _)| p.to_string())
        .collect();
    // The first is tend itself.
    if !programs.is_empty() {
        programs.remove(0);
    }
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, programs)
}

/// The report entry of `address`.
pub fn resource<'a>(report: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    report["resources"]
        .as_array()
        .expect("resources array")
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in report: {report:#}"))
}

/// Each orphan of a report as (address, its `field`: `pruned`, `state`…).
pub fn orphans(report: &serde_json::Value, field: &str) -> Vec<(String, String)> {
    report["orphans"]
        .as_array()
        .map(|os| {
            os.iter()
                .map(|o| {
                    (
                        o["address"].as_str().unwrap_or_default().to_string(),
                        o[field].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Addresses with a given status.
pub fn with_status(report: &serde_json::Value, status: &str) -> Vec<String> {
    report["resources"]
        .as_array()
        .expect("resources array")
        .iter()
        .filter(|r| r["status"] == status)
        .map(|r| r["address"].as_str().expect("address").to_string())
        .collect()
}

/// The fields named by a resource's changes.
pub fn changed_fields(report: &serde_json::Value, address: &str) -> Vec<String> {
    resource(report, address)["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["field"].as_str().expect("field").to_string())
        .collect()
}
