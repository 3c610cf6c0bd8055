//! The provider contract: every resource kind implements [`Resource`], and registers a
//! constructor in [`crate::KINDS`].
//!
//! `check` reads the host through a [`Probe`] and returns a [`Drift`]; it never changes
//! anything. `apply` receives a [`Mutate`] and the drift that check found, and changes only
//! that. The engine checks again after `apply`: drift that remains is a failure ("did not
//! converge"), so a provider never has to verify itself. `refresh` is what a notification does
//! (reload, restart); most kinds have none.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::change::Drift;
use crate::host::{HostError, Mutate, Probe};
use crate::spec::{Fields, SpecError};

/// Why a check, an apply or a refresh failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    #[error(transparent)]
    /// A host operation failed (it names the operation and the path).
    Host(#[from] HostError),
    /// A program tend ran did not do what it was run for: it could not start, was not
    /// installed, ran out of time, was stopped with tend, or exited with a failure (its words).
    #[error("{0}")]
    Command(String),
    /// What is on the host is in the way, and tend will not replace or remove it unasked: a
    /// directory where a link goes, a uid another user has, a unit file masking would replace.
    #[error("{0}")]
    Refused(String),
    /// Content tend reads or would write is not valid in its format: a `.env` compose would
    /// reject, YAML that does not parse, a block with no end, a candidate its validator refused.
    #[error("{0}")]
    Invalid(String),
    /// The Docker engine refused or failed a request.
    #[error("{0}")]
    Docker(String),
    /// Any other failure, described for the operator.
    #[error("{0}")]
    Failed(String),
    /// A remote did not answer (a git server): plan reports it as unknown (class unreachable),
    /// since the network may be back when apply runs; apply fails with it. The text says which
    /// remote and why, for the operator.
    #[error("{0}")]
    Unreachable(String),
    /// What the check reads is not there (a `source` file, a checkout): in a plan, when a
    /// dependency of this resource would change, this is an honest unknown rather than a failure.
    #[error("{0}")]
    Missing(String),
    /// Plan cannot know without doing something it must not do (run a guard that may have
    /// effects) or without a remote it cannot reach: reported as unknown, with its class, never
    /// guessed and never counted as drift.
    #[error("{why}")]
    Unknown {
        /// Why it could not be known: for machines.
        class: UnknownClass,
        /// Why, for the operator.
        why: String,
    },
}

impl ResourceError {
    /// What kind of failure it is, for machines (the report's `error_class`): `host`,
    /// `command`, `refused`, `invalid`, `docker`, `unreachable`, `missing`, `unknown`, `failed`.
    pub fn class(&self) -> &'static str {
        match self {
            ResourceError::Host(_) => "host",
            ResourceError::Command(_) => "command",
            ResourceError::Refused(_) => "refused",
            ResourceError::Invalid(_) => "invalid",
            ResourceError::Docker(_) => "docker",
            ResourceError::Failed(_) => "failed",
            ResourceError::Unreachable(_) => "unreachable",
            ResourceError::Missing(_) => "missing",
            ResourceError::Unknown { .. } => "unknown",
        }
    }
}

/// Why a check could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownClass {
    /// A remote (git server) did not answer.
    Unreachable,
    /// A guard (`unless`, `onlyif`) that plan must not run.
    GuardNotRun,
}

/// What apply or refresh did, beyond the changes themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Old contents kept in the state directory before they were replaced or removed.
    pub backups: Vec<PathBuf>,
    /// Anything else the operator should read (command output, created parents).
    pub notes: Vec<String>,
}

