//! End-to-end tests: the real `tend` binary against `--root` sandboxes. One binary (as ripgrep
//! does), one module per area.

mod account;
mod apt;
mod authorized_keys;
mod cert;
mod checkout_attacks;
mod cli;
mod dify;
mod directory;
mod docker;
mod edit;
mod engine;
mod env_file;
mod errors;
mod exec;
mod file;
mod fleet_page;
mod git;
mod hardening;
mod modules;
mod nginx;
mod output;
mod policy;
mod policy_errors;
mod provisioning;
mod pull;
mod pull_signatures;
mod secrets;
mod security;
mod symlink;
mod sysctl;
mod systemd;
mod unattended;
