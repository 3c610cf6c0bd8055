//! `file`: a regular file with given content (inline, a template beside the manifest, or copied
//! from a source), mode, owner and group, or its absence.
//!
//! Content is compared byte for byte; a changed file is replaced atomically after its old
//! content is kept in the state directory. Symlinks and directories in the way are failures,
//! never silently replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::attrs::Ownership;
use crate::change::{Change, Drift};
use crate::host::{fmt_mode, sha256_hex, Mutate, Probe, DEFAULT_FILE_MODE};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `file` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "file",
    summary: "a regular file: content (inline, template or source), mode, owner, group, or absent",
    build,
    prune: Some(crate::prune::FILES),
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// Not managed: only mode and ownership (or existence) are.
    Unmanaged,
    /// Known at load time: inline `content`, a rendered `template`, or a `source` beside the
    /// manifest.
    Bytes(Vec<u8>),
    /// Copied from this host path, read at check time.
    HostSource(PathBuf),
}

#[derive(Debug)]
/// A `file` resource, as its manifest table declared it.
pub(crate) struct File {
    path: PathBuf,
    content: Content,
    attrs: Ownership,
    present: bool,
    sensitive: bool,
    /// Checked on a private copy before new content replaces the live file.
    validate: Option<crate::edit::validate::Validate>,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (path, _) = f.required_path("path")?;
    let (content, mut sensitive) = content_fields(f)?;
    sensitive |= f.bool("sensitive")?.unwrap_or(false);
    let attrs = Ownership::from_fields(f)?;
    let validate = crate::edit::validate::Validate::from_fields(f)?;
    if validate.is_some() && content == Content::Unmanaged {
        return Err(SpecError::new(
            f.span_of("validate"),
            format!("{} validates content it does not manage", f.address()),
        )
        .help("validate checks new content: give `content`, `template` or `source`"));
    }
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    if !present && (content != Content::Unmanaged || attrs != Ownership::default()) {
        return Err(SpecError::new(
            f.span_of("state"),
            format!(
                "{} has state = \"absent\" and also content or attributes",
                f.address()
            ),
        )
        .help("an absent file has no content, mode or owner: remove those fields"));
    }
    Ok(Arc::new(File {
        path,
        content,
        attrs,
        present,
        sensitive,
        validate,
    }))
}

/// The `content`, `template` or `source` of a file (at most one), and whether it is sensitive
/// (a secret went into it): shared by every kind that writes a file of its own (`service`).
pub(crate) fn content_fields(f: &mut Fields<'_>) -> Result<(Content, bool), SpecError> {
    let which = f.at_most_one(&["content", "template", "source"])?;
    let mut sensitive = false;
    let content = match which {
        Some("content") => {
            let (t, _) = f.required_text("content")?;
            sensitive |= t.sensitive;
            Content::Bytes(t.value.into_bytes())
        }
        Some("template") => {
            let (t, span) = f.required_string("template")?;
            let (file, bytes) = read_beside_manifest(f, "template", &t.value, &span)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                SpecError::new(
                    span.clone(),
                    format!("template {} is not UTF-8", file.display()),
                )
            })?;
            let rendered = f
                .ctx()
                .render(&text, &t.value)
                .map_err(|e| SpecError::new(span, format!("template {}: {e}", file.display())))?;
            sensitive |= rendered.sensitive;
            Content::Bytes(rendered.value.into_bytes())
        }
        Some(_) => {
            let (t, span) = f.required_string("source")?;
            let p = PathBuf::from(&t.value);
            if p.is_absolute() {
                Content::HostSource(p)
            } else {
                Content::Bytes(read_beside_manifest(f, "source", &t.value, &span)?.1)
            }
        }
        None => Content::Unmanaged,
    };
    Ok((content, sensitive))
}

/// The largest file read beside the manifest (a template, a source, a key).
const MAX_BESIDE: u64 = 16 << 20;

