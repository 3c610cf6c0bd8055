//! The check: where the checkout is against where the manifest wants it.

use super::*;

/// What a look at the checkout found.
enum Seen {
    /// Where it is against the manifest.
    Drift(Drift),
    /// The remote did not answer (`why` says which and why); `empty`: nothing is
    /// checked out yet.
    Unreachable { empty: bool, why: String },
}

impl Spec {
    /// What plan says: a remote that does not answer makes the check an honest unknown (the
    /// network may be back by the time apply runs, which then fails if it is not), or, with
    /// nothing checked out yet, a clone that is certain whose commit is unknown.
    pub(super) fn plan_check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        match self.look(host)? {
            Seen::Drift(d) => Ok(d),
            Seen::Unreachable { empty: true, why } => {
                let mut drift = Drift::none();
                drift.push(Change {
                    description: format!(
                        "clone {} at {} (commit unknown: {why})",
                        self.url, self.reference
                    ),
                    ..Change::created("state", self.reference.clone())
                });
                Ok(drift)
            }
            Seen::Unreachable { empty: false, why } => Err(ResourceError::Unknown {
                class: crate::UnknownClass::Unreachable,
                why: format!("unknown: {why}"),
            }),
        }
    }

    /// What apply's check says: it cannot clone or fetch from a remote it cannot reach.
    pub(super) fn apply_check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        match self.look(host)? {
            Seen::Drift(d) => Ok(d),
            Seen::Unreachable { why, .. } => Err(failed(why)),
        }
    }

    /// The checkout against the manifest, or that the remote did not answer (and whether
    /// nothing is checked out yet).
    fn look(&self, host: &Probe) -> Result<Seen, ResourceError> {
        match self.check_inner(host) {
            Err(ResourceError::Unreachable(why)) => {
                let empty = host
                    .read_dir(&self.path)?
                    .is_none_or(|names| names.is_empty());
                Ok(Seen::Unreachable { empty, why })
            }
            other => other.map(Seen::Drift),
        }
    }

    fn check_inner(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let ids = self.owner_ids(host)?;
        self.refuse_shared_parents(host, ids)?;
        self.load_key()?;
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
            let target = self.desired(None, &mut notes)?;
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
                ..Change::created(
                    "state",
                    format!("{} ({})", self.reference, short(target.commit)),
                )
            });
            return Ok(drift);
        }
        trust_checkouts();
        // The checkout is read as its owner: a link in it leads nowhere they could not read.
        let _owner = AsOwner::enter(ids)?;
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
        for rewrite in url_rewrites(&repo) {
            // git (and libgit2's fetch) would fetch from the rewritten URL instead: a user who
            // owns the checkout could point every later update at a server that never has the
            // commit. The manifest's URL is the only one tend fetches from.
            drift.push(Change {
                description: format!(
                    "url: .git/config rewrites it ({rewrite}); remove the rewrite"
                ),
                ..Change::new("url", Some(rewrite), None::<String>)
            });
        }
        let mut notes = Vec::new();
        let target = self.desired(Some(&repo), &mut notes)?;
        drift.changes.extend(notes);
        let head = repo.head().ok().and_then(|h| h.target());
        if head != Some(target.commit) {
            // What the checkout would move to: dependents whose files do not move stay exact.
            drift.observed.insert(
                TARGET_COMMIT.into(),
                serde_json::Value::String(target.commit.to_string()),
            );
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
            if self.on_local_changes == OnLocalChanges::Fail {
                drift.will_fail = Some(format!(
                    "local changes in tracked files would be lost: {}; apply stops here (on_local_changes = \"fail\"): commit, stash or revert them, or set on_local_changes = \"discard\"",
                    modified.join(", ")
                ));
            }
        }
        if self.owner.is_some() || self.group.is_some() {
            use std::os::unix::fs::MetadataExt;
            let meta = host.metadata(&self.path)?.ok_or_else(|| {
                crate::HostError::new(
                    "inspect",
                    real.clone(),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                )
            })?;
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
}
