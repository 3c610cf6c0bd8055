//! A pool of workers for a fixed list of items.

use std::sync::Arc;

use tokio::task::JoinSet;

/// Run `work` on every item, at most `jobs` at once: `jobs` tasks, each taking the next item
/// until none is left. As a semaphore would, without a task and a wake-up per item: for a
/// thousand quick checks those hand-offs between threads cost more than the checks. The results
/// come back in no particular order; an item whose work panicked has none (logged).
pub(super) async fn pool<T, R, F, Fut>(jobs: usize, items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let workers = jobs.max(1).min(items.len());
    let results = Vec::with_capacity(items.len());
    let queue = Arc::new(std::sync::Mutex::new(items.into_iter()));
    // Each result is handed over as soon as it is made: a task that panics loses only the item
    // it was on, and the others take the rest of the queue.
    let results = Arc::new(std::sync::Mutex::new(results));
    let work = Arc::new(work);
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (queue, results, work) = (queue.clone(), results.clone(), work.clone());
        set.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(item) = next else {
                    return;
                };
                let r = work(item).await;
                results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            tracing::error!("a resource task died: {e}");
        }
    }
    let out = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    out
}

#[cfg(test)]
mod tests {
    use super::pool;

    /// Every item is worked on once, at most `jobs` at a time, and an item whose work panics
    /// costs only its own result: the other tasks take the rest of the queue.
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
        assert!(most.load(Ordering::SeqCst) <= 3, "more than jobs at once");
    }
}
