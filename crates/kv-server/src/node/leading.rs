//! The leader's side of replication, as [`Node`] methods: plan a follower's sync, stream a
//! snapshot and the log, take acks, send heartbeats, evaluate lag, and keep the in-sync set.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kv_peer::SyncRequest;

use super::{Node, Role, StaleTerm};

/// How a follower is brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPlan {
    /// `Some(offset)`: resume from the backlog after `offset`; `None`: a full snapshot.
    pub resume_after: Option<u64>,
    pub epoch: u64,
    pub term: u64,
}

/// A shard receiving keys hands its move state on in a full snapshot, so a follower elected
/// mid-move still refuses to resurrect deleted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundState {
    pub version: u64,
    pub done: u64,
    pub tombstones: Vec<Box<[u8]>>,
}

/// Why the log could not be read from an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogRead {
    #[error("the term ended")]
    StaleTerm,
    #[error("the backlog no longer holds that offset")]
    Trimmed,
}

impl Node {
    /// Decides how to bring the follower that sent `req` up to date, and starts tracking
    /// its progress on connection `conn`.
    pub fn plan_sync(&self, req: &SyncRequest, conn: u64) -> Result<SyncPlan, String> {
        let mut d = self.lock();
        let Role::Leader { epoch } = d.role else {
            return Err("not the leader".into());
        };
        if req.known_epoch > epoch {
            return Err(format!(
                "leader epoch {epoch} is older than the follower's {}",
                req.known_epoch
            ));
        }
        let now = Instant::now();
        let resume_after = req.position.filter(|&(e, o)| d.log.can_resume(e, o)).map(|(_, o)| o);
        d.followers.attach(
            &req.node_id,
            conn,
            resume_after.unwrap_or(0),
            resume_after.is_some(),
            now,
        );
        self.publish_commit(&mut d);
        Ok(SyncPlan {
            resume_after,
            epoch,
            term: d.term,
        })
    }

    /// True while `id` is in the confirmed in-sync set of `term`.
    pub fn is_confirmed(&self, id: &str, term: u64) -> Result<bool, StaleTerm> {
        let d = self.lock();
        if d.term != term {
            return Err(StaleTerm);
        }
        Ok(d.followers.confirmed().contains(id))
    }

    /// Where a snapshot for `term` starts (the last offset), and the move state it carries.
    pub fn snapshot_begin(&self, term: u64) -> Result<(u64, Option<InboundState>), StaleTerm> {
        let d = self.lock();
        if d.term != term {
            return Err(StaleTerm);
        }
        let inbound = (d.inbound.is_some() || d.inbound_done > 0).then(|| InboundState {
            version: d.inbound.unwrap_or(0),
            done: d.inbound_done,
            tombstones: d.tombstones.iter().cloned().collect(),
        });
        Ok((d.log.last_offset(), inbound))
    }

    /// Writes up to `max_entries` store entries from `cursor` (stopping past `max_bytes`)
    /// as snapshot entries into `out`. Returns the next cursor (`None` at the end) and how
    /// many were written.
    pub fn snapshot_chunk(
        &self,
        term: u64,
        cursor: usize,
        max_entries: usize,
        max_bytes: usize,
        out: &mut BytesMut,
    ) -> Result<(Option<usize>, usize, u64), StaleTerm> {
        let d = self.lock();
        if d.term != term {
            return Err(StaleTerm);
        }
        let mut n = 0;
        let next = d.store.scan(cursor, max_entries, |k, v, at| {
            kv_peer::stream::write_snap_entry(out, k, v.kind(), &v.payload(), at);
            n += 1;
            out.len() < max_bytes
        });
        Ok((next, n, d.log.last_offset()))
    }

    /// The follower on `conn` was sent its whole snapshot and now receives the log.
    pub fn follower_streaming(&self, id: &str, conn: u64) {
        self.lock().followers.mark_streaming(id, conn);
    }

    /// Appends up to `max` log entries from offset `from` to `out`.
    pub fn read_log(&self, term: u64, from: u64, max: usize, out: &mut Vec<Bytes>) -> Result<(), LogRead> {
        let d = self.lock();
        if d.term != term {
            return Err(LogRead::StaleTerm);
        }
        d.log.read_from(from, max, out).map_err(|_| LogRead::Trimmed)
    }

    /// The follower on `conn` acked `offset` with ack number `seq`.
    pub fn follower_acked(&self, id: &str, conn: u64, offset: u64, seq: u64) {
        let mut d = self.lock();
        if d.followers.ack(id, conn, offset, seq, Instant::now()) {
            self.publish_commit(&mut d);
        }
    }

    /// The heartbeat for the follower on `conn`: the ack number it echoes and whether it
    /// grants a read lease (only while this leader's own lease holds). `None` once the
    /// connection is no longer the follower's current one.
    pub fn heartbeat(&self, id: &str, conn: u64) -> Option<(u64, bool)> {
        let mut d = self.lock();
        let lease = self.config.read_lease();
        let grant_lease = self.lease.valid();
        let (seq, grant) = d.followers.heartbeat(id, conn, Instant::now(), lease, grant_lease)?;
        if grant {
            // The follower is waited for until this grant's lease ends.
            self.publish_commit(&mut d);
        }
        Some((seq, grant))
    }

    /// The follower's connection `conn` ended.
    pub fn follower_left(&self, id: &str, conn: u64) {
        let mut d = self.lock();
        d.followers.detach(id, conn);
        if d.followers.connected() == 0 {
            // Keep the backlog for the TTL, so the follower that left can still resume.
            d.backlog_until = Some(Instant::now() + d.backlog_ttl);
        }
        self.publish_commit(&mut d);
        drop(d);
        self.poke_isr();
    }

    /// Evaluates the followers' lag (the monitor's tick). True when the in-sync set the
    /// leader wants differs from the confirmed one.
    pub fn tick_followers(&self) -> bool {
        let mut d = self.lock();
        if !matches!(d.role, Role::Leader { .. }) || d.followers.idle() {
            return false;
        }
        let last = d.log.last_offset();
        d.followers.tick(Instant::now(), last, self.config.lag_timeout());
        self.publish_commit(&mut d);
        d.followers.desired() != *d.followers.confirmed()
    }

    /// The in-sync set (followers) the coordinator should hold, and the one it holds, in
    /// `term`.
    pub fn isr(&self, term: u64) -> Result<(BTreeSet<String>, BTreeSet<String>), StaleTerm> {
        let d = self.lock();
        if d.term != term {
            return Err(StaleTerm);
        }
        Ok((d.followers.desired(), d.followers.confirmed().clone()))
    }

    /// The coordinator now holds `isr` (followers) for `term`.
    pub fn confirm_isr(&self, term: u64, isr: BTreeSet<String>) {
        let mut d = self.lock();
        if d.term == term {
            d.followers.confirm(isr);
            self.publish_commit(&mut d);
        }
    }
}
