//! A pipelined RESP connection.
//!
//! Callers hand requests to a writer task, which writes them in batches (one syscall for
//! many requests) and passes each reply slot, in order, to a reader task that matches replies
//! to slots. Requests in flight are bounded: when `max_in_flight` replies are outstanding,
//! callers wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kv_peer::PeerAuth;
use kv_proto::{Frame, Limits, parse_reply, parse_reply_relayed};
use kv_tls::{ReadHalf, Stream, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};

/// Why a call has no reply. The variant says whether the request may have been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request never left this process: safe to send again, anywhere.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request was (or may have been) sent but no reply came: it may have been applied.
    /// Only a request that is safe to repeat may be sent again.
    #[error("no reply (outcome unknown): {0}")]
    Unknown(String),
    /// No reply within the deadline; the connection was dropped. Outcome unknown.
    #[error("timed out waiting for a reply")]
    Timeout,
}

impl CallError {
    /// True when the request certainly was not applied.
    pub fn not_sent(&self) -> bool {
        matches!(self, CallError::NotSent(_))
    }
}

/// Settings of a connection.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Requests written but not yet answered, at most.
    pub max_in_flight: usize,
    /// How long establishing the connection (TCP and, for a cluster port, the handshake) may
    /// take.
    pub connect_timeout: Duration,
    /// Bounds on replies (a server is trusted, but not unboundedly).
    pub limits: Limits,
    /// Set for a kvserver's cluster port: the handshake that proves the cluster secret.
    pub peer: Option<PeerAuth>,
    /// The connection is closed (its calls fail as outcome unknown) when requests are
    /// outstanding and no reply byte arrived for this long: the server is stalled. A caller's
    /// own timeout only abandons its request; the connection stays for the others.
    pub stall_timeout: Option<Duration>,
    /// Set when cluster ports speak TLS (`--tls-cluster`): the connection is TLS, the server
    /// verified against the cluster's CA, before the handshake.
    pub tls: Option<Arc<kv_tls::Tls>>,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            max_in_flight: 1024,
            connect_timeout: Duration::from_secs(2),
            limits: Limits::REDIS,
            peer: None,
            stall_timeout: None,
            tls: None,
        }
    }
}

/// TCP keepalive for long-lived connections: a peer that vanished without closing (a cut
/// link, a powered-off machine) is noticed in about 20 s even when nothing is being sent.
pub fn keepalive(stream: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(2))
        .with_retries(5);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot enable TCP keepalive");
    }
}

/// Opens a TCP connection to `addr` within `options.connect_timeout`, with keepalive, TLS
/// when `options.tls` is set, and the cluster handshake when `options.peer` is set.
pub async fn open(addr: &str, options: &ConnOptions) -> std::io::Result<Stream> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {addr} timed out"));
    let tcp = tokio::time::timeout(options.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    tcp.set_nodelay(true)?;
    keepalive(&tcp);
    let mut stream = match &options.tls {
        Some(tls) => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            tls.connect(tcp, host)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("TLS to {addr}: {e}")))?
        }
        None => Stream::Plain(tcp),
    };
    if let Some(auth) = &options.peer {
        kv_peer::handshake::connect(&mut stream, auth, options.connect_timeout)
            .await
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("{addr}: {e}")))?;
    }
    Ok(stream)
}

/// How a request's reply is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Parsed into frames.
    #[default]
    Parsed,
    /// For a reply the caller relays unread to a client of the same protocol: an aggregate
    /// reply comes back as its bytes ([`Frame::Relayed`]); errors, nulls and scalars are
    /// parsed.
    Relayed,
}

/// Where the replies to one queued message go: one request's reply, or a batch's.
enum ReplySlot {
    /// `None` once delivered.
    One(Option<oneshot::Sender<Result<Frame, CallError>>>, Shape),
    Many {
        batch: Arc<BatchState>,
        got: Vec<Option<Result<Frame, CallError>>>,
        shape: Shape,
    },
}

