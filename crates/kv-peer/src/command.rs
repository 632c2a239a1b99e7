//! [`PeerCommand`]: the internal commands, served only on the cluster port.
//!
//! ```text
//! KV.SYNC <node-id> <last-epoch|-> <last-offset|-> <known-epoch>
//!         a follower asks to replicate; the connection becomes a replication stream
//!         (see crate::stream)
//! KV.MIGRATE <ring-version> key kind value expires-at-ms [key kind value expires-at-ms ...]
//!         copies keys in during a ring change; each is set only if this shard has neither
//!         the key nor a tombstone for it. Reply: how many were set, or TRYAGAIN while the
//!         shard is not yet receiving keys for that version
//! KV.MIGRATEPART <ring-version> key kind part expires-at-ms offset total
//!         one part of a collection too big for one KV.MIGRATE message: bytes
//!         [offset, offset + len) of its packed encoding of `total` bytes. Parts are sent in
//!         order; the receiver stages them and sets the key as KV.MIGRATE would when the last
//!         arrives. Reply: 1 set, 0 staged (or, at the last part, not set: the key or its
//!         tombstone is there), -1 when the part does not continue what is staged (the
//!         receiver lost it: a new leader) and the sender must start the key over; TRYAGAIN
//!         as KV.MIGRATE
//! KV.DROP key [key ...]
//!         deletes old copies on the shard a key moved away from. Reply: how many existed
//! KV.FETCH key
//!         [value, expires-at-ms, kind] or nil: pulls a key before a read-modify-write at its new
//!         owner
//! KV.INFO
//!         a bulk string, the JSON of crate::ServerInfo
//! KV.WATCH <session> key [key ...]  /  KV.UNWATCH <session>  /  MULTI ... KV.EXEC <session>
//!         a gate client's WATCH, UNWATCH and EXEC: the gate multiplexes its clients over
//!         pooled connections and names each one's watch by a session number on the
//!         connection (served by the transaction layer, not parsed here)
//! KV.AS <user description> <command> [args ...]
//!         runs a script command (EVAL, EVALSHA, FCALL and their _RO forms) for a gate's
//!         client whose user is restricted: each redis.call is checked against that user's
//!         rules (`user <name> <rules…>`, as ACL LIST writes it: the gate's current view, so
//!         no race with the server learning of a new user)
//! KV.RESP3 <command> [args ...]
//!         runs a client command and replies in RESP3: a gate forwards a RESP3 client's
//!         commands wrapped so, and the server replies as it would to that client (maps,
//!         doubles, score pairs), over the same RESP2 connection
//! KV.TRACE <request id> <command> [args ...]
//!         runs a client command and logs it (target `kvstore::request`, debug) under the id
//!         the gate logged it with: a gate wraps its clients' commands so while that target
//!         is enabled in its own log filter
//! ```
//!
//! A kind is a value's `kv_proto::Kind` tag (0 string, 1 list, 2 set, 3 zset, 4 hash); a
//! collection's value is its packed encoding (`kv_store::object::packed`).
//!
//! Client commands (GET, SET, ...) are served on the cluster port too: gates forward their
//! clients' commands there.

use bytes::{Bytes, BytesMut};
use kv_proto::{CommandBuilder, Frame, Kind, Request};

use crate::log::DecodeError;
use crate::parse_u64;

/// `KV.SYNC`: where a follower resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The follower's node id.
    pub node_id: String,
    /// The follower's last applied entry, `None` when it must copy everything.
    pub position: Option<(u64, u64)>,
    /// The highest epoch the follower has seen: a leader below it is stale.
    pub known_epoch: u64,
}

/// One key of a `KV.MIGRATE` batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateItem {
    pub key: Bytes,
    pub kind: Kind,
    /// A string's bytes, a collection's packed encoding.
    pub value: Bytes,
    /// Absolute expiry in Unix milliseconds.
    pub expires_at: Option<u64>,
}

