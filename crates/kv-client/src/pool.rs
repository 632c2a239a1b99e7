//! A small pool of persistent pipelined connections to one server.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kv_proto::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{CallError, ConnOptions, Connection, Reply, Shape};

/// `size` connections to `addr`, used round-robin, each re-established on demand after a
/// failure. Connecting happens outside any lock.
pub struct Pool {
    addr: String,
    options: ConnOptions,
    slots: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).finish()
    }
}

impl Pool {
    /// A pool of `size` (at least 1) connections to `addr`, opened lazily.
    pub fn new(addr: impl Into<String>, size: usize, options: ConnOptions) -> Pool {
        Pool {
            addr: addr.into(),
            options,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn connection(&self, affinity: Option<usize>) -> Result<Connection, CallError> {
        let i = affinity.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed)) % self.slots.len();
        if let Some(c) = self.slots[i].lock().expect("pool slot").as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let fresh = Connection::connect(&self.addr, &self.options)
            .await
            .map_err(|e| CallError::NotSent(format!("cannot connect to {}: {e}", self.addr)))?;
        let mut slot = self.slots[i].lock().expect("pool slot");
        match slot.as_ref() {
            // Another caller reconnected this slot meanwhile: use theirs, drop ours.
            Some(c) if !c.is_closed() => Ok(c.clone()),
            _ => {
                *slot = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    /// Queues `request` on one of the connections; see [`Connection::enqueue`].
    ///
    /// Requests with the same `affinity` go over the same connection, so they reach the
    /// server in the order they were queued: a client's pipeline must not be reordered (a GET
    /// after a SET of the same key must see it).
    pub async fn enqueue(&self, request: Bytes, affinity: usize, shape: Shape) -> Result<Reply, CallError> {
        // The common case: the connection is up and its queue has room. Queued under the
        // slot's lock, with no clone of the connection handle (two atomic counters) per request.
        let request = {
            let slot = self.slots[affinity % self.slots.len()].lock().expect("pool slot");
            match slot.as_ref() {
                Some(c) => match c.try_enqueue(request, shape) {
                    Ok(reply) => return Ok(reply),
                    Err(request) => request,
                },
                None => request,
            }
        };
        self.connection(Some(affinity)).await?.enqueue(request, shape).await
    }

    /// Queues `n` requests (encoded back to back) as one batch on the connection for
    /// `affinity`; see [`Connection::enqueue_batch`].
    pub async fn enqueue_batch(
        &self,
        requests: Bytes,
        n: usize,
        affinity: usize,
        shape: Shape,
    ) -> Result<crate::BatchReply, CallError> {
        self.connection(Some(affinity))
            .await?
            .enqueue_batch(requests, n, shape)
            .await
    }

    /// Sends `request` on one of the connections and waits up to `timeout` for the reply.
    /// A timeout abandons this request only: the connection stays for the other callers
    /// (a stalled server is detected by the connection itself, see
    /// [`ConnOptions::stall_timeout`]).
    pub async fn call(&self, request: Bytes, timeout: Duration) -> Result<Frame, CallError> {
        let conn = self.connection(None).await?;
        match tokio::time::timeout(timeout, conn.call(request)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Sends `request` on a connection of its own and waits up to `timeout` for the reply,
    /// then closes it. For blocking commands (`BLPOP` …): one may wait for minutes, and on a
    /// pooled connection every request pipelined behind it would wait too.
    pub async fn call_alone(&self, request: Bytes, timeout: Duration) -> Result<Frame, CallError> {
        let mut stream = crate::open(&self.addr, &self.options)
            .await
            .map_err(|e| CallError::NotSent(e.to_string()))?;
        stream
            .write_all(&request)
            .await
            .map_err(|e| CallError::NotSent(e.to_string()))?;
        let limits = self.options.limits;
        let read = async {
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                match kv_proto::parse_reply(&mut buf, &limits) {
                    Ok(Some(frame)) => return Ok(frame),
                    Ok(None) => {}
                    Err(e) => return Err(CallError::Unknown(e.to_string())),
                }
                match stream.read_buf(&mut buf).await {
                    Ok(0) => return Err(CallError::Unknown("the server closed the connection".into())),
                    Ok(_) => {}
                    Err(e) => return Err(CallError::Unknown(e.to_string())),
                }
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Drops every connection (the server left the cluster).
    pub fn close(&self) {
        for slot in &self.slots {
            if let Some(c) = slot.lock().expect("pool slot").take() {
                c.abort();
            }
        }
    }
}
