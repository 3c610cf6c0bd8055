//! The subcommands that are not a run of the engine, one file each; `lib.rs` only dispatches.
//! (A run — plan, apply, pull — is `run`, `pull` and the engine; restore and timer are rooms
//! of their own.)

pub(crate) mod check;
pub(crate) mod completions;
pub(crate) mod data;
pub(crate) mod facts;
pub(crate) mod graph;
pub(crate) mod image_seal;
pub(crate) mod inspect;
pub(crate) mod manpage;
pub(crate) mod report;
pub(crate) mod status;