/// See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    Sync(SyncRequest),
    Migrate {
        version: u64,
        items: Vec<MigrateItem>,
    },
    /// `KV.MIGRATEPART`: `item.value` is bytes `offset..` of a packed encoding of `total`.
    MigratePart {
        version: u64,
        item: MigrateItem,
        offset: u64,
        total: u64,
    },
    Drop {
        keys: Vec<Bytes>,
    },
    Fetch {
        key: Bytes,
    },
    Info,
}

/// Why a request naming an internal command could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("ERR unknown internal command '{0}'")]
    Unknown(String),
    #[error("ERR wrong arguments for '{0}': {1}")]
    Arguments(&'static str, &'static str),
}

fn kind(b: &[u8]) -> Option<Kind> {
    parse_u64(b).and_then(|t| u8::try_from(t).ok()).and_then(Kind::from_tag)
}

fn at(b: &[u8]) -> Option<Option<u64>> {
    parse_u64(b).map(|t| (t != 0).then_some(t))
}

impl PeerCommand {
    /// The internal command in `req`; `None` when `req` is not one (its name does not start
    /// with `KV.`), so it is served as a client command.
    pub fn parse(req: &Request) -> Option<Result<PeerCommand, CommandError>> {
        let name = req.name();
        if name.len() < 3 || !name[..3].eq_ignore_ascii_case(b"KV.") {
            return None;
        }
        // A gate client's transaction session: served by the transaction layer, with the
        // connection's state (`kv_server::cmd::transaction`).
        if [&b"KV.WATCH"[..], b"KV.UNWATCH", b"KV.EXEC", b"KV.SUBSCRIBE"]
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
        {
            return None;
        }
        let a = &req.args()[1..];
        let upper = name.to_ascii_uppercase();
        Some(match &upper[..] {
            b"KV.SYNC" => parse_sync(a).map(PeerCommand::Sync),
            b"KV.MIGRATE" => parse_migrate(a),
            b"KV.MIGRATEPART" => parse_migrate_part(a),
            b"KV.DROP" if !a.is_empty() => Ok(PeerCommand::Drop { keys: a.to_vec() }),
            b"KV.DROP" => Err(CommandError::Arguments("KV.DROP", "no key")),
            b"KV.FETCH" => match a {
                [key] => Ok(PeerCommand::Fetch { key: key.clone() }),
                _ => Err(CommandError::Arguments("KV.FETCH", "one key")),
            },
            b"KV.INFO" if a.is_empty() => Ok(PeerCommand::Info),
            b"KV.INFO" => Err(CommandError::Arguments("KV.INFO", "no arguments")),
            _ => Err(CommandError::Unknown(String::from_utf8_lossy(name).into_owned())),
        })
    }

    /// The command's encoding.
    pub fn encode(&self) -> Bytes {
        match self {
            PeerCommand::Sync(s) => {
                let (e, o) = match s.position {
                    Some((e, o)) => (e.to_string(), o.to_string()),
                    None => ("-".into(), "-".into()),
                };
                CommandBuilder::new(5)
                    .arg(b"KV.SYNC")
                    .arg(s.node_id.as_bytes())
                    .arg(e.as_bytes())
                    .arg(o.as_bytes())
                    .uint(s.known_epoch)
                    .finish()
            }
            PeerCommand::Migrate { version, items } => {
                let payload: usize = items.iter().map(|i| i.key.len() + i.value.len() + 24).sum();
                let mut b = CommandBuilder::with_payload(2 + 4 * items.len(), payload)
                    .arg(b"KV.MIGRATE")
                    .uint(*version);
                for i in items {
                    b = b
                        .arg(&i.key)
                        .uint(i.kind.tag() as u64)
                        .arg(&i.value)
                        .uint(i.expires_at.unwrap_or(0));
                }
                b.finish()
            }
            PeerCommand::MigratePart {
                version,
                item,
                offset,
                total,
            } => CommandBuilder::with_payload(8, item.key.len() + item.value.len() + 64)
                .arg(b"KV.MIGRATEPART")
                .uint(*version)
                .arg(&item.key)
                .uint(item.kind.tag() as u64)
                .arg(&item.value)
                .uint(item.expires_at.unwrap_or(0))
                .uint(*offset)
                .uint(*total)
                .finish(),
            PeerCommand::Drop { keys } => {
                let mut b = CommandBuilder::new(1 + keys.len()).arg(b"KV.DROP");
                for k in keys {
                    b = b.arg(k);
                }
                b.finish()
            }
            PeerCommand::Fetch { key } => CommandBuilder::new(2).arg(b"KV.FETCH").arg(key).finish(),
            PeerCommand::Info => CommandBuilder::new(1).arg(b"KV.INFO").finish(),
        }
    }
}

