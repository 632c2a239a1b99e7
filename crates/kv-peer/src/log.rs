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
//! ```

use bytes::Bytes;
use kv_proto::{CommandBuilder, Request};

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
}

impl Mutation<'_> {
    /// The log entry for this mutation at `(epoch, offset)`.
    pub fn encode(&self, epoch: u64, offset: u64) -> Bytes {
        let payload = match *self {
            Mutation::Set { key, value, .. } => key.len() + value.len(),
            Mutation::Del { key } | Mutation::Expire { key, .. } => key.len(),
            Mutation::Inbound { .. } | Mutation::Flush => 0,
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
        (b"INBOUND", 5) => Mutation::Inbound {
            version: parse_u64(&a[4]).ok_or(DecodeError("bad ring version"))?,
        },
        (b"EXPIRE", 6) => Mutation::Expire {
            key: &a[4],
            expires_at: expiry(&a[5])?,
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
            Mutation::Expire {
                key: b"k",
                expires_at: None,
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
