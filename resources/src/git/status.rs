//! What a checkout holds: tracked files changed by hand (from the index, without git's own
//! status walk), and how two commits are named and compared.

// The work tree is read as libgit2 reads it, by path, on the thread acting as the checkout's
// owner (see `as_owner`): the kernel refuses what the owner could not read.
#![allow(clippy::disallowed_methods)]

use super::*;

impl Spec {
    /// Tracked files that differ from HEAD, in the work tree or staged.
    ///
    /// git's own method rather than libgit2's status (which walks the whole work tree and costs
    /// 2–3× `git status` on a Dify-sized checkout): compare each index entry's stat data with an
    /// `lstat` of the file, spread over threads, hashing only files whose stat data changed or
    /// that are racily clean; then compare the index entries with HEAD's tree.
    pub(super) fn modified_files(repo: &Repository) -> Result<Vec<String>, ResourceError> {
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
        let threads = crate::process::cpus().clamp(1, 8);
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

    pub(super) fn entry_differs(
        workdir: &Path,
        e: &git2::IndexEntry,
        index_mtime: (i64, i64),
    ) -> bool {
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
    pub(super) fn describe(repo: &Repository, oid: Oid) -> String {
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

    pub(super) fn files_between(repo: &Repository, a: Oid, b: Oid) -> Option<usize> {
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
}
