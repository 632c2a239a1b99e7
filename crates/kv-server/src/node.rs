//! [`Node`]: the state one kvserver shares between client connections, replication and
//! cluster membership.
//!
//! The store, the replication backlog, the role and the followers' progress sit behind one
//! `std::sync::Mutex` ([`Data`]). Applying a write and appending it to the log happen in the
//! same critical section, so the log's order is the order of application; the section never
//! awaits and is short (a hash lookup and a copy), so a blocking mutex is right here, as in
//! mini-redis's `Db`. Waiting for followers happens after the lock is released, on a watch
//! channel ([`Node::wait_replicated`]).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_cluster::{MoveProgress, Placement};
use kv_proto::Request;
use kv_store::time::now_ms;
use kv_store::{Lookup, Store};
use tokio::sync::{Notify, watch};

use crate::config::{Config, ReplicationMode};
use crate::replication::backlog::Backlog;
use crate::replication::ops::{self, Mutation};
use crate::replication::progress::Followers;

/// What this server is doing for its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Neither leading nor following (starting up, or between leaders).
    Idle,
    /// Following the leader of `epoch`.
    Follower { epoch: u64 },
    /// Leading the shard in `epoch`.
    Leader { epoch: u64 },
}

impl Role {
    /// `"leader"`, `"follower"` or `"idle"`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Idle => "idle",
            Role::Follower { .. } => "follower",
            Role::Leader { .. } => "leader",
        }
    }
}

/// Everything behind the node's lock.
pub struct Data {
    pub store: Store,
    pub log: Backlog,
    pub role: Role,
    /// Grows on every role change. Work started in one term (a follower stream, a write
    /// waiting for replication) checks it is still current.
    pub term: u64,
    /// False while the store does not match the log position (a snapshot is loading):
    /// the next sync must be a full one.
    pub position_valid: bool,
    pub followers: Followers,
    /// A leader without followers keeps its backlog until then (`--repl-backlog-ttl-secs`),
    /// so a follower that left can still resume; after that it stops logging entries at all.
    pub backlog_until: Option<Instant>,
    backlog_ttl: Duration,
    /// During the moving phase of a ring change: the placement, so writes of keys moving away
    /// from this shard are refused (`MOVED`) rather than lost.
    pub moving: Option<Arc<Placement>>,
    /// `Some(version)` while this shard receives keys for that ring version (see
    /// [`Mutation::Inbound`]).
    pub inbound: Option<u64>,
    /// Keys deleted while receiving: a copy arriving later must not bring them back. Bounded
    /// by the deletes made during one move.
    pub tombstones: HashSet<Box<[u8]>>,
    /// The highest ring version whose inbound move completed here: copies for it are late.
    pub inbound_done: u64,
}

impl Data {
    /// Appends `m` to the log as the next entry of `epoch` — or, when no follower could ever
    /// read it, only moves the offset on (no encoding, no memory).
    fn log(&mut self, epoch: u64, m: Mutation<'_>) {
        self.remember(&m);
        if self.keeps_log() {
            let offset = self.log.next_offset();
            let frame = m.encode(epoch, offset);
            self.log.append(epoch, frame);
        } else {
            self.log.skip(epoch);
        }
    }

    /// True while log entries may be read by a follower: always on a follower (it may lead
    /// later), and on a leader while followers are attached or within the backlog TTL after
    /// the last one left. Like Redis, a lone leader holds no backlog.
    fn keeps_log(&mut self) -> bool {
        if !matches!(self.role, Role::Leader { .. })
            || self.followers.connected() > 0
            || !self.followers.confirmed().is_empty()
        {
            return true;
        }
        match self.backlog_until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                self.backlog_until = None;
                let (epoch, offset) = (self.log.last_epoch(), self.log.last_offset());
                self.log.reset(epoch, offset);
                false
            }
            None => false,
        }
    }

    /// Tracks inbound moves and their tombstones; runs for every mutation, on the leader as
    /// it logs and on followers as they apply.
    fn remember(&mut self, m: &Mutation<'_>) {
        match *m {
            Mutation::Del { key } if self.inbound.is_some() => {
                self.tombstones.insert(key.into());
            }
            Mutation::Inbound { version } => {
                if version == 0
                    && let Some(ended) = self.inbound
                {
                    self.inbound_done = self.inbound_done.max(ended);
                }
                self.inbound = (version != 0).then_some(version);
                self.tombstones.clear();
            }
            _ => {}
        }
    }

    /// The last follower left: keep the backlog for the TTL.
    pub fn follower_left(&mut self) {
        if self.followers.connected() == 0 {
            self.backlog_until = Some(Instant::now() + self.backlog_ttl);
        }
    }
}

