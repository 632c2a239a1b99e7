//! One timer for a connection's waits for replies.
//!
//! A client connection waits for its replies one after the other, each for at most
//! `--backend-timeout-ms`. A `tokio::time::timeout` per wait reads the clock, enters the
//! timer wheel and leaves it again: callgrind put that at about 1,200 instructions of a
//! `SET` at `-P 1` (a tenth of the gate's). [`ReplyTimer`] keeps one timer per connection and
//! moves it only when it fires: waits start in order and last equally long, so the timer
//! always points at or before the current wait's deadline, and on firing it either ends
//! the wait (its deadline passed) or is moved to it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A wait ran past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// Bounds a sequence of waits, each by the same limit, with one timer (see the module).
#[derive(Debug, Default)]
pub struct ReplyTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReplyTimer {
    /// `f`'s output, or [`Expired`] once `limit` has passed since this call. Waits must not
    /// overlap and must all use the same `limit` (what keeps the timer at or before the
    /// current deadline).
    pub async fn within<F: Future>(&mut self, limit: Duration, f: F) -> Result<F::Output, Expired> {
        let deadline = Instant::now() + limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        tokio::pin!(f);
        loop {
            tokio::select! {
                biased;
                out = &mut f => return Ok(out),
                () = sleep.as_mut() => {
                    if Instant::now() >= deadline {
                        return Err(Expired);
                    }
                    // It pointed at an earlier wait's deadline.
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn a_reply_in_time_is_returned() {
        let mut t = ReplyTimer::default();
        let r = t.within(LIMIT, async { 7 }).await;
        assert_eq!(r, Ok(7));
        let r = t
            .within(LIMIT, async {
                tokio::time::sleep(LIMIT - Duration::from_millis(1)).await;
                8
            })
            .await;
        assert_eq!(r, Ok(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_expires_at_its_limit_not_before() {
        let mut t = ReplyTimer::default();
        let started = Instant::now();
        let r = t.within(LIMIT, std::future::pending::<()>()).await;
        assert_eq!(r, Err(Expired));
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_wait_gets_its_whole_limit_from_a_stale_timer() {
        let mut t = ReplyTimer::default();
        // The timer is armed for the first wait's deadline…
        assert_eq!(t.within(LIMIT, async {}).await, Ok(()));
        // …which passes while nothing waits; a later wait still has its own full limit.
        tokio::time::sleep(LIMIT * 3).await;
        let started = Instant::now();
        let r = t
            .within(LIMIT, async {
                tokio::time::sleep(LIMIT / 2).await;
                "late but in time"
            })
            .await;
        assert_eq!(r, Ok("late but in time"));
        // And one that never ends expires a full limit after it began.
        tokio::time::sleep(LIMIT / 3).await;
        let started_again = Instant::now();
        assert_eq!(t.within(LIMIT, std::future::pending::<()>()).await, Err(Expired));
        assert_eq!(started_again.elapsed(), LIMIT);
        assert!(started.elapsed() > LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn back_to_back_waits_each_get_the_limit() {
        let mut t = ReplyTimer::default();
        // Each wait lasts most of the limit: together they outlast the first deadline.
        for i in 0..4 {
            let r = t
                .within(LIMIT, async {
                    tokio::time::sleep(LIMIT - Duration::from_millis(10)).await;
                    i
                })
                .await;
            assert_eq!(r, Ok(i));
        }
    }
}
