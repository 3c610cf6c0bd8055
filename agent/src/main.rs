//! The `tend` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    let cli = tend::cli::Cli::parse();
    tend::init_logging(&cli);
    let code = match tend::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    };
    std::process::exit(code);
}
