//! `tend manpage DIR`: the man pages, written into DIR.

use std::path::Path;

use crate::cli::Cli;
use crate::StartError;

pub(crate) fn run(dir: &Path) -> Result<i32, StartError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), dir))
        .map_err(|e| StartError::Host(format!("{}: {e}", dir.display())))?;
    Ok(0)
}