/// Replication progress that waiting writes watch: the offset every waited-for follower
/// applied, in a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub term: u64,
    pub offset: u64,
}

/// A write that must be replicated before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub term: u64,
    pub offset: u64,
}

impl Pending {
    /// The later of two pending writes (a pipeline waits once, for its last write).
    pub fn max(a: Option<Pending>, b: Option<Pending>) -> Option<Pending> {
        match (a, b) {
            (Some(x), Some(y)) if y.term == x.term && y.offset < x.offset => Some(x),
            (x, None) => x,
            (_, y) => y,
        }
    }
}

/// Why a write was refused before it was applied. Safe to retry elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This server is not the shard's leader; the gate should route to the leader.
    #[error("NOTLEADER this replica of shard {shard} is not its leader (leader: {leader})")]
    NotLeader { shard: String, leader: String },
    /// The leader could not confirm its ZooKeeper session recently: it may have been replaced.
    #[error("TRYAGAIN the leader of shard {0} cannot confirm its leadership right now")]
    LeaseExpired(String),
    /// Fewer in-sync replicas than `--min-insync`: the write would have too few copies.
    #[error("NOREPLICAS shard {shard} has {have} in-sync replicas, --min-insync requires {need}")]
    NotEnoughReplicas { shard: String, have: usize, need: usize },
    /// The key is moving to another shard in a ring change: the gate retries there.
    #[error("MOVED {0}")]
    Moved(String),
}

/// Why an acknowledged-looking write could not be confirmed as replicated. Its outcome is
/// unknown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("leadership changed before the write was replicated")]
    SteppedDown,
    #[error("followers did not confirm the write in time")]
    Timeout,
}

/// Why replicated entries could not be applied by a follower.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the follower's term ended")]
    StaleTerm,
    #[error("expected offset {expected}, got {got}")]
    Gap { expected: u64, got: u64 },
    #[error("entry epoch {got} is older than {last}")]
    EpochRegressed { last: u64, got: u64 },
    #[error(transparent)]
    Decode(#[from] ops::DecodeError),
}

/// The leader's lease: until when it may acknowledge writes without hearing from ZooKeeper.
/// Measured on the monotonic clock, which keeps running while the process is paused, so a
/// leader resumed after a long `SIGSTOP` finds its lease expired.
struct Lease {
    base: Instant,
    /// Nanoseconds after `base`; 0 = no lease.
    until: AtomicU64,
}

impl Lease {
    fn valid(&self) -> bool {
        (self.base.elapsed().as_nanos() as u64) < self.until.load(Ordering::Acquire)
    }

    fn extend_to(&self, t: Instant) {
        let nanos = t.saturating_duration_since(self.base).as_nanos() as u64;
        self.until.fetch_max(nanos, Ordering::AcqRel);
    }

    fn set(&self, t: Instant) {
        let nanos = t.saturating_duration_since(self.base).as_nanos() as u64;
        self.until.store(nanos, Ordering::Release);
    }
}

/// Counters reported by `KV.INFO`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Full resyncs this node served as leader.
    pub full_syncs_served: AtomicU64,
    /// Partial resyncs (resumed from the backlog) this node served as leader.
    pub partial_syncs_served: AtomicU64,
    /// Full resyncs this node completed as follower.
    pub full_syncs_done: AtomicU64,
    /// Partial resyncs this node started as follower.
    pub partial_syncs_done: AtomicU64,
    /// Times the coordinator named an epoch older than one this node had seen (its data was
    /// lost or rolled back); each was refused.
    pub epoch_regressions: AtomicU64,
    /// Follower streams ended because the other side sent nothing for `--replica-timeout-ms`.
    pub replica_timeouts: AtomicU64,
    /// Keys received from other shards in ring changes (copies applied).
    pub keys_moved_in: AtomicU64,
    /// Batches of moving keys that had to be sent again.
    pub move_retries: AtomicU64,
}

