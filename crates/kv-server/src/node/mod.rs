//! [`Node`]: the one owner of a shard replica's state — the store, the replication log, the
//! role and term, the followers' progress, the leases, and what the ring says this shard
//! serves. Nothing else holds or mutates these; other modules go through this API:
//!
//! - [`access`]: client reads and writes ([`Node::read`], [`Node::write`]), each checked
//!   against the role, the leases and key ownership under the same lock that applies it;
//!   [`Refusal`] says why one was refused.
//! - [`leading`]: the leader's side of replication (sync plans, snapshots, log reads, acks,
//!   heartbeats, the in-sync set).
//! - [`following`]: the follower's side (snapshots loaded, entries applied, read leases).
//! - [`lease`]: leases on the monotonic clock.
//!
//! Everything sits behind one `std::sync::Mutex`: applying a write and appending it to the
//! log happen in the same critical section, so the log's order is the store's order. The
//! section never awaits and is short (a hash lookup and a copy), so a blocking mutex is right
//! here, as in mini-redis's `Db`. Waiting for followers happens after the lock is released,
//! on a watch channel ([`Node::wait_replicated`]). A panic while the lock is held stops the
//! process: the state it guards may be half-changed, and serving from it could lose or
//! invent writes.

pub mod access;
pub mod effects;
pub mod events;
pub mod following;
pub mod leading;
pub mod lease;
#[cfg(test)]
mod tests;
pub mod waiters;
pub mod watches;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kv_cluster::{Placement, ServedSlots};
use kv_peer::{Counters, MoveProgress, Mutation, ServerInfo};
use kv_store::Store;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::replication::backlog::Backlog;
use crate::replication::progress::Followers;
use lease::Lease;

pub use access::{ClientRoute, Reader, Refusal, Writer};

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

    /// The epoch led or followed (0 when idle).
    pub fn epoch(&self) -> u64 {
        match *self {
            Role::Leader { epoch } | Role::Follower { epoch } => epoch,
            Role::Idle => 0,
        }
    }
}

/// Everything behind the node's lock. Private: only this module and its children touch it.
struct Data {
    store: Store,
    log: Backlog,
    role: Role,
    /// Grows on every role change. Work started in one term (a follower stream, a write
    /// waiting for replication) checks it is still current.
    term: u64,
    /// False while the store does not match the log position (a snapshot is loading):
    /// the next sync must be a full one.
    position_valid: bool,
    followers: Followers,
    /// The offset every follower a reply must wait for has applied (`u64::MAX` when none
    /// is waited for), as of the last change to the followers' progress: cached, because
    /// every read and write on the leader compares against it. Time alone can only lower
    /// the set of followers waited for (a read lease ends), so a cached floor errs on the
    /// side of waiting; the lag monitor refreshes it often.
    commit_floor: u64,
    /// A leader without followers keeps its backlog until then (`--repl-backlog-ttl-secs`),
    /// so a follower that left can still resume; after that it stops logging entries at all.
    backlog_until: Option<Instant>,
    backlog_ttl: Duration,
    /// The ring as this server last saw it: which keys this shard serves.
    placement: Arc<Placement>,
    /// This shard's slots under `placement`, a bit each (checked for every key of every
    /// request; set with it in [`Data::set_placement`]).
    served: Box<ServedSlots>,
    /// The cluster view the placement came from: who leads each shard, for redirections
    /// and `CLUSTER SLOTS`.
    view: Arc<kv_cluster::ClusterView>,
    /// `Some(version)` while this shard receives keys for that ring version (see
    /// [`Mutation::Inbound`]).
    inbound: Option<u64>,
    /// Keys deleted while receiving: a copy arriving later must not bring them back. Bounded
    /// by the deletes made during one move.
    tombstones: HashSet<Box<[u8]>>,
    /// The highest ring version whose inbound move completed here: copies for it are late.
    inbound_done: u64,
    /// While a follower replays the log over a snapshot: the lists the snapshot held, with
    /// the offset each was read at (entries up to it are already in them).
    snapshot_lists: std::collections::HashMap<Box<[u8]>, u64>,
    /// The offset of the snapshot's last chunk: past it, nothing is skipped.
    snapshot_until: u64,
    /// A follower's entries of a transaction still open (after its `MULTI` entry, before
    /// its `EXEC` one): applied and logged together when the end arrives, dropped if the
    /// stream breaks first. Never in the log or the store before then, so neither a reader
    /// here nor this node elected leader sees half a transaction.
    open_tx: Vec<kv_proto::Request>,
    /// Clients blocked in a pop on this node.
    waiters: waiters::Waiters,
    /// Keys clients `WATCH` (a leader's: its writes break them).
    watches: watches::Watches,
    /// Keyspace notifications, when `notify-keyspace-events` enables any.
    events: Option<events::Events>,
    /// Why the key of the mutation being logged went (expiry, eviction), for its event.
    cause: Option<events::Cause>,
    /// Keys this node deleted because they expired, and evicted (as leader).
    expired_keys: u64,
    evicted_keys: u64,
}

