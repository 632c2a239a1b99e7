//! [`Mutation`]: one change the leader replicates, carrying the full resulting state of its
//! key (a `SET` carries the whole value, never "increment"), so replaying it twice converges.
//! Written on the stream as `KV.OP <epoch> <offset> <op> <args...>`:
//!
//! ```text
//! KV.OP <epoch> <offset> SET <key> <value> <expires-at-ms|0>
//! KV.OP <epoch> <offset> DEL <key>
//! KV.OP <epoch> <offset> EXPIRE <key> <expires-at-ms|0>
//! KV.OP <epoch> <offset> INBOUND <ring-version|0>
//! KV.OP <epoch> <offset> FLUSH
//! KV.OP <epoch> <offset> OBJ <key> <kind> <packed> <expires-at-ms|0>
//! KV.OP <epoch> <offset> <element op> <key> <args...>
//! ```
//!
//! `OBJ` sets a whole collection (a copy, a restore, a `*STORE` result). Element ops
//! ([`ElemOp`]) change a collection by its elements: they carry what the command *did*, never
//! how it chose (an `SPOP` is replicated as the `SREM` of the members it popped, a `ZINCRBY`
//! as a `ZADD` of the resulting score), so followers never re-run a random or time-dependent
//! choice. Those on hashes, sets and sorted sets assign or remove elements, so replaying them
//! twice converges as `SET` does; list ops do not, and a follower loading a snapshot skips
//! the ones a list in the snapshot already reflects (see `crate::stream`). An op on a key of
//! another kind does nothing (it can only meet one while replaying over a snapshot, where a
//! later entry replaces the key anyway).

use bytes::Bytes;
use kv_proto::{CommandBuilder, Kind, Request};

use crate::parse_u64;

/// One change to a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation<'a> {
    Set {
        key: &'a [u8],
        value: &'a [u8],
        expires_at: Option<u64>,
    },
    Del {
        key: &'a [u8],
    },
    Expire {
        key: &'a [u8],
        expires_at: Option<u64>,
    },
    /// From here on the shard receives keys for ring `version` (0: the move ended): deletes
    /// are remembered so a copied old value never resurrects a deleted key. A log entry, so
    /// followers start and stop remembering at exactly the leader's point.
    Inbound {
        version: u64,
    },
    /// Every key is deleted (`FLUSHALL`, `FLUSHDB`). During an inbound move, no copy of a
    /// key made before it may arrive afterwards.
    Flush,
    /// `key` is set to a whole collection, in its packed encoding.
    Object {
        key: &'a [u8],
        kind: Kind,
        payload: &'a [u8],
        expires_at: Option<u64>,
    },
    /// A change to the elements of the collection at `key` (see the module documentation).
    Elems {
        key: &'a [u8],
        op: ElemOp,
        args: &'a [Bytes],
    },
    /// The entries up to the next [`Mutation::TxEnd`] are one transaction's (`MULTI`): a
    /// follower applies them together, or not at all if the end never comes.
    TxBegin,
    /// The end of a transaction's entries (`EXEC`).
    TxEnd,
}

/// The element ops and their arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemOp {
    /// `field value ...`: set fields (the hash is created when absent).
    HSet,
    /// `field ...`: remove fields.
    HDel,
    /// `member ...`
    SAdd,
    /// `member ...`
    SRem,
    /// `score member ...`, each score its 8 bytes (little-endian IEEE 754): exact.
    ZAdd,
    /// `member ...`
    ZRem,
    /// `element ...`, each pushed at the head in turn.
    LPush,
    /// `element ...`, each appended in turn.
    RPush,
    /// `count`: remove this many from the head.
    LPop,
    /// `count`: remove this many from the tail.
    RPop,
    /// `index element`: replace the element at a position.
    LSet,
    /// `index element`: insert before a position (`index == len` appends).
    LInsert,
    /// `index ...`: remove the elements at these positions (ascending, as they were).
    LRemAt,
    /// `start end`: keep positions `start..end`.
    LTrim,
}

