//! `tend graph`: the ordering graph, as Graphviz dot.

use crate::cli::ManifestArgs;
use crate::engine::graph;
use crate::secrets::SecretMode;
use crate::{load, output, StartError};

pub(crate) fn run(args: &ManifestArgs) -> Result<i32, StartError> {
    let m = load(args, SecretMode::Ephemeral, None, None)?;
    let g = graph::Graph::build(&m)?;
    output::stdout(&g.to_dot(&m));
    Ok(0)
}
