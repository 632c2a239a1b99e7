//! The commands the gate speaks over RESP, and how each is served: locally, forwarded to the
//! shard owning its key, or fanned out to several shards.

use std::sync::LazyLock;

use kv_proto::commands::{COMMANDS, CommandInfo, ServedBy};

use crate::forward::Access;

/// How the gate serves a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answered by the gate itself.
    Local,
    /// About the key in argument 1: forwarded whole to its shard.
    Key(Access),
    /// MGET: split by shard, replies reassembled in the client's order.
    MGet,
    /// MSET: split by shard.
    MSet,
    /// DEL, UNLINK, EXISTS: split by shard, integer replies summed.
    SumKeys(Access),
    /// DBSIZE: summed over every shard.
    DbSize,
    /// About the key at this argument (`OBJECT ENCODING key`, `MEMORY USAGE key`).
    KeyAt(usize, Access),
    /// Several keys that must live on one shard (`RENAME`, `COPY`, `MSETNX`, `LCS`, `BITOP`):
    /// forwarded whole to it, atomic there; `CROSSSLOT` when they live on different shards.
    SameShard(Access),
    /// Sent to every shard and combined.
    EveryShard(Every),
    /// PFCOUNT: forwarded whole when its keys share a shard; otherwise the gate reads each
    /// HLL and merges them itself.
    PfCount,
    /// SORT, SORT_RO: forwarded whole when it can be; otherwise run by the gate (`sort`).
    Sort,
    /// A blocking pop: its keys on one shard, sent over a connection of its own (it may
    /// wait long, and would hold up every other request pipelined on a shared one).
    Blocking,
}

/// The commands that go to every shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// FLUSHALL, FLUSHDB: OK when every shard flushed.
    Flush,
    /// KEYS: the shards' arrays concatenated.
    Keys,
    /// RANDOMKEY: one shard's random key.
    RandomKey,
    /// SCAN: the cursor walks the shards one after another.
    Scan,
}

/// One command as the gate serves it.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    /// Arity, flags and key positions, shared with the servers.
    pub info: &'static CommandInfo,
}

const R: Kind = Kind::Key(Access::Read);
const W: Kind = Kind::Key(Access::Write);
const SUM_W: Kind = Kind::SumKeys(Access::Write);

