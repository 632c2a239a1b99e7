//! Commands about the whole keyspace, sent to every shard and combined: FLUSHALL, FLUSHDB,
//! KEYS, RANDOMKEY; and SCAN, whose cursor walks the shards one after another (in an order
//! that keeps Redis's guarantee across a ring change, see [`SHARD_BITS`]).
//!
//! Each is queued on the shards' connections when it arrives, with the client's affinity, so
//! it keeps its place in the client's pipeline on every shard (a `FLUSHALL` followed by a
//! `SET` never deletes that `SET`'s key).
//!
//! While keys move between shards, a key can be on two shards at once: the new owner's copy
//! counts, the old owner's only when the new owner has none (as reads fall back). A shard's
//! key that the ring places elsewhere (a copy awaiting clean-up) is left out.

use std::collections::HashSet;

use bytes::Bytes;
use kv_proto::{CommandBuilder, Frame, Request};

use super::command::Every;
use super::forward_error;
use crate::forward::{Access, Forwarder, InFlight};
use crate::routing::{Routing, Target};

/// A gate's `SCAN` cursor: `[shard cursor: 38 bits][walk tag: 16][shard index: 10]`. The
/// index is the shard's position in [`Routing::scan_order`], the tag a hash of that order:
/// when the order changed between two calls (a ring change began or ended), the walk starts
/// over in the new order, so a key present for the whole scan is still returned at least
/// once (twice is allowed, as in Redis).
const SHARD_BITS: u32 = 10;
const TAG_BITS: u32 = 16;
const INNER_SHIFT: u32 = SHARD_BITS + TAG_BITS;

fn walk_tag(order: &[String]) -> u64 {
    kv_proto::hash::hash64(order.join("\n").as_bytes()) & ((1 << TAG_BITS) - 1)
}

/// A whole-keyspace command in flight.
pub struct EveryFlight {
    every: Every,
    /// Each shard's name and its reply to come.
    parts: Vec<(String, InFlight)>,
    /// SCAN: which shard of how many answered, and the walk's tag.
    scan_position: (u64, u64, u64),
}

fn invalid_cursor() -> Frame {
    Frame::error("ERR invalid cursor")
}

/// Queues the command on every shard (SCAN: on the shard its cursor is at).
pub async fn start(fwd: &Forwarder, every: Every, req: &Request, affinity: usize) -> Result<EveryFlight, Frame> {
    // Every shard holding keys, the one leaving the ring during a move included (its keys
    // not moved yet are still only there): the order SCAN walks.
    let mut names = fwd.routing().scan_order();
    if names.is_empty() && fwd.wait_for_shards().await {
        names = fwd.routing().scan_order();
    }
    if names.is_empty() {
        return Err(Frame::error("CLUSTERDOWN no shard is registered in the cluster yet"));
    }
    let access = match every {
        Every::Flush => Access::Write,
        _ => Access::Read,
    };
    if every == Every::Scan {
        let cursor = std::str::from_utf8(&req.args()[1])
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(invalid_cursor)?;
        let order = names;
        let tag = walk_tag(&order);
        let mut index = cursor & ((1 << SHARD_BITS) - 1);
        let mut inner = cursor >> INNER_SHIFT;
        if cursor != 0 && (cursor >> SHARD_BITS) & ((1 << TAG_BITS) - 1) != tag {
            // The shards changed since this walk began: start over in the new order.
            (index, inner) = (0, 0);
        }
        let Some(shard) = order.get(index as usize) else {
            return Err(invalid_cursor());
        };
        let mut cmd = CommandBuilder::new(req.len()).arg(b"SCAN").uint(inner);
        for a in &req.args()[2..] {
            cmd = cmd.arg(a);
        }
        let flight = fwd
            .start(Target::Shard(shard.clone()), access, cmd.finish(), affinity)
            .await;
        return Ok(EveryFlight {
            every,
            parts: vec![(shard.clone(), flight)],
            scan_position: (index, order.len() as u64, tag),
        });
    }
    let bytes = kv_proto::write::command(req.args().iter().map(|a| &a[..]));
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        let flight = fwd
            .start(Target::Shard(name.clone()), access, bytes.clone(), affinity)
            .await;
        parts.push((name, flight));
    }
    Ok(EveryFlight {
        every,
        parts,
        scan_position: (0, 0, 0),
    })
}

