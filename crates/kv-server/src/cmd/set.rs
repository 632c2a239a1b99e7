//! SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-seconds |
//! PXAT unix-milliseconds | KEEPTTL]

use bytes::{Bytes, BytesMut};

use super::{Args, CmdError, reply_write, write_opt};
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

    pub fn apply(self, node: &Node, out: &mut BytesMut) -> Option<Pending> {
        let result = node.write(|w| {
            if !w.fits(self.key.len(), self.value.len()) {
                return Outcome::TooLarge;
            }
            let needs_old = self.get || self.condition != Condition::Always || self.expiry == Expiry::KeepTtl;
            let old = if needs_old { w.get(&self.key) } else { None };
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
        reply_write(out, result, |out, outcome| match outcome {
            Outcome::Ok => kv_proto::write::ok(out),
            Outcome::NotSet => kv_proto::write::null(out),
            Outcome::Old(v) => write_opt(out, v.as_ref()),
            Outcome::TooLarge => kv_proto::write::error(out, b"OOM value too large for this server's --maxmemory"),
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
