//! The commands kvstore speaks, as `COMMAND` reports them: name, arity, flags and key
//! positions. One table for the gate and the servers: cluster-aware clients (redis-py's
//! `RedisCluster`, for one) read it to find each command's keys, and both ends must agree.

use bytes::Bytes;

use crate::Frame;

/// Who answers a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    Both,
    /// Only the gate (`FUNCTION` today).
    Gate,
    /// Only servers (the Redis Cluster commands).
    Server,
}

/// One command.
#[derive(Debug)]
pub struct CommandInfo {
    pub name: &'static str,
    /// Redis arity: `n` exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub served_by: ServedBy,
    /// For commands that say how many keys they take (`ZUNION numkeys key ...`): the
    /// position of that count, the keys following it (besides any fixed key positions, such
    /// as a `*STORE` form's destination). 0 for the others.
    pub numkeys_at: usize,
    /// True when the argument after a `STORE` or `STOREDIST` keyword is a key too.
    pub store_keyword: bool,
}

/// True when `argc` arguments (name included) suit a Redis arity: `n` exactly `n`, `-n` at
/// least `n`.
fn arity_fits(arity: i32, argc: usize) -> bool {
    let argc = argc as i32;
    if arity >= 0 { argc == arity } else { argc >= -arity }
}

impl CommandInfo {
    /// This command's position in [`COMMANDS`]: per-command counters are indexed by it.
    /// (Every `&CommandInfo` in use comes from that table; any other gets an index past it.)
    pub fn index(&self) -> usize {
        (self as *const Self as usize).wrapping_sub(COMMANDS.as_ptr() as usize) / std::mem::size_of::<Self>()
    }

    /// True when `argc` arguments (name included) suit the command.
    pub fn arity_ok(&self, argc: usize) -> bool {
        arity_fits(self.arity, argc)
    }

    /// The error for a request naming a key longer than `max` bytes (`--max-key-len`).
    pub fn key_too_long(&self, args: &[Bytes], max: usize) -> Option<String> {
        let long = self.keys(args).map(Bytes::len).find(|n| *n > max)?;
        Some(format!("ERR key too long: {long} bytes, more than max-key-len ({max})"))
    }

    /// True when the command names at most one key whatever its arguments (no key count, no
    /// `STORE` keyword, one fixed key position at most): its keys cannot span slots, so the
    /// per-request `CROSSSLOT` check is skipped for it.
    pub fn at_most_one_key(&self) -> bool {
        self.numkeys_at == 0 && !self.store_keyword && (self.first_key <= 0 || self.first_key == self.last_key)
    }

    /// The keys among a request's arguments (`args[0]` is the name), by the table's key
    /// positions: what cluster clients and the slot checks see as the command's keys.
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + use<'a> {
        let counted = match self.numkeys_at {
            0 => &[][..],
            at => {
                let n = args
                    .get(at)
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                args.get(at + 1..).map_or(&[][..], |rest| &rest[..n.min(rest.len())])
            }
        };
        let stored = match self.store_keyword {
            false => &[][..],
            // SORT's options take arguments that may read `STORE`; the last STORE counts.
            true if self.name == "sort" => crate::sort::store_key(args)
                .map(std::slice::from_ref)
                .unwrap_or_default(),
            true => args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"STORE") || a.eq_ignore_ascii_case(b"STOREDIST"))
                .and_then(|i| args.get(i + 1..i + 2))
                .unwrap_or_default(),
        };
        self.fixed_keys(args).chain(counted.iter()).chain(stored.iter())
    }

    fn fixed_keys<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + use<'a> {
        let n = args.len() as i32;
        let first = self.first_key;
        let last = if self.last_key < 0 {
            n + self.last_key
        } else {
            self.last_key.min(n - 1)
        };
        let (start, end) = if first <= 0 || last < first {
            (0, 0)
        } else {
            (first as usize, last as usize + 1)
        };
        args.get(start..end)
            .unwrap_or_default()
            .iter()
            .step_by(self.step.max(1) as usize)
    }

    /// The `COMMAND INFO` entry.
    pub fn describe(&self) -> Frame {
        Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(self.name.as_bytes())),
            Frame::Integer(self.arity as i64),
            Frame::Set(
                self.flags
                    .iter()
                    .copied()
                    .chain((self.numkeys_at != 0).then_some("movablekeys"))
                    .map(|f| Frame::Simple(Bytes::from_static(f.as_bytes())))
                    .collect(),
            ),
            Frame::Integer(self.first_key as i64),
            Frame::Integer(self.last_key as i64),
            Frame::Integer(self.step as i64),
        ])
    }
}

