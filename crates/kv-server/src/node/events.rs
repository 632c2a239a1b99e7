//! Keyspace notifications (`notify-keyspace-events`): each change a command makes to a key
//! is published, as Redis publishes it, on `__keyspace@0__:<key>` (the event's name) and
//! `__keyevent@0__:<event>` (the key), in the classes the setting enables.
//!
//! Events are named from what the change was (the log's mutations: `set`, `del`, `lpush`,
//! `sadd`, `expired` ...), refined by the command that made it where Redis names the event
//! after the command (`incrby`, `hincrby`, `zincr`, `rename_from` ...). They are published
//! at the key's leader; a gate subscribes patterns, and these channels, at every leader, so
//! each subscriber gets each event once.

use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use kv_peer::{ElemOp, Mutation};
use kv_proto::Kind;
use kv_proto::notify::{self as class, wanted};

thread_local! {
    /// The command running on this thread, for events named after it.
    static COMMAND: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Names the command whose changes follow on this thread (`None` after it).
pub fn set_command(name: Option<&'static str>) {
    COMMAND.set(name);
}

/// Why a key went without a command deleting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Expired,
    Evicted,
}

/// The enabled classes, and where events are published.
pub struct Events {
    pub flags: u32,
    pub hub: Arc<kv_pubsub::Hub>,
}

impl Events {
    /// Publishes the event for `m` (made for `cause`, if any), when its class is enabled.
    pub fn on(&self, m: &Mutation<'_>, cause: Option<Cause>) {
        let Some((key, event, class)) = describe(m, cause, COMMAND.get()) else {
            return;
        };
        self.publish(key, event, class);
        // A SET with an expiry is two events in Redis: `set`, then `expire`.
        if let Mutation::Set {
            expires_at: Some(_), ..
        } = m
            && event == "set"
        {
            self.publish(key, "expire", class::GENERIC);
        }
    }

    /// Publishes one event on the channels the flags enable.
    pub fn publish(&self, key: &[u8], event: &'static str, class: u32) {
        if !wanted(self.flags, class) {
            return;
        }
        if self.flags & class::KEYSPACE != 0 {
            let channel = Bytes::from([&b"__keyspace@0__:"[..], key].concat());
            self.hub.publish(
                kv_pubsub::Space::Global,
                &channel,
                &Bytes::from_static(event.as_bytes()),
            );
        }
        if self.flags & class::KEYEVENT != 0 {
            let channel = Bytes::from(format!("__keyevent@0__:{event}"));
            self.hub
                .publish(kv_pubsub::Space::Global, &channel, &Bytes::copy_from_slice(key));
        }
    }
}

/// The key a change is to, the event's name and its class.
fn describe<'m>(
    m: &Mutation<'m>,
    cause: Option<Cause>,
    command: Option<&'static str>,
) -> Option<(&'m [u8], &'static str, u32)> {
    let cmd = command.unwrap_or_default();
    Some(match *m {
        Mutation::Del { key } => match cause {
            Some(Cause::Expired) => (key, "expired", class::EXPIRED),
            Some(Cause::Evicted) => (key, "evicted", class::EVICTED),
            None if matches!(cmd, "rename" | "renamenx") => (key, "rename_from", class::GENERIC),
            None => (key, "del", class::GENERIC),
        },
        Mutation::Expire { key, expires_at } => match expires_at {
            None => (key, "persist", class::GENERIC),
            Some(_) => (key, "expire", class::GENERIC),
        },
        Mutation::Set { key, .. } => {
            let generic = |e| (key, e, class::GENERIC);
            match cmd {
                "incr" | "incrby" => (key, "incrby", class::STRING),
                "decr" | "decrby" => (key, "decrby", class::STRING),
                "incrbyfloat" | "append" | "setrange" => (key, cmd, class::STRING),
                "setbit" | "bitfield" => (key, "setbit", class::STRING),
                "pfadd" | "pfmerge" | "pfcount" => (key, "pfadd", class::STRING),
                "rename" | "renamenx" => generic("rename_to"),
                "copy" => generic("copy_to"),
                "restore" => generic("restore"),
                _ => (key, "set", class::STRING),
            }
        }
        Mutation::Object { key, kind, .. } => {
            let of_kind = match kind {
                Kind::List => class::LIST,
                Kind::Set => class::SET,
                Kind::ZSet => class::ZSET,
                Kind::Hash => class::HASH,
                _ => class::STRING,
            };
            match cmd {
                "rename" | "renamenx" => (key, "rename_to", class::GENERIC),
                "copy" => (key, "copy_to", class::GENERIC),
                "restore" => (key, "restore", class::GENERIC),
                "sort" => (key, "sortstore", class::LIST),
                "georadius" | "georadiusbymember" | "geosearchstore" => (key, "georadiusstore", class::ZSET),
                "" => (key, "set", of_kind),
                c => (key, c, of_kind),
            }
        }
        Mutation::Elems { key, op, .. } => match op {
            ElemOp::HSet => match cmd {
                "hincrby" | "hincrbyfloat" => (key, cmd, class::HASH),
                _ => (key, "hset", class::HASH),
            },
            ElemOp::HDel => (key, "hdel", class::HASH),
            ElemOp::SAdd => (key, "sadd", class::SET),
            ElemOp::SRem => match cmd {
                "spop" => (key, "spop", class::SET),
                _ => (key, "srem", class::SET),
            },
            ElemOp::ZAdd => match cmd {
                "zincrby" => (key, "zincr", class::ZSET),
                _ => (key, "zadd", class::ZSET),
            },
            ElemOp::ZRem => match cmd {
                "zremrangebyscore" | "zremrangebyrank" | "zremrangebylex" | "zpopmin" | "zpopmax" => {
                    (key, cmd, class::ZSET)
                }
                "bzpopmin" => (key, "zpopmin", class::ZSET),
                "bzpopmax" => (key, "zpopmax", class::ZSET),
                _ => (key, "zrem", class::ZSET),
            },
            ElemOp::LPush => (key, "lpush", class::LIST),
            ElemOp::RPush => (key, "rpush", class::LIST),
            ElemOp::LPop => (key, "lpop", class::LIST),
            ElemOp::RPop => (key, "rpop", class::LIST),
            ElemOp::LSet => (key, "lset", class::LIST),
            ElemOp::LInsert => (key, "linsert", class::LIST),
            ElemOp::LRemAt => (key, "lrem", class::LIST),
            ElemOp::LTrim => (key, "ltrim", class::LIST),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_as_redis_names_them() {
        let key = &b"k"[..];
        let set = Mutation::Set {
            key,
            value: b"1",
            expires_at: None,
        };
        assert_eq!(describe(&set, None, Some("set")), Some((key, "set", class::STRING)));
        assert_eq!(describe(&set, None, Some("incr")), Some((key, "incrby", class::STRING)));
        let del = Mutation::Del { key };
        assert_eq!(
            describe(&del, Some(Cause::Expired), None),
            Some((key, "expired", class::EXPIRED))
        );
        assert_eq!(
            describe(&del, None, Some("rename")),
            Some((key, "rename_from", class::GENERIC))
        );
        let hset = Mutation::Elems {
            key,
            op: ElemOp::HSet,
            args: &[],
        };
        assert_eq!(describe(&hset, None, Some("hmset")), Some((key, "hset", class::HASH)));
        assert_eq!(
            describe(&hset, None, Some("hincrby")),
            Some((key, "hincrby", class::HASH))
        );
        assert_eq!(describe(&Mutation::TxBegin, None, None), None);
    }
}
