//! [`Forwarder`]: sends one command to the server that owns its key, and rides out failovers.
//!
//! A command is retried — after the routing changed, or after a short backoff — until
//! `--retry-timeout-ms` runs out, when it certainly was not applied (it was never sent, or the
//! server refused it with `NOTLEADER`/`TRYAGAIN`), or when it is safe to repeat (reads, and
//! writes that set a key to a given value or delete it). A write that is not safe to repeat
//! and whose outcome is unknown is reported as such, never silently applied twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_client::CallError;
use kv_proto::Frame;
use tokio::sync::watch;
use tracing::debug;

use crate::routing::Routing;

/// What a command does, which decides where it goes and whether it may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write {
        /// Applying it twice leaves the same state as applying it once.
        idempotent: bool,
    },
}

impl Access {
    fn is_write(self) -> bool {
        matches!(self, Access::Write { .. })
    }

    fn repeatable(self) -> bool {
        matches!(self, Access::Read | Access::Write { idempotent: true })
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
}

/// Server errors that mean "not applied here, try the current leader".
fn redirected(frame: &Frame) -> bool {
    matches!(frame.error_code(), Some(b"NOTLEADER" | b"TRYAGAIN" | b"LOADING"))
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
        }
    }

    /// The current routing snapshot.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.borrow().clone()
    }

    /// Sends `request` (an encoded command about `key`) and returns the server's reply.
    pub async fn execute(&self, key: &[u8], access: Access, request: Bytes) -> Result<Frame, ForwardError> {
        let deadline = Instant::now() + self.retry_timeout;
        let mut routing = self.routing.clone();
        let mut backoff = Duration::from_millis(10);
        loop {
            let current = routing.borrow_and_update().clone();
            let problem = match current.target(key, access.is_write()) {
                Ok((shard, pool)) => match pool.call(request.clone(), self.backend_timeout).await {
                    Ok(frame) if redirected(&frame) => {
                        format!(
                            "shard {shard}: {}",
                            String::from_utf8_lossy(frame.as_error().unwrap_or_default())
                        )
                    }
                    Ok(frame) => return Ok(frame),
                    Err(e) if e.not_sent() || access.repeatable() => format!("shard {shard} at {}: {e}", pool.addr()),
                    Err(e @ (CallError::Unknown(_) | CallError::Timeout | CallError::NotSent(_))) => {
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
            // Wake on a routing change (a new leader), or after the backoff.
            let wait = backoff.min(deadline - now);
            if let Ok(Err(_)) = tokio::time::timeout(wait, routing.changed()).await {
                // The gate is shutting down: no routing change will come.
                tokio::time::sleep(wait).await;
            }
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }
}
