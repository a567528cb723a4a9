//! The bounded pool that runs PBKDF2 secret checks off the HTTP workers.
//!
//! At most `threads` checks run at once (on tokio's blocking threads) and at most `queue` wait
//! for a turn; a request beyond that is refused at once (`Busy`) instead of queueing without
//! bound. A waiting request that is dropped gives its place back. The pool never sees which
//! client a check belongs to and never keeps a secret after the check.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// The pool is saturated: the check was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

#[derive(Debug)]
pub struct SecretCheckPool {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    checks: AtomicU64,
}

/// Gives a waiting place back however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SecretCheckPool {
    pub fn new(threads: usize, queue: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(threads.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
            checks: AtomicU64::new(0),
        }
    }

    /// How many checks have run since start (for metrics and tests).
    pub fn checks_run(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Runs `check` on a pool thread and returns its answer, or `Busy` when `queue` requests
    /// are already waiting.
    pub async fn run<F>(&self, check: F) -> Result<bool, Busy>
    where
        F: FnOnce() -> bool + Send + 'static,
    {
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let _place = Waiting(&self.waiting);
                self.running
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Busy)?
            }
        };
        self.checks.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check()
        })
        .await
        .map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_beyond_the_queue_and_frees_places() {
        let pool = Arc::new(SecretCheckPool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        // Occupies the one thread until told to finish.
        let hold = {
            let (pool, rx) = (pool.clone(), rx.clone());
            tokio::spawn(async move {
                pool.run(move || rx.lock().map(|r| r.recv().is_ok()).unwrap_or(false))
                    .await
            })
        };
        while pool.running.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
        // One may wait...
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| true).await })
        };
        while pool.waiting.load(Ordering::Acquire) != 1 {
            tokio::task::yield_now().await;
        }
        // ...a second is refused at once.
        assert_eq!(pool.run(|| true).await, Err(Busy));
        tx.send(()).unwrap();
        assert_eq!(hold.await.unwrap(), Ok(true));
        assert_eq!(queued.await.unwrap(), Ok(true));
        assert_eq!(pool.waiting.load(Ordering::Acquire), 0);
        assert_eq!(pool.run(|| false).await, Ok(false));
    }
}