/// A file the manifest names relative to its own directory, read at load: only inside that
/// directory (no `..`, no absolute path, no symlink out of it — in a pulled policy, only the
/// verified tree), only a regular file (a FIFO would hang the load, `/dev/zero` fill memory),
/// at most 16 MiB. Its real path and bytes. (The policy's files, not the managed host's: read
/// here, by these rules, rather than through a `Probe` of the root.)
#[allow(clippy::disallowed_methods)]
pub(crate) fn read_beside_manifest(
    f: &Fields<'_>,
    field: &str,
    value: &str,
    span: &crate::spec::Span,
) -> Result<(PathBuf, Vec<u8>), SpecError> {
    let rel = Path::new(value);
    let fail = |why: String| SpecError::new(span.clone(), format!("{field} {value:?}: {why}"));
    if !rel.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) || value.is_empty()
    {
        return Err(fail(
            "must be a path inside the manifest's directory (relative, no `..`)".into(),
        ));
    }
    let dir = f.ctx().manifest_dir();
    let file = dir.join(rel);
    let (real_dir, real) = match (std::fs::canonicalize(dir), std::fs::canonicalize(&file)) {
        (Ok(d), Ok(r)) => (d, r),
        (_, Err(e)) | (Err(e), _) => {
            return Err(fail(format!("cannot read {}: {e}", file.display())))
        }
    };
    if !real.starts_with(&real_dir) {
        return Err(fail(format!(
            "leads out of the manifest's directory (to {})",
            real.display()
        )));
    }
    use crate::host::Unread;
    let (_, bytes) = crate::host::read_unfollowed(&real, MAX_BESIDE).map_err(|why| {
        let shown = real.display();
        fail(match why {
            Unread::Open(e) | Unread::Read(e) => format!("cannot read {shown}: {e}"),
            Unread::Link => format!("{shown} is a symlink (not followed)"),
            Unread::NotRegular => format!("{shown} is not a regular file"),
            Unread::TooLarge => format!("{shown} is larger than {} MiB", MAX_BESIDE >> 20),
        })
    })?;
    Ok((file, bytes))
}

impl File {
    /// A present file whose content came from [`content_fields`].
    pub(crate) fn managed(
        path: PathBuf,
        content: Content,
        attrs: Ownership,
        sensitive: bool,
    ) -> File {
        File {
            path,
            content,
            attrs,
            present: true,
            sensitive,
            validate: None,
        }
    }

    /// A present file with content known at load time, for kinds that render one (`nginx_site`)
    /// and delegate the comparing, diffing, backing up and atomic writing to `file`.
    pub(crate) fn with_content(
        path: PathBuf,
        content: Vec<u8>,
        attrs: Ownership,
        sensitive: bool,
    ) -> File {
        File {
            path,
            content: Content::Bytes(content),
            attrs,
            present: true,
            sensitive,
            validate: None,
        }
    }

    fn desired(&self, host: &Probe) -> Result<Option<Vec<u8>>, ResourceError> {
        match &self.content {
            Content::Unmanaged => Ok(None),
            Content::Bytes(b) => Ok(Some(b.clone())),
            Content::HostSource(src) => match host.read(src)? {
                Some(b) => Ok(Some(b)),
                None => Err(ResourceError::Missing(format!(
                    "source {} does not exist",
                    host.real(src).display()
                ))),
            },
        }
    }

    fn content_change(&self, host: &Probe, old: &[u8], new: &[u8]) -> Change {
        let summary = format!(
            "sha256 {} → {}",
            short(&sha256_hex(old)),
            short(&sha256_hex(new))
        );
        if self.sensitive {
            return Change::sensitive(
                "content",
                format!(
                    "content: (sensitive) {} → {}",
                    host.fingerprint(old),
                    host.fingerprint(new)
                ),
            );
        }
        let c = Change::new(
            "content",
            Some(format!("{} bytes", old.len())),
            Some(format!("{} bytes", new.len())),
        );
        let c = Change {
            description: format!("content: {summary}"),
            ..c
        };
        match (std::str::from_utf8(old), std::str::from_utf8(new)) {
            (Ok(o), Ok(n)) => c.with_diff(&self.path.to_string_lossy(), o, n),
            _ => c,
        }
    }
}

fn short(hex: &str) -> &str {
    &hex[..12.min(hex.len())]
}

#[async_trait]
impl Resource for File {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn shares_content(&self) -> bool {
        self.present && self.content == Content::Unmanaged
    }