/// One kvserver's shared state. See the module documentation.
pub struct Node {
    pub id: String,
    pub shard: String,
    pub addr: String,
    pub config: Config,
    data: Mutex<Data>,
    /// Last offset in the log; follower streams wait on it.
    appended: watch::Sender<u64>,
    commit: watch::Sender<Commit>,
    lease: Lease,
    /// Wakes the cluster runtime: the desired in-sync set changed.
    cluster_poke: Notify,
    /// Address of the current leader, for error messages.
    leader_hint: Mutex<Option<String>>,
    conn_seq: AtomicU64,
    /// The highest epoch this node has led, followed or received entries of. Epochs never go
    /// backwards: a coordinator naming an older one has lost data.
    highest_epoch: AtomicU64,
    /// This leader's progress in moving keys away, for the shard state.
    move_progress: Mutex<Option<MoveProgress>>,
    pub stats: Stats,
}

impl Node {
    /// A node with an empty store.
    pub fn new(id: String, addr: String, config: Config) -> Node {
        Node {
            id,
            shard: config.shard.clone(),
            addr,
            data: Mutex::new(Data {
                store: Store::new(config.store_limits()),
                log: Backlog::new(config.repl_backlog_bytes as usize),
                role: Role::Idle,
                term: 0,
                position_valid: true,
                followers: Followers::new(),
                backlog_until: None,
                backlog_ttl: Duration::from_secs(config.repl_backlog_ttl_secs),
                moving: None,
                inbound: None,
                tombstones: HashSet::new(),
                inbound_done: 0,
            }),
            config,
            appended: watch::channel(0).0,
            commit: watch::channel(Commit { term: 0, offset: 0 }).0,
            lease: Lease {
                base: Instant::now(),
                until: AtomicU64::new(0),
            },
            cluster_poke: Notify::new(),
            leader_hint: Mutex::new(None),
            conn_seq: AtomicU64::new(0),
            highest_epoch: AtomicU64::new(0),
            move_progress: Mutex::new(None),
            stats: Stats::default(),
        }
    }

