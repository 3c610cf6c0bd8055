//! The `tend` binary: the process's settings, then the command line ([`tend::main`]), then its
//! exit code.

fn main() {
    // What tend creates gets the mode it asks for, and what git or a package creates the mode it
    // would get under the usual umask, whatever umask the caller left.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let code = tend::main();
    // No child of this run outlives it.
    tend_resources::process::kill_all();
    std::process::exit(code);
}
