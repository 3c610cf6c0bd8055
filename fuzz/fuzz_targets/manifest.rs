//! Any bytes as a manifest: the loader answers with a manifest or located errors, never a panic.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use tend::manifest::{load_source, LoadOptions};
use tend::secrets::SecretMode;

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data).into_owned();
    let opts = LoadOptions {
        vars: Vec::new(),
        root: PathBuf::from("/nonexistent-fuzz-root"),
        state_dir: PathBuf::from("/nonexistent-fuzz-root/state"),
        secrets: SecretMode::Ephemeral,
    };
    match load_source(Path::new("fuzz.toml"), source, &opts) {
        // Rendering the diagnostics must not panic either.
        Err(e) => drop(e.to_string()),
        Ok(m) => match tend::engine::graph::Graph::build(&m) {
            Ok(g) => drop(g.to_dot(&m)),
            Err(e) => drop(e.to_string()),
        },
    }
});
