//! Multi-key commands: split by shard, sent concurrently, reassembled in the client's order.
//!
//! Across shards these commands are not atomic (as in Redis Cluster proxies): an MSET whose
//! keys live on two shards is two MSETs.

use std::collections::BTreeMap;

use bytes::Bytes;
use kv_proto::{CommandBuilder, Frame, Request};

use super::{Pending, forward_error};
use crate::forward::{Access, Forwarder, InFlight};
use crate::routing::Target;

/// How the shards' replies combine.
#[derive(Debug, Clone, Copy)]
enum Combine {
    /// MGET: each shard's array goes back to the keys' original positions.
    Positions(usize),
    /// MSET: OK when every shard said OK.
    AllOk,
    /// DEL, UNLINK, EXISTS: the sum of the shards' integers.
    Sum,
}

/// A multi-key command in flight: one request per shard.
pub struct Fanout {
    parts: Vec<(InFlight, Vec<usize>)>,
    combine: Combine,
    /// The client's request, arguments per key and access, to redo a part key by key when
    /// its shard answered `MOVED` (keys started moving after the command was split).
    req: Request,
    step: usize,
    access: Access,
}

/// The single-key form of the key at argument `i` of a multi-key request: the key and the
/// command (`GET`, `SET`, `DEL`, `EXISTS`).
fn single(req: &Request, step: usize, i: usize) -> (Bytes, Bytes) {
    let name: &[u8] = match req.name().to_ascii_uppercase().as_slice() {
        b"MGET" => b"GET",
        b"MSET" => b"SET",
        b"UNLINK" => b"DEL",
        _ => req.name(),
    };
    let mut cmd = CommandBuilder::new(1 + step).arg(name);
    for a in &req.args()[i..i + step] {
        cmd = cmd.arg(a);
    }
    (req.args()[i].clone(), cmd.finish())
}

/// Groups argument indices `first..` (stepping by `step`) by the shard of the key there.
fn group(fwd: &Forwarder, req: &Request, step: usize) -> Option<BTreeMap<String, Vec<usize>>> {
    let routing = fwd.routing();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in (1..req.len()).step_by(step) {
        let shard = routing.owner(&req.args()[i])?;
        groups.entry(shard.to_string()).or_default().push(i);
    }
    Some(groups)
}

async fn start(
    fwd: &Forwarder,
    req: &Request,
    step: usize,
    access: Access,
    combine: Combine,
    affinity: usize,
) -> Pending {
    let mut groups = group(fwd, req, step);
    if groups.is_none() && fwd.wait_for_shards().await {
        groups = group(fwd, req, step);
    }
    let Some(groups) = groups else {
        return Pending::Now(Frame::error("CLUSTERDOWN no shard is registered in the cluster yet"));
    };
    let routing = fwd.routing();
    if (1..req.len())
        .step_by(step)
        .any(|i| routing.moving(&req.args()[i]).is_some())
    {
        // Keys are moving between shards: one command per key, each taking the moving path.
        let mut parts = Vec::with_capacity(req.len() / step);
        for i in (1..req.len()).step_by(step) {
            let (key, cmd) = single(req, step, i);
            let flight = fwd.start(Target::Key(key), access, cmd, affinity).await;
            parts.push((flight, vec![(i - 1) / step]));
        }
        return Pending::Fanout(Box::new(Fanout {
            parts,
            combine,
            req: req.clone(),
            step,
            access,
        }));
    }
    let mut parts = Vec::with_capacity(groups.len());
    for (shard, indices) in groups {
        let mut cmd = CommandBuilder::new(1 + indices.len() * step).arg(req.name());
        for &i in &indices {
            for a in &req.args()[i..i + step] {
                cmd = cmd.arg(a);
            }
        }
        let flight = fwd.start(Target::Shard(shard), access, cmd.finish(), affinity).await;
        // Positions in the reply are key ordinals, not argument indices.
        parts.push((flight, indices.iter().map(|i| (i - 1) / step).collect()));
    }
    Pending::Fanout(Box::new(Fanout {
        parts,
        combine,
        req: req.clone(),
        step,
        access,
    }))
}

