//! Writes of values: SET key value [NX | XX] [GET] [EX seconds | PX milliseconds |
//! EXAT unix-seconds | PXAT unix-milliseconds | KEEPTTL], and the commands that are SET with
//! fixed options: SETNX, SETEX, PSETEX, GETSET; and MSET.

use bytes::Bytes;
use kv_proto::Out;

use super::{Args, CmdError, reply, write_opt};
use crate::node::{Node, Pending};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    None,
    KeepTtl,
    /// Milliseconds from now.
    In(u64),
    /// Unix milliseconds.
    At(u64),
}

/// A parsed `SET`.
#[derive(Debug)]
pub struct Set {
    key: Bytes,
    value: Bytes,
    condition: Condition,
    expiry: Expiry,
    get: bool,
    /// SETNX replies 1/0 instead of OK/nil.
    flag_reply: bool,
}

enum Outcome {
    Ok,
    /// NX/XX condition not met.
    NotSet,
    /// With GET: the previous value.
    Old(Option<Bytes>),
    TooLarge,
}

impl Set {
    pub fn parse(args: &mut Args) -> Result<Set, CmdError> {
        let key = args.arg()?;
        let value = args.arg()?;
        let mut set = Set {
            key,
            value,
            condition: Condition::Always,
            expiry: Expiry::None,
            get: false,
            flag_reply: false,
        };
        let invalid = || CmdError::InvalidExpire("set".into());
        while let Some(opt) = args.arg_opt() {
            let upper = opt.to_ascii_uppercase();
            match upper.as_slice() {
                b"NX" if set.condition == Condition::Always => set.condition = Condition::IfAbsent,
                b"XX" if set.condition == Condition::Always => set.condition = Condition::IfPresent,
                b"GET" if !set.get => set.get = true,
                b"KEEPTTL" if set.expiry == Expiry::None => set.expiry = Expiry::KeepTtl,
                b"EX" | b"PX" | b"EXAT" | b"PXAT" if set.expiry == Expiry::None => {
                    let n = args.arg_opt().ok_or(CmdError::Syntax)?;
                    let n = super::args::parse_i64(&n).ok_or(CmdError::NotInteger)?;
                    if n <= 0 {
                        return Err(invalid());
                    }
                    let n = n as u64;
                    // Like Redis: an expiry must stay within a signed 64-bit millisecond count.
                    let ms = |v: u64| {
                        v.checked_mul(1000)
                            .filter(|&m| m <= i64::MAX as u64)
                            .ok_or_else(invalid)
                    };
                    set.expiry = match upper.as_slice() {
                        b"EX" => Expiry::In(ms(n)?),
                        b"PX" => Expiry::In(n),
                        b"EXAT" => Expiry::At(ms(n)?),
                        _ => Expiry::At(n),
                    };
                }
                _ => return Err(CmdError::Syntax),
            }
        }
        Ok(set)
    }

    fn plain(args: &mut Args) -> Result<Set, CmdError> {
        let key = args.arg()?;
        let value = args.arg()?;
        args.finish()?;
        Ok(Set {
            key,
            value,
            condition: Condition::Always,
            expiry: Expiry::None,
            get: false,
            flag_reply: false,
        })
    }

    /// `SETNX key value`: 1 when set, 0 when the key existed.
    pub fn parse_setnx(args: &mut Args) -> Result<Set, CmdError> {
        Ok(Set {
            condition: Condition::IfAbsent,
            flag_reply: true,
            ..Set::plain(args)?
        })
    }

    /// `GETSET key value`: sets, replies with the previous value.
    pub fn parse_getset(args: &mut Args) -> Result<Set, CmdError> {
        Ok(Set {
            get: true,
            ..Set::plain(args)?
        })
    }

