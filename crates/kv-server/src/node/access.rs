//! Client access to the store: [`Node::write`] and [`Node::read`], and why one is refused
//! ([`Refusal`]). Every check happens under the lock that applies the command, so none can
//! go stale between the check and the change:
//!
//! - **role**: writes only on the leader; reads on the leader, or on a follower under the
//!   `any` read policy;
//! - **fences**: the leader only while its lease holds (a leader that may have been replaced
//!   answers nothing); a follower only while its read lease holds (its leader vouched for it
//!   recently, see `kv_peer::stream`);
//! - **ownership**: only keys this shard serves under the ring the server knows
//!   ([`kv_cluster::Placement::ownership`]); checked for every key before anything changes,
//!   so a multi-key command is refused whole or applied whole;
//! - **replication**: in `sync` mode a write's reply waits until every in-sync follower
//!   applied it, and so does a read's: a reply never shows a change that could still be lost
//!   with the leader ([`Pending`]).

use bytes::Bytes;
use kv_cluster::Ownership;
use kv_peer::ElemOp;
use kv_peer::{ErrorCode, Mutation};
use kv_proto::Kind;
use kv_proto::slot::key_slot;
use kv_store::time::now_ms;
use kv_store::{Lookup, Object, Val, WrongType};

use super::effects::{self, Applied};
use super::{Data, Node, Pending, Role, Stats};
use crate::config::ReplicationMode;

/// Why a command was refused before it was applied. Nothing changed: it is safe to send
/// again where the reply says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A write reached a server that is not its shard's leader.
    #[error("{code} this replica of shard {shard} is not its leader (leader: {leader})", code = ErrorCode::NotLeader)]
    NotLeader {
        shard: String,
        leader: String,
        /// The slot of the command's first key, for a Redis Cluster redirection.
        slot: Option<u16>,
    },
    /// The leader could not confirm its lease recently: it may have been replaced.
    #[error("{code} the leader of shard {shard} cannot confirm its leadership right now", code = ErrorCode::TryAgain)]
    LeaseExpired { shard: String },
    /// Fewer in-sync replicas than `--min-insync`: the write would have too few copies.
    #[error("{code} shard {shard} has {have} in-sync replicas, --min-insync requires {need}", code = ErrorCode::NoReplicas)]
    NotEnoughReplicas { shard: String, have: usize, need: usize },
    /// The key is not this shard's under the ring this server knows (or it is moving away).
    #[error("{code} {to}", code = ErrorCode::Moved)]
    Moved {
        to: String,
        slot: u16,
        /// The client address of `to`'s leader, when known.
        addr: Option<String>,
    },
    /// No ring is known yet: this server serves no key.
    #[error("{code} shard {shard} has not seen the cluster's ring yet", code = ErrorCode::TryAgain)]
    NoRing { shard: String },
    /// A follower (or a server between leaders) that cannot vouch for its data.
    #[error(
        "{code} replica of shard {shard} is not in sync with a leader it heard from recently; read from the leader",
        code = ErrorCode::MasterDown
    )]
    NotServingReads { shard: String },
    /// The command met a key holding another kind of value; it changed nothing.
    #[error("{}", kv_proto::kind::WRONGTYPE)]
    WrongType,
}

/// See [`Node::cluster_client_route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRoute {
    Serve,
    /// Answer this error instead.
    Redirect(String),
    /// Keys moving to this shard from the leader at `source` (cluster address), under ring
    /// `version`: pull the `absent` ones first; after a write, drop every `moving` one there.
    Moving {
        version: u64,
        source: String,
        absent: Vec<Bytes>,
        moving: Vec<Bytes>,
    },
}

impl Refusal {
    /// The refusal as a Redis Cluster client expects it: a key served elsewhere, or a write
    /// to a replica, is `MOVED <slot> <host:port>` (the leader's client address); when that
    /// leader is not known yet, `TRYAGAIN` (clients retry). Other refusals are unchanged.
    pub fn cluster_text(&self) -> String {
        match self {
            Refusal::Moved {
                slot, addr: Some(addr), ..
            } => format!("MOVED {slot} {addr}"),
            Refusal::NotLeader {
                slot: Some(slot),
                leader,
                ..
            } if leader != "unknown" => format!("MOVED {slot} {leader}"),
            Refusal::Moved { to, .. } => format!("{} shard {to} has no leader right now", ErrorCode::TryAgain),
            Refusal::NotLeader { shard, .. } => {
                format!("{} shard {shard} has no leader right now", ErrorCode::TryAgain)
            }
            _ => self.to_string(),
        }
    }