const NONE: (i32, i32, i32) = (0, 0, 0);
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const PAIRS: (i32, i32, i32) = (1, -1, 2);
const TWO: (i32, i32, i32) = (1, 2, 1);
const RO: &[&str] = &["readonly", "fast"];
const WR: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const FAST: &[&str] = &["fast"];

const fn cmd(name: &'static str, arity: i32, flags: &'static [&'static str], keys: (i32, i32, i32)) -> CommandInfo {
    served(name, arity, flags, keys, ServedBy::Both)
}

const fn served(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    served_by: ServedBy,
) -> CommandInfo {
    CommandInfo {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        served_by,
        numkeys_at: 0,
        store_keyword: false,
    }
}

/// A command that may name a destination key after `STORE` or `STOREDIST` (`GEORADIUS`).
const fn stored(name: &'static str, arity: i32, flags: &'static [&'static str], keys: (i32, i32, i32)) -> CommandInfo {
    let mut c = served(name, arity, flags, keys, ServedBy::Both);
    c.store_keyword = true;
    c
}

/// A command whose keys are counted by the argument at `numkeys_at` (see
/// [`CommandInfo::numkeys_at`]), besides the fixed positions `keys`.
const fn counted(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    numkeys_at: usize,
) -> CommandInfo {
    let mut c = served(name, arity, flags, keys, ServedBy::Both);
    c.numkeys_at = numkeys_at;
    c
}

/// `EVAL`'s and `EVALSHA`'s flags, and their `_RO` forms'.
const SCRIPT_RW: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "may_replicate",
    "no_mandatory_keys",
];
const SCRIPT_RO: &[&str] = &["noscript", "stale", "skip_monitor", "no_mandatory_keys", "readonly"];

/// Every command, gate and servers together.
pub static COMMANDS: &[CommandInfo] = &[
    cmd("ping", -1, FAST, NONE),
    cmd("echo", 2, FAST, NONE),
    cmd("quit", -1, FAST, NONE),
    cmd("select", 2, FAST, NONE),
    cmd("hello", -1, FAST, NONE),
    // Users and their rules (kv-acl), on gates and servers' client ports alike.
    cmd("auth", -2, &["noscript", "loading", "stale", "fast", "no_auth"], NONE),
    cmd("acl", -2, &["admin", "noscript", "loading", "stale"], NONE),
    cmd("client", -2, &["admin"], NONE),
    cmd("command", -1, &["loading"], NONE),
    cmd("info", -1, &["loading"], NONE),
    cmd("slowlog", -2, &["admin", "loading", "stale"], NONE),
    cmd("latency", -2, &["admin", "noscript", "loading", "stale"], NONE),
    served("cluster", -2, &[], NONE, ServedBy::Server),
    served("readonly", 1, FAST, NONE, ServedBy::Server),
    served("readwrite", 1, FAST, NONE, ServedBy::Server),
    served("asking", 1, FAST, NONE, ServedBy::Server),
    cmd("dbsize", 1, RO, NONE),
    cmd("get", 2, RO, ONE),
    cmd("set", -3, WR, ONE),
    cmd("setnx", 3, WR, ONE),
    cmd("setex", 4, WR, ONE),
    cmd("psetex", 4, WR, ONE),
    cmd("getset", 3, WR, ONE),
    cmd("getdel", 2, WF, ONE),
    cmd("mget", -2, RO, ALL),
    cmd("mset", -3, WR, PAIRS),
    cmd("del", -2, &["write"], ALL),
    cmd("unlink", -2, WF, ALL),
    cmd("exists", -2, RO, ALL),
    cmd("expire", -3, WF, ONE),
    cmd("pexpire", -3, WF, ONE),
    cmd("expireat", -3, WF, ONE),
    cmd("pexpireat", -3, WF, ONE),
    cmd("persist", 2, WF, ONE),
    cmd("ttl", 2, RO, ONE),
    cmd("pttl", 2, RO, ONE),
    cmd("incr", 2, WR, ONE),
    cmd("incrby", 3, WR, ONE),
    cmd("decr", 2, WR, ONE),
    cmd("decrby", 3, WR, ONE),
    cmd("append", 3, WR, ONE),
    cmd("strlen", 2, RO, ONE),
    cmd("getex", -2, WF, ONE),
    cmd("getrange", 4, RO, ONE),
    cmd("substr", 4, RO, ONE),
    cmd("setrange", 4, WR, ONE),
    cmd("incrbyfloat", 3, WR, ONE),
    cmd("msetnx", -3, WR, PAIRS),
    cmd("lcs", -3, &["readonly"], TWO),
    cmd("setbit", 4, WR, ONE),
    cmd("getbit", 3, RO, ONE),
    cmd("bitcount", -2, &["readonly"], ONE),
    cmd("bitpos", -3, &["readonly"], ONE),
    cmd("bitop", -4, WR, (2, -1, 1)),
    cmd("bitfield", -2, WR, ONE),
    cmd("bitfield_ro", -2, RO, ONE),
    cmd("type", 2, RO, ONE),
    cmd("touch", -2, RO, ALL),
    cmd("rename", 3, &["write"], TWO),
    cmd("renamenx", 3, WF, TWO),
    cmd("copy", -3, WR, TWO),
    cmd("randomkey", 1, &["readonly"], NONE),
    cmd("keys", 2, &["readonly"], NONE),
    cmd("scan", -2, &["readonly"], NONE),
    cmd("flushall", -1, &["write"], NONE),
    cmd("flushdb", -1, &["write"], NONE),
    cmd("expiretime", 2, RO, ONE),
    cmd("pexpiretime", 2, RO, ONE),
    cmd("object", -2, &["readonly"], (2, 2, 1)),
    cmd("memory", -2, &["readonly"], (2, 2, 1)),
    cmd("time", 1, FAST, NONE),
    cmd("dump", 2, &["readonly"], ONE),
    cmd("restore", -4, WR, ONE),
    // Transactions.
    cmd("multi", 1, &["noscript", "loading", "stale", "fast"], NONE),
    cmd("exec", 1, &["noscript", "loading", "stale"], NONE),
    cmd("discard", 1, &["noscript", "loading", "stale", "fast"], NONE),
    cmd("watch", -2, &["noscript", "loading", "stale", "fast"], ALL),
    cmd("unwatch", 1, &["noscript", "loading", "stale", "fast"], NONE),
    // Scripting: the keys are counted after the script (`EVAL script numkeys key ...`).
    counted("eval", -3, SCRIPT_RW, NONE, 2),
    counted("evalsha", -3, SCRIPT_RW, NONE, 2),
    counted("eval_ro", -3, SCRIPT_RO, NONE, 2),
    counted("evalsha_ro", -3, SCRIPT_RO, NONE, 2),
    cmd("script", -2, &["noscript"], NONE),
    // Pub/sub.
    cmd("publish", 3, &["pubsub", "loading", "stale", "fast"], NONE),
    cmd("spublish", 3, &["pubsub", "loading", "stale", "fast"], ONE),
    cmd("subscribe", -2, &["pubsub", "noscript", "loading", "stale"], NONE),
    cmd("psubscribe", -2, &["pubsub", "noscript", "loading", "stale"], NONE),
    cmd("ssubscribe", -2, &["pubsub", "noscript", "loading", "stale"], ALL),
    cmd("unsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], NONE),
    cmd("punsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], NONE),
    cmd("sunsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], ALL),
    cmd("pubsub", -2, &["loading", "stale"], NONE),
    // Hashes.
    cmd("hset", -4, WF, ONE),
    cmd("hmset", -4, WF, ONE),
    cmd("hsetnx", 4, WF, ONE),
    cmd("hget", 3, RO, ONE),
    cmd("hmget", -3, RO, ONE),
    cmd("hdel", -3, WF, ONE),
    cmd("hlen", 2, RO, ONE),
    cmd("hstrlen", 3, RO, ONE),
    cmd("hexists", 3, RO, ONE),
    cmd("hkeys", 2, &["readonly"], ONE),
    cmd("hvals", 2, &["readonly"], ONE),
    cmd("hgetall", 2, &["readonly"], ONE),
    cmd("hincrby", 4, WF, ONE),
    cmd("hincrbyfloat", 4, WF, ONE),
    cmd("hrandfield", -2, &["readonly"], ONE),
    cmd("hscan", -3, &["readonly"], ONE),
    // Lists.
    cmd("lpush", -3, WF, ONE),
    cmd("rpush", -3, WF, ONE),
    cmd("lpushx", -3, WF, ONE),
    cmd("rpushx", -3, WF, ONE),
    cmd("lpop", -2, WF, ONE),
    cmd("rpop", -2, WF, ONE),
    cmd("llen", 2, RO, ONE),
    cmd("lindex", 3, &["readonly"], ONE),
    cmd("lrange", 4, &["readonly"], ONE),
    cmd("lset", 4, WR, ONE),
    cmd("linsert", 5, WR, ONE),
    cmd("lrem", 4, &["write"], ONE),
    cmd("ltrim", 4, &["write"], ONE),
    cmd("lpos", -3, &["readonly"], ONE),
    cmd("lmove", 5, WR, TWO),
    cmd("rpoplpush", 3, WR, TWO),
    counted("lmpop", -4, &["write"], NONE, 1),
    cmd("blpop", -3, &["write", "blocking"], (1, -2, 1)),
    cmd("brpop", -3, &["write", "blocking"], (1, -2, 1)),
    cmd("blmove", 6, &["write", "denyoom", "blocking"], TWO),
    cmd("brpoplpush", 4, &["write", "denyoom", "blocking"], TWO),
    counted("blmpop", -5, &["write", "blocking"], NONE, 2),
    // Sets.
    cmd("sadd", -3, WF, ONE),
    cmd("srem", -3, WF, ONE),
    cmd("smembers", 2, &["readonly"], ONE),
    cmd("sismember", 3, RO, ONE),
    cmd("smismember", -3, RO, ONE),
    cmd("scard", 2, RO, ONE),
    cmd("spop", -2, WF, ONE),
    cmd("srandmember", -2, &["readonly"], ONE),
    cmd("smove", 4, WF, TWO),
    cmd("sinter", -2, &["readonly"], ALL),
    counted("sintercard", -3, &["readonly"], NONE, 1),
    cmd("sinterstore", -3, WR, ALL),
    cmd("sunion", -2, &["readonly"], ALL),
    cmd("sunionstore", -3, WR, ALL),
    cmd("sdiff", -2, &["readonly"], ALL),
    cmd("sdiffstore", -3, WR, ALL),
    cmd("sscan", -3, &["readonly"], ONE),
    // Sorted sets.
    cmd("zadd", -4, WF, ONE),
    cmd("zincrby", 4, WF, ONE),
    cmd("zrem", -3, WF, ONE),
    cmd("zcard", 2, RO, ONE),
    cmd("zscore", 3, RO, ONE),
    cmd("zmscore", -3, RO, ONE),
    cmd("zrank", 3, RO, ONE),
    cmd("zrevrank", 3, RO, ONE),
    cmd("zcount", 4, RO, ONE),
    cmd("zlexcount", 4, RO, ONE),
    cmd("zrange", -4, &["readonly"], ONE),
    cmd("zrangestore", -5, WR, TWO),
    cmd("zrevrange", -4, &["readonly"], ONE),
    cmd("zrangebyscore", -4, &["readonly"], ONE),
    cmd("zrevrangebyscore", -4, &["readonly"], ONE),
    cmd("zrangebylex", -4, &["readonly"], ONE),
    cmd("zrevrangebylex", -4, &["readonly"], ONE),
    cmd("zremrangebyrank", 4, &["write"], ONE),
    cmd("zremrangebyscore", 4, &["write"], ONE),
    cmd("zremrangebylex", 4, &["write"], ONE),
    cmd("zpopmin", -2, WF, ONE),
    cmd("zpopmax", -2, WF, ONE),
    counted("zmpop", -4, &["write"], NONE, 1),
    cmd("bzpopmin", -3, &["write", "fast", "blocking"], (1, -2, 1)),
    cmd("bzpopmax", -3, &["write", "fast", "blocking"], (1, -2, 1)),
    counted("bzmpop", -5, &["write", "blocking"], NONE, 2),
    cmd("zrandmember", -2, &["readonly"], ONE),
    cmd("zscan", -3, &["readonly"], ONE),
    counted("zunion", -3, &["readonly"], NONE, 1),
    counted("zinter", -3, &["readonly"], NONE, 1),
    counted("zdiff", -3, &["readonly"], NONE, 1),
    counted("zunionstore", -4, WR, ONE, 2),
    counted("zinterstore", -4, WR, ONE, 2),
    counted("zdiffstore", -4, WR, ONE, 2),
    counted("zintercard", -3, &["readonly"], NONE, 1),
    // HyperLogLog.
    cmd("pfadd", -2, WF, ONE),
    cmd("pfcount", -2, &["readonly", "may-replicate"], ALL),
    cmd("pfmerge", -2, WR, ALL),
    // Geo.
    cmd("geoadd", -5, WR, ONE),
    cmd("geodist", -4, &["readonly"], ONE),
    cmd("geohash", -2, &["readonly"], ONE),
    cmd("geopos", -2, &["readonly"], ONE),
    stored("georadius", -6, WR, ONE),
    stored("sort", -2, WR, ONE),
    cmd("sort_ro", -2, &["readonly"], ONE),
    cmd("georadius_ro", -6, &["readonly"], ONE),
    stored("georadiusbymember", -5, WR, ONE),
    cmd("georadiusbymember_ro", -5, &["readonly"], ONE),
    cmd("geosearch", -7, &["readonly"], ONE),
    cmd("geosearchstore", -8, WR, TWO),
    served(
        "config",
        -2,
        &["admin", "noscript", "loading", "stale"],
        NONE,
        ServedBy::Gate,
    ),
    cmd("function", -2, &["noscript"], NONE),
    counted("fcall", -3, SCRIPT_RW, NONE, 2),
    counted("fcall_ro", -3, SCRIPT_RO, NONE, 2),
];

/// The table by lower-case name, built once. Looked up for every request, so with
/// hashbrown's default (foldhash) rather than SipHash: a fixed table that requests never
/// add to needs no flooding resistance, and SipHash was 3% of a server's time under
/// `redis-benchmark -P 16` (perf).
static BY_NAME: std::sync::LazyLock<hashbrown::HashMap<&'static [u8], &'static CommandInfo>> =
    std::sync::LazyLock::new(|| COMMANDS.iter().map(|c| (c.name.as_bytes(), c)).collect());

/// The command named `name` (any case): a hash lookup.
pub fn lookup(name: &[u8]) -> Option<&'static CommandInfo> {
    let (buf, len) = lower_name(name)?;
    BY_NAME.get(&buf[..len]).copied()
}

/// A connection's last command found by name, and its entry: a pipeline usually repeats one
/// command, and the name as sent compared with the last one (a few bytes) is cheaper than
/// lower-casing, hashing and probing a table (about 130 instructions of a request, on the
/// gate and on a server, under `SET -P 16`: callgrind). Names are compared exactly as
/// sent, so `set` after `SET` is looked up again, and only found names are kept.
pub struct LastFound<T: 'static> {
    name: [u8; 24],
    len: usize,
    found: Option<&'static T>,
}

impl<T: 'static> Default for LastFound<T> {
    fn default() -> Self {
        LastFound {
            name: [0; 24],
            len: 0,
            found: None,
        }
    }
}

impl<T: 'static> LastFound<T> {
    /// The entry for `name`: the last one when `name` is the last name found, otherwise
    /// `lookup(name)` (kept when found).
    #[inline]
    pub fn get(&mut self, name: &[u8], lookup: impl FnOnce(&[u8]) -> Option<&'static T>) -> Option<&'static T> {
        if let Some(found) = self.found
            && name.len() == self.len
            && name == &self.name[..self.len]
        {
            return Some(found);
        }
        let found = lookup(name);
        if found.is_some()
            && let Some(to) = self.name.get_mut(..name.len())
        {
            to.copy_from_slice(name);
            self.len = name.len();
            self.found = found;
        }
        found
    }
}

/// A command name (at most 24 bytes, the longest any command has) in lower case, in a
/// buffer with its length: the key of the tables by name, here and in the gate.
#[inline]
pub fn lower_name(name: &[u8]) -> Option<([u8; 24], usize)> {
    let mut buf = [0u8; 24];
    for (b, c) in buf.get_mut(..name.len())?.iter_mut().zip(name) {
        *b = c.to_ascii_lowercase();
    }
    Some((buf, name.len()))
}

/// Redis 7's container commands that kvstore serves, with each subcommand and its arity
/// (name and subcommand included), as redis-server 7.0's `COMMAND INFO` lists them. Checked
/// before a command runs, as Redis checks them, so every container command answers an
/// unknown subcommand or a wrong count in Redis's words.
const SUBCOMMANDS: &[(&str, Subcommands)] = &[
    (
        "acl",
        &[
            ("cat", -2),
            ("deluser", -3),
            ("dryrun", -4),
            ("genpass", -2),
            ("getuser", 3),
            ("help", 2),
            ("list", 2),
            ("load", 2),
            ("log", -2),
            ("save", 2),
            ("setuser", -3),
            ("users", 2),
            ("whoami", 2),
        ],
    ),
    (
        "client",
        &[
            ("caching", 3),
            ("getname", 2),
            ("getredir", 2),
            ("help", 2),
            ("id", 2),
            ("info", 2),
            ("kill", -3),
            ("list", -2),
            ("no-evict", 3),
            ("pause", -3),
            ("reply", 3),
            ("setname", 3),
            ("tracking", -3),
            ("trackinginfo", 2),
            ("unblock", -3),
            ("unpause", 2),
        ],
    ),
    (
        "cluster",
        &[
            ("addslots", -3),
            ("addslotsrange", -4),
            ("bumpepoch", 2),
            ("count-failure-reports", 3),
            ("countkeysinslot", 3),
            ("delslots", -3),
            ("delslotsrange", -4),
            ("failover", -2),
            ("flushslots", 2),
            ("forget", 3),
            ("getkeysinslot", 4),
            ("help", 2),
            ("info", 2),
            ("keyslot", 3),
            ("links", 2),
            ("meet", -4),
            ("myid", 2),
            ("nodes", 2),
            ("replicas", 3),
            ("replicate", 3),
            ("reset", -2),
            ("saveconfig", 2),
            ("set-config-epoch", 3),
            ("setslot", -4),
            ("shards", 2),
            ("slaves", 3),
            ("slots", 2),
        ],
    ),
    (
        "command",
        &[
            ("count", 2),
            ("docs", -2),
            ("getkeys", -4),
            ("getkeysandflags", -4),
            ("help", 2),
            ("info", -2),
            ("list", -2),
        ],
    ),
    (
        "config",
        &[("get", -3), ("help", 2), ("resetstat", 2), ("rewrite", 2), ("set", -4)],
    ),
    (
        "function",
        &[
            ("delete", 3),
            ("dump", 2),
            ("flush", -2),
            ("help", 2),
            ("kill", 2),
            ("list", -2),
            ("load", -3),
            ("restore", -3),
            ("stats", 2),
        ],
    ),
    (
        "latency",
        &[
            ("doctor", 2),
            ("graph", 3),
            ("help", 2),
            ("histogram", -2),
            ("history", 3),
            ("latest", 2),
            ("reset", -2),
        ],
    ),
    (
        "memory",
        &[
            ("doctor", 2),
            ("help", 2),
            ("malloc-stats", 2),
            ("purge", 2),
            ("stats", 2),
            ("usage", -3),
        ],
    ),
    (
        "object",
        &[
            ("encoding", 3),
            ("freq", 3),
            ("help", 2),
            ("idletime", 3),
            ("refcount", 3),
        ],
    ),
    (
        "pubsub",
        &[
            ("channels", -2),
            ("help", 2),
            ("numpat", 2),
            ("numsub", -2),
            ("shardchannels", -2),
            ("shardnumsub", -2),
        ],
    ),
    (
        "script",
        &[
            ("debug", 3),
            ("exists", -3),
            ("flush", -2),
            ("help", 2),
            ("kill", 2),
            ("load", 3),
        ],
    ),
    ("slowlog", &[("get", -2), ("help", 2), ("len", 2), ("reset", 2)]),
];

/// A container command's subcommands: each name and its arity.
type Subcommands = &'static [(&'static str, i32)];

