//! `git`: a checkout of `url` at `ref` (a tag, a branch or a commit), held there without ever
//! losing a local change.
//!
//! Check opens the repository (git2), compares HEAD with where the ref points, lists modified
//! tracked files, and asks the remote where the ref points *without fetching into the
//! repository* (`ls-remote`), so plan changes nothing and still notices a tag moved upstream.
//! Ignored files (Dify's `docker/.env`, `docker/volumes/`) never count and are never touched:
//! checkouts are forced only over tracked files.

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

pub const KIND: Kind = Kind {
    name: "git",
    summary: "a git checkout of url at a tag, branch or commit; local changes never lost",
    build,
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
    token_env: Option<String>,
}

#[derive(Debug)]
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
            token_env,
        }),
    }))
}

/// How an unreachable remote's failure begins: plan turns exactly this failure into an unknown.
const UNREACHABLE: &str = "cannot reach";

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
    failed(format!("{UNREACHABLE} {url}: {msg}"))
}

/// Let libgit2 open checkouts that belong to another user. Since CVE-2022-24765 it refuses a
/// repository not owned by the current user (git's `safe.directory`), and `owner = "app"` makes
/// exactly that: root (tend) opening a checkout chowned to a service user. The check guards
/// against a repository planted in a parent directory being discovered and its config running
/// programs; tend opens only the exact declared path (never discovery), and libgit2 runs no
/// hooks, fsmonitor or filter programs, so disabling it costs nothing here. One process-wide
/// switch, set before the first open.
fn trust_checkouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a global libgit2 option; set once, guarded by `Once`, before this process
        // opens any repository through this path, as libgit2's documentation requires.
        #[allow(unsafe_code)]
        let result = unsafe { git2::opts::set_verify_owner_validation(false) };
        if let Err(e) = result {
            tracing::warn!("cannot relax libgit2's owner check: {e}");
        }
    });
}