    /// Writes the refusal for `out`'s client: Redis Cluster's redirections for a client
    /// on the client port, kvstore's codes (which the gates act on) on the cluster port.
    pub fn write(&self, out: &mut kv_proto::Out) {
        let text = if out.cluster_client {
            out.redirect_text(self.cluster_text())
        } else {
            self.to_string()
        };
        kv_proto::write::error(out, text.as_bytes());
    }
}

impl Node {
    /// Applies a write of `keys` as leader: `f` reads and changes the store through a
    /// [`Writer`], which logs every change. Returns `f`'s result and, when followers must
    /// confirm the write before it is acknowledged, what to wait for.
    pub fn write<'k, R>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        f: impl FnOnce(&mut Writer<'_>) -> R,
    ) -> Result<(R, Option<Pending>), Refusal> {
        self.write_as(Some(&mut keys.into_iter()), f)
    }

    /// [`Node::write`] for the cluster's own changes (key moves, clean-up after a ring
    /// change, active expiry): fenced like any write, but not limited to the keys this
    /// shard serves.
    pub fn write_internal<R>(&self, f: impl FnOnce(&mut Writer<'_>) -> R) -> Result<(R, Option<Pending>), Refusal> {
        self.write_as(None, f)
    }

    fn write_as<R>(
        &self,
        keys: Option<&mut dyn Iterator<Item = &[u8]>>,
        f: impl FnOnce(&mut Writer<'_>) -> R,
    ) -> Result<(R, Option<Pending>), Refusal> {
        let mut data = self.lock();
        let Role::Leader { epoch } = data.role else {
            drop(data);
            let mut keys = keys;
            return Err(Refusal::NotLeader {
                shard: self.shard.clone(),
                leader: self.leader_hint(),
                slot: keys.as_mut().and_then(|k| k.next()).map(key_slot),
            });
        };
        if !self.lease.valid() {
            return Err(Refusal::LeaseExpired {
                shard: self.shard.clone(),
            });
        }
        if let Some(keys) = keys {
            self.check_ownership(&data, keys, true)?;
        }
        let in_sync = 1 + data.followers.confirmed().len();
        if in_sync < self.config.min_insync {
            return Err(Refusal::NotEnoughReplicas {
                shard: self.shard.clone(),
                have: in_sync,
                need: self.config.min_insync,
            });
        }
        let before = data.log.last_offset();
        let mut w = Writer {
            data: &mut data,
            epoch,
            now: now_ms(),
            failed: None,
        };
        let r = f(&mut w);
        let failed = w.failed.is_some();
        w.failed = None;
        // Blocked clients this write gave something to are served now, in order, under
        // the same lock (see `waiters`).
        let served = if w.data.waiters.is_empty() || w.data.waiters.deferred {
            Vec::new()
        } else {
            super::waiters::Waiters::serve(&mut w)
        };
        w.evict();
        let last = data.log.last_offset();
        if last == before {
            return if failed { Err(Refusal::WrongType) } else { Ok((r, None)) };
        }
        let pending = self.pending(&data);
        drop(data);
        for (waiter, reply) in served {
            waiter.deliver(reply, pending);
        }
        self.notify_appended(last);
        if failed {
            return Err(Refusal::WrongType);
        }
        Ok((r, pending))
    }

    /// What a reply must wait for before it leaves: in `sync` mode, every entry in the log
    /// that the waited-for followers have not all applied yet.
    fn pending(&self, data: &Data) -> Option<Pending> {
        if self.config.replication != ReplicationMode::Sync {
            return None;
        }
        let last = data.log.last_offset();
        (data.commit_floor < last).then_some(Pending {
            term: data.term,
            offset: last,
        })
    }

    /// How a Redis Cluster client's command (client port) is to be served, checked under
    /// one lock before it runs:
    /// - a read on a replica without `READONLY`, or a write of keys, goes to the leader of
    ///   the slot's shard (`MOVED`), as in Redis;
    /// - during a move, a moving key belongs to its new owner for these clients: the old
    ///   owner redirects reads too (its copy may be older than the new owner's), and the new
    ///   owner serves it after pulling it from the old owner if it has not arrived yet
    ///   ([`ClientRoute::Moving`], done by `crate::peer::pull`).
    ///
    /// Gates (cluster port) do not need this: they read the old owner only after the new one
    /// missed, and pull a key to the new owner before writing it.
    pub fn cluster_client_route(&self, keys: &[Bytes], read: bool, readonly: bool) -> ClientRoute {
        // A role or ring change racing with this is caught by the command's own checks
        // (writes and non-owned keys are refused under the lock that applies them).
        if self.plain_route.load(std::sync::atomic::Ordering::Acquire) {
            return ClientRoute::Serve;
        }
        let data = self.lock();
        let redirected = if read { !readonly } else { !keys.is_empty() };
        if redirected && matches!(data.role, Role::Follower { .. }) {
            // A write, or a read without READONLY: straight to the leader of the shard that
            // owns the slot, as a Redis Cluster replica redirects, not through this shard's
            // leader (a second hop).
            let elsewhere = keys
                .first()
                .and_then(|k| data.placement.owner(k))
                .filter(|owner| *owner != self.shard)
                .and_then(|owner| data.view.shards.get(owner))
                .and_then(|sv| sv.leader())
                .map(|n| n.addr.clone());
            drop(data);
            let slot = keys.first().map_or(0, |k| key_slot(k));
            return ClientRoute::Redirect(match elsewhere.or_else(|| self.leader_hint_addr()) {
                Some(addr) => format!("MOVED {slot} {addr}"),
                None => format!("{} this replica has no leader right now", ErrorCode::TryAgain),
            });
        }
        let Some((version, _, _)) = data.placement.next() else {
            return ClientRoute::Serve;
        };
        let leader_of = |shard: &str| {
            data.view
                .shards
                .get(shard)
                .and_then(|sv| sv.leader())
                .map(|n| (n.addr.clone(), n.cluster_addr.clone()))
        };
        let mut moving = Vec::new();
        let mut absent = Vec::new();
        let mut source = None;
        for key in keys {
            let Some((from, to)) = data.placement.moving(key) else {
                continue;
            };
            if from == self.shard {
                return ClientRoute::Redirect(match leader_of(to) {
                    Some((addr, _)) => format!("MOVED {} {addr}", key_slot(key)),
                    None => format!("{} shard {to} has no leader right now", ErrorCode::TryAgain),
                });
            }
            if to != self.shard {
                continue;
            }
            let Some((_, cluster_addr)) = leader_of(from) else {
                return ClientRoute::Redirect(format!(
                    "{} the key is moving here from shard {from}, which has no leader right now",
                    ErrorCode::TryAgain
                ));
            };
            source = Some(cluster_addr);
            if !data.store.contains(key) && !data.tombstones.contains(&key[..]) {
                absent.push(key.clone());
            }
            moving.push(key.clone());
        }
        match source {
            Some(source) => ClientRoute::Moving {
                version,
                source,
                absent,
                moving,
            },
            None => ClientRoute::Serve,
        }
    }

    /// Refuses (whole) when a key is not this shard's.
    fn check_ownership(&self, data: &Data, keys: &mut dyn Iterator<Item = &[u8]>, write: bool) -> Result<(), Refusal> {
        for key in keys {
            if data.served.serves(key_slot(key), write) {
                continue;
            }
            match data.placement.ownership(&self.shard, key, write) {
                Ownership::Serve => {}
                Ownership::Elsewhere(to) => {
                    Stats::bump(&self.stats.not_owned);
                    let addr = data
                        .view
                        .shards
                        .get(to)
                        .and_then(|sv| sv.leader())
                        .map(|n| n.addr.clone());
                    return Err(Refusal::Moved {
                        to: to.to_string(),
                        slot: key_slot(key),
                        addr,
                    });
                }
                Ownership::NoRing => {
                    return Err(Refusal::NoRing {
                        shard: self.shard.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads `keys` through a [`Reader`]. On the leader an expired key found by a read is
    /// deleted (and the delete replicated), and the reply must wait for [`Pending`]; on a
    /// follower expired keys are only hidden.
    pub fn read<'k, R>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        f: impl FnOnce(&mut Reader<'_>) -> R,
    ) -> Result<(R, Option<Pending>), Refusal> {
        self.read_as(Some(&mut keys.into_iter()), f)
    }

    /// [`Node::read`] for the cluster's own reads (`KV.FETCH` in a key move): fenced, but
    /// not limited to the keys this shard serves.
    pub fn read_internal<R>(&self, f: impl FnOnce(&mut Reader<'_>) -> R) -> Result<(R, Option<Pending>), Refusal> {
        self.read_as(None, f)
    }

    fn read_as<R>(
        &self,
        keys: Option<&mut dyn Iterator<Item = &[u8]>>,
        f: impl FnOnce(&mut Reader<'_>) -> R,
    ) -> Result<(R, Option<Pending>), Refusal> {
        let mut data = self.lock();
        let epoch = match data.role {
            Role::Leader { epoch } if self.lease.valid() => Some(epoch),
            Role::Leader { .. } => {
                Stats::bump(&self.stats.reads_fenced);
                return Err(Refusal::LeaseExpired {
                    shard: self.shard.clone(),
                });
            }
            Role::Follower { .. } if data.position_valid && self.read_lease.valid() => None,
            _ => {
                Stats::bump(&self.stats.reads_fenced);
                return Err(Refusal::NotServingReads {
                    shard: self.shard.clone(),
                });
            }
        };
        if let Some(keys) = keys {
            self.check_ownership(&data, keys, false)?;
        }
        let before = data.log.last_offset();
        let mut r = Reader {
            data: &mut data,
            epoch,
            now: now_ms(),
            failed: false,
        };
        let out = f(&mut r);
        let failed = r.failed;
        if epoch.is_none() {
            return if failed {
                Err(Refusal::WrongType)
            } else {
                Ok((out, None))
            };
        }
        let last = data.log.last_offset();
        let pending = self.pending(&data);
        drop(data);
        if last != before {
            self.notify_appended(last);
        }
        if failed {
            return Err(Refusal::WrongType);
        }
        Ok((out, pending))
    }
}

/// Changes the store on the leader; every change is logged for the followers.
///
/// A command that meets a key of the wrong kind (a string accessor on a collection, a
/// collection of another kind) fails whole: from then on the writer changes nothing, and the
/// client gets `WRONGTYPE` instead of the command's reply.
pub struct Writer<'a> {
    data: &'a mut Data,
    epoch: u64,
    now: u64,
    failed: Option<WrongType>,
}

impl Writer<'_> {
    /// Milliseconds since the Unix epoch, fixed for this write.
    pub fn now(&self) -> u64 {
        self.now
    }

    fn log(&mut self, m: Mutation<'_>) {
        self.data.log(self.epoch, m);
    }

    /// True once the command met a key of the wrong kind (see [`Writer`]).
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Forgets a wrong kind met so far (a blocked client's try skips such keys).
    pub fn clear_failed(&mut self) {
        self.failed = None;
    }

    /// The node's blocked clients.
    pub fn waiters(&mut self) -> &mut super::waiters::Waiters {
        &mut self.data.waiters
    }

    /// The live string at `key` and its expiry; an expired key is deleted (and logged). A
    /// collection fails the command (`WRONGTYPE`).
    pub fn get(&mut self, key: &[u8]) -> Option<(Bytes, Option<u64>)> {
        match self.data.store.get_expiring(key, self.now) {
            Lookup::Hit { value, expires_at } => Some((Bytes::copy_from_slice(value), expires_at)),
            Lookup::Other { .. } => {
                self.failed = Some(WrongType);
                None
            }
            Lookup::Miss => None,
            Lookup::Expired => {
                self.data.log_gone(self.epoch, key, super::events::Cause::Expired);
                None
            }
        }
    }

    /// The kind and expiry of the live value at `key` (an expired key is deleted and
    /// logged), whatever its kind.
    pub fn kind_of(&mut self, key: &[u8]) -> Option<(Kind, Option<u64>)> {
        match self.data.store.get_expiring(key, self.now) {
            Lookup::Hit { expires_at, .. } => Some((Kind::String, expires_at)),
            Lookup::Other { kind, expires_at } => Some((kind, expires_at)),
            Lookup::Miss => None,
            Lookup::Expired => {
                self.data.log_gone(self.epoch, key, super::events::Cause::Expired);
                None
            }
        }
    }

    /// `Some(expiry)` when the key exists and is live (an expired key is deleted and
    /// logged), whatever its kind, without copying its value.
    pub fn expiry_of(&mut self, key: &[u8]) -> Option<Option<u64>> {
        self.kind_of(key).map(|(_, at)| at)
    }

    /// True when `key` holds a live `kind` (no copy, no decode); another kind fails the
    /// command (`WRONGTYPE`).
    pub fn holds(&mut self, key: &[u8], kind: Kind) -> bool {
        match self.kind_of(key) {
            Some((k, _)) if k != kind => {
                self.failed = Some(WrongType);
                false
            }
            found => found.is_some(),
        }
    }

    /// Reads the live collection of `kind` at `key` (`None`: absent). Another kind fails
    /// the command (`WRONGTYPE`), and `f` sees `None`.
    pub fn read_obj<R>(&mut self, key: &[u8], kind: Kind, f: impl FnOnce(Option<&Object>) -> R) -> R {
        match self.kind_of(key) {
            Some((k, _)) if k != kind => {
                self.failed = Some(WrongType);
                f(None)
            }
            Some(_) => match self.data.store.object(key, kind) {
                Ok(obj) => f(obj.as_deref()),
                Err(_) => f(None),
            },
            None => f(None),
        }
    }

    /// The live value at `key` as it travels between servers (kind, payload, expiry).
    pub fn take_copy(&mut self, key: &[u8]) -> Option<(Kind, Bytes, Option<u64>)> {
        self.kind_of(key)?;
        let (v, at) = self.data.store.peek(key)?;
        Some((v.kind(), Bytes::copy_from_slice(&v.payload()), at))
    }

    /// Applies an element op to the collection at `key` (created when absent, deleted when
    /// left empty) and logs it. Another kind fails the command (`WRONGTYPE`).
    pub fn apply(&mut self, key: &[u8], op: ElemOp, args: &[Bytes]) -> Applied {
        if self.failed.is_some() {
            return Applied::default();
        }
        if let Some((k, _)) = self.kind_of(key)
            && k != effects::op_kind(op)
        {
            self.failed = Some(WrongType);
            return Applied::default();
        }
        if matches!(
            op,
            ElemOp::HSet | ElemOp::SAdd | ElemOp::ZAdd | ElemOp::LPush | ElemOp::RPush
        ) && !args.is_empty()
        {
            self.note_new(key);
        }
        let Ok(done) = effects::apply(&mut self.data.store, key, op, args) else {
            self.failed = Some(WrongType);
            return Applied::default();
        };
        let assigns = matches!(op, ElemOp::HSet | ElemOp::ZAdd | ElemOp::LSet);
        if done.count > 0 || (assigns && !args.is_empty()) {
            self.log(Mutation::Elems { key, op, args });
            if self.data.inbound.is_some() && !self.data.store.contains(key) {
                // Emptied: a tombstone, so a copy of the old value never comes back.
                self.log(Mutation::Del { key });
            }
        }
        done
    }

    /// Sets `key` to a whole collection (replacing whatever it held) and logs it.
    pub fn set_object(&mut self, key: &[u8], obj: Object, expires_at: Option<u64>) {
        if self.failed.is_some() {
            return;
        }
        if obj.is_empty() {
            self.del(key);
            return;
        }
        let kind = obj.kind();
        let payload = obj.to_packed();
        self.note_new(key);
        self.data.store.set_object(key, obj, expires_at);
        self.log(Mutation::Object {
            key,
            kind,
            payload: &payload,
            expires_at,
        });
    }

    /// Sets `key` from a value as it travels between servers (see [`Writer::take_copy`]);
    /// false when a collection's payload is malformed.
    pub fn set_copy(&mut self, key: &[u8], kind: Kind, payload: &[u8], expires_at: Option<u64>) -> bool {
        if kind == Kind::String {
            self.set(key, payload, expires_at);
            return true;
        }
        match Object::decode(kind, payload) {
            Ok(obj) => {
                self.set_object(key, obj, expires_at);
                true
            }
            Err(_) => false,
        }
    }

    /// True when the key exists and is live.
    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.expiry_of(key).is_some()
    }

    /// False when an entry this large could never fit under `--maxmemory`.
    pub fn fits(&self, key_len: usize, value_len: usize) -> bool {
        self.data.store.fits(key_len, value_len)
    }

    /// Sets `key` to a string, replacing whatever it held.
    pub fn set(&mut self, key: &[u8], value: &[u8], expires_at: Option<u64>) {
        if self.failed.is_some() {
            return;
        }
        self.note_new(key);
        self.data.store.set(key, value, expires_at);
        self.log(Mutation::Set { key, value, expires_at });
    }

    /// Publishes the `new` keyspace event when `key` is about to be created (and that
    /// class is on): Redis's `n` class.
    fn note_new(&mut self, key: &[u8]) {
        if let Some(events) = &self.data.events
            && events.flags & kv_proto::notify::NEW != 0
            && !self.data.store.contains(key)
        {
            events.publish(key, "new", kv_proto::notify::NEW);
        }
    }

    /// Sets `key` unless it exists or was deleted during the current inbound move: a copy
    /// of an older value never overwrites a newer one. True when set.
    pub fn set_if_new(&mut self, key: &[u8], kind: Kind, value: &[u8], expires_at: Option<u64>) -> bool {
        if self.exists(key) || self.data.tombstones.contains(key) || expires_at.is_some_and(|t| t <= self.now) {
            return false;
        }
        self.set_copy(key, kind, value, expires_at)
    }

    /// Deletes `key`; false when it was absent. While receiving keys the delete is logged
    /// even for an absent key, so the tombstone reaches the followers too.
    pub fn del(&mut self, key: &[u8]) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let existed = self.data.store.remove(key);
        if existed || self.data.inbound.is_some() {
            self.log(Mutation::Del { key });
        }
        existed
    }

    /// Marks the start or the end of a transaction's entries in the log, so followers apply
    /// them together ([`Mutation::TxBegin`]).
    pub fn mark_transaction(&mut self, begin: bool) {
        self.log(if begin { Mutation::TxBegin } else { Mutation::TxEnd });
    }

    /// `owner` watches `key` (see [`super::watches`]).
    pub fn watch(&mut self, owner: super::watches::Owner, key: &[u8]) {
        let live = self.exists(key);
        self.data.watches.add(owner, key, live);
    }

    /// The ring version this shard receives keys for (0: none).
    pub fn inbound(&self) -> u64 {
        self.data.inbound.unwrap_or(0)
    }

    /// The highest ring version whose move into this shard completed.
    pub fn inbound_done(&self) -> u64 {
        self.data.inbound_done
    }

    /// Logs a change of inbound state (see [`Mutation::Inbound`]).
    pub fn set_inbound(&mut self, version: u64) {
        self.log(Mutation::Inbound { version });
    }

    /// Changes the expiry of a live key; false when absent.
    pub fn expire(&mut self, key: &[u8], expires_at: Option<u64>) -> bool {
        if self.failed.is_some() || !self.exists(key) {
            return false;
        }
        self.data.store.set_expiry(key, expires_at);
        self.log(Mutation::Expire { key, expires_at });
        true
    }

    /// Deletes every key (`FLUSHALL`); returns how many there were.
    pub fn flush(&mut self) -> usize {
        if !self.data.watches.is_empty() {
            // The watched keys that held a value change; the others do not (as in Redis).
            let store = &self.data.store;
            let existing: Vec<Box<[u8]>> = self
                .data
                .watches
                .keys()
                .filter(|k| store.contains(k))
                .map(Box::from)
                .collect();
            existing.iter().for_each(|k| self.data.watches.touch(k));
        }
        let n = self.data.store.len();
        self.data.store.clear();
        self.log(Mutation::Flush);
        n
    }

    /// Deletes up to `max` expired keys; returns how many.
    pub fn expire_due(&mut self, max: usize) -> usize {
        let keys = self.data.store.take_expired(self.now, max);
        for k in &keys {
            self.data.log_gone(self.epoch, k, super::events::Cause::Expired);
        }
        keys.len()
    }

    /// Evicts least recently used keys while over the bounds, logging each as a delete.
    fn evict(&mut self) {
        if !self.data.store.over_limit() {
            return;
        }
        for k in self.data.store.evict_over_limit() {
            self.data.log_gone(self.epoch, &k, super::events::Cause::Evicted);
        }
    }
}

/// Reads the store; see [`Node::read`]. A string accessor meeting a collection, or a
/// collection accessor meeting another kind, fails the command (`WRONGTYPE`).
pub struct Reader<'a> {
    data: &'a mut Data,
    /// `Some` on the leader: expired keys found are deleted and logged.
    epoch: Option<u64>,
    now: u64,
    failed: bool,
}

impl Reader<'_> {
    /// The live entry at `key` (an expired one is deleted and logged on the leader).
    fn live(&mut self, key: &[u8]) -> Lookup<'_> {
        let Some(epoch) = self.epoch else {
            return match self.data.store.get(key, self.now) {
                Lookup::Expired => Lookup::Miss,
                found => found,
            };
        };
        // Two lookups: the borrow of a hit cannot outlive the delete's branch.
        if let Lookup::Expired = self.data.store.get_expiring(key, self.now) {
            self.data.log_gone(epoch, key, super::events::Cause::Expired);
            return Lookup::Miss;
        }
        self.data.store.get(key, self.now)
    }

    /// The live string at `key` and its expiry, passed to `f` without copying.
    pub fn lookup<R>(&mut self, key: &[u8], f: impl FnOnce(Option<(&[u8], Option<u64>)>) -> R) -> R {
        let mut wrong = false;
        let r = match self.live(key) {
            Lookup::Hit { value, expires_at } => f(Some((value, expires_at))),
            Lookup::Other { .. } => {
                wrong = true;
                f(None)
            }
            _ => f(None),
        };
        self.failed |= wrong;
        r
    }

    /// Like [`Reader::get`], but a collection reads as absent (`MGET`'s rule).
    pub fn get_string<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match self.live(key) {
            Lookup::Hit { value, .. } => f(Some(value)),
            _ => f(None),
        }
    }

    /// The kind and expiry of the live value at `key`, whatever its kind.
    pub fn kind_of(&mut self, key: &[u8]) -> Option<(Kind, Option<u64>)> {
        match self.live(key) {
            Lookup::Hit { expires_at, .. } => Some((Kind::String, expires_at)),
            Lookup::Other { kind, expires_at } => Some((kind, expires_at)),
            _ => None,
        }
    }

    /// True when `key` holds a live value of any kind.
    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.kind_of(key).is_some()
    }

    /// The live collection of `kind` at `key`, passed to `f` (`None`: absent). Another
    /// kind fails the command (`WRONGTYPE`), and `f` sees `None`.
    pub fn object<R>(&mut self, key: &[u8], kind: Kind, f: impl FnOnce(Option<&Object>) -> R) -> R {
        match self.kind_of(key) {
            Some((k, _)) if k != kind => {
                self.failed = true;
                f(None)
            }
            Some(_) => match self.data.store.object(key, kind) {
                Ok(obj) => f(obj.as_deref()),
                Err(_) => f(None),
            },
            None => f(None),
        }
    }

    /// The live value at `key` as stored, whatever its kind (`OBJECT`, `DUMP`, `TYPE`).
    pub fn value<R>(&mut self, key: &[u8], f: impl FnOnce(Option<(Val<'_>, Option<u64>)>) -> R) -> R {
        if self.kind_of(key).is_none() {
            return f(None);
        }
        f(self.data.store.peek(key))
    }

    /// The bytes `key` is charged (`MEMORY USAGE`).
    pub fn charged(&self, key: &[u8]) -> Option<usize> {
        self.data.store.charged(key)
    }

    /// The sizes up to which collections stay compact.
    pub fn compact_limits(&self) -> kv_store::CompactLimits {
        self.data.store.compact_limits()
    }

    /// The live value of `key`, passed to `f` without copying.
    pub fn get<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        self.lookup(key, |hit| f(hit.map(|(v, _)| v)))
    }

    /// Milliseconds since the Unix epoch, fixed for this read.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Visits the live keys from slab position `cursor` (0 to begin), about `count` entries;
    /// returns the cursor to continue from, 0 when the walk is complete. A key present for
    /// the whole walk is visited exactly once (slab positions never move), as `SCAN`
    /// promises.
    pub fn scan(&self, cursor: usize, count: usize, mut f: impl FnMut(&[u8], Val<'_>)) -> usize {
        let now = self.now;
        self.data
            .store
            .scan(cursor, count.max(1), |k, v, at| {
                if at.is_none_or(|t| t > now) {
                    f(k, v);
                }
                true
            })
            .unwrap_or(0)
    }

    /// A live key picked at random (a few tries past expired ones), as `RANDOMKEY` does.
    pub fn random_key(&self) -> Option<Bytes> {
        for _ in 0..16 {
            let (k, at) = self.data.store.entry_near(fastrand::usize(..))?;
            if at.is_none_or(|t| t > self.now) {
                return Some(Bytes::copy_from_slice(k));
            }
        }
        None
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.data.store.len()
    }

    /// True when the store is empty.
    pub fn is_empty(&self) -> bool {
        self.data.store.is_empty()
    }
}
