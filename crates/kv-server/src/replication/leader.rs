//! The leader's side of replication: serving one follower, and the lag monitor.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kv_proto::{CommandBuilder, Limits, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cmd::{Args, CmdError};
use crate::connection::Connection;
use crate::node::{Node, Role};
use crate::replication::ops::parse_u64;

/// Entries per snapshot chunk, at most.
const SNAPSHOT_CHUNK_ENTRIES: usize = 1024;
/// Bytes per snapshot chunk, about (one entry may exceed it).
const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
/// Log entries sent per write, at most.
const STREAM_BATCH: usize = 1024;

/// `KV.SYNC <node-id> <last-epoch|-> <last-offset|-> <known-epoch>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The follower's node id.
    pub node_id: String,
    /// The follower's last applied entry, `None` when it must copy everything.
    pub position: Option<(u64, u64)>,
    /// The highest epoch the follower has seen: a leader below it is stale.
    pub known_epoch: u64,
}

impl SyncRequest {
    pub fn parse(args: &mut Args) -> Result<SyncRequest, CmdError> {
        let id = args.arg()?;
        let epoch = args.arg()?;
        let offset = args.arg()?;
        let known = args.arg()?;
        args.finish()?;
        let bad = || CmdError::Other("bad KV.SYNC arguments".into());
        let position = match (&epoch[..], &offset[..]) {
            (b"-", b"-") => None,
            (e, o) => Some((parse_u64(e).ok_or_else(bad)?, parse_u64(o).ok_or_else(bad)?)),
        };
        Ok(SyncRequest {
            node_id: String::from_utf8(id.to_vec()).map_err(|_| bad())?,
            position,
            known_epoch: parse_u64(&known).ok_or_else(bad)?,
        })
    }

    /// The request's encoding.
    pub fn encode(&self) -> Bytes {
        let (e, o) = match self.position {
            Some((e, o)) => (e.to_string(), o.to_string()),
            None => ("-".into(), "-".into()),
        };
        CommandBuilder::new(5)
            .arg(b"KV.SYNC")
            .arg(self.node_id.as_bytes())
            .arg(e.as_bytes())
            .arg(o.as_bytes())
            .uint(self.known_epoch)
            .finish()
    }
}

/// Why a follower stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("leadership changed")]
    SteppedDown,
    #[error("the follower fell behind the backlog; it will resynchronise fully")]
    BacklogTrimmed,
    #[error("the follower sent nothing for {0:?}")]
    Silent(Duration),
    #[error("follower connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("follower sent: {0}")]
    Protocol(String),
}

/// Serves a follower that sent `KV.SYNC` on `conn` until it disconnects, falls behind the
/// backlog, or this node stops leading.
pub async fn serve_follower(node: Arc<Node>, conn: Connection, req: SyncRequest, mut shutdown: watch::Receiver<bool>) {
    let conn_id = node.next_conn_id();
    let result = tokio::select! {
        r = stream(&node, conn, &req, conn_id) => r,
        _ = shutdown.changed() => Ok(()),
    };
    {
        let mut d = node.lock();
        d.followers.detach(&req.node_id, conn_id);
        d.follower_left();
        node.publish_commit(&d);
    }
    node.poke_cluster();
    match result {
        Ok(()) | Err(StreamError::SteppedDown) => {}
        Err(StreamError::Io(e)) => info!(follower = req.node_id, error = %e, "follower disconnected"),
        Err(e) => warn!(follower = req.node_id, error = %e, "follower stream ended"),
    }
}

enum Plan {
    Resume { after: u64 },
    Full,
}

/// Decides how to bring the follower up to date and registers its progress.
fn plan(node: &Node, req: &SyncRequest, conn_id: u64) -> Result<(Plan, u64, u64), String> {
    let mut d = node.lock();
    let Role::Leader { epoch } = d.role else {
        return Err("not the leader".into());
    };
    if req.known_epoch > epoch {
        return Err(format!(
            "leader epoch {epoch} is older than the follower's {}",
            req.known_epoch
        ));
    }
    let now = Instant::now();
    let plan = match req.position.filter(|&(e, o)| d.log.can_resume(e, o)) {
        Some((_, after)) => {
            d.followers.attach(&req.node_id, conn_id, after, true, now);
            Plan::Resume { after }
        }
        None => {
            d.followers.attach(&req.node_id, conn_id, 0, false, now);
            Plan::Full
        }
    };
    node.publish_commit(&d);
    Ok((plan, epoch, d.term))
}