impl Data {
    /// The placement this server routes by, with `served`, its shard's slots under it
    /// (computed by the caller before taking the lock: 16k slots looked up twice).
    fn set_placement(&mut self, placement: Arc<Placement>, served: Box<ServedSlots>) {
        self.placement = placement;
        self.served = served;
    }

    /// Logs the delete of a key that expired or was evicted (its event says which).
    fn log_gone(&mut self, epoch: u64, key: &[u8], cause: events::Cause) {
        match cause {
            events::Cause::Expired => self.expired_keys += 1,
            events::Cause::Evicted => self.evicted_keys += 1,
        }
        self.cause = Some(cause);
        self.log(epoch, Mutation::Del { key });
        self.cause = None;
    }

    /// Appends `m` to the log as the next entry of `epoch` — or, when no follower could ever
    /// read it, only moves the offset on (no encoding, no memory).
    fn log(&mut self, epoch: u64, m: Mutation<'_>) {
        self.remember(&m);
        if let Some(events) = &self.events {
            events.on(&m, self.cause);
        }
        if !self.watches.is_empty()
            && let Some(key) = m.key()
        {
            self.watches.touch(key);
        }
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
        if !matches!(self.role, Role::Leader { .. }) || !self.followers.idle() {
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
            // Every copy of this move was read before the flush (the gate flushes every
            // shard, the source included): from now on they are all late.
            Mutation::Flush => {
                if let Some(version) = self.inbound {
                    self.inbound_done = self.inbound_done.max(version);
                }
                self.tombstones.clear();
            }
            _ => {}
        }
    }
}

