//! Serving one client connection: read requests, apply them, reply in order.
//!
//! Requests that arrive together (a pipeline) are applied together and their replies written
//! with one syscall. Writes in a pipeline that must be replicated are waited for once, for
//! the last of them, before any reply goes out: no reply to a write leaves before the write
//! is safe.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::cmd::Command;
use crate::connection::Connection;
use crate::node::{Node, Pending};
use crate::replication;

/// Replies buffered beyond this are flushed mid-pipeline (after waiting for replication).
const FLUSH_AT: usize = 64 * 1024;

/// Serves `conn` until the client leaves, breaks the protocol, or the server shuts down.
pub async fn serve(node: Arc<Node>, mut conn: Connection, mut shutdown: watch::Receiver<bool>) {
    loop {
        let mut pending: Option<Pending> = None;
        loop {
            match conn.parse() {
                Ok(Some(req)) => match Command::from_request(req) {
                    Ok(Command::Sync(sync)) => {
                        if finish(&node, &mut conn, pending.take()).await {
                            replication::leader::serve_follower(node, conn, sync, shutdown).await;
                        }
                        return;
                    }
                    Ok(Command::Quit) => {
                        kv_proto::write::ok(&mut conn.output);
                        finish(&node, &mut conn, pending).await;
                        return;
                    }
                    Ok(cmd) => pending = Pending::max(pending, cmd.apply(&node, &mut conn.output)),
                    Err(e) => kv_proto::write::error(&mut conn.output, e.to_string().as_bytes()),
                },
                Ok(None) => break,
                Err(e) => {
                    debug!(error = %e, "closing a connection that broke the protocol");
                    kv_proto::write::error(&mut conn.output, format!("ERR {e}").as_bytes());
                    finish(&node, &mut conn, pending).await;
                    return;
                }
            }
            if conn.output.len() >= FLUSH_AT && !finish(&node, &mut conn, pending.take()).await {
                return;
            }
        }
        if !finish(&node, &mut conn, pending).await {
            return;
        }
        tokio::select! {
            r = conn.read_more() => match r {
                Ok(true) => {}
                _ => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Waits for `pending` to be replicated, then flushes the replies. False when the connection
/// must close: a write whose replication could not be confirmed has an unknown outcome, and
/// closing tells the client exactly that.
async fn finish(node: &Node, conn: &mut Connection, pending: Option<Pending>) -> bool {
    if let Some(p) = pending
        && let Err(e) = node.wait_replicated(p).await
    {
        warn!(error = %e, offset = p.offset, "write not confirmed by followers; closing the client connection");
        return false;
    }
    conn.flush().await.is_ok()
}