async fn stream(node: &Node, mut conn: Connection, req: &SyncRequest, conn_id: u64) -> Result<(), StreamError> {
    let (plan, epoch, term) = match plan(node, req, conn_id) {
        Ok(p) => p,
        Err(msg) => {
            conn.output
                .extend_from_slice(&CommandBuilder::new(2).arg(b"KV.ERR").arg(msg.as_bytes()).finish());
            conn.flush().await?;
            return Err(StreamError::Refused(msg));
        }
    };
    let next = match plan {
        Plan::Resume { after } => {
            node.stats.partial_syncs_served.fetch_add(1, Ordering::Relaxed);
            info!(follower = req.node_id, after, "follower resumes from the backlog");
            let reply = CommandBuilder::new(3)
                .arg(b"KV.CONTINUE")
                .uint(epoch)
                .uint(after)
                .finish();
            conn.stream.write_all(&reply).await?;
            after + 1
        }
        Plan::Full => {
            let at = send_snapshot(node, &mut conn, req, conn_id, epoch, term).await?;
            node.stats.full_syncs_served.fetch_add(1, Ordering::Relaxed);
            at + 1
        }
    };
    let Connection { stream, input, .. } = conn;
    let (read, write) = stream.into_split();
    tokio::select! {
        r = read_acks(node, read, input, &req.node_id, conn_id) => r,
        r = send_log(node, write, next, term) => r,
    }
}

