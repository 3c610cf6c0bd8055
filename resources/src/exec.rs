//! `exec`: the escape hatch. A command, guarded by `creates` (a path), `unless` / `onlyif`
//! (commands whose exit status decides), or run only when notified (`refresh_only`).
//!
//! Guards are commands too, so `plan` runs them only when the manifest declares them read-only
//! (`readonly_guards = true`); otherwise plan reports an honest "unknown". Output is captured
//! (the last lines) into the report; a non-zero exit is a failure quoting them.
//!
//! Under `--root`, the command and its guards run inside the root ([`crate::in_root`]) — so a
//! guard reads the image's files, not the build machine's — when the root has a shell to run
//! them (`in_root` unset) or `in_root = true`; `in_root = false`, or a root of files only, runs
//! them on the build machine with the root passed as `TEND_ROOT`. `creates` is always resolved
//! under the root.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::change::{Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, Span, Spanned, SpecError, Value};

/// The `exec` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "exec",
    summary: "a command, guarded by creates / unless / onlyif, or run only when notified",
    build,
    prune: None,
};

/// Lines of output kept in the report.
const TAIL_LINES: usize = 20;

#[derive(Debug, Clone)]
struct Cmd {
    argv: Vec<String>,
    sensitive: bool,
}

impl Cmd {
    fn shown(&self) -> String {
        if self.sensitive {
            crate::change::REDACTED.to_string()
        } else {
            self.argv.join(" ")
        }
    }
}

#[derive(Debug)]
/// A `exec` resource, as its manifest table declared it.
pub(crate) struct Exec {
    command: Cmd,
    creates: Option<PathBuf>,
    unless: Option<Cmd>,
    onlyif: Option<Cmd>,
    refresh_only: bool,
    readonly_guards: bool,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    timeout: Duration,
    user: Option<String>,
    /// Under `--root`, run inside the root (chrooted, in a mount namespace of its own).
    /// `None`: inside when the root has a shell (see [`Exec::inside`]).
    in_root: Option<bool>,
    /// The command or its environment holds a secret: its output is withheld.
    uses_secret: bool,
    /// An unguarded command is in sync once it has run in this apply.
    ran: AtomicBool,
}

fn command(f: &mut Fields<'_>, name: &'static str) -> Result<Option<Cmd>, SpecError> {
    match f.take(name) {
        None => Ok(None),
        Some(Spanned {
            value: Value::Str(t),
            ..
        }) => Ok(Some(Cmd {
            argv: vec!["/bin/sh".into(), "-c".into(), t.value],
            sensitive: t.sensitive,
        })),
        Some(Spanned {
            span,
            value: Value::Array(items),
        }) => {
            let mut argv = Vec::new();
            let mut sensitive = false;
            for i in items {
                match i.value {
                    Value::Str(t) => {
                        sensitive |= t.sensitive;
                        argv.push(t.value);
                    }
                    other => return Err(bad_command(name, i.span, other.type_name())),
                }
            }
            if argv.is_empty() {
                return Err(SpecError::new(span, format!("`{name}` must not be empty")));
            }
            Ok(Some(Cmd { argv, sensitive }))
        }
        Some(other) => Err(bad_command(name, other.span, other.value.type_name())),
    }
}

fn bad_command(name: &str, span: Span, found: &str) -> SpecError {
    SpecError::new(span, format!("`{name}` must be a string (run by /bin/sh -c) or a list of strings (argv), found {found}"))
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let span = f.table_span();
    let Some(cmd) = command(f, "command")? else {
        return Err(SpecError::new(
            span,
            format!("{} is missing the required field `command`", f.address()),
        )
        .help("add `command = \"…\"` (run by /bin/sh -c) or `command = [\"argv0\", \"arg\"]`"));
    };
    let creates = f.path("creates")?.map(|(p, _)| p);
    let unless = command(f, "unless")?;
    let onlyif = command(f, "onlyif")?;
    let refresh_only = f.bool("refresh_only")?.unwrap_or(false);
    let readonly_guards = f.bool("readonly_guards")?.unwrap_or(false);
    let cwd = f.path("cwd")?.map(|(p, _)| p);
    let env_table = f.text_table("env")?.unwrap_or_default();
    // Output of a command that was handed a secret may echo it, whole or in part: withheld.
    let uses_secret = cmd.sensitive || env_table.iter().any(|(_, v, _)| v.sensitive);
    let env = env_table
        .into_iter()
        .map(|(k, v, _)| (k, v.value))
        .collect();
    let timeout = f.seconds("timeout", 300)?;
    let user = f.string("user")?.map(|(t, _)| t.value);
    let in_root = f.bool("in_root")?;
    if refresh_only && (creates.is_some() || unless.is_some() || onlyif.is_some()) {
        return Err(SpecError::new(
            f.span_of("refresh_only"),
            "a refresh_only exec runs when notified; it takes no guard",
        )
        .help("remove creates / unless / onlyif, or refresh_only"));
    }
    Ok(Arc::new(Exec {
        command: cmd,
        creates,
        unless,
        onlyif,
        refresh_only,
        readonly_guards,
        cwd,
        env,
        timeout,
        user,
        in_root,
        uses_secret,
        ran: AtomicBool::new(false),
    }))
}

