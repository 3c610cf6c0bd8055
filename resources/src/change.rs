//! What a check found: a list of [`Change`]s, each saying *why* a resource is out of sync, with the
//! old and the new value (cargo's "dirty reason"), and a unified diff for text.
//!
//! Sensitive changes never hold their values: [`Change::sensitive`] takes none, so no printer,
//! report or log can leak them by mistake.

use serde::Serialize;
use similar::TextDiff;

/// What a change does, for machines and for the printer's markers: typed, never read back out
/// of a description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Something is made that was not there (a file, a container, a certificate).
    Create,
    /// Something there is changed in place.
    Update,
    /// Something there is removed.
    Delete,
    /// Something there is replaced by a new one (a container recreated).
    Recreate,
    /// A command runs (a unit or container started, a guard's command).
    Run,
    /// Something running is restarted in place (an unhealthy service).
    Restart,
    /// Anything else worth saying (a leftover temporary removed, a restart).
    Note,
}

/// What a change is about, typed: a field the kind declares, a name the manifest or the host
/// gave, or a field of one of the resource's parts. The engine asks it what it is
/// ([`Field::is_attribute`]) instead of reading its words; reports show it as its name
/// (`content`, `GREETING`, `key.mode`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// A field the kind declares, named in its code (`content`, `mode`, `state`, `url`).
    Declared(&'static str),
    /// A name the manifest or the host gave: a `.env` key, a sysctl key, a compose service.
    Key(String),
    /// A field of one part of the resource: a certificate's key file (`key.mode`), the file a
    /// `sysctl` keeps its setting in (`file.content`).
    Part(&'static str, Box<Field>),
}

impl Field {
    /// What most kinds manage.
    pub const CONTENT: Field = Field::Declared("content");
    /// Whether it exists (and how: running, installed, enabled).
    pub const STATE: Field = Field::Declared("state");
    /// Permission bits.
    pub const MODE: Field = Field::Declared("mode");
    /// The owning user.
    pub const OWNER: Field = Field::Declared("owner");
    /// The owning group.
    pub const GROUP: Field = Field::Declared("group");

    /// A name the manifest or the host gave.
    pub fn key(name: impl Into<String>) -> Field {
        Field::Key(name.into())
    }

    /// This field, of the part `part` of the resource.
    pub fn of(self, part: &'static str) -> Field {
        Field::Part(part, Box::new(self))
    }

    /// The field itself when it is one of part `part`'s.
    pub fn within(&self, part: &str) -> Option<&Field> {
        match self {
            Field::Part(p, f) if *p == part => Some(f),
            _ => None,
        }
    }

    /// Whether it is an attribute of what the resource manages — its mode, owner or group —
    /// which can change in place without touching the content.
    pub fn is_attribute(&self) -> bool {
        matches!(self, Field::Declared("mode" | "owner" | "group"))
    }

    /// The part and the attribute, when it is an attribute of one of the resource's parts.
    pub fn part_attribute(&self) -> Option<(&'static str, &Field)> {
        match self {
            Field::Part(p, f) if f.is_attribute() => Some((p, f)),
            _ => None,
        }
    }
}

impl From<&'static str> for Field {
    fn from(name: &'static str) -> Field {
        Field::Declared(name)
    }
}

/// A name made at run time is a [`Field::Key`]: one the manifest or the host gave.
impl From<String> for Field {
    fn from(name: String) -> Field {
        Field::Key(name)
    }
}

impl From<&String> for Field {
    fn from(name: &String) -> Field {
        Field::Key(name.clone())
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Declared(n) => f.write_str(n),
            Field::Key(k) => f.write_str(k),
            Field::Part(p, inner) => write!(f, "{p}.{inner}"),
        }
    }
}

impl Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One difference between the host and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The field of the resource this change is about.
    pub field: Field,
    /// What it does.
    pub action: Action,
    /// One line for a human: "mode 0644 → 0600", "create", "remove".
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The value on the host (absent when unknown or sensitive).
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The value the manifest asks for (absent when unknown or sensitive).
    pub new: Option<String>,
    /// Unified diff for text content (never for sensitive values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The values are secrets: none is kept.
    pub sensitive: bool,
    /// The part of the resource the change is about, when it has parts: a compose project's
    /// service. Apply reads this, never the field's wording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The change follows from a file the resource reads (`add_missing_from`, `create_from`),
    /// not from the manifest alone: when a dependency may rewrite that file first, it is not
    /// certain.
    #[serde(skip)]
    pub from_input: bool,
}

impl Change {
    /// Something made that was not there: `absent` → `new`.
    pub fn created(field: impl Into<Field>, new: impl Into<String>) -> Change {
        Change::new(field, Some("absent"), Some(new)).with_action(Action::Create)
    }

    /// Something there removed: `old` → `absent`.
    pub fn removed(field: impl Into<Field>, old: impl Into<String>) -> Change {
        Change::new(field, Some(old), Some("absent")).with_action(Action::Delete)
    }

    /// A change of a value in place, both sides shown (an update; [`Change::created`],
    /// [`Change::removed`] and [`Change::with_action`] say otherwise — never the words).
    pub fn new(
        field: impl Into<Field>,
        old: Option<impl Into<String>>,
        new: Option<impl Into<String>>,
    ) -> Change {
        let field = field.into();
        let old = old.map(Into::into);
        let new = new.map(Into::into);
        let description = match (&old, &new) {
            (Some(o), Some(n)) => format!("{field}: {o} → {n}"),
            (None, Some(n)) => format!("{field}: (none) → {n}"),
            (Some(o), None) => format!("{field}: {o} → (none)"),
            (None, None) => field.to_string(),
        };
        Change {
            field,
            action: Action::Update,
            description,
            old,
            new,
            diff: None,
            sensitive: false,
            subject: None,
            from_input: false,
        }
    }

