//! `SORT` and `SORT_RO` at the gate. Without patterns, and with a `STORE` destination (if
//! any) on the key's shard, the command goes whole to that shard and is atomic there. With
//! `BY`/`GET` patterns, whose keys may live on any shard, or a destination elsewhere, the
//! gate runs it itself — a documented non-atomic equivalent:
//!
//! 1. the elements from the key's shard (`SORT key BY nosort`, or sorted and limited there
//!    when no `BY` pattern is given);
//! 2. the `BY` weights, read key by key (pipelined) wherever they live, then sorted with
//!    the servers' own rules ([`kv_proto::sort`]) and limited;
//! 3. the `GET` values, read the same way;
//! 4. `STORE`: the destination replaced in one transaction on its shard.

use bytes::Bytes;
use kv_proto::Frame;
use kv_proto::sort::{self as rules, Item, SortSpec};

use super::{Pending, Session, forward_error};
use crate::forward::{Access, Batcher, ForwardError, Forwarder};
use crate::routing::Target;

/// A `SORT` the gate runs itself.
pub struct GateSort {
    key: Bytes,
    spec: SortSpec,
    affinity: usize,
}

impl Session<'_> {
    /// Serves `SORT`/`SORT_RO` (`req` passed the arity check).
    pub(super) async fn sort(&mut self, req: kv_proto::Request) -> Pending {
        let read_only = req.name().eq_ignore_ascii_case(b"SORT_RO");
        let spec = match SortSpec::parse(req.args(), read_only) {
            Ok(s) => s,
            Err(e) => return Pending::Now(Frame::error(e)),
        };
        let key = req.args()[1].clone();
        let routing = self.state.forwarder.routing();
        let local_store = match &spec.store {
            None => true,
            Some(dst) => {
                routing.owner(dst) == routing.owner(&key)
                    && routing.moving(dst).is_none()
                    && routing.moving(&key).is_none()
            }
        };
        if !spec.uses_patterns() && local_store {
            let access = match spec.store {
                None => Access::Read,
                Some(_) => Access::Write,
            };
            return self.forward_key(req, key, access).await;
        }
        Pending::Sort(Box::new(GateSort {
            key,
            spec,
            affinity: self.affinity(),
        }))
    }
}

impl GateSort {
    pub async fn finish(self, fwd: &Forwarder) -> Frame {
        self.run(fwd).await.unwrap_or_else(|f| f)
    }

    async fn run(self, fwd: &Forwarder) -> Result<Frame, Frame> {
        let GateSort { key, spec, affinity } = self;
        let by = spec.by_pattern().cloned();
        let elements = elements(fwd, &key, &spec, by.is_some()).await?;
        let chosen: Vec<Bytes> = match &by {
            None => elements,
            Some(pattern) => {
                let mut items: Vec<Item> = elements.into_iter().map(Item::new).collect();
                let weights = lookup(fwd, pattern, items.iter().map(|i| &i.element), affinity).await?;
                rules::weigh(&mut items, spec.alpha, true, |i, _| weights[i].clone()).map_err(Frame::error)?;
                rules::order(&mut items, spec.alpha, true, spec.desc);
                let range = spec.range(items.len());
                items.drain(range).map(|i| i.element).collect()
            }
        };
        let values: Vec<Option<Bytes>> = if spec.gets.is_empty() {
            chosen.into_iter().map(Some).collect()
        } else {
            let mut per_get = Vec::with_capacity(spec.gets.len());
            for pattern in &spec.gets {
                per_get.push(lookup(fwd, pattern, chosen.iter(), affinity).await?);
            }
            (0..chosen.len())
                .flat_map(|i| per_get.iter().map(move |g| g[i].clone()))
                .collect()
        };
        let Some(dst) = spec.store else {
            return Ok(Frame::Array(
                values.into_iter().map(|v| v.map_or(Frame::Null, Frame::Bulk)).collect(),
            ));
        };
        store(fwd, dst, values, affinity).await
    }
}