fn parse_sync(a: &[Bytes]) -> Result<SyncRequest, CommandError> {
    let bad = |what| CommandError::Arguments("KV.SYNC", what);
    let [id, epoch, offset, known] = a else {
        return Err(bad("four arguments"));
    };
    let position = match (&epoch[..], &offset[..]) {
        (b"-", b"-") => None,
        (e, o) => Some((
            parse_u64(e).ok_or(bad("bad epoch"))?,
            parse_u64(o).ok_or(bad("bad offset"))?,
        )),
    };
    Ok(SyncRequest {
        node_id: String::from_utf8(id.to_vec()).map_err(|_| bad("node id is not UTF-8"))?,
        position,
        known_epoch: parse_u64(known).ok_or(bad("bad known epoch"))?,
    })
}

fn parse_migrate(a: &[Bytes]) -> Result<PeerCommand, CommandError> {
    let bad = |what| CommandError::Arguments("KV.MIGRATE", what);
    let (version, rest) = a.split_first().ok_or(bad("no ring version"))?;
    let version = parse_u64(version).ok_or(bad("bad ring version"))?;
    if rest.is_empty() || !rest.len().is_multiple_of(4) {
        return Err(bad("key kind value expiry quadruples"));
    }
    let items = rest
        .chunks_exact(4)
        .map(|t| {
            Ok(MigrateItem {
                key: t[0].clone(),
                kind: kind(&t[1]).ok_or(bad("bad kind"))?,
                value: t[2].clone(),
                expires_at: at(&t[3]).ok_or(bad("bad expiry"))?,
            })
        })
        .collect::<Result<Vec<_>, CommandError>>()?;
    Ok(PeerCommand::Migrate { version, items })
}

fn parse_migrate_part(a: &[Bytes]) -> Result<PeerCommand, CommandError> {
    let bad = |what| CommandError::Arguments("KV.MIGRATEPART", what);
    let [version, key, kind_tag, part, exp, offset, total] = a else {
        return Err(bad("version key kind part expiry offset total"));
    };
    let (offset, total) = match (parse_u64(offset), parse_u64(total)) {
        (Some(o), Some(t)) if o.checked_add(part.len() as u64).is_some_and(|end| end <= t) => (o, t),
        _ => return Err(bad("bad offset or total")),
    };
    Ok(PeerCommand::MigratePart {
        version: parse_u64(version).ok_or(bad("bad ring version"))?,
        item: MigrateItem {
            key: key.clone(),
            kind: kind(kind_tag).ok_or(bad("bad kind"))?,
            value: part.clone(),
            expires_at: at(exp).ok_or(bad("bad expiry"))?,
        },
        offset,
        total,
    })
}

/// The error a kvserver answers a gate with when a script that declared no keys touched,
/// before writing anything, a key another shard serves: the key follows, and the gate runs
/// the script again on that key's shard.
pub const SCRIPT_REROUTE: &str = "KVREROUTE ";