    /// `SETEX key seconds value` (`unit_ms` 1000) and `PSETEX key ms value` (`unit_ms` 1).
    pub fn parse_setex(args: &mut Args, unit_ms: u64) -> Result<Set, CmdError> {
        let key = args.arg()?;
        let n = args.arg_i64()?;
        let value = args.arg()?;
        args.finish()?;
        let invalid = || CmdError::InvalidExpire(args.lower_name());
        if n <= 0 {
            return Err(invalid());
        }
        let ms = (n as u64)
            .checked_mul(unit_ms)
            .filter(|&m| m <= i64::MAX as u64)
            .ok_or_else(invalid)?;
        Ok(Set {
            key,
            value,
            condition: Condition::Always,
            expiry: Expiry::In(ms),
            get: false,
            flag_reply: false,
        })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let flag = self.flag_reply;
        let result = node.write([&self.key[..]], |w| {
            if !w.fits(self.key.len(), self.value.len()) {
                return Outcome::TooLarge;
            }
            let needs_old = self.get || self.condition != Condition::Always || self.expiry == Expiry::KeepTtl;
            // Only GET reads the old value (and so needs a string); NX, XX and KEEPTTL
            // work on a key of any kind, which SET replaces.
            let old = if self.get {
                w.get(&self.key)
            } else if needs_old {
                w.kind_of(&self.key).map(|(_, at)| (Bytes::new(), at))
            } else {
                None
            };
            let exists = old.is_some();
            let blocked = match self.condition {
                Condition::Always => false,
                Condition::IfAbsent => exists,
                Condition::IfPresent => !exists,
            };
            let old_value = old.as_ref().map(|(v, _)| v.clone());
            if blocked {
                return if self.get {
                    Outcome::Old(old_value)
                } else {
                    Outcome::NotSet
                };
            }
            let expires_at = match self.expiry {
                Expiry::None => None,
                Expiry::KeepTtl => old.and_then(|(_, at)| at),
                Expiry::In(ms) => Some(w.now().saturating_add(ms).min(i64::MAX as u64)),
                Expiry::At(at) => Some(at),
            };
            if expires_at.is_some_and(|at| at <= w.now()) {
                // Already expired: Redis replies as if set, and the key is gone.
                w.del(&self.key);
            } else {
                w.set(&self.key, &self.value, expires_at);
            }
            if self.get { Outcome::Old(old_value) } else { Outcome::Ok }
        });
        reply(out, result, |out, outcome| match outcome {
            Outcome::Ok if flag => kv_proto::write::integer(out, 1),
            Outcome::NotSet if flag => kv_proto::write::integer(out, 0),
            Outcome::Ok => kv_proto::write::ok(out),
            Outcome::NotSet => out.null(),
            Outcome::Old(v) => write_opt(out, v.as_ref()),
            Outcome::TooLarge => kv_proto::write::error(out, b"OOM value too large for this server's --maxmemory"),
        })
    }
}

/// `MSET key value [key value ...]`: sets every pair (atomically on one server; the gate
/// splits an MSET by shard, and across shards it is not atomic).
#[derive(Debug)]
pub struct MSet {
    pairs: Vec<Bytes>,
}

impl MSet {
    pub fn parse(args: &mut Args) -> Result<MSet, CmdError> {
        let pairs = args.rest_at_least_one()?;
        if !pairs.len().is_multiple_of(2) {
            return Err(args.arity());
        }
        Ok(MSet { pairs })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let keys = self.pairs.iter().step_by(2).map(|k| &k[..]);
        let result = node.write(keys, |w| {
            if self.pairs.chunks_exact(2).any(|p| !w.fits(p[0].len(), p[1].len())) {
                return false;
            }
            for p in self.pairs.chunks_exact(2) {
                w.set(&p[0], &p[1], None);
            }
            true
        });
        reply(out, result, |out, ok| {
            if ok {
                kv_proto::write::ok(out)
            } else {
                kv_proto::write::error(out, b"OOM value too large for this server's --maxmemory")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_proto::Request;

    fn parse(a: &[&str]) -> Result<Set, CmdError> {
        let req = Request::new(a.iter().map(|s| Bytes::from(s.to_string())).collect());
        Set::parse(&mut Args::new(req))
    }

    #[test]
    fn options() {
        let s = parse(&["SET", "k", "v", "nx", "PX", "100", "GET"]).unwrap();
        assert_eq!(
            (s.condition, s.expiry, s.get),
            (Condition::IfAbsent, Expiry::In(100), true)
        );
        assert_eq!(parse(&["SET", "k", "v", "EX", "2"]).unwrap().expiry, Expiry::In(2000));
        assert_eq!(parse(&["SET", "k", "v", "NX", "XX"]).unwrap_err(), CmdError::Syntax);
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "1", "PX", "1"]).unwrap_err(),
            CmdError::Syntax
        );
        assert_eq!(parse(&["SET", "k", "v", "EX"]).unwrap_err(), CmdError::Syntax);
        assert_eq!(parse(&["SET", "k", "v", "EX", "x"]).unwrap_err(), CmdError::NotInteger);
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "0"]).unwrap_err(),
            CmdError::InvalidExpire("set".into())
        );
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "9223372036854775807"]).unwrap_err(),
            CmdError::InvalidExpire("set".into())
        );
        assert!(matches!(parse(&["SET", "k"]).unwrap_err(), CmdError::Arity(_)));
        assert_eq!(
            parse(&["SET", "k", "v", "EXAT", "10000000000000000"]).unwrap_err(),
            CmdError::InvalidExpire("set".into())
        );
    }
}
