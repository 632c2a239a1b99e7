//! [`WhenWoken`]: a future polled only after it has asked to be.
//!
//! A connection waits for its end (`CLIENT KILL`, the process stopping) for its whole life,
//! as one branch of the `select!` it passes through for every read. Polling that wait (a
//! `watch` change and a `Notify`, each taking its lock to refresh the task's waker) cost
//! about 400 instructions of every unpipelined request in the gate and in a kvserver
//! (callgrind, `SET -P 1`), to learn that nothing happened. Wrapped, the wait is polled again
//! only when one of its parts woke it: the other passes cost a waker comparison and an
//! atomic swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// See the module documentation. `F` is polled with a waker of its own, which marks it
/// woken and wakes the task that polls the wrapper.
pub struct WhenWoken<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// `signal` as a waker, made once.
    waker: Waker,
}

struct Signal {
    /// The inner future woke since it was last polled (set at first, so the first poll
    /// registers its waits).
    woken: AtomicBool,
    /// The task polling the wrapper.
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WhenWoken<F> {
    pub fn new(inner: F) -> WhenWoken<F> {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        WhenWoken {
            inner: Box::pin(inner),
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Registered before the flag is read: a wake-up after the read finds this task.
        self.signal.task.register(cx.waker());
        if !self.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        this.inner.as_mut().poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    /// Counts its polls; ready once `notify` has been notified.
    async fn counted(notify: Arc<Notify>, polls: Arc<AtomicUsize>) {
        let notified = notify.notified();
        tokio::pin!(notified);
        std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            notified.as_mut().poll(cx)
        })
        .await
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_once_to_register_then_only_when_woken() {
        let notify = Arc::new(Notify::new());
        let polls = Arc::new(AtomicUsize::new(0));
        let mut ended = WhenWoken::new(counted(notify.clone(), polls.clone()));
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        for _ in 0..100 {
            assert!(Pin::new(&mut ended).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, to register its wait");
        notify.notify_waiters();
        assert!(Pin::new(&mut ended).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_wake_up_reaches_the_task_waiting_in_a_select() {
        let notify = Arc::new(Notify::new());
        let polls = Arc::new(AtomicUsize::new(0));
        let ended = WhenWoken::new(counted(notify.clone(), polls.clone()));
        let waiter = tokio::spawn(async move {
            tokio::pin!(ended);
            let mut passes = 0;
            loop {
                tokio::select! {
                    biased;
                    _ = &mut ended => return passes,
                    _ = tokio::task::yield_now() => passes += 1,
                }
            }
        });
        // Let the waiter pass through its select many times, then end it.
        while polls.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        notify.notify_waiters();
        let passes = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the waiter ends once notified")
            .unwrap();
        assert!(passes > 0);
        assert_eq!(polls.load(Ordering::Relaxed), 2, "polled to register and once woken");
    }
}
