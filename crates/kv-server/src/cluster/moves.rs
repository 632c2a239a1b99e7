//! Moving keys in a ring change, on a source shard's leader: count the keys that move, stream
//! them to their new owners in batches (rate-limited), report progress; and, once a ring is
//! final, delete what this shard no longer owns.
//!
//! Copies are idempotent (`KV.MIGRATE` sets a key only if the target has neither the key nor a
//! tombstone for it), so a move that restarts after a failover simply sends everything again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_cluster::Placement;
use kv_peer::{MigrateItem, MoveProgress, PeerCommand};
use tracing::{debug, info};

use super::{Ctx, Links};
use crate::node::{Node, Stats};

/// Store entries visited per lock hold.
const SCAN_CHUNK: usize = 1024;
/// Bytes of keys and values per `KV.MIGRATE` batch, about; a collection encoded bigger than
/// this goes alone, in `KV.MIGRATEPART`s of this size.
const BATCH_BYTES: usize = 256 * 1024;
/// How often progress is published.
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// How long a target may take to apply (and replicate) one batch.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams this shard's keys that move under `placement` (ring `version`) to their new
/// owners. Runs until done; the caller aborts it when the term or the ring changes.
pub(super) async fn send(ctx: Ctx, placement: Arc<Placement>, version: u64) {
    let node = &ctx.node;
    let shard = node.shard.clone();
    let mut progress = MoveProgress {
        version,
        ..Default::default()
    };
    // Count first, so the report has a total.
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        cursor = node.scan(c, SCAN_CHUNK * 4, |k, _, _| {
            if let Some(to) = placement.moved_away(&shard, k) {
                *progress.total.entry(to.to_string()).or_default() += 1;
            }
            true
        });
        tokio::task::yield_now().await;
    }
    for to in progress.total.keys() {
        progress.moved.insert(to.clone(), 0);
    }
    node.report_move(progress.clone());
    info!(version, total = ?progress.total, "moving keys to their new shards");

    let rate = node.config.migration_rate;
    let started = Instant::now();
    let mut sent_total = 0u64;
    let (mut last_report, mut at_last_report) = (Instant::now(), 0u64);
    let mut links = Links::new(ctx.peer.clone());
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        let mut by_dest: BTreeMap<String, Vec<MigrateItem>> = BTreeMap::new();
        let mut big: Vec<(String, MigrateItem)> = Vec::new();
        let mut bytes = 0;
        let now = kv_store::time::now_ms();
        cursor = node.scan(c, SCAN_CHUNK, |k, v, at| {
            if let Some(to) = placement.moved_away(&shard, k)
                && at.is_none_or(|t| t > now)
            {
                // A collection goes in its packed encoding: with the batch, or in parts.
                let value = v.payload();
                bytes += k.len() + value.len();
                let item = MigrateItem {
                    key: Bytes::copy_from_slice(k),
                    kind: v.kind(),
                    value: Bytes::copy_from_slice(&value),
                    expires_at: at,
                };
                if item.value.len() > BATCH_BYTES {
                    big.push((to.to_string(), item));
                } else {
                    by_dest.entry(to.to_string()).or_default().push(item);
                }
            }
            bytes < BATCH_BYTES
        });
        for (to, items) in by_dest {
            let n = items.len() as u64;
            deliver(&ctx, &mut links, &to, PeerCommand::Migrate { version, items }.encode()).await;
            *progress.moved.entry(to).or_default() += n;
            sent_total += n;
        }
        for (to, item) in big {
            deliver_in_parts(&ctx, &mut links, &to, version, item).await;
            *progress.moved.entry(to).or_default() += 1;
            sent_total += 1;
        }
        if rate > 0 {
            // Keep the average at or under the configured rate.
            let due = started + Duration::from_secs_f64(sent_total as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        } else {
            tokio::task::yield_now().await;
        }
        if last_report.elapsed() >= REPORT_EVERY {
            let secs = last_report.elapsed().as_secs_f64();
            progress.rate = ((sent_total - at_last_report) as f64 / secs) as u64;
            (last_report, at_last_report) = (Instant::now(), sent_total);
            node.report_move(progress.clone());
        }
    }
    progress.done = true;
    node.report_move(progress.clone());
    info!(version, moved = ?progress.moved, secs = started.elapsed().as_secs_f64(), "all moving keys sent");
}

/// Sends a collection too big for one message as `KV.MIGRATEPART`s of `BATCH_BYTES`, in
/// order; starts over when the target lost the parts it had (a new leader there).
async fn deliver_in_parts(ctx: &Ctx, links: &mut Links, to: &str, version: u64, item: MigrateItem) {
    let total = item.value.len();
    let mut offset = 0;
    while offset < total {
        let end = (offset + BATCH_BYTES).min(total);
        let part = PeerCommand::MigratePart {
            version,
            item: MigrateItem {
                value: item.value.slice(offset..end),
                ..item.clone()
            },
            offset: offset as u64,
            total: total as u64,
        };
        offset = match deliver(ctx, links, to, part.encode()).await {
            kv_proto::Frame::Integer(-1) => {
                debug!(to, "the target lost the parts sent so far; starting the key over");
                0
            }
            _ => end,
        };
    }
}

/// Sends one batch to the leader of `to`, retrying (over a fresh connection, after a pause)
/// until it is acknowledged (the target replicates it before answering); returns the reply.
async fn deliver(ctx: &Ctx, links: &mut Links, to: &str, cmd: Bytes) -> kv_proto::Frame {
    let mut backoff = Duration::from_millis(20);
    loop {
        let leader = ctx
            .view
            .borrow()
            .shards
            .get(to)
            .and_then(|sv| sv.leader())
            .map(|l| l.cluster_addr.clone());
        if let Some(addr) = leader {
            match links.call(&addr, cmd.clone(), BATCH_TIMEOUT).await {
                Ok(reply) if reply.as_error().is_none() => return reply,
                Ok(reply) => debug!(to, reply = ?reply, "the target refused a batch; retrying"),
                Err(e) => debug!(to, error = %e, "sending a batch failed; retrying"),
            }
        }
        Stats::bump(&ctx.node.stats.move_retries);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Deletes the keys this shard does not own under the final ring `placement`, in batches,
/// while `still` holds (no new move began).
pub async fn clean_up(node: Arc<Node>, placement: Arc<Placement>, still: impl Fn() -> bool) {
    let shard = node.shard.clone();
    let mut cursor = Some(0);
    let mut deleted = 0u64;
    while let Some(c) = cursor {
        if !still() {
            return;
        }
        let mut keys: Vec<Vec<u8>> = Vec::new();
        cursor = node.scan(c, SCAN_CHUNK, |k, _, _| {
            if placement.current().shard_for(k) != Some(shard.as_str()) {
                keys.push(k.to_vec());
            }
            true
        });
        if !keys.is_empty() {
            let result = node.write_internal(|w| {
                for k in &keys {
                    w.del(k);
                }
            });
            match result {
                Ok((_, Some(p))) => {
                    if node.wait_replicated(p).await.is_err() {
                        return;
                    }
                }
                Ok((_, None)) => {}
                Err(_) => return,
            }
            deleted += keys.len() as u64;
        }
        tokio::task::yield_now().await;
    }
    if deleted > 0 {
        info!(
            deleted,
            ring = placement.version,
            "deleted the keys that moved to other shards"
        );
    }
}
