//! Real git for the tests: the git CLI with a fixed identity and no user configuration, and
//! `git daemon` on a free loopback port.

use std::path::Path;
use std::process::Command;

use crate::Reaped;

/// `git ARGS` in `dir` (identity fixed, system and user configuration ignored); its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git daemon` serving every repository under `base` on a free loopback port; stopped on drop.
pub struct GitDaemon {
    child: Option<Reaped>,
    pub port: u16,
}

impl GitDaemon {
    pub fn serve(base: &Path) -> GitDaemon {
        let port = crate::pki::free_port();
        // The daemon binary itself, not `git daemon`: `git` would fork it and a kill would leave
        // it running, holding the test's output pipes open. No inherited stdio either.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon");
        crate::pki::wait_for(port, "git daemon", Path::new("/dev/null"));
        GitDaemon {
            child: Some(Reaped(child)),
            port,
        }
    }

    /// `git://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// Stop serving (the server goes down; the port stays closed).
    pub fn stop(&mut self) {
        self.child.take();
    }
}
