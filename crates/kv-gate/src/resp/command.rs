//! The commands the gate speaks over RESP, and how each is served: locally, forwarded to the
//! shard owning its key, or fanned out to several shards.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::forward::Access;

/// How the gate serves a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answered by the gate itself.
    Local,
    /// About the key in argument 1: forwarded whole to its shard.
    Key(Access),
    /// SET: idempotent unless NX, XX or GET make its reply depend on the previous state.
    Set,
    /// MGET: split by shard, replies reassembled in the client's order.
    MGet,
    /// MSET: split by shard.
    MSet,
    /// DEL, UNLINK, EXISTS: split by shard, integer replies summed.
    SumKeys(Access),
    /// DBSIZE: summed over every shard.
    DbSize,
}

/// One command.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    /// Redis arity: `n` exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    pub kind: Kind,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
}

const R: Kind = Kind::Key(Access::Read);
const W: Kind = Kind::Key(Access::Write { idempotent: true });
/// A write whose reply (or effect) depends on the state it found: never repeated blindly.
const W1: Kind = Kind::Key(Access::Write { idempotent: false });

const fn spec(
    name: &'static str,
    arity: i32,
    kind: Kind,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
) -> Spec {
    Spec {
        name,
        arity,
        kind,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const PAIRS: (i32, i32, i32) = (1, -1, 2);
const RO: &[&str] = &["readonly", "fast"];
const WR: &[&str] = &["write", "denyoom"];
const FAST: &[&str] = &["fast"];

/// Every command, as `COMMAND` reports it.
pub static COMMANDS: &[Spec] = &[
    spec("ping", -1, Kind::Local, FAST, NONE),
    spec("echo", 2, Kind::Local, FAST, NONE),
    spec("quit", -1, Kind::Local, FAST, NONE),
    spec("select", 2, Kind::Local, FAST, NONE),
    spec("hello", -1, Kind::Local, FAST, NONE),
    spec("client", -2, Kind::Local, &["admin"], NONE),
    spec("command", -1, Kind::Local, &["loading"], NONE),
    spec("info", -1, Kind::Local, &["loading"], NONE),
    spec("dbsize", 1, Kind::DbSize, RO, NONE),
    spec("get", 2, R, RO, ONE),
    spec("set", -3, Kind::Set, WR, ONE),
    spec("setnx", 3, W1, WR, ONE),
    spec("setex", 4, W, WR, ONE),
    spec("psetex", 4, W, WR, ONE),
    spec("getset", 3, W1, WR, ONE),
    spec("getdel", 2, W1, &["write", "fast"], ONE),
    spec("mget", -2, Kind::MGet, RO, ALL),
    spec("mset", -3, Kind::MSet, WR, PAIRS),
    spec(
        "del",
        -2,
        Kind::SumKeys(Access::Write { idempotent: true }),
        &["write"],
        ALL,
    ),
    spec(
        "unlink",
        -2,
        Kind::SumKeys(Access::Write { idempotent: true }),
        &["write", "fast"],
        ALL,
    ),
    spec("exists", -2, Kind::SumKeys(Access::Read), RO, ALL),
    spec("expire", -3, W, &["write", "fast"], ONE),
    spec("pexpire", -3, W, &["write", "fast"], ONE),
    spec("expireat", -3, W, &["write", "fast"], ONE),
    spec("pexpireat", -3, W, &["write", "fast"], ONE),
    spec("persist", 2, W, &["write", "fast"], ONE),
    spec("ttl", 2, R, RO, ONE),
    spec("pttl", 2, R, RO, ONE),
    spec("incr", 2, W1, WR, ONE),
    spec("incrby", 3, W1, WR, ONE),
    spec("decr", 2, W1, WR, ONE),
    spec("decrby", 3, W1, WR, ONE),
    spec("append", 3, W1, WR, ONE),
    spec("strlen", 2, R, RO, ONE),
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Spec>> =
    LazyLock::new(|| COMMANDS.iter().map(|s| (s.name, s)).collect());

/// The command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let mut buf = [0u8; 16];
    if name.len() > buf.len() {
        return None;
    }
    for (b, c) in buf.iter_mut().zip(name) {
        *b = c.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&buf[..name.len()]).ok()?;
    BY_NAME.get(lower).copied()
}

impl Spec {
    /// True when `argc` arguments (name included) suit the command.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_arity_follows_redis() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuchcommandatall").is_none());
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(3));
        let mset = lookup(b"MSET").unwrap();
        assert!(mset.arity_ok(3) && mset.arity_ok(5) && !mset.arity_ok(2));
    }
}