impl ReplySlot {
    fn shape(&self) -> Shape {
        match self {
            ReplySlot::One(_, shape) | ReplySlot::Many { shape, .. } => *shape,
        }
    }

    /// Delivers the next reply; true when the slot has all it expects.
    fn deliver(&mut self, r: Result<Frame, CallError>) -> bool {
        match self {
            ReplySlot::One(tx, _) => {
                // A dropped receiver (its caller timed out) just discards the reply.
                if let Some(tx) = tx.take() {
                    let _ = tx.send(r);
                }
                true
            }
            ReplySlot::Many { batch, got, .. } => {
                got.push(Some(r));
                if got.len() < batch.expected {
                    return false;
                }
                batch.complete(std::mem::take(got));
                true
            }
        }
    }

    /// Fails every reply still expected with `e`.
    fn fail(mut self, e: CallError) {
        while !self.deliver(Err(e.clone())) {}
    }
}

/// The shared end of a batch: replies are handed over together, once all have arrived.
struct BatchState {
    expected: usize,
    /// Each reply, `None` once taken (taking one allocates nothing: profiled, a placeholder
    /// error's string per reply was 3% of the gate's instructions under `SET -P 16`).
    replies: std::sync::Mutex<Vec<Option<Result<Frame, CallError>>>>,
    done: AtomicBool,
    notify: Notify,
}

impl BatchState {
    fn new(expected: usize) -> BatchState {
        BatchState {
            expected,
            replies: std::sync::Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    fn complete(&self, replies: Vec<Option<Result<Frame, CallError>>>) {
        *self.replies.lock().unwrap_or_else(|e| e.into_inner()) = replies;
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// The replies to a batch of requests queued as one message ([`Connection::enqueue_batch`]):
/// one queue slot, one wake-up and no per-request channel for the whole batch.
#[derive(Clone)]
pub struct BatchReply(Arc<BatchState>);

impl BatchReply {
    /// True once every reply of the batch is in (or the batch failed).
    pub fn is_done(&self) -> bool {
        self.0.done.load(Ordering::Acquire)
    }

    /// Waits until [`BatchReply::is_done`].
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_done() {
                return;
            }
            notified.await;
        }
    }

    /// The reply to the batch's `i`-th request, once done (taken: asked once per request).
    pub fn take(&self, i: usize) -> Result<Frame, CallError> {
        let mut replies = self.0.replies.lock().unwrap_or_else(|e| e.into_inner());
        match replies.get_mut(i).map(Option::take) {
            Some(Some(r)) => r,
            Some(None) => Err(CallError::Unknown("reply already taken".into())),
            None => Err(CallError::Unknown("no reply for this request".into())),
        }
    }
}

/// A queued request's reply, to be awaited.
pub struct Reply(oneshot::Receiver<Result<Frame, CallError>>);

impl Reply {
    /// The reply if it has arrived already, without waiting (or registering a timer to bound
    /// a wait): a pipelined batch's later replies are usually there by the time they are
    /// collected.
    pub fn try_take(&mut self) -> Option<Result<Frame, CallError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(CallError::Unknown("connection closed".into()))),
        }
    }
}

impl std::future::Future for Reply {
    type Output = Result<Frame, CallError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(CallError::Unknown("connection closed".into()))))
    }
}

struct Pending {
    request: Bytes,
    reply: ReplySlot,
}

struct Shared {
    closed: AtomicBool,
    abort: Notify,
}

/// A handle to one pipelined connection; cheap to clone.
#[derive(Clone)]
pub struct Connection {
    tx: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
}

/// Most bytes the writer gathers into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

