//! What an apply tells whoever watches it while it runs.

use std::time::Instant;

use crate::report::ResourceReport;

/// Called with the outcomes of one wave.
pub(crate) type OnSettled = dyn Fn(&[&ResourceReport]) + Send + Sync;

/// What an apply tells whoever watches it while it runs: the outcomes of each wave as soon as
/// the wave is done (in manifest order within it, so the same graph prints in the same order),
/// and the resources in flight, for a heartbeat.
pub(crate) struct Progress {
    /// Told each wave's settled resources, when someone reads them (human apply output).
    pub on_settled: Option<Box<OnSettled>>,
    /// What is in flight, when someone reads it (the heartbeat): `None` keeps a run that prints
    /// no heartbeat from paying a lock and an insert per resource.
    pub in_flight: Option<std::sync::Mutex<std::collections::BTreeMap<String, Instant>>>,
}

impl Progress {
    pub(super) fn start(&self, address: &str) {
        if let Some(Ok(mut f)) = self.in_flight.as_ref().map(|m| m.lock()) {
            f.insert(address.to_string(), Instant::now());
        }
    }

    pub(super) fn done(&self, address: &str) {
        if let Some(Ok(mut f)) = self.in_flight.as_ref().map(|m| m.lock()) {
            f.remove(address);
        }
    }

    /// `compose.dify (1m02s), exec.migrate (12s)`, longest first; `None` when idle.
    pub(crate) fn describe_in_flight(&self) -> Option<String> {
        let f = self.in_flight.as_ref()?.lock().ok()?;
        let mut v: Vec<(&String, &Instant)> = f.iter().collect();
        v.sort_by_key(|(_, t)| **t);
        let parts: Vec<String> = v
            .iter()
            .map(|(a, t)| format!("{a} ({}s)", t.elapsed().as_secs()))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}
