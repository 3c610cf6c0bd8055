//! Partial edits of a file others own too (a package's config, a file another tool writes): the
//! `line` and `block` kinds. What they share lives here: reading the file within a budget,
//! planning the edit as a diff of exactly the edited lines, validating the candidate before it
//! replaces the live file, and writing it atomically with a backup.
//!
//! Several edits may name one file: the engine runs them one after another in manifest order,
//! and plan predicts each from the one before it, so the plan of five `line`s on
//! `/etc/ssh/sshd_config` is the one file apply writes.

pub mod block;
pub mod line;
pub mod text;
pub mod validate;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::change::{Change, Drift};
use crate::host::{fmt_mode, Attrs, Mutate, Probe, DEFAULT_FILE_MODE};
use crate::resource::{Applied, Resource, ResourceError};
use crate::spec::{Fields, Span, SpecError};
use validate::Validate;

/// The largest file an edit reads: a partial edit of a file larger than this is refused, not
/// loaded (twice) into memory.
pub const MAX_EDITED: u64 = 16 << 20;

/// The file an edit works on and how.
#[derive(Debug)]
pub struct Target {
    pub(crate) path: PathBuf,
    /// Create the file when it does not exist (else that is a failure).
    pub(crate) create: bool,
    /// Checked on a private copy before the live file is replaced.
    pub(crate) validate: Option<Validate>,
    /// What the edit writes holds a secret: no diff, no validator output.
    pub(crate) sensitive: bool,
}

impl Target {
    /// `path`, `create` and `validate` of an edit's table.
    pub(crate) fn from_fields(f: &mut Fields<'_>) -> Result<Target, SpecError> {
        let (path, _) = f.required_path("path")?;
        let create = f.bool("create")?.unwrap_or(false);
        let validate = Validate::from_fields(f)?;
        Ok(Target {
            path,
            create,
            validate,
            sensitive: false,
        })
    }

    /// The file as it is now: `None` when it does not exist and may be created. A symlink, a
    /// directory or a file over the budget in its place is a failure.
    pub(crate) fn current(&self, host: &Probe) -> Result<Option<Vec<u8>>, ResourceError> {
        let meta = crate::file::regular_file(host, &self.path)?;
        if meta.as_ref().is_some_and(|m| m.len() > MAX_EDITED) {
            return Err(ResourceError::Refused(format!(
                "{} is larger than {} MiB; tend edits lines and blocks only of files up to that size",
                host.real(&self.path).display(),
                MAX_EDITED >> 20
            )));
        }
        match host.read_limited(&self.path, MAX_EDITED)? {
            Some(b) => Ok(Some(b)),
            None if self.create => Ok(None),
            None => Err(ResourceError::Missing(format!(
                "{} does not exist (set create = true to create it)",
                host.real(&self.path).display()
            ))),
        }
    }

    /// The drift from `old` (`None`: no file yet) to `new`, with the diff of the edited lines;
    /// then the validator on `new`, whose refusal is a failure planned as one.
    pub(crate) async fn drift(
        &self,
        what: &str,
        old: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        if old == Some(new) {
            return Ok(drift);
        }
        let shown = self.path.to_string_lossy();
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let change = match old {
            None => Change::created("state", "present").described(format!(
                "create (mode {}) with the {what}",
                fmt_mode(DEFAULT_FILE_MODE)
            )),
            Some(old) => Change::new(
                "content",
                Some(format!("{} bytes", old.len())),
                Some(format!("{} bytes", new.len())),
            )
            .described(what.to_string()),
        };
        let change = if self.sensitive {
            Change {
                sensitive: true,
                old: None,
                new: None,
                ..change
            }
        } else {
            let old = lossy(old.unwrap_or_default());
            change.with_diff(&shown, &old, &lossy(new))
        };
        drift.push(change);
        if let Some(v) = &self.validate {
            if let Err(why) = v.run(&self.path, new, self.sensitive).await {
                drift.will_fail = Some(why);
            }
        }
        Ok(drift)
    }