/// Step 1: the elements from the key's shard. With a `BY` pattern, all of them in native
/// order (the gate sorts); otherwise sorted and limited there.
async fn elements(fwd: &Forwarder, key: &Bytes, spec: &SortSpec, by_pattern: bool) -> Result<Vec<Bytes>, Frame> {
    let mut args: Vec<&[u8]> = vec![b"SORT", key];
    let limit = [spec.limit.0.to_string(), spec.limit.1.to_string()];
    let mut native = spec.dont_sort() || by_pattern;
    if spec.dont_sort() && spec.store.is_some() && !by_pattern {
        // Stored, a set's arbitrary order is sorted (as the server would): ask its type.
        let ty = execute(fwd, key, Access::Read, kv_proto::write::command([&b"TYPE"[..], key])).await?;
        if matches!(&ty, Frame::Simple(t) if &t[..] == b"set") {
            native = false;
            args.push(b"ALPHA");
        }
    }
    if native {
        args.extend([&b"BY"[..], b"nosort"]);
    } else if spec.alpha {
        args.push(b"ALPHA");
    }
    if !by_pattern {
        if spec.desc {
            args.push(b"DESC");
        }
        args.extend([&b"LIMIT"[..], limit[0].as_bytes(), limit[1].as_bytes()]);
    }
    match execute(fwd, key, Access::Read, kv_proto::write::command(args)).await? {
        Frame::Array(items) => Ok(items
            .into_iter()
            .filter_map(|f| match f {
                Frame::Bulk(b) => Some(b),
                _ => None,
            })
            .collect()),
        f if f.as_error().is_some() => Err(f),
        other => Err(Frame::error(format!("ERR unexpected reply to SORT: {other:?}"))),
    }
}

/// The values `pattern` names for each element (`#`: the element; a string key, or a hash
/// field with `key->field`; `None`: missing or of another type), read pipelined.
async fn lookup<'e>(
    fwd: &Forwarder,
    pattern: &Bytes,
    elements: impl Iterator<Item = &'e Bytes>,
    affinity: usize,
) -> Result<Vec<Option<Bytes>>, Frame> {
    enum Slot {
        Known(Option<Bytes>),
        Asked(crate::forward::InFlight),
    }
    let mut batcher = Batcher::default();
    let mut slots = Vec::new();
    for e in elements {
        if &pattern[..] == b"#" {
            slots.push(Slot::Known(Some(e.clone())));
            continue;
        }
        let Some((k, field)) = rules::pattern_key(pattern, e) else {
            slots.push(Slot::Known(None));
            continue;
        };
        let request = match field {
            Some(f) => kv_proto::write::command([&b"HGET"[..], &k, f]),
            None => kv_proto::write::command([&b"GET"[..], &k]),
        };
        let target = Target::Key(Bytes::from(k));
        slots.push(Slot::Asked(
            fwd.start_batched(&mut batcher, target, Access::Read, request, affinity)
                .await,
        ));
    }
    batcher.flush(affinity).await;
    let mut values = Vec::with_capacity(slots.len());
    for s in slots {
        values.push(match s {
            Slot::Known(v) => v,
            Slot::Asked(f) => match f.finish(fwd).await {
                Ok(Frame::Bulk(b)) => Some(b),
                // Missing, or a key of another type (`WRONGTYPE`): no value, as in Redis.
                Ok(_) => None,
                Err(e) => return Err(forward_error(&e)),
            },
        });
    }
    Ok(values)
}

/// Step 4: the destination replaced by the values (missing ones as empty strings), or
/// deleted when there are none, in one transaction on its shard.
async fn store(fwd: &Forwarder, dst: Bytes, values: Vec<Option<Bytes>>, affinity: usize) -> Result<Frame, Frame> {
    let n = values.len();
    let mut batch = bytes::BytesMut::new();
    batch.extend_from_slice(&kv_proto::write::command([&b"MULTI"[..]]));
    batch.extend_from_slice(&kv_proto::write::command([&b"DEL"[..], &dst]));
    let mut count = 3;
    if n > 0 {
        let push = [&b"RPUSH"[..], &dst]
            .into_iter()
            .chain(values.iter().map(|v| v.as_deref().unwrap_or_default()));
        batch.extend_from_slice(&kv_proto::write::command(push));
        count += 1;
    }
    batch.extend_from_slice(&kv_proto::write::command([&b"EXEC"[..]]));
    let reply = fwd
        .execute_transaction(&Target::Key(dst), batch.freeze(), count, affinity)
        .await
        .map_err(|e| forward_error(&e))?;
    match reply {
        f if f.as_error().is_some() => Err(f),
        _ => Ok(Frame::Integer(n as i64)),
    }
}

async fn execute(fwd: &Forwarder, key: &Bytes, access: Access, request: Bytes) -> Result<Frame, Frame> {
    fwd.execute(&Target::Key(key.clone()), access, request)
        .await
        .map_err(|e: ForwardError| forward_error(&e))
}