/// A value for each command of [`COMMANDS`], derived once from its entry and read by the
/// command's position ([`CommandInfo::index`]): a question asked of every request (its
/// subcommands, whether it is timed alone, whether an intercept serves it) costs one indexed
/// load instead of name comparisons.
pub struct PerCommand<T> {
    of: fn(&CommandInfo) -> T,
    table: std::sync::OnceLock<Vec<T>>,
}

impl<T> PerCommand<T> {
    /// The table of `of(command)` for every command, built on first use.
    pub const fn new(of: fn(&CommandInfo) -> T) -> PerCommand<T> {
        PerCommand {
            of,
            table: std::sync::OnceLock::new(),
        }
    }

    /// `info`'s value; `None` for a `CommandInfo` not from [`COMMANDS`].
    pub fn get(&self, info: &CommandInfo) -> Option<&T> {
        self.table
            .get_or_init(|| COMMANDS.iter().map(self.of).collect())
            .get(info.index())
    }
}

/// [`SUBCOMMANDS`] by command.
static SUBCOMMANDS_BY_COMMAND: PerCommand<Option<Subcommands>> = PerCommand::new(|c| {
    SUBCOMMANDS
        .iter()
        .find(|(name, _)| *name == c.name)
        .map(|(_, subs)| *subs)
});

