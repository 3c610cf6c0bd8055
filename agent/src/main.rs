//! The `tend` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    // What tend creates gets the mode it asks for, and what git or a package creates the mode it
    // would get under the usual umask, whatever umask the caller left.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let cli = match tend::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // A usage error is "could not start" (1), never 2, which means "changed": a hook that
            // accepts 2 must not accept a typo.
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    tend::init_logging(&cli);
    let code = match tend::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            // A git server's or a file's text may be in it: shown, not obeyed.
            let text = tend::escape::lines(&e.to_string()).into_owned();
            if e.renders_itself() {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            1
        }
    };
    // No child of this run outlives it.
    tend_resources::process::kill_all();
    std::process::exit(code);
}
