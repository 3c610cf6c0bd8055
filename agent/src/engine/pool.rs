//! The engine's one pool of workers. Items are queued — all at once for a wave of applies or a
//! plan's checks, or as the loader builds them for a plan's early checks — and at most `jobs` of
//! them are worked on at a time; results come back in no particular order.
//!
//! Fed items are handed over in batches: for a thousand quick checks the hand-off between
//! threads (a wake-up per item) costs more than the checks, so the loader's resources reach the
//! queue 32 at a time, with one wake-up; a worker then takes items one by one until none is
//! left. An item whose work panics loses its own result (logged); the workers go on.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio::sync::Notify;

/// What a worker does with one item. A trait rather than a boxed closure: each item's future
/// lives in its worker's task, not in an allocation of its own (an apply's future is large, and
/// a thousand of them cost a no-op apply pages it did not need).
pub(crate) trait Work<T>: Send + Sync + 'static {
    /// What one item gives.
    type Output: Send + 'static;
    /// Work on one item.
    fn run(&self, item: T) -> impl Future<Output = Self::Output> + Send;
}

/// A pool under way: feed it, close it, then [`Pool::finish`] for every result.
pub(crate) struct Pool<T, W: Work<T>> {
    shared: Arc<Shared<T, W>>,
    /// Items fed and not handed over yet.
    batch: Vec<T>,
    batch_size: usize,
    /// Whether the caller works too once it is done feeding (it counts as one of the `jobs`).
    helps: bool,
}

struct Shared<T, W: Work<T>> {
    /// Items not taken yet, and whether feeding is done.
    queue: Mutex<(VecDeque<T>, bool)>,
    ready: Notify,
    /// Items taken and not finished, and a wake-up when that reaches zero.
    in_flight: AtomicUsize,
    idle: Notify,
    results: Mutex<Vec<W::Output>>,
    work: W,
}

impl<T: Send + 'static, W: Work<T>> Shared<T, W> {
    /// The next item, counted in flight; `Some(None)` once feeding is done and none is left;
    /// `None` while more may come.
    fn take(&self) -> Option<Option<T>> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.0.pop_front() {
            Some(item) => {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                Some(Some(item))
            }
            None if q.1 => Some(None),
            None => None,
        }
    }

    /// Work a taken item; a panic loses its result, not the pool.
    async fn run(&self, item: T) {
        // Counted out however the work ends, panics included.
        struct Done<'a>(&'a AtomicUsize, &'a Notify);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                if self.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.1.notify_waiters();
                }
            }
        }
        let _done = Done(&self.in_flight, &self.idle);
        match std::panic::AssertUnwindSafe(self.work.run(item))
            .catch_unwind()
            .await
        {
            Ok(out) => self
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(out),
            Err(_) => tracing::error!("a resource's work panicked; its result is lost"),
        }
    }

    async fn worker(self: Arc<Self>) {
        loop {
            // Registered before the look, so that an item or the end between the two wakes it.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.take() {
                Some(Some(item)) => self.run(item).await,
                Some(None) => return,
                None => notified.await,
            }
        }
    }
}

impl<T: Send + 'static, W: Work<T>> Pool<T, W> {
    /// Start `jobs` workers on `runtime`; when `helps`, the caller counts as one of them (it
    /// works too once it is done feeding: `--jobs 1` is one worker while it feeds, then the two
    /// take turns). Fed items reach the workers `batch_size` at a time.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        jobs: usize,
        batch_size: usize,
        helps: bool,
        work: W,
    ) -> Pool<T, W> {
        Pool::with_queue(
            runtime,
            jobs,
            batch_size,
            helps,
            work,
            VecDeque::new(),
            false,
        )
    }

    /// [`Pool::start`] with items already queued (and feeding done when `closed`): the workers
    /// find them as they start, with no wake-up at all.
    fn with_queue(
        runtime: &tokio::runtime::Handle,
        jobs: usize,
        batch_size: usize,
        helps: bool,
        work: W,
        queued: VecDeque<T>,
        closed: bool,
    ) -> Pool<T, W> {
        let results = Vec::with_capacity(queued.len());
        let shared = Arc::new(Shared {
            queue: Mutex::new((queued, closed)),
            ready: Notify::new(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            results: Mutex::new(results),
            work,
        });
        let helps = helps && jobs > 1;
        let workers = if helps { jobs - 1 } else { jobs.max(1) };
        for _ in 0..workers {
            runtime.spawn(shared.clone().worker());
        }
        Pool {
            shared,
            batch: Vec::new(),
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
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !q.1 {
                q.0.extend(self.batch.drain(..));
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
    pub(crate) async fn finish(mut self) -> Vec<W::Output> {
        self.close();
        if self.helps {
            while let Some(Some(item)) = self.shared.take() {
                self.shared.run(item).await;
            }
        }
        // Done when no item is left and none is being worked on (an item is counted in flight
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

/// Run `work` on every item of a list known up front, at most `jobs` at once; the results in
/// no particular order.
pub(super) async fn pool<T, R, F, Fut>(jobs: usize, items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
{
    if items.is_empty() {
        return Vec::new();
    }
    let jobs = jobs.max(1).min(items.len());
    // Every item queued before the workers start: none of them waits for a wake-up.
    let p = Pool::with_queue(
        &tokio::runtime::Handle::current(),
        jobs,
        1,
        false,
        FnWork(work),
        VecDeque::from(items),
        true,
    );
    p.finish().await
}

/// A closure as [`Work`].
struct FnWork<F>(F);

impl<T, R, F, Fut> Work<T> for FnWork<F>
where
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
{
    type Output = R;
    fn run(&self, item: T) -> impl Future<Output = R> + Send {
        (self.0)(item)
    }
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
