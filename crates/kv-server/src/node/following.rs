//! The follower's side of replication, as [`Node`] methods: load a snapshot, apply the
//! leader's entries in order, and hold the read lease the leader's heartbeats grant.

use std::time::Instant;

use bytes::Bytes;
use kv_peer::{DecodeError, parse_u64};
use kv_proto::Request;

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
        Ok(())
    }

    /// Loads one `KV.SNAP` chunk (`key value expires-at` triples). Returns how many keys.
    pub fn load_snapshot_chunk(&self, term: u64, triples: &[Bytes]) -> Result<usize, ApplyError> {
        let mut data = self.check_term(term)?;
        for t in triples.chunks_exact(3) {
            let at = parse_u64(&t[2]).ok_or(DecodeError("bad expiry in snapshot"))?;
            data.store.set(&t[0], &t[1], (at != 0).then_some(at));
        }
        Ok(triples.len() / 3)
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
    /// it can resume other followers). Returns the last applied offset.
    pub fn apply_entries(&self, term: u64, entries: &[Request]) -> Result<u64, ApplyError> {
        let mut data = self.check_term(term)?;
        for req in entries {
            let e = kv_peer::log::decode(req)?;
            let expected = data.log.next_offset();
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
            apply(&e.mutation, &mut data.store);
            data.remember(&e.mutation);
            data.log.append(e.epoch, req.raw().clone());
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
