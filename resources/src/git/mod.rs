//! `git`: a checkout of `url` at `ref` (a tag, a branch or a commit), held there without ever
//! losing a local change.
//!
//! Check opens the repository (git2), compares HEAD with where the ref points, lists modified
//! tracked files, and asks the remote where the ref points *without fetching into the
//! repository* (`ls-remote`), so plan changes nothing and still notices a tag moved upstream.
//! Ignored files (Dify's `docker/.env`, `docker/volumes/`) never count and are never touched:
//! checkouts are forced only over tracked files.
//!
//! The rooms: `transport` (the remote: credentials, where a ref points, fetching, keeping
//! credentials out of messages), `status` (what the checkout holds), `check`, `checkout`
//! (apply).

mod as_owner;
mod check;
mod checkout;
mod status;
pub mod tls;
mod transport;
mod trust;

use as_owner::AsOwner;
pub use transport::{credential_callbacks, redact_url};
use transport::{remove_url_rewrites, scrub_credentials, scrub_error, url_rewrites};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use git2::{
    build::CheckoutBuilder, Cred, Direction, FetchOptions, Oid, RemoteCallbacks, Repository,
};

use crate::change::{Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `git` kind: its name, summary and constructor.
pub const KIND: Kind = Kind {
    name: "git",
    summary: "a git checkout of url at a tag, branch or commit; local changes never lost",
    build,
    prune: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnLocalChanges {
    Fail,
    Discard,
}

#[derive(Debug)]
struct Spec {
    path: PathBuf,
    url: String,
    reference: String,
    pin: Option<String>,
    depth: Option<i32>,
    remote: String,
    on_local_changes: OnLocalChanges,
    owner: Option<String>,
    group: Option<String>,
    ssh_key: Option<PathBuf>,
    /// The key's text, read by root when the checkout is worked on as its owner.
    key_text: std::sync::OnceLock<String>,
    token_env: Option<String>,
}

#[derive(Debug)]
/// A `git` resource, as its manifest table declared it.
pub struct Git {
    spec: Arc<Spec>,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (path, _) = f.required_path("path")?;
    let (url, _) = f.required_string("url")?;
    let (reference, _) = f.required_string("ref")?;
    let pin = match f.string("commit")? {
        None => None,
        Some((t, span)) => {
            let c = t.value.to_ascii_lowercase();
            if c.len() < 7 || c.len() > 40 || !c.chars().all(|x| x.is_ascii_hexdigit()) {
                return Err(SpecError::new(
                    span,
                    format!(
                        "`commit` must be a commit id (7 to 40 hex digits), not {:?}",
                        t.value
                    ),
                ));
            }
            Some(c)
        }
    };
    let depth = match f.int("depth")? {
        None => None,
        Some((d, _)) if (1..=i64::from(i32::MAX)).contains(&d) => {
            Some(i32::try_from(d).unwrap_or(i32::MAX))
        }
        Some((_, span)) => {
            return Err(SpecError::new(
                span,
                "`depth` must be a positive number of commits",
            ))
        }
    };
    let remote = f
        .string("remote")?
        .map_or_else(|| "origin".to_string(), |(t, _)| t.value);
    let on_local_changes = match f.choice("on_local_changes", &["fail", "discard"])? {
        Some("discard") => OnLocalChanges::Discard,
        _ => OnLocalChanges::Fail,
    };
    let owner = f.string("owner")?.map(|(t, _)| t.value);
    let group = f.string("group")?.map(|(t, _)| t.value);
    let ssh_key = f.path("ssh_key")?.map(|(p, _)| p);
    let token_env = f.string("token_env")?.map(|(t, _)| t.value);
    Ok(Arc::new(Git {
        spec: Arc::new(Spec {
            path,
            url: url.value,
            reference: reference.value,
            pin,
            depth,
            remote,
            on_local_changes,
            owner,
            group,
            ssh_key,
            key_text: std::sync::OnceLock::new(),
            token_env,
        }),
    }))
}

/// The report's `observed` key for the commit a moving checkout would be brought to.
const TARGET_COMMIT: &str = "target_commit";

/// Where a ref points, and what kind of ref it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Tag,
    Branch,
    Commit,
}

#[derive(Debug, Clone)]
struct Target {
    kind: RefKind,
    commit: Oid,
}

fn short(oid: Oid) -> String {
    oid.to_string()[..7].to_string()
}

fn failed(what: impl std::fmt::Display) -> ResourceError {
    ResourceError::Failed(what.to_string())
}

/// A failure to talk to the remote. An SSH host key that `known_hosts` does not vouch for is no
/// network trouble (plan must not call it an unknown that may go away): it says what to do.
fn remote_error(url: &str, e: &git2::Error) -> ResourceError {
    let msg = e.message();
    if msg.contains("hostkey") || msg.contains("host key") {
        return failed(format!(
            "refusing {url}: {msg}. The server's SSH host key must be in ~/.ssh/known_hosts of the user tend runs as: check its fingerprint with the server's owner, then add it (ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts)"
        ));
    }
    // libgit2 calls a local path that is not there an "unsupported URL protocol".
    if msg.contains("unsupported URL protocol") && !url.contains("://") && !url.contains('@') {
        return ResourceError::Unreachable(format!(
            "cannot reach {url}: no repository at this path (a local path, since it names no scheme)"
        ));
    }
    ResourceError::Unreachable(format!("cannot reach {url}: {msg}"))
}

/// libgit2's process-wide settings for checkouts, set once before the first repository is
/// opened or made, as libgit2's documentation requires:
///
/// - Open checkouts that belong to another user. Since CVE-2022-24765 libgit2 refuses a
///   repository not owned by the current user (git's `safe.directory`), and `owner = "app"`
///   makes exactly that. The check guards against a repository planted in a parent directory
///   being discovered and its config running programs; tend opens only the exact declared path
///   (never discovery), and libgit2 runs no hooks, fsmonitor or filter programs.
/// - Read no global, XDG or system git configuration: a checkout is what its manifest says, not
///   what root's `~/.gitconfig` adds (an `insteadOf`, a template directory); and a checkout
///   worked on as its owner could not read root's home anyway.
fn trust_checkouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: global libgit2 options; set once, guarded by `Once`, before this process
        // opens or creates any checkout, as libgit2's documentation requires.
        #[allow(unsafe_code)]
        let result = unsafe {
            git2::opts::set_verify_owner_validation(false).and_then(|()| {
                [
                    git2::ConfigLevel::System,
                    git2::ConfigLevel::XDG,
                    git2::ConfigLevel::Global,
                    git2::ConfigLevel::ProgramData,
                ]
                .into_iter()
                .try_for_each(|level| git2::opts::set_search_path(level, ""))
            })
        };
        if let Err(e) = result {
            tracing::warn!("cannot set libgit2's checkout options: {e}");
        }
    });
}

