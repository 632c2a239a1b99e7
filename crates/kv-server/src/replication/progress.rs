//! The leader's bookkeeping of its followers, as a pure state machine (no I/O, time passed in).
//!
//! Two sets matter:
//! - **confirmed**: the in-sync set as last written to the coordinator (followers only; the
//!   leader is implicit). A confirmed follower may be elected, so the leader must not
//!   acknowledge a write it lacks.
//! - **wanted**: followers the leader wants in the in-sync set because they keep up.
//!
//! A write waits for every follower that is confirmed *or* wanted. So a follower is waited for
//! from the moment it is wanted, and written into the coordinator's set only once it acked
//! everything from that moment on ([`Followers::desired`]); and a lagging follower stops being
//! waited for only after the coordinator confirmed its removal. Together: every confirmed
//! follower holds every acknowledged write.
//!
//! Followers serve reads under a read lease their leader grants with each heartbeat
//! (`kv_peer::stream`). A follower may still be serving reads until the time it received the
//! ack that a granting heartbeat echoed, plus the lease length; so a write also waits for
//! every follower whose read lease may still hold ([`Followers::heartbeat`]), even after it
//! left the in-sync set. Normally that bound has long passed by the time a lagging follower
//! is removed; it matters for a follower that still hears from the leader but lags.
//!
//! A new leader inherits the previous in-sync set (its live members): they hold every write
//! acknowledged so far, and keeping them confirmed means the next acknowledged writes wait for
//! them too — otherwise the new leader would acknowledge writes alone until they reattach,
//! and losing it then would lose those writes. An inherited follower that does not reattach
//! within a grace period stops being desired, and leaves the set the usual way.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What the leader knows about one follower connection.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Identifies the connection; a reconnect replaces the entry.
    pub conn: u64,
    /// Highest offset the follower applied.
    pub acked: u64,
    /// Past the snapshot, receiving the log.
    pub streaming: bool,
    /// Last tick at which the follower had reached the leader's offset of the tick before.
    caught_up_at: Instant,
    /// The leader's last offset at the previous tick (`u64::MAX` before the first tick).
    target: u64,
    /// `Some(offset)`: wanted in the in-sync set since the leader was at `offset`.
    wanted_from: Option<u64>,
    /// Sequence number of the last ack received, and when it was received.
    ack_seq: u64,
    last_ack_at: Instant,
}

impl Progress {
    /// True when the leader wants this follower in the in-sync set.
    pub fn wanted(&self) -> bool {
        self.wanted_from.is_some()
    }
}

/// All followers of one leadership term.
#[derive(Debug, Default)]
pub struct Followers {
    map: HashMap<String, Progress>,
    confirmed: BTreeSet<String>,
    /// Inherited members that have not attached yet, and until when they stay desired.
    grace: HashMap<String, Instant>,
    /// Until when each follower granted a read lease may be serving reads.
    read_leases: HashMap<String, Instant>,
}

impl Followers {
    /// No followers, nothing confirmed.
    pub fn new() -> Followers {
        Followers::default()
    }

    /// A new term whose in-sync set already holds `confirmed` (the previous term's members
    /// that are alive); each stays desired without attaching until `until`.
    pub fn inherit(confirmed: BTreeSet<String>, until: Instant) -> Followers {
        Followers {
            map: HashMap::new(),
            grace: confirmed.iter().map(|id| (id.clone(), until)).collect(),
            confirmed,
            read_leases: HashMap::new(),
        }
    }

    /// A follower connected. `acked` is the offset it resumes after (0 for a snapshot, until
    /// loaded). A confirmed follower that resumes stays wanted.
    pub fn attach(&mut self, id: &str, conn: u64, acked: u64, streaming: bool, now: Instant) {
        self.grace.remove(id);
        let keep = streaming && self.confirmed.contains(id);
        self.map.insert(
            id.to_string(),
            Progress {
                conn,
                acked,
                streaming,
                caught_up_at: now,
                target: u64::MAX,
                wanted_from: keep.then_some(acked),
                ack_seq: 0,
                last_ack_at: now,
            },
        );
    }

