//! The kind CONTRIBUTING.md shows, compiled and tested with the crate so that the example cannot
//! drift from the real API: `marker`, a file that holds exactly one line of text. A real kind
//! lives in `resources/src/KIND.rs`, is listed in `KINDS`, and is tested end to end in
//! `tests/tests/e2e/`; this one is exercised here directly, as the engine would drive it.

// The test prepares its sandbox with std::fs, as the e2e tests do.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tend_resources::host::{Attrs, RunLock};
use tend_resources::spec::{Entry, Span, Spanned, Text, Value};
use tend_resources::{
    Applied, BuildContext, Change, Drift, Fields, Kind, Mutate, Probe, Resource, ResourceError,
    SpecError,
};

// --- The kind -----------------------------------------------------------------------------

/// The `marker` kind: its name in manifests, one line for `--help`, its constructor.
pub const KIND: Kind = Kind {
    name: "marker",
    summary: "a file holding exactly one line of text",
    build,
    prune: None,
};

#[derive(Debug)]
struct Marker {
    path: PathBuf,
    line: String,
}

/// The constructor is the kind's only schema: every field it asks for is known (with its type
/// checked and errors located at the value), anything else is an unknown field.
fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (path, _) = f.required_path("path")?;
    let (text, span) = f.required_text("text")?;
    if text.value.contains('\n') {
        return Err(SpecError::new(span, "text is one line").help("remove the newline"));
    }
    Ok(Arc::new(Marker {
        path,
        line: format!("{}\n", text.value),
    }))
}

#[async_trait]
impl Resource for Marker {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    /// Plan's whole view: read through the `Probe` (in the root, no link followed, bounded).
    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        match host.read_limited(&self.path, 1 << 20)? {
            None => drift.push(Change::created("state", "present")),
            Some(now) if now != self.line.as_bytes() => {
                let now = String::from_utf8_lossy(&now);
                let shown = self.path.display().to_string();
                drift.push(
                    Change::new(
                        "content",
                        Some(format!("{} bytes", now.len())),
                        Some(format!("{} bytes", self.line.len())),
                    )
                    .with_diff(&shown, &now, &self.line),
                );
            }
            Some(_) => {}
        }
        Ok(drift)
    }

    /// Only apply holds a `Mutate`: the one handle that can write.
    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        let mut applied = Applied::default();
        if let Some(b) = host.backup(&self.path)? {
            applied.backups.push(b);
        }
        // Missing parents made 0755, through no link another user planted.
        host.create_parents(&self.path)?;
        let attrs = Attrs {
            uid: None,
            gid: None,
            mode: Some(0o644),
        };
        host.write_atomic(&self.path, self.line.as_bytes(), attrs)?;
        Ok(applied)
    }
}

// --- Driving it as the engine does --------------------------------------------------------

struct NoTemplates;

impl BuildContext for NoTemplates {
    fn manifest_dir(&self) -> &Path {
        Path::new("/")
    }
    fn render(&self, source: &str, _name: &str) -> Result<Text, String> {
        Ok(Text {
            value: source.into(),
            sensitive: false,
        })
    }
}

fn table(fields: &[(&str, &str)]) -> Vec<Entry> {
    fields
        .iter()
        .map(|(k, v)| Entry {
            key: (*k).into(),
            key_span: Span::default(),
            value: Spanned {
                span: Span::default(),
                value: Value::Str(Text {
                    value: (*v).into(),
                    sensitive: false,
                }),
            },
        })
        .collect()
}

fn built(fields: &[(&str, &str)]) -> Result<Arc<dyn Resource>, SpecError> {
    let ctx = NoTemplates;
    let mut f = Fields::new("marker.m".into(), Span::default(), table(fields), &ctx);
    let r = (KIND.build)(&mut f)?;
    f.finish()?;
    Ok(r)
}

#[tokio::test]
async fn the_example_kind_converges_plans_drift_by_hand_and_refuses_bad_input() {
    let root = tempfile::tempdir().expect("tempdir");
    let state = root.path().join("var/lib/tend");
    std::fs::create_dir_all(&state).expect("state");
    let m = built(&[("path", "/etc/marker"), ("text", "managed by tend")]).expect("build");
    let probe = Probe::new(root.path(), &state);

    let drift = m.check(&probe).await.expect("check");
    assert_eq!(drift.changes[0].description, "state: absent → present");
    let lock = RunLock::acquire(&state, std::time::Duration::ZERO).expect("lock");
    let host = lock.mutate(probe.clone());
    m.apply(&host, &drift).await.expect("apply");
    assert!(
        m.check(&probe).await.expect("check").is_empty(),
        "converged"
    );

    std::fs::write(root.path().join("etc/marker"), "changed by hand\n").expect("write");
    let drift = m.check(&probe).await.expect("check");
    assert_eq!(drift.changes.len(), 1);
    assert!(drift.touches("content"));
    let diff = drift.changes[0].diff.as_deref().unwrap_or_default();
    assert!(
        diff.contains("-changed by hand\n+managed by tend\n"),
        "{diff}"
    );
    let applied = m.apply(&host, &drift).await.expect("apply");
    assert_eq!(applied.backups.len(), 1, "the hand-made content kept");
    assert!(m.check(&probe).await.expect("check").is_empty());

    let e = built(&[("path", "/etc/marker")]).expect_err("no text");
    assert!(e.message.contains("`text`"), "{e:?}");
    let e = built(&[("path", "/etc/m"), ("text", "x"), ("txet", "y")]).expect_err("unknown");
    assert!(e.message.contains("unknown field `txet`"), "{e:?}");
    assert_eq!(e.help.as_deref(), Some("did you mean `text`?"));
}
