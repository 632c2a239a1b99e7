//! The leader's side of replication: serving one follower, and the lag monitor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kv_peer::SyncRequest;
use kv_peer::stream::{self, Ack};
use kv_proto::{Limits, RequestParser};
use kv_tls::{ReadHalf, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::connection::Connection;
use crate::node::leading::{LogRead, SyncPlan};
use crate::node::{Node, Stats};

/// Entries per snapshot chunk, at most.
const SNAPSHOT_CHUNK_ENTRIES: usize = 1024;
/// Bytes per snapshot chunk, about (one entry may exceed it).
const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;
/// Log entries sent per write, at most.
const STREAM_BATCH: usize = 1024;

/// Why a follower stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("leadership changed")]
    SteppedDown,
    #[error("the follower fell behind the backlog; it will resynchronise fully")]
    BacklogTrimmed,
    #[error("the follower took nothing or sent nothing for {0:?}")]
    Silent(Duration),
    #[error("follower connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("follower sent: {0}")]
    Protocol(String),
}

impl From<LogRead> for StreamError {
    fn from(e: LogRead) -> Self {
        match e {
            LogRead::StaleTerm => StreamError::SteppedDown,
            LogRead::Trimmed => StreamError::BacklogTrimmed,
        }
    }
}

impl From<crate::node::StaleTerm> for StreamError {
    fn from(_: crate::node::StaleTerm) -> Self {
        StreamError::SteppedDown
    }
}

/// Serves a follower that sent `KV.SYNC` on `conn` until it disconnects, falls behind the
/// backlog, or this node stops leading.
pub async fn serve_follower(node: Arc<Node>, conn: Connection, req: SyncRequest, mut shutdown: watch::Receiver<bool>) {
    let conn_id = node.next_conn_id();
    let result = tokio::select! {
        r = stream(&node, conn, &req, conn_id) => r,
        _ = shutdown.changed() => Ok(()),
    };
    node.follower_left(&req.node_id, conn_id);
    match result {
        Ok(()) | Err(StreamError::SteppedDown) => {}
        Err(StreamError::Io(e)) => info!(follower = req.node_id, error = %e, "follower disconnected"),
        Err(e) => warn!(follower = req.node_id, error = %e, "follower stream ended"),
    }
}

async fn stream(node: &Node, mut conn: Connection, req: &SyncRequest, conn_id: u64) -> Result<(), StreamError> {
    let limit = node.config.replica_timeout();
    let plan = match node.plan_sync(req, conn_id) {
        Ok(p) => p,
        Err(msg) => {
            write_within(&mut conn.stream, &stream::refuse(&msg), limit).await?;
            return Err(StreamError::Refused(msg));
        }
    };
    let next = match plan.resume_after {
        Some(after) => {
            Stats::bump(&node.stats.partial_syncs_served);
            info!(follower = req.node_id, after, "follower resumes from the backlog");
            write_within(&mut conn.stream, &stream::resume(plan.epoch, after), limit).await?;
            after + 1
        }
        None => {
            let at = send_snapshot(node, &mut conn, req, conn_id, plan).await?;
            Stats::bump(&node.stats.full_syncs_served);
            at + 1
        }
    };
    let Connection { stream, input, .. } = conn;
    let (read, write) = stream.into_split();
    tokio::select! {
        r = read_acks(node, read, input, &req.node_id, conn_id) => r,
        r = send_log(node, write, next, plan.term, &req.node_id, conn_id) => r,
    }
}

