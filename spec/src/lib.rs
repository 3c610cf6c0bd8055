//! `tend-spec`: how a kind reads its manifest table.
//!
//! - [`spec`]: [`spec::Fields`], the typed, span-carrying view of one manifest table that a
//!   provider builds itself from (unknown fields and wrong types become located errors);
//! - [`grammar`]: what a package name, a version, an image reference, an nginx token… may be,
//!   checked before any of them reaches a command line, an API path or a configuration file.
//!
//! Apart from `tend-resources` (which re-exports both) because it depends on nothing: the fuzz
//! build instruments it fully, as the code a hostile manifest reaches first.

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(missing_docs)]

pub mod grammar;
pub mod spec;