/// Applies a replicated mutation to a store (a follower, or a snapshot being loaded).
fn apply(m: &Mutation<'_>, store: &mut Store) {
    match *m {
        Mutation::Set { key, value, expires_at } => store.set(key, value, expires_at),
        Mutation::Del { key } => {
            store.remove(key);
        }
        Mutation::Expire { key, expires_at } => {
            store.set_expiry(key, expires_at);
        }
        Mutation::Inbound { .. } | Mutation::TxBegin | Mutation::TxEnd => {}
        Mutation::Flush => store.clear(),
        Mutation::Object {
            key,
            kind,
            payload,
            expires_at,
        } => {
            // A malformed payload from the leader: the key stays absent (the digest check
            // shows the difference) rather than stopping replication.
            if store.set_payload(key, kind, payload, expires_at).is_err() {
                store.remove(key);
            }
        }
        Mutation::Elems { key, op, args } => {
            // Another kind: only while replaying over a snapshot (see kv_peer::log).
            let _ = effects::apply(store, key, op, args);
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

/// A reply that must wait until followers applied everything up to `offset` in `term`:
/// a write's own entry, or the entries a read may have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub term: u64,
    pub offset: u64,
}

impl Pending {
    /// The later of two pending replies (a pipeline waits once, for its last entry).
    pub fn max(a: Option<Pending>, b: Option<Pending>) -> Option<Pending> {
        match (a, b) {
            (Some(x), Some(y)) if y.term == x.term && y.offset < x.offset => Some(x),
            (x, None) => x,
            (_, y) => y,
        }
    }
}

/// Why a reply could not be confirmed as replicated. For a write its outcome is unknown to
/// the client; a read is simply not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("leadership changed before the entries were replicated")]
    SteppedDown,
    #[error("followers did not confirm the entries in time")]
    Timeout,
}

/// The work of a term ended: the node changed role meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the term ended")]
pub struct StaleTerm;

/// Counters reported by `KV.INFO`.
#[derive(Debug, Default)]
pub struct Stats {
    pub full_syncs_served: AtomicU64,
    pub partial_syncs_served: AtomicU64,
    pub full_syncs_done: AtomicU64,
    pub partial_syncs_done: AtomicU64,
    pub epoch_regressions: AtomicU64,
    pub replica_timeouts: AtomicU64,
    pub keys_moved_in: AtomicU64,
    pub move_retries: AtomicU64,
    pub reads_fenced: AtomicU64,
    pub not_owned: AtomicU64,
    pub peer_auth_failures: AtomicU64,
    /// Times this server became its shard's leader.
    pub elections_won: AtomicU64,
}

impl Stats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One kvserver's state. See the module documentation.
pub struct Node {
    /// Held shared by every command, exclusively by a transaction's `EXEC`
    /// (`crate::cmd::transaction`): nothing runs between a transaction's commands.
    transactions: std::sync::RwLock<()>,
    pub id: String,
    pub shard: String,
    /// The client port's advertised address.
    pub addr: String,
    /// The cluster port's advertised address.
    pub cluster_addr: String,
    /// The TLS client port's advertised address (`--tls-port`).
    pub tls_addr: Option<String>,
    /// Every server's TLS client address, for clients on the TLS port.
    pub tls_addrs: Arc<kv_proto::addrs::ClientAddrs>,
    pub config: Config,
    data: Mutex<Data>,
    /// Last offset in the log; follower streams wait on it.
    appended: watch::Sender<u64>,
    commit: watch::Sender<Commit>,
    /// The leader's lease.
    lease: Lease,
    /// A follower's read lease.
    read_lease: Lease,
    /// Wakes the shard-state writer: the in-sync set the replication layer wants changed.
    isr_poke: Notify,
    /// Address of the current leader, for error messages.
    leader_hint: Mutex<Option<String>>,
    conn_seq: AtomicU64,
    /// The highest epoch this node has led, followed or received entries of. Epochs never go
    /// backwards: a coordinator naming an older one has lost data.
    highest_epoch: AtomicU64,
    /// This leader's progress in moving keys away, reported on `KV.INFO`.
    move_progress: Mutex<Option<MoveProgress>>,
    /// The Lua interpreter and script cache (`crate::cmd::scripting`).
    pub scripts: crate::cmd::scripting::Scripts,
    /// Who is subscribed to what on this server (`crate::cmd::pubsub`).
    pub pubsub: Arc<kv_pubsub::Hub>,
    /// Keyspace notifications are on: commands name themselves for their events.
    notifying: std::sync::atomic::AtomicBool,
    /// Big collections arriving in parts (`KV.MIGRATEPART`), until their last part.
    pub inbound_parts: Mutex<crate::peer::moves::Staging>,
    pub stats: Stats,
    /// Per-command figures, the slow log and the latency monitor (`INFO commandstats`,
    /// `SLOWLOG`, `LATENCY`, `/metrics`).
    pub observer: kv_metrics::Observer,
    /// The users the client port admits (`AUTH`, `ACL`): the cluster's stored ones.
    pub acl: Arc<kv_acl::Acl>,
    pub acl_log: kv_acl::command::Log,
    /// Where `ACL SETUSER` and `DELUSER` store changes; `None` in tests without a cluster.
    pub users_store: Option<kv_acl::store::Store>,
    /// `CONFIG GET/SET` parameters of this server.
    pub settings: kv_proto::settings::Settings,
    /// Client-port connections open now, and when the node started (`INFO`).
    pub clients_connected: AtomicU64,
    /// Of them, on the TLS port.
    pub tls_clients: AtomicU64,
    /// Peers' connections on the cluster port (gates, followers, moving shards).
    pub peer_links: AtomicU64,
    /// The client port's connections (`CLIENT LIST`, `CLIENT KILL`).
    pub clients: kv_client::registry::Clients,
    /// Clients waiting in a blocking pop.
    pub clients_blocked: AtomicU64,
    pub started: Instant,
    /// True while a cluster client's command needs no routing check (a leader, no move
    /// under way): saves its commands a second lock per request.
    plain_route: std::sync::atomic::AtomicBool,
}

/// Locks a mutex that only this process's own code uses; poisoned means a panic happened
/// while it was held, so the state it guards can no longer be trusted: stop the process.
fn lock_or_die<'a, T>(m: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    m.lock().unwrap_or_else(|_| {
        tracing::error!("a panic happened while the {what} was locked; stopping the process");
        std::process::abort()
    })
}

