//! Counters and appends: INCR, INCRBY, DECR, DECRBY, APPEND.
//!
//! Atomic at the leader (read, compute and write happen under the node lock) and replicated
//! as the resulting value, never as "increment by", so replaying the log converges.

use bytes::Bytes;
use kv_proto::Out;

use super::args::parse_i64;
use super::{Args, CmdError, reply};
use crate::node::{Node, Pending};

/// `INCR`/`DECR key`, `INCRBY`/`DECRBY key delta`.
#[derive(Debug)]
pub struct IncrBy {
    key: Bytes,
    delta: i64,
}

enum Outcome {
    Value(i64),
    NotInteger,
    Overflow,
}

impl IncrBy {
    /// `delta`: `Some(±1)` for INCR/DECR; `None` to read it from the arguments (negated for
    /// DECRBY when `negate`).
    pub fn parse(args: &mut Args, fixed: Option<i64>, negate: bool) -> Result<IncrBy, CmdError> {
        let key = args.arg()?;
        let delta = match fixed {
            Some(d) => d,
            None => {
                let d = args.arg_i64()?;
                if negate {
                    d.checked_neg()
                        .ok_or(CmdError::Other("decrement would overflow".into()))?
                } else {
                    d
                }
            }
        };
        args.finish()?;
        Ok(IncrBy { key, delta })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.key[..]], |w| {
            let (current, expires_at) = match w.get(&self.key) {
                Some((v, at)) => match parse_i64(&v) {
                    Some(n) => (n, at),
                    None => return Outcome::NotInteger,
                },
                None => (0, None),
            };
            let Some(next) = current.checked_add(self.delta) else {
                return Outcome::Overflow;
            };
            w.set(&self.key, next.to_string().as_bytes(), expires_at);
            Outcome::Value(next)
        });
        reply(out, result, |out, r| match r {
            Outcome::Value(n) => kv_proto::write::integer(out, n),
            Outcome::NotInteger => kv_proto::write::error(out, CmdError::NotInteger.to_string().as_bytes()),
            Outcome::Overflow => kv_proto::write::error(out, b"ERR increment or decrement would overflow"),
        })
    }
}

/// `APPEND key value`: the new length.
#[derive(Debug)]
pub struct Append {
    key: Bytes,
    value: Bytes,
}

impl Append {
    pub fn parse(args: &mut Args) -> Result<Append, CmdError> {
        let key = args.arg()?;
        let value = args.arg()?;
        args.finish()?;
        Ok(Append { key, value })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let max = node.config.resp.proto_max_bulk_len as usize;
        let result = node.write([&self.key[..]], |w| {
            let (mut current, expires_at) = match w.get(&self.key) {
                Some((v, at)) => (v.to_vec(), at),
                None => (Vec::new(), None),
            };
            if current.len() + self.value.len() > max {
                return Err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
            }
            if !w.fits(self.key.len(), current.len() + self.value.len()) {
                return Err("OOM value too large for this server's --maxmemory");
            }
            current.extend_from_slice(&self.value);
            w.set(&self.key, &current, expires_at);
            Ok(current.len())
        });
        reply(out, result, |out, r| match r {
            Ok(n) => kv_proto::write::integer(out, n as i64),
            Err(e) => kv_proto::write::error(out, e.as_bytes()),
        })
    }
}