    /// What apply leaves at the path: the content the manifest gives (a host source is read as
    /// it is now — it may itself be about to change, so there is no telling), or nothing.
    fn after_apply(
        &self,
        _host: &Probe,
        _observed: &std::collections::BTreeMap<String, serde_json::Value>,
        path: &Path,
    ) -> Option<crate::After> {
        if path != self.path {
            return None;
        }
        match (&self.content, self.present) {
            (_, false) => Some(crate::After::Absent),
            (Content::Bytes(b), true) => Some(crate::After::Bytes(b.clone())),
            (Content::Unmanaged, true) => Some(crate::After::Same),
            (Content::HostSource(_), true) => None,
        }
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        // One resolution of the directory for all of it: the no-op check of a file costs this.
        let seen = host.file_state(
            &self.path,
            self.present && self.content != Content::Unmanaged,
        )?;
        let meta = seen.meta;
        refuse_non_regular(host, &self.path, meta.as_ref())?;
        if !self.present {
            if meta.is_some() {
                drift.push(Change {
                    description: "remove".into(),
                    ..Change::removed("state", "present")
                });
            }
            return Ok(drift);
        }
        let desired = self.desired(host)?;
        // An owner or group the host does not know fails here, in plan too, not at apply.
        self.attrs.resolve(host)?;
        let Some(meta) = meta else {
            let mode = self.attrs.mode.unwrap_or(self.default_mode());
            let mut c = Change::created("state", "present");
            let mut what = format!("create (mode {}", fmt_mode(mode));
            for (label, v) in [("owner", &self.attrs.owner), ("group", &self.attrs.group)] {
                if let Some(v) = v {
                    what.push_str(&format!(", {label} {v}"));
                }
            }
            what.push(')');
            c.description = what;
            if let Some(new) = &desired {
                if self.sensitive {
                    c.sensitive = true;
                    c.description
                        .push_str(&format!(", content (sensitive) {}", host.fingerprint(new)));
                } else if let Ok(text) = std::str::from_utf8(new) {
                    c = c.with_diff(&self.path.to_string_lossy(), "", text);
                } else {
                    c.description.push_str(&format!(", {} bytes", new.len()));
                }
                drift.will_fail = self.refused(new).await;
            }
            drift.push(c);
            return Ok(drift);
        };
        if let Some(new) = desired {
            let old = seen.content.unwrap_or_default();
            if old != new {
                drift.push(self.content_change(host, &old, &new));
                drift.will_fail = self.refused(&new).await;
            }
        }
        self.attrs.check(host, &meta, &mut drift)?;
        // A run killed between writing the temporary and renaming it leaves it behind; the next
        // write of this file would replace it, but an in-sync file is never written again.
        if seen.leftover {
            let name = crate::host::temp_path(&self.path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            drift.push(Change::note(
                "leftover",
                format!("remove {name}, left by an interrupted run"),
            ));
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        if !self.present {
            applied.backups.extend(host.backup(&self.path)?);
            host.remove_file(&self.path)?;
            return Ok(applied);
        }
        if drift.touches("leftover") && !drift.touches("content") {
            host.remove_file(&crate::host::temp_path(&self.path))?;
        }
        if drift.touches("state") || drift.touches("content") {
            let content = match self.desired(host)? {
                Some(b) => b,
                // Unmanaged content: create empty, keep existing bytes.
                None => host.read(&self.path)?.unwrap_or_default(),
            };
            if let Some(why) = self.refused(&content).await {
                return Err(ResourceError::Invalid(why));
            }
            let attrs = self.attrs.resolve(host)?;
            applied.backups.extend(host.replace_file(
                &self.path,
                &content,
                attrs,
                self.default_mode(),
            )?);
            return Ok(applied);
        }
        self.attrs.apply(host, &self.path, drift)?;
        Ok(applied)
    }
}

impl File {
    /// Why the validator refuses `content`, if there is one and it does.
    async fn refused(&self, content: &[u8]) -> Option<String> {
        let v = self.validate.as_ref()?;
        v.run(&self.path, content, self.sensitive).await.err()
    }

    /// The mode a new file gets when the manifest names none: a file holding a secret is made
    /// readable by its owner only.
    fn default_mode(&self) -> u32 {
        if self.sensitive {
            0o600
        } else {
            DEFAULT_FILE_MODE
        }
    }
}

/// `lstat` of a path that must be a regular file when it exists: a symlink or anything else in
/// the way is a failure, never silently replaced.
pub(crate) fn regular_file(
    host: &Probe,
    path: &Path,
) -> Result<Option<std::fs::Metadata>, ResourceError> {
    let meta = host.metadata(path)?;
    refuse_non_regular(host, path, meta.as_ref())?;
    Ok(meta)
}

/// A symlink or anything but a regular file at a managed file's path is a failure.
fn refuse_non_regular(
    host: &Probe,
    path: &Path,
    meta: Option<&std::fs::Metadata>,
) -> Result<(), ResourceError> {
    if let Some(m) = meta {
        if m.file_type().is_symlink() {
            return Err(ResourceError::Refused(format!(
                "{} is a symlink; tend does not replace symlinks with files",
                host.real(path).display()
            )));
        }
        if !m.is_file() {
            return Err(ResourceError::Refused(format!(
                "{} exists and is not a regular file",
                host.real(path).display()
            )));
        }
    }
    Ok(())
}