fn looks_like_commit(r: &str) -> bool {
    (7..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

impl Spec {
    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let mut tries = 0;
        cb.credentials(move |_url, user, allowed| {
            tries += 1;
            if tries > 3 {
                return Err(git2::Error::from_str(
                    "authentication failed (credentials refused)",
                ));
            }
            if allowed.contains(git2::CredentialType::SSH_KEY) {
                if let Some(key) = &self.ssh_key {
                    return Cred::ssh_key(user.unwrap_or("git"), None, key, None);
                }
            }
            if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                if let Some(var) = &self.token_env {
                    let token = std::env::var(var).map_err(|_| {
                        git2::Error::from_str(&format!(
                            "environment variable {var} (token_env) is not set"
                        ))
                    })?;
                    return Cred::userpass_plaintext("x-access-token", &token);
                }
            }
            Err(git2::Error::from_str(
                "the remote asks for credentials: set ssh_key or token_env",
            ))
        });
        let mut last = Instant::now();
        let label = self.path.display().to_string();
        // Progress as log lines (the agent's -v shows them, -q hides them); a library draws no
        // bar of its own. The run's heartbeat says a long clone is alive either way.
        cb.transfer_progress(move |p| {
            if last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                tracing::info!(checkout = %label, "received {}/{} objects ({} KiB)", p.received_objects(), p.total_objects(), p.received_bytes() / 1024);
            }
            true
        });
        cb
    }

    /// Where `ref` points on the remote (`ls-remote`: nothing is fetched).
    fn remote_target(&self) -> Result<Option<Target>, ResourceError> {
        let mut remote = git2::Remote::create_detached(self.url.as_str())
            .map_err(|e| failed(format!("remote {}: {}", self.url, e.message())))?;
        let conn = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks()), None)
            .map_err(|e| remote_error(&self.url, &e))?;
        let heads = conn
            .list()
            .map_err(|e| failed(format!("cannot list refs of {}: {}", self.url, e.message())))?;
        let find = |name: &str| heads.iter().find(|h| h.name() == name).map(|h| h.oid());
        let r = &self.reference;
        if let Some(oid) =
            find(&format!("refs/tags/{r}^{{}}")).or_else(|| find(&format!("refs/tags/{r}")))
        {
            return Ok(Some(Target {
                kind: RefKind::Tag,
                commit: oid,
            }));
        }
        if let Some(oid) = find(&format!("refs/heads/{r}")) {
            return Ok(Some(Target {
                kind: RefKind::Branch,
                commit: oid,
            }));
        }
        Ok(None)
    }

    /// Where `ref` points in the local repository, if it can be known there.
    fn local_target(&self, repo: &Repository) -> Option<Target> {
        let r = &self.reference;
        if let Ok(c) = repo
            .find_reference(&format!("refs/tags/{r}"))
            .and_then(|t| t.peel_to_commit())
        {
            return Some(Target {
                kind: RefKind::Tag,
                commit: c.id(),
            });
        }
        if let Ok(c) = repo
            .find_reference(&format!("refs/remotes/{}/{r}", self.remote))
            .and_then(|t| t.peel_to_commit())
        {
            return Some(Target {
                kind: RefKind::Branch,
                commit: c.id(),
            });
        }
        if looks_like_commit(r) {
            if let Ok(obj) = repo.revparse_single(r) {
                if let Ok(c) = obj.peel_to_commit() {
                    return Some(Target {
                        kind: RefKind::Commit,
                        commit: c.id(),
                    });
                }
            }
        }
        None
    }

    fn check_pin(&self, target: &Target) -> Result<(), ResourceError> {
        if let Some(pin) = &self.pin {
            if !target.commit.to_string().starts_with(pin.as_str()) {
                let what = match target.kind {
                    RefKind::Tag => "tag",
                    RefKind::Branch => "branch",
                    RefKind::Commit => "ref",
                };
                return Err(failed(format!(
                    "{what} {} now points to {}, expected {pin} (the commit pin); nothing was touched",
                    self.reference,
                    short(target.commit)
                )));
            }
        }
        Ok(())
    }

    /// The commit the checkout should be at, and drift notes about the ref itself.
    fn desired(
        &self,
        repo: Option<&Repository>,
        changes: &mut Vec<Change>,
    ) -> Result<Target, ResourceError> {
        let local = repo.and_then(|r| self.local_target(r));
        let remote = match self.remote_target() {
            Ok(t) => t,
            // Offline, a tag or commit already here still answers; a branch cannot.
            Err(e) => match &local {
                Some(l) if l.kind != RefKind::Branch => {
                    tracing::warn!(checkout = %self.path.display(), "{e}; using the local {}", self.reference);
                    None
                }
                _ => return Err(e),
            },
        };
        let target = match (remote, local) {
            (Some(r), Some(l))
                if r.kind == RefKind::Tag && l.kind == RefKind::Tag && r.commit != l.commit =>
            {
                self.check_pin(&r)?;
                changes.push(Change::new(
                    "tag",
                    Some(format!("{} ({}) here", self.reference, short(l.commit))),
                    Some(format!("{} ({}) upstream", self.reference, short(r.commit))),
                ));
                if let Some(c) = changes.last_mut() {
                    c.description = format!(
                        "tag {} moved upstream: {} here, {} on the remote",
                        self.reference,
                        short(l.commit),
                        short(r.commit)
                    );
                }
                r
            }
            (Some(r), _) => r,
            (None, Some(l)) => l,
            (None, None) if looks_like_commit(&self.reference) => {
                let oid = Oid::from_str(&format!("{:0<40}", self.reference))
                    .map_err(|e| failed(e.message()))?;
                if self.reference.len() < 40 {
                    return Err(failed(format!(
                        "commit {} is not in the checkout yet; give all 40 hex digits so it can be fetched",
                        self.reference
                    )));
                }
                Target {
                    kind: RefKind::Commit,
                    commit: oid,
                }
            }
            (None, None) => {
                return Err(failed(format!(
                    "{} has no tag or branch named {}",
                    self.url, self.reference
                )));
            }
        };
        self.check_pin(&target)?;
        Ok(target)
    }

    /// Tracked files that differ from HEAD, in the work tree or staged.
    ///
    /// git's own method rather than libgit2's status (which walks the whole work tree and costs
    /// 2–3× `git status` on a Dify-sized checkout): compare each index entry's stat data with an
    /// `lstat` of the file, spread over threads, hashing only files whose stat data changed or
    /// that are racily clean; then compare the index entries with HEAD's tree.
    fn modified_files(repo: &Repository) -> Result<Vec<String>, ResourceError> {
        use std::os::unix::fs::MetadataExt;
        let workdir = repo
            .workdir()
            .ok_or_else(|| failed("the repository has no work tree"))?
            .to_path_buf();
        let index = repo
            .index()
            .map_err(|e| failed(format!("reading the index: {}", e.message())))?;
        let index_mtime = std::fs::metadata(repo.path().join("index"))
            .map(|m| (m.mtime(), m.mtime_nsec()))
            .unwrap_or((i64::MAX, 0));
        let entries: Vec<git2::IndexEntry> = index.iter().filter(|e| e.mode != 0o160000).collect();
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let chunk = entries.len().div_ceil(threads).max(1);
        let mut modified: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = entries
                .chunks(chunk)
                .map(|part| {
                    let workdir = &workdir;
                    scope.spawn(move || {
                        part.iter()
                            .filter(|e| Self::entry_differs(workdir, e, index_mtime))
                            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        // Staged changes: index entries against HEAD's tree.
        if let Ok(tree) = repo.head().and_then(|h| h.peel_to_tree()) {
            let mut in_head = std::collections::HashMap::with_capacity(entries.len());
            tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
                if e.kind() == Some(git2::ObjectType::Blob) {
                    in_head.insert(format!("{dir}{}", e.name().unwrap_or("")), e.id());
                }
                git2::TreeWalkResult::Ok
            })
            .map_err(|e| failed(format!("reading HEAD: {}", e.message())))?;
            for e in &entries {
                let path = String::from_utf8_lossy(&e.path).into_owned();
                if in_head.remove(&path) != Some(e.id) && !modified.contains(&path) {
                    modified.push(path);
                }
            }
            // Files in HEAD that the index no longer has were removed with `git rm`.
            modified.extend(in_head.into_keys());
        }
        modified.sort();
        modified.dedup();
        Ok(modified)
    }

    fn entry_differs(workdir: &Path, e: &git2::IndexEntry, index_mtime: (i64, i64)) -> bool {
        use std::os::unix::fs::MetadataExt;
        let path = workdir.join(String::from_utf8_lossy(&e.path).as_ref());
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return true;
        };
        let same_stat = meta.size() as u32 == e.file_size
            && meta.mtime() as i32 == e.mtime.seconds()
            && meta.mtime_nsec() as u32 == e.mtime.nanoseconds()
            && (meta.mode() & 0o100) == (e.mode & 0o100)
            && meta.file_type().is_symlink() == (e.mode & 0o170000 == 0o120000);
        // Racily clean: written in the same instant the index was, so the stat data cannot vouch.
        let racy = (
            i64::from(e.mtime.seconds()),
            i64::from(e.mtime.nanoseconds()),
        ) >= index_mtime;
        if same_stat && !racy {
            return false;
        }
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .map(|t| t.into_os_string().into_encoded_bytes())
                .unwrap_or_default();
            return Oid::hash_object(git2::ObjectType::Blob, &target).ok() != Some(e.id);
        }
        Oid::hash_file(git2::ObjectType::Blob, &path).ok() != Some(e.id)
    }

    /// "1.11.4 (abc1234)" when a tag names the commit, else "abc1234".
    fn describe(repo: &Repository, oid: Oid) -> String {
        let mut name = None;
        if let Ok(tags) = repo.tag_names(None) {
            for t in tags.iter().flatten().flatten() {
                let hit = repo
                    .find_reference(&format!("refs/tags/{t}"))
                    .and_then(|r| r.peel_to_commit())
                    .is_ok_and(|c| c.id() == oid);
                if hit {
                    name = Some(t.to_string());
                    break;
                }
            }
        }
        match name {
            Some(n) => format!("{n} ({})", short(oid)),
            None => short(oid),
        }
    }

    fn files_between(repo: &Repository, a: Oid, b: Oid) -> Option<usize> {
        let ta = repo.find_commit(a).ok()?.tree().ok()?;
        let tb = repo.find_commit(b).ok()?.tree().ok()?;
        Some(
            repo.diff_tree_to_tree(Some(&ta), Some(&tb), None)
                .ok()?
                .stats()
                .ok()?
                .files_changed(),
        )
    }

    /// `plan`: a remote that does not answer makes the check an honest unknown (or, with
    /// nothing checked out yet, a clone whose commit is unknown). Apply's check fails instead:
    /// it cannot clone or fetch from a remote it cannot reach.
    fn check(&self, host: &Probe, plan: bool) -> Result<Drift, ResourceError> {
        match self.check_inner(host, plan) {
            // Plan cannot know where the ref points without the remote: an honest unknown
            // (the network may be back by the time apply runs, which then fails if it is not).
            Err(ResourceError::Failed(m)) if plan && m.starts_with(UNREACHABLE) => {
                Err(ResourceError::Unknown {
                    class: crate::UnknownClass::Unreachable,
                    why: format!("unknown: {m}"),
                })
            }
            other => other,
        }
    }

    fn check_inner(&self, host: &Probe, plan: bool) -> Result<Drift, ResourceError> {
        // Every component vetted (no symlink another user planted) before libgit2 gets a path.
        let real = host
            .resolved(&self.path)?
            .unwrap_or_else(|| host.real(&self.path));
        let mut drift = Drift::none();
        let empty = host
            .read_dir(&self.path)?
            .is_none_or(|names| names.is_empty());
        if empty {
            let mut notes = Vec::new();
            let target = match self.desired(None, &mut notes) {
                // Nothing is there: the clone is certain drift, only its commit is unknown.
                Err(ResourceError::Failed(m)) if plan && m.starts_with(UNREACHABLE) => {
                    drift.push(Change {
                        description: format!(
                            "clone {} at {} (commit unknown: {m})",
                            self.url, self.reference
                        ),
                        ..Change::new("state", Some("absent"), Some(self.reference.clone()))
                    });
                    return Ok(drift);
                }
                other => other?,
            };
            let depth = self
                .depth
                .map(|d| format!(", depth {d}"))
                .unwrap_or_default();
            drift.push(Change {
                description: format!(
                    "clone {} at {} ({}){depth}",
                    self.url,
                    self.reference,
                    short(target.commit)
                ),
                ..Change::new(
                    "state",
                    Some("absent"),
                    Some(format!("{} ({})", self.reference, short(target.commit))),
                )
            });
            return Ok(drift);
        }
        trust_checkouts();
        let repo = Repository::open(&real).map_err(|_| {
            failed(format!(
                "{} exists and is not a git repository; nothing was touched",
                real.display()
            ))
        })?;
        if repo
            .workdir()
            .map(|w| w.canonicalize().ok() != real.canonicalize().ok())
            .unwrap_or(true)
        {
            return Err(failed(format!(
                "{} is inside another repository, not a checkout of its own; nothing was touched",
                real.display()
            )));
        }
        let current_url = repo
            .find_remote(&self.remote)
            .ok()
            .and_then(|r| r.url().ok().map(str::to_string));
        if current_url.as_deref() != Some(self.url.as_str()) {
            drift.push(Change::new(
                "url",
                Some(current_url.unwrap_or_else(|| format!("(no remote {})", self.remote))),
                Some(self.url.clone()),
            ));
        }
        let mut notes = Vec::new();
        let target = self.desired(Some(&repo), &mut notes)?;
        drift.changes.extend(notes);
        let head = repo.head().ok().and_then(|h| h.target());
        if head != Some(target.commit) {
            let from = head.map_or_else(|| "(no commit)".to_string(), |h| Self::describe(&repo, h));
            let mut to = format!("{} ({})", self.reference, short(target.commit));
            let mut description = format!("ref: {from} → {to}");
            if let Some(n) = head.and_then(|h| Self::files_between(&repo, h, target.commit)) {
                description.push_str(&format!(", {n} files change"));
            }
            if repo.find_commit(target.commit).is_err() {
                to.push_str(" (to fetch)");
            }
            drift.push(Change {
                description,
                ..Change::new("ref", Some(from), Some(to))
            });
        } else if target.kind == RefKind::Branch
            && !repo.head().is_ok_and(|h| {
                h.name().ok() == Some(format!("refs/heads/{}", self.reference).as_str())
            })
        {
            drift.push(Change::note(
                "ref",
                format!(
                    "check out branch {} (HEAD is detached at it)",
                    self.reference
                ),
            ));
        }
        let modified = Self::modified_files(&repo)?;
        if !modified.is_empty() {
            drift.push(Change::new(
                "local_changes",
                Some(modified.join(", ")),
                None::<String>,
            ));
            if let Some(c) = drift.changes.last_mut() {
                c.description = format!("local changes in tracked files: {}", modified.join(", "));
            }
        }
        if self.owner.is_some() || self.group.is_some() {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&real)
                .map_err(|e| crate::HostError::new("inspect", real.clone(), e))?;
            if let Some(o) = &self.owner {
                if meta.uid() != host.uid(o)? {
                    drift.push(Change::new(
                        "owner",
                        Some(meta.uid().to_string()),
                        Some(o.clone()),
                    ));
                }
            }
            if let Some(g) = &self.group {
                if meta.gid() != host.gid(g)? {
                    drift.push(Change::new(
                        "group",
                        Some(meta.gid().to_string()),
                        Some(g.clone()),
                    ));
                }
            }
        }
        Ok(drift)
    }

    /// libgit2's local transport (paths, `file://`) cannot fetch shallow.
    fn local_transport(&self) -> bool {
        self.url.starts_with('/') || self.url.starts_with("file://") || self.url.starts_with("./")
    }

    fn fetch(&self, repo: &Repository, target: &Target) -> Result<(), ResourceError> {
        let r = &self.reference;
        let refspec = match target.kind {
            RefKind::Tag => format!("+refs/tags/{r}:refs/tags/{r}"),
            RefKind::Branch => format!("+refs/heads/{r}:refs/remotes/{}/{r}", self.remote),
            RefKind::Commit => format!("+refs/heads/*:refs/remotes/{}/*", self.remote),
        };
        let mut remote = repo
            .find_remote(&self.remote)
            .map_err(|e| failed(e.message()))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks());
        opts.download_tags(git2::AutotagOption::None);
        if let Some(d) = self.depth.filter(|_| !self.local_transport()) {
            opts.depth(d);
        }
        remote
            .fetch(&[refspec.as_str()], Some(&mut opts), None)
            .map_err(|e| match remote_error(&self.url, &e) {
                ResourceError::Failed(m) if m.starts_with(UNREACHABLE) => {
                    failed(format!("fetching {r} from {}: {}", self.url, e.message()))
                }
                other => other,
            })?;
        if repo.find_commit(target.commit).is_err() {
            return Err(failed(format!(
                "{} did not provide commit {}",
                self.url, target.commit
            )));
        }
        Ok(())
    }

    fn checkout(&self, repo: &Repository, target: &Target) -> Result<(), ResourceError> {
        let commit = repo
            .find_commit(target.commit)
            .map_err(|e| failed(e.message()))?;
        let mut co = CheckoutBuilder::new();
        // Force over tracked files only: untracked and ignored files (docker/.env) stay.
        co.force();
        repo.checkout_tree(commit.as_object(), Some(&mut co))
            .map_err(|e| failed(format!("checkout: {}", e.message())))?;
        if target.kind == RefKind::Branch {
            let name = format!("refs/heads/{}", self.reference);
            repo.reference(&name, target.commit, true, "tend: move branch")
                .map_err(|e| failed(e.message()))?;
            repo.set_head(&name).map_err(|e| failed(e.message()))?;
        } else {
            repo.set_head_detached(target.commit)
                .map_err(|e| failed(e.message()))?;
        }
        Ok(())
    }

    /// Keep local changes to tracked files as a patch in the state directory.
    fn save_patch(&self, host: &Mutate, repo: &Repository) -> Result<PathBuf, ResourceError> {
        let head = repo
            .head()
            .and_then(|h| h.peel_to_tree())
            .map_err(|e| failed(e.message()))?;
        let diff = repo
            .diff_tree_to_workdir_with_index(Some(&head), None)
            .map_err(|e| failed(e.message()))?;
        let mut patch = Vec::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                patch.push(line.origin() as u8);
            }
            patch.extend_from_slice(line.content());
            true
        })
        .map_err(|e| failed(e.message()))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name: String = self
            .path
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let dest = host
            .state_dir()
            .join("git-patches")
            .join(format!("{}-{stamp}.patch", name.trim_matches('_')));
        // 0700 and no symlink followed, like every directory of the state directory.
        crate::host::write_state_file(&dest, &patch)?;
        Ok(dest)
    }

    fn apply(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let fresh = host
            .read_dir(&self.path)?
            .is_none_or(|names| names.is_empty());
        if fresh {
            // Parents 0755 and the checkout directory itself, through no untrusted symlink.
            host.create_dir(&self.path, crate::host::Attrs::default())?;
        }
        let real = host
            .resolved(&self.path)?
            .unwrap_or_else(|| host.real(&self.path));
        let repo = if fresh {
            let repo = Repository::init(&real).map_err(|e| failed(e.message()))?;
            repo.remote(&self.remote, &self.url)
                .map_err(|e| failed(e.message()))?;
            repo
        } else {
            trust_checkouts();
            Repository::open(&real).map_err(|_| {
                failed(format!(
                    "{} exists and is not a git repository; nothing was touched",
                    real.display()
                ))
            })?
        };
        let mut notes = Vec::new();
        let target = self.desired(if fresh { None } else { Some(&repo) }, &mut notes)?;
        if !fresh {
            let modified = Self::modified_files(&repo)?;
            if !modified.is_empty() {
                match self.on_local_changes {
                    OnLocalChanges::Fail => {
                        return Err(failed(format!(
                            "local changes in tracked files would be lost: {}; commit, stash or revert them, or set on_local_changes = \"discard\" (they are saved as a patch first)",
                            modified.join(", ")
                        )))
                    }
                    OnLocalChanges::Discard => {
                        let patch = self.save_patch(host, &repo)?;
                        applied.notes.push(format!("local changes to {} saved in {}", modified.join(", "), patch.display()));
                        applied.backups.push(patch);
                    }
                }
            }
            let url_ok = repo
                .find_remote(&self.remote)
                .ok()
                .and_then(|r| r.url().ok().map(str::to_string))
                .as_deref()
                == Some(self.url.as_str());
            if !url_ok {
                if repo.find_remote(&self.remote).is_ok() {
                    repo.remote_set_url(&self.remote, &self.url)
                        .map_err(|e| failed(e.message()))?;
                } else {
                    repo.remote(&self.remote, &self.url)
                        .map_err(|e| failed(e.message()))?;
                }
            }
        }
        if self.depth.is_some() && self.local_transport() {
            applied.notes.push(format!(
                "{} is a local repository, which cannot be fetched shallow: fetched in full",
                self.url
            ));
        }
        let moved_tag = !notes.is_empty();
        if repo.find_commit(target.commit).is_err() || moved_tag || target.kind == RefKind::Branch {
            self.fetch(&repo, &target)?;
        }
        self.checkout(&repo, &target)?;
        if self.owner.is_some() || self.group.is_some() {
            let uid = self.owner.as_deref().map(|o| host.uid(o)).transpose()?;
            let gid = self.group.as_deref().map(|g| host.gid(g)).transpose()?;
            chown_tree(&real, uid, gid)?;
        }
        Ok(applied)
    }
}

