//! Busy polling of HTTP workers (`busy_poll` in the configuration): for the configured window
//! after its last request, a worker keeps polling its sockets instead of sleeping, so the next
//! request finds it awake.
//!
//! Why: a worker that sleeps between requests is woken by the kernel when the next one
//! arrives. On a virtual machine that wake-up makes the host wake an idle virtual CPU, which
//! costs tens of microseconds per wake-up; at a steady 75–80% of peak load on the benchmark
//! VM, requests then queued (docs/benchmarks.md, docs/operations.md). Polling keeps the core
//! busy instead: while a window is open the worker uses its whole core even with no
//! requests, so the option is off unless configured.
//!
//! Each worker thread has one poller task, started by [`start`] when the worker builds its
//! application, and a per-thread record of when its last request started or ended, which
//! [`touch`] (a middleware on every route) updates. This module must not poll when the window
//! is zero, must not keep polling once a worker has been idle for the whole window, and
//! decides nothing about requests.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// This worker's window; zero until [`start`] runs on it.
    static WINDOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// When a request last started or ended on this worker.
    static LAST_REQUEST: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The poller, while it sleeps waiting for a request.
    static SLEEPING_POLLER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Starts this worker thread's poller (once per thread; nothing when `window` is zero).
pub fn start(window: Duration) {
    if window.is_zero() || !WINDOW.get().is_zero() {
        return;
    }
    WINDOW.set(window);
    actix_web::rt::spawn(poll_while_busy(window));
}

/// Notes that a request started or ended on this worker, and wakes its poller if it was
/// asleep.
pub fn touch() {
    if WINDOW.get().is_zero() {
        return;
    }
    LAST_REQUEST.set(Some(Instant::now()));
    if let Some(poller) = SLEEPING_POLLER.take() {
        poller.wake();
    }
}

/// Whether a request started or ended on this worker within `window`.
fn busy(window: Duration) -> bool {
    LAST_REQUEST.get().is_some_and(|t| t.elapsed() < window)
}

/// The poller: while the worker is busy it yields at once, which makes the runtime check its
/// sockets without blocking and come straight back; once the window has passed without a
/// request it sleeps until [`touch`] wakes it.
async fn poll_while_busy(window: Duration) {
    loop {
        while busy(window) {
            tokio::task::yield_now().await;
        }
        poll_fn(|cx| {
            if busy(window) {
                Poll::Ready(())
            } else {
                SLEEPING_POLLER.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }
}