impl Connection {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str, options: &ConnOptions) -> std::io::Result<Connection> {
        let stream = open(addr, options).await?;
        let (read, write) = stream.into_split();
        let max = options.max_in_flight.max(1);
        let (tx, rx) = mpsc::channel(max);
        let (slots_tx, slots_rx) = mpsc::channel(max);
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            abort: Notify::new(),
        });
        tokio::spawn(write_loop(rx, write, slots_tx, shared.clone()));
        tokio::spawn(read_loop(
            read,
            slots_rx,
            shared.clone(),
            options.limits,
            options.stall_timeout,
            max,
        ));
        Ok(Connection { tx, shared })
    }

    /// Queues `request` (an encoded command) and returns where its reply will arrive. Waits
    /// only when `max_in_flight` requests are already queued: a caller can queue a whole
    /// pipeline before awaiting any reply, so pipelines stay pipelines end to end.
    /// Queues `request` if the queue has room now, without waiting: `Err(request)` when it
    /// is full or the connection is closed (then [`Connection::enqueue`] waits or fails).
    pub fn try_enqueue(&self, request: Bytes, shape: Shape) -> Result<Reply, Bytes> {
        if self.is_closed() {
            return Err(request);
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Pending {
            request,
            reply: ReplySlot::One(Some(reply), shape),
        }) {
            Ok(()) => Ok(Reply(rx)),
            Err(mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p)) => Err(p.request),
        }
    }

    /// Queues `n` requests encoded back to back in `requests` as one message; their replies
    /// come back together ([`BatchReply`]). Order with other messages is kept, as for
    /// [`Connection::enqueue`].
    pub async fn enqueue_batch(&self, requests: Bytes, n: usize, shape: Shape) -> Result<BatchReply, CallError> {
        if self.is_closed() {
            return Err(CallError::NotSent("connection closed".into()));
        }
        let batch = Arc::new(BatchState::new(n));
        let reply = ReplySlot::Many {
            batch: batch.clone(),
            got: Vec::with_capacity(n),
            shape,
        };
        self.tx
            .send(Pending {
                request: requests,
                reply,
            })
            .await
            .map_err(|_| CallError::NotSent("connection closed".into()))?;
        Ok(BatchReply(batch))
    }

    pub async fn enqueue(&self, request: Bytes, shape: Shape) -> Result<Reply, CallError> {
        if self.is_closed() {
            return Err(CallError::NotSent("connection closed".into()));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                request,
                reply: ReplySlot::One(Some(reply), shape),
            })
            .await
            .map_err(|_| CallError::NotSent("connection closed".into()))?;
        Ok(Reply(rx))
    }

    /// Sends `request` (an encoded command) and waits for its reply.
    pub async fn call(&self, request: Bytes) -> Result<Frame, CallError> {
        self.enqueue(request, Shape::Parsed).await?.await
    }

    /// True once the connection failed or was aborted.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.tx.is_closed()
    }

    /// Drops the connection: every call in flight fails with [`CallError::Unknown`].
    pub fn abort(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.abort.notify_one();
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<Pending>,
    mut write: WriteHalf,
    slots: mpsc::Sender<ReplySlot>,
    shared: Arc<Shared>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'outer: while let Some(first) = rx.recv().await {
        // Woken by the first request, run only after the other tasks that are ready: they may
        // queue requests too, and one write then carries them all. (Tokio runs a task woken
        // by the current one next, which would otherwise make every write carry one client's
        // requests.) Measured in bench/: one backend write per client batch became one per
        // several, and the gate's -P 1 throughput rose from 0.75x to 1.0x of twemproxy's.
        tokio::task::yield_now().await;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            if shared.closed.load(Ordering::Acquire) {
                p.reply.fail(CallError::NotSent("connection closed".into()));
                break 'outer;
            }
            // The slot goes to the reader before the bytes go out, so a reply always finds it.
            // When `max_in_flight` slots are taken, what is buffered goes out first: those
            // requests' replies are what frees the slots.
            let reply = match slots.try_send(p.reply) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(reply)) => Some(reply),
                Err(mpsc::error::TrySendError::Closed(reply)) => {
                    reply.fail(CallError::NotSent("connection closed".into()));
                    break 'outer;
                }
            };
            if let Some(reply) = reply {
                if let Err(e) = write.write_all(&buf).await {
                    tracing::debug!(error = %e, "backend write failed");
                    reply.fail(CallError::NotSent("connection closed".into()));
                    break 'outer;
                }
                buf.clear();
                if let Err(e) = slots.send(reply).await {
                    e.0.fail(CallError::NotSent("connection closed".into()));
                    break 'outer;
                }
            }
            buf.extend_from_slice(&p.request);
            if buf.len() < WRITE_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if let Err(e) = write.write_all(&buf).await {
                tracing::debug!(error = %e, "backend write failed");
                break;
            }
            buf.clear();
        }
    }
    // Fail whatever is still queued: it was never written.
    shared.closed.store(true, Ordering::Release);
    shared.abort.notify_one();
    rx.close();
    while let Some(p) = rx.recv().await {
        p.reply.fail(CallError::NotSent("connection closed".into()));
    }
}