    /// Write `new` over the file (read again under the run's lock: an edit before this one may
    /// have changed it), validated first; the old content is backed up.
    pub(crate) async fn write(
        &self,
        host: &Mutate,
        edit: impl Fn(&[u8]) -> Result<Vec<u8>, ResourceError>,
    ) -> Result<Applied, ResourceError> {
        let old = self.current(host.probe())?;
        let new = edit(old.as_deref().unwrap_or_default())?;
        if old.as_deref() == Some(new.as_slice()) {
            return Ok(Applied::default());
        }
        if let Some(v) = &self.validate {
            v.run(&self.path, &new, self.sensitive)
                .await
                .map_err(ResourceError::Failed)?;
        }
        let backups = host
            .replace_file(&self.path, &new, Attrs::default(), DEFAULT_FILE_MODE)?
            .into_iter()
            .collect();
        Ok(Applied {
            backups,
            notes: Vec::new(),
        })
    }

    /// What apply leaves in the file: `edit` of what is there now (as the probe sees it, with the
    /// edits planned before this one), for the plan of the next edit or reader.
    pub(crate) fn after(
        &self,
        host: &Probe,
        path: &Path,
        edit: impl Fn(&[u8]) -> Result<Vec<u8>, ResourceError>,
    ) -> Option<crate::After> {
        if path != self.path {
            return None;
        }
        let old = self.current(host).ok()?;
        edit(old.as_deref().unwrap_or_default())
            .ok()
            .map(crate::After::Bytes)
    }
}

/// A regular expression of the manifest, compiled at load (a bad one is a located error) with a
/// size budget, matched on a line's bytes without its ending.
pub(crate) fn regex_field(
    f: &mut Fields<'_>,
    name: &'static str,
) -> Result<Option<(regex::bytes::Regex, Span)>, SpecError> {
    let Some((t, span)) = f.string(name)? else {
        return Ok(None);
    };
    regex::bytes::RegexBuilder::new(&t.value)
        .size_limit(1 << 20)
        .build()
        .map(|re| Some((re, span.clone())))
        .map_err(|e| {
            SpecError::new(span, format!("{name} is not a valid regular expression"))
                .help(e.to_string())
        })
}

/// `after` or `before` (at most one): where a new line or block goes.
pub(crate) fn anchor_fields(f: &mut Fields<'_>) -> Result<text::Anchor, SpecError> {
    f.at_most_one(&["after", "before"])?;
    if let Some((re, _)) = regex_field(f, "after")? {
        return Ok(text::Anchor::After(re));
    }
    if let Some((re, _)) = regex_field(f, "before")? {
        return Ok(text::Anchor::Before(re));
    }
    Ok(text::Anchor::End)
}

/// A text field as one line: a line ending inside it is a load error.
pub(crate) fn one_line(span: &Span, field: &str, value: &str) -> Result<(), SpecError> {
    if value.contains(['\n', '\r']) {
        return Err(
            SpecError::new(span.clone(), format!("{field} holds a line break"))
                .help("one line only; a `block` keeps several lines together"),
        );
    }
    Ok(())
}

/// An edit kind (`line`, `block`): the file it edits, what it makes of the file's bytes, and how
/// plan names it. Everything else — ordering among the file's editors, the plan's prediction,
/// the check, the write — is the same for every edit, below.
pub trait Edit: Send + Sync + std::fmt::Debug {
    /// The file and how it is edited.
    fn target(&self) -> &Target;
    /// The bytes after the edit (equal to `old` when it is already so).
    fn edited(&self, host: &Probe, old: &[u8]) -> Result<Vec<u8>, ResourceError>;
    /// What plan says it does (`line \`PermitRootLogin no\``).
    fn what(&self) -> String;
    /// Whether it keeps something present (an absent one in a missing file is as asked).
    fn present(&self) -> bool;
}

#[async_trait]
impl<E: Edit> Resource for E {
    fn edits(&self) -> Vec<PathBuf> {
        vec![self.target().path.clone()]
    }

    fn reads(&self) -> Vec<PathBuf> {
        vec![self.target().path.clone()]
    }

    fn after_apply(
        &self,
        host: &Probe,
        _observed: &std::collections::BTreeMap<String, serde_json::Value>,
        path: &Path,
    ) -> Option<crate::After> {
        self.target()
            .after(host, path, |old| self.edited(host, old))
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let old = match self.target().current(host) {
            Err(ResourceError::Missing(_)) if !self.present() => return Ok(Drift::none()),
            other => other?,
        };
        let new = self.edited(host, old.as_deref().unwrap_or_default())?;
        self.target()
            .drift(&self.what(), old.as_deref(), &new)
            .await
    }

    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        let probe = host.probe().clone();
        self.target()
            .write(host, |old| self.edited(&probe, old))
            .await
    }
}
