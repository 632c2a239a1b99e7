//! Commands about keys rather than values: TYPE, TOUCH, RENAME, RENAMENX, COPY, RANDOMKEY,
//! KEYS, SCAN, FLUSHALL, FLUSHDB, EXPIRETIME, PEXPIRETIME, OBJECT, MEMORY USAGE.
//!
//! A server answers for its own shard; the gate combines shards (`KEYS`, `SCAN`,
//! `RANDOMKEY`, `FLUSHALL` go to every shard). Not on the hot path: replies are [`Frame`]s.

use bytes::Bytes;
use kv_proto::{Frame, Out};

use super::args::parse_i64;
use super::{Args, CmdError, reply};
use crate::node::{Node, Pending};

fn frame_reply(out: &mut Out, result: Result<(Frame, Option<Pending>), crate::node::Refusal>) -> Option<Pending> {
    reply(out, result, |out, f| out.frame(&f))
}

/// `TYPE key`: `string` or `none` (the only type held until the data types arrive).
#[derive(Debug)]
pub struct Type {
    key: Bytes,
}

impl Type {
    pub fn parse(args: &mut Args) -> Result<Type, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(Type { key })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| r.kind_of(&self.key).map(|(k, _)| k));
        reply(out, result, |out, kind| {
            kv_proto::write::simple(out, kind.map_or("none", |k| k.name()).as_bytes())
        })
    }
}

/// `TOUCH key [key ...]`: how many exist (their last access is updated).
#[derive(Debug)]
pub struct Touch {
    keys: Vec<Bytes>,
}

impl Touch {
    pub fn parse(args: &mut Args) -> Result<Touch, CmdError> {
        Ok(Touch {
            keys: args.rest_at_least_one()?,
        })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read(self.keys.iter().map(|k| &k[..]), |r| {
            self.keys.iter().filter(|k| r.exists(k)).count()
        });
        reply(out, result, |out, n| kv_proto::write::integer(out, n as i64))
    }
}

/// `RENAME key newkey` and `RENAMENX key newkey`. The expiry moves with the value.
#[derive(Debug)]
pub struct Rename {
    from: Bytes,
    to: Bytes,
    only_new: bool,
}

impl Rename {
    pub fn parse(args: &mut Args, only_new: bool) -> Result<Rename, CmdError> {
        let from = args.arg()?;
        let to = args.arg()?;
        args.finish()?;
        Ok(Rename { from, to, only_new })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.from[..], &self.to[..]], |w| {
            let Some((kind, value, expires_at)) = w.take_copy(&self.from) else {
                return Frame::error("ERR no such key");
            };
            if self.from == self.to {
                return if self.only_new {
                    Frame::Integer(0)
                } else {
                    Frame::simple("OK")
                };
            }
            if self.only_new && w.exists(&self.to) {
                return Frame::Integer(0);
            }
            w.set_copy(&self.to, kind, &value, expires_at);
            w.del(&self.from);
            if self.only_new {
                Frame::Integer(1)
            } else {
                Frame::simple("OK")
            }
        });
        frame_reply(out, result)
    }
}

/// `COPY source destination [DB 0] [REPLACE]`: 1 when copied.
#[derive(Debug)]
pub struct Copy {
    from: Bytes,
    to: Bytes,
    replace: bool,
}

impl Copy {
    pub fn parse(args: &mut Args) -> Result<Copy, CmdError> {
        let from = args.arg()?;
        let to = args.arg()?;
        let mut replace = false;
        while let Some(opt) = args.arg_opt() {
            match opt.to_ascii_uppercase().as_slice() {
                b"REPLACE" => replace = true,
                b"DB" => {
                    let db = args.arg_opt().ok_or(CmdError::Syntax)?;
                    match parse_i64(&db) {
                        Some(0) => {}
                        Some(_) => return Err(CmdError::Other("DB index is out of range".into())),
                        None => return Err(CmdError::NotInteger),
                    }
                }
                _ => return Err(CmdError::Syntax),
            }
        }
        Ok(Copy { from, to, replace })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.write([&self.from[..], &self.to[..]], |w| {
            if self.from == self.to {
                return Frame::error("ERR source and destination objects are the same");
            }
            let Some((kind, value, expires_at)) = w.take_copy(&self.from) else {
                return Frame::Integer(0);
            };
            if !self.replace && w.exists(&self.to) {
                return Frame::Integer(0);
            }
            if !w.fits(self.to.len(), value.len()) {
                return Frame::error("OOM value too large for this server's --maxmemory");
            }
            w.set_copy(&self.to, kind, &value, expires_at);
            Frame::Integer(1)
        });
        frame_reply(out, result)
    }
}

