//! Redis's ACL categories (`@read`, `@string`, `@dangerous` …) and the commands in each, as
//! `ACL CAT` lists them and `+@category` rules grant them.
//!
//! Derived from the command table where Redis derives them from flags (`@read`, `@write`,
//! `@fast`, `@slow`, `@admin`), and by family for the rest, following Redis 7.0's command
//! documentation.

use kv_proto::commands::CommandInfo;

/// Every category, in `ACL CAT`'s order.
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The bit of category `name` (lower-case, without `@`).
pub fn bit(name: &str) -> Option<u32> {
    CATEGORIES.iter().position(|c| *c == name).map(|i| 1 << i)
}

fn b(name: &str) -> u32 {
    bit(name).expect("a known category")
}

/// The categories of `info`, as a bit set.
pub fn of(info: &CommandInfo) -> u32 {
    let name = info.name;
    let flag = |f: &str| info.flags.contains(&f);
    let mut set = 0;
    if flag("readonly") {
        set |= b("read");
    }
    if flag("write") {
        set |= b("write");
    }
    set |= if flag("fast") { b("fast") } else { b("slow") };
    if flag("admin") {
        set |= b("admin") | b("dangerous");
    }
    let family = match name {
        "del" | "unlink" | "exists" | "expire" | "pexpire" | "expireat" | "pexpireat" | "persist" | "ttl" | "pttl"
        | "type" | "rename" | "renamenx" | "copy" | "keys" | "scan" | "randomkey" | "dbsize" | "flushdb"
        | "flushall" | "touch" | "dump" | "restore" | "object" | "expiretime" | "pexpiretime" => "keyspace",
        "setbit" | "getbit" | "bitcount" | "bitpos" | "bitop" | "bitfield" | "bitfield_ro" => "bitmap",
        "pfadd" | "pfcount" | "pfmerge" => "hyperloglog",
        "sort" | "sort_ro" => "set",
        "publish" | "spublish" | "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" | "pubsub" => "pubsub",
        "ping" | "echo" | "quit" | "select" | "hello" | "auth" | "client" | "command" | "readonly" | "readwrite"
        | "asking" | "reset" => "connection",
        "multi" | "exec" | "discard" | "watch" | "unwatch" => "transaction",
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "script" | "function" | "fcall" | "fcall_ro" => "scripting",
        "smove" => "set",
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "blmpop" | "lmove" | "rpoplpush" | "lmpop" => "list",
        "bzpopmin" | "bzpopmax" | "bzmpop" => "sortedset",
        n if n.starts_with("geo") => "geo",
        n if n.starts_with('h') => "hash",
        n if n.starts_with('z') => "sortedset",
        n if n.starts_with('s')
            && !matches!(
                n,
                "set" | "setnx" | "setex" | "setrange" | "strlen" | "substr" | "select"
            ) =>
        {
            "set"
        }
        n if n.starts_with('l') && n != "lcs" || n.starts_with("rpush") || n == "rpop" => "list",
        "get" | "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "getex" | "mget" | "mset" | "msetnx"
        | "append" | "strlen" | "incr" | "incrby" | "decr" | "decrby" | "incrbyfloat" | "getrange" | "substr"
        | "setrange" | "lcs" => "string",
        _ => "",
    };
    if !family.is_empty() {
        set |= b(family);
    }
    // SORT sorts lists and sorted sets too; SORT … STORE writes a list.
    if matches!(name, "sort" | "sort_ro") {
        set |= b("list") | b("sortedset");
    }
    if matches!(
        name,
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "blmpop" | "bzpopmin" | "bzpopmax" | "bzmpop"
    ) {
        set |= b("blocking");
    }
    if matches!(
        name,
        "flushall"
            | "flushdb"
            | "keys"
            | "sort"
            | "restore"
            | "config"
            | "client"
            | "info"
            | "cluster"
            | "acl"
            | "monitor"
            | "shutdown"
            | "save"
            | "bgsave"
            | "debug"
            | "migrate"
    ) {
        set |= b("dangerous");
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(name: &str) -> Vec<&'static str> {
        let set = of(kv_proto::commands::lookup(name.as_bytes()).unwrap());
        CATEGORIES
            .iter()
            .enumerate()
            .filter(|(i, _)| set & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect()
    }

    #[test]
    fn commands_fall_in_redis_categories() {
        assert_eq!(cats("get"), ["read", "string", "fast"]);
        assert_eq!(cats("set"), ["write", "string", "slow"]);
        assert_eq!(cats("sadd"), ["write", "set", "fast"]);
        assert_eq!(cats("blpop"), ["write", "list", "slow", "blocking"]);
        assert_eq!(cats("keys"), ["keyspace", "read", "slow", "dangerous"]);
        assert_eq!(cats("multi"), ["fast", "transaction"]);
        assert!(cats("lcs").contains(&"string"));
        assert!(cats("rpush").contains(&"list"));
        assert!(cats("zadd").contains(&"sortedset"));
        assert!(cats("hset").contains(&"hash"));
        assert!(cats("geoadd").contains(&"geo"));
        assert!(cats("strlen").contains(&"string"));
        // Every command has a speed.
        for c in kv_proto::commands::COMMANDS {
            assert_ne!(of(c) & (b("fast") | b("slow")), 0, "{}", c.name);
        }
    }
}
