//! `tend completions SHELL`: a completion script on stdout.

use crate::cli::{self, Cli};
use crate::{output, StartError};

pub(crate) fn run(shell: &cli::Shell) -> Result<i32, StartError> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    let shell = match shell {
        cli::Shell::Bash => clap_complete::Shell::Bash,
        cli::Shell::Zsh => clap_complete::Shell::Zsh,
        cli::Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "tend", &mut buf);
    output::stdout(&String::from_utf8_lossy(&buf));
    Ok(0)
}
