//! A plan of the whole manifest checks each resource as soon as the loader has built it, on the
//! runtime's workers, while the main thread builds the rest: reading the host overlaps loading
//! the manifest (a 1000-file no-op plan spends about as long in each; bench/README).
//!
//! Only a plan without `--only`: apply checks a resource after what it depends on has applied,
//! and which resources take part in a selection is known only from the whole graph. A manifest
//! that then fails to load fails the run as before; its checks only read, and are thrown away.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tend_resources::{Probe, Resource};

use crate::engine::check::{check_one, Checked};
use crate::engine::pool::{Pool, Work};
use crate::manifest::{Decl, Observer};

/// What [`Early`] started: the runtime the run goes on with, the checks under way, and the
/// probe they read the host through.
pub(crate) struct Started {
    pub runtime: tokio::runtime::Runtime,
    pub checks: EarlyChecks,
    pub probe: Probe,
}

pub(crate) struct Early<'a> {
    pub root: PathBuf,
    pub state_dir: &'a Path,
    pub jobs: usize,
    pub started: Option<Started>,
}

impl Observer for Early<'_> {
    fn kinds(&mut self, kinds: &[&str]) {
        // libgit2 starts while the process has one thread (`git::tls`): before the runtime's.
        if kinds.contains(&"git") {
            tend_resources::git::tls::start_deferred();
        }
        // Anything amiss here is met again, and reported, where the run would have met it.
        let Ok(probe) = crate::engine::host::probe(&self.root, self.state_dir, false) else {
            return;
        };
        let Ok(runtime) = crate::engine::host::runtime(self.jobs) else {
            return;
        };
        let checks = EarlyChecks::start(&runtime, self.jobs, probe.clone());
        self.started = Some(Started {
            runtime,
            checks,
            probe,
        });
    }

    fn built(&mut self, decl: &Decl) {
        if let Some(s) = &mut self.started {
            s.checks.feed(decl);
        }
    }
}

impl Drop for Early<'_> {
    /// A manifest that failed to load: its checks are not waited for.
    fn drop(&mut self) {
        if let Some(s) = self.started.take() {
            s.runtime.shutdown_background();
        }
    }
}

/// Resources handed over at once: ~0.1 ms of checks. One at a time, each hand-over woke a
/// worker (a thousand futex calls, and a plan slower than without the overlap).
const BATCH: usize = 32;

/// A plan's checks started while the manifest still loads, on the engine's pool: the loader
/// feeds each resource as it is built, `jobs - 1` workers check them meanwhile, and once the
/// manifest is loaded the main thread takes what is left alongside them (waking a parked worker
/// costs more, on a virtual machine, than a batch of checks). Each result is named by the
/// resource's `id`, its index being known only once the manifest is loaded.
pub(crate) struct EarlyChecks {
    pool: Pool<(usize, Arc<dyn Resource>), Check>,
}

/// A plan's check of one resource, through the run's probe.
struct Check(Probe);

impl Work<(usize, Arc<dyn Resource>)> for Check {
    type Output = Checked;
    fn run(
        &self,
        (id, resource): (usize, Arc<dyn Resource>),
    ) -> impl std::future::Future<Output = Checked> + Send {
        check_one(self.0.clone(), id, resource)
    }
}

impl EarlyChecks {
    pub(crate) fn start(
        runtime: &tokio::runtime::Runtime,
        jobs: usize,
        probe: Probe,
    ) -> EarlyChecks {
        // `--jobs` checks at once, the main thread's included: `--jobs 1` is one worker, alone.
        EarlyChecks {
            pool: Pool::start(runtime.handle(), jobs, BATCH, true, Check(probe)),
        }
    }

    /// Check `decl` if it takes part in the run.
    pub(crate) fn feed(&mut self, decl: &Decl) {
        if decl.enabled {
            self.pool.feed((decl.id, decl.resource.clone()));
        }
    }

    /// The manifest is loaded: what is fed so far is all there is.
    pub(crate) fn close(&mut self) {
        self.pool.close();
    }