fn looks_like_commit(r: &str) -> bool {
    (7..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

#[async_trait]
impl Resource for Git {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.spec.path.clone()]
    }

    fn contains_paths(&self) -> bool {
        true
    }

    /// What a path in the checkout holds after the move, when the target commit is in the
    /// local object database already: its blob there; nothing, when HEAD tracks it and the
    /// target does not; what it holds now, when neither tracks it (an ignored `.env`: checkout
    /// leaves it alone).
    fn after_apply(
        &self,
        host: &Probe,
        observed: &std::collections::BTreeMap<String, serde_json::Value>,
        path: &Path,
    ) -> Option<crate::After> {
        use crate::After;
        let target = observed.get(TARGET_COMMIT)?.as_str()?;
        let rel = path.strip_prefix(&self.spec.path).ok()?;
        let ids = self.spec.owner_ids(host).ok()?;
        let real = host.resolved(&self.spec.path).ok()??;
        trust_checkouts();
        let _owner = AsOwner::enter(ids).ok()?;
        let repo = Repository::open(&real).ok()?;
        let target = repo
            .find_commit(Oid::from_str(target).ok()?)
            .ok()?
            .tree()
            .ok()?;
        let head = repo.head().ok()?.peel_to_tree().ok()?;
        match target.get_path(rel) {
            Ok(entry) if entry.kind() == Some(git2::ObjectType::Blob) => {
                let blob = repo.find_blob(entry.id()).ok()?;
                Some(After::Bytes(blob.content().to_vec()))
            }
            Ok(_) => None,
            Err(_) if head.get_path(rel).is_err() => Some(After::Same),
            Err(_) => Some(After::Absent),
        }
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        self.checked(host, Spec::plan_check).await
    }

    async fn check_for_apply(&self, host: &Mutate) -> Result<Drift, ResourceError> {
        self.checked(host.probe(), Spec::apply_check).await
    }

    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        let spec = self.spec.clone();
        let host = host.clone();
        let result = tokio::task::spawn_blocking(move || spec.apply(&host))
            .await
            .map_err(|e| failed(format!("the git apply died: {e}")))?;
        match result {
            Ok(mut done) => {
                for n in &mut done.notes {
                    *n = scrub_credentials(n, &self.spec.url);
                }
                Ok(done)
            }
            Err(e) => Err(scrub_error(e, &self.spec.url)),
        }
    }
}

impl Git {
    /// `check` (plan's or apply's) on a blocking thread, credentials scrubbed from its words.
    async fn checked(
        &self,
        host: &Probe,
        check: fn(&Spec, &Probe) -> Result<Drift, ResourceError>,
    ) -> Result<Drift, ResourceError> {
        let spec = self.spec.clone();
        let host = host.clone();
        let result = tokio::task::spawn_blocking(move || check(&spec, &host))
            .await
            .map_err(|e| failed(format!("the git check died: {e}")))?;
        let scrub = |t: &str| scrub_credentials(t, &self.spec.url);
        match result {
            Ok(mut drift) => {
                for c in &mut drift.changes {
                    c.description = scrub(&c.description);
                    c.old = c.old.as_deref().map(scrub);
                    c.new = c.new.as_deref().map(scrub);
                }
                Ok(drift)
            }
            Err(e) => Err(scrub_error(e, &self.spec.url)),
        }
    }
}