/// What a command did.
struct Outcome {
    status: Option<i32>,
    tail: String,
}

impl Exec {
    /// Run `cmd` for a handle that may run it: the command itself only for a `Mutate`
    /// (`execute`), a guard for whichever [`RunsGuards`] says so.
    async fn run(&self, host: &Probe, cmd: &Cmd) -> Result<Outcome, ResourceError> {
        if self.inside(host) {
            return self.run_in_root(host, cmd).await;
        }
        let mut c = tokio::process::Command::new(&cmd.argv[0]);
        c.args(&cmd.argv[1..])
            .envs(&self.env)
            .env("TEND_ROOT", host.root());
        // The child enters the directory tend opened and checked, through its fd: a directory
        // swapped for a link after the check is not followed by name.
        let cwd_fd = match &self.cwd {
            Some(cwd) => Some(host.open_dir(cwd)?.ok_or_else(|| {
                ResourceError::Failed(format!(
                    "cwd {} does not exist or is not a directory",
                    host.real(cwd).display()
                ))
            })?),
            None => None,
        };
        if let Some(fd) = &cwd_fd {
            use std::os::fd::AsRawFd;
            c.current_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        }
        if let Some(user) = &self.user {
            let uid = host.uid(user)?;
            c.uid(uid);
            c.gid(host.gid(user).unwrap_or(uid));
        }
        self.finish(c, cmd).await
    }

    /// `cmd` inside the root: `unshare` makes a private mount namespace (ended with its last
    /// process: `--kill-child` takes the command down with it), the script mounts the kernel's
    /// file systems into the root there, and `chroot` enters it — as `user` when given, in `cwd`
    /// (resolved inside the root) when given.
    async fn run_in_root(&self, host: &Probe, cmd: &Cmd) -> Result<Outcome, ResourceError> {
        let userspec = match &self.user {
            Some(user) => {
                let uid = host.uid(user)?;
                format!("{uid}:{}", host.gid(user).unwrap_or(uid))
            }
            None => String::new(),
        };
        let cwd = self
            .cwd
            .as_deref()
            .map(|p| p.as_os_str())
            .unwrap_or_default();
        let mut c = crate::in_root::command(host.root(), &userspec, cwd, &cmd.argv);
        c.env("TEND_ROOT", "/").envs(&self.env);
        self.finish(c, cmd).await
    }

    /// Whether the command runs inside `--root`: as `in_root` says, else when the root holds a
    /// system to run it in (its own `/bin/sh`); never on a live host's own root.
    fn inside(&self, host: &Probe) -> bool {
        host.root() != std::path::Path::new("/")
            && self
                .in_root
                .unwrap_or_else(|| crate::in_root::has_shell(host))
    }

    async fn finish(
        &self,
        c: tokio::process::Command,
        cmd: &Cmd,
    ) -> Result<Outcome, ResourceError> {
        use crate::process::{capture, RunError};
        match capture(c, self.timeout).await {
            Err(RunError::Spawn(e)) => Err(ResourceError::Command(format!(
                "cannot start {}: {e}",
                cmd.argv[0]
            ))),
            Err(RunError::Timeout) => Err(ResourceError::Command(format!(
                "`{}` did not finish within {} s and was killed",
                cmd.shown(),
                self.timeout.as_secs()
            ))),
            Err(RunError::Wait(e)) => Err(ResourceError::Command(format!(
                "waiting for {}: {e}",
                cmd.argv[0]
            ))),
            Err(RunError::Interrupted) => Err(ResourceError::Command(format!(
                "`{}` was ended (with every process it started) because tend was asked to stop",
                cmd.shown()
            ))),
            Ok(done) => {
                let mut text = String::from_utf8_lossy(&done.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&done.stderr));
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
                Ok(Outcome {
                    status: done.status.code(),
                    tail,
                })
            }
        }
    }

    /// Whether the command needs to run, by its guards, asked of `host`: apply's `Mutate` runs
    /// them; plan's `Probe` only when the manifest declares them read-only.
    async fn needed<H: RunsGuards>(&self, host: &H) -> Result<Option<String>, ResourceError> {
        if let Some(p) = &self.creates {
            if host.probe().metadata(p)?.is_some() {
                return Ok(None);
            }
        }
        let guards = self.unless.is_some() || self.onlyif.is_some();
        if guards && !host.runs_guards(self.readonly_guards) {
            return Err(ResourceError::Unknown {
                class: crate::UnknownClass::GuardNotRun,
                why: "unknown: guard not run in plan (set readonly_guards = true if unless/onlyif change nothing)".into(),
            });
        }
        let host = host.probe();
        if let Some(u) = &self.unless {
            if self.run(host, u).await?.status == Some(0) {
                return Ok(None);
            }
        }
        if let Some(o) = &self.onlyif {
            if self.run(host, o).await?.status != Some(0) {
                return Ok(None);
            }
        }
        let why = match (&self.creates, &self.unless, &self.onlyif) {
            (Some(p), _, _) => format!("{} does not exist", p.display()),
            (_, Some(u), _) => format!("`{}` failed", u.shown()),
            (_, _, Some(o)) => format!("`{}` succeeded", o.shown()),
            _ if self.ran.load(Ordering::SeqCst) => return Ok(None),
            _ => "no guard: runs on every apply".into(),
        };
        Ok(Some(why))
    }

    async fn execute(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        let outcome = self.run(host.probe(), &self.command).await?;
        self.ran.store(true, Ordering::SeqCst);
        let mut applied = Applied::default();
        match outcome.status {
            Some(0) => {
                if self.uses_secret {
                    applied.notes.push(WITHHELD.into());
                } else if !outcome.tail.is_empty() {
                    applied
                        .notes
                        .push(format!("output:\n{}", indent(&outcome.tail)));
                }
                Ok(applied)
            }
            status => Err(ResourceError::Command(format!(
                "`{}` exited with {}{}",
                self.command.shown(),
                status.map_or_else(|| "a signal".to_string(), |s| format!("status {s}")),
                if self.uses_secret {
                    format!(" ({WITHHELD})")
                } else if outcome.tail.is_empty() {
                    String::new()
                } else {
                    format!(":\n{}", indent(&outcome.tail))
                }
            ))),
        }
    }
}

