//! The compose command line: `docker compose` (the v2 plugin, as on production hosts) when it is
//! installed, else `docker-compose` (v1, Debian's package). Found by looking at files, never by
//! running anything, so a no-op check spawns no process; the binary's identity (path, size,
//! mtime) stands for its version in the fingerprint, and the version itself is asked only on the
//! slow path.
//!
//! Compose runs with a controlled environment: compose lets the process environment override the
//! project's `.env`, so a variable exported by accident on a host would silently win.

// The tool is found on this machine's PATH: a program, not the managed host's files.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use tokio::sync::OnceCell;

use crate::resource::ResourceError;

/// Where the docker CLI looks for plugins (system-wide first, as `docker` itself searches).
const PLUGIN_DIRS: &[&str] = &[
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Flavour {
    /// `docker compose`: the docker binary and the plugin it runs.
    V2 { docker: PathBuf, plugin: PathBuf },
    /// `docker-compose`.
    V1 { path: PathBuf },
}

#[derive(Debug, Clone)]
pub(super) struct Cli {
    pub flavour: Flavour,
    /// `path:size:mtime` of the program that does the work.
    pub identity: String,
}

static CLI: OnceCell<Option<Cli>> = OnceCell::const_new();

/// The compose CLI of this host, found once per run.
pub(super) async fn find() -> Result<&'static Cli, ResourceError> {
    CLI.get_or_init(|| async { locate() })
        .await
        .as_ref()
        .ok_or_else(|| {
            ResourceError::Command(
                "no compose CLI found: install the docker compose plugin (docker-compose-plugin) or docker-compose"
                    .into(),
            )
        })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn identity(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    Some(format!("{}:{}:{}", path.display(), m.size(), m.mtime()))
}

fn locate() -> Option<Cli> {
    if let Some(docker) = on_path("docker") {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(Path::new(&home).join(".docker/cli-plugins"));
        }
        dirs.extend(PLUGIN_DIRS.iter().map(PathBuf::from));
        if let Some(plugin) = dirs
            .into_iter()
            .map(|d| d.join("docker-compose"))
            .find(|p| p.is_file())
        {
            return Some(Cli {
                identity: identity(&plugin)?,
                flavour: Flavour::V2 { docker, plugin },
            });
        }
    }
    let path = on_path("docker-compose")?;
    Some(Cli {
        identity: identity(&path)?,
        flavour: Flavour::V1 { path },
    })
}

/// What compose printed and how it ended.
pub(super) struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The lines worth quoting in a report: the last of what compose said on stderr (where it
    /// writes its progress and its errors), else on stdout.
    pub(super) fn summary(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// One compose invocation for a project.
pub(super) struct Invocation<'a> {
    pub cli: &'a Cli,
    pub project: &'a str,
    /// Real path of the project directory.
    pub dir: &'a Path,
    /// Real paths of the compose files.
    pub files: &'a [PathBuf],
    pub profiles: &'a [String],
    /// Real paths of the manifest's `env_files` (`--env-file`); empty: compose reads `.env`.
    pub env_files: &'a [PathBuf],
    /// Variables the manifest passes (besides PATH, HOME, DOCKER_HOST).
    pub env: &'a BTreeMap<String, String>,
    pub timeout: Duration,
}

impl Invocation<'_> {
    pub(super) fn command_line(&self, args: &[&str]) -> String {
        let head = match &self.cli.flavour {
            Flavour::V2 { .. } => "docker compose",
            Flavour::V1 { .. } => "docker-compose",
        };
        format!("{head} -p {} {}", self.project, args.join(" "))
    }

    pub(super) async fn run(&self, args: &[&str]) -> Result<Output, ResourceError> {
        let mut c = match &self.cli.flavour {
            Flavour::V2 { docker, .. } => {
                let mut c = tokio::process::Command::new(docker);
                c.arg("compose");
                c
            }
            Flavour::V1 { path } => tokio::process::Command::new(path),
        };
        c.arg("--project-name").arg(self.project);
        c.arg("--project-directory").arg(self.dir);
        for f in self.files {
            c.arg("--file").arg(f);
        }
        for p in self.profiles {
            c.arg("--profile").arg(p);
        }
        for e in self.env_files {
            c.arg("--env-file").arg(e);
        }
        c.args(args);
        c.env_clear();
        for var in ["PATH", "HOME", "DOCKER_HOST"] {
            if let Some(v) = std::env::var_os(var) {
                c.env(var, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            c.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        c.envs(self.env);
        c.current_dir(self.dir);
        let shown = self.command_line(args);
        use crate::process::{capture, RunError};
        let done = capture(c, self.timeout).await.map_err(|e| {
            ResourceError::Command(match e {
                RunError::Spawn(e) => format!("cannot run {shown}: {e}"),
                RunError::Timeout => {
                    format!("{shown} did not finish within {} s", self.timeout.as_secs())
                }
                RunError::Wait(e) => format!("{shown} failed to run: {e}"),
                RunError::Interrupted => format!("{shown} was ended: tend was asked to stop"),
            })
        })?;
        Ok(Output {
            success: done.status.success(),
            stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
        })
    }

    /// Like [`Invocation::run`], but a failure quotes compose's error lines.
    pub(super) async fn run_ok(&self, args: &[&str]) -> Result<Output, ResourceError> {
        let out = self.run(args).await?;
        if !out.success {
            return Err(ResourceError::Command(format!(
                "{} failed:\n{}",
                self.command_line(args),
                out.summary()
            )));
        }
        Ok(out)
    }
}

/// `2.29.1` or `1.29.2`: asked of the CLI itself (the slow path only).
pub(super) async fn version(cli: &Cli) -> String {
    let c = match &cli.flavour {
        Flavour::V2 { docker, .. } => {
            let mut c = tokio::process::Command::new(docker);
            c.args(["compose", "version", "--short"]);
            c
        }
        Flavour::V1 { path } => {
            let mut c = tokio::process::Command::new(path);
            c.args(["version", "--short"]);
            c
        }
    };
    match crate::process::capture(c, Duration::from_secs(30)).await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}
