//! The follower's side of replication: connect to the leader, resume or load a snapshot,
//! apply the stream, acknowledge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kv_proto::{CommandBuilder, Limits, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::connection::{ConnError, Connection};
use crate::node::{ApplyError, Node};
use crate::replication::leader::SyncRequest;
use crate::replication::ops::parse_u64;

/// Why one attempt to follow ended.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("cannot connect to the leader: {0}")]
    Connect(String),
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("the leader closed the stream")]
    Closed,
    #[error("the leader sent nothing for {0:?}")]
    Silent(Duration),
    #[error("the leader refused: {0}")]
    Refused(String),
    #[error("unexpected message from the leader: {0}")]
    Unexpected(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl From<std::io::Error> for FollowError {
    fn from(e: std::io::Error) -> Self {
        FollowError::Conn(e.into())
    }
}

/// Follows the leader at `leader` (of `epoch`) for as long as this node's role stays in
/// `term`, reconnecting with backoff when the stream breaks.
pub async fn follow(node: Arc<Node>, leader: String, epoch: u64, term: u64) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match follow_once(&node, &leader, epoch, term).await {
            Err(FollowError::Apply(ApplyError::StaleTerm)) => return,
            Err(e) => warn!(leader, error = %e, "replication from the leader stopped; reconnecting"),
            Ok(()) => {}
        }
        if node.lock().term != term {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn limits(node: &Node) -> Limits {
    Limits {
        max_bulk_len: node.config.resp.proto_max_bulk_len as usize,
        max_multibulk_len: 1 << 20,
        max_inline_len: 64 * 1024,
        max_query_buffer: usize::MAX / 2,
    }
}

fn name_is(req: &Request, name: &[u8]) -> bool {
    req.name().eq_ignore_ascii_case(name)
}

fn arg_u64(req: &Request, i: usize) -> Result<u64, FollowError> {
    req.args()
        .get(i)
        .and_then(|a| parse_u64(a))
        .ok_or_else(|| FollowError::Unexpected(format!("bad {}", String::from_utf8_lossy(req.name()))))
}

async fn follow_once(node: &Node, leader: &str, epoch: u64, term: u64) -> Result<(), FollowError> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(leader))
        .await
        .map_err(|_| FollowError::Connect("timed out".into()))?
        .map_err(|e| FollowError::Connect(e.to_string()))?;
    let mut conn = Connection::new(stream, limits(node));
    let sync = SyncRequest {
        node_id: node.id.clone(),
        position: node.position(),
        known_epoch: epoch,
    };
    conn.stream.write_all(&sync.encode()).await?;
    let silence = node.config.replica_timeout();
    let reply = next_within(node, &mut conn, silence).await?;
    let leader_epoch;
    if name_is(&reply, b"KV.FULLSYNC") {
        leader_epoch = arg_u64(&reply, 1)?;
        let at = arg_u64(&reply, 2)?;
        check_epoch(leader_epoch, epoch)?;
        node.begin_snapshot(term)?;
        let mut keys = 0;
        loop {
            let req = next_within(node, &mut conn, silence).await?;
            if name_is(&req, b"KV.SNAP") {
                keys += node.load_snapshot_chunk(term, &req)?;
            } else if name_is(&req, b"KV.SNAPIN") {
                let (version, done) = (arg_u64(&req, 1)?, arg_u64(&req, 2)?);
                node.load_inbound(term, version, done, &req.args()[3..])?;
            } else if name_is(&req, b"KV.SNAPEND") {
                break;
            } else {
                return Err(FollowError::Unexpected(
                    String::from_utf8_lossy(req.name()).into_owned(),
                ));
            }
        }
        node.finish_snapshot(term, leader_epoch, at)?;
        node.stats.full_syncs_done.fetch_add(1, Ordering::Relaxed);
        info!(leader, keys, at, "loaded a full snapshot from the leader");
        ack(&mut conn, at).await?;
    } else if name_is(&reply, b"KV.CONTINUE") {
        leader_epoch = arg_u64(&reply, 1)?;
        check_epoch(leader_epoch, epoch)?;
        node.stats.partial_syncs_done.fetch_add(1, Ordering::Relaxed);
        info!(
            leader,
            after = arg_u64(&reply, 2)?,
            "resuming replication from the leader's backlog"
        );
    } else if name_is(&reply, b"KV.ERR") {
        let msg = reply
            .args()
            .get(1)
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        return Err(FollowError::Refused(msg));
    } else {
        return Err(FollowError::Unexpected(
            String::from_utf8_lossy(reply.name()).into_owned(),
        ));
    }

    let mut batch = Vec::new();
    loop {
        let mut pinged = false;
        while let Some(req) = conn.parse().map_err(ConnError::from)? {
            if name_is(&req, b"KV.PING") {
                pinged = true;
            } else {
                batch.push(req);
            }
        }
        if !batch.is_empty() {
            let last = node.apply_entries(term, &batch)?;
            batch.clear();
            ack(&mut conn, last).await?;
        } else if pinged {
            let last = node.lock().log.last_offset();
            ack(&mut conn, last).await?;
        }
        match tokio::time::timeout(silence, conn.read_more()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(FollowError::Closed),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(silent(node, silence)),
        }
    }
}

fn silent(node: &Node, limit: Duration) -> FollowError {
    node.stats.replica_timeouts.fetch_add(1, Ordering::Relaxed);
    FollowError::Silent(limit)
}

/// The next message from the leader, which must arrive within `limit`.
async fn next_within(node: &Node, conn: &mut Connection, limit: Duration) -> Result<Request, FollowError> {
    match tokio::time::timeout(limit, conn.next_request()).await {
        Ok(r) => r?.ok_or(FollowError::Closed),
        Err(_) => Err(silent(node, limit)),
    }
}

/// A leader from an older epoch than the one ZooKeeper named is stale: never follow it.
fn check_epoch(leader_epoch: u64, expected: u64) -> Result<(), FollowError> {
    if leader_epoch < expected {
        return Err(FollowError::Refused(format!(
            "leader reports epoch {leader_epoch}, older than the current {expected}"
        )));
    }
    Ok(())
}

async fn ack(conn: &mut Connection, offset: u64) -> Result<(), FollowError> {
    let msg = CommandBuilder::new(2).arg(b"KV.ACK").uint(offset).finish();
    conn.stream.write_all(&msg).await?;
    Ok(())
}