impl ElemOp {
    const ALL: [ElemOp; 14] = [
        ElemOp::HSet,
        ElemOp::HDel,
        ElemOp::SAdd,
        ElemOp::SRem,
        ElemOp::ZAdd,
        ElemOp::ZRem,
        ElemOp::LPush,
        ElemOp::RPush,
        ElemOp::LPop,
        ElemOp::RPop,
        ElemOp::LSet,
        ElemOp::LInsert,
        ElemOp::LRemAt,
        ElemOp::LTrim,
    ];

    pub fn name(self) -> &'static [u8] {
        match self {
            ElemOp::HSet => b"HSET",
            ElemOp::HDel => b"HDEL",
            ElemOp::SAdd => b"SADD",
            ElemOp::SRem => b"SREM",
            ElemOp::ZAdd => b"ZADD",
            ElemOp::ZRem => b"ZREM",
            ElemOp::LPush => b"LPUSH",
            ElemOp::RPush => b"RPUSH",
            ElemOp::LPop => b"LPOP",
            ElemOp::RPop => b"RPOP",
            ElemOp::LSet => b"LSET",
            ElemOp::LInsert => b"LINSERT",
            ElemOp::LRemAt => b"LREMAT",
            ElemOp::LTrim => b"LTRIM",
        }
    }

    fn from_name(name: &[u8]) -> Option<ElemOp> {
        ElemOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// True for the list ops, which replaying twice does not converge.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            ElemOp::LPush
                | ElemOp::RPush
                | ElemOp::LPop
                | ElemOp::RPop
                | ElemOp::LSet
                | ElemOp::LInsert
                | ElemOp::LRemAt
                | ElemOp::LTrim
        )
    }
}

impl<'a> Mutation<'a> {
    /// The key the mutation changes, if it is about one key.
    pub fn key(&self) -> Option<&'a [u8]> {
        match *self {
            Mutation::Set { key, .. }
            | Mutation::Del { key }
            | Mutation::Expire { key, .. }
            | Mutation::Object { key, .. }
            | Mutation::Elems { key, .. } => Some(key),
            Mutation::Inbound { .. } | Mutation::Flush | Mutation::TxBegin | Mutation::TxEnd => None,
        }
    }
}

impl Mutation<'_> {
    /// The log entry for this mutation at `(epoch, offset)`.
    pub fn encode(&self, epoch: u64, offset: u64) -> Bytes {
        let payload = match *self {
            Mutation::Set { key, value, .. } => key.len() + value.len(),
            Mutation::Del { key } | Mutation::Expire { key, .. } => key.len(),
            Mutation::Inbound { .. } | Mutation::Flush | Mutation::TxBegin | Mutation::TxEnd => 0,
            Mutation::Object { key, payload, .. } => key.len() + payload.len(),
            Mutation::Elems { key, args, .. } => key.len() + args.iter().map(|a| a.len() + 16).sum::<usize>(),
        };
        // One allocation of the right size: this runs for every write.
        let head = |n: usize| {
            CommandBuilder::with_payload(n, payload)
                .arg(b"KV.OP")
                .uint(epoch)
                .uint(offset)
        };
        match *self {
            Mutation::Set { key, value, expires_at } => head(7)
                .arg(b"SET")
                .arg(key)
                .arg(value)
                .uint(expires_at.unwrap_or(0))
                .finish(),
            Mutation::Del { key } => head(5).arg(b"DEL").arg(key).finish(),
            Mutation::Expire { key, expires_at } => {
                head(6).arg(b"EXPIRE").arg(key).uint(expires_at.unwrap_or(0)).finish()
            }
            Mutation::Inbound { version } => head(5).arg(b"INBOUND").uint(version).finish(),
            Mutation::Flush => head(4).arg(b"FLUSH").finish(),
            Mutation::TxBegin => head(4).arg(b"MULTI").finish(),
            Mutation::TxEnd => head(4).arg(b"EXEC").finish(),
            Mutation::Object {
                key,
                kind,
                payload,
                expires_at,
            } => head(8)
                .arg(b"OBJ")
                .arg(key)
                .uint(kind.tag() as u64)
                .arg(payload)
                .uint(expires_at.unwrap_or(0))
                .finish(),
            Mutation::Elems { key, op, args } => {
                let mut b = head(5 + args.len()).arg(op.name()).arg(key);
                for a in args {
                    b = b.arg(a);
                }
                b.finish()
            }
        }
    }
}

