//! Key moves in ring changes (see `kv_cluster::placement`), sent by source leaders and gates:
//!
//! - `KV.MIGRATE`: copies keys in; each is set only if this shard has neither the key nor a
//!   tombstone for it, so an older copy never overwrites a newer write or resurrects a
//!   delete. A copy arriving after the move completed is ignored (0).
//! - `KV.MIGRATEPART`: a collection too big for one message, in parts; they are staged
//!   ([`Staging`]) and the key is set as by `KV.MIGRATE` when the last arrives, so no client
//!   ever sees part of it.
//! - `KV.DROP`: deletes old copies on the shard a key moved away from.
//! - `KV.FETCH`: pulls a key before a read-modify-write at its new owner.
//!
//! These go through the node's internal access: fenced (only a leader within its lease) but
//! not limited to the keys the shard serves, since moving keys between owners is their job.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
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

/// Collections arriving in `KV.MIGRATEPART`s, by key, until their last part. Bounded by the
/// senders: each source leader sends one big key at a time to a shard, and what a sender
/// that vanished left behind is dropped when a part of a later ring version arrives.
#[derive(Default)]
pub struct Staging {
    keys: HashMap<Bytes, Staged>,
}

struct Staged {
    version: u64,
    total: u64,
    bytes: BytesMut,
}

/// A part that does not continue what is staged for its key: the sender starts over.
#[derive(Debug, PartialEq, Eq)]
pub struct OutOfOrder;

impl Staging {
    /// Adds bytes `offset..` of `key`'s encoding of `total` bytes; the whole encoding once
    /// this was its last part.
    pub fn add(
        &mut self,
        version: u64,
        key: &Bytes,
        part: &[u8],
        offset: u64,
        total: u64,
    ) -> Result<Option<Bytes>, OutOfOrder> {
        self.keys.retain(|_, s| s.version >= version);
        if offset == 0 {
            // Grown as parts arrive, never reserved from the declared total.
            let fresh = Staged {
                version,
                total,
                bytes: BytesMut::new(),
            };
            self.keys.insert(key.clone(), fresh);
        }
        let Some(s) = self.keys.get_mut(key) else {
            return Err(OutOfOrder);
        };
        if s.version != version || s.total != total || s.bytes.len() as u64 != offset {
            self.keys.remove(key);
            return Err(OutOfOrder);
        }
        s.bytes.extend_from_slice(part);
        if (s.bytes.len() as u64) < total {
            return Ok(None);
        }
        Ok(self.keys.remove(key).map(|s| s.bytes.freeze()))
    }

    /// Keys with parts staged.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// `KV.MIGRATEPART` (see the module documentation).
pub fn migrate_part(
    node: &Node,
    version: u64,
    item: MigrateItem,
    offset: u64,
    total: u64,
    out: &mut Out,
) -> Option<Pending> {
    let staged = node.inbound_parts.lock().unwrap_or_else(|e| e.into_inner()).add(
        version,
        &item.key,
        &item.value,
        offset,
        total,
    );
    match staged {
        Err(OutOfOrder) => kv_proto::write::integer(out, -1),
        Ok(None) => kv_proto::write::integer(out, 0),
        Ok(Some(whole)) => return migrate(node, version, &[MigrateItem { value: whole, ..item }], out),
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_assemble_in_order_and_a_gap_starts_the_key_over() {
        let mut st = Staging::default();
        let key = Bytes::from_static(b"big");
        assert_eq!(st.add(3, &key, b"abc", 0, 7), Ok(None));
        assert_eq!(st.add(3, &key, b"de", 3, 7), Ok(None));
        assert_eq!(st.add(3, &key, b"fg", 5, 7), Ok(Some(Bytes::from_static(b"abcdefg"))));
        assert!(st.is_empty(), "a set key leaves nothing staged");
        // A receiver that lost the first part (a new leader) refuses the next one.
        assert_eq!(st.add(3, &key, b"de", 3, 7), Err(OutOfOrder));
        assert_eq!(st.add(3, &key, b"abc", 0, 7), Ok(None));
        assert_eq!(st.add(3, &key, b"xx", 5, 7), Err(OutOfOrder), "a gap");
        assert!(st.is_empty());
        // What a sender of an older ring left behind goes when a newer part arrives.
        assert_eq!(st.add(3, &key, b"abc", 0, 7), Ok(None));
        assert_eq!(st.add(4, &Bytes::from_static(b"other"), b"a", 0, 2), Ok(None));
        assert_eq!(st.len(), 1);
    }
}