/// Redis's error for a container command's subcommand (`ACL`, `CONFIG`, `OBJECT` …) that
/// does not exist or has the wrong number of arguments; `None` when it is fine, or when
/// `info` has no subcommands. Redis's wording: `unknown subcommand 'x'. Try ACL HELP.` and
/// `wrong number of arguments for 'acl|whoami' command`.
pub fn subcommand_error(info: &CommandInfo, args: &[Bytes]) -> Option<String> {
    let sub = args.get(1)?;
    // Asked of every request: one indexed load for the commands that have no subcommands.
    let subs = (*SUBCOMMANDS_BY_COMMAND.get(info)?)?;
    let Some((name, arity)) = subs.iter().find(|(name, _)| sub.eq_ignore_ascii_case(name.as_bytes())) else {
        // At most 128 bytes of it, as Redis quotes it.
        let shown = String::from_utf8_lossy(&sub[..sub.len().min(128)]);
        return Some(format!(
            "ERR unknown subcommand '{shown}'. Try {} HELP.",
            info.name.to_ascii_uppercase()
        ));
    };
    (!arity_fits(*arity, args.len()))
        .then(|| format!("ERR wrong number of arguments for '{}|{name}' command", info.name))
}

/// `TIME`: Unix seconds and microseconds, as two bulk strings (gates and servers alike).
pub fn time_reply() -> Frame {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(now.as_secs().to_string())),
        Frame::Bulk(Bytes::from(now.subsec_micros().to_string())),
    ])
}

