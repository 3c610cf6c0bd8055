//! `tend check`: the manifest loaded and its graph built, nothing read of the host but what
//! a lint needs; warnings for what is valid but likely wrong here.

use crate::cli::{Cli, ManifestArgs};
use crate::engine::graph;
use crate::secrets::SecretMode;
use crate::{escape, load, output, root_of, StartError};

pub(crate) fn run(cli: &Cli, args: &ManifestArgs) -> Result<i32, StartError> {
    let m = load(args, SecretMode::Ephemeral, None, None)?;
    let g = graph::Graph::build(&m)?;
    let enabled = m.resources.iter().filter(|d| d.enabled).count();
    // Valid, but likely wrong on this host (or image): said, not refused.
    let root = root_of(args);
    let probe = tend_resources::Probe::new(&root, root.join("var/lib/tend"));
    for d in m.resources.iter().filter(|d| d.enabled) {
        for lint in d.resource.lints(&probe) {
            eprintln!("warning: {}: {lint}", escape::line(&d.address));
        }
    }
    if !cli.quiet {
        output::stdout(
            &(format!(
                "{}: valid, {} resources ({} enabled), {} ordering edges",
                m.path.display(),
                m.resources.len(),
                enabled,
                g.deps.iter().map(Vec::len).sum::<usize>()
            ) + "\n"),
        );
    }
    Ok(0)
}