    /// The follower was sent its whole snapshot and now receives the log.
    pub fn mark_streaming(&mut self, id: &str, conn: u64) {
        if let Some(p) = self.map.get_mut(id).filter(|p| p.conn == conn) {
            p.streaming = true;
        }
    }

    /// The follower applied everything up to `offset`, said in its ack number `seq`,
    /// received at `now`. False for a stale connection.
    pub fn ack(&mut self, id: &str, conn: u64, offset: u64, seq: u64, now: Instant) -> bool {
        match self.map.get_mut(id).filter(|p| p.conn == conn) {
            Some(p) => {
                p.acked = p.acked.max(offset);
                if seq > p.ack_seq {
                    p.ack_seq = seq;
                    p.last_ack_at = now;
                }
                true
            }
            None => false,
        }
    }

    /// A heartbeat is about to go to follower `id` at `now`: the ack number it echoes, and
    /// whether it grants a read lease of `lease` (the follower is waited for, so it holds
    /// every acknowledged write). A grant is remembered: writes keep waiting for the
    /// follower until the lease it could derive from it has certainly ended.
    /// Nothing is granted unless `may_grant` (the leader's own lease holds).
    pub fn heartbeat(
        &mut self,
        id: &str,
        conn: u64,
        now: Instant,
        lease: Duration,
        may_grant: bool,
    ) -> Option<(u64, bool)> {
        let p = self.map.get(id).filter(|p| p.conn == conn)?;
        let grant = may_grant && p.ack_seq > 0 && (self.confirmed.contains(id) || p.wanted());
        if grant {
            let until = p.last_ack_at + lease;
            if until > now {
                let bound = self.read_leases.entry(id.to_string()).or_insert(until);
                *bound = (*bound).max(until);
            }
        }
        Some((p.ack_seq, grant))
    }

    /// The follower's connection ended.
    pub fn detach(&mut self, id: &str, conn: u64) {
        if self.map.get(id).is_some_and(|p| p.conn == conn) {
            self.map.remove(id);
        }
    }

    /// Periodic evaluation at time `now` with the leader at offset `last`: a follower that
    /// reached the previous tick's offset is caught up (and becomes wanted); a wanted follower
    /// not caught up for longer than `lag_timeout` stops being wanted.
    pub fn tick(&mut self, now: Instant, last: u64, lag_timeout: Duration) {
        self.grace.retain(|_, until| now < *until);
        self.read_leases.retain(|_, until| now < *until);
        for p in self.map.values_mut().filter(|p| p.streaming) {
            let caught_up = p.acked >= p.target || p.acked >= last;
            if caught_up {
                p.caught_up_at = now;
            }
            if p.wanted_from.is_some() {
                if now.duration_since(p.caught_up_at) > lag_timeout {
                    p.wanted_from = None;
                }
            } else if caught_up {
                p.wanted_from = Some(last);
            }
            p.target = last;
        }
    }

    /// Stops wanting `id` at once (its stream failed).
    pub fn unwant(&mut self, id: &str) {
        if let Some(p) = self.map.get_mut(id) {
            p.wanted_from = None;
        }
    }

