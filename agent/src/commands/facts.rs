//! `tend facts`: the facts templates see, as JSON.

use std::path::Path;

use crate::{facts, output, StartError};

pub(crate) fn run(root: Option<&Path>) -> Result<i32, StartError> {
    let f = facts::Facts::gather(root.unwrap_or(Path::new("/")));
    output::stdout(
        &(serde_json::to_string_pretty(&f).map_err(|e| StartError::Host(e.to_string()))? + "\n"),
    );
    Ok(0)
}
