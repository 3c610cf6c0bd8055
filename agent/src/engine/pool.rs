//! The engine's one pool of workers. Items are fed in batches — all at once for a wave of
//! applies or a plan's checks, or as the loader builds them for a plan's early checks — and at
//! most `jobs` of them are worked on at a time; results come back in no particular order.
//!
//! Workers take whole batches, not items: for a thousand quick checks the hand-off between
//! threads (a wake-up per item) costs more than the checks, so the loader hands its resources
//! over 32 at a time, while the slow work of an apply wave goes one item per batch. An item
//! whose work panics loses its batch (logged); the other workers go on with the rest.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio::sync::Notify;

/// What a worker does with one item.
pub(crate) type Work<T, R> =
    Arc<dyn Fn(T) -> Pin<Box<dyn Future<Output = R> + Send>> + Send + Sync>;

/// A pool under way: feed it, close it, then [`Pool::finish`] for every result.
pub(crate) struct Pool<T, R> {
    shared: Arc<Shared<T, R>>,
    /// Items fed and not handed over yet.
    batch: Vec<T>,
    batch_size: usize,
    /// Whether the caller works too once it is done feeding (it counts as one of the `jobs`).
    helps: bool,
}

struct Shared<T, R> {
    /// Batches not taken yet, and whether feeding is done.
    queue: Mutex<(VecDeque<Vec<T>>, bool)>,
    ready: Notify,
    /// Batches taken and not finished, and a wake-up when that reaches zero.
    in_flight: AtomicUsize,
    idle: Notify,
    results: Mutex<Vec<R>>,
    work: Work<T, R>,
}

impl<T: Send + 'static, R: Send + 'static> Shared<T, R> {
    /// The next batch, counted in flight; `Some(None)` once feeding is done and none is left;
    /// `None` while more may come.
    fn take(&self) -> Option<Option<Vec<T>>> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.0.pop_front() {
            Some(b) => {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                Some(Some(b))
            }
            None if q.1 => Some(None),
            None => None,
        }
    }

    /// Work a taken batch; a panic loses the batch, not the pool.
    async fn run(&self, batch: Vec<T>) {
        // Counted out however the batch ends, panics included.
        struct Done<'a>(&'a AtomicUsize, &'a Notify);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                if self.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.1.notify_waiters();
                }
            }
        }
        let _done = Done(&self.in_flight, &self.idle);
        let run = async {
            let mut out = Vec::with_capacity(batch.len());
            for item in batch {
                out.push((self.work)(item).await);
            }
            out
        };
        match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(out) => self
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(out),
            Err(_) => tracing::error!("a resource's work panicked; its result is lost"),
        }
    }

    async fn worker(self: Arc<Self>) {
        loop {
            // Registered before the look, so that a batch or the end between the two wakes it.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.take() {
                Some(Some(batch)) => self.run(batch).await,
                Some(None) => return,
                None => notified.await,
            }
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Pool<T, R> {
    /// Start `jobs` workers on `runtime`, counting the caller as one of them when `helps`
    /// (`--jobs 1` is then the caller alone, once it finishes feeding… and one worker while it
    /// feeds, so that feeding never waits for the work). Fed items go over `batch_size` at a time.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        jobs: usize,
        batch_size: usize,
        helps: bool,
        work: Work<T, R>,
    ) -> Pool<T, R> {
        let shared = Arc::new(Shared {
            queue: Mutex::new((VecDeque::new(), false)),
            ready: Notify::new(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            results: Mutex::new(Vec::new()),
            work,
        });
        let helps = helps && jobs > 1;
        let workers = if helps { jobs - 1 } else { jobs.max(1) };
        for _ in 0..workers {
            runtime.spawn(shared.clone().worker());
        }
        Pool {
            shared,
            batch: Vec::with_capacity(batch_size),
            batch_size: batch_size.max(1),
            helps,
        }
    }

    /// One more item.
    pub(crate) fn feed(&mut self, item: T) {
        self.batch.push(item);
        if self.batch.len() >= self.batch_size {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !q.1 {
                q.0.push_back(batch);
                self.shared.ready.notify_one();
            }
        }
    }

    /// Feeding is done: what is fed so far is all there is.
    pub(crate) fn close(&mut self) {
        self.flush();
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = true;
        self.shared.ready.notify_waiters();
    }

    /// Every result: the caller works on what no worker has taken yet (when it helps), then
    /// waits for the rest.
    pub(crate) async fn finish(mut self) -> Vec<R> {
        self.close();
        if self.helps {
            while let Some(Some(batch)) = self.shared.take() {
                self.shared.run(batch).await;
            }
        }
        // Done when no batch is left and none is being worked on (a batch is counted in flight
        // under the queue's lock as it is taken, so the two are seen together).
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.0.is_empty() && self.shared.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
            }
            idle.await;
        }
        std::mem::take(
            &mut *self
                .shared
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

/// Run `work` on every item of a list known up front, at most `jobs` at once, one item per
/// hand-over (an apply wave's items are slow); the results in no particular order.
pub(super) async fn pool<T, R, F, Fut>(jobs: usize, items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    if items.is_empty() {
        return Vec::new();
    }
    let work: Work<T, R> = Arc::new(move |item| Box::pin(work(item)));
    let jobs = jobs.max(1).min(items.len());
    let mut p = Pool::start(&tokio::runtime::Handle::current(), jobs, 1, false, work);
    for item in items {
        p.feed(item);
    }
    p.finish().await
}

#[cfg(test)]
mod tests {
    use super::pool;

    /// Every item is worked on once, at most `jobs` at a time, and an item whose work panics
    /// costs only its own result: the other workers take the rest of the queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_pool_works_each_item_once_and_a_panic_loses_only_its_item() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), most.clone());
        let mut done = pool(3, (0..200).collect(), move |i: usize| {
            let (now, most) = (n.clone(), m.clone());
            async move {
                let at = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at, Ordering::SeqCst);
                tokio::task::yield_now().await;
                now.fetch_sub(1, Ordering::SeqCst);
                assert!(i != 17, "item 17 fails");
                i
            }
        })
        .await;
        done.sort_unstable();
        let want: Vec<usize> = (0..200).filter(|&i| i != 17).collect();
        assert_eq!(done, want);
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 3, "more than jobs at once");
        assert!(most > 1, "the items never overlapped");
    }
}
