//! `tend inspect env FILE`: the keys and values docker compose reads from a `.env`.

use std::path::Path;

use crate::{output, StartError};

pub(crate) fn env(file: &Path) -> Result<i32, StartError> {
    // As root, read it as tend reads every file: no symlink a user planted, a regular
    // file (a FIFO would hang, `/dev/zero` fill memory), at most 64 MiB.
    let path = std::path::absolute(file)
        .map_err(|e| StartError::Usage(format!("{}: {e}", file.display())))?;
    let probe = tend_resources::host::Probe::new("/", "/var/lib/tend");
    let text = probe
        .read_limited(&path, 64 << 20)
        .map_err(|e| StartError::Host(e.to_string()))?
        .ok_or_else(|| StartError::Usage(format!("{}: no such file", file.display())))?;
    let text = String::from_utf8_lossy(&text);
    let env = |k: &str| std::env::var(k).ok();
    let values = tend_resources::dotenv::parse(&text)
        .and_then(|doc| tend_resources::dotenv::evaluate(&doc, &env))
        .map_err(|e| StartError::Usage(format!("{}: {e}", file.display())))?;
    output::stdout(
        &(serde_json::to_string_pretty(&values).map_err(|e| StartError::Host(e.to_string()))?
            + "\n"),
    );
    Ok(0)
}