    /// A change described in words only.
    pub fn note(field: impl Into<Field>, description: impl Into<String>) -> Change {
        Change {
            field: field.into(),
            action: Action::Note,
            description: description.into(),
            old: None,
            new: None,
            diff: None,
            sensitive: false,
            subject: None,
            from_input: false,
        }
    }

    /// A change to a secret value: the description must not contain it, and no value is kept.
    pub fn sensitive(field: impl Into<Field>, description: impl Into<String>) -> Change {
        Change {
            field: field.into(),
            action: Action::Update,
            description: description.into(),
            old: None,
            new: None,
            diff: None,
            sensitive: true,
            subject: None,
            from_input: false,
        }
    }

    /// The same change, doing `action`.
    pub fn with_action(mut self, action: Action) -> Change {
        self.action = action;
        self
    }

    /// The same change, about `subject` (a compose service).
    pub fn about(mut self, subject: impl Into<String>) -> Change {
        self.subject = Some(subject.into());
        self
    }

    /// The same change with another one-line description.
    pub fn described(mut self, description: impl Into<String>) -> Change {
        self.description = description.into();
        self
    }

    /// Attach a unified diff of two texts (`path` names both sides in the header).
    pub fn with_diff(mut self, path: &str, old: &str, new: &str) -> Change {
        if !self.sensitive {
            self.diff = Some(unified_diff(path, old, new));
        }
        self
    }
}

/// Longest diff kept in a change: a report (and `last-run.json`) stays readable when a large
/// file changes.
pub const MAX_DIFF: usize = 64 << 10;
/// Texts larger than this are not diffed at all (diffing is superlinear).
pub const MAX_DIFFED: usize = 8 << 20;

/// A unified diff with three lines of context, headers `a/PATH` and `b/PATH`; cut at
/// [`MAX_DIFF`] bytes, and not computed for texts over [`MAX_DIFFED`], saying so either way.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    if old.len() > MAX_DIFFED || new.len() > MAX_DIFFED {
        return format!(
            "--- a{path}\n+++ b{path}\n(diff not computed: {} → {} bytes, more than {} MiB)\n",
            old.len(),
            new.len(),
            MAX_DIFFED >> 20
        );
    }
    // A deadline: past it, similar settles for a coarser (still correct) diff instead of running
    // for seconds on a rewritten file.
    let diff = TextDiff::configure()
        .timeout(std::time::Duration::from_millis(200))
        .diff_lines(old, new);
    let mut out = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("a{path}"), &format!("b{path}"))
        .to_string();
    if out.len() > MAX_DIFF {
        let mut cut = MAX_DIFF;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        // At a line end, so the kept part reads as a diff.
        let cut = out[..cut].rfind('\n').map_or(cut, |i| i + 1);
        let rest = out.len() - cut;
        out.truncate(cut);
        out.push_str(&format!(
            "(diff cut at {} KiB: {rest} more bytes not shown)\n",
            MAX_DIFF >> 10
        ));
    }
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod diff_tests {
    use super::*;

    #[test]
    fn diffs_are_bounded_and_say_so() {
        let old: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let new: String = (0..20_000).map(|i| format!("LINE {i}\n")).collect();
        let d = unified_diff("/f", &old, &new);
        assert!(d.len() < MAX_DIFF + 200);
        assert!(
            d.contains("(diff cut at 64 KiB:"),
            "{}",
            &d[d.len() - 100..]
        );
        let big = "x\n".repeat(5 << 20);
        let d = unified_diff("/f", &big, "y\n");
        assert!(d.contains("diff not computed"), "{d}");
    }
}

/// Everything a check found. Empty means in sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The differences, in the order the check found them.
    pub changes: Vec<Change>,
    /// What the check read that an audit wants whether or not anything differs (a certificate's
    /// names, issuer and days left): the report's `observed` object.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub observed: std::collections::BTreeMap<String, serde_json::Value>,
    /// The drift is one apply cannot repair, and why (an audited certificate about to expire,
    /// local changes a checkout must not lose): plan reports it as `will_fail`, not as a change
    /// it would make.
    #[serde(skip)]
    pub will_fail: Option<String>,
}

impl Drift {
    /// No difference.
    pub fn none() -> Drift {
        Drift::default()
    }
    /// Whether the resource is in sync.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    /// Add a difference.
    pub fn push(&mut self, change: Change) {
        self.changes.push(change);
    }
    /// Whether a change to `field` was found.
    pub fn touches(&self, field: impl Into<Field>) -> bool {
        let field = field.into();
        self.changes.iter().any(|c| c.field == field)
    }
}

impl From<Vec<Change>> for Drift {
    fn from(changes: Vec<Change>) -> Drift {
        Drift {
            changes,
            observed: Default::default(),
            will_fail: None,
        }
    }
}

/// A byte size or text summary that never shows a secret: "(sensitive)".
pub const REDACTED: &str = "(sensitive)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_change_has_no_values_and_no_diff() {
        let c = Change::sensitive("content", "content changed").with_diff("/x", "a", "b");
        assert!(c.old.is_none() && c.new.is_none() && c.diff.is_none());
        assert!(c.sensitive);
    }

    #[test]
    fn diff_names_the_path_and_the_changed_line() {
        let d = unified_diff("/etc/motd", "a\nb\n", "a\nc\n");
        assert!(d.starts_with("--- a/etc/motd\n+++ b/etc/motd\n"), "{d}");
        assert!(d.contains("-b\n+c\n"), "{d}");
    }

    #[test]
    fn description_says_from_what_to_what() {
        let c = Change::new("mode", Some("0644"), Some("0600"));
        assert_eq!(c.description, "mode: 0644 → 0600");
    }
}
