//! [`Forwarder`]: sends one command to the server that owns its key (or to a named shard),
//! and rides out failovers.
//!
//! Two paths:
//! - **Fast**: [`Forwarder::start`] queues the command on a pooled, pipelined connection and
//!   returns an [`InFlight`] at once, so a client's whole pipeline is queued before any reply
//!   is awaited; [`InFlight::finish`] awaits the reply.
//! - **Retrying** ([`Forwarder::execute`]), taken whenever the fast path did not produce an
//!   answer: the command is retried — after the routing changed, or after a short backoff —
//!   until `--retry-timeout-ms` runs out, when it certainly was not applied (never sent, or
//!   refused with `NOTLEADER`/`TRYAGAIN`), or when it is a read. A write whose outcome is
//!   unknown (sent, then no reply) is reported as such, never sent again.
//!
//!   Not even a plain `SET k v`, though applying it twice in a row leaves what once does: its
//!   first attempt may have been applied (and replicated, and read) before the leader died,
//!   and another client's write may come between that and a second attempt on the new leader,
//!   which would then bring back a value already overwritten. The partition tests' checker
//!   caught exactly that (a gate cut from ZooKeeper re-sent a `SET` 2.3 s after its first
//!   attempt, and a read saw the old value again). Redis Cluster clients see the same thing
//!   as a connection error.
//!
//! During a ring change a key that is moving ([`Routing::moving`]) takes a third path
//! ([`Forwarder::execute_moving`]): reads go to the new owner and fall back to the old one on
//! a miss; a write first pulls the key's current value to the new owner (a no-op if the new
//! owner already has the key or deleted it), runs there, then drops the old copy, so a later
//! fallback read cannot see a stale value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kv_client::{BatchReply, CallError, Reply, Shape};
use kv_peer::command::parse_fetch_reply;
use kv_peer::{ErrorCode, MigrateItem, PeerCommand};
use kv_proto::Frame;
use tokio::sync::watch;
use tracing::debug;

use crate::deadline::ReplyTimer;
use crate::routing::{Routing, Target};

/// What a command does, which decides where it goes and whether it may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn is_write(self) -> bool {
        matches!(self, Access::Write)
    }

    /// Sent again after an unknown outcome: only reads (see the module documentation).
    fn repeatable(self) -> bool {
        matches!(self, Access::Read)
    }
}

/// Why a command got no reply from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// Nothing could serve the key within the retry window (no shard, no leader, servers
    /// unreachable). Nothing was applied. Retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The write reached a server that failed before answering; it may or may not have been
    /// applied, and it is not safe to repeat blindly.
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(String),
}

/// See the module documentation.
#[derive(Clone)]
pub struct Forwarder {
    routing: watch::Receiver<Arc<Routing>>,
    retry_timeout: Duration,
    backend_timeout: Duration,
    stats: Arc<ForwardStats>,
}

/// How often forwarding had to try again (for `/metrics`).
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Requests sent again (after a redirection, a failed or missing reply, or no leader).
    pub retries: std::sync::atomic::AtomicU64,
    /// Replies that said "not here" (`MOVED`, `NOTLEADER`, `TRYAGAIN` …).
    pub redirects: std::sync::atomic::AtomicU64,
}