/// `words` (each a bulk string) in front of an encoded multibulk command. `None` when `raw`
/// is not a multibulk array.
fn wrap(raw: &[u8], words: &[&[u8]]) -> Option<Bytes> {
    let end = raw.iter().position(|&b| b == b'\r')?;
    if raw.first() != Some(&b'*') {
        return None;
    }
    let n: usize = std::str::from_utf8(raw.get(1..end)?).ok()?.parse().ok()?;
    let mut out = BytesMut::with_capacity(raw.len() + 16 + words.iter().map(|w| w.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", n + words.len()).as_bytes());
    for w in words {
        kv_proto::write::bulk(&mut out, w);
    }
    out.extend_from_slice(raw.get(end + 2..)?);
    Some(out.freeze())
}

/// The first `n` arguments after the name of a request named `name`, and the command after
/// them; `None` when `req` is not one.
fn unwrap(req: &Request, name: &[u8], n: usize) -> Option<(Vec<Bytes>, Request)> {
    if !req.name().eq_ignore_ascii_case(name) || req.len() < n + 2 {
        return None;
    }
    let args = req.args();
    Some((args[1..=n].to_vec(), Request::new(args[n + 1..].to_vec())))
}

/// `KV.RESP3` in front of an encoded multibulk command (see the module documentation).
/// `None` when `raw` is not a multibulk array.
pub fn wrap_resp3(raw: &[u8]) -> Option<Bytes> {
    wrap(raw, &[b"KV.RESP3"])
}

/// `KV.AS <user description>` in front of an encoded multibulk command (see the module
/// documentation). `None` when `raw` is not a multibulk array.
pub fn wrap_as_user(raw: &[u8], user: &str) -> Option<Bytes> {
    wrap(raw, &[b"KV.AS", user.as_bytes()])
}

/// `KV.TRACE <request id>` in front of an encoded multibulk command: the server logs the
/// command under the id the gate logged it with. `None` when `raw` is not a multibulk array.
pub fn wrap_traced(raw: &[u8], id: &str) -> Option<Bytes> {
    wrap(raw, &[b"KV.TRACE", id.as_bytes()])
}

/// The user description and the command inside a `KV.AS` request, or `None` when `req` is
/// not one.
pub fn unwrap_as_user(req: &Request) -> Option<(Bytes, Request)> {
    unwrap(req, b"KV.AS", 1).map(|(mut a, r)| (a.remove(0), r))
}

/// The command inside a `KV.RESP3` request, or `None` when `req` is not one.
pub fn unwrap_resp3(req: &Request) -> Option<Request> {
    unwrap(req, b"KV.RESP3", 0).map(|(_, r)| r)
}

/// The request id and the command inside a `KV.TRACE` request, or `None` when `req` is not
/// one.
pub fn unwrap_traced(req: &Request) -> Option<(Bytes, Request)> {
    unwrap(req, b"KV.TRACE", 1).map(|(mut a, r)| (a.remove(0), r))
}

/// Writes the reply to `KV.FETCH`.
pub fn write_fetch_reply(out: &mut BytesMut, hit: Option<(Kind, &[u8], Option<u64>)>) {
    match hit {
        Some((kind, value, expires_at)) => {
            kv_proto::write::array_header(out, 3);
            kv_proto::write::bulk(out, value);
            kv_proto::write::bulk(out, expires_at.unwrap_or(0).to_string().as_bytes());
            kv_proto::write::bulk(out, kind.tag().to_string().as_bytes());
        }
        None => kv_proto::write::null(out),
    }
}

/// Reads the reply to `KV.FETCH`: the value and its expiry, or `None` when absent.
pub fn parse_fetch_reply(frame: &Frame) -> Result<Option<MigrateItemValue>, DecodeError> {
    match frame {
        Frame::Null => Ok(None),
        Frame::Array(parts) => match &parts[..] {
            [Frame::Bulk(value), Frame::Bulk(at_ms), Frame::Bulk(k)] => Ok(Some(MigrateItemValue {
                value: value.clone(),
                kind: kind(k).ok_or(DecodeError("bad kind in KV.FETCH reply"))?,
                expires_at: at(at_ms).ok_or(DecodeError("bad expiry in KV.FETCH reply"))?,
            })),
            _ => Err(DecodeError("malformed KV.FETCH reply")),
        },
        _ => Err(DecodeError("malformed KV.FETCH reply")),
    }
}

/// A fetched value and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateItemValue {
    pub value: Bytes,
    pub kind: Kind,
    pub expires_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_proto::{Limits, RequestParser};

    fn reparse(b: &Bytes) -> Request {
        RequestParser::new(Limits::REDIS)
            .parse(&mut BytesMut::from(&b[..]))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn every_command_round_trips() {
        let cmds = [
            PeerCommand::Sync(SyncRequest {
                node_id: "n1".into(),
                position: Some((3, 99)),
                known_epoch: 4,
            }),
            PeerCommand::Sync(SyncRequest {
                node_id: "n1".into(),
                position: None,
                known_epoch: 0,
            }),
            PeerCommand::Migrate {
                version: 7,
                items: vec![
                    MigrateItem {
                        key: Bytes::from_static(b"k"),
                        kind: Kind::Hash,
                        value: Bytes::from_static(b"\r\nv"),
                        expires_at: Some(5),
                    },
                    MigrateItem {
                        key: Bytes::from_static(b"j"),
                        kind: Kind::String,
                        value: Bytes::new(),
                        expires_at: None,
                    },
                ],
            },
            PeerCommand::MigratePart {
                version: 7,
                item: MigrateItem {
                    key: Bytes::from_static(b"z"),
                    kind: Kind::ZSet,
                    value: Bytes::from_static(b"part"),
                    expires_at: None,
                },
                offset: 10,
                total: 14,
            },
            PeerCommand::Drop {
                keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            },
            PeerCommand::Fetch {
                key: Bytes::from_static(b"a"),
            },
            PeerCommand::Info,
        ];
        for c in cmds {
            let req = reparse(&c.encode());
            assert_eq!(PeerCommand::parse(&req), Some(Ok(c)));
        }
    }

    #[test]
    fn client_commands_are_not_internal_and_bad_ones_are_refused() {
        let get = Request::new(vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]);
        assert_eq!(PeerCommand::parse(&get), None);
        let bad = Request::new(vec![Bytes::from_static(b"kv.sync"), Bytes::from_static(b"n")]);
        assert!(matches!(
            PeerCommand::parse(&bad),
            Some(Err(CommandError::Arguments(..)))
        ));
        let unknown = Request::new(vec![Bytes::from_static(b"KV.NOPE")]);
        assert!(matches!(
            PeerCommand::parse(&unknown),
            Some(Err(CommandError::Unknown(_)))
        ));
        let migrate = Request::new(
            ["KV.MIGRATE", "1", "k", "v"]
                .iter()
                .map(|s| Bytes::from(s.to_string()))
                .collect(),
        );
        assert!(matches!(PeerCommand::parse(&migrate), Some(Err(_))));
        let past_total = Request::new(
            ["KV.MIGRATEPART", "1", "k", "3", "abcd", "0", "8", "10"]
                .iter()
                .map(|s| Bytes::from(s.to_string()))
                .collect(),
        );
        assert!(matches!(PeerCommand::parse(&past_total), Some(Err(_))), "8 + 4 > 10");
    }

    #[test]
    fn resp3_and_user_wrapping_round_trip() {
        let raw = kv_proto::write::command([&b"HGETALL"[..], b"h"]);
        let bob = "user bob on ~x* +@scripting";
        let (user, inner) = unwrap_as_user(&reparse(&wrap_as_user(&raw, bob).unwrap())).unwrap();
        assert_eq!(&user[..], bob.as_bytes());
        assert_eq!(inner.args(), reparse(&raw).args());
        let wrapped = wrap_resp3(&raw).unwrap();
        let req = reparse(&wrapped);
        assert_eq!(req.args()[0], "KV.RESP3");
        let inner = unwrap_resp3(&req).unwrap();
        assert_eq!(inner.args(), reparse(&raw).args());
        assert!(wrap_resp3(b"PING\r\n").is_none());
    }

    #[test]
    fn fetch_replies_round_trip() {
        for hit in [
            None,
            Some((Kind::String, &b"v"[..], Some(9))),
            Some((Kind::ZSet, &b""[..], None)),
        ] {
            let mut out = BytesMut::new();
            write_fetch_reply(&mut out, hit);
            let frame = kv_proto::parse_reply(&mut out, &Limits::REDIS).unwrap().unwrap();
            let got = parse_fetch_reply(&frame).unwrap();
            assert_eq!(
                got.map(|g| (g.kind, g.value.to_vec(), g.expires_at)),
                hit.map(|(k, v, at)| (k, v.to_vec(), at))
            );
        }
    }
}
