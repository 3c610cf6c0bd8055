//! `tend-resources`: everything a resource provider needs, and every provider.
//!
//! A map of the crate:
//! - [`resource`]: the [`Resource`] trait (check / apply / refresh) and the [`Kind`] registry entry;
//! - [`host`]: [`Probe`] (read-only host access, all `plan` ever gets) and [`Mutate`] (writes:
//!   atomic replace, modes, owners, backups), both resolving paths under `--root`;
//! - [`change`]: [`Drift`] and [`Change`], the "why" of every difference, with old and new
//!   values and diffs, and sensitive changes that hold no value at all;
//! - [`spec`]: [`Fields`], the typed, span-carrying view of one manifest table that a provider
//!   builds itself from (unknown fields and wrong types become located errors);
//! - [`dpkg`] (the dpkg database, read directly) and `apt` (running apt-get);
//! - one module per provider: [`file`], `directory`, [`edit`] (`line`, `block`), `symlink`, `sysctl`, `account` (`user`, `group`, `authorized_keys`), `env_file` (with the [`dotenv`] parser),
//!   `exec`, [`git`], `package`, `apt_repo`, [`systemd`] (`service`); the Docker kinds in `docker` (compose,
//!   container, image, volume, network, over bollard); [`nginx`] (`nginx_site`) and `cert`;
//! - [`process`] (running a command with captured output and a time limit).
//!
//! Adding a kind: write a module with a type implementing [`Resource`] and a `build` function
//! from [`Fields`], then add it to [`KINDS`].

// A library says nothing on its own: what users read goes through the agent's printer (which
// honours -q and a closed pipe), logs through tracing.
#![deny(clippy::print_stdout, clippy::print_stderr)]
// Every item another crate can reach says what it is.
#![warn(missing_docs)]

pub(crate) mod account;
pub(crate) mod apt;
pub(crate) mod apt_repo;
pub(crate) mod attrs;
pub(crate) mod cert;
pub mod change;
pub(crate) mod directory;
pub(crate) mod docker;
pub mod dotenv;
pub mod dpkg;
pub mod edit;
pub(crate) mod env_file;
pub(crate) mod exec;
pub(crate) mod file;
pub(crate) mod fingerprint;

pub mod git;
pub mod host;
mod in_root;
pub mod nginx;
pub(crate) mod package;
pub mod process;
pub mod prune;
pub mod resource;
pub(crate) mod symlink;
pub(crate) mod sysctl;
pub mod systemd;

// The field readers and value grammars live in `tend-spec` (no dependencies); every provider and
// the agent reach them here, as before.
pub use tend_spec::{grammar, spec};

pub use change::{Action, Change, Drift, Field, REDACTED};
pub use host::{HostError, Mutate, Probe};
pub use resource::{After, Applied, Kind, Resource, ResourceError, UnknownClass};
pub use spec::{BuildContext, Fields, SpecError};

/// Every resource kind tend knows, in the order docs list them.
pub static KINDS: &[Kind] = &[
    file::KIND,
    directory::KIND,
    edit::line::KIND,
    edit::block::KIND,
    symlink::KIND,
    sysctl::KIND,
    account::user::KIND,
    account::group::KIND,
    account::authorized_keys::KIND,
    env_file::KIND,
    exec::KIND,
    git::KIND,
    apt_repo::KIND,
    package::KIND,
    docker::compose::KIND,
    docker::container::KIND,
    docker::image::KIND,
    docker::volume::KIND,
    docker::network::KIND,
    nginx::site::KIND,
    cert::kind::KIND,
    systemd::service::KIND,
];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}
