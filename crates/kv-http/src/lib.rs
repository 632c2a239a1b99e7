//! HTTP connections guarded against clients that hold them without using them: the gate's
//! API and the servers' metrics port both serve through it.
//!
//! - **At most N at once** (`--max-connections`), and a full house does not shut out a new
//!   client: when every slot is taken, the connection that has been quiet longest (no byte
//!   read or written for a second or more: an idle keep-alive, a slowloris) is closed to
//!   make room. Only when every connection is busy do new ones wait in the accept queue.
//! - **Header timeout** (`--http-header-timeout-ms`): a request's headers must arrive whole
//!   within it (hyper's own timer), however slowly they drip.
//! - **Idle timeout** (`--http-idle-timeout-ms`): a connection on which nothing arrives for
//!   that long while it is read is closed (an idle keep-alive, a stalled body).
//!
//! Bodies have their own deadline and a global budget (`crate::http`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Sleep;

/// The HTTP side's limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Reads how many connections a [`LimitedListener`] has open.
#[derive(Debug, Clone)]
pub struct OpenConnections {
    slots: Arc<Semaphore>,
    max: usize,
}

impl OpenConnections {
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }
}

/// A connection quieter than this may be closed to make room for a new one.
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// What the listener knows of one open connection.
#[derive(Debug)]
struct Tracked {
    /// Milliseconds since the listener started, at the last byte read or written.
    last_active: AtomicU64,
    evicted: AtomicBool,
    /// The connection's pending read, woken on eviction.
    waker: Mutex<Option<Waker>>,
}

/// A [`TcpListener`] bounded by a semaphore, evicting the quietest connection when full.
pub struct LimitedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    /// The connections accepted, pruned of closed ones as it grows past twice the limit.
    open: Vec<Weak<Tracked>>,
    started: Instant,
    idle_timeout: Duration,
    observer: Option<Arc<dyn Observe>>,
}

/// Told of every request a listener's connections serve (for `/metrics`). Hooked around the
/// HTTP service, not as an axum middleware: `axum::middleware::from_fn` made the gate's HTTP
/// GET 0.93–0.94× of the commit before (two paired `wrk` runs); this hook, one box per
/// request, 0.96–1.08× (noise).
pub trait Observe: Send + Sync + 'static {
    /// A slot for the request's path (the endpoint it counts under).
    fn endpoint(&self, path: &str) -> usize;
    /// The request counted under `endpoint` was answered `status` after `took`.
    fn done(&self, endpoint: usize, status: u16, took: Duration);
}

impl LimitedListener {
    pub fn new(inner: TcpListener, limits: &HttpLimits) -> LimitedListener {
        // The binaries refuse a limit of 0 (`validate`); a listener that could admit no one
        // would hang every client, so any other caller gets one slot at least.
        let max = limits.max_connections.max(1);
        LimitedListener {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            max,
            open: Vec::new(),
            started: Instant::now(),
            idle_timeout: limits.idle_timeout,
            observer: None,
        }
    }

    /// Tells `observer` of every request served.
    pub fn observed(mut self, observer: Arc<dyn Observe>) -> LimitedListener {
        self.observer = Some(observer);
        self
    }

