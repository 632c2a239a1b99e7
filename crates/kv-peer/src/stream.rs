//! The replication stream, after a follower's `KV.SYNC` (all RESP arrays of bulk strings):
//!
//! ```text
//! leader → follower   KV.FULLSYNC <epoch> <offset>    then KV.SNAP <offset> <key kind value
//!                                                     expires-at>... chunks, [KV.SNAPIN
//!                                                     <inbound> <done> <tombstones...>],
//!                                                     KV.SNAPEND <offset>
//!                  or KV.CONTINUE <epoch> <offset>     (resume after <offset>)
//!                  or KV.ERR <message>                 (refused)
//! leader → follower   KV.OP ...                        (log entries, see crate::log)
//! leader → follower   KV.PING <ack-seq> <in-sync>      (heartbeat)
//! follower → leader   KV.ACK <offset> <seq>            (after applying, and per heartbeat)
//! ```
//!
//! A snapshot chunk says the log offset it was taken at: the follower replays the log from
//! the snapshot's start, and skips the entries a list in the chunk already reflects (list
//! changes are not idempotent, unlike every other entry).
//!
//! A heartbeat echoes the sequence number of the last ack the leader received and says
//! whether the follower is in the in-sync set. It is the follower's **read lease**: a
//! follower serves reads only until the time it *sent* that ack plus the lease length, a
//! bound the leader can compute from its own clock (it received the ack after it was sent),
//! so the leader knows when a follower it stopped waiting for has stopped serving reads.
//! A leader sends heartbeats only while its own lease holds.

use bytes::{Bytes, BytesMut};
use kv_proto::{CommandBuilder, Kind, Request};

use crate::log::{self, DecodeError, Entry};
use crate::parse_u64;

/// A message from the leader, parsed.
#[derive(Debug)]
pub enum LeaderMsg<'a> {
    FullSync {
        epoch: u64,
        offset: u64,
    },
    /// Taken at log `offset`: `key kind value expires-at-ms` quadruples.
    Snap {
        offset: u64,
        quads: &'a [Bytes],
    },
    SnapIn {
        version: u64,
        done: u64,
        tombstones: &'a [Bytes],
    },
    SnapEnd {
        offset: u64,
    },
    Continue {
        epoch: u64,
        after: u64,
    },
    Refused(String),
    Op(Entry<'a>),
    Ping {
        ack_seq: u64,
        in_sync: bool,
    },
}

fn arg(req: &Request, i: usize, what: &'static str) -> Result<u64, DecodeError> {
    req.args().get(i).and_then(|a| parse_u64(a)).ok_or(DecodeError(what))
}

impl<'a> LeaderMsg<'a> {
    pub fn parse(req: &'a Request) -> Result<LeaderMsg<'a>, DecodeError> {
        if log::is_entry(req) {
            return log::decode(req).map(LeaderMsg::Op);
        }
        let upper = req.name().to_ascii_uppercase();
        Ok(match &upper[..] {
            b"KV.PING" => LeaderMsg::Ping {
                ack_seq: arg(req, 1, "bad KV.PING")?,
                in_sync: arg(req, 2, "bad KV.PING")? == 1,
            },
            b"KV.SNAP" => {
                let offset = arg(req, 1, "bad KV.SNAP")?;
                let quads = &req.args()[2..];
                if !quads.len().is_multiple_of(4) {
                    return Err(DecodeError("snapshot chunk is not key/kind/value/expiry quadruples"));
                }
                LeaderMsg::Snap { offset, quads }
            }
            b"KV.FULLSYNC" => LeaderMsg::FullSync {
                epoch: arg(req, 1, "bad KV.FULLSYNC")?,
                offset: arg(req, 2, "bad KV.FULLSYNC")?,
            },
            b"KV.SNAPIN" => LeaderMsg::SnapIn {
                version: arg(req, 1, "bad KV.SNAPIN")?,
                done: arg(req, 2, "bad KV.SNAPIN")?,
                tombstones: req.args().get(3..).unwrap_or_default(),
            },
            b"KV.SNAPEND" => LeaderMsg::SnapEnd {
                offset: arg(req, 1, "bad KV.SNAPEND")?,
            },
            b"KV.CONTINUE" => LeaderMsg::Continue {
                epoch: arg(req, 1, "bad KV.CONTINUE")?,
                after: arg(req, 2, "bad KV.CONTINUE")?,
            },
            b"KV.ERR" => LeaderMsg::Refused(
                req.args()
                    .get(1)
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .unwrap_or_default(),
            ),
            _ => return Err(DecodeError("unexpected message from the leader")),
        })
    }
}

/// `KV.FULLSYNC <epoch> <offset>`
pub fn full_sync(epoch: u64, offset: u64) -> Bytes {
    CommandBuilder::new(3)
        .arg(b"KV.FULLSYNC")
        .uint(epoch)
        .uint(offset)
        .finish()
}

/// The header of a `KV.SNAP` chunk of `n` entries taken at log `offset`; each entry follows
/// as [`write_snap_entry`].
pub fn write_snap_header(out: &mut BytesMut, offset: u64, n: usize) {
    kv_proto::write::array_header(out, 2 + 4 * n);
    kv_proto::write::bulk(out, b"KV.SNAP");
    kv_proto::write::bulk(out, offset.to_string().as_bytes());
}

/// One entry of a `KV.SNAP` chunk: a string's bytes or a collection's packed encoding.
pub fn write_snap_entry(out: &mut BytesMut, key: &[u8], kind: Kind, value: &[u8], expires_at: Option<u64>) {
    kv_proto::write::bulk(out, key);
    kv_proto::write::bulk(out, kind.tag().to_string().as_bytes());
    kv_proto::write::bulk(out, value);
    kv_proto::write::bulk(out, expires_at.unwrap_or(0).to_string().as_bytes());
}

/// `KV.SNAPIN <inbound-version|0> <inbound-done> <tombstone>...`
pub fn snap_in<'a>(version: u64, done: u64, tombstones: impl ExactSizeIterator<Item = &'a [u8]>) -> Bytes {
    let mut b = CommandBuilder::new(3 + tombstones.len())
        .arg(b"KV.SNAPIN")
        .uint(version)
        .uint(done);
    for t in tombstones {
        b = b.arg(t);
    }
    b.finish()
}

