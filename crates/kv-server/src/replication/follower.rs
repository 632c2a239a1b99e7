//! The follower's side of replication: connect to the leader's cluster port (proving the
//! cluster secret), resume or load a snapshot, apply the stream, acknowledge, and hold the
//! read lease the leader's heartbeats grant.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_client::ConnOptions;
use kv_peer::stream::{Ack, LeaderMsg};
use kv_peer::{PeerCommand, SyncRequest};
use kv_proto::{Limits, Request};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use crate::connection::{ConnError, Connection};
use crate::node::following::ApplyError;
use crate::node::{Node, Stats};

/// Why one attempt to follow ended.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("cannot connect to the leader: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("the leader closed the stream")]
    Closed,
    #[error("the leader sent nothing (or took nothing) for {0:?}")]
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

impl From<kv_peer::DecodeError> for FollowError {
    fn from(e: kv_peer::DecodeError) -> Self {
        FollowError::Unexpected(e.to_string())
    }
}

/// Follows the leader whose cluster port is `leader` (of `epoch`) for as long as this
/// node's role stays in `term`, reconnecting with backoff when the stream breaks.
pub async fn follow(node: Arc<Node>, options: ConnOptions, leader: String, epoch: u64, term: u64) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let result = follow_once(&node, &options, &leader, epoch, term).await;
        // Whatever ended the stream, the leader no longer vouches for this replica.
        node.revoke_read_lease();
        match result {
            Err(FollowError::Apply(ApplyError::StaleTerm)) => return,
            Err(e) => warn!(leader, error = %e, "replication from the leader stopped; reconnecting"),
            Ok(()) => {}
        }
        if !node.in_term(term) {
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

/// The acks sent recently, to turn a heartbeat's echo into a read lease measured from when
/// the echoed ack was *sent* (see `kv_peer::stream`).
struct Acks {
    seq: u64,
    sent: VecDeque<(u64, Instant)>,
}

impl Acks {
    fn new() -> Acks {
        Acks {
            seq: 0,
            sent: VecDeque::new(),
        }
    }

    async fn send(&mut self, conn: &mut Connection, offset: u64, limit: Duration) -> Result<(), FollowError> {
        self.seq += 1;
        let now = Instant::now();
        self.sent.push_back((self.seq, now));
        // Older acks can no longer grant a lease that matters.
        while self.sent.len() > 64 {
            self.sent.pop_front();
        }
        let msg = Ack { offset, seq: self.seq }.encode();
        match tokio::time::timeout(limit, conn.stream.write_all(&msg)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(FollowError::Silent(limit)),
        }
    }

    fn sent_at(&self, seq: u64) -> Option<Instant> {
        self.sent.iter().find(|(s, _)| *s == seq).map(|(_, t)| *t)
    }
}

async fn follow_once(
    node: &Node,
    options: &ConnOptions,
    leader: &str,
    epoch: u64,
    term: u64,
) -> Result<(), FollowError> {
    let stream = kv_client::open(leader, options).await.map_err(FollowError::Connect)?;
    let mut conn = Connection::new(stream, limits(node));
    let silence = node.config.replica_timeout();
    let sync = PeerCommand::Sync(SyncRequest {
        node_id: node.id.clone(),
        position: node.position(),
        known_epoch: epoch,
    });
    match tokio::time::timeout(silence, conn.stream.write_all(&sync.encode())).await {
        Ok(r) => r?,
        Err(_) => return Err(FollowError::Silent(silence)),
    }
    let mut acks = Acks::new();
    let reply = next_within(node, &mut conn, silence).await?;
    match LeaderMsg::parse(&reply)? {
        LeaderMsg::FullSync {
            epoch: leader_epoch,
            offset: at,
        } => {
            check_epoch(leader_epoch, epoch)?;
            node.begin_snapshot(term)?;
            let mut keys = 0;
            loop {
                let req = next_within(node, &mut conn, silence).await?;
                match LeaderMsg::parse(&req)? {
                    LeaderMsg::Snap { offset, quads } => keys += node.load_snapshot_chunk(term, offset, quads)?,
                    LeaderMsg::SnapIn {
                        version,
                        done,
                        tombstones,
                    } => node.load_inbound(term, version, done, tombstones)?,
                    LeaderMsg::SnapEnd { .. } => break,
                    other => return Err(FollowError::Unexpected(format!("{other:?}"))),
                }
            }
            node.finish_snapshot(term, leader_epoch, at)?;
            Stats::bump(&node.stats.full_syncs_done);
            info!(leader, keys, at, "loaded a full snapshot from the leader");
            acks.send(&mut conn, at, silence).await?;
        }
        LeaderMsg::Continue {
            epoch: leader_epoch,
            after,
        } => {
            check_epoch(leader_epoch, epoch)?;
            Stats::bump(&node.stats.partial_syncs_done);
            info!(leader, after, "resuming replication from the leader's backlog");
        }
        LeaderMsg::Refused(msg) => return Err(FollowError::Refused(msg)),
        other => return Err(FollowError::Unexpected(format!("{other:?}"))),
    }

    let lease = node.config.read_lease();
    let mut batch: Vec<Request> = Vec::new();
    loop {
        let mut pinged = None;
        while let Some(req) = conn.parse().map_err(ConnError::from)? {
            if kv_peer::log::is_entry(&req) {
                batch.push(req);
                continue;
            }
            match LeaderMsg::parse(&req)? {
                LeaderMsg::Ping { ack_seq, in_sync } => pinged = Some((ack_seq, in_sync)),
                other => return Err(FollowError::Unexpected(format!("{other:?}"))),
            }
        }
        let applied = !batch.is_empty();
        if applied {
            node.apply_entries(term, &batch)?;
            batch.clear();
        }
        if let Some((seq, true)) = pinged
            && let Some(sent) = acks.sent_at(seq)
        {
            node.grant_read_lease(term, sent + lease);
        }
        if applied || pinged.is_some() {
            acks.send(&mut conn, node.last_offset(), silence).await?;
        }
        match tokio::time::timeout(silence, conn.read_more()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(FollowError::Closed),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                Stats::bump(&node.stats.replica_timeouts);
                return Err(FollowError::Silent(silence));
            }
        }
    }
}

/// The next message from the leader, which must arrive within `limit`.
async fn next_within(node: &Node, conn: &mut Connection, limit: Duration) -> Result<Request, FollowError> {
    match tokio::time::timeout(limit, conn.next_request()).await {
        Ok(r) => r?.ok_or(FollowError::Closed),
        Err(_) => {
            Stats::bump(&node.stats.replica_timeouts);
            Err(FollowError::Silent(limit))
        }
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