/// `COMMAND GETKEYS name args...`: the keys of that command.
fn getkeys(args: &[Bytes]) -> Frame {
    let Some(info) = args.first().and_then(|n| lookup(n)) else {
        return Frame::error("ERR Invalid command specified");
    };
    if !info.arity_ok(args.len()) {
        return Frame::error("ERR Invalid number of arguments specified for command");
    }
    let keys: Vec<Frame> = info.keys(args).map(|k| Frame::Bulk(k.clone())).collect();
    if keys.is_empty() {
        return Frame::error("ERR The command has no key arguments");
    }
    Frame::Array(keys)
}

/// `COMMAND [COUNT | LIST | INFO name... | DOCS ...]` for the commands `who` serves.
pub fn command_reply(args: &[Bytes], who: ServedBy) -> Frame {
    let mine = || {
        COMMANDS
            .iter()
            .filter(move |c| c.served_by == ServedBy::Both || c.served_by == who)
    };
    let Some(sub) = args.get(1) else {
        return Frame::Array(mine().map(CommandInfo::describe).collect());
    };
    match sub.to_ascii_uppercase().as_slice() {
        b"COUNT" => Frame::Integer(mine().count() as i64),
        b"LIST" => Frame::Array(
            mine()
                .map(|c| Frame::Bulk(Bytes::from_static(c.name.as_bytes())))
                .collect(),
        ),
        b"INFO" => Frame::Array(
            args[2..]
                .iter()
                .map(|n| {
                    mine()
                        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(n))
                        .map_or(Frame::NullArray, CommandInfo::describe)
                })
                .collect(),
        ),
        b"GETKEYS" if args.len() >= 3 => getkeys(&args[2..]),
        // redis-cli asks for docs to show hints; having none is fine.
        b"DOCS" => Frame::Map(vec![]),
        _ => Frame::error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(sub)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_command_found_is_kept_by_its_name_as_sent() {
        let mut last = LastFound::default();
        let mut lookups = 0;
        let mut find = |name: &[u8]| {
            last.get(name, |n| {
                lookups += 1;
                lookup(n)
            })
            .map(|c| c.name)
        };
        assert_eq!(find(b"SET"), Some("set"));
        assert_eq!(find(b"SET"), Some("set"));
        assert_eq!(find(b"SE"), None);
        assert_eq!(find(b"SETX"), None);
        assert_eq!(find(b"SET"), Some("set"));
        assert_eq!(find(b"set"), Some("set"));
        assert_eq!(find(b"get"), Some("get"));
        assert_eq!(find(&[b'a'; 30]), None);
        assert_eq!(find(b"get"), Some("get"));
        // Found from the table: the first SET, SE, SETX, set, get and the long name.
        assert_eq!(lookups, 6);
    }

    #[test]
    fn lookup_is_case_insensitive_and_arity_follows_redis() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuchcommandatall").is_none());
        let get = lookup(b"get").unwrap();
        assert!(get.arity_ok(2) && !get.arity_ok(3));
        let mset = lookup(b"MSET").unwrap();
        assert!(mset.arity_ok(3) && mset.arity_ok(5) && !mset.arity_ok(2));
    }

    /// Container commands answer as redis-server 7.0 does (its replies, checked by hand).
    #[test]
    fn subcommand_errors_are_redis_words() {
        let check = |line: &str| {
            let args: Vec<Bytes> = line.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
            subcommand_error(lookup(&args[0]).expect("a known command"), &args)
        };
        for (line, want) in [
            ("OBJECT foo x", "ERR unknown subcommand 'foo'. Try OBJECT HELP."),
            (
                "OBJECT encoding",
                "ERR wrong number of arguments for 'object|encoding' command",
            ),
            ("acl Foo", "ERR unknown subcommand 'Foo'. Try ACL HELP."),
            ("ACL WHOAMI x", "ERR wrong number of arguments for 'acl|whoami' command"),
            (
                "PUBSUB numpat x",
                "ERR wrong number of arguments for 'pubsub|numpat' command",
            ),
            (
                "SCRIPT exists",
                "ERR wrong number of arguments for 'script|exists' command",
            ),
            ("CONFIG foo", "ERR unknown subcommand 'foo'. Try CONFIG HELP."),
        ] {
            assert_eq!(check(line).as_deref(), Some(want), "{line}");
        }
        assert_eq!(check("OBJECT ENCODING k"), None);
        assert_eq!(check("CONFIG GET a b c"), None);
        assert_eq!(check("COMMAND"), None);
        assert_eq!(check("GET k"), None);
        let long = "x".repeat(200);
        let e = check(&format!("MEMORY {long}")).unwrap();
        assert!(
            e.contains(&format!("'{}'", "x".repeat(128))) && !e.contains(&"x".repeat(129)),
            "{e}"
        );
    }

    #[test]
    fn keys_follow_the_key_positions() {
        let args = |a: &[&str]| a.iter().map(|s| Bytes::from(s.to_string())).collect::<Vec<_>>();
        let keys = |a: &[Bytes]| lookup(&a[0]).unwrap().keys(a).cloned().collect::<Vec<_>>();
        assert_eq!(keys(&args(&["MSET", "a", "1", "b", "2"])), args(&["a", "b"]));
        assert_eq!(keys(&args(&["bitop", "and", "d", "x", "y"])), args(&["d", "x", "y"]));
        assert_eq!(keys(&args(&["OBJECT", "ENCODING", "k"])), args(&["k"]));
        assert_eq!(keys(&args(&["OBJECT", "HELP"])), args(&[]));
        assert_eq!(keys(&args(&["COPY", "a", "b", "REPLACE"])), args(&["a", "b"]));
        assert_eq!(keys(&args(&["PING"])), args(&[]));
        assert_eq!(
            keys(&args(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"])),
            args(&["d", "a", "b"])
        );
        assert_eq!(keys(&args(&["lmpop", "2", "a", "b", "LEFT"])), args(&["a", "b"]));
        assert_eq!(
            keys(&args(&["GEORADIUS", "g", "1", "2", "3", "km", "STORE", "d"])),
            args(&["g", "d"])
        );
        assert_eq!(
            keys(&args(&[
                "sort", "abc", "store", "invalid", "store", "stillbad", "store", "def"
            ])),
            args(&["abc", "def"])
        );
        assert_eq!(keys(&args(&["sort", "k", "GET", "store", "BY", "x"])), args(&["k"]));
        assert_eq!(
            keys(&args(&["zinter", "9", "a"])),
            args(&["a"]),
            "a count past the arguments"
        );
        assert_eq!(getkeys(&args(&["set", "k", "v"])), Frame::Array(vec![Frame::bulk("k")]));
        assert!(getkeys(&args(&["ping"])).as_error().is_some());
    }

    /// The `CROSSSLOT` check is skipped for these: no arguments may give them two keys.
    #[test]
    fn at_most_one_key_holds_for_any_arguments() {
        let mut single = 0;
        for c in COMMANDS.iter().filter(|c| c.at_most_one_key()) {
            single += 1;
            let mut a = vec![Bytes::from(c.name)];
            a.extend(["2", "k1", "k2", "STORE", "k3", "STOREDIST", "k4", "k5"].map(Bytes::from));
            assert!(c.keys(&a).count() <= 1, "{}", c.name);
        }
        assert!(single > 100, "{single}");
        for name in ["mset", "del", "zunionstore", "georadius", "sort", "lmpop", "rename"] {
            assert!(!lookup(name.as_bytes()).unwrap().at_most_one_key(), "{name}");
        }
    }

    #[test]
    fn each_side_lists_what_it_serves() {
        let names = |who| {
            let Frame::Array(list) = command_reply(&[Bytes::from("COMMAND"), Bytes::from("LIST")], who) else {
                panic!()
            };
            list.into_iter()
                .map(|f| String::from_utf8(f.as_bytes().unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        let (gate, server) = (names(ServedBy::Gate), names(ServedBy::Server));
        assert!(gate.contains(&"info".to_string()) && !gate.contains(&"cluster".to_string()));
        assert!(server.contains(&"cluster".to_string()) && server.contains(&"client".to_string()));
        assert!(gate.contains(&"get".to_string()) && server.contains(&"get".to_string()));
    }
}