impl ForwardStats {
    fn retried(&self) {
        self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn redirected(&self) {
        self.redirects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Server errors that mean "not applied here, try where the current routing says". `MOVED`
/// (a key another shard serves) is retried only for a key target, which the next routing
/// sends elsewhere; a command sent to a named shard gets the reply back (a fan-out then
/// redoes it key by key).
fn redirected(frame: &Frame, target: &Target) -> bool {
    match ErrorCode::of(frame) {
        Some(ErrorCode::Moved) => !matches!(target, Target::Shard(_)),
        Some(code) => code.retry_elsewhere(),
        None => false,
    }
}

/// A read reply that means "not here": nil, 0 (`EXISTS`, `STRLEN`) or -2 (`TTL`).
fn miss(frame: &Frame) -> bool {
    matches!(frame, Frame::Null | Frame::Integer(0) | Frame::Integer(-2))
}

/// Routed to a shard's leader.
const LEADER: Access = Access::Write;

/// A command queued on a server connection, or already answered.
pub struct InFlight(State);

enum State {
    Done(Result<Frame, ForwardError>),
    Sent {
        reply: Reply,
        target: Target,
        access: Access,
        request: Bytes,
    },
    /// The `index`-th request of a batch ([`Batcher`]), queued when the batch is flushed.
    Batched {
        group: Arc<std::sync::OnceLock<Result<Queued, CallError>>>,
        index: usize,
        target: Target,
        access: Access,
        request: Bytes,
    },
    /// Its reply is in ([`InFlight::ready`] took it) but asks for a retry, or is a failure.
    Arrived {
        reply: Result<Frame, CallError>,
        target: Target,
        access: Access,
        request: Bytes,
    },
}

/// Gathers a client's batch of single-key requests by server connection, so that each
/// connection gets the batch's requests as one message with one reply handle: a channel
/// send, a wake-up and a reply slot per batch instead of per request (profiled at -P 16: the
/// per-request channel work was the largest share of the gate's own time).
///
/// Requests keep their order: within a connection the batch keeps the client's order, and
/// [`Batcher::flush`] runs before anything else of the client is queued (fan-outs, retries)
/// and before any reply is awaited.
#[derive(Default)]
pub struct Batcher {
    groups: Vec<Group>,
    /// Group buffers kept from earlier batches of this client. A buffer handed to a
    /// connection comes back to its whole allocation once the connection has copied it out
    /// ([`BytesMut::reserve`] reclaims a buffer nobody else holds), so a pipelining client
    /// reuses its buffers rather than allocating one per group: a group of 16 `SET`s is
    /// about 2 KiB, past the allocator's per-thread cache, and its `malloc` and `free` were
    /// about 2% of the gate's instructions under `SET -P 16` (callgrind). At most
    /// [`SPARE_BUFFERS`] are kept, each of at most [`SPARE_BUFFER_BYTES`], so an idle
    /// connection holds little.
    spare: Vec<BytesMut>,
}

/// Group buffers a client keeps between batches (one per shard its batches usually touch).
const SPARE_BUFFERS: usize = 4;
/// Larger group buffers are freed rather than kept: at most 16 KiB kept per connection,
/// half of its own input and output buffers. Sixteen pipelined requests of 100-byte
/// values fit; for larger requests an allocation matters less.
const SPARE_BUFFER_BYTES: usize = 4 * 1024;

struct Group {
    pool: Arc<kv_client::Pool>,
    /// The first request as it came (a group of one is queued as a plain request: no copy).
    first: Bytes,
    /// Every request back to back, once there are two or more.
    bytes: BytesMut,
    count: usize,
    reply: Arc<std::sync::OnceLock<Result<Queued, CallError>>>,
}

/// How a group was queued.
enum Queued {
    /// A lone request (a client not pipelining): its own reply, taken by the one waiter.
    One(std::sync::Mutex<Option<Reply>>),
    Batch(BatchReply),
}

impl Batcher {
    /// True when nothing waits to be queued.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Queues every gathered batch on its connection.
    pub async fn flush(&mut self, affinity: usize) {
        for mut g in self.groups.drain(..) {
            // The buffer's allocation (its capacity counts what it holds).
            let allocated = g.bytes.capacity();
            let r = if g.count == 1 {
                g.pool
                    .enqueue(g.first, affinity, Shape::Relayed)
                    .await
                    .map(|r| Queued::One(std::sync::Mutex::new(Some(r))))
            } else {
                let requests = g.bytes.split().freeze();
                g.pool
                    .enqueue_batch(requests, g.count, affinity, Shape::Relayed)
                    .await
                    .map(Queued::Batch)
            };
            if allocated > 0 && allocated <= SPARE_BUFFER_BYTES && self.spare.len() < SPARE_BUFFERS {
                self.spare.push(g.bytes);
            }
            let _ = g.reply.set(r);
        }
    }

    /// A buffer for a new group: a kept one when there is one.
    fn buffer(&mut self) -> BytesMut {
        self.spare.pop().unwrap_or_default()
    }
}

impl InFlight {
    /// An answer known without asking a server.
    pub fn done(r: Result<Frame, ForwardError>) -> InFlight {
        InFlight(State::Done(r))
    }

    /// The command's reply; falls back to the retrying path when the fast path failed.
    pub async fn finish(self, fwd: &Forwarder) -> Result<Frame, ForwardError> {
        self.finish_within(fwd, &mut ReplyTimer::default()).await
    }

    /// The reply when it is already in and final (nothing to retry), as a pipelined
    /// request's usually is by the time its client is served: no future is built for it
    /// (profiled at -P 16: building and polling [`InFlight::finish_within`]'s future was
    /// about 200 instructions per request). Otherwise the flight back, holding whatever
    /// reply was taken, for [`InFlight::finish_within`].
    pub fn ready(self) -> Result<Frame, InFlight> {
        let (reply, target, access, request) = match self.0 {
            State::Batched {
                group,
                index,
                target,
                access,
                request,
            } => match group.get() {
                Some(Ok(Queued::Batch(batch))) if batch.is_done() => (batch.take(index), target, access, request),
                _ => {
                    return Err(InFlight(State::Batched {
                        group,
                        index,
                        target,
                        access,
                        request,
                    }));
                }
            },
            State::Sent {
                mut reply,
                target,
                access,
                request,
            } => match reply.try_take() {
                Some(r) => (r, target, access, request),
                None => {
                    return Err(InFlight(State::Sent {
                        reply,
                        target,
                        access,
                        request,
                    }));
                }
            },
            State::Done(Ok(frame)) => return Ok(frame),
            state => return Err(InFlight(state)),
        };
        match reply {
            Ok(frame) if !redirected(&frame, &target) => Ok(frame),
            reply => Err(InFlight(State::Arrived {
                reply,
                target,
                access,
                request,
            })),
        }
    }

    /// [`InFlight::finish`] with the waits bounded by `timer`: a client connection's own,
    /// which its waits share one after the other.
    pub async fn finish_within(self, fwd: &Forwarder, timer: &mut ReplyTimer) -> Result<Frame, ForwardError> {
        // A reply already here needs no timer (profiled: arming one per request cost a clock
        // read and a timer-wheel entry). Otherwise a timeout abandons this request only: the
        // connection carries other clients' requests, and detects a stalled server itself
        // (`ConnOptions::stall_timeout`).
        let flight = match self.ready() {
            Ok(frame) => return Ok(frame),
            Err(flight) => flight,
        };
        let (arrived, target, access, request) = match flight.0 {
            State::Done(r) => return r,
            State::Sent {
                reply,
                target,
                access,
                request,
            } => (timer.within(fwd.backend_timeout, reply).await, target, access, request),
            State::Batched {
                group,
                index,
                target,
                access,
                request,
            } => {
                let one = match group.get() {
                    Some(Ok(Queued::One(r))) => r.lock().unwrap_or_else(|e| e.into_inner()).take(),
                    _ => None,
                };
                let arrived = match (group.get(), one) {
                    (_, Some(mut reply)) => match reply.try_take() {
                        Some(r) => Ok(r),
                        None => timer.within(fwd.backend_timeout, reply).await,
                    },
                    (Some(Ok(Queued::Batch(batch))), _) => timer
                        .within(fwd.backend_timeout, batch.wait())
                        .await
                        .map(|()| batch.take(index)),
                    (Some(Err(e)), _) => Ok(Err(e.clone())),
                    _ => Ok(Err(CallError::NotSent("the request was never queued".into()))),
                };
                (arrived, target, access, request)
            }
            State::Arrived {
                reply,
                target,
                access,
                request,
            } => (Ok(reply), target, access, request),
        };
        let failure = match arrived {
            Ok(Ok(frame)) if !redirected(&frame, &target) => return Ok(frame),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(CallError::Timeout),
        };
        if failure.is_none() {
            fwd.stats.redirected();
        }
        match failure {
            Some(e) if !e.not_sent() && !access.repeatable() => Err(ForwardError::OutcomeUnknown(e.to_string())),
            _ => {
                fwd.stats.retried();
                fwd.execute(&target, access, request).await
            }
        }
    }
}

impl Forwarder {
    pub fn new(
        routing: watch::Receiver<Arc<Routing>>,
        retry_timeout: Duration,
        backend_timeout: Duration,
    ) -> Forwarder {
        Forwarder {
            routing,
            retry_timeout,
            backend_timeout,
            stats: Default::default(),
        }
    }

    /// Retries and redirections so far.
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// The current routing snapshot.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.borrow().clone()
    }

    /// Queues `request` (an encoded command about `target`) on the right server without
    /// waiting for the reply. Requests of one client carry the same `affinity` and so keep
    /// their order on the way to each server. When a request cannot be queued right away (no
    /// leader, no connection), the retrying path runs now.
    pub async fn start(&self, target: Target, access: Access, request: Bytes, affinity: usize) -> InFlight {
        self.start_as(target, access, request, affinity, Shape::Parsed).await
    }

    /// [`Forwarder::start`] with the reply's [`Shape`]: `Relayed` for a reply passed to the
    /// client unread.
    async fn start_as(
        &self,
        target: Target,
        access: Access,
        request: Bytes,
        affinity: usize,
        shape: Shape,
    ) -> InFlight {
        let routing = self.routing();
        if let Target::Key(key) = &target
            && routing.moving(key).is_some()
        {
            return InFlight::done(self.execute(&target, access, request).await);
        }
        if let Ok((_, pool)) = routing.target(&target, access.is_write())
            && let Ok(reply) = pool.enqueue(request.clone(), affinity, shape).await
        {
            return InFlight(State::Sent {
                reply,
                target,
                access,
                request,
            });
        }
        InFlight::done(self.execute(&target, access, request).await)
    }

    /// [`Forwarder::start`] for a request of a client's batch: gathered into `batcher` for its
    /// connection when it can take the fast path (a key not moving, a server to send to);
    /// otherwise the batch so far is flushed first and the request takes [`Forwarder::start`].
    pub async fn start_batched(
        &self,
        batcher: &mut Batcher,
        target: Target,
        access: Access,
        request: Bytes,
        affinity: usize,
    ) -> InFlight {
        match self.batch(batcher, target, access, request) {
            Ok(flight) => flight,
            Err((target, request)) => {
                batcher.flush(affinity).await;
                self.start_as(target, access, request, affinity, Shape::Relayed).await
            }
        }
    }

    /// [`Forwarder::start_batched`]'s fast path, which needs no wait: the request gathered
    /// into `batcher` when its key is not moving and has a server to go to. Otherwise the
    /// target and request back, untouched.
    pub fn batch(
        &self,
        batcher: &mut Batcher,
        target: Target,
        access: Access,
        request: Bytes,
    ) -> Result<InFlight, (Target, Bytes)> {
        let routing = self.routing();
        let fast = match &target {
            Target::Key(key) => routing.moving(key).is_none(),
            _ => true,
        };
        if fast && let Ok((_, pool)) = routing.target(&target, access.is_write()) {
            let i = match batcher.groups.iter().position(|g| Arc::ptr_eq(&g.pool, pool)) {
                Some(i) => i,
                None => {
                    let bytes = batcher.buffer();
                    batcher.groups.push(Group {
                        pool: pool.clone(),
                        first: request.clone(),
                        bytes,
                        count: 0,
                        reply: Arc::default(),
                    });
                    batcher.groups.len() - 1
                }
            };
            let g = &mut batcher.groups[i];
            if g.count == 1 {
                // Room for a typical pipeline at once rather than growing by reallocation
                // (the growth was 4% of the gate's instructions under `SET -P 16`).
                g.bytes.reserve((g.first.len() * 16).min(64 * 1024));
                g.bytes.extend_from_slice(&g.first);
            }
            if g.count >= 1 {
                g.bytes.extend_from_slice(&request);
            }
            g.count += 1;
            return Ok(InFlight(State::Batched {
                group: g.reply.clone(),
                index: g.count - 1,
                target,
                access,
                request,
            }));
        }
        Err((target, request))
    }

    /// Sends `request` (a session command, safe to repeat) to the leader for `target` on the
    /// connection for `affinity`, and waits for the reply; retried, with the routing
    /// refreshed, until the retry timeout while it is redirected or unanswered. Pinned to
    /// the client's connection because a server keeps a gate client's `WATCH` per
    /// connection, where its `EXEC` will come.
    pub async fn call_pinned(&self, target: &Target, request: Bytes, affinity: usize) -> Result<Frame, ForwardError> {
        let deadline = Instant::now() + self.retry_timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            let routing = self.routing();
            let problem = match routing.target(target, true) {
                Ok((shard, pool)) => match pool.enqueue(request.clone(), affinity, Shape::Parsed).await {
                    Ok(reply) => match tokio::time::timeout(self.backend_timeout, reply).await {
                        Ok(Ok(frame)) if !redirected(&frame, target) => return Ok(frame),
                        Ok(Ok(frame)) => {
                            self.stats.redirected();
                            format!(
                                "shard {shard}: {}",
                                String::from_utf8_lossy(frame.as_error().unwrap_or_default())
                            )
                        }
                        Ok(Err(e)) => format!("shard {shard}: {e}"),
                        Err(_) => format!("shard {shard}: no reply"),
                    },
                    Err(e) => format!("shard {shard}: {e}"),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() + backoff >= deadline {
                return Err(ForwardError::Unavailable(problem));
            }
            self.stats.retried();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// Waits (up to the retry timeout) until at least one shard is on the ring.
    pub async fn wait_for_shards(&self) -> bool {
        let mut routing = self.routing.clone();
        let ready = routing.wait_for(|r| !r.ring().is_empty());
        matches!(tokio::time::timeout(self.retry_timeout, ready).await, Ok(Ok(_)))
    }

    /// Sends `request` and returns the server's reply, retrying as the module documentation
    /// describes.
    pub async fn execute(&self, target: &Target, access: Access, request: Bytes) -> Result<Frame, ForwardError> {
        let deadline = Instant::now() + self.retry_timeout;
        let mut routing = self.routing.clone();
        let mut backoff = Duration::from_millis(10);
        // After a follower refused to vouch for its data, read from the leader.
        let mut from_leader = false;
        loop {
            let current = routing.borrow_and_update().clone();
            if let Target::Key(key) = target
                && let Some((from, to, version)) = current.moving(key)
            {
                let (from, to) = (from.to_string(), to.to_string());
                return Box::pin(self.execute_moving(key, &from, &to, version, access, request)).await;
            }
            let problem = match current.target_as(target, access.is_write(), from_leader) {
                Ok((shard, pool)) => match pool.call(request.clone(), self.backend_timeout).await {
                    Ok(frame) if redirected(&frame, target) => {
                        from_leader |= ErrorCode::of(&frame) == Some(ErrorCode::MasterDown);
                        self.stats.redirected();
                        format!(
                            "shard {shard}: {}",
                            String::from_utf8_lossy(frame.as_error().unwrap_or_default())
                        )
                    }
                    Ok(frame) => return Ok(frame),
                    Err(e) if e.not_sent() || access.repeatable() => format!("shard {shard} at {}: {e}", pool.addr()),
                    Err(e) => {
                        return Err(ForwardError::OutcomeUnknown(format!(
                            "shard {shard} at {}: {e}",
                            pool.addr()
                        )));
                    }
                },
                Err(e) => e.to_string(),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ForwardError::Unavailable(problem));
            }
            debug!(problem, "retrying after the cluster changes");
            self.stats.retried();
            // Wake on a routing change (a new leader), or after the backoff.
            let wait = backoff.min(deadline - now);
            if let Ok(Err(_)) = tokio::time::timeout(wait, routing.changed()).await {
                // The gate is shutting down: no routing change will come.
                tokio::time::sleep(wait).await;
            }
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// Sends a transaction (`MULTI`, commands, `EXEC`: `n` requests encoded in `batch`) to
    /// the leader for `target` as one message, and returns `EXEC`'s reply. Sent once: a
    /// transaction is never repeated blindly.
    pub async fn execute_transaction(
        &self,
        target: &Target,
        batch: Bytes,
        n: usize,
        affinity: usize,
    ) -> Result<Frame, ForwardError> {
        let routing = self.routing();
        let (shard, pool) = routing
            .target(target, true)
            .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
        let reply = pool
            .enqueue_batch(batch, n, affinity, Shape::Relayed)
            .await
            .map_err(|e| ForwardError::Unavailable(format!("shard {shard}: {e}")))?;
        match tokio::time::timeout(self.backend_timeout, reply.wait()).await {
            Ok(()) => {}
            Err(_) => {
                return Err(ForwardError::OutcomeUnknown(format!(
                    "shard {shard}: no reply to the transaction"
                )));
            }
        }
        reply
            .take(n - 1)
            .map_err(|e| ForwardError::OutcomeUnknown(format!("shard {shard}: {e}")))
    }

    /// Sends `args` to every server of every shard (leaders and followers), as a `CONFIG
    /// SET` or a `SCRIPT LOAD` that every server applies: the first server's reply, or the
    /// first error a server answered.
    pub async fn to_every_server(&self, args: &[Bytes]) -> Frame {
        let request = kv_proto::write::command(args.iter().map(|a| &a[..]));
        let pools = self.routing.borrow().all_pools();
        let mut first = None;
        for pool in pools {
            match pool.call(request.clone(), self.backend_timeout).await {
                Ok(f) if f.as_error().is_some() => return f,
                Ok(f) => {
                    first.get_or_insert(f);
                }
                Err(e) => return Frame::error(format!("ERR server {} did not take it: {e}", pool.addr())),
            }
        }
        first.unwrap_or_else(|| Frame::error("CLUSTERDOWN no server is registered in the cluster yet"))
    }

    /// A blocking command (`BLPOP` …) about `key`, whose arguments are `args` with its
    /// timeout in seconds at `timeout_at`: sent to the key's leader on a connection of its own
    /// ([`Pool::call_alone`]). When the leader changes or the key moves while it waits, the
    /// server answers with a redirection (nothing popped) and the command goes to the new
    /// owner with what is left of the timeout.
    pub async fn execute_blocking(
        &self,
        key: &Bytes,
        mut args: Vec<Bytes>,
        timeout_at: usize,
        resp3: bool,
    ) -> Result<Frame, ForwardError> {
        let secs = std::str::from_utf8(&args[timeout_at])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t >= 0.0);
        let until = secs
            .filter(|t| *t > 0.0)
            .map(|t| Instant::now() + Duration::from_secs_f64(t));
        let target = Target::Key(key.clone());
        let mut routing = self.routing.clone();
        let mut retry_until = Instant::now() + self.retry_timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            // What is left of the client's timeout (the server's reply to a bad one is kept).
            let wait = match (secs, until) {
                (Some(_), Some(until)) => {
                    let left = until.saturating_duration_since(Instant::now());
                    args[timeout_at] = Bytes::from(format!("{:.3}", left.as_secs_f64().max(0.001)));
                    left + self.backend_timeout
                }
                // Forever (0), or a timeout the server will refuse.
                _ => Duration::from_secs(365 * 24 * 3600),
            };
            let mut request = kv_proto::write::command(args.iter().map(|a| &a[..]));
            if resp3 && let Some(wrapped) = kv_peer::command::wrap_resp3(&request) {
                request = wrapped;
            }
            let current = routing.borrow_and_update().clone();
            let problem = match current.target_as(&target, true, false) {
                Ok((shard, pool)) => match pool.call_alone(request, wait).await {
                    Ok(frame) if redirected(&frame, &target) => {
                        // The wait ended there: a new retry window starts now.
                        retry_until = Instant::now() + self.retry_timeout;
                        self.stats.redirected();
                        format!(
                            "shard {shard}: {}",
                            String::from_utf8_lossy(frame.as_error().unwrap_or_default())
                        )
                    }
                    Ok(frame) => return Ok(frame),
                    Err(e) if e.not_sent() => format!("shard {shard} at {}: {e}", pool.addr()),
                    Err(e) => {
                        return Err(ForwardError::OutcomeUnknown(format!(
                            "shard {shard} at {}: {e}",
                            pool.addr()
                        )));
                    }
                },
                Err(e) => e.to_string(),
            };
            let now = Instant::now();
            if now >= retry_until {
                return Err(ForwardError::Unavailable(problem));
            }
            debug!(problem, "retrying a blocking command after the cluster changes");
            self.stats.retried();
            let pause = backoff.min(retry_until - now);
            let _ = tokio::time::timeout(pause, routing.changed()).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// A command about `key` while it moves from shard `from` to `to` (ring `version`); see
    /// the module documentation.
    async fn execute_moving(
        &self,
        key: &Bytes,
        from: &str,
        to: &str,
        version: u64,
        access: Access,
        request: Bytes,
    ) -> Result<Frame, ForwardError> {
        let (from_t, to_t) = (Target::Shard(from.to_string()), Target::Owner(to.to_string()));
        if !access.is_write() {
            let reply = self.execute(&to_t, access, request.clone()).await?;
            if !miss(&reply) {
                return Ok(reply);
            }
            let old = self.execute(&from_t, access, request.clone()).await?;
            // `MOVED` from the old owner: the move ended there (the key is the new owner's).
            if !miss(&old) && ErrorCode::of(&old) != Some(ErrorCode::Moved) {
                return Ok(old);
            }
            // A write may have moved the key between the two reads (written at the new owner,
            // then dropped at the old): look at the new owner once more.
            return self.execute(&to_t, access, request).await;
        }
        let fetch = PeerCommand::Fetch { key: key.clone() }.encode();
        let fetched = self.execute(&from_t, LEADER, fetch).await?;
        if let Ok(Some(found)) = parse_fetch_reply(&fetched) {
            let copy = PeerCommand::Migrate {
                version,
                items: vec![MigrateItem {
                    key: key.clone(),
                    kind: found.kind,
                    value: found.value,
                    expires_at: found.expires_at,
                }],
            }
            .encode();
            let copied = self.execute(&to_t, LEADER, copy).await?;
            if let Some(e) = copied.as_error() {
                return Err(ForwardError::Unavailable(format!(
                    "cannot move key to shard {to}: {}",
                    String::from_utf8_lossy(e)
                )));
            }
        }
        let reply = self.execute(&to_t, access, request).await?;
        if reply.as_error().is_none() {
            let drop = PeerCommand::Drop {
                keys: vec![key.clone()],
            }
            .encode();
            if let Err(e) = self.execute(&from_t, LEADER, drop).await {
                debug!(error = %e, from, "could not drop the old copy of a moved key");
            }
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReadPolicy;
    use crate::routing::RoutingBuilder;
    use kv_client::ConnOptions;
    use kv_cluster::{ClusterView, NodeInfo, RingState, ShardState, ShardView};
    use kv_proto::{Limits, RequestParser};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request with its second argument as a bulk string.
    async fn echo_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut parser = RequestParser::new(Limits::REDIS);
                    let mut input = bytes::BytesMut::new();
                    loop {
                        let mut out = Vec::new();
                        while let Some(req) = parser.parse(&mut input).unwrap() {
                            let arg = &req.args()[1];
                            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                            out.extend_from_slice(arg);
                            out.extend_from_slice(b"\r\n");
                        }
                        if !out.is_empty() && socket.write_all(&out).await.is_err() {
                            return;
                        }
                        if matches!(socket.read_buf(&mut input).await, Ok(0) | Err(_)) {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// One shard whose leader is `addr`.
    fn view(addr: &str) -> Arc<ClusterView> {
        let mut v = ClusterView::default();
        let mut sv = ShardView {
            name: "s1".into(),
            ..Default::default()
        };
        sv.nodes.insert(
            "a".into(),
            NodeInfo {
                id: "a".into(),
                shard: "s1".into(),
                addr: addr.into(),
                cluster_addr: addr.into(),
                tls_addr: None,
            },
        );
        sv.state = Some(ShardState {
            epoch: 1,
            leader: Some("a".into()),
            isr: vec!["a".into()],
            ..Default::default()
        });
        sv.leader_lock = Some("a".into());
        v.shards.insert("s1".into(), sv);
        v.ring = Some(RingState {
            version: 1,
            shards: vec!["s1".into()],
            next: None,
        });
        Arc::new(v)
    }

    /// A client's batches reuse their group buffers (kept between batches, reclaimed once
    /// the connection has copied them out): every request still reaches the server intact,
    /// batch after batch, as the requests grow past a kept buffer and shrink again, and the
    /// buffers kept stay within their bound.
    #[tokio::test]
    async fn batches_reusing_their_buffers_carry_every_request_intact() {
        let addr = echo_server().await;
        let mut builder = RoutingBuilder::new(ReadPolicy::Leader, 1, ConnOptions::default());
        let (_tx, rx) = watch::channel(Arc::new(builder.build(view(&addr), true, &Default::default())));
        let fwd = Forwarder::new(rx, Duration::from_secs(5), Duration::from_secs(5));
        let mut batcher = Batcher::default();
        for round in 0..40usize {
            // Small, then large (past a kept buffer and past the bound on kept ones), then
            // small again.
            let size = [10, 100, 3000, 20][round % 4] + round;
            let mut flights = Vec::new();
            for i in 0..16 {
                let key = format!("{round}:{i}:{}", "x".repeat(size));
                let request = kv_proto::write::command([&b"GET"[..], key.as_bytes()]);
                let target = Target::Key(Bytes::from(key.clone()));
                let flight = fwd.start_batched(&mut batcher, target, Access::Read, request, 0).await;
                flights.push((key, flight));
            }
            batcher.flush(0).await;
            for (key, flight) in flights {
                assert_eq!(
                    flight.finish(&fwd).await,
                    Ok(Frame::Bulk(Bytes::from(key))),
                    "round {round}"
                );
            }
            assert!(batcher.spare.len() <= SPARE_BUFFERS);
            assert!(batcher.spare.iter().all(|b| b.capacity() <= SPARE_BUFFER_BYTES));
        }
        assert!(!batcher.spare.is_empty(), "a pipelining client keeps a buffer");
    }
}
