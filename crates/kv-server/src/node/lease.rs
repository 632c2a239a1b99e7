//! Leases on the monotonic clock, which keeps running while the process is paused: a
//! server resumed after a long `SIGSTOP` finds its leases expired.
//!
//! - A **leader's lease**: until when it may acknowledge writes and serve reads without
//!   hearing from the coordinator again (see `cluster::lease`).
//! - A **follower's read lease**: until when it may serve reads, granted by its leader's
//!   heartbeats (see `kv_peer::stream`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// An instant, stored atomically as nanoseconds after a base (0 = no lease), so the hot path
/// checks it without the node's lock.
pub struct Lease {
    base: Instant,
    until: AtomicU64,
}

impl Lease {
    pub fn new() -> Lease {
        Lease {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// True while the lease holds.
    pub fn valid(&self) -> bool {
        self.nanos(Instant::now()) < self.until.load(Ordering::Acquire)
    }

    /// Until when the lease holds (a past instant when it does not).
    pub fn until(&self) -> Instant {
        self.base + std::time::Duration::from_nanos(self.until.load(Ordering::Acquire))
    }

    /// Extends the lease to `t` (never shortens it).
    pub fn extend_to(&self, t: Instant) {
        self.until.fetch_max(self.nanos(t), Ordering::AcqRel);
    }

    /// Sets the lease to `t`, shorter or longer.
    pub fn set(&self, t: Instant) {
        self.until.store(self.nanos(t), Ordering::Release);
    }

    /// Ends the lease now.
    pub fn revoke(&self) {
        self.until.store(0, Ordering::Release);
    }
}

impl Default for Lease {
    fn default() -> Self {
        Lease::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn extends_never_shortens_and_revokes() {
        let l = Lease::new();
        assert!(!l.valid());
        let later = Instant::now() + Duration::from_secs(60);
        l.extend_to(later);
        assert!(l.valid());
        l.extend_to(Instant::now());
        assert!(l.valid(), "an earlier instant does not shorten it");
        l.revoke();
        assert!(!l.valid());
        l.set(Instant::now() - Duration::from_millis(1));
        assert!(!l.valid());
    }
}
