//! The gate's RESP front: redis-cli, redis-benchmark and Redis client libraries talk to the
//! cluster through it.
//!
//! ```text
//! client ─RESP─▶ Session::start (parse, look up, check arity)
//!                  ├─ local      (PING, HELLO, COMMAND, CLIENT, INFO, ...)
//!                  ├─ forwarded  (the key's shard; the request's own bytes, not re-encoded)
//!                  └─ fanned out (MGET, MSET, DEL, EXISTS, UNLINK, DBSIZE: one request per shard)
//!        ◀─RESP─ Pending::finish, in request order
//! ```
//!
//! A client's pipeline is queued on the backend connections as a whole before any reply is
//! awaited, so pipelining holds end to end; replies are written in order, with one write per
//! batch.
//!
//! - [`command`]: the command table (names, arity, how each is served).
//! - [`local`]: commands the gate answers itself.
//! - [`clients`]: the connected clients (`CLIENT LIST`, `CLIENT KILL`).
//! - [`fanout`]: multi-key commands split by shard.
//! - [`every`]: commands about the whole keyspace (FLUSHALL, KEYS, SCAN, RANDOMKEY).
//! - `sort`: SORT with `BY`/`GET` patterns naming keys on any shard.

pub use kv_client::registry as clients;
pub mod command;
pub mod every;
pub mod fanout;
pub mod local;
mod pubsub;
mod sort;
mod transaction;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kv_proto::commands::CommandInfo;
use kv_proto::{Frame, Limits, Protocol, Request, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use crate::deadline::ReplyTimer;
use crate::forward::{Access, ForwardError, Forwarder, InFlight};
use crate::routing::Target;
use command::Kind;
use kv_peer::command::SCRIPT_REROUTE as REROUTE;

/// Most requests taken from one read before their replies are awaited: bounds what one
/// connection holds in flight, whatever the pipeline depth.
const MAX_BATCH: usize = 1024;
/// Replies buffered beyond this are written out mid-batch.
const FLUSH_AT: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// What every RESP connection shares.
pub struct RespState {
    pub forwarder: Forwarder,
    pub monitor: Arc<crate::topology::Monitor>,
    pub limits: Limits,
    /// `--max-key-len`, when it is below the parser's own bound.
    pub key_limit: Option<usize>,
    /// `--protected-mode`: refuse non-loopback clients while the default user is open.
    pub protected_mode: bool,
    /// `--timeout`: a silent client is closed after this (subscribers exempt).
    pub idle_timeout: Option<Duration>,
    pub started: Instant,
    pub http_addr: String,
    pub resp_addr: String,
    pub stats: Stats,
    /// Per-command figures, the slow log and the latency monitor (`INFO commandstats`,
    /// `SLOWLOG`, `LATENCY`, `/metrics`): a call's time is from its arrival at the gate to
    /// its reply (the shard's round trip included).
    pub observer: kv_metrics::Observer,
    /// Users and what each may do (`AUTH`, `ACL`), checked before every command.
    pub acl: Arc<kv_acl::Acl>,
    /// The cluster's users, where `ACL SETUSER` and `DELUSER` store their changes.
    pub users_store: kv_acl::store::Store,
    pub acl_log: kv_acl::command::Log,
    /// `--aclfile`: where `ACL SAVE` and `ACL LOAD` keep the users.
    pub acl_file: Option<std::path::PathBuf>,
    /// `CONFIG GET/SET` parameters.
    pub config: kv_proto::settings::Settings,
    pub clients: clients::Clients,
    /// Pub/sub: this gate's subscribers, and its subscriptions at the channels' homes.
    pub pubsub: crate::pubsub::Links,
}

/// Counters for INFO.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub connected: AtomicUsize,
    /// Of them, on the TLS port.
    pub connected_tls: AtomicUsize,
    pub commands: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub next_client_id: AtomicU64,
    /// Clients waiting in a blocking pop (`INFO clients`' `blocked_clients`).
    pub blocked: AtomicUsize,
}

