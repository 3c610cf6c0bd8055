//! The policy repository: a bare cache under `STATE/pull/repo.git` that each run fetches one ref
//! into (libgit2 negotiates: when nothing changed, no object crosses the wire), and the export of
//! one commit's tree to a directory the manifest is loaded from.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use git2::{FetchOptions, Oid, Repository};

/// Where the fetched ref is kept in the cache.
const FETCHED: &str = "refs/tend/fetched";

/// How to reach the policy server.
pub(super) struct Source<'a> {
    pub url: &'a str,
    pub reference: &'a str,
    pub ssh_key: Option<&'a Path>,
    pub token_env: Option<&'a str>,
}

/// The cache, made on first use (mode 0700, in the state directory).
pub(super) fn open(dir: &Path) -> Result<Repository, String> {
    if dir.join("HEAD").is_file() {
        return Repository::open_bare(dir)
            .map_err(|e| format!("the policy cache {}: {}", dir.display(), e.message()));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot make the policy cache {}: {e}", dir.display()))?;
    Repository::init_bare(dir).map_err(|e| {
        format!(
            "cannot make the policy cache {}: {}",
            dir.display(),
            e.message()
        )
    })
}

/// What a fetch brought.
pub(super) struct Fetched {
    pub commit: Oid,
    /// Bytes received (0 for a no-op fetch).
    pub bytes: usize,
}

/// Fetch `reference` (a branch, else a tag) into the cache; the commit it points to.
pub(super) fn fetch(repo: &Repository, src: &Source<'_>) -> Result<Fetched, String> {
    if let Some(path) = local_path(src.url) {
        return fetch_local(repo, path, src.reference);
    }
    tend_resources::git::tls::before_use(src.url);
    let url = tend_resources::git::redact_url(src.url);
    let mut remote = repo
        .remote_anonymous(src.url)
        .map_err(|e| format!("{url}: {}", e.message()))?;
    let mut last = Err(String::new());
    for spec in [
        format!("+refs/heads/{}:{FETCHED}", src.reference),
        format!("+refs/tags/{}:{FETCHED}", src.reference),
    ] {
        let mut opts = FetchOptions::new();
        let mut callbacks = tend_resources::git::credential_callbacks(src.ssh_key, src.token_env);
        // The server is not trusted until its commit verifies: what it may send has a budget,
        // in bytes and in objects (a pack of millions of tiny deltas is work before any check).
        callbacks.transfer_progress(|p| {
            p.received_bytes() <= MAX_FETCH && p.total_objects() <= MAX_OBJECTS
        });
        opts.remote_callbacks(callbacks)
            .download_tags(git2::AutotagOption::None);
        match remote.fetch(&[spec.as_str()], Some(&mut opts), None) {
            Ok(()) => {
                let stats = remote.stats();
                let bytes = stats.received_bytes();
                // libgit2 skips an object it cannot inflate (an allocation refused) and leaves
                // the ref unwritten: say why, not that the ref is missing.
                if stats.indexed_objects() < stats.total_objects() {
                    return Err(format!(
                        "cannot fetch {} from {url}: {} of the {} objects the server sent could \
                         not be indexed ({UNINDEXED})",
                        src.reference,
                        stats.total_objects() - stats.indexed_objects(),
                        stats.total_objects()
                    ));
                }
                let commit = repo
                    .find_reference(FETCHED)
                    .and_then(|r| r.peel_to_commit())
                    .map_err(|e| format!("{url}: {}", e.message()))?
                    .id();
                return Ok(Fetched { commit, bytes });
            }
            Err(e) => {
                // libgit2 calls a local path that is not there an "unsupported URL protocol".
                let msg = if e.message().contains("unsupported URL protocol")
                    && !src.url.contains("://")
                {
                    "no repository at this path"
                } else {
                    e.message()
                };
                let msg = if remote.stats().received_bytes() > MAX_FETCH {
                    format!("the server sent more than {} MiB", MAX_FETCH >> 20)
                } else if remote.stats().total_objects() > MAX_OBJECTS {
                    format!("the server sent more than {MAX_OBJECTS} objects")
                } else {
                    msg.to_string()
                };
                last = Err(format!("cannot fetch {} from {url}: {msg}", src.reference));
            }
        }
    }
    last
}

/// The repository path of a plain path or `file://` URL: fetched without libgit2's local
/// transport, which reads every ref's objects (a malformed commit pushed to any other branch
/// failed every host's fetch of this one).
fn local_path(url: &str) -> Option<&Path> {
    match url.strip_prefix("file://") {
        Some(path) => Some(Path::new(path)),
        None if url.starts_with('/') || url.starts_with('.') => Some(Path::new(url)),
        None => None,
    }
}

/// Copy into the cache exactly the objects `reference` reaches that the cache lacks (a pack
/// built from a walk of that ref alone), within the fetch budget.
fn fetch_local(repo: &Repository, path: &Path, reference: &str) -> Result<Fetched, String> {
    let shown = path.display();
    let cannot = |why: String| format!("cannot fetch {reference} from {shown}: {why}");
    let src = Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|_| cannot("no repository at this path".into()))?;
    let commit = [
        format!("refs/heads/{reference}"),
        format!("refs/tags/{reference}"),
    ]
    .iter()
    .find_map(|name| src.find_reference(name).ok())
    .ok_or_else(|| cannot("no such branch or tag".into()))?
    .peel_to_commit()
    .map_err(|e| cannot(e.message().to_string()))?
    .id();
    let mut bytes = 0;
    if repo.find_commit(commit).is_err() {
        let mut walk = src.revwalk().map_err(|e| cannot(e.message().into()))?;
        walk.push(commit).map_err(|e| cannot(e.message().into()))?;
        // What the cache already holds is not sent again (when the source still has it).
        if let Ok(have) = repo.refname_to_id(FETCHED) {
            if src.find_commit(have).is_ok() {
                walk.hide(have).map_err(|e| cannot(e.message().into()))?;
            }
        }
        let mut pack = src.packbuilder().map_err(|e| cannot(e.message().into()))?;
        pack.insert_walk(&mut walk)
            .map_err(|e| cannot(e.message().into()))?;
        if pack.object_count() > MAX_OBJECTS {
            return Err(cannot(format!(
                "the ref reaches more than {MAX_OBJECTS} objects"
            )));
        }
        let odb = repo.odb().map_err(|e| cannot(e.message().into()))?;
        let mut writer = odb.packwriter().map_err(|e| cannot(e.message().into()))?;
        let mut failed = None;
        pack.foreach(|chunk| {
            bytes += chunk.len();
            if bytes > MAX_FETCH {
                failed = Some(format!(
                    "the repository sent more than {} MiB",
                    MAX_FETCH >> 20
                ));
                return false;
            }
            match writer.write_all(chunk) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e.to_string());
                    false
                }
            }
        })
        .map_err(|e| cannot(failed.clone().unwrap_or_else(|| e.message().into())))?;
        if let Some(why) = failed {
            return Err(cannot(why));
        }
        writer.commit().map_err(|e| cannot(e.message().into()))?;
    }
    repo.reference(FETCHED, commit, true, "tend pull")
        .map_err(|e| cannot(e.message().into()))?;
    Ok(Fetched { commit, bytes })
}