#[async_trait]
/// A resource kind's provider: what it manages, how it checks, applies and refreshes.
pub trait Resource: Send + Sync + std::fmt::Debug {
    /// The host paths this resource manages: a resource whose path lies inside one of them is
    /// ordered after it automatically.
    fn paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Files this resource edits in part (a line, a marked block), shared with other such
    /// editors: the engine runs the editors of one file in manifest order, each after the file's
    /// owner, and plans each from what the one before it leaves (`after_apply`).
    fn edits(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Names of what this resource makes besides paths (`user:alice`, `group:ops`): a resource
    /// that [`needs`](Resource::needs) one is ordered after it automatically.
    fn provides(&self) -> Vec<String> {
        Vec::new()
    }

    /// Names of what this resource uses that another may make (a user's groups, a group's
    /// members): ordered after the resource that [`provides`](Resource::provides) each.
    fn needs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the content of the files this resource manages is left to others (a `file` that
    /// sets only mode and owner): only then may a `line` or a `block` edit one of them, else the
    /// two would undo each other on every run.
    fn shares_content(&self) -> bool {
        false
    }

    /// Host paths this resource reads but does not manage (a compose project's directory and
    /// `.env`): it is ordered after whichever resource manages them, or a directory holding them.
    fn reads(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Whether a path inside this resource's paths depends on it (true for directories and
    /// checkouts; false for plain files, which contain nothing).
    fn contains_paths(&self) -> bool {
        false
    }

    /// For a resource that would change (its check's `observed` in hand): what `path`, inside
    /// what it manages, holds once it has applied, as far as can be read without changing
    /// anything; `None` when there is no telling. Plan checks the dependents of a moving
    /// checkout against it, so they stay exact where the target can be read.
    fn after_apply(
        &self,
        _host: &Probe,
        _observed: &std::collections::BTreeMap<String, serde_json::Value>,
        _path: &Path,
    ) -> Option<After> {
        None
    }

    /// What `tend check` should warn about this resource on this host (its root), without
    /// running anything: a manifest that is valid but likely wrong there.
    fn lints(&self, _host: &Probe) -> Vec<String> {
        Vec::new()
    }

    /// Read the host and say what differs from the manifest. Never changes the host: it is all
    /// `plan` ever calls, with a handle that cannot write.
    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError>;

    /// The check apply makes, before and after applying: by default [`Resource::check`]. A kind
    /// that can only know with a step plan must not take (an `exec` guard that may have effects)
    /// or that keeps a record of what it saw (a compose project adopted as running) overrides
    /// this — it is handed a `Mutate`, which plan never has.
    async fn check_for_apply(&self, host: &Mutate) -> Result<Drift, ResourceError> {
        self.check(host.probe()).await
    }

    /// Change the host so that `drift` is gone.
    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError>;

    /// The second half of an apply, once every write of the wave is durable and visible (the
    /// engine commits a wave's writes together) and before the verifying check: what must see
    /// the files written — systemd's one daemon-reload for all the unit files of the wave, then
    /// the starts. Called only when [`Resource::apply`] succeeded; most kinds have nothing here.
    async fn settle(&self, _host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        Ok(Applied::default())
    }

    /// Whether this resource's notify targets are refreshed even when its apply fails: an audited
    /// certificate cannot renew itself, but can kick the container that renews it.
    fn notifies_on_failure(&self) -> bool {
        false
    }

    /// Whether [`Resource::refresh`] does anything, so notifying this resource makes sense.
    fn refreshable(&self) -> bool {
        false
    }

    /// What a notification from a changed resource does.
    async fn refresh(&self, _host: &Mutate) -> Result<Applied, ResourceError> {
        Ok(Applied::default())
    }
}

/// What a path holds once a resource has applied ([`Resource::after_apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// What it holds now.
    Same,
    /// These bytes.
    Bytes(Vec<u8>),
    /// Nothing: the apply removes it.
    Absent,
}

/// A resource kind: its name in manifests, one line for `--help` and docs, and its constructor.
pub struct Kind {
    /// The kind's name in manifests (`[NAME.x]`).
    pub name: &'static str,
    /// One line for `--help` and docs.
    pub summary: &'static str,
    /// Build a resource from its manifest table.
    pub build: fn(&mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError>,
    /// How `--prune` removes one that left the manifest; `None`: tend never removes this kind
    /// (a package, a checkout, a volume hold what removing would lose).
    pub prune: Option<crate::prune::Prune>,
}