/// Sends a snapshot taken in chunks while writes continue; returns the offset it starts at.
async fn send_snapshot(
    node: &Node,
    conn: &mut Connection,
    req: &SyncRequest,
    conn_id: u64,
    epoch: u64,
    term: u64,
) -> Result<u64, StreamError> {
    // A follower in the confirmed in-sync set may be elected; it must leave the set before
    // its store is emptied.
    let deadline = Instant::now() + node.config.session_timeout() * 2;
    loop {
        {
            let d = node.lock();
            if d.term != term {
                return Err(StreamError::SteppedDown);
            }
            if !d.followers.confirmed().contains(&req.node_id) {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(StreamError::Refused(
                "could not remove the follower from the in-sync set".into(),
            ));
        }
        node.poke_cluster();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (at, inbound) = {
        let d = node.lock();
        if d.term != term {
            return Err(StreamError::SteppedDown);
        }
        // A shard receiving keys in a ring change hands its tombstones on too, so a follower
        // elected mid-move still refuses to resurrect deleted keys.
        let inbound = (d.inbound.is_some() || d.inbound_done > 0).then(|| {
            (
                d.inbound.unwrap_or(0),
                d.inbound_done,
                d.tombstones.iter().cloned().collect::<Vec<_>>(),
            )
        });
        (d.log.last_offset(), inbound)
    };
    info!(follower = req.node_id, at, "sending a full snapshot");
    let limit = node.config.replica_timeout();
    let head = CommandBuilder::new(3).arg(b"KV.FULLSYNC").uint(epoch).uint(at).finish();
    write_within(&mut conn.stream, &head, limit).await?;
    let mut cursor = Some(0);
    let mut body = BytesMut::new();
    while let Some(c) = cursor {
        body.clear();
        let mut n = 0;
        {
            let d = node.lock();
            if d.term != term {
                return Err(StreamError::SteppedDown);
            }
            cursor = d.store.scan(c, SNAPSHOT_CHUNK_ENTRIES, |k, v, at| {
                kv_proto::write::bulk(&mut body, k);
                kv_proto::write::bulk(&mut body, v);
                kv_proto::write::bulk(&mut body, at.unwrap_or(0).to_string().as_bytes());
                n += 1;
                body.len() < SNAPSHOT_CHUNK_BYTES
            });
        }
        if n == 0 {
            continue;
        }
        let mut head = BytesMut::new();
        kv_proto::write::array_header(&mut head, 1 + 3 * n);
        kv_proto::write::bulk(&mut head, b"KV.SNAP");
        write_within(&mut conn.stream, &head, limit).await?;
        write_within(&mut conn.stream, &body, limit).await?;
    }
    if let Some((version, done, tombstones)) = inbound {
        // KV.SNAPIN <inbound-version|0> <inbound-done> <tombstone>...
        let mut msg = BytesMut::new();
        kv_proto::write::array_header(&mut msg, 3 + tombstones.len());
        kv_proto::write::bulk(&mut msg, b"KV.SNAPIN");
        kv_proto::write::bulk(&mut msg, version.to_string().as_bytes());
        kv_proto::write::bulk(&mut msg, done.to_string().as_bytes());
        for k in &tombstones {
            kv_proto::write::bulk(&mut msg, k);
        }
        write_within(&mut conn.stream, &msg, limit).await?;
    }
    let end = CommandBuilder::new(2).arg(b"KV.SNAPEND").uint(at).finish();
    write_within(&mut conn.stream, &end, limit).await?;
    let mut d = node.lock();
    d.followers.mark_streaming(&req.node_id, conn_id);
    Ok(at)
}

/// Writes `buf`, failing when the follower does not take it within `limit` (a stopped
/// follower fills the socket buffers and would block the snapshot forever).
async fn write_within(stream: &mut TcpStream, buf: &[u8], limit: Duration) -> Result<(), StreamError> {
    match tokio::time::timeout(limit, stream.write_all(buf)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StreamError::Silent(limit)),
    }
}

/// Streams log entries from `next` on, as they are appended; a heartbeat (`KV.PING`) when
/// nothing was sent for a heartbeat interval, so the follower's answers show it is alive.
async fn send_log(node: &Node, mut write: OwnedWriteHalf, mut next: u64, term: u64) -> Result<(), StreamError> {
    let mut appended = node.subscribe_appended();
    let mut batch: Vec<Bytes> = Vec::with_capacity(STREAM_BATCH);
    let mut out = BytesMut::new();
    let heartbeat = node.config.heartbeat_interval();
    let ping = CommandBuilder::new(1).arg(b"KV.PING").finish();
    loop {
        batch.clear();
        {
            let d = node.lock();
            if d.term != term {
                return Err(StreamError::SteppedDown);
            }
            d.log
                .read_from(next, STREAM_BATCH, &mut batch)
                .map_err(|_| StreamError::BacklogTrimmed)?;
        }
        if batch.is_empty() {
            appended.borrow_and_update();
            // Re-check after marking seen, so an append in between is not missed.
            let more = node.lock().log.last_offset() >= next;
            if !more {
                match tokio::time::timeout(heartbeat, appended.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Ok(()),
                    Err(_) => write.write_all(&ping).await?,
                }
            }
            continue;
        }
        next += batch.len() as u64;
        out.clear();
        for f in &batch {
            out.extend_from_slice(f);
        }
        write.write_all(&out).await?;
    }
}

/// Reads `KV.ACK <offset>` from the follower and records its progress.
async fn read_acks(
    node: &Node,
    mut read: OwnedReadHalf,
    mut input: BytesMut,
    id: &str,
    conn_id: u64,
) -> Result<(), StreamError> {
    let limits = Limits {
        max_bulk_len: 64,
        max_multibulk_len: 4,
        max_inline_len: 256,
        max_query_buffer: 64 * 1024,
    };
    let mut parser = RequestParser::new(limits);
    let silence = node.config.replica_timeout();
    loop {
        let mut acked = None;
        loop {
            match parser.parse(&mut input) {
                Ok(Some(req)) => {
                    let a = req.args();
                    match (a.len(), a.first().map(|n| n.eq_ignore_ascii_case(b"KV.ACK"))) {
                        (2, Some(true)) => {
                            acked = Some(parse_u64(&a[1]).ok_or_else(|| StreamError::Protocol("bad ack".into()))?)
                        }
                        _ => return Err(StreamError::Protocol("expected KV.ACK".into())),
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(StreamError::Protocol(e.to_string())),
            }
        }
        if let Some(offset) = acked {
            let mut d = node.lock();
            if d.followers.ack(id, conn_id, offset) {
                node.publish_commit(&d);
            }
        }
        match tokio::time::timeout(silence, read.read_buf(&mut input)).await {
            Ok(Ok(0)) => return Err(StreamError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                node.stats.replica_timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(StreamError::Silent(silence));
            }
        }
    }
}

/// Periodically evaluates followers' lag: followers that caught up become wanted in the
/// in-sync set, followers that lag too long stop being wanted. Pokes the cluster runtime
/// when the set it should hold changed.
pub async fn monitor(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let lag = node.config.lag_timeout();
    let period = (lag / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let mut d = node.lock();
        if !matches!(d.role, Role::Leader { .. }) || d.followers.idle() {
            continue;
        }
        let last = d.log.last_offset();
        d.followers.tick(Instant::now(), last, lag);
        node.publish_commit(&d);
        let changed = d.followers.desired() != *d.followers.confirmed();
        drop(d);
        if changed {
            node.poke_cluster();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_proto::Request;

    #[test]
    fn sync_request_round_trip() {
        for position in [None, Some((3, 99))] {
            let r = SyncRequest {
                node_id: "n1".into(),
                position,
                known_epoch: 4,
            };
            let req = RequestParser::new(Limits::REDIS)
                .parse(&mut BytesMut::from(&r.encode()[..]))
                .unwrap()
                .unwrap();
            let mut args = Args::new(req);
            assert_eq!(SyncRequest::parse(&mut args).unwrap(), r);
        }
        let bad = Request::new(
            ["KV.SYNC", "n", "x", "1", "1"]
                .iter()
                .map(|s| Bytes::from(s.to_string()))
                .collect(),
        );
        assert!(SyncRequest::parse(&mut Args::new(bad)).is_err());
    }
}
