//! Commands of ring changes (see `kv_cluster::placement`), sent by source leaders and gates:
//!
//! - `KV.MIGRATE <ring-version> key value expires-at-ms [key value expires-at-ms ...]`: copies
//!   keys in; each is set only if this shard has neither the key nor a tombstone for it, so an
//!   older copy never overwrites a newer write or resurrects a delete. Replies with how many
//!   were set; a copy arriving after the move completed is ignored (0).
//! - `KV.DROP key [key ...]`: deletes old copies on the shard a key moved away from (never
//!   refused as moved). Replies with how many existed.
//! - `KV.FETCH key`: `[value, expires-at-ms]` or nil, to pull a key before a
//!   read-modify-write at its new owner.

use bytes::{Bytes, BytesMut};

use super::{Args, CmdError, reply_write};
use crate::node::{Node, Pending};
use crate::replication::ops::parse_u64;

#[derive(Debug)]
pub struct Migrate {
    version: u64,
    triples: Vec<(Bytes, Bytes, Option<u64>)>,
}

impl Migrate {
    pub fn parse(args: &mut Args) -> Result<Migrate, CmdError> {
        let bad = || CmdError::Other("ERR bad KV.MIGRATE arguments".into());
        let version = parse_u64(&args.arg()?).ok_or_else(bad)?;
        let rest = args.rest_at_least_one()?;
        if rest.len() % 3 != 0 {
            return Err(bad());
        }
        let mut triples = Vec::with_capacity(rest.len() / 3);
        for t in rest.chunks(3) {
            let at = parse_u64(&t[2]).ok_or_else(bad)?;
            triples.push((t[0].clone(), t[1].clone(), (at != 0).then_some(at)));
        }
        Ok(Migrate { version, triples })
    }

    pub fn apply(self, node: &Node, out: &mut BytesMut) -> Option<Pending> {
        let result = node.write_unguarded(|w| {
            if w.inbound_done() >= self.version {
                // The move completed: every key was copied already, and tombstones are gone,
                // so a late copy must not be applied.
                return Ok(0);
            }
            if w.inbound() < self.version {
                return Err(self.version);
            }
            Ok(self.triples.iter().filter(|(k, v, at)| w.set_if_new(k, v, *at)).count())
        });
        reply_write(out, result, |out, r| match r {
            Ok(n) => {
                node.stats
                    .keys_moved_in
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                kv_proto::write::integer(out, n as i64)
            }
            Err(v) => kv_proto::write::error(
                out,
                format!("TRYAGAIN not yet receiving keys for ring version {v}").as_bytes(),
            ),
        })
    }
}

#[derive(Debug)]
pub struct Drop {
    keys: Vec<Bytes>,
}

impl Drop {
    pub fn parse(args: &mut Args) -> Result<Drop, CmdError> {
        Ok(Drop {
            keys: args.rest_at_least_one()?,
        })
    }

    pub fn apply(self, node: &Node, out: &mut BytesMut) -> Option<Pending> {
        let result = node.write_unguarded(|w| self.keys.iter().filter(|k| w.del(k)).count());
        reply_write(out, result, |out, n| kv_proto::write::integer(out, n as i64))
    }
}

#[derive(Debug)]
pub struct Fetch {
    key: Bytes,
}

impl Fetch {
    pub fn parse(args: &mut Args) -> Result<Fetch, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(Fetch { key })
    }

    pub fn apply(self, node: &Node, out: &mut BytesMut) {
        node.read(|r| {
            r.lookup(&self.key, |hit| match hit {
                Some((v, at)) => {
                    kv_proto::write::array_header(out, 2);
                    kv_proto::write::bulk(out, v);
                    kv_proto::write::bulk(out, at.unwrap_or(0).to_string().as_bytes());
                }
                None => kv_proto::write::null(out),
            })
        })
    }
}