    /// Every result: the caller checks what no worker has taken yet, then waits for the rest.
    pub(crate) async fn finish(self) -> Vec<Checked> {
        self.pool.finish().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tend_resources::{Applied, Drift, Mutate, Probe, Resource, ResourceError};

    use super::EarlyChecks;
    use crate::manifest::Decl;

    /// Counts its checks; the one numbered `fails` panics.
    #[derive(Debug)]
    struct Counted {
        n: usize,
        fails: usize,
        checked: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Resource for Counted {
        async fn check(&self, _: &Probe) -> Result<Drift, ResourceError> {
            self.checked.fetch_add(1, Ordering::SeqCst);
            assert!(self.n != self.fails, "resource {} fails", self.n);
            Ok(Drift::default())
        }
        async fn apply(&self, _: &Mutate, _: &Drift) -> Result<Applied, ResourceError> {
            Ok(Applied::default())
        }
    }

    /// A check that takes a while, counting how many run at once.
    #[derive(Debug)]
    struct Slow {
        now: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Resource for Slow {
        async fn check(&self, _: &Probe) -> Result<Drift, ResourceError> {
            let at = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(at, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(Drift::default())
        }
        async fn apply(&self, _: &Mutate, _: &Drift) -> Result<Applied, ResourceError> {
            Ok(Applied::default())
        }
    }

    fn decl(n: usize, fails: usize, checked: &Arc<AtomicUsize>) -> Decl {
        Decl {
            id: n,
            address: format!("t.r{n}"),
            kind: "t",
            name: format!("r{n}"),
            span: n * 10..n * 10 + 5,
            resource: Arc::new(Counted {
                n,
                fails,
                checked: checked.clone(),
            }),
            requires: Vec::new(),
            notify: Vec::new(),
            tags: Vec::new(),
            // One resource whose `when` is false: never checked.
            enabled: n != 7,
        }
    }

    /// Checks begin while the loader is still feeding (before `close`), each enabled resource
    /// is checked once, and a check that panics costs its own result, not the run: `finish`
    /// returns every other.
    #[test]
    fn early_checks_begin_before_the_manifest_is_loaded_and_survive_a_panic() {
        let runtime = crate::engine::host::runtime(3).expect("runtime");
        let probe = Probe::new("/nonexistent-tend-test", "/nonexistent-tend-test/state");
        let checked = Arc::new(AtomicUsize::new(0));
        let mut early = EarlyChecks::start(&runtime, 3, probe);
        // One whole batch, nothing failing in it: checked before the loader says it is done.
        for n in 0..=super::BATCH {
            early.feed(&decl(n, usize::MAX, &checked));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while checked.load(Ordering::SeqCst) < super::BATCH - 1 {
            assert!(Instant::now() < deadline, "no check began while loading");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The rest: resource 40 panics.
        for n in super::BATCH + 1..100 {
            early.feed(&decl(n, 40, &checked));
        }
        let done = runtime.block_on(early.finish());
        let mut keys: Vec<usize> = done.iter().map(|(key, _, _)| *key).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "a resource checked twice");
        // Every resource but the disabled one (never checked) and the one that panicked.
        let want: Vec<usize> = (0..100).filter(|&n| n != 7 && n != 40).collect();
        assert_eq!(keys, want);
        runtime.shutdown_background();
    }

    /// `--jobs` bounds the checks at once, the main thread's included; `--jobs 1` is one.
    #[test]
    fn early_checks_run_at_most_jobs_at_once() {
        for jobs in [1, 3] {
            let runtime = crate::engine::host::runtime(jobs).expect("runtime");
            let probe = Probe::new("/nonexistent-tend-test", "/nonexistent-tend-test/state");
            let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let mut early = EarlyChecks::start(&runtime, jobs, probe);
            for n in 0..6 * super::BATCH {
                let mut d = decl(n, usize::MAX, &Arc::new(AtomicUsize::new(0)));
                d.resource = Arc::new(Slow {
                    now: now.clone(),
                    most: most.clone(),
                });
                early.feed(&d);
            }
            let done = runtime.block_on(early.finish());
            assert_eq!(done.len(), 6 * super::BATCH - 1, "jobs {jobs}");
            let most = most.load(Ordering::SeqCst);
            assert!(most <= jobs, "jobs {jobs}: {most} checks at once");
            if jobs > 1 {
                assert!(most > 1, "jobs {jobs}: the checks never overlapped");
            }
            runtime.shutdown_background();
        }
    }
}
