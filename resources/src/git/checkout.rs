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

    /// Keep local changes to tracked files as a patch in the state directory.
    pub(super) fn save_patch(
        &self,
        host: &Mutate,
        repo: &Repository,
    ) -> Result<PathBuf, ResourceError> {
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

    pub(super) fn apply(&self, host: &Mutate) -> Result<Applied, ResourceError> {
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
