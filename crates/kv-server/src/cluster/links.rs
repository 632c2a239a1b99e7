//! [`Links`]: authenticated connections to other servers' cluster ports, kept by address
//! and replaced when they fail. Every call has a deadline.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kv_client::{CallError, ConnOptions, Connection};
use kv_proto::Frame;

pub(crate) struct Links {
    options: ConnOptions,
    conns: HashMap<String, Connection>,
}

impl Links {
    pub fn new(options: ConnOptions) -> Links {
        Links {
            options,
            conns: HashMap::new(),
        }
    }

    /// Sends `request` to the cluster port at `addr` and waits up to `timeout` for the reply.
    /// A failed connection is dropped (the next call opens a new one).
    pub async fn call(&mut self, addr: &str, request: Bytes, timeout: Duration) -> Result<Frame, CallError> {
        let conn = match self.conns.get(addr).filter(|c| !c.is_closed()) {
            Some(c) => c.clone(),
            None => {
                let c = Connection::connect(addr, &self.options)
                    .await
                    .map_err(|e| CallError::NotSent(format!("cannot connect to {addr}: {e}")))?;
                self.conns.insert(addr.to_string(), c.clone());
                c
            }
        };
        let result = match tokio::time::timeout(timeout, conn.call(request)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        };
        if result.is_err() {
            // A paused or cut-off peer: start afresh next time rather than queue behind it.
            conn.abort();
            self.conns.remove(addr);
        }
        result
    }
}
