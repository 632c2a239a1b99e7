//! Key moves in ring changes (see `kv_cluster::placement`), sent by source leaders and gates:
//!
//! - `KV.MIGRATE`: copies keys in; each is set only if this shard has neither the key nor a
//!   tombstone for it, so an older copy never overwrites a newer write or resurrects a
//!   delete. A copy arriving after the move completed is ignored (0).
//! - `KV.DROP`: deletes old copies on the shard a key moved away from.
//! - `KV.FETCH`: pulls a key before a read-modify-write at its new owner.
//!
//! These go through the node's internal access: fenced (only a leader within its lease) but
//! not limited to the keys the shard serves, since moving keys between owners is their job.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use kv_peer::command::write_fetch_reply;
use kv_peer::{ErrorCode, MigrateItem};
use kv_proto::Out;

use crate::cmd::reply;
use crate::node::{Node, Pending, Refusal};

/// Copies `items` in for ring `version` (see the module documentation): `Ok(n)` keys set,
/// `Err(v)` when this shard does not receive keys for `v` yet.
pub fn import(
    node: &Node,
    version: u64,
    items: &[MigrateItem],
) -> Result<(Result<usize, u64>, Option<Pending>), Refusal> {
    let result = node.write_internal(|w| {
        if w.inbound_done() >= version {
            // The move completed: every key was copied already, and tombstones are gone,
            // so a late copy must not be applied.
            return Ok(0);
        }
        if w.inbound() < version {
            return Err(version);
        }
        Ok(items
            .iter()
            .filter(|i| w.set_if_new(&i.key, i.kind, &i.value, i.expires_at))
            .count())
    });
    if let Ok((Ok(n), _)) = &result {
        node.stats.keys_moved_in.fetch_add(*n as u64, Ordering::Relaxed);
    }
    result
}

pub fn migrate(node: &Node, version: u64, items: &[MigrateItem], out: &mut Out) -> Option<Pending> {
    reply(out, import(node, version, items), |out, r| match r {
        Ok(n) => kv_proto::write::integer(out, n as i64),
        Err(v) => kv_proto::write::error(
            out,
            ErrorCode::TryAgain
                .reply(format_args!("not yet receiving keys for ring version {v}"))
                .as_bytes(),
        ),
    })
}

pub fn drop(node: &Node, keys: &[Bytes], out: &mut Out) -> Option<Pending> {
    let result = node.write_internal(|w| keys.iter().filter(|k| w.del(k)).count());
    reply(out, result, |out, n| kv_proto::write::integer(out, n as i64))
}

pub fn fetch(node: &Node, key: &[u8], out: &mut Out) -> Option<Pending> {
    let result = node.read_internal(|r| {
        r.value(key, |hit| match hit {
            Some((v, at)) => write_fetch_reply(out, Some((v.kind(), &v.payload(), at))),
            None => write_fetch_reply(out, None),
        })
    });
    reply(out, result, |_, ()| {})
}