    /// The highest offset every waited-for follower applied (capped at `last`) at `now`:
    /// followers confirmed in the in-sync set, wanted in it, or possibly serving reads.
    pub fn commit(&self, last: u64, now: Instant) -> u64 {
        let acked = |id: &String| self.map.get(id).map_or(0, |p| p.acked);
        let confirmed = self.confirmed.iter().map(acked);
        let wanted = self.map.values().filter(|p| p.wanted()).map(|p| p.acked);
        let reading = self
            .read_leases
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(id, _)| acked(id));
        confirmed.chain(wanted).chain(reading).fold(last, u64::min)
    }

    /// The in-sync set (followers) the coordinator should hold: wanted followers that are
    /// already confirmed or have acked everything since they became wanted.
    pub fn desired(&self) -> BTreeSet<String> {
        let attached = self.map.iter().filter(|(id, p)| {
            p.wanted_from
                .is_some_and(|from| self.confirmed.contains(*id) || p.acked >= from)
        });
        attached
            .map(|(id, _)| id.clone())
            .chain(self.grace.keys().filter(|id| self.confirmed.contains(*id)).cloned())
            .collect()
    }

    /// The in-sync set (followers) as last confirmed by the coordinator.
    pub fn confirmed(&self) -> &BTreeSet<String> {
        &self.confirmed
    }

    /// The coordinator now holds `isr` (followers only).
    pub fn confirm(&mut self, isr: BTreeSet<String>) {
        self.confirmed = isr;
    }

    /// The progress of `id`, if connected.
    pub fn get(&self, id: &str) -> Option<&Progress> {
        self.map.get(id)
    }

    /// How far each connected follower is behind `last` (the leader's last offset).
    pub fn lags(&self, last: u64) -> std::collections::BTreeMap<String, u64> {
        self.map
            .iter()
            .map(|(id, p)| (id.clone(), last.saturating_sub(p.acked)))
            .collect()
    }

    /// Number of connected followers.
    pub fn connected(&self) -> usize {
        self.map.len()
    }

    /// True when nothing needs the lag monitor: no follower connected, none confirmed, no
    /// read lease outstanding.
    pub fn idle(&self) -> bool {
        self.map.is_empty() && self.confirmed.is_empty() && self.read_leases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_millis(100);

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_follower_joins_only_after_catching_up() {
        let t = Instant::now();
        let mut f = Followers::new();
        f.attach("b", 1, 0, false, t);
        assert_eq!(f.commit(50, t), 50, "a follower loading a snapshot is not waited for");
        f.mark_streaming("b", 1);
        f.ack("b", 1, 40, 1, t);
        f.tick(ms(t, 10), 50, LAG);
        assert_eq!(f.commit(60, t), 60, "behind the leader: not waited for");
        f.ack("b", 1, 50, 1, t);
        f.tick(ms(t, 20), 60, LAG);
        assert!(f.get("b").unwrap().wanted());
        assert_eq!(f.commit(60, t), 50, "writes now wait for b");
        assert!(
            f.desired().is_empty(),
            "not confirmed until it acked what it was wanted from"
        );
        f.ack("b", 1, 60, 1, t);
        assert_eq!(f.desired(), set(&["b"]));
        f.confirm(set(&["b"]));
        assert_eq!(f.commit(60, t), 60);
    }

    #[test]
    fn a_lagging_follower_is_released_only_after_confirmation() {
        let t = Instant::now();
        let mut f = Followers::new();
        f.confirm(set(&["b"]));
        f.attach("b", 1, 10, true, t);
        assert!(
            f.get("b").unwrap().wanted(),
            "a confirmed follower resuming stays wanted"
        );
        f.tick(ms(t, 10), 20, LAG);
        f.tick(ms(t, 50), 30, LAG);
        assert!(f.get("b").unwrap().wanted());
        f.tick(ms(t, 200), 40, LAG);
        assert!(!f.get("b").unwrap().wanted(), "lagged past the timeout");
        assert!(f.desired().is_empty());
        assert_eq!(f.commit(40, t), 10, "still confirmed: writes keep waiting");
        f.confirm(f.desired());
        assert_eq!(f.commit(40, t), 40);
    }

    #[test]
    fn a_confirmed_follower_that_disconnected_blocks_until_removed() {
        let t = Instant::now();
        let mut f = Followers::new();
        f.confirm(set(&["b"]));
        f.attach("b", 1, 5, true, t);
        f.detach("b", 2);
        assert!(f.get("b").is_some(), "a stale connection cannot detach the new one");
        f.detach("b", 1);
        assert_eq!(f.commit(9, t), 0);
        assert!(f.desired().is_empty());
        f.confirm(f.desired());
        assert_eq!(f.commit(9, t), 9);
    }

    #[test]
    fn an_inherited_follower_is_waited_for_and_kept_when_it_resumes() {
        let t = Instant::now();
        let mut f = Followers::inherit(set(&["b", "c"]), ms(t, 100));
        assert_eq!(f.commit(7, t), 0, "writes wait for the inherited members");
        assert_eq!(f.desired(), set(&["b", "c"]), "desired while within the grace period");
        f.attach("b", 1, 7, true, ms(t, 10));
        assert!(f.get("b").unwrap().wanted(), "resumed: stays in the set");
        f.ack("b", 1, 7, 1, t);
        f.tick(ms(t, 50), 7, LAG);
        assert_eq!(f.desired(), set(&["b", "c"]));
        f.tick(ms(t, 150), 7, LAG);
        assert_eq!(f.desired(), set(&["b"]), "c never came back: given up after the grace");
        assert_eq!(
            f.commit(7, t),
            0,
            "still confirmed: writes wait until its removal is confirmed"
        );
        f.confirm(f.desired());
        assert_eq!(f.commit(7, t), 7);
    }

    #[test]
    fn an_inherited_follower_that_needs_a_snapshot_leaves_the_set() {
        let t = Instant::now();
        let mut f = Followers::inherit(set(&["b"]), ms(t, 100));
        f.attach("b", 1, 0, false, ms(t, 5));
        assert!(
            f.desired().is_empty(),
            "a follower about to be emptied must leave first"
        );
    }

    #[test]
    fn acks_from_old_connections_are_ignored() {
        let t = Instant::now();
        let mut f = Followers::new();
        f.attach("b", 1, 0, true, t);
        f.attach("b", 2, 3, true, t);
        assert!(!f.ack("b", 1, 100, 1, t));
        assert!(f.ack("b", 2, 4, 1, t));
        assert_eq!(f.get("b").unwrap().acked, 4);
        assert!(f.ack("b", 2, 2, 1, t), "acks never go backwards");
        assert_eq!(f.get("b").unwrap().acked, 4);
    }

    #[test]
    fn a_follower_granted_a_read_lease_is_waited_for_until_it_ends() {
        const LEASE: Duration = Duration::from_millis(300);
        let t = Instant::now();
        let mut f = Followers::new();
        f.confirm(set(&["b"]));
        f.attach("b", 1, 0, true, t);
        assert_eq!(
            f.heartbeat("b", 1, t, LEASE, true),
            Some((0, false)),
            "no ack yet: no lease"
        );
        f.ack("b", 1, 10, 1, ms(t, 10));
        assert_eq!(f.heartbeat("b", 1, ms(t, 20), LEASE, true), Some((1, true)));
        assert_eq!(f.heartbeat("b", 2, ms(t, 20), LEASE, true), None, "a stale connection");
        // b stops acking; it lags, and its removal is confirmed at 200 ms.
        f.tick(ms(t, 30), 20, LAG);
        f.tick(ms(t, 200), 30, LAG);
        assert!(f.desired().is_empty());
        f.confirm(f.desired());
        assert_eq!(
            f.heartbeat("b", 1, ms(t, 210), LEASE, true),
            Some((1, false)),
            "no longer granted"
        );
        assert_eq!(
            f.commit(30, ms(t, 250)),
            10,
            "its read lease (ack received at 10 ms + 300 ms) may still hold"
        );
        assert_eq!(f.commit(30, ms(t, 311)), 30, "it has certainly ended");
        f.tick(ms(t, 320), 30, LAG);
        f.detach("b", 1);
        assert!(f.idle());
    }
}