/// Accepts RESP clients until `shutdown`; at most `max_clients` at once (others are told so
/// and closed).
pub async fn accept_loop(
    state: Arc<RespState>,
    listener: TcpListener,
    slots: Arc<Semaphore>,
    tls: Option<Arc<kv_tls::Tls>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        state.stats.connections_received.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut stream = match kv_tls::listen::accept(tls.as_deref(), stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
            };
            let open = state.acl.users().default_is_open();
            if kv_config::protected_mode_refuses(state.protected_mode, peer.ip(), open) {
                let _ = stream.write_all(kv_config::PROTECTED_MODE_DENIED).await;
                state.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                return;
            }
            state.stats.connected.fetch_add(1, Ordering::Relaxed);
            let tls = stream.is_tls();
            if tls {
                state.stats.connected_tls.fetch_add(1, Ordering::Relaxed);
            }
            let laddr = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let session = Session::new(&state, peer.to_string(), laddr);
            let id = session.id;
            let mut session = session;
            session.serve(stream, shutdown).await;
            // A watch this client left must not stay on the leader's pooled connection, nor
            // its subscriptions on the gate's links.
            session.unwatch().await;
            if session.pubsub.take().is_some() {
                state.pubsub.changed();
            }
            state.clients.remove(id);
            state.stats.connected.fetch_sub(1, Ordering::Relaxed);
            if tls {
                state.stats.connected_tls.fetch_sub(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
}

/// A reply being produced, finished in request order.
pub enum Pending {
    Now(Frame),
    Forward(InFlight),
    /// (Boxed, as are the other large and rare variants: every request's `Pending` is
    /// moved several times, and a smaller one is cheaper to move.)
    Fanout(Box<fanout::Fanout>),
    /// `INFO` with these section names (lower-case; none: the default sections).
    Info(Vec<String>),
    DbSize(usize),
    Every(every::EveryFlight),
    /// A transaction for one shard: `MULTI`, its commands and `EXEC`, encoded, and how many
    /// replies come back (`EXEC`'s is the last).
    Transaction(Target, bytes::Bytes, usize, usize),
    /// PFCOUNT over shards: each key's value, to merge.
    PfCount(Vec<InFlight>),
    /// A `CONFIG SET` of parameters every server applies: passed on to each of them.
    ConfigSet(Vec<bytes::Bytes>),
    /// Sent to every server (leaders and followers); the first one's reply once all took it.
    EveryServer(Vec<bytes::Bytes>),
    /// Sent to one target's leader, retried while no server may have applied it.
    Execute(crate::routing::Target, bytes::Bytes),
    /// A script that declared no keys: run again on the shard of the key it touched, when
    /// the server it ran on answers that it touched a key served elsewhere before writing.
    Script(Box<(InFlight, bytes::Bytes, Access)>),
    /// `ACL SETUSER`, `DELUSER` or `LOAD`: applied to the cluster's stored users.
    Acl(Vec<bytes::Bytes>, Arc<kv_acl::User>),
    /// A SORT the gate runs itself (patterns, or a destination on another shard).
    Sort(Box<sort::GateSort>),
    /// A blocking pop: its first key, its arguments, where its timeout is, the client's
    /// protocol.
    Blocking(bytes::Bytes, Vec<bytes::Bytes>, usize, Protocol),
}

/// Finishes a blocking command while watching the client: `None` when it disconnected.
/// What it sends meanwhile is buffered (up to a bound, past which it is no longer read).
/// `CLIENT UNBLOCK` ends the wait (as a timeout, or with an error).
async fn finish_watching(
    p: Pending,
    state: &RespState,
    client: &clients::ClientInfo,
    stream: &mut kv_tls::Stream,
    input: &mut BytesMut,
) -> Option<Frame> {
    let timed_out = match &p {
        Pending::Blocking(_, args, ..)
            if [&b"BLMOVE"[..], b"BRPOPLPUSH"]
                .iter()
                .any(|n| args[0].eq_ignore_ascii_case(n)) =>
        {
            Frame::Null
        }
        _ => Frame::NullArray,
    };
    struct Waiting<'a>(&'a clients::ClientInfo);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.blocked.store(false, Ordering::Release);
        }
    }
    client.blocked.store(true, Ordering::Release);
    let _waiting = Waiting(client);
    let mut timer = ReplyTimer::default();
    let reply = p.finish(state, &mut timer);
    tokio::pin!(reply);
    loop {
        let watch = input.len() < 1 << 20;
        tokio::select! {
            f = &mut reply => return Some(f),
            _ = client.unblock.notified() => {
                return Some(if client.unblock_error.load(Ordering::Acquire) {
                    Frame::error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
                } else {
                    timed_out
                });
            }
            r = stream.read_buf(input), if watch => match r {
                Ok(n) if n > 0 => {}
                _ => return None,
            },
        }
    }
}