impl Node {
    /// A node with an empty store.
    pub fn new(id: String, addr: String, cluster_addr: String, config: Config) -> Node {
        let script_memory = config.script_memory;
        Node {
            id,
            shard: config.shard.clone(),
            addr,
            cluster_addr,
            tls_addr: None,
            tls_addrs: Arc::default(),
            data: Mutex::new(Data {
                store: Store::new(config.store_limits()),
                log: Backlog::new(config.repl_backlog_bytes as usize),
                role: Role::Idle,
                term: 0,
                position_valid: true,
                followers: Followers::new(),
                commit_floor: u64::MAX,
                backlog_until: None,
                backlog_ttl: Duration::from_secs(config.repl_backlog_ttl_secs),
                placement: Arc::new(Placement::new(None)),
                served: Box::new(ServedSlots::NONE),
                view: Arc::default(),
                inbound: None,
                tombstones: HashSet::new(),
                inbound_done: 0,
                snapshot_lists: Default::default(),
                snapshot_until: 0,
                open_tx: Vec::new(),
                waiters: Default::default(),
                watches: Default::default(),
                events: None,
                cause: None,
                expired_keys: 0,
                evicted_keys: 0,
            }),
            settings: kv_proto::settings::Settings::new(
                config.resp.max_clients,
                config.resp.proto_max_bulk_len as usize,
            ),
            clients_connected: AtomicU64::new(0),
            tls_clients: AtomicU64::new(0),
            peer_links: AtomicU64::new(0),
            clients: Default::default(),
            clients_blocked: AtomicU64::new(0),
            transactions: std::sync::RwLock::new(()),
            started: Instant::now(),
            config,
            appended: watch::channel(0).0,
            commit: watch::channel(Commit { term: 0, offset: 0 }).0,
            lease: Lease::new(),
            read_lease: Lease::new(),
            isr_poke: Notify::new(),
            leader_hint: Mutex::new(None),
            conn_seq: AtomicU64::new(0),
            highest_epoch: AtomicU64::new(0),
            move_progress: Mutex::new(None),
            inbound_parts: Default::default(),
            // `client-output-buffer-limit pubsub`'s default; `CONFIG SET` changes it.
            pubsub: kv_pubsub::Hub::new(
                kv_proto::settings::Settings::new(0, 0)
                    .output_limit("pubsub")
                    .unwrap_or(0),
            ),
            notifying: Default::default(),
            scripts: crate::cmd::scripting::Scripts::new(script_memory),
            stats: Stats::default(),
            observer: Default::default(),
            acl: Arc::new(kv_acl::Acl::new(kv_acl::Users::new(None))),
            acl_log: Default::default(),
            users_store: None,
            plain_route: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        lock_or_die(&self.data, "store")
    }

    /// A fresh id for a connection.
    pub fn next_conn_id(&self) -> u64 {
        self.conn_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.lock().role
    }

    /// The current role and term.
    pub fn role_and_term(&self) -> (Role, u64) {
        let d = self.lock();
        (d.role, d.term)
    }

    /// True while `term` is current.
    pub fn in_term(&self, term: u64) -> bool {
        self.lock().term == term
    }

    /// Records that `epoch` exists.
    pub fn observe_epoch(&self, epoch: u64) {
        self.highest_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The highest epoch this node has seen.
    pub fn highest_epoch(&self) -> u64 {
        self.highest_epoch.load(Ordering::Acquire)
    }

    /// The ring this server routes by.
    pub fn set_placement(&self, placement: Arc<Placement>) {
        let served = self.served_slots(&placement);
        let mut data = self.lock();
        data.set_placement(placement, served);
        self.refresh_plain_route(&data);
    }

    /// The ring this server routes by, and the view it came from.
    pub fn set_cluster(&self, placement: Arc<Placement>, view: Arc<kv_cluster::ClusterView>) {
        let tls: std::collections::HashMap<String, String> = view
            .shards
            .values()
            .flat_map(|sv| sv.nodes.values())
            .filter_map(|n| Some((n.addr.clone(), n.tls_addr.clone()?)))
            .collect();
        if !tls.is_empty() || self.tls_addr.is_some() {
            self.tls_addrs.set(tls);
        }
        let served = self.served_slots(&placement);
        let mut data = self.lock();
        data.set_placement(placement, served);
        data.view = view;
        self.refresh_plain_route(&data);
    }

    /// This shard's slots under `placement`: the ones held when it is the placement in use
    /// (every change of the cluster view sets the placement again, mostly the same one),
    /// computed outside the lock otherwise (32k slot lookups, on a ring change only).
    fn served_slots(&self, placement: &Arc<Placement>) -> Box<ServedSlots> {
        {
            let data = self.lock();
            if Arc::ptr_eq(&data.placement, placement) {
                return data.served.clone();
            }
        }
        Box::new(placement.served_slots(&self.shard))
    }

    /// True while a cluster client's command needs no routing check (see
    /// [`Node::cluster_client_route`]).
    pub fn plain_route(&self) -> bool {
        self.plain_route.load(Ordering::Acquire)
    }

    /// Records whether a cluster client's command needs no routing check
    /// ([`Node::cluster_client_route`]): a leader with no move under way. Call with the lock
    /// held after the role or the placement changed.
    fn refresh_plain_route(&self, data: &Data) {
        let plain = matches!(data.role, Role::Leader { .. }) && data.placement.next().is_none();
        self.plain_route.store(plain, Ordering::Release);
    }

    /// The placement and the cluster view this server routes by.
    pub fn cluster(&self) -> (Arc<Placement>, Arc<kv_cluster::ClusterView>) {
        let data = self.lock();
        (data.placement.clone(), data.view.clone())
    }

    /// The placement this server routes by.
    pub fn placement(&self) -> Arc<Placement> {
        self.lock().placement.clone()
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

    /// Wakes the shard-state writer to reconcile the in-sync set.
    pub fn poke_isr(&self) {
        self.isr_poke.notify_one();
    }

    /// Waits for [`Node::poke_isr`].
    pub async fn isr_poked(&self) {
        self.isr_poke.notified().await
    }

    /// Records where the leader is, for `NOTLEADER` replies.
    pub fn set_leader_hint(&self, addr: Option<String>) {
        *lock_or_die(&self.leader_hint, "leader hint") = addr;
    }

    pub(crate) fn leader_hint_addr(&self) -> Option<String> {
        lock_or_die(&self.leader_hint, "leader hint").clone()
    }

    fn leader_hint(&self) -> String {
        lock_or_die(&self.leader_hint, "leader hint")
            .clone()
            .unwrap_or_else(|| "unknown".into())
    }

    /// Publishes the replication progress that waiting replies watch. Call with the lock
    /// held after anything that changes it (acks, in-sync set, role, time passing).
    fn publish_commit(&self, data: &mut Data) {
        data.commit_floor = data.followers.commit(u64::MAX, Instant::now());
        let c = Commit {
            term: data.term,
            offset: data.commit_floor.min(data.log.last_offset()),
        };
        self.commit.send_if_modified(|cur| {
            let changed = *cur != c;
            *cur = c;
            changed
        });
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
    /// the in-sync set the coordinator now holds. Returns the new term.
    pub fn become_leader(&self, epoch: u64, lease_until: Instant, isr: std::collections::BTreeSet<String>) -> u64 {
        let mut data = self.lock();
        if !data.position_valid {
            // Elected (uncleanly) in the middle of loading a snapshot: the store matches no
            // point of the old log, so start a new one that no follower can resume from.
            let next = data.log.last_offset() + 1;
            data.log.reset(epoch, next);
            data.position_valid = true;
        }
        self.observe_epoch(epoch);
        Stats::bump(&self.stats.elections_won);
        data.role = Role::Leader { epoch };
        self.refresh_plain_route(&data);
        data.term += 1;
        data.followers = Followers::inherit(isr, Instant::now() + self.config.lag_timeout());
        // Entries received as a follower are what the previous leader's other followers will
        // resume from; a leader that starts with an empty backlog has nobody to keep one for.
        data.backlog_until = (data.log.bytes() > 0).then(|| Instant::now() + data.backlog_ttl);
        self.lease.set(lease_until);
        self.read_lease.revoke();
        self.publish_commit(&mut data);
        let term = data.term;
        drop(data);
        self.set_leader_hint(Some(self.addr.clone()));
        term
    }

    /// Extends the leader's lease to `until` (never shortens it), if `term` is current.
    pub fn extend_lease(&self, term: u64, until: Instant) {
        let data = self.lock();
        if data.term == term && matches!(data.role, Role::Leader { .. }) {
            self.lease.extend_to(until);
        }
    }

    /// True while the lease lets this leader acknowledge writes and serve reads.
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
        self.refresh_plain_route(&data);
        data.term += 1;
        data.followers = Followers::new();
        self.lease.revoke();
        self.read_lease.revoke();
        self.publish_commit(&mut data);
        data.term
    }

    /// The log position to resume from, `None` when the next sync must be a full one.
    pub fn position(&self) -> Option<(u64, u64)> {
        let data = self.lock();
        data.position_valid
            .then(|| (data.log.last_epoch(), data.log.last_offset()))
    }

    /// Taken by every command while it applies (see `transactions`).
    pub fn shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.transactions.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken by a transaction's `EXEC` while it applies.
    pub fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.transactions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the [`kv_proto::settings::CLUSTER_WIDE`] parameters to the store (after a
    /// `CONFIG SET`): collections changed from now on follow the new sizes.
    /// True when keyspace notifications are on (`notify-keyspace-events`).
    pub fn notifying(&self) -> bool {
        self.notifying.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn apply_settings(&self) {
        let n = |name: &str, default: usize| {
            self.settings
                .number(name)
                .map_or(default, |v| usize::try_from(v).unwrap_or(0))
        };
        let d = kv_store::CompactLimits::default();
        let limits = kv_store::CompactLimits {
            hash_max_listpack_entries: n("hash-max-listpack-entries", d.hash_max_listpack_entries),
            hash_max_listpack_value: n("hash-max-listpack-value", d.hash_max_listpack_value),
            set_max_intset_entries: n("set-max-intset-entries", d.set_max_intset_entries),
            set_max_listpack_entries: n("set-max-listpack-entries", d.set_max_listpack_entries),
            set_max_listpack_value: n("set-max-listpack-value", d.set_max_listpack_value),
            zset_max_listpack_entries: n("zset-max-listpack-entries", d.zset_max_listpack_entries),
            zset_max_listpack_value: n("zset-max-listpack-value", d.zset_max_listpack_value),
            // Redis 7.2 sizes a compact list by `list-max-listpack-size`: a count of elements
            // when positive, bytes when negative. A count caps ours; a compact list is one
            // block (4 KiB) whatever the setting, so a byte size leaves the default count.
            list_max_compact_entries: match self.settings.number("list-max-listpack-size") {
                Some(v) if v > 0 => usize::try_from(v).unwrap_or(usize::MAX),
                _ => d.list_max_compact_entries,
            },
        };
        let flags = self
            .settings
            .text("notify-keyspace-events")
            .and_then(|t| kv_proto::notify::parse(&t))
            .unwrap_or(0);
        let mut data = self.lock();
        data.store.set_compact_limits(limits);
        data.events = (flags != 0).then(|| events::Events {
            flags,
            hub: self.pubsub.clone(),
        });
        self.notifying.store(flags != 0, std::sync::atomic::Ordering::Relaxed);
        drop(data);
        if let Some(limit) = self.settings.output_limit("pubsub") {
            self.pubsub.set_limit(limit);
        }
        self.observer.configure(&self.settings);
    }

    /// The last offset in the log.
    pub fn last_offset(&self) -> u64 {
        self.lock().log.last_offset()
    }

    /// Visits up to `max` store entries from `cursor` (`key, value, expires-at`); `f` returns
    /// false to stop early. Returns the cursor to continue from, `None` at the end. For moves
    /// and clean-up, which read without the fences of client reads.
    pub fn scan(
        &self,
        cursor: usize,
        max: usize,
        f: impl FnMut(&[u8], kv_store::Val<'_>, Option<u64>) -> bool,
    ) -> Option<usize> {
        self.lock().store.scan(cursor, max, f)
    }

    /// Keys held in Redis Cluster slot `slot`, expired ones not yet removed included (as
    /// Redis counts them).
    pub fn count_in_slot(&self, slot: u16) -> usize {
        self.lock().store.count_in_slot(slot)
    }

    /// Publishes progress of moving keys away (`KV.INFO` reports it).
    pub fn report_move(&self, p: MoveProgress) {
        *lock_or_die(&self.move_progress, "move progress") = Some(p);
    }

    /// The last progress reported, if any.
    pub fn move_progress(&self) -> Option<MoveProgress> {
        lock_or_die(&self.move_progress, "move progress").clone()
    }

    /// Forgets the move progress (a new term or ring).
    pub fn clear_move(&self) {
        *lock_or_die(&self.move_progress, "move progress") = None;
    }

    /// The ring version this shard is receiving keys for, if any.
    pub fn inbound(&self) -> Option<u64> {
        self.lock().inbound
    }

    /// What `KV.INFO` reports.
    pub fn info(&self) -> ServerInfo {
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let d = self.lock();
        let serving_reads = match d.role {
            Role::Leader { .. } => self.lease.valid(),
            Role::Follower { .. } => d.position_valid && self.read_lease.valid(),
            Role::Idle => false,
        };
        ServerInfo {
            id: self.id.clone(),
            shard: self.shard.clone(),
            addr: self.addr.clone(),
            cluster_addr: self.cluster_addr.clone(),
            role: d.role.name().to_string(),
            epoch: d.role.epoch(),
            offset: d.log.last_offset(),
            keys: d.store.len() as u64,
            bytes: d.store.used_bytes() as u64,
            digest: format!("{:016x}", d.store.digest()),
            followers: d.followers.connected() as u64,
            isr_followers: d.followers.confirmed().iter().cloned().collect(),
            serving_reads,
            ring_version: d.placement.version,
            inbound: d.inbound.unwrap_or(0),
            tombstones: d.tombstones.len() as u64,
            backlog_bytes: d.log.bytes() as u64,
            max_keys: d.store.limits().max_keys as u64,
            maxmemory: d.store.limits().max_bytes as u64,
            counters: Counters {
                full_syncs_served: load(&s.full_syncs_served),
                partial_syncs_served: load(&s.partial_syncs_served),
                full_syncs_done: load(&s.full_syncs_done),
                partial_syncs_done: load(&s.partial_syncs_done),
                epoch_regressions: load(&s.epoch_regressions),
                replica_timeouts: load(&s.replica_timeouts),
                highest_epoch: self.highest_epoch(),
                keys_moved_in: load(&s.keys_moved_in),
                move_retries: load(&s.move_retries),
                reads_fenced: load(&s.reads_fenced),
                not_owned: load(&s.not_owned),
                peer_auth_failures: load(&s.peer_auth_failures),
                elections_won: load(&s.elections_won),
                expired_keys: d.expired_keys,
                evicted_keys: d.evicted_keys,
            },
            follower_lag: d.followers.lags(d.log.last_offset()),
            commands: self.observer.commands.total_calls(),
            latency: self.observer.commands.latency().0,
            connected_clients: self.clients_connected.load(Ordering::Relaxed),
            moving: self.move_progress(),
        }
    }
}
