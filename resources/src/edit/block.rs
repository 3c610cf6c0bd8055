//! `block`: lines kept together between two marker lines (`# BEGIN tend NAME` / `# END tend
//! NAME`), present with the given content or absent — Ansible's `blockinfile`. Every byte outside
//! the block stays as it was.

use std::sync::Arc;

use super::text::{edit_block, BlockEdit, BlockError};
use super::{anchor_fields, one_line, Edit, Target};
use crate::host::Probe;
use crate::resource::{Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `block` kind: its name, summary and constructor.
pub const KIND: Kind = Kind {
    name: "block",
    summary: "lines of a file kept together between marker lines, or absent",
    build,
    prune: None,
};

/// A `block` resource, as its manifest table declared it.
#[derive(Debug)]
pub struct Block {
    target: Target,
    edit: BlockEdit,
}

/// The marker lines when the manifest names none: `{mark}` becomes BEGIN and END.
const DEFAULT_MARKER: &str = "# {mark} tend {name}";

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let mut target = Target::from_fields(f)?;
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    let name = f
        .address()
        .split_once('.')
        .map_or(f.address(), |(_, n)| n)
        .to_string();
    let (marker, marker_span) = match f.string("marker")? {
        Some((t, span)) => (t.value, span),
        None => (DEFAULT_MARKER.replace("{name}", &name), f.table_span()),
    };
    one_line(&marker_span, "marker", &marker)?;
    if !marker.contains("{mark}") {
        return Err(SpecError::new(marker_span, "marker has no {mark}")
            .help("e.g. marker = \"# {mark} tend sshd\": {mark} becomes BEGIN and END"));
    }
    let content = match f.text("content")? {
        Some((t, _)) => {
            target.sensitive = t.sensitive;
            Some(t.value)
        }
        None => None,
    };
    let content_span = f.span_of("content");
    if present && content.is_none() {
        return Err(
            SpecError::new(f.table_span(), format!("{} has no `content`", f.address()))
                .help("content = \"\"\"…\"\"\": the lines between the markers"),
        );
    }
    let anchor = anchor_fields(f)?;
    let begin = marker.replace("{mark}", "BEGIN");
    let end = marker.replace("{mark}", "END");
    let content = content.unwrap_or_default();
    let text = content.strip_suffix('\n').unwrap_or(&content);
    let lines: Vec<Vec<u8>> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).as_bytes().to_vec())
            .collect()
    };
    if lines
        .iter()
        .any(|l| *l == begin.as_bytes() || *l == end.as_bytes())
    {
        return Err(SpecError::new(
            content_span,
            "content holds one of the block's own marker lines",
        )
        .help("the next run could not tell where the block ends: change the marker"));
    }
    Ok(Arc::new(Block {
        target,
        edit: BlockEdit {
            begin: begin.into_bytes(),
            end: end.into_bytes(),
            content: lines,
            anchor,
            present,
        },
    }))
}

impl Edit for Block {
    fn target(&self) -> &Target {
        &self.target
    }

    fn edited(&self, host: &Probe, old: &[u8]) -> Result<Vec<u8>, ResourceError> {
        edit_block(old, &self.edit).map_err(|BlockError::Unclosed(n)| {
            ResourceError::Invalid(format!(
                "{}:{n} opens the block ({}) but no line after it closes it ({}); tend will not guess where it ends",
                host.real(&self.target.path).display(),
                String::from_utf8_lossy(&self.edit.begin),
                String::from_utf8_lossy(&self.edit.end)
            ))
        })
    }

    fn what(&self) -> String {
        let marker = String::from_utf8_lossy(&self.edit.begin);
        if self.edit.present {
            format!("block `{marker}` ({} lines)", self.edit.content.len())
        } else {
            format!("remove the block `{marker}`")
        }
    }

    fn present(&self) -> bool {
        self.edit.present
    }
}