/// `KV.SNAPEND <offset>`
pub fn snap_end(offset: u64) -> Bytes {
    CommandBuilder::new(2).arg(b"KV.SNAPEND").uint(offset).finish()
}

/// `KV.CONTINUE <epoch> <after>`
pub fn resume(epoch: u64, after: u64) -> Bytes {
    CommandBuilder::new(3)
        .arg(b"KV.CONTINUE")
        .uint(epoch)
        .uint(after)
        .finish()
}

/// `KV.ERR <message>`
pub fn refuse(message: &str) -> Bytes {
    CommandBuilder::new(2).arg(b"KV.ERR").arg(message.as_bytes()).finish()
}

/// `KV.PING <ack-seq> <in-sync>`
pub fn ping(ack_seq: u64, in_sync: bool) -> Bytes {
    CommandBuilder::new(3)
        .arg(b"KV.PING")
        .uint(ack_seq)
        .uint(in_sync as u64)
        .finish()
}

/// `KV.ACK <offset> <seq>`: the follower applied everything up to `offset`; `seq` numbers
/// its acks (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub offset: u64,
    pub seq: u64,
}

impl Ack {
    pub fn encode(&self) -> Bytes {
        CommandBuilder::new(3)
            .arg(b"KV.ACK")
            .uint(self.offset)
            .uint(self.seq)
            .finish()
    }

    pub fn parse(req: &Request) -> Result<Ack, DecodeError> {
        if !req.name().eq_ignore_ascii_case(b"KV.ACK") || req.len() != 3 {
            return Err(DecodeError("expected KV.ACK <offset> <seq>"));
        }
        Ok(Ack {
            offset: arg(req, 1, "bad ack offset")?,
            seq: arg(req, 2, "bad ack sequence")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_proto::{Limits, RequestParser};

    fn parse_all(bytes: &[u8]) -> Vec<Request> {
        let mut buf = BytesMut::from(bytes);
        let mut p = RequestParser::new(Limits::REDIS);
        std::iter::from_fn(|| p.parse(&mut buf).unwrap()).collect()
    }

    #[test]
    fn leader_messages_round_trip() {
        let mut out = BytesMut::new();
        out.extend_from_slice(&full_sync(3, 9));
        write_snap_header(&mut out, 8, 1);
        write_snap_entry(&mut out, b"k", Kind::Set, b"v", Some(4));
        out.extend_from_slice(&snap_in(2, 1, [&b"t"[..]].into_iter()));
        out.extend_from_slice(&snap_end(9));
        out.extend_from_slice(&resume(3, 9));
        out.extend_from_slice(&refuse("no"));
        out.extend_from_slice(&ping(5, true));
        out.extend_from_slice(&crate::Mutation::Del { key: b"k" }.encode(3, 10));
        let reqs = parse_all(&out);
        let msgs: Vec<String> = reqs
            .iter()
            .map(|r| format!("{:?}", LeaderMsg::parse(r).unwrap()))
            .collect();
        assert_eq!(
            msgs,
            [
                "FullSync { epoch: 3, offset: 9 }",
                "Snap { offset: 8, quads: [b\"k\", b\"2\", b\"v\", b\"4\"] }",
                "SnapIn { version: 2, done: 1, tombstones: [b\"t\"] }",
                "SnapEnd { offset: 9 }",
                "Continue { epoch: 3, after: 9 }",
                "Refused(\"no\")",
                "Ping { ack_seq: 5, in_sync: true }",
                "Op(Entry { epoch: 3, offset: 10, mutation: Del { key: [107] } })",
            ]
        );
        let ack = Ack { offset: 7, seq: 2 };
        assert_eq!(Ack::parse(&parse_all(&ack.encode())[0]), Ok(ack));
    }
}