/// MGET
pub async fn mget(fwd: &Forwarder, req: &Request, affinity: usize) -> Pending {
    start(fwd, req, 1, Access::Read, Combine::Positions(req.len() - 1), affinity).await
}

/// MSET
pub async fn mset(fwd: &Forwarder, req: &Request, affinity: usize) -> Pending {
    if !(req.len() - 1).is_multiple_of(2) {
        return Pending::Now(Frame::error("ERR wrong number of arguments for 'mset' command"));
    }
    start(fwd, req, 2, Access::Write, Combine::AllOk, affinity).await
}

/// DEL, UNLINK, EXISTS
pub async fn sum(fwd: &Forwarder, req: &Request, access: Access, affinity: usize) -> Pending {
    start(fwd, req, 1, access, Combine::Sum, affinity).await
}

impl Fanout {
    pub async fn finish(self, fwd: &Forwarder) -> Frame {
        let mut values: Vec<Frame> = match self.combine {
            Combine::Positions(n) => vec![Frame::Null; n],
            _ => Vec::new(),
        };
        let mut total = 0i64;
        let mut first_error = None;
        let mut replies = Vec::with_capacity(self.parts.len());
        for (flight, positions) in self.parts {
            let reply = match flight.finish(fwd).await {
                Ok(f) => f,
                Err(e) => forward_error(&e),
            };
            if reply.error_code() != Some(b"MOVED") {
                replies.push((reply, positions));
                continue;
            }
            // The shard refused keys that began moving after the split: redo this part key
            // by key (each key then takes the moving path).
            for pos in positions {
                let (key, cmd) = single(&self.req, self.step, 1 + pos * self.step);
                let reply = match fwd.execute(&Target::Key(key), self.access, cmd).await {
                    Ok(f) => f,
                    Err(e) => forward_error(&e),
                };
                replies.push((reply, vec![pos]));
            }
        }
        for (reply, positions) in replies {
            match (self.combine, reply) {
                (_, e @ Frame::Error(_)) => {
                    first_error.get_or_insert(e);
                }
                (Combine::Positions(_), item @ (Frame::Bulk(_) | Frame::Null)) if positions.len() == 1 => {
                    values[positions[0]] = item;
                }
                (Combine::Positions(_), Frame::Array(items)) if items.len() == positions.len() => {
                    for (item, pos) in items.into_iter().zip(positions) {
                        values[pos] = item;
                    }
                }
                (Combine::AllOk, Frame::Simple(_)) => {}
                (Combine::Sum, Frame::Integer(n)) => total += n,
                (_, other) => {
                    first_error.get_or_insert(Frame::error(format!("ERR unexpected reply from a shard: {other:?}")));
                }
            }
        }
        if let Some(e) = first_error {
            return e;
        }
        match self.combine {
            Combine::Positions(_) => Frame::Array(values),
            Combine::AllOk => Frame::Simple(Bytes::from_static(b"OK")),
            Combine::Sum => Frame::Integer(total),
        }
    }
}

/// DBSIZE summed over every shard on the ring.
pub async fn dbsize(fwd: &Forwarder, affinity: usize) -> Frame {
    let routing = fwd.routing();
    let request = CommandBuilder::new(1).arg(b"DBSIZE").finish();
    let mut flights = Vec::new();
    for shard in routing.shard_names() {
        flights.push(
            fwd.start(Target::Shard(shard.clone()), Access::Read, request.clone(), affinity)
                .await,
        );
    }
    let mut total = 0;
    for f in flights {
        match f.finish(fwd).await {
            Ok(Frame::Integer(n)) => total += n,
            Ok(e @ Frame::Error(_)) => return e,
            Ok(other) => return Frame::error(format!("ERR unexpected reply from a shard: {other:?}")),
            Err(e) => return forward_error(&e),
        }
    }
    Frame::Integer(total)
}
