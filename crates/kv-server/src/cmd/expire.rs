//! Time to live: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST, TTL, PTTL.

use bytes::Bytes;
use kv_proto::Out;

use super::{Args, CmdError, reply};
use crate::node::{Node, Pending};

/// The conditions of NX, XX, GT and LT (several may be given, as in Redis 7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct When {
    /// NX: only if the key has no expiry.
    no_expiry: bool,
    /// XX: only if the key has an expiry.
    has_expiry: bool,
    /// GT: only if the new expiry is later (no expiry counts as infinite).
    later: bool,
    /// LT: only if the new expiry is sooner.
    sooner: bool,
}

impl When {
    fn allows(self, current: Option<u64>, at: i64) -> bool {
        !(self.no_expiry && current.is_some()
            || self.has_expiry && current.is_none()
            || self.later && current.is_none_or(|c| at <= c as i64)
            || self.sooner && current.is_some_and(|c| at >= c as i64))
    }
}

/// `EXPIRE key seconds`, `PEXPIRE key ms`, `EXPIREAT key unix-s`, `PEXPIREAT key unix-ms`,
/// each with an optional NX | XX | GT | LT.
#[derive(Debug)]
pub struct Expire {
    key: Bytes,
    /// The requested expiry in Unix ms, or a relative delay in ms (resolved at apply time).
    amount: i64,
    relative: bool,
    when: When,
    /// The command name, for error messages.
    name: String,
}

impl Expire {
    /// `unit_ms`: 1000 for seconds, 1 for milliseconds.
    pub fn parse(args: &mut Args, unit_ms: i64, relative: bool) -> Result<Expire, CmdError> {
        let key = args.arg()?;
        let n = args.arg_i64()?;
        let mut when = When::default();
        while let Some(o) = args.arg_opt() {
            match o.to_ascii_uppercase().as_slice() {
                b"NX" => when.no_expiry = true,
                b"XX" => when.has_expiry = true,
                b"GT" => when.later = true,
                b"LT" => when.sooner = true,
                _ => {
                    return Err(CmdError::Other(format!(
                        "Unsupported option {}",
                        String::from_utf8_lossy(&o)
                    )));
                }
            }
        }
        if when.no_expiry && (when.has_expiry || when.later || when.sooner) {
            return Err(CmdError::Other(
                "NX and XX, GT or LT options at the same time are not compatible".into(),
            ));
        }
        if when.later && when.sooner {
            return Err(CmdError::Other(
                "GT and LT options at the same time are not compatible".into(),
            ));
        }
        let amount = n
            .checked_mul(unit_ms)
            .ok_or_else(|| CmdError::InvalidExpire(args.lower_name()))?;
        Ok(Expire {
            key,
            amount,
            relative,
            when,
            name: args.lower_name(),
        })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.key[..]], |w| {
            let Some(current) = w.expiry_of(&self.key) else {
                return Ok(false);
            };
            let at = if self.relative {
                (w.now() as i64).checked_add(self.amount)
            } else {
                Some(self.amount)
            };
            let Some(at) = at else {
                return Err(());
            };
            if !self.when.allows(current, at) {
                return Ok(false);
            }
            if at <= w.now() as i64 {
                w.del(&self.key);
            } else {
                w.expire(&self.key, Some(at as u64));
            }
            Ok(true)
        });
        let name = &self.name;
        reply(out, result, |out, r| match r {
            Ok(set) => kv_proto::write::integer(out, set as i64),
            Err(()) => kv_proto::write::error(out, format!("ERR invalid expire time in '{name}' command").as_bytes()),
        })
    }
}

/// `PERSIST key`: removes the expiry; 1 when there was one.
#[derive(Debug)]
pub struct Persist {
    key: Bytes,
}

impl Persist {
    pub fn parse(args: &mut Args) -> Result<Persist, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(Persist { key })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.key[..]], |w| match w.expiry_of(&self.key) {
            Some(Some(_)) => w.expire(&self.key, None),
            _ => false,
        });
        reply(out, result, |out, r| kv_proto::write::integer(out, r as i64))
    }
}

/// `TTL key` (seconds) and `PTTL key` (milliseconds): -2 when absent, -1 without expiry.
#[derive(Debug)]
pub struct Ttl {
    key: Bytes,
    millis: bool,
}

impl Ttl {
    pub fn parse(args: &mut Args, millis: bool) -> Result<Ttl, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(Ttl { key, millis })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| {
            let now = r.now();
            match r.kind_of(&self.key) {
                None => -2,
                Some((_, None)) => -1,
                Some((_, Some(at))) => {
                    let left = at.saturating_sub(now) as i64;
                    if self.millis { left } else { (left + 500) / 1000 }
                }
            }
        });
        reply(out, result, |out, n| kv_proto::write::integer(out, n))
    }
}
