//! What a run reads the host through, and the runtime its checks and applies run on.

use std::path::Path;

use tend_resources::Probe;

use crate::state;

/// What a run reads the host through, keyed by the host key (`apply` creates it). A plan on a
/// host that never ran apply fingerprints with a throwaway key: it shows that something
/// changes, but does not compare across runs. Until the run changes something, a directory it
/// resolved stays what it resolved: once each (the executor stops the cache before the first
/// change).
pub(crate) fn probe(root: &Path, state_dir: &Path, apply: bool) -> std::io::Result<Probe> {
    let key =
        state::host_key(state_dir, apply)?.unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    Ok(Probe::with_key(root, state_dir, key).caching_dirs())
}

/// The run's runtime: `jobs` workers (checks and applies are spread over them).
pub(crate) fn runtime(jobs: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(jobs.clamp(1, 64))
        .enable_all()
        .build()
}