/// A blocking pop: its keys must share a shard (as [`Session::same_shard`] checks); it is
/// served in its turn, on a connection of its own ([`crate::forward::Forwarder::execute_blocking`]).
fn blocking(spec: &command::Spec, req: Request, routing: &crate::routing::Routing, proto: Protocol) -> Pending {
    let keys: Vec<&bytes::Bytes> = spec.info.keys(req.args()).collect();
    let Some(first) = keys.first().map(|k| (*k).clone()) else {
        return Pending::Now(Frame::error("ERR numkeys should be greater than 0"));
    };
    let owner = routing.owner(&first);
    if keys.iter().any(|k| routing.owner(k) != owner) {
        return Pending::Now(Frame::error("CROSSSLOT Keys in request don't hash to the same slot"));
    }
    let timeout_at = if spec.info.numkeys_at != 0 { 1 } else { req.len() - 1 };
    Pending::Blocking(first, req.args().to_vec(), timeout_at, proto)
}

/// The error reply for a command the cluster could not serve.
pub fn forward_error(e: &ForwardError) -> Frame {
    match e {
        ForwardError::Unavailable(m) => Frame::error(format!("CLUSTERDOWN {m}")),
        ForwardError::OutcomeUnknown(m) => Frame::error(format!("ERR the outcome of the write is unknown: {m}")),
    }
}

impl Pending {
    /// The reply; `timer` bounds the wait for a forwarded command's (the connection's own).
    async fn finish(self, state: &RespState, timer: &mut ReplyTimer) -> Frame {
        match self {
            Pending::Now(f) => f,
            Pending::Acl(args, me) => {
                let storage = local::acl_storage(state);
                let command = |acl: &kv_acl::Acl| kv_acl::command::acl(acl, &state.acl_log, &*storage, &me, &args);
                state.users_store.change(&state.acl, command).await
            }
            Pending::Sort(s) => s.finish(&state.forwarder).await,
            Pending::Script(script) => {
                let (flight, request, access) = *script;
                let fwd = &state.forwarder;
                let mut reply = flight.finish(fwd).await;
                // Twice at most: a script touching keys on two shards cannot run anywhere.
                for _ in 0..2 {
                    let key = match &reply {
                        Ok(Frame::Error(e)) => match e.strip_prefix(REROUTE.as_bytes()) {
                            Some(key) => bytes::Bytes::copy_from_slice(key),
                            None => break,
                        },
                        _ => break,
                    };
                    reply = fwd.execute(&Target::Key(key), access, request.clone()).await;
                }
                match reply {
                    Ok(Frame::Error(e)) if e.starts_with(REROUTE.as_bytes()) => {
                        Frame::error("ERR Script attempted to access a non local key in a cluster node")
                    }
                    Ok(f) => f,
                    Err(e) => forward_error(&e),
                }
            }
            Pending::Forward(f) => f
                .finish_within(&state.forwarder, timer)
                .await
                .unwrap_or_else(|e| forward_error(&e)),
            Pending::Fanout(f) => f.finish(&state.forwarder).await,
            Pending::Info(sections) => local::info(state, &sections).await,
            Pending::DbSize(affinity) => fanout::dbsize(&state.forwarder, affinity).await,
            Pending::Every(e) => e.finish(&state.forwarder).await,
            Pending::ConfigSet(args) => state.forwarder.to_every_server(&args).await,
            Pending::EveryServer(args) => state.forwarder.to_every_server(&args).await,
            Pending::Execute(target, bytes) => state
                .forwarder
                .execute(&target, crate::forward::Access::Write, bytes)
                .await
                .unwrap_or_else(|e| forward_error(&e)),
            Pending::Transaction(target, batch, n, affinity) => state
                .forwarder
                .execute_transaction(&target, batch, n, affinity)
                .await
                .unwrap_or_else(|e| forward_error(&e)),
            Pending::PfCount(flights) => {
                let mut regs = vec![0u8; kv_store::hll::REGISTERS];
                for f in flights {
                    match f.finish(&state.forwarder).await {
                        Ok(Frame::Bulk(v)) => match kv_store::hll::registers(&v) {
                            Ok(r) => kv_store::hll::merge(&mut regs, &r),
                            Err(e) => return Frame::error(e.message()),
                        },
                        Ok(Frame::Null) => {}
                        Ok(other) if other.as_error().is_some() => return other,
                        Ok(other) => return Frame::error(format!("ERR unexpected reply {other:?}")),
                        Err(e) => return forward_error(&e),
                    }
                }
                Frame::Integer(kv_store::hll::count(&regs) as i64)
            }
            Pending::Blocking(key, args, at, proto) => {
                // Counted while it waits, and uncounted however the wait ends (a client
                // that leaves drops this future).
                struct Blocked<'a>(&'a AtomicUsize);
                impl Drop for Blocked<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                state.stats.blocked.fetch_add(1, Ordering::Relaxed);
                let _blocked = Blocked(&state.stats.blocked);
                state
                    .forwarder
                    .execute_blocking(&key, args, at, proto == Protocol::Resp3)
                    .await
                    .unwrap_or_else(|e| forward_error(&e))
            }
        }
    }
}

