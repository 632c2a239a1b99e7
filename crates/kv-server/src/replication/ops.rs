//! Mutations: what the leader replicates, and how one is written on the wire.

use bytes::Bytes;
use kv_proto::{CommandBuilder, Request};
use kv_store::Store;

/// One change to a store, carrying the full resulting state of its key.
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
}

impl Mutation<'_> {
    /// Applies the mutation to a store (a follower, or a snapshot being loaded).
    pub fn apply(&self, store: &mut Store) {
        match *self {
            Mutation::Set { key, value, expires_at } => store.set(key, value, expires_at),
            Mutation::Del { key } => {
                store.remove(key);
            }
            Mutation::Expire { key, expires_at } => {
                store.set_expiry(key, expires_at);
            }
            Mutation::Inbound { .. } => {}
        }
    }

    /// The log entry for this mutation at `(epoch, offset)`.
    pub fn encode(&self, epoch: u64, offset: u64) -> Bytes {
        let payload = match *self {
            Mutation::Set { key, value, .. } => key.len() + value.len(),
            Mutation::Del { key } | Mutation::Expire { key, .. } => key.len(),
            Mutation::Inbound { .. } => 0,
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

/// Why an entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed replication entry: {0}")]
pub struct DecodeError(pub &'static str);

/// Parses a decimal argument.
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn expiry(b: &[u8]) -> Result<Option<u64>, DecodeError> {
    let at = parse_u64(b).ok_or(DecodeError("bad expiry"))?;
    Ok((at != 0).then_some(at))
}

/// Decodes a `KV.OP` request.
pub fn decode(req: &Request) -> Result<Entry<'_>, DecodeError> {
    let a = req.args();
    if a.len() < 5 || !a[0].eq_ignore_ascii_case(b"KV.OP") {
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
