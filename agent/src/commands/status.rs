//! `tend status`: how the last apply ended and why, from `last-run.json`.

use std::path::{Path, PathBuf};

use crate::{absolute, output, timer, StartError};

pub(crate) fn run(state_dir: Option<&Path>, root: Option<&Path>) -> Result<i32, StartError> {
    let root = root.map_or_else(|| PathBuf::from("/"), absolute);
    let state = state_dir.map_or_else(|| root.join("var/lib/tend"), absolute);
    match timer::last_run(&state).map_err(StartError::State)? {
        Some(last) => {
            output::stdout(&format!("last run: {}\n", last.text));
            Ok(if last.failed { 4 } else { 0 })
        }
        None => Err(StartError::State(format!(
            "no run recorded in {} (no last-run.json)",
            state.display()
        ))),
    }
}