/// A decoded `KV.OP` entry.
#[derive(Debug)]
pub struct Entry<'a> {
    pub epoch: u64,
    pub offset: u64,
    pub mutation: Mutation<'a>,
}

/// Why a message of the cluster protocol could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cluster message: {0}")]
pub struct DecodeError(pub &'static str);

fn expiry(b: &[u8]) -> Result<Option<u64>, DecodeError> {
    let at = parse_u64(b).ok_or(DecodeError("bad expiry"))?;
    Ok((at != 0).then_some(at))
}

/// True when `req` is a `KV.OP` entry.
pub fn is_entry(req: &Request) -> bool {
    req.name().eq_ignore_ascii_case(b"KV.OP")
}

/// Decodes a `KV.OP` request.
pub fn decode(req: &Request) -> Result<Entry<'_>, DecodeError> {
    let a = req.args();
    if a.len() < 4 || !is_entry(req) {
        return Err(DecodeError("not a KV.OP entry"));
    }
    let epoch = parse_u64(&a[1]).ok_or(DecodeError("bad epoch"))?;
    let offset = parse_u64(&a[2]).ok_or(DecodeError("bad offset"))?;
    let mutation = match (&a[3][..], a.len()) {
        (b"SET", 7) => Mutation::Set {
            key: &a[4],
            value: &a[5],
            expires_at: expiry(&a[6])?,
        },
        (b"DEL", 5) => Mutation::Del { key: &a[4] },
        (b"FLUSH", 4) => Mutation::Flush,
        (b"MULTI", 4) => Mutation::TxBegin,
        (b"EXEC", 4) => Mutation::TxEnd,
        (b"INBOUND", 5) => Mutation::Inbound {
            version: parse_u64(&a[4]).ok_or(DecodeError("bad ring version"))?,
        },
        (b"EXPIRE", 6) => Mutation::Expire {
            key: &a[4],
            expires_at: expiry(&a[5])?,
        },
        (b"OBJ", 8) => Mutation::Object {
            key: &a[4],
            kind: parse_u64(&a[5])
                .and_then(|t| u8::try_from(t).ok())
                .and_then(Kind::from_tag)
                .filter(|k| *k != Kind::String)
                .ok_or(DecodeError("bad kind"))?,
            payload: &a[6],
            expires_at: expiry(&a[7])?,
        },
        (name, n) if n >= 5 => match ElemOp::from_name(name) {
            Some(op) => Mutation::Elems {
                key: &a[4],
                op,
                args: &a[5..],
            },
            None => return Err(DecodeError("unknown operation")),
        },
        _ => return Err(DecodeError("unknown operation")),
    };
    Ok(Entry {
        epoch,
        offset,
        mutation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kv_proto::{Limits, RequestParser};

    #[test]
    fn round_trip() {
        let elems = [
            Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0xf0, 0x3f]),
            Bytes::from_static(b"m"),
        ];
        let muts = [
            Mutation::Set {
                key: b"k\r\n",
                value: b"\0v",
                expires_at: Some(42),
            },
            Mutation::Set {
                key: b"k",
                value: b"",
                expires_at: None,
            },
            Mutation::Set {
                key: b"k",
                value: b"v",
                expires_at: Some(u64::MAX),
            },
            Mutation::Del { key: b"k" },
            Mutation::Inbound { version: 7 },
            Mutation::Flush,
            Mutation::TxBegin,
            Mutation::TxEnd,
            Mutation::Expire {
                key: b"k",
                expires_at: None,
            },
            Mutation::Object {
                key: b"h",
                kind: Kind::Hash,
                payload: b"\x01f\x01v",
                expires_at: Some(3),
            },
            Mutation::Elems {
                key: b"z",
                op: ElemOp::ZAdd,
                args: &elems,
            },
            Mutation::Elems {
                key: b"l",
                op: ElemOp::LTrim,
                args: &elems[..0],
            },
        ];
        for (i, m) in muts.iter().enumerate() {
            let bytes = m.encode(3, 100 + i as u64);
            let req = RequestParser::new(Limits::REDIS)
                .parse(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap();
            let e = decode(&req).unwrap();
            assert_eq!((e.epoch, e.offset, e.mutation), (3, 100 + i as u64, *m));
            assert_eq!(req.raw(), &bytes);
        }
    }
}
