//! The follower's side of replication, as [`Node`] methods: load a snapshot, apply the
//! leader's entries in order, and hold the read lease the leader's heartbeats grant.

use std::time::Instant;

use bytes::Bytes;
use kv_peer::{DecodeError, Mutation, parse_u64};
use kv_proto::{Kind, Request};

use super::{Data, Node, StaleTerm, apply};
use std::sync::MutexGuard;

/// Why replicated entries could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the follower's term ended")]
    StaleTerm,
    #[error("expected offset {expected}, got {got}")]
    Gap { expected: u64, got: u64 },
    #[error("entry epoch {got} is older than {last}")]
    EpochRegressed { last: u64, got: u64 },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<StaleTerm> for ApplyError {
    fn from(_: StaleTerm) -> Self {
        ApplyError::StaleTerm
    }
}

impl Node {
    fn check_term(&self, term: u64) -> Result<MutexGuard<'_, Data>, StaleTerm> {
        let data = self.lock();
        if data.term != term {
            return Err(StaleTerm);
        }
        Ok(data)
    }

    /// A full snapshot begins; the store is emptied.
    pub fn begin_snapshot(&self, term: u64) -> Result<(), ApplyError> {
        let mut data = self.check_term(term)?;
        self.read_lease.revoke();
        data.store.clear();
        data.position_valid = false;
        data.inbound = None;
        data.tombstones.clear();
        data.snapshot_lists.clear();
        data.snapshot_until = 0;
        data.open_tx.clear();
        Ok(())
    }

    /// Loads one `KV.SNAP` chunk taken at log `offset` (`key kind value expires-at`
    /// quadruples). Returns how many keys. Lists are remembered with the offset: replaying the
    /// log from the snapshot's start must skip the entries they already reflect.
    pub fn load_snapshot_chunk(&self, term: u64, offset: u64, quads: &[Bytes]) -> Result<usize, ApplyError> {
        let mut data = self.check_term(term)?;
        for q in quads.chunks_exact(4) {
            let kind = parse_u64(&q[1])
                .and_then(|t| u8::try_from(t).ok())
                .and_then(Kind::from_tag)
                .ok_or(DecodeError("bad kind in snapshot"))?;
            let at = parse_u64(&q[3]).ok_or(DecodeError("bad expiry in snapshot"))?;
            data.store
                .set_payload(&q[0], kind, &q[2], (at != 0).then_some(at))
                .map_err(|_| DecodeError("malformed collection in snapshot"))?;
            if kind == Kind::List {
                data.snapshot_lists.insert(Box::from(&q[0][..]), offset);
            }
        }
        data.snapshot_until = data.snapshot_until.max(offset);
        Ok(quads.len() / 4)
    }

    /// The snapshot's leader was receiving keys for ring `version` (0: none), with these
    /// tombstones, and had completed moves up to ring `done`.
    pub fn load_inbound(&self, term: u64, version: u64, done: u64, tombstones: &[Bytes]) -> Result<(), ApplyError> {
        let mut data = self.check_term(term)?;
        data.inbound = (version != 0).then_some(version);
        data.inbound_done = done;
        data.tombstones = tombstones.iter().map(|k| Box::from(&k[..])).collect();
        Ok(())
    }

    /// The snapshot taken at `(epoch, offset)` is complete.
    pub fn finish_snapshot(&self, term: u64, epoch: u64, offset: u64) -> Result<(), ApplyError> {
        let mut data = self.check_term(term)?;
        self.observe_epoch(epoch);
        data.log.reset(epoch, offset);
        data.position_valid = true;
        drop(data);
        self.notify_appended(offset);
        Ok(())
    }

    /// Applies `KV.OP` entries in order and keeps them in its own backlog (so that, elected,
    /// it can resume other followers). A transaction's entries are held until its end
    /// arrives, then applied together (see `Data::open_tx`). Returns the last applied offset.
    pub fn apply_entries(&self, term: u64, entries: &[Request]) -> Result<u64, ApplyError> {
        let mut data = self.check_term(term)?;
        for req in entries {
            let e = kv_peer::log::decode(req)?;
            if e.offset == data.log.next_offset() {
                // A stream resuming at the log's end: a transaction held from a broken
                // one is sent again whole.
                data.open_tx.clear();
            }
            let expected = data.log.next_offset() + data.open_tx.len() as u64;
            if e.offset != expected {
                return Err(ApplyError::Gap {
                    expected,
                    got: e.offset,
                });
            }
            let last = data.log.last_epoch();
            if e.epoch < last {
                return Err(ApplyError::EpochRegressed { last, got: e.epoch });
            }
            match e.mutation {
                Mutation::TxBegin => data.open_tx.push(req.clone()),
                Mutation::TxEnd if !data.open_tx.is_empty() => {
                    let held = std::mem::take(&mut data.open_tx);
                    for r in held.iter().chain(std::iter::once(req)) {
                        data.commit(r)?;
                    }
                }
                _ if !data.open_tx.is_empty() => data.open_tx.push(req.clone()),
                _ => data.commit(req)?,
            }
        }
        self.observe_epoch(data.log.last_epoch());
        let last = data.log.last_offset();
        drop(data);
        self.notify_appended(last);
        Ok(last)
    }

    /// The leader granted a read lease until `until` in `term` (never shortened).
    pub fn grant_read_lease(&self, term: u64, until: Instant) {
        let data = self.lock();
        if data.term == term && data.position_valid {
            self.read_lease.extend_to(until);
        }
    }

    /// The read lease ends now (the stream to the leader broke).
    pub fn revoke_read_lease(&self) {
        self.read_lease.revoke();
    }
}

impl Data {
    /// Applies a checked entry and appends it to the log.
    fn commit(&mut self, req: &Request) -> Result<(), ApplyError> {
        let e = kv_peer::log::decode(req)?;
        self.replay(e.offset, &e.mutation);
        self.remember(&e.mutation);
        self.log.append(e.epoch, req.raw().clone());
        Ok(())
    }

    /// Applies the entry at `offset`, unless it changes a list that the snapshot being
    /// replayed over already shows it applied (see `kv_peer::stream`): list ops are not
    /// idempotent, every other entry is.
    fn replay(&mut self, offset: u64, m: &Mutation<'_>) {
        if self.snapshot_lists.is_empty() {
            apply(m, &mut self.store);
            return;
        }
        if offset > self.snapshot_until {
            self.snapshot_lists.clear();
            apply(m, &mut self.store);
            return;
        }
        let taken_at = |key: &[u8]| self.snapshot_lists.get(key).copied();
        match m {
            Mutation::Flush => {
                // Lists loaded after the flush already show it, and what followed it.
                type Kept = (Box<[u8]>, Vec<u8>, Option<u64>);
                let keep: Vec<Kept> = self
                    .snapshot_lists
                    .iter()
                    .filter(|(_, at)| **at >= offset)
                    .filter_map(|(k, _)| {
                        let (v, exp) = self.store.peek(k)?;
                        (v.kind() == Kind::List).then(|| (k.clone(), v.payload().into_owned(), exp))
                    })
                    .collect();
                apply(m, &mut self.store);
                for (k, payload, exp) in keep {
                    let _ = self.store.set_payload(&k, Kind::List, &payload, exp);
                }
            }
            _ if m.key().and_then(taken_at).is_some_and(|at| at >= offset) => {}
            _ => apply(m, &mut self.store),
        }
    }
}
