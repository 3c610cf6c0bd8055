//! Apply: clone or fetch, save and discard local changes when asked, check out, set owners.

use super::*;

impl Spec {
    pub(super) fn checkout(&self, repo: &Repository, target: &Target) -> Result<(), ResourceError> {
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

    /// Local changes to tracked files, as a patch (read as the checkout's owner).
    pub(super) fn local_patch(repo: &Repository) -> Result<Vec<u8>, ResourceError> {
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
        Ok(patch)
    }

    /// Keep a patch of local changes in the state directory (written as root: the state
    /// directory is tend's).
    pub(super) fn save_patch(&self, host: &Mutate, patch: &[u8]) -> Result<PathBuf, ResourceError> {
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
        host.write_state_file(&dest, patch)?;
        Ok(dest)
    }

    pub(super) fn apply(&self, host: &Mutate) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        let ids = self.owner_ids(host)?;
        self.refuse_shared_parents(host, ids)?;
        self.load_key()?;
        trust_checkouts();
        let fresh = host
            .read_dir(&self.path)?
            .is_none_or(|names| names.is_empty());
        if fresh {
            // Parents 0755 and the checkout directory itself, through no untrusted symlink;
            // the owner's from the start, so that what is written in it is written as them.
            host.create_dir(
                &self.path,
                crate::host::Attrs {
                    uid: ids.map(|(u, _)| u),
                    gid: ids.map(|(_, g)| g),
                    mode: None,
                },
            )?;
        }
        let real = host
            .resolved(&self.path)?
            .unwrap_or_else(|| host.real(&self.path));
        // Everything libgit2 reads or writes in the checkout: as its owner.
        let owner = AsOwner::enter(ids)?;
        let repo = if fresh {
            let repo = Repository::init(&real).map_err(|e| failed(e.message()))?;
            repo.remote(&self.remote, &self.url)
                .map_err(|e| failed(e.message()))?;
            repo
        } else {
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
                        let patch_bytes = Self::local_patch(&repo)?;
                        drop(owner);
                        let patch = self.save_patch(host, &patch_bytes)?;
                        applied.notes.push(format!("local changes to {} saved in {}", modified.join(", "), patch.display()));
                        applied.backups.push(patch);
                        return self.finish(host, &repo, &target, notes, ids, applied);
                    }
                }
            }
        }
        drop(owner);
        self.finish(host, &repo, &target, notes, ids, applied)
    }

    /// The checkout brought to `target` (as its owner), then its ownership set (as root, by
    /// fds).
    fn finish(
        &self,
        host: &Mutate,
        repo: &Repository,
        target: &Target,
        notes: Vec<Change>,
        ids: Option<(u32, u32)>,
        mut applied: Applied,
    ) -> Result<Applied, ResourceError> {
        {
            let _owner = AsOwner::enter(ids)?;
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
            remove_url_rewrites(repo)?;
            if self.depth.is_some() && self.local_transport() {
                applied.notes.push(format!(
                    "{} is a local repository, which cannot be fetched shallow: fetched in full",
                    self.url
                ));
            }
            let moved_tag = !notes.is_empty();
            if repo.find_commit(target.commit).is_err()
                || moved_tag
                || target.kind == RefKind::Branch
            {
                self.fetch(repo, target)?;
            }
            self.checkout(repo, target)?;
        }
        if self.owner.is_some() || self.group.is_some() {
            let uid = self.owner.as_deref().map(|o| host.uid(o)).transpose()?;
            let gid = self.group.as_deref().map(|g| host.gid(g)).transpose()?;
            host.chown_tree(&self.path, uid, gid)?;
        }
        Ok(applied)
    }
}