/// Whether `commit` is `ancestor` or descends from it.
pub(super) fn descends(repo: &Repository, commit: Oid, ancestor: Oid) -> bool {
    commit == ancestor || repo.graph_descendant_of(commit, ancestor).unwrap_or(false)
}

/// A commit object's bytes, as git hashed them (what its signature is read from).
pub(super) fn raw_commit(repo: &Repository, commit: Oid) -> Result<Vec<u8>, String> {
    let odb = repo
        .odb()
        .map_err(|e| format!("the policy cache: {}", e.message()))?;
    let object = odb
        .read(commit)
        .map_err(|e| format!("commit {commit}: {}", e.message()))?;
    if object.kind() != git2::ObjectType::Commit {
        return Err(format!("{commit} is not a commit"));
    }
    Ok(object.data().to_vec())
}

/// The value of trailer `key` in the commit's message (the signed content).
pub(super) fn trailer(repo: &Repository, commit: Oid, key: &str) -> Option<String> {
    let c = repo.find_commit(commit).ok()?;
    let msg = c.message().ok()?;
    let trailers = git2::message_trailers_strs(msg).ok()?;
    let found = trailers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim().to_string());
    found
}

/// The commit's time (seconds since the epoch) and its first line.
pub(super) fn describe(repo: &Repository, commit: Oid) -> (i64, String) {
    repo.find_commit(commit)
        .map(|c| {
            (
                c.time().seconds(),
                c.summary().ok().flatten().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

/// Why objects a fetch received were not indexed, as far as tend can tell.
pub(super) const UNINDEXED: &str =
    "one inflates past what the fetch may allocate, or the pack is broken";

/// What one fetch may receive: a repository of manifests, not of everything.
const MAX_FETCH: usize = 256 << 20;
/// Objects one fetch may bring.
const MAX_OBJECTS: usize = 1_000_000;

/// Budgets for a policy tree: a repository of manifests, not of everything.
const MAX_FILES: usize = 10_000;
const MAX_BYTES: usize = 256 << 20;

/// Write `commit`'s tree to `dir` (made afresh, 0700; files 0600): the manifest and the templates
/// and files it names resolve inside it. A symlink or submodule in the tree is refused: a link
/// could lead the manifest outside the verified commit.
pub(super) fn export(repo: &Repository, commit: Oid, dir: &Path) -> Result<(), String> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| format!("commit {commit}: {}", e.message()))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mkdir = |p: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    mkdir(dir)?;
    let mut files = 0;
    let mut bytes = 0;
    let mut failure = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
        let name = entry.name().unwrap_or("");
        // git never writes such names, but a server may send any tree: nothing may climb out of
        // the export or hide as git metadata.
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name == ".git" {
            failure = Some(format!(
                "{parent}{name:?} is not a file name a policy tree may hold"
            ));
            return git2::TreeWalkResult::Abort;
        }
        let rel: PathBuf = Path::new(parent).join(name);
        let path = dir.join(&rel);
        let result = match entry.filemode() {
            0o040000 => mkdir(&path),
            0o100644 | 0o100755 => (|| {
                files += 1;
                let blob = repo
                    .find_blob(entry.id())
                    .map_err(|e| format!("{}: {}", rel.display(), e.message()))?;
                bytes += blob.size();
                if files > MAX_FILES || bytes > MAX_BYTES {
                    return Err(format!(
                        "the policy tree is larger than {MAX_FILES} files or {} MiB",
                        MAX_BYTES >> 20
                    ));
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc_nofollow())
                    .open(&path)
                    .and_then(|mut f| f.write_all(blob.content()))
                    .map_err(|e| format!("{}: {e}", path.display()))
            })(),
            0o120000 => Err(format!(
                "{} is a symlink; tend pull does not follow links in a policy tree",
                rel.display()
            )),
            _ => Err(format!(
                "{} is a submodule; a policy tree holds files only",
                rel.display()
            )),
        };
        match result {
            Ok(()) => git2::TreeWalkResult::Ok,
            Err(e) => {
                failure = Some(e);
                git2::TreeWalkResult::Abort
            }
        }
    })
    .ok();
    match failure {
        Some(e) => Err(format!("commit {commit}: {e}")),
        None => Ok(()),
    }
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}