/// One client connection.
pub struct Session<'a> {
    pub state: &'a RespState,
    pub id: u64,
    /// This client in the registry (`CLIENT LIST`); holds its name.
    pub client: Arc<clients::ClientInfo>,
    /// RESP2 until the client sends `HELLO 3`.
    pub proto: Protocol,
    quit: bool,
    /// The last command started, for `CLIENT LIST` (recorded once per batch).
    last_cmd: &'static str,
    /// The last command looked up by name (a pipeline usually repeats one).
    last_found: kv_proto::commands::LastFound<command::Spec>,
    /// Single-key requests of the current batch, gathered per server connection.
    batcher: crate::forward::Batcher,
    /// Commands queued after `MULTI`.
    multi: Option<transaction::Multi>,
    /// This client's `WATCH`.
    watching: Option<transaction::Watching>,
    /// Its channels and patterns, from its first subscribe.
    pubsub: Option<kv_pubsub::Client>,
    /// `CLIENT REPLY`.
    replies: Replies,
    /// Who this client is (`AUTH`), re-read when the users change.
    pub user: kv_acl::Session,
}

/// What [`Session::start_now`] hands back when it cannot queue a request itself.
enum Fallback {
    /// Not a request it takes: for [`Session::start`].
    Start(Request),
    /// A single-key request its batch could not take (no server for the key yet, or the key
    /// is moving): forwarded by the slower path with the bytes already made, so that a
    /// request logged under an id (`KV.TRACE`) reaches its server under that id.
    Forward(Target, Access, bytes::Bytes),
}

/// Which replies a client gets (`CLIENT REPLY ON | OFF | SKIP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replies {
    On,
    Off,
    SkipNext,
}

