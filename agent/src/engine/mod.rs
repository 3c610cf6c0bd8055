//! The engine: from a loaded manifest to what each resource did. `graph` orders the resources,
//! `check` checks one, `early` checks a plan's resources while the manifest still loads,
//! `select` says which resources a run involves, `plan` and `apply` go through them in graph
//! order (`apply` in waves, with refreshes). All three work on the one `pool` of workers, `outcome` builds the reports both
//! share, `progress` tells a watcher what settled and what runs, `journal`
//! records an apply's steps so an interrupted one is known, `host` makes the probe and the
//! runtime a run reads the host through. The commands (`run`, `pull`) drive it; it imports
//! nothing of theirs.

mod apply;
pub(crate) mod check;
pub(crate) mod early;
pub mod graph;
pub(crate) mod host;
pub(crate) mod journal;
mod outcome;
mod plan;
pub(crate) mod pool;
mod progress;
mod select;

pub(crate) use apply::apply;
pub(crate) use plan::plan;
pub(crate) use progress::{OnSettled, Progress};
pub(crate) use select::Selection;