/// `RANDOMKEY`.
pub fn random_key(node: &Node, out: &mut Out) -> Option<Pending> {
    let result = node.read(std::iter::empty::<&[u8]>(), |r| r.random_key());
    reply(out, result, |out, k| match k {
        Some(k) => kv_proto::write::bulk(out, &k),
        None => out.null(),
    })
}

/// `KEYS pattern`: every live key matching, in no particular order.
#[derive(Debug)]
pub struct Keys {
    pattern: Bytes,
}

impl Keys {
    pub fn parse(args: &mut Args) -> Result<Keys, CmdError> {
        let pattern = args.arg()?;
        args.finish()?;
        Ok(Keys { pattern })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let all = &self.pattern[..] == b"*";
        let result = node.read(std::iter::empty::<&[u8]>(), |r| {
            let mut keys = Vec::new();
            let mut cursor = 0;
            loop {
                cursor = r.scan(cursor, 1024, |k, _| {
                    if all || kv_proto::glob::matches(&self.pattern, k) {
                        keys.push(Frame::Bulk(Bytes::copy_from_slice(k)));
                    }
                });
                if cursor == 0 {
                    break;
                }
            }
            Frame::Array(keys)
        });
        frame_reply(out, result)
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`. The cursor is a slab position
/// on this server (the gate adds which shard).
#[derive(Debug)]
pub struct Scan {
    cursor: u64,
    pattern: Option<Bytes>,
    count: usize,
    type_: Option<Bytes>,
}

impl Scan {
    pub fn parse(args: &mut Args) -> Result<Scan, CmdError> {
        let cursor = args.arg()?;
        let cursor = std::str::from_utf8(&cursor)
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| CmdError::Other("invalid cursor".into()))?;
        let mut scan = Scan {
            cursor,
            pattern: None,
            count: 10,
            type_: None,
        };
        while let Some(opt) = args.arg_opt() {
            let value = args.arg_opt().ok_or(CmdError::Syntax)?;
            match opt.to_ascii_uppercase().as_slice() {
                b"MATCH" => scan.pattern = Some(value),
                b"COUNT" => {
                    let n = parse_i64(&value).ok_or(CmdError::NotInteger)?;
                    if n < 1 {
                        return Err(CmdError::Syntax);
                    }
                    scan.count = n as usize;
                }
                b"TYPE" => scan.type_ = Some(value),
                _ => return Err(CmdError::Syntax),
            }
        }
        Ok(scan)
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        // An unknown type matches nothing (Redis 7.0).
        let kind = self.type_.as_ref().map(|t| kv_proto::Kind::from_name(t));
        let pattern = self.pattern.filter(|p| &p[..] != b"*");
        let result = node.read(std::iter::empty::<&[u8]>(), |r| {
            let mut keys = Vec::new();
            let cursor = usize::try_from(self.cursor).unwrap_or(usize::MAX);
            let next = r.scan(cursor, self.count, |k, v| {
                if kind.is_none_or(|want| want == Some(v.kind()))
                    && pattern.as_ref().is_none_or(|p| kv_proto::glob::matches(p, k))
                {
                    keys.push(Frame::Bulk(Bytes::copy_from_slice(k)));
                }
            });
            Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(keys)])
        });
        frame_reply(out, result)
    }
}

/// `FLUSHALL [ASYNC|SYNC]`, `FLUSHDB [ASYNC|SYNC]`: this shard's keys, all of them.
pub fn parse_flush(args: &mut Args) -> Result<(), CmdError> {
    if let Some(mode) = args.arg_opt()
        && !(mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC"))
    {
        return Err(CmdError::Syntax);
    }
    if args.remaining() != 0 {
        return Err(CmdError::Syntax);
    }
    Ok(())
}

pub fn flush(node: &Node, out: &mut Out) -> Option<Pending> {
    let result = node.write_internal(|w| w.flush());
    reply(out, result, |out, _| kv_proto::write::ok(out))
}

/// `EXPIRETIME key` (seconds) and `PEXPIRETIME key` (ms): the absolute Unix expiry; -1 when
/// the key has none, -2 when it does not exist.
#[derive(Debug)]
pub struct ExpireTime {
    key: Bytes,
    millis: bool,
}

impl ExpireTime {
    pub fn parse(args: &mut Args, millis: bool) -> Result<ExpireTime, CmdError> {
        let key = args.arg()?;
        args.finish()?;
        Ok(ExpireTime { key, millis })
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| match r.kind_of(&self.key) {
            None => -2,
            Some((_, None)) => -1,
            Some((_, Some(at))) if self.millis => at as i64,
            Some((_, Some(at))) => (at as i64 + 500) / 1000,
        });
        reply(out, result, |out, n| kv_proto::write::integer(out, n))
    }
}

/// The encoding Redis would report for a string value.
fn encoding(v: &[u8]) -> &'static str {
    if v.len() <= 20 && parse_i64(v).is_some() {
        "int"
    } else if v.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

/// `OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key`, `OBJECT HELP`.
#[derive(Debug)]
pub struct Object {
    sub: Bytes,
    key: Option<Bytes>,
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Print this help.",
];

impl Object {
    pub fn parse(args: &mut Args) -> Result<Object, CmdError> {
        let given = args.arg()?;
        let sub = given.to_ascii_uppercase();
        let known = [&b"ENCODING"[..], b"REFCOUNT", b"IDLETIME", b"FREQ"].contains(&&sub[..]);
        let key = match (&sub[..], args.remaining()) {
            (b"HELP", 0) => None,
            (_, 1) if known => Some(args.arg()?),
            // (Unknown subcommands and wrong counts are refused before this runs: see
            // `kv_proto::commands::subcommand_error`. This stays for direct callers.)
            _ => {
                let e = Frame::unknown_subcommand("OBJECT", &given);
                return Err(CmdError::Coded(
                    String::from_utf8_lossy(e.as_error().unwrap_or_default()).into_owned(),
                ));
            }
        };
        Ok(Object {
            sub: Bytes::from(sub),
            key,
        })
    }

    /// The key asked about, if any.
    pub fn key(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let Some(key) = self.key else {
            out.frame(&Frame::Array(OBJECT_HELP.iter().map(|l| Frame::simple(l)).collect()));
            return None;
        };
        let sub = self.sub;
        let result = node.read([&key[..]], |r| {
            r.value(&key, |v| {
                let Some((v, _)) = v else { return Frame::Null };
                match &sub[..] {
                    b"ENCODING" => Frame::bulk(match v {
                        kv_store::Val::Str(s) => encoding(s),
                        v => v.encoding().unwrap_or("unknown"),
                    }),
                    b"REFCOUNT" => Frame::Integer(1),
                    b"IDLETIME" => Frame::Integer(0),
                    _ => Frame::error(
                        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
                    ),
                }
            })
        });
        frame_reply(out, result)
    }
}

/// `MEMORY USAGE key [SAMPLES n]`: the bytes the key costs this server, as `--maxmemory`
/// counts them.
#[derive(Debug)]
pub struct MemoryUsage {
    key: Bytes,
}

impl MemoryUsage {
    pub fn parse(args: &mut Args) -> Result<MemoryUsage, CmdError> {
        let sub = args.arg()?;
        if !sub.eq_ignore_ascii_case(b"USAGE") {
            return Err(CmdError::Other(format!(
                "unknown subcommand '{}'. Try MEMORY HELP.",
                String::from_utf8_lossy(&sub)
            )));
        }
        let key = args.arg()?;
        match args.remaining() {
            0 => {}
            2 => {
                let opt = args.arg()?;
                if !opt.eq_ignore_ascii_case(b"SAMPLES") {
                    return Err(CmdError::Syntax);
                }
                args.arg_i64()?;
            }
            _ => return Err(CmdError::Syntax),
        }
        Ok(MemoryUsage { key })
    }

    /// The key asked about.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        let result = node.read([&self.key[..]], |r| {
            if r.exists(&self.key) {
                r.charged(&self.key)
            } else {
                None
            }
        });
        reply(out, result, |out, n| match n {
            Some(n) => kv_proto::write::integer(out, n as i64),
            None => out.null(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_as_redis_names_them() {
        assert_eq!(encoding(b"12345"), "int");
        assert_eq!(encoding(b"012"), "embstr");
        assert_eq!(encoding(&[b'a'; 44]), "embstr");
        assert_eq!(encoding(&[b'a'; 45]), "raw");
    }
}