/// How the gate serves each command of `kv_proto::commands` it answers.
fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "ping" | "echo" | "quit" | "select" | "hello" | "auth" | "acl" | "client" | "command" | "info" | "time"
        | "config" | "function" | "slowlog" | "latency" => Kind::Local,
        // Served by the session before this table (`transaction`).
        "multi" | "exec" | "discard" | "watch" | "unwatch" => Kind::Local,
        // A script's keys share a shard; with none, the script picks one.
        "eval" | "evalsha" => Kind::SameShard(Access::Write),
        "eval_ro" | "evalsha_ro" | "fcall_ro" => Kind::SameShard(Access::Read),
        "fcall" => Kind::SameShard(Access::Write),
        "script" => Kind::Local,
        // Served by the session before this table (`pubsub`).
        "publish" | "spublish" | "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" | "pubsub" => Kind::Local,
        "getrange" | "substr" | "getbit" | "bitcount" | "bitpos" | "bitfield_ro" | "type" | "expiretime"
        | "pexpiretime" | "dump" => R,
        "setrange" | "getex" | "incrbyfloat" | "setbit" | "bitfield" | "restore" => W,
        "object" | "memory" => Kind::KeyAt(2, Access::Read),
        "touch" => Kind::SumKeys(Access::Read),
        "lcs" => Kind::SameShard(Access::Read),
        "rename" | "renamenx" | "copy" | "msetnx" | "bitop" => Kind::SameShard(Access::Write),
        "flushall" | "flushdb" => Kind::EveryShard(Every::Flush),
        "keys" => Kind::EveryShard(Every::Keys),
        "randomkey" => Kind::EveryShard(Every::RandomKey),
        "scan" => Kind::EveryShard(Every::Scan),
        "dbsize" => Kind::DbSize,
        // Collections: reads.
        "hget" | "hmget" | "hlen" | "hstrlen" | "hexists" | "hkeys" | "hvals" | "hgetall" | "hrandfield" | "hscan"
        | "llen" | "lindex" | "lrange" | "lpos" | "smembers" | "sismember" | "smismember" | "scard" | "srandmember"
        | "sscan" | "zcard" | "zscore" | "zmscore" | "zrank" | "zrevrank" | "zcount" | "zlexcount" | "zrange"
        | "zrevrange" | "zrangebyscore" | "zrevrangebyscore" | "zrangebylex" | "zrevrangebylex" | "zrandmember"
        | "zscan" => R,
        // Writes (none is sent again once a server may have applied it: see `forward`).
        "hset" | "hmset" | "hsetnx" | "hdel" | "hincrby" | "hincrbyfloat" | "lpush" | "rpush" | "lpushx" | "rpushx"
        | "lpop" | "rpop" | "linsert" | "lrem" | "lset" | "ltrim" | "sadd" | "srem" | "spop" | "zadd" | "zincrby"
        | "zrem" | "zremrangebyscore" | "zremrangebylex" | "zremrangebyrank" | "zpopmin" | "zpopmax" | "pfadd"
        | "geoadd" => W,
        "geodist" | "geohash" | "geopos" | "georadius_ro" | "georadiusbymember_ro" | "geosearch" => R,
        // Their STORE key, when given, must share the shard.
        "georadius" | "georadiusbymember" | "geosearchstore" => Kind::SameShard(Access::Write),
        "pfcount" => Kind::PfCount,
        "sort" | "sort_ro" => Kind::Sort,
        "pfmerge" => Kind::SameShard(Access::Write),
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "blmpop" | "bzpopmin" | "bzpopmax" | "bzmpop" => Kind::Blocking,
        // Several keys, atomic on their shard.
        "sinter" | "sunion" | "sdiff" | "sintercard" | "zunion" | "zinter" | "zdiff" | "zintercard" => {
            Kind::SameShard(Access::Read)
        }
        "smove" | "sinterstore" | "sunionstore" | "sdiffstore" | "lmove" | "rpoplpush" | "lmpop" | "zrangestore"
        | "zmpop" | "zunionstore" | "zinterstore" | "zdiffstore" => Kind::SameShard(Access::Write),
        "get" | "ttl" | "pttl" | "strlen" => R,
        "set" | "setex" | "psetex" | "setnx" | "getset" | "getdel" | "incr" | "incrby" | "decr" | "decrby"
        | "append" | "expire" | "pexpire" | "expireat" | "pexpireat" | "persist" => W,
        "mget" => Kind::MGet,
        "mset" => Kind::MSet,
        "del" | "unlink" => SUM_W,
        "exists" => Kind::SumKeys(Access::Read),
        _ => return None,
    })
}

/// The gate's commands by lower-case name: a hash lookup per request (the table is built
/// once; foldhash, as `kv_proto::commands::lookup` explains).
static BY_NAME: LazyLock<hashbrown::HashMap<&'static [u8], Spec>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .filter(|c| c.served_by != ServedBy::Server)
        .map(|info| {
            let kind = kind(info.name).unwrap_or_else(|| panic!("the gate serves {}", info.name));
            (
                info.name.as_bytes(),
                Spec {
                    name: info.name,
                    kind,
                    info,
                },
            )
        })
        .collect()
});

/// Every command the gate serves, for `INFO commandstats`.
pub fn all() -> impl Iterator<Item = &'static Spec> {
    BY_NAME.values()
}

/// The command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let (buf, len) = kv_proto::commands::lower_name(name)?;
    BY_NAME.get(&buf[..len])
}

impl Spec {
    /// True when `argc` arguments (name included) suit the command.
    pub fn arity_ok(&self, argc: usize) -> bool {
        self.info.arity_ok(argc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_command_has_a_way_to_be_served() {
        assert_eq!(lookup(b"GeT").unwrap().kind, Kind::Key(Access::Read));
        assert_eq!(lookup(b"set").unwrap().kind, W);
        assert!(lookup(b"nosuchcommandatall").is_none());
        assert!(lookup(b"cluster").is_none(), "the gate is not a cluster node");
        assert!(lookup(b"MSET").unwrap().arity_ok(5));
        assert_eq!(
            BY_NAME.len(),
            COMMANDS.iter().filter(|c| c.served_by != ServedBy::Server).count()
        );
    }
}
