//! `line`: one line of a file kept present (replacing the lines a pattern finds, else inserted
//! after or before a pattern, or at the end) or absent — Ansible's `lineinfile`, Puppet's
//! `file_line`. Every other byte of the file stays as it was.

use std::sync::Arc;

use super::text::{edit_line, LineEdit, Occurrence};
use super::{anchor_fields, one_line, regex_field, Edit, Target};
use crate::host::Probe;
use crate::resource::{Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `line` kind: its name, summary and constructor.
pub const KIND: Kind = Kind {
    name: "line",
    summary: "one line of a file present (replacing what a pattern matches) or absent",
    build,
    prune: None,
};

/// A `line` resource, as its manifest table declared it.
#[derive(Debug)]
pub struct Line {
    target: Target,
    edit: LineEdit,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let mut target = Target::from_fields(f)?;
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    let matcher = regex_field(f, "match")?.map(|(re, _)| re);
    let line = match f.text("line")? {
        Some((t, span)) => {
            one_line(&span, "line", &t.value)?;
            target.sensitive = t.sensitive;
            Some(t.value)
        }
        None => None,
    };
    if line.is_none() && (present || matcher.is_none()) {
        return Err(
            SpecError::new(f.table_span(), format!("{} has no `line`", f.address())).help(
                if present {
                    "line = \"…\": the line to keep in the file"
                } else {
                    "an absent line is named by `line` (the exact line) or `match` (a pattern)"
                },
            ),
        );
    }
    let anchor = anchor_fields(f)?;
    let occurrence = match f.choice("occurrence", &["all", "first", "last"])? {
        Some("first") => Occurrence::First,
        Some("last") => Occurrence::Last,
        _ => Occurrence::All,
    };
    if !present && target.create {
        return Err(SpecError::new(
            f.span_of("create"),
            format!("{} is absent and has create = true", f.address()),
        )
        .help("an absent line never creates its file: remove `create`"));
    }
    Ok(Arc::new(Line {
        target,
        edit: LineEdit {
            line: line.unwrap_or_default().into_bytes(),
            matcher,
            anchor,
            occurrence,
            present,
        },
    }))
}

impl Edit for Line {
    fn target(&self) -> &Target {
        &self.target
    }

    fn edited(&self, _host: &Probe, old: &[u8]) -> Result<Vec<u8>, ResourceError> {
        Ok(edit_line(old, &self.edit))
    }

    fn what(&self) -> String {
        match (&self.edit.matcher, self.edit.present) {
            _ if self.target.sensitive => "line (sensitive)".to_string(),
            (_, true) => format!("line `{}`", String::from_utf8_lossy(&self.edit.line)),
            (Some(re), false) => format!("remove the lines matching `{re}`"),
            (None, false) => format!(
                "remove the line `{}`",
                String::from_utf8_lossy(&self.edit.line)
            ),
        }
    }

    fn present(&self) -> bool {
        self.edit.present
    }
}