async fn read_loop(
    mut read: ReadHalf,
    mut slots: mpsc::Receiver<ReplySlot>,
    shared: Arc<Shared>,
    limits: Limits,
    stall: Option<Duration>,
    max_in_flight: usize,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // Slots of requests written (or being written), oldest first. Taken from the writer's
    // channel only up to `max_in_flight`, so the bound on requests in flight still holds.
    let mut waiting: VecDeque<ReplySlot> = VecDeque::new();
    // When the reply stream last made progress (or requests began waiting on it).
    let mut progress = tokio::time::Instant::now();
    let mut writer_done = false;
    let reason = 'conn: loop {
        loop {
            // The next reply's slot is needed before parsing (it says the reply's shape).
            if waiting.is_empty()
                && !buf.is_empty()
                && let Ok(slot) = slots.try_recv()
            {
                progress = tokio::time::Instant::now();
                waiting.push_back(slot);
            }
            let parsed = match waiting.front().map(ReplySlot::shape) {
                Some(Shape::Relayed) => parse_reply_relayed(&mut buf, &limits),
                _ => parse_reply(&mut buf, &limits),
            };
            match parsed {
                Ok(Some(frame)) => {
                    let Some(slot) = waiting.front_mut() else {
                        tracing::warn!("backend sent a reply nobody asked for; dropping the connection");
                        break 'conn "unexpected reply";
                    };
                    if slot.deliver(Ok(frame)) {
                        waiting.pop_front();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "backend sent a malformed reply; dropping the connection");
                    break 'conn "malformed reply";
                }
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            break "connection closed";
        }
        let stalled = async {
            match stall {
                Some(limit) if !waiting.is_empty() => tokio::time::sleep_until(progress + limit).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = read.read_buf(&mut buf) => match r {
                Ok(0) => break "connection closed by the server",
                Ok(_) => progress = tokio::time::Instant::now(),
                Err(_) => break "connection reset",
            },
            slot = slots.recv(), if !writer_done && waiting.len() < max_in_flight => match slot {
                Some(slot) => {
                    if waiting.is_empty() {
                        progress = tokio::time::Instant::now();
                    }
                    waiting.push_back(slot);
                }
                None => writer_done = true,
            },
            _ = stalled => break "no reply from the server within the stall timeout",
            _ = shared.abort.notified() => break "connection aborted",
        }
    };
    shared.closed.store(true, Ordering::Release);
    shared.abort.notify_one();
    slots.close();
    for slot in waiting {
        slot.fail(CallError::Unknown(reason.into()));
    }
    while let Some(slot) = slots.recv().await {
        slot.fail(CallError::Unknown(reason.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A tiny server that answers each PING-like line with its own sequence number, slowly.
    async fn numbering_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut parser = kv_proto::RequestParser::new(Limits::REDIS);
            let mut buf = BytesMut::new();
            let mut n = 0;
            loop {
                if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut out = BytesMut::new();
                while let Some(req) = parser.parse(&mut buf).unwrap() {
                    match req.name() {
                        b"CLOSE" => return,
                        b"HANG" => std::future::pending::<()>().await,
                        b"SLOW" => tokio::time::sleep(Duration::from_millis(300)).await,
                        _ => {}
                    }
                    n += 1;
                    kv_proto::write::integer(&mut out, n);
                }
                s.write_all(&out).await.unwrap();
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_batch_gets_its_replies_in_order_between_single_requests() {
        let (addr, _server) = numbering_server().await;
        let conn = Connection::connect(&addr, &ConnOptions::default()).await.unwrap();
        let ping = || kv_proto::write::command([&b"PING"[..]]);
        let first = conn.enqueue(ping(), Shape::Parsed).await.unwrap();
        let mut three = BytesMut::new();
        for _ in 0..3 {
            three.extend_from_slice(&ping());
        }
        let batch = conn.enqueue_batch(three.freeze(), 3, Shape::Parsed).await.unwrap();
        let last = conn.enqueue(ping(), Shape::Parsed).await.unwrap();
        assert_eq!(first.await.unwrap().as_integer(), Some(1));
        batch.wait().await;
        let got: Vec<_> = (0..3).map(|i| batch.take(i).unwrap().as_integer().unwrap()).collect();
        assert_eq!(got, [2, 3, 4]);
        assert!(batch.take(0).is_err(), "a reply is taken once");
        assert_eq!(last.await.unwrap().as_integer(), Some(5));
        // The server closes mid-batch: every reply of the batch fails, none hangs.
        let mut two = BytesMut::new();
        two.extend_from_slice(&ping());
        two.extend_from_slice(&kv_proto::write::command([&b"CLOSE"[..]]));
        let batch = conn.enqueue_batch(two.freeze(), 2, Shape::Parsed).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), batch.wait())
            .await
            .unwrap();
        assert!(batch.take(1).is_err());
    }

    #[tokio::test]
    async fn pipelined_replies_match_in_order() {
        let (addr, _server) = numbering_server().await;
        let conn = Connection::connect(
            &addr,
            &ConnOptions {
                max_in_flight: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let c = conn.clone();
                tokio::spawn(async move { c.call(kv_proto::write::command([&b"PING"[..]])).await })
            })
            .collect();
        let mut got = Vec::new();
        for c in calls {
            got.push(c.await.unwrap().unwrap().as_integer().unwrap());
        }
        got.sort();
        assert_eq!(got, (1..=50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_dead_server_fails_calls_with_unknown_then_not_sent() {
        let (addr, server) = numbering_server().await;
        let conn = Connection::connect(&addr, &ConnOptions::default()).await.unwrap();
        let r = conn.call(kv_proto::write::command([&b"CLOSE"[..]])).await;
        assert!(matches!(r, Err(CallError::Unknown(_))), "{r:?}");
        server.await.unwrap();
        assert!(conn.is_closed());
        let r = conn.call(kv_proto::write::command([&b"PING"[..]])).await;
        assert!(matches!(r, Err(CallError::NotSent(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_caller_timeout_leaves_the_connection_to_the_others() {
        let (addr, _server) = numbering_server().await;
        let pool = crate::Pool::new(addr, 1, ConnOptions::default());
        let slow = pool
            .call(kv_proto::write::command([&b"SLOW"[..]]), Duration::from_millis(50))
            .await;
        assert_eq!(slow, Err(CallError::Timeout));
        let next = pool
            .call(kv_proto::write::command([&b"PING"[..]]), Duration::from_secs(2))
            .await;
        assert_eq!(next, Ok(Frame::Integer(2)), "same connection, the late reply discarded");
    }

    #[tokio::test]
    async fn a_stalled_server_closes_the_connection() {
        let (addr, _server) = numbering_server().await;
        let options = ConnOptions {
            stall_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        let conn = Connection::connect(&addr, &options).await.unwrap();
        assert_eq!(
            conn.call(kv_proto::write::command([&b"PING"[..]])).await,
            Ok(Frame::Integer(1))
        );
        let started = std::time::Instant::now();
        let r = conn.call(kv_proto::write::command([&b"HANG"[..]])).await;
        assert!(matches!(r, Err(CallError::Unknown(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(conn.is_closed());
    }
}