/// Who may run an exec's guards (`unless`, `onlyif`): a guard is a command, and a command may
/// change the host whatever it is meant to test. Apply's `Mutate` may; plan's `Probe` only a
/// guard the manifest declares read-only (`readonly_guards`). What plan may do is what its
/// handle's type allows, not a flag a caller passes.
trait RunsGuards: Sync {
    fn probe(&self) -> &Probe;
    fn runs_guards(&self, declared_readonly: bool) -> bool;
}

impl RunsGuards for Probe {
    fn probe(&self) -> &Probe {
        self
    }
    fn runs_guards(&self, declared_readonly: bool) -> bool {
        declared_readonly
    }
}

impl RunsGuards for Mutate {
    fn probe(&self) -> &Probe {
        Mutate::probe(self)
    }
    fn runs_guards(&self, _declared_readonly: bool) -> bool {
        true
    }
}

/// What replaces the output of a command that used a secret.
const WITHHELD: &str = "output withheld: the command was given a secret";

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Exec {
    async fn drift<H: RunsGuards>(&self, host: &H) -> Result<Drift, ResourceError> {
        if self.refresh_only {
            return Ok(Drift::none());
        }
        Ok(match self.needed(host).await? {
            None => Drift::none(),
            Some(why) => {
                let c = if self.command.sensitive {
                    Change::sensitive("command", format!("run (sensitive): {why}"))
                        .with_action(crate::Action::Run)
                } else {
                    Change::note("command", format!("run `{}`: {why}", self.command.shown()))
                        .with_action(crate::Action::Run)
                };
                vec![c].into()
            }
        })
    }
}

#[async_trait]
impl Resource for Exec {
    /// Under `--root`, a guard run on the build machine (`in_root = false`, or a root with no
    /// shell) that names an absolute path reads the build machine's file, not the image's: the
    /// classic image build that never converges.
    fn lints(&self, host: &Probe) -> Vec<String> {
        if host.root() == std::path::Path::new("/") || self.inside(host) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (name, guard) in [("unless", &self.unless), ("onlyif", &self.onlyif)] {
            let Some(g) = guard else { continue };
            if g.sensitive {
                continue;
            }
            let text = g.argv.join(" ");
            let named: Vec<&str> = text
                .split(|c: char| {
                    c.is_whitespace() || matches!(c, '\'' | '"' | '=' | '<' | '>' | ';')
                })
                .filter(|w| {
                    w.starts_with('/')
                        && w.len() > 1
                        && !["/dev/", "/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/"]
                            .iter()
                            .any(|p| w.starts_with(p))
                })
                .collect();
            if let Some(path) = named.first() {
                out.push(format!(
                    "its `{name}` guard runs on the build machine (in_root = false) and names {path}, \
                     the build machine's file, not the image's: write \"$TEND_ROOT{path}\", or set in_root = true"
                ));
            }
        }
        out
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        self.drift(host).await
    }

    /// Apply may run guards: it holds a `Mutate`.
    async fn check_for_apply(&self, host: &Mutate) -> Result<Drift, ResourceError> {
        self.drift(host).await
    }

    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        self.execute(host).await
    }

    fn refreshable(&self) -> bool {
        true
    }

    async fn refresh(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        // A guarded command that just ran needs no second run.
        if !self.refresh_only && self.ran.load(Ordering::SeqCst) {
            return Ok(Applied::default());
        }
        self.execute(host).await
    }
}
