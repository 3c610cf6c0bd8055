//! `tend image seal --root DIR`: what must not be cloned, removed (see `crate::image`).

use crate::cli::{Cli, SealArgs};
use crate::{absolute, image, output, StartError};

pub(crate) fn run(cli: &Cli, args: &SealArgs) -> Result<i32, StartError> {
    let root = absolute(&args.root);
    let state = args
        .state_dir
        .as_deref()
        .map_or_else(|| root.join("var/lib/tend"), absolute);
    let said = image::seal(&root, &state, args.keep_ssh_host_keys).map_err(StartError::Host)?;
    if !cli.quiet {
        let mut out = said.join("\n");
        if said.is_empty() {
            out.push_str("nothing to remove: the image is sealed");
        }
        out.push('\n');
        output::stdout(&out);
    }
    Ok(0)
}