/// True when `shard`'s copy of `key` is the one to report: the shard serves it, or it is
/// the new owner of a moving key, or the old owner of one the new owner lacks (`at_new`).
fn reported(routing: &Routing, shard: &str, key: &[u8], at_new: &HashSet<Bytes>) -> bool {
    match routing.moving(key) {
        Some((from, to, _)) => shard == to || (shard == from && !at_new.contains(key)),
        None => routing.owner(key) == Some(shard),
    }
}

impl EveryFlight {
    pub async fn finish(self, fwd: &Forwarder) -> Frame {
        let mut replies = Vec::with_capacity(self.parts.len());
        for (shard, flight) in self.parts {
            match flight.finish(fwd).await {
                Ok(e @ Frame::Error(_)) => return e,
                Ok(f) => replies.push((shard, f)),
                Err(e) => return forward_error(&e),
            }
        }
        let routing = fwd.routing();
        match self.every {
            Every::Flush => Frame::simple("OK"),
            Every::Keys => {
                let per_shard: Vec<(String, Vec<Bytes>)> =
                    replies.into_iter().map(|(shard, f)| (shard, bulk_items(f))).collect();
                Frame::Array(combine_keys(&routing, per_shard).into_iter().map(Frame::Bulk).collect())
            }
            Every::RandomKey => {
                let keys: Vec<Bytes> = replies.into_iter().filter_map(|(_, f)| f.as_bytes().cloned()).collect();
                if keys.is_empty() {
                    Frame::Null
                } else {
                    Frame::Bulk(keys[fastrand::usize(..keys.len())].clone())
                }
            }
            Every::Scan => {
                let Some((shard, Frame::Array(mut items))) = replies.pop() else {
                    return Frame::error("ERR unexpected SCAN reply from a shard");
                };
                if items.len() != 2 {
                    return Frame::error("ERR unexpected SCAN reply from a shard");
                }
                let keys = bulk_items(items.pop().unwrap_or(Frame::Null));
                let inner = items[0]
                    .as_bytes()
                    .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok());
                let Some(inner) = inner else {
                    return Frame::error("ERR unexpected SCAN reply from a shard");
                };
                let (index, count, tag) = self.scan_position;
                // Slab positions are u32s: a shard cursor always fits its 38 bits.
                let next = if inner != 0 {
                    (inner << INNER_SHIFT) | (tag << SHARD_BITS) | index
                } else if index + 1 < count {
                    (tag << SHARD_BITS) | (index + 1)
                } else {
                    0
                };
                let keys = combine_keys(&routing, vec![(shard, keys)]);
                Frame::Array(vec![
                    Frame::bulk(next.to_string()),
                    Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
                ])
            }
        }
    }
}

fn bulk_items(f: Frame) -> Vec<Bytes> {
    match f {
        Frame::Array(items) => items.into_iter().filter_map(|i| i.as_bytes().cloned()).collect(),
        _ => Vec::new(),
    }
}

/// The keys to report from each shard's list, each once.
fn combine_keys(routing: &Routing, per_shard: Vec<(String, Vec<Bytes>)>) -> Vec<Bytes> {
    // Keys held by a moving key's new owner, to skip the old owner's copies of them.
    let at_new: HashSet<Bytes> = per_shard
        .iter()
        .flat_map(|(shard, keys)| {
            keys.iter()
                .filter(move |k| routing.moving(k).is_some_and(|(_, to, _)| to == shard))
                .cloned()
        })
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (shard, keys) in per_shard {
        for k in keys {
            if reported(routing, &shard, &k, &at_new) && seen.insert(k.clone()) {
                out.push(k);
            }
        }
    }
    out
}