// A checkout tend just cloned or fetched, walked without following symlinks (lchown); libgit2 owns the tree's layout. Not fd-based yet: see docs/security.md.
#[allow(clippy::disallowed_methods)]
fn chown_tree(dir: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<(), ResourceError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        std::os::unix::fs::lchown(&d, uid, gid)
            .map_err(|e| crate::HostError::new("change the owner of", d.clone(), e))?;
        if d.is_dir() && !d.is_symlink() {
            for e in std::fs::read_dir(&d)
                .map_err(|e| crate::HostError::new("list", d.clone(), e))?
                .flatten()
            {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Resource for Git {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.spec.path.clone()]
    }

    fn contains_paths(&self) -> bool {
        true
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        self.checked(host, true).await
    }

    async fn check_for_apply(&self, host: &Mutate) -> Result<Drift, ResourceError> {
        self.checked(host.probe(), false).await
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
    async fn checked(&self, host: &Probe, plan: bool) -> Result<Drift, ResourceError> {
        let spec = self.spec.clone();
        let host = host.clone();
        let result = tokio::task::spawn_blocking(move || spec.check(&host, plan))
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

/// A URL with its userinfo (`user:token@`) replaced: credentials in a git URL never reach
/// output, reports or logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let scheme = &url[..scheme_end];
    match rest[..authority_end].rfind('@') {
        // An SSH user name is no secret (`ssh://git@host`); over HTTP the user part is often the
        // token itself, and `user:password` is a secret in any scheme.
        Some(at) if scheme != "ssh" || rest[..at].contains(':') => {
            format!("{scheme}://***@{}", &rest[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// `text` with the manifest's URL (and any URL's userinfo) redacted.
fn scrub_credentials(text: &str, url: &str) -> String {
    let shown = redact_url(url);
    let mut out = if shown != url {
        text.replace(url, &shown)
    } else {
        text.to_string()
    };
    // A URL git echoed back in another form (a redirect, a remote's stored URL).
    let mut from = 0;
    while let Some(i) = out[from..].find("://") {
        let start = from + i + 3;
        let end = out[start..]
            .find(|c: char| c == '/' || c.is_whitespace())
            .map_or(out.len(), |e| start + e);
        let scheme_start = out[..start - 3]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map_or(0, |i| i + 1);
        let ssh = &out[scheme_start..start - 3] == "ssh";
        match out[start..end].rfind('@') {
            Some(at)
                if !out[start..start + at].starts_with("***")
                    && (!ssh || out[start..start + at].contains(':')) =>
            {
                out.replace_range(start..start + at, "***");
                from = start + 4;
            }
            _ => from = end,
        }
    }
    out
}

fn scrub_error(e: ResourceError, url: &str) -> ResourceError {
    match e {
        ResourceError::Failed(m) => ResourceError::Failed(scrub_credentials(&m, url)),
        ResourceError::Missing(m) => ResourceError::Missing(scrub_credentials(&m, url)),
        ResourceError::Unknown { class, why } => ResourceError::Unknown {
            class,
            why: scrub_credentials(&why, url),
        },
        ResourceError::Host(h) => ResourceError::Failed(scrub_credentials(&h.to_string(), url)),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://oauth2:glpat-SECRET@git.example/x.git"),
            "https://***@git.example/x.git"
        );
        assert_eq!(redact_url("/srv/git/x.git"), "/srv/git/x.git");
        assert_eq!(redact_url("ssh://git@host/x"), "ssh://git@host/x");
        assert_eq!(redact_url("ssh://git:pw@host/x"), "ssh://***@host/x");
        assert_eq!(redact_url("https://TOKEN@host/x"), "https://***@host/x");
        let msg = "cannot reach https://u:tok@h/x.git (and https://a:b@other/y)";
        let out = scrub_credentials(msg, "https://u:tok@h/x.git");
        assert!(!out.contains("tok") && !out.contains("a:b"), "{out}");
    }
}