/// Sends a snapshot taken in chunks while writes continue; returns the offset it starts at.
async fn send_snapshot(
    node: &Node,
    conn: &mut Connection,
    req: &SyncRequest,
    conn_id: u64,
    plan: SyncPlan,
) -> Result<u64, StreamError> {
    // A follower in the confirmed in-sync set may be elected; it must leave the set before
    // its store is emptied.
    let deadline = Instant::now() + node.config.session_timeout() * 2;
    while node.is_confirmed(&req.node_id, plan.term)? {
        if Instant::now() > deadline {
            return Err(StreamError::Refused(
                "could not remove the follower from the in-sync set".into(),
            ));
        }
        node.poke_isr();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (at, inbound) = node.snapshot_begin(plan.term)?;
    info!(follower = req.node_id, at, "sending a full snapshot");
    let limit = node.config.replica_timeout();
    write_within(&mut conn.stream, &stream::full_sync(plan.epoch, at), limit).await?;
    let mut cursor = Some(0);
    let mut body = BytesMut::new();
    while let Some(c) = cursor {
        body.clear();
        let (n, taken_at);
        (cursor, n, taken_at) =
            node.snapshot_chunk(plan.term, c, SNAPSHOT_CHUNK_ENTRIES, SNAPSHOT_CHUNK_BYTES, &mut body)?;
        if n == 0 {
            continue;
        }
        let mut head = BytesMut::new();
        stream::write_snap_header(&mut head, taken_at, n);
        write_within(&mut conn.stream, &head, limit).await?;
        write_within(&mut conn.stream, &body, limit).await?;
    }
    if let Some(inbound) = inbound {
        let msg = stream::snap_in(inbound.version, inbound.done, inbound.tombstones.iter().map(|t| &t[..]));
        write_within(&mut conn.stream, &msg, limit).await?;
    }
    write_within(&mut conn.stream, &stream::snap_end(at), limit).await?;
    node.follower_streaming(&req.node_id, conn_id);
    Ok(at)
}

/// Writes `buf`, failing when the follower does not take it within `limit` (a stopped
/// follower fills the socket buffers and would block the stream forever).
async fn write_within<W: AsyncWriteExt + Unpin>(
    stream: &mut W,
    buf: &[u8],
    limit: Duration,
) -> Result<(), StreamError> {
    match tokio::time::timeout(limit, stream.write_all(buf)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StreamError::Silent(limit)),
    }
}

/// Streams log entries from `next` on, as they are appended, with a heartbeat
/// (`KV.PING`, see `kv_peer::stream`) at least every heartbeat interval, busy or idle.
async fn send_log(
    node: &Node,
    mut write: WriteHalf,
    mut next: u64,
    term: u64,
    id: &str,
    conn_id: u64,
) -> Result<(), StreamError> {
    let mut appended = node.subscribe_appended();
    let mut batch: Vec<Bytes> = Vec::with_capacity(STREAM_BATCH);
    let mut out = BytesMut::new();
    let interval = node.config.heartbeat_interval();
    let limit = node.config.replica_timeout();
    let mut last_ping = Instant::now() - interval;
    loop {
        batch.clear();
        node.read_log(term, next, STREAM_BATCH, &mut batch)?;
        out.clear();
        next += batch.len() as u64;
        for f in &batch {
            out.extend_from_slice(f);
        }
        if last_ping.elapsed() >= interval {
            let Some((seq, grant)) = node.heartbeat(id, conn_id) else {
                return Ok(());
            };
            out.extend_from_slice(&stream::ping(seq, grant));
            last_ping = Instant::now();
        }
        if !out.is_empty() {
            write_within(&mut write, &out, limit).await?;
        }
        if batch.is_empty() {
            appended.borrow_and_update();
            // Re-check after marking seen, so an append in between is not missed.
            if node.last_offset() < next {
                let wait = interval.saturating_sub(last_ping.elapsed());
                if let Ok(Err(_)) = tokio::time::timeout(wait, appended.changed()).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads `KV.ACK <offset> <seq>` from the follower and records its progress.
async fn read_acks(
    node: &Node,
    mut read: ReadHalf,
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
                Ok(Some(req)) => acked = Some(Ack::parse(&req).map_err(|e| StreamError::Protocol(e.to_string()))?),
                Ok(None) => break,
                Err(e) => return Err(StreamError::Protocol(e.to_string())),
            }
        }
        if let Some(ack) = acked {
            node.follower_acked(id, conn_id, ack.offset, ack.seq);
        }
        match tokio::time::timeout(silence, read.read_buf(&mut input)).await {
            Ok(Ok(0)) => return Err(StreamError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                Stats::bump(&node.stats.replica_timeouts);
                return Err(StreamError::Silent(silence));
            }
        }
    }
}

/// Periodically evaluates followers' lag: followers that caught up become wanted in the
/// in-sync set, followers that lag too long stop being wanted, lapsed read leases stop being
/// waited for. Pokes the shard-state writer when the set it should hold changed.
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
        if node.tick_followers() {
            node.poke_isr();
        }
    }
}
