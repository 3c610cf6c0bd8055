//! The engine: from a loaded manifest to what each resource did. `graph` orders the resources,
//! `check` checks one, `early` checks a plan's resources while the manifest still loads,
//! `executor` plans and applies in graph order (waves, a worker pool, refreshes), `journal`
//! records an apply's steps so an interrupted one is known, `host` makes the probe and the
//! runtime a run reads the host through. The commands (`run`, `pull`) drive it; it imports
//! nothing of theirs.

pub(crate) mod check;
pub(crate) mod early;
pub mod executor;
pub mod graph;
pub(crate) mod host;
pub mod journal;