    /// Locks the node's data. Never hold the guard across an await.
    pub fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh id for a connection.
    pub fn next_conn_id(&self) -> u64 {
        self.conn_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Publishes progress of moving keys away (the cluster runtime writes it to the shard
    /// state).
    pub fn report_move(&self, p: MoveProgress) {
        *self.move_progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        self.poke_cluster();
    }

    /// The last progress reported, if any.
    pub fn move_progress(&self) -> Option<MoveProgress> {
        self.move_progress.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the move progress (a new term or ring).
    pub fn clear_move(&self) {
        *self.move_progress.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Records that `epoch` exists.
    pub fn observe_epoch(&self, epoch: u64) {
        self.highest_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The highest epoch this node has seen.
    pub fn highest_epoch(&self) -> u64 {
        self.highest_epoch.load(Ordering::Acquire)
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.lock().role
    }

    /// Subscribes to the log's last offset.
    pub fn subscribe_appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Wakes follower streams waiting for new entries. Skipped when none is connected (the
    /// common single-replica case): a stream that subscribes later reads the log itself
    /// before waiting, so it misses nothing.
    fn notify_appended(&self, last: u64) {
        if self.appended.receiver_count() > 0 {
            self.appended.send_replace(last);
        }
    }

    /// Wakes the cluster runtime to reconcile the in-sync set.
    pub fn poke_cluster(&self) {
        self.cluster_poke.notify_one();
    }

    /// Waits for [`Node::poke_cluster`].
    pub async fn cluster_poked(&self) {
        self.cluster_poke.notified().await
    }

    /// Records where the leader is, for `NOTLEADER` replies.
    pub fn set_leader_hint(&self, addr: Option<String>) {
        *self.leader_hint.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    fn not_leader(&self) -> WriteError {
        let leader = self
            .leader_hint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "unknown".into());
        WriteError::NotLeader {
            shard: self.shard.clone(),
            leader,
        }
    }

    /// Publishes the replication progress that waiting writes watch. Call with the lock held
    /// after anything that changes it (acks, in-sync set, role).
    pub fn publish_commit(&self, data: &Data) {
        let c = Commit {
            term: data.term,
            offset: data.followers.commit(data.log.last_offset()),
        };
        self.commit.send_if_modified(|cur| {
            let changed = *cur != c;
            *cur = c;
            changed
        });
    }

    /// Applies a write as leader: `f` reads and changes the store through a [`Writer`], which
    /// logs every change. Returns `f`'s result and, when followers must confirm the write
    /// before it is acknowledged, what to wait for.
    pub fn write<R>(&self, f: impl FnOnce(&mut Writer<'_>) -> R) -> Result<(R, Option<Pending>), WriteError> {
        self.write_as(true, f)
    }

    /// [`Node::write`] for the moves themselves (copies in, drops out): never refused as moved.
    pub fn write_unguarded<R>(&self, f: impl FnOnce(&mut Writer<'_>) -> R) -> Result<(R, Option<Pending>), WriteError> {
        self.write_as(false, f)
    }

    fn write_as<R>(
        &self,
        guarded: bool,
        f: impl FnOnce(&mut Writer<'_>) -> R,
    ) -> Result<(R, Option<Pending>), WriteError> {
        let mut data = self.lock();
        let Role::Leader { epoch } = data.role else {
            drop(data);
            return Err(self.not_leader());
        };
        if !self.lease.valid() {
            return Err(WriteError::LeaseExpired(self.shard.clone()));
        }
        let in_sync = 1 + data.followers.confirmed().len();
        if in_sync < self.config.min_insync {
            return Err(WriteError::NotEnoughReplicas {
                shard: self.shard.clone(),
                have: in_sync,
                need: self.config.min_insync,
            });
        }
        let before = data.log.last_offset();
        let guard = if guarded { data.moving.clone() } else { None };
        let mut w = Writer {
            data: &mut data,
            epoch,
            now: now_ms(),
            guard: guard.as_deref().map(|p| (p, self.shard.as_str())),
            moved: None,
        };
        let r = f(&mut w);
        w.evict();
        let moved = w.moved.take();
        let last = data.log.last_offset();
        if let Some(to) = moved {
            // Changes to keys that stay here were applied and are replicated as usual; the
            // client repeats the whole command at the new owner (these commands are
            // idempotent for the keys that stayed).
            drop(data);
            self.notify_appended(last);
            return Err(WriteError::Moved(to));
        }
        if last == before {
            return Ok((r, None));
        }
        let pending =
            (self.config.replication == ReplicationMode::Sync && data.followers.any_waited()).then_some(Pending {
                term: data.term,
                offset: last,
            });
        drop(data);
        self.notify_appended(last);
        Ok((r, pending))
    }

    /// Reads through a [`Reader`]: on the leader an expired key found by a read is deleted
    /// (and the delete replicated); on a follower it is only hidden.
    pub fn read<R>(&self, f: impl FnOnce(&mut Reader<'_>) -> R) -> R {
        let mut data = self.lock();
        let epoch = match data.role {
            Role::Leader { epoch } => Some(epoch),
            _ => None,
        };
        let before = data.log.last_offset();
        let mut r = Reader {
            data: &mut data,
            epoch,
            now: now_ms(),
        };
        let out = f(&mut r);
        let last = data.log.last_offset();
        drop(data);
        if last != before {
            self.notify_appended(last);
        }
        out
    }

    /// Waits until the followers that must confirm `p` have applied it.
    pub async fn wait_replicated(&self, p: Pending) -> Result<(), ReplicationError> {
        let mut rx = self.commit.subscribe();
        let limit = self.config.lag_timeout() + self.config.session_timeout() + Duration::from_secs(1);
        let waited = tokio::time::timeout(limit, rx.wait_for(|c| c.term != p.term || c.offset >= p.offset)).await;
        match waited {
            Ok(Ok(c)) if c.term == p.term => Ok(()),
            Ok(_) => Err(ReplicationError::SteppedDown),
            Err(_) => Err(ReplicationError::Timeout),
        }
    }

    /// Starts leading in `epoch`, with a lease until `lease_until` and `isr` (followers) as
    /// the in-sync set the coordinator now holds.
    pub fn become_leader(&self, epoch: u64, lease_until: Instant, isr: BTreeSet<String>) {
        let mut data = self.lock();
        if !data.position_valid {
            // Elected (uncleanly) in the middle of loading a snapshot: the store matches no
            // point of the old log, so start a new one that no follower can resume from.
            let next = data.log.last_offset() + 1;
            data.log.reset(epoch, next);
            data.position_valid = true;
        }
        self.observe_epoch(epoch);
        data.role = Role::Leader { epoch };
        data.term += 1;
        data.followers = Followers::inherit(isr, Instant::now() + self.config.lag_timeout());
        // Entries received as a follower are what the previous leader's other followers will
        // resume from; a leader that starts with an empty backlog has nobody to keep one for.
        data.backlog_until = (data.log.bytes() > 0).then(|| Instant::now() + data.backlog_ttl);
        self.lease.set(lease_until);
        self.publish_commit(&data);
        drop(data);
        self.set_leader_hint(Some(self.addr.clone()));
    }

    /// Extends the lease to `until` (never shortens it).
    pub fn extend_lease(&self, until: Instant) {
        self.lease.extend_to(until);
    }

    /// True while the lease lets this leader acknowledge writes.
    pub fn lease_valid(&self) -> bool {
        self.lease.valid()
    }

    /// Stops leading or following; `role` is the new role. Returns the new term.
    pub fn change_role(&self, role: Role) -> u64 {
        let mut data = self.lock();
        if let Role::Follower { epoch } | Role::Leader { epoch } = role {
            self.observe_epoch(epoch);
        }
        data.role = role;
        data.term += 1;
        data.followers = Followers::new();
        self.lease.set(self.lease.base);
        self.publish_commit(&data);
        data.term
    }

    /// The log position to resume from, `None` when the next sync must be a full one.
    pub fn position(&self) -> Option<(u64, u64)> {
        let data = self.lock();
        data.position_valid
            .then(|| (data.log.last_epoch(), data.log.last_offset()))
    }

    fn check_term<'a>(&'a self, term: u64) -> Result<MutexGuard<'a, Data>, ApplyError> {
        let data = self.lock();
        if data.term != term {
            return Err(ApplyError::StaleTerm);
        }
        Ok(data)
    }

    /// Follower: a full snapshot begins; the store is emptied.
    pub fn begin_snapshot(&self, term: u64) -> Result<(), ApplyError> {
        let mut data = self.check_term(term)?;
        data.store.clear();
        data.position_valid = false;
        data.inbound = None;
        data.tombstones.clear();
        Ok(())
    }

    /// Follower: loads one `KV.SNAP` chunk (`key value expires-at` triples).
    pub fn load_snapshot_chunk(&self, term: u64, req: &Request) -> Result<usize, ApplyError> {
        let args = &req.args()[1..];
        if !args.len().is_multiple_of(3) {
            return Err(ops::DecodeError("snapshot chunk is not key/value/expiry triples").into());
        }
        let mut data = self.check_term(term)?;
        for t in args.chunks_exact(3) {
            let at = ops::parse_u64(&t[2]).ok_or(ops::DecodeError("bad expiry in snapshot"))?;
            data.store.set(&t[0], &t[1], (at != 0).then_some(at));
        }
        Ok(args.len() / 3)
    }

    /// Follower: the snapshot's leader was receiving keys for ring `version` (0: none), with
    /// these tombstones, and had completed moves up to ring `done`.
    pub fn load_inbound(&self, term: u64, version: u64, done: u64, tombstones: &[Bytes]) -> Result<(), ApplyError> {
        let mut data = self.check_term(term)?;
        data.inbound = (version != 0).then_some(version);
        data.inbound_done = done;
        data.tombstones = tombstones.iter().map(|k| Box::from(&k[..])).collect();
        Ok(())
    }

    /// Follower: the snapshot taken at `(epoch, offset)` is complete.
    pub fn finish_snapshot(&self, term: u64, epoch: u64, offset: u64) -> Result<(), ApplyError> {
        let mut data = self.check_term(term)?;
        self.observe_epoch(epoch);
        data.log.reset(epoch, offset);
        data.position_valid = true;
        drop(data);
        self.notify_appended(offset);
        Ok(())
    }

    /// Follower: applies `KV.OP` entries in order and keeps them in its own backlog (so that,
    /// elected, it can resume other followers). Returns the last applied offset.
    pub fn apply_entries(&self, term: u64, entries: &[Request]) -> Result<u64, ApplyError> {
        let mut data = self.check_term(term)?;
        for req in entries {
            let e = ops::decode(req)?;
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
            e.mutation.apply(&mut data.store);
            data.remember(&e.mutation);
            data.log.append(e.epoch, req.raw().clone());
        }
        self.observe_epoch(data.log.last_epoch());
        let last = data.log.last_offset();
        drop(data);
        self.notify_appended(last);
        Ok(last)
    }
}

/// Changes the store on the leader; every change is logged for the followers.
pub struct Writer<'a> {
    data: &'a mut Data,
    epoch: u64,
    now: u64,
    /// During a move: the placement and this shard, to refuse keys moving away.
    guard: Option<(&'a Placement, &'a str)>,
    /// Set when a change was refused because its key moved to this shard.
    moved: Option<String>,
}

impl Writer<'_> {
    /// Milliseconds since the Unix epoch, fixed for this write.
    pub fn now(&self) -> u64 {
        self.now
    }

    fn log(&mut self, m: Mutation<'_>) {
        self.data.log(self.epoch, m);
    }

    /// The live value of `key` and its expiry; an expired key is deleted (and logged).
    pub fn get(&mut self, key: &[u8]) -> Option<(Bytes, Option<u64>)> {
        match self.data.store.get_expiring(key, self.now) {
            Lookup::Hit { value, expires_at } => Some((Bytes::copy_from_slice(value), expires_at)),
            Lookup::Miss => None,
            Lookup::Expired => {
                self.log(Mutation::Del { key });
                None
            }
        }
    }

    /// `Some(expiry)` when the key exists and is live (an expired key is deleted and
    /// logged), without copying its value.
    pub fn expiry_of(&mut self, key: &[u8]) -> Option<Option<u64>> {
        match self.data.store.get_expiring(key, self.now) {
            Lookup::Hit { expires_at, .. } => Some(expires_at),
            Lookup::Miss => None,
            Lookup::Expired => {
                self.log(Mutation::Del { key });
                None
            }
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

    /// True (and remembered) when `key` is moving away from this shard: it must not change.
    fn refused(&mut self, key: &[u8]) -> bool {
        let Some((placement, shard)) = self.guard else {
            return false;
        };
        match placement.moved_away(shard, key) {
            Some(to) => {
                self.moved = Some(to.to_string());
                true
            }
            None => false,
        }
    }

    /// Sets `key`.
    pub fn set(&mut self, key: &[u8], value: &[u8], expires_at: Option<u64>) {
        if self.refused(key) {
            return;
        }
        self.data.store.set(key, value, expires_at);
        self.log(Mutation::Set { key, value, expires_at });
    }

    /// Sets `key` unless it exists or was deleted during the current inbound move: a copy
    /// of an older value never overwrites a newer one. True when set.
    pub fn set_if_new(&mut self, key: &[u8], value: &[u8], expires_at: Option<u64>) -> bool {
        if self.exists(key) || self.data.tombstones.contains(key) || expires_at.is_some_and(|t| t <= self.now) {
            return false;
        }
        self.set(key, value, expires_at);
        true
    }

    /// Deletes `key`; false when it was absent. While receiving keys the delete is logged
    /// even for an absent key, so the tombstone reaches the followers too.
    pub fn del(&mut self, key: &[u8]) -> bool {
        if self.refused(key) {
            return false;
        }
        let existed = self.data.store.remove(key);
        if existed || self.data.inbound.is_some() {
            self.log(Mutation::Del { key });
        }
        existed
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
        if self.refused(key) || !self.exists(key) {
            return false;
        }
        self.data.store.set_expiry(key, expires_at);
        self.log(Mutation::Expire { key, expires_at });
        true
    }

    /// Deletes up to `max` expired keys; returns how many.
    pub fn expire_due(&mut self, max: usize) -> usize {
        let keys = self.data.store.take_expired(self.now, max);
        for k in &keys {
            self.log(Mutation::Del { key: k });
        }
        keys.len()
    }

    /// Evicts least recently used keys while over the bounds, logging each as a delete.
    fn evict(&mut self) {
        if !self.data.store.over_limit() {
            return;
        }
        for k in self.data.store.evict_over_limit() {
            self.log(Mutation::Del { key: &k });
        }
    }
}

/// Reads the store; see [`Node::read`].
pub struct Reader<'a> {
    data: &'a mut Data,
    /// `Some` on the leader: expired keys found are deleted and logged.
    epoch: Option<u64>,
    now: u64,
}

impl Reader<'_> {
    /// The live value of `key` and its expiry, passed to `f` without copying.
    pub fn lookup<R>(&mut self, key: &[u8], f: impl FnOnce(Option<(&[u8], Option<u64>)>) -> R) -> R {
        let Some(epoch) = self.epoch else {
            return match self.data.store.get(key, self.now) {
                Lookup::Hit { value, expires_at } => f(Some((value, expires_at))),
                _ => f(None),
            };
        };
        match self.data.store.get_expiring(key, self.now) {
            Lookup::Hit { value, expires_at } => f(Some((value, expires_at))),
            Lookup::Miss => f(None),
            Lookup::Expired => {
                self.data.log(epoch, Mutation::Del { key });
                f(None)
            }
        }
    }

    /// The live value of `key`, passed to `f` without copying.
    pub fn get<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        self.lookup(key, |hit| f(hit.map(|(v, _)| v)))
    }

    /// Milliseconds since the Unix epoch, fixed for this read.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.data.store.len()
    }

    /// True when the store is empty.
    pub fn is_empty(&self) -> bool {
        self.data.store.is_empty()
    }

    /// The whole locked state, for reports.
    pub fn data(&self) -> &Data {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kv_proto::{Limits, RequestParser};

    fn node() -> Node {
        Node::new("n1".into(), "127.0.0.1:1".into(), Config::for_shard("s"))
    }

    fn lease() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn entries(frames: &[Bytes]) -> Vec<Request> {
        let mut buf = BytesMut::new();
        for f in frames {
            buf.extend_from_slice(f);
        }
        let mut p = RequestParser::new(Limits::REDIS);
        std::iter::from_fn(|| p.parse(&mut buf).unwrap()).collect()
    }

    #[test]
    fn only_a_leader_with_a_lease_writes() {
        let n = node();
        assert!(matches!(
            n.write(|w| w.set(b"k", b"v", None)),
            Err(WriteError::NotLeader { .. })
        ));
        n.become_leader(1, Instant::now(), BTreeSet::new());
        assert!(matches!(
            n.write(|w| w.set(b"k", b"v", None)),
            Err(WriteError::LeaseExpired(_))
        ));
        n.extend_lease(lease());
        let (_, pending) = n.write(|w| w.set(b"k", b"v", None)).unwrap();
        assert_eq!(pending, None, "no follower to wait for");
        assert_eq!(n.position(), Some((1, 1)));
        n.change_role(Role::Follower { epoch: 2 });
        assert!(n.write(|w| w.del(b"k")).is_err());
    }

    #[test]
    fn a_follower_applies_the_leaders_log_in_order() {
        let leader = node();
        leader.become_leader(3, lease(), BTreeSet::new());
        // With a follower attached the leader keeps its log.
        leader.lock().followers.attach("f", 1, 0, true, Instant::now());
        leader.write(|w| w.set(b"a", b"1", None)).unwrap();
        leader.write(|w| w.set(b"b", b"2", Some(u64::MAX))).unwrap();
        leader.write(|w| w.del(b"a")).unwrap();
        let mut frames = Vec::new();
        leader.lock().log.read_from(1, 10, &mut frames).unwrap();

        let follower = node();
        let term = follower.change_role(Role::Follower { epoch: 3 });
        let reqs = entries(&frames);
        assert_eq!(
            follower.apply_entries(term, &reqs[1..]),
            Err(ApplyError::Gap { expected: 1, got: 2 }),
            "a gap is refused"
        );
        assert_eq!(follower.apply_entries(term, &reqs), Ok(3));
        assert_eq!(follower.lock().store.digest(), leader.lock().store.digest());
        assert_eq!(follower.apply_entries(term + 1, &reqs), Err(ApplyError::StaleTerm));
        // Older epochs are refused once a newer one was applied.
        let old = Mutation::Del { key: b"b" }.encode(2, 4);
        assert_eq!(
            follower.apply_entries(term, &entries(&[old])),
            Err(ApplyError::EpochRegressed { last: 3, got: 2 })
        );
    }

    #[test]
    fn a_lone_leader_keeps_no_backlog() {
        let n = node();
        n.become_leader(1, lease(), BTreeSet::new());
        for i in 0..100u32 {
            n.write(|w| w.set(&i.to_be_bytes(), b"v", None)).unwrap();
        }
        let d = n.lock();
        assert_eq!(
            (d.log.last_offset(), d.log.bytes()),
            (100, 0),
            "offsets advance, nothing is kept"
        );
    }

    #[test]
    fn a_leader_elected_mid_snapshot_starts_a_fresh_log() {
        let n = node();
        let term = n.change_role(Role::Follower { epoch: 1 });
        n.begin_snapshot(term).unwrap();
        assert_eq!(n.position(), None);
        n.become_leader(2, lease(), BTreeSet::new());
        let (epoch, offset) = n.position().unwrap();
        assert_eq!((epoch, offset), (2, 1));
        assert!(!n.lock().log.can_resume(1, 0), "no follower resumes against this store");
    }
}