impl<'a> Session<'a> {
    fn new(state: &'a RespState, addr: String, laddr: String) -> Session<'a> {
        let id = state.stats.next_client_id.fetch_add(1, Ordering::Relaxed) + 1;
        Session {
            state,
            id,
            client: state.clients.add(id, addr, laddr),
            proto: Protocol::Resp2,
            quit: false,
            last_cmd: "",
            last_found: Default::default(),
            batcher: Default::default(),
            multi: None,
            watching: None,
            pubsub: None,
            replies: Replies::On,
            user: kv_acl::Session::new(&state.acl),
        }
    }

    async fn serve(&mut self, mut stream: kv_tls::Stream, mut shutdown: watch::Receiver<bool>) {
        let mut parser = RequestParser::new(self.state.limits);
        let mut input = BytesMut::with_capacity(READ_CHUNK);
        let mut output = BytesMut::with_capacity(READ_CHUNK);
        // Each request's pending reply, its protocol, whether it is silenced, and the
        // command it counts for in `INFO commandstats` (none when not run: queued, refused)
        // with its bytes, for the slow log.
        type Counted = Option<(&'static CommandInfo, Option<bytes::Bytes>)>;
        let mut batch: Vec<(Pending, Protocol, bool, Counted)> = Vec::new();
        let mut counted = kv_metrics::Batch::default();
        // Bounds the waits for this connection's replies, one after the other.
        let mut timer = ReplyTimer::default();
        let who = |client: &kv_client::registry::ClientInfo| kv_metrics::Client {
            addr: client.addr.clone(),
            name: client.name().unwrap_or_default(),
        };
        // The gate's shutdown and `CLIENT KILL`, each waited for across the whole connection:
        // one registration rather than one per read (callgrind: registering and dropping the
        // two waits per read was about 500 instructions of a `-P 1` request), and polled only
        // when one of them fired (`WhenWoken`).
        let client = Arc::clone(&self.client);
        let ended = kv_client::WhenWoken::new(async move {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                _ = client.killed.notified() => {}
            }
        });
        tokio::pin!(ended);
        loop {
            let mut broken = false;
            loop {
                let mut cut = false;
                // When this batch arrived: its calls' time runs from here to its last reply
                // (shared among them: `kv_metrics::cmdstats`).
                let mut arrived = Instant::now();
                while batch.len() < MAX_BATCH && !self.quit {
                    match parser.parse(&mut input) {
                        Ok(Some(req)) => {
                            // Each reply in the protocol in force when its request arrived
                            // (a `HELLO` answers in the protocol it switches to).
                            let silent = self.silenced(&req);
                            let spec = self.last_found.get(req.name(), command::lookup);
                            let runs = spec.filter(|s| s.arity_ok(req.len()));
                            let refusal = self.refuse(&req, runs);
                            // Refused before running: `rejected_calls`, and a transaction
                            // being queued is discarded at EXEC.
                            let refused = refusal.as_ref().is_some_and(|(_, rejected)| *rejected);
                            if refused && let Some(m) = self.multi.as_mut() {
                                m.abort();
                            }
                            if refused && let Some(s) = runs {
                                let rejected = kv_metrics::cmdstats::Outcome::Rejected;
                                self.state.observer.commands.record(s.info, Duration::ZERO, rejected);
                            }
                            let raw = self.state.observer.slowlog.threshold().map(|_| req.raw().clone());
                            let runs = runs.filter(|_| !refused);
                            let pending = match refusal {
                                Some((refusal, _)) => Pending::Now(refusal),
                                None => match self.start_now(req, spec) {
                                    Ok(pending) => pending,
                                    Err(Fallback::Start(req)) => self.start(req, spec).await,
                                    Err(Fallback::Forward(target, access, bytes)) => {
                                        self.forward_bytes(target, access, bytes).await
                                    }
                                },
                            };
                            // Queued by MULTI: counted as part of EXEC.
                            let queued = self.multi.is_some() && runs.is_some_and(|s| s.name != "multi");
                            let counted = runs.filter(|_| !queued).map(|s| (s.info, raw));
                            // A command the gate runs in steps is done before any later
                            // request is sent (one could read what it writes).
                            cut = matches!(pending, Pending::Sort(_));
                            batch.push((pending, self.proto, silent, counted));
                            if cut {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            debug!(error = %e, "closing a RESP client that broke the protocol");
                            batch.push((Pending::Now(Frame::error(format!("ERR {e}"))), self.proto, false, None));
                            broken = true;
                            break;
                        }
                    }
                }
                let more = batch.len() == MAX_BATCH || cut;
                self.client.touch(arrived, self.last_cmd);
                self.state
                    .stats
                    .commands
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let affinity = self.affinity();
                self.batcher.flush(affinity).await;
                for (p, proto, silent, info) in batch.drain(..) {
                    let blocking = matches!(p, Pending::Blocking(..));
                    if blocking {
                        // The calls before it are timed without its wait.
                        counted.record(&self.state.observer, arrived.elapsed(), || who(&self.client));
                    }
                    let frame = if blocking {
                        // A client that leaves while it waits must not have an element
                        // popped for it: dropping the wait closes the server connection,
                        // which stops the server's wait before it pops.
                        match finish_watching(p, self.state, &self.client, &mut stream, &mut input).await {
                            Some(f) => f,
                            None => return,
                        }
                    } else {
                        match p {
                            // A reply already in needs no future (`InFlight::ready`).
                            Pending::Forward(f) => match f.ready() {
                                Ok(frame) => frame,
                                Err(f) => Pending::Forward(f).finish(self.state, &mut timer).await,
                            },
                            p => p.finish(self.state, &mut timer).await,
                        }
                    };
                    if blocking {
                        arrived = Instant::now();
                    }
                    if let Some(text) = frame.as_error() {
                        self.state.observer.errors.record(text);
                    }
                    if let Some((info, raw)) = info {
                        use kv_metrics::cmdstats::Outcome;
                        let outcome = if blocking {
                            Outcome::Blocked
                        } else {
                            Outcome::Ran {
                                failed: frame.as_error().is_some(),
                            }
                        };
                        counted.push(info, outcome, None, raw);
                    }
                    if !silent {
                        frame.encode_as(&mut output, proto);
                    }
                    if output.len() >= FLUSH_AT {
                        if stream.write_all(&output).await.is_err() {
                            return;
                        }
                        output.clear();
                    }
                }
                counted.record(&self.state.observer, arrived.elapsed(), || who(&self.client));
                if !more || broken || self.quit {
                    break;
                }
            }
            if !output.is_empty() {
                if stream.write_all(&output).await.is_err() {
                    return;
                }
                output.clear();
            }
            if broken || self.quit {
                return;
            }
            if input.capacity() - input.len() < READ_CHUNK / 4 {
                input.reserve(READ_CHUNK);
            }
            let inbox = self.pubsub.as_mut().map(|c| &mut c.inbox);
            // `--timeout` (a subscriber waits for messages, not commands: exempt).
            let idle = match (self.state.idle_timeout, &inbox) {
                (Some(t), None) => Some(t),
                _ => None,
            };
            tokio::select! {
                // In this order, with no random start (`select!` draws one per call
                // otherwise): the two ends are registered once and cheap to poll.
                biased;
                _ = &mut ended => return,
                _ = async {
                    match idle {
                        Some(t) => tokio::time::sleep(t).await,
                        None => std::future::pending().await,
                    }
                } => return,
                r = stream.read_buf(&mut input) => match r {
                    Ok(n) if n > 0 => {}
                    _ => return,
                },
                // A subscriber's messages, written as they come.
                m = async {
                    match inbox {
                        Some(i) => i.recv().await,
                        None => std::future::pending().await,
                    }
                } => match m {
                    Some(m) => {
                        m.encode(&mut output, self.proto);
                        let inbox = &mut self.pubsub.as_mut().expect("subscribed").inbox;
                        while output.len() < FLUSH_AT && let Some(m) = inbox.try_recv() {
                            m.encode(&mut output, self.proto);
                        }
                        if stream.write_all(&output).await.is_err() {
                            return;
                        }
                        output.clear();
                    }
                    // Dropped past the output limit (client-output-buffer-limit pubsub).
                    None => return,
                },
            }
        }
    }

    /// The answer to a request that does not run as usual: `NOAUTH` before `AUTH`, `NOPERM`
    /// for a command, key or channel the user may not use, a key over `--max-key-len`
    /// (these are rejected: `true`), and `AUTH`'s own reply (`false`). (Unknown commands and
    /// wrong arity, `spec` `None`, are refused later, as Redis refuses them first.)
    fn refuse(&mut self, req: &Request, spec: Option<&'static command::Spec>) -> Option<(Frame, bool)> {
        let spec = spec?;
        // A container command's subcommand, checked with the arity (before the ACL), as
        // Redis checks it.
        if let Some(e) = kv_proto::commands::subcommand_error(spec.info, req.args()) {
            return Some((Frame::error(e), true));
        }
        let (state, multi) = (self.state, self.multi.is_some());
        match self.user.admit(
            &state.acl,
            &state.acl_log,
            spec.info,
            req.args(),
            multi,
            &self.client.addr,
        ) {
            kv_acl::Admit::Pass => state
                .key_limit
                .and_then(|max| spec.info.key_too_long(req.args(), max))
                .map(|e| (Frame::error(e), true)),
            kv_acl::Admit::Reply(f) => Some((f, false)),
            kv_acl::Admit::Refused(f) => Some((f, true)),
            // Its user was deleted: the connection closes, as Redis closes it.
            kv_acl::Admit::Close(f) => {
                self.quit = true;
                Some((f, false))
            }
        }
    }

    /// Whether `req`'s reply is left out (`CLIENT REPLY OFF`, or the command after `CLIENT
    /// REPLY SKIP`), updating the mode. Subscription replies are always sent, as Redis
    /// sends them.
    fn silenced(&mut self, req: &Request) -> bool {
        let a = req.args();
        if a.len() == 3 && a[0].eq_ignore_ascii_case(b"CLIENT") && a[1].eq_ignore_ascii_case(b"REPLY") {
            let mode = &a[2];
            return if mode.eq_ignore_ascii_case(b"ON") {
                self.replies = Replies::On;
                false
            } else if mode.eq_ignore_ascii_case(b"OFF") {
                self.replies = Replies::Off;
                true
            } else if mode.eq_ignore_ascii_case(b"SKIP") {
                if self.replies == Replies::On {
                    self.replies = Replies::SkipNext;
                }
                true
            } else {
                false
            };
        }
        if kv_pubsub::Op::of(req.name()).is_some() {
            return false;
        }
        match self.replies {
            Replies::On => false,
            Replies::Off => true,
            Replies::SkipNext => {
                self.replies = Replies::On;
                true
            }
        }
    }

    /// [`Session::start`] for the commonest request, with no future built: a single-key
    /// command, outside a transaction and subscriptions, gathered into this batch for its
    /// key's server (profiled at -P 16: the chain of `async fn`s from `start` to the batch
    /// was about 450 instructions per request). Anything else is handed back for
    /// [`Session::start`], untouched.
    fn start_now(&mut self, req: Request, spec: Option<&'static command::Spec>) -> Result<Pending, Fallback> {
        let Some(spec) = spec else {
            return Err(Fallback::Start(req));
        };
        let Kind::Key(access) = spec.kind else {
            return Err(Fallback::Start(req));
        };
        let subscribed = self.pubsub.as_ref().is_some_and(kv_pubsub::Client::active);
        if self.multi.is_some() || subscribed || !spec.arity_ok(req.len()) {
            return Err(Fallback::Start(req));
        }
        let bytes = self.request_bytes(&req);
        let key = Target::Key(req.args()[1].clone());
        self.last_cmd = spec.name;
        match self.state.forwarder.batch(&mut self.batcher, key, access, bytes) {
            Ok(flight) => Ok(Pending::Forward(flight)),
            Err((target, bytes)) => Err(Fallback::Forward(target, access, bytes)),
        }
    }

    /// Starts serving one request (`spec`: its command, looked up by the caller): everything
    /// up to queuing it on a server.
    async fn start(&mut self, req: Request, spec: Option<&'static command::Spec>) -> Pending {
        if self.multi.is_none()
            && let Some(p) = self.pubsub(&req).await
        {
            return p;
        }
        if let Some(p) = self.transaction(&req).await {
            if matches!(p, Pending::Transaction(..)) && !self.batcher.is_empty() {
                let affinity = self.affinity();
                self.batcher.flush(affinity).await;
            }
            return p;
        }
        let Some(spec) = spec else {
            return Pending::Now(unknown(&req));
        };
        if !spec.arity_ok(req.len()) {
            let rejected = kv_metrics::cmdstats::Outcome::Rejected;
            self.state.observer.commands.record(spec.info, Duration::ZERO, rejected);
            return Pending::Now(Frame::error(format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            )));
        }
        self.last_cmd = spec.name;
        // Whatever queues requests itself comes after the batch gathered so far.
        if !matches!(spec.kind, Kind::Key(_) | Kind::Local) && !self.batcher.is_empty() {
            let affinity = self.affinity();
            self.batcher.flush(affinity).await;
        }
        let fwd = &self.state.forwarder;
        match spec.kind {
            Kind::Local => local::apply(self, spec, &req),
            Kind::Key(access) => self.forward(req, access).await,
            Kind::MGet => fanout::mget(fwd, &req, self.affinity()).await,
            Kind::MSet => fanout::mset(fwd, &req, self.affinity()).await,
            Kind::SumKeys(access) => fanout::sum(fwd, &req, access, self.affinity()).await,
            Kind::DbSize => Pending::DbSize(self.affinity()),
            Kind::KeyAt(i, access) => match req.args().get(i) {
                Some(key) => {
                    let key = key.clone();
                    self.forward_key(req, key, access).await
                }
                // No key (`OBJECT HELP`): any shard answers.
                None => match self.state.forwarder.routing().shard_names().first() {
                    Some(shard) => {
                        let target = Target::Shard(shard.clone());
                        let bytes = kv_proto::write::command(req.args().iter().map(|a| &a[..]));
                        Pending::Forward(fwd.start(target, access, bytes, self.affinity()).await)
                    }
                    None => Pending::Now(Frame::error("CLUSTERDOWN no shard is registered in the cluster yet")),
                },
            },
            Kind::SameShard(access) => self.same_shard(spec, req, access).await,
            Kind::Sort => self.sort(req).await,
            Kind::Blocking => blocking(spec, req, &self.state.forwarder.routing(), self.proto),
            Kind::PfCount => {
                let routing = fwd.routing();
                let keys = &req.args()[1..];
                let owner = routing.owner(&keys[0]);
                let one_shard = keys
                    .iter()
                    .all(|k| routing.owner(k) == owner && routing.moving(k).is_none());
                if one_shard {
                    let key = keys[0].clone();
                    return self.forward_key(req, key, Access::Read).await;
                }
                let mut flights = Vec::with_capacity(keys.len());
                for k in keys {
                    let get = kv_proto::write::command([&b"GET"[..], &k[..]]);
                    flights.push(
                        fwd.start(Target::Key(k.clone()), Access::Read, get, self.affinity())
                            .await,
                    );
                }
                Pending::PfCount(flights)
            }
            Kind::EveryShard(every) => match every::start(fwd, every, &req, self.affinity()).await {
                Ok(flight) => Pending::Every(flight),
                Err(frame) => Pending::Now(frame),
            },
        }
    }

    /// A command whose keys must share a shard: forwarded whole when they do (atomic
    /// there), `CROSSSLOT` when they do not, and `TRYAGAIN` while one of them is moving
    /// between shards, as Redis Cluster answers multi-key commands during a slot migration.
    async fn same_shard(&mut self, spec: &command::Spec, req: Request, access: Access) -> Pending {
        let routing = self.state.forwarder.routing();
        let keys: Vec<&bytes::Bytes> = spec.info.keys(req.args()).collect();
        // No key (`ZUNION 0 …`): any shard answers with the command's own error.
        let first = keys.first().map_or_else(|| req.args()[1].clone(), |k| (*k).clone());
        if keys.iter().any(|k| routing.moving(k).is_some()) {
            return Pending::Now(Frame::error("TRYAGAIN Multiple keys request during rehashing of slot"));
        }
        let owner = routing.owner(&first);
        if keys.iter().any(|k| routing.owner(k) != owner) {
            return Pending::Now(Frame::error("CROSSSLOT Keys in request don't hash to the same slot"));
        }
        if keys.is_empty()
            && matches!(
                spec.name,
                "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
            )
        {
            let bytes = self.request_bytes(&req);
            let flight = self
                .state
                .forwarder
                .start(Target::Key(first), access, bytes.clone(), self.affinity())
                .await;
            return Pending::Script(Box::new((flight, bytes, access)));
        }
        self.forward_key(req, first, access).await
    }

    /// The request as a server is sent it: a multibulk request as the bytes it arrived in,
    /// an inline one re-encoded (a server may not accept it inline); a restricted user's
    /// script wrapped in `KV.AS`, so the server checks each `redis.call` against the user's
    /// rules; a RESP3 client's wrapped, so the server replies in RESP3; with a request id
    /// (`KV.TRACE`) while the `kvstore::request` log target is enabled.
    fn request_bytes(&self, req: &Request) -> bytes::Bytes {
        let mut bytes = if req.raw().first() == Some(&b'*') {
            req.raw().clone()
        } else {
            kv_proto::write::command(req.args().iter().map(|a| &a[..]))
        };
        if !self.user.user.unrestricted()
            && command::lookup(req.name()).is_some_and(|s| {
                matches!(
                    s.name,
                    "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
                )
            })
            && let Some(wrapped) = kv_peer::command::wrap_as_user(&bytes, &self.user.user.describe())
        {
            bytes = wrapped;
        }
        if self.proto == Protocol::Resp3
            && let Some(wrapped) = kv_peer::command::wrap_resp3(&bytes)
        {
            bytes = wrapped;
        }
        // Request ids, only while someone reads them: one check of the log filter otherwise.
        if tracing::enabled!(target: "kvstore::request", tracing::Level::DEBUG) {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let id = format!("{:x}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
            tracing::debug!(
                target: "kvstore::request",
                request = %id,
                client = self.id,
                command = %String::from_utf8_lossy(req.name()),
                "forwarding"
            );
            if let Some(wrapped) = kv_peer::command::wrap_traced(&bytes, &id) {
                bytes = wrapped;
            }
        }
        bytes
    }

    async fn forward(&mut self, req: Request, access: Access) -> Pending {
        let key = req.args()[1].clone();
        self.forward_key(req, key, access).await
    }

    async fn forward_key(&mut self, req: Request, key: bytes::Bytes, access: Access) -> Pending {
        let bytes = self.request_bytes(&req);
        self.forward_bytes(Target::Key(key), access, bytes).await
    }

    /// Forwards a request already made into the bytes a server is sent.
    async fn forward_bytes(&mut self, target: Target, access: Access, bytes: bytes::Bytes) -> Pending {
        let affinity = self.affinity();
        Pending::Forward(
            self.state
                .forwarder
                .start_batched(&mut self.batcher, target, access, bytes, affinity)
                .await,
        )
    }

    /// Keeps this client's requests on one backend connection per server.
    fn affinity(&self) -> usize {
        self.id as usize
    }
}

fn unknown(req: &Request) -> Frame {
    let args: String = req.args()[1..]
        .iter()
        .take(3)
        .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
        .collect();
    Frame::error(format!(
        "ERR unknown command '{}', with args beginning with: {args}",
        String::from_utf8_lossy(req.name())
    ))
}
