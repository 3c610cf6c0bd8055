//! One resource's check, timed: what the plan (and the early checks that overlap loading)
//! run for each resource.

use std::sync::Arc;
use std::time::Instant;

use tend_resources::{Drift, Probe, Resource, ResourceError};

/// One resource's check for a plan, named by `key`: `None` when the run was stopped first.
pub(crate) type Checked = (usize, Option<Result<Drift, ResourceError>>, u64);

pub(crate) async fn check_one(probe: Probe, key: usize, resource: Arc<dyn Resource>) -> Checked {
    if tend_resources::process::stopping() {
        return (key, None, 0);
    }
    let t = Instant::now();
    let result = resource.check(&probe).await;
    (key, Some(result), millis(t))
}

pub(crate) fn millis(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}