    /// A gauge of this listener's open connections (for `/metrics`).
    pub fn gauge(&self) -> OpenConnections {
        OpenConnections {
            slots: self.slots.clone(),
            max: self.max,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Closes the connection quiet longest (at least [`EVICTABLE_AFTER`]), if any.
    fn evict_quietest(&mut self) -> bool {
        self.open.retain(|w| w.strong_count() > 0);
        // Quiet for EVICTABLE_AFTER: counted forward from the last activity, so that within
        // the listener's first second a connection active at its millisecond 0 is not taken
        // for one quiet since (a saturating `now - EVICTABLE_AFTER` was 0 then).
        let now = self.now_ms();
        let quiet_enough =
            |t: &Tracked| t.last_active.load(Ordering::Relaxed) + EVICTABLE_AFTER.as_millis() as u64 <= now;
        let quietest = self
            .open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|t| !t.evicted.load(Ordering::Relaxed) && quiet_enough(t))
            .min_by_key(|t| t.last_active.load(Ordering::Relaxed));
        let Some(t) = quietest else { return false };
        t.evicted.store(true, Ordering::Release);
        if let Some(w) = t.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
        true
    }

    /// A slot for a connection that is waiting: a free one, or the one the quietest
    /// connection gives back when closed; while every connection is busy, the first to end.
    async fn make_room(&mut self) -> OwnedSemaphorePermit {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return slot;
        }
        loop {
            let evicted = self.evict_quietest();
            let wait = if evicted {
                Duration::from_secs(5)
            } else {
                EVICTABLE_AFTER
            };
            if let Ok(Ok(slot)) = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
                return slot;
            }
        }
    }

    /// The next connection. Room is made only once one has arrived: a full listener with
    /// nobody waiting leaves its idle connections alone (it used to close one each second).
    async fn accept(&mut self) -> (GuardedStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let slot = self.make_room().await;
                    let _ = stream.set_nodelay(true);
                    let tracked = Arc::new(Tracked {
                        last_active: AtomicU64::new(self.now_ms()),
                        evicted: AtomicBool::new(false),
                        waker: Mutex::new(None),
                    });
                    if self.open.len() >= self.max.saturating_mul(2).max(64) {
                        self.open.retain(|w| w.strong_count() > 0);
                    }
                    self.open.push(Arc::downgrade(&tracked));
                    let stream = GuardedStream {
                        stream,
                        _slot: slot,
                        tracked,
                        started: self.started,
                        idle_timeout: self.idle_timeout,
                        idle: Box::pin(tokio::time::sleep(self.idle_timeout)),
                    };
                    return (stream, addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A connection holding one of the listener's slots until dropped; closed by eviction or
/// by its idle timeout.
pub struct GuardedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    tracked: Arc<Tracked>,
    started: Instant,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
}

impl GuardedStream {
    fn active(&mut self) {
        let now = self.started.elapsed();
        self.tracked
            .last_active
            .store(now.as_millis() as u64, Ordering::Relaxed);
        self.idle
            .as_mut()
            .reset(tokio::time::Instant::now() + self.idle_timeout);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.tracked.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                *self.tracked.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                if self.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets open connections finish their
/// requests (graceful shutdown). HTTP/1.1, as the API has always been.
/// With `tls`, each connection completes a TLS handshake first (HTTPS); the connection
/// limit, eviction and idle timeout apply to it from its first byte.
pub async fn serve(
    mut listener: LimitedListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<Arc<kv_tls::Tls>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (io, addr) = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (shutdown, tls) = (shutdown.clone(), tls.clone());
        let service = Observed {
            inner: TowerToHyperService::new(app.clone()),
            observer: listener.observer.clone(),
        };
        tokio::spawn(async move {
            match tls {
                None => serve_connection(io, service, limits, shutdown).await,
                Some(tls) => match tls.accept_io(io).await {
                    Ok(io) => serve_connection(io, service, limits, shutdown).await,
                    Err(e) => tracing::debug!(error = %e, %addr, "TLS handshake failed"),
                },
            }
        });
    }
}

/// Serves HTTP/1.1 requests on one connection until it closes or `shutdown`.
async fn serve_connection<IO>(io: IO, service: Observed, limits: HttpLimits, mut shutdown: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The router as hyper calls it, with the listener's [`Observe`] told of each request.
#[derive(Clone)]
struct Observed {
    inner: TowerToHyperService<Router>,
    observer: Option<Arc<dyn Observe>>,
}

type Incoming = hyper::Request<hyper::body::Incoming>;

impl hyper::service::Service<Incoming> for Observed {
    type Response = <TowerToHyperService<Router> as hyper::service::Service<Incoming>>::Response;
    type Error = <TowerToHyperService<Router> as hyper::service::Service<Incoming>>::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Incoming) -> Self::Future {
        let Some(observer) = self.observer.clone() else {
            return Box::pin(self.inner.call(req));
        };
        let endpoint = observer.endpoint(req.uri().path());
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            if let Ok(resp) = &result {
                observer.done(endpoint, resp.status().as_u16(), started.elapsed());
            }
            result
        })
    }
}
