//! Client commands: one file per command (or family), each with `parse` from a request and
//! `apply` to the node, writing its reply. A command whose reply must wait until followers
//! applied what it wrote (or saw) returns the [`Pending`] entry to wait for.
//!
//! These are the commands of the client port. The cluster port serves them too (gates
//! forward their clients' commands there), plus the internal ones (`crate::peer`).
//!
//! Error replies follow Redis's wording, so Redis clients and tools recognise them.

mod args;
mod bits;
pub mod blocking;
mod cluster;
pub mod connection;
mod del;
mod dump;
mod exists;
mod expire;
mod family;
mod geo;
mod get;
mod hashes;
mod hll;
mod incr;
mod info;
mod keyspace;
mod lists;
pub mod pubsub;
pub mod scripting;
mod set;
mod sets;
mod sort;
mod strings;
pub mod transaction;
mod zsets;

use bytes::Bytes;
use kv_proto::Out;
use kv_proto::Request;
use kv_proto::commands::CommandInfo;

pub use args::{Args, CmdError};

use crate::node::{Node, Pending, Refusal};

/// A parsed client command.
#[derive(Debug)]
pub enum Command {
    Ping(connection::Ping),
    Echo(connection::Echo),
    Select(connection::Select),
    Quit,
    Hello(kv_proto::hello::Hello),
    Cluster(cluster::Cluster),
    /// `COMMAND …`: the shared command table.
    CommandInfo(Vec<Bytes>),
    /// `READONLY` (true) / `READWRITE` (false): a cluster client's reads may go to replicas.
    ReadOnly(bool),
    Asking,
    Get(get::Get),
    MGet(get::MGet),
    StrLen(get::StrLen),
    Set(set::Set),
    MSet(set::MSet),
    Del(del::Del),
    GetDel(del::GetDel),
    Exists(exists::Exists),
    Expire(expire::Expire),
    Persist(expire::Persist),
    Ttl(expire::Ttl),
    IncrBy(incr::IncrBy),
    Append(incr::Append),
    DbSize,
    GetEx(strings::GetEx),
    GetRange(strings::GetRange),
    SetRange(strings::SetRange),
    IncrByFloat(strings::IncrByFloat),
    MSetNx(strings::MSetNx),
    Lcs(strings::Lcs),
    SetBit(bits::SetBit),
    GetBit(bits::GetBit),
    BitCount(bits::BitCount),
    BitPos(bits::BitPos),
    BitOp(bits::BitOp),
    BitField(bits::BitField),
    Type(keyspace::Type),
    Touch(keyspace::Touch),
    Rename(keyspace::Rename),
    Copy(keyspace::Copy),
    RandomKey,
    Keys(keyspace::Keys),
    Scan(keyspace::Scan),
    Flush,
    ExpireTime(keyspace::ExpireTime),
    Object(keyspace::Object),
    Memory(keyspace::MemoryUsage),
    Time,
    Dump(dump::Dump),
    Restore(dump::Restore),
    /// `INFO [section ...]`, lower-cased.
    Info(Vec<String>),
    /// `CONFIG ...`: every argument.
    Config(Vec<Bytes>),
    /// `SLOWLOG …` and `LATENCY …`: this server's own.
    SlowLog(Vec<Bytes>),
    Latency(Vec<Bytes>),
    /// `CLIENT ...`: every argument; about the connection (served by the handler).
    Client(Vec<Bytes>),
    /// A command of the collection families (`family`).
    Call(family::Call),
    /// A blocking pop: served by the connection, which waits ([`blocking::serve`]).
    Block(blocking::Block),
}

impl Command {
    /// Parses a request; unknown commands and bad arguments become Redis-style errors.
    pub fn from_request(req: Request) -> Result<Command, CmdError> {
        let info = kv_proto::commands::lookup(req.name());
        Command::from_request_with(req, info)
    }

    /// [`Command::from_request`] for a caller that has looked the request's name up in the
    /// command table already (`info`: `kv_proto::commands::lookup` of it).
    pub fn from_request_with(req: Request, info: Option<&'static CommandInfo>) -> Result<Command, CmdError> {
        debug_assert!(info.is_none_or(|i| i.name.as_bytes().eq_ignore_ascii_case(req.name())));
        let mut args = Args::new(req);
        // The collection families first: found by the command's index, not by name.
        if let Some(found) = info.and_then(family::find) {
            return Ok(Command::Call(found.call(args.into_all()).map_err(CmdError::Coded)?));
        }
        let Some((buf, len)) = args::upper(args.name()) else {
            return Err(args.unknown());
        };
        Ok(match &buf[..len] {
            b"PING" => Command::Ping(connection::Ping::parse(&mut args)?),
            b"ECHO" => Command::Echo(connection::Echo::parse(&mut args)?),
            b"SELECT" => Command::Select(connection::Select::parse(&mut args)?),
            b"QUIT" => Command::Quit,
            b"CLUSTER" => Command::Cluster(cluster::Cluster::parse(&mut args)?),
            b"COMMAND" => Command::CommandInfo(args.all().to_vec()),
            b"READONLY" | b"READWRITE" | b"ASKING" => {
                args.finish()?;
                match &buf[..len] {
                    b"READONLY" => Command::ReadOnly(true),
                    b"READWRITE" => Command::ReadOnly(false),
                    _ => Command::Asking,
                }
            }
            // Its `AUTH` was checked before it ran (the handler's admission).
            b"HELLO" => {
                Command::Hello(kv_proto::hello::Hello::parse(args.all()).map_err(|e| CmdError::Coded(e.to_string()))?)
            }
            b"GET" => Command::Get(get::Get::parse(&mut args)?),
            b"MGET" => Command::MGet(get::MGet::parse(&mut args)?),
            b"STRLEN" => Command::StrLen(get::StrLen::parse(&mut args)?),
            b"SET" => Command::Set(set::Set::parse(&mut args)?),
            b"SETNX" => Command::Set(set::Set::parse_setnx(&mut args)?),
            b"SETEX" => Command::Set(set::Set::parse_setex(&mut args, 1000)?),
            b"PSETEX" => Command::Set(set::Set::parse_setex(&mut args, 1)?),
            b"GETSET" => Command::Set(set::Set::parse_getset(&mut args)?),
            b"MSET" => Command::MSet(set::MSet::parse(&mut args)?),
            b"DEL" | b"UNLINK" => Command::Del(del::Del::parse(&mut args)?),
            b"GETDEL" => Command::GetDel(del::GetDel::parse(&mut args)?),
            b"EXISTS" => Command::Exists(exists::Exists::parse(&mut args)?),
            b"EXPIRE" => Command::Expire(expire::Expire::parse(&mut args, 1000, true)?),
            b"PEXPIRE" => Command::Expire(expire::Expire::parse(&mut args, 1, true)?),
            b"EXPIREAT" => Command::Expire(expire::Expire::parse(&mut args, 1000, false)?),
            b"PEXPIREAT" => Command::Expire(expire::Expire::parse(&mut args, 1, false)?),
            b"PERSIST" => Command::Persist(expire::Persist::parse(&mut args)?),
            b"TTL" => Command::Ttl(expire::Ttl::parse(&mut args, false)?),
            b"PTTL" => Command::Ttl(expire::Ttl::parse(&mut args, true)?),
            b"INCR" => Command::IncrBy(incr::IncrBy::parse(&mut args, Some(1), false)?),
            b"DECR" => Command::IncrBy(incr::IncrBy::parse(&mut args, Some(-1), false)?),
            b"INCRBY" => Command::IncrBy(incr::IncrBy::parse(&mut args, None, false)?),
            b"DECRBY" => Command::IncrBy(incr::IncrBy::parse(&mut args, None, true)?),
            b"APPEND" => Command::Append(incr::Append::parse(&mut args)?),
            b"DBSIZE" => {
                args.finish()?;
                Command::DbSize
            }
            b"GETEX" => Command::GetEx(strings::GetEx::parse(&mut args)?),
            b"GETRANGE" | b"SUBSTR" => Command::GetRange(strings::GetRange::parse(&mut args)?),
            b"SETRANGE" => Command::SetRange(strings::SetRange::parse(&mut args)?),
            b"INCRBYFLOAT" => Command::IncrByFloat(strings::IncrByFloat::parse(&mut args)?),
            b"MSETNX" => Command::MSetNx(strings::MSetNx::parse(&mut args)?),
            b"LCS" => Command::Lcs(strings::Lcs::parse(&mut args)?),
            b"SETBIT" => Command::SetBit(bits::SetBit::parse(&mut args)?),
            b"GETBIT" => Command::GetBit(bits::GetBit::parse(&mut args)?),
            b"BITCOUNT" => Command::BitCount(bits::BitCount::parse(&mut args)?),
            b"BITPOS" => Command::BitPos(bits::BitPos::parse(&mut args)?),
            b"BITOP" => Command::BitOp(bits::BitOp::parse(&mut args)?),
            b"BITFIELD" => Command::BitField(bits::BitField::parse(&mut args, false)?),
            b"BITFIELD_RO" => Command::BitField(bits::BitField::parse(&mut args, true)?),
            b"TYPE" => Command::Type(keyspace::Type::parse(&mut args)?),
            b"TOUCH" => Command::Touch(keyspace::Touch::parse(&mut args)?),
            b"RENAME" => Command::Rename(keyspace::Rename::parse(&mut args, false)?),
            b"RENAMENX" => Command::Rename(keyspace::Rename::parse(&mut args, true)?),
            b"COPY" => Command::Copy(keyspace::Copy::parse(&mut args)?),
            b"RANDOMKEY" => {
                args.finish()?;
                Command::RandomKey
            }
            b"KEYS" => Command::Keys(keyspace::Keys::parse(&mut args)?),
            b"SCAN" => Command::Scan(keyspace::Scan::parse(&mut args)?),
            b"FLUSHALL" | b"FLUSHDB" => {
                keyspace::parse_flush(&mut args)?;
                Command::Flush
            }
            b"EXPIRETIME" => Command::ExpireTime(keyspace::ExpireTime::parse(&mut args, false)?),
            b"PEXPIRETIME" => Command::ExpireTime(keyspace::ExpireTime::parse(&mut args, true)?),
            b"OBJECT" => Command::Object(keyspace::Object::parse(&mut args)?),
            b"MEMORY" => Command::Memory(keyspace::MemoryUsage::parse(&mut args)?),
            b"DUMP" => Command::Dump(dump::Dump::parse(&mut args)?),
            b"INFO" => Command::Info(
                args.all()[1..]
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect(),
            ),
            b"CLIENT" => {
                if args.remaining() == 0 {
                    return Err(args.arity());
                }
                Command::Client(args.all().to_vec())
            }
            b"CONFIG" => {
                if args.remaining() == 0 {
                    return Err(args.arity());
                }
                Command::Config(args.all().to_vec())
            }
            b"SLOWLOG" => Command::SlowLog(args.all().to_vec()),
            b"LATENCY" => Command::Latency(args.all().to_vec()),
            b"RESTORE" => Command::Restore(dump::Restore::parse(&mut args)?),
            b"TIME" => {
                args.finish()?;
                Command::Time
            }
            b"BLPOP" | b"BRPOP" | b"BLMOVE" | b"BRPOPLPUSH" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX" | b"BZMPOP" => {
                Command::Block(blocking::Block::parse(&buf[..len], args.all())?)
            }
            _ => return Err(args.unknown()),
        })
    }

    /// True for commands about keys (a cluster client's are redirected by slot).
    pub fn has_keys(&self) -> bool {
        !matches!(
            self,
            Command::Ping(_)
                | Command::Echo(_)
                | Command::Select(_)
                | Command::Quit
                | Command::Hello(_)
                | Command::Cluster(_)
                | Command::CommandInfo(_)
                | Command::ReadOnly(_)
                | Command::Asking
                | Command::DbSize
                | Command::RandomKey
                | Command::Keys(_)
                | Command::Scan(_)
                | Command::Flush
                | Command::Time
                | Command::Info(_)
                | Command::Config(_)
                | Command::SlowLog(_)
                | Command::Latency(_)
                | Command::Client(_)
        ) && !matches!(self, Command::Object(o) if o.key().is_none())
    }

    /// True for commands that only read.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::Get(_)
                | Command::MGet(_)
                | Command::StrLen(_)
                | Command::Exists(_)
                | Command::Ttl(_)
                | Command::GetRange(_)
                | Command::Lcs(_)
                | Command::GetBit(_)
                | Command::BitCount(_)
                | Command::BitPos(_)
                | Command::Type(_)
                | Command::Touch(_)
                | Command::ExpireTime(_)
                | Command::Object(_)
                | Command::Memory(_)
                | Command::Dump(_)
        ) || matches!(self, Command::BitField(b) if b.is_read())
            || matches!(self, Command::Call(c) if c.read)
    }

    /// Executes the command, appending its reply to `out`.
    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        match self {
            Command::Ping(c) => c.apply(out),
            Command::Echo(c) => c.apply(out),
            Command::Select(c) => c.apply(out),
            Command::Quit => kv_proto::write::ok(out),
            // The connection's state changes, or it waits: the handler serves these.
            Command::Hello(_) | Command::ReadOnly(_) | Command::Client(_) | Command::Block(_) => {
                kv_proto::write::error(out, b"ERR connection state is changed by the connection")
            }
            Command::Asking => kv_proto::write::ok(out),
            Command::Cluster(c) => c.apply(node, out),
            Command::CommandInfo(a) => {
                let frame = kv_proto::commands::command_reply(&a, kv_proto::commands::ServedBy::Server);
                out.frame(&frame);
            }
            Command::Get(c) => return c.apply(node, out),
            Command::MGet(c) => return c.apply(node, out),
            Command::StrLen(c) => return c.apply(node, out),
            Command::Set(c) => return c.apply(node, out),
            Command::MSet(c) => return c.apply(node, out),
            Command::Del(c) => return c.apply(node, out),
            Command::GetDel(c) => return c.apply(node, out),
            Command::Exists(c) => return c.apply(node, out),
            Command::Expire(c) => return c.apply(node, out),
            Command::Persist(c) => return c.apply(node, out),
            Command::Ttl(c) => return c.apply(node, out),
            Command::IncrBy(c) => return c.apply(node, out),
            Command::Append(c) => return c.apply(node, out),
            Command::DbSize => {
                let result = node.read(std::iter::empty::<&[u8]>(), |r| r.len());
                return reply(out, result, |out, n| kv_proto::write::integer(out, n as i64));
            }
            Command::GetEx(c) => return c.apply(node, out),
            Command::GetRange(c) => return c.apply(node, out),
            Command::SetRange(c) => return c.apply(node, out),
            Command::IncrByFloat(c) => return c.apply(node, out),
            Command::MSetNx(c) => return c.apply(node, out),
            Command::Lcs(c) => return c.apply(node, out),
            Command::SetBit(c) => return c.apply(node, out),
            Command::GetBit(c) => return c.apply(node, out),
            Command::BitCount(c) => return c.apply(node, out),
            Command::BitPos(c) => return c.apply(node, out),
            Command::BitOp(c) => return c.apply(node, out),
            Command::BitField(c) => return c.apply(node, out),
            Command::Type(c) => return c.apply(node, out),
            Command::Touch(c) => return c.apply(node, out),
            Command::Rename(c) => return c.apply(node, out),
            Command::Copy(c) => return c.apply(node, out),
            Command::RandomKey => return keyspace::random_key(node, out),
            Command::Keys(c) => return c.apply(node, out),
            Command::Scan(c) => return c.apply(node, out),
            Command::Flush => return keyspace::flush(node, out),
            Command::ExpireTime(c) => return c.apply(node, out),
            Command::Object(c) => return c.apply(node, out),
            Command::Memory(c) => return c.apply(node, out),
            Command::Time => out.frame(&kv_proto::commands::time_reply()),
            Command::Dump(c) => return c.apply(node, out),
            Command::Restore(c) => return c.apply(node, out),
            Command::Info(sections) => info::apply(node, &sections, out),
            Command::Config(a) => {
                let reply = node.settings.command(&a);
                if reply.as_error().is_none() && a.len() > 2 && a[1].eq_ignore_ascii_case(b"SET") {
                    node.apply_settings();
                }
                if reply.as_error().is_none() && kv_proto::settings::resets_stats(&a) {
                    node.observer.reset();
                }
                out.frame(&reply);
            }
            Command::SlowLog(a) => out.frame(&node.observer.slowlog.command(&a)),
            Command::Latency(a) => out.frame(&node.observer.latency.command(&a)),
            Command::Call(c) => return (c.run)(node, &c.args, out),
        }
        None
    }
}

/// Writes a command's reply: `ok` with its result when it ran (it may also have written
/// its reply itself), the refusal otherwise. Returns what the reply must wait for.
pub fn reply<R>(
    out: &mut Out,
    result: Result<(R, Option<Pending>), Refusal>,
    ok: impl FnOnce(&mut Out, R),
) -> Option<Pending> {
    match result {
        Ok((r, pending)) => {
            ok(out, r);
            pending
        }
        Err(e) => {
            e.write(out);
            None
        }
    }
}

/// [`reply`] for a command that wrote its reply into `out` while it ran: a refusal (such as
/// `WRONGTYPE`, found mid-way) replaces what it wrote after `mark` (`out`'s length before).
pub fn reply_written(out: &mut Out, mark: usize, result: Result<((), Option<Pending>), Refusal>) -> Option<Pending> {
    if result.is_err() {
        out.truncate(mark);
    }
    reply(out, result, |_, ()| {})
}

/// Bulk reply of an optional value.
fn write_opt(out: &mut Out, v: Option<&Bytes>) {
    match v {
        Some(v) => kv_proto::write::bulk(out, v),
        None => out.null(),
    }
}

/// `ACL …` on the client port: changes go to the cluster's stored users, the rest is
/// answered from this server's copy of them.
pub async fn acl(node: &Node, conn: &crate::connection::Connection, args: &[Bytes]) -> kv_proto::Frame {
    // A peer (no session) acts as the default user.
    let me = match &conn.user {
        Some(session) => session.user.clone(),
        None => kv_acl::Session::new(&node.acl).user,
    };
    let storage: Box<dyn kv_acl::command::Storage> = match &node.config.users.aclfile {
        Some(path) => Box::new(kv_acl::command::FileStorage(path.clone())),
        None => Box::new(kv_acl::command::NoStorage),
    };
    let run = |acl: &kv_acl::Acl| kv_acl::command::acl(acl, &node.acl_log, &*storage, &me, args);
    match &node.users_store {
        Some(store) if kv_acl::command::changes_users(args) => store.change(&node.acl, run).await,
        _ => run(&node.acl),
    }
}

/// The commands the handler's intercepts serve before the command table: pub/sub
/// ([`pubsub::intercept`]), scripts and functions ([`scripting::intercept`]) and
/// transactions ([`transaction::intercept`]). Internal `KV.*` commands are not in Redis's
/// table, so they always reach the intercepts.
const INTERCEPTED: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "publish",
    "spublish",
    "pubsub",
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
    "script",
    "function",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
];

/// [`INTERCEPTED`] by command.
static INTERCEPTED_BY_COMMAND: kv_proto::commands::PerCommand<bool> =
    kv_proto::commands::PerCommand::new(|c| INTERCEPTED.contains(&c.name));

/// True when a command must pass the intercepts. Asked of every request: the others (most)
/// skip three name comparisons, one indexed load instead (callgrind: about 200 instructions
/// of a `SET`'s 5,200).
pub fn intercepted(info: Option<&kv_proto::commands::CommandInfo>) -> bool {
    info.is_none_or(|i| INTERCEPTED_BY_COMMAND.get(i).copied().unwrap_or(true))
}

/// The keys of a request by the command table's key positions, for the slot checks of a
/// Redis Cluster client.
pub fn request_keys(req: &Request) -> impl Iterator<Item = &Bytes> {
    let args = req.args();
    let info = args.first().and_then(|n| kv_proto::commands::lookup(n));
    info.into_iter().flat_map(move |i| i.keys(args))
}

/// True when a request's keys are in more than one slot (`CROSSSLOT` for a cluster client).
pub fn cross_slot(req: &Request) -> bool {
    in_several_slots(request_keys(req))
}

/// True when `keys` are in more than one slot. A single key's slot is not computed: that
/// was a CRC per request for nothing on a cluster client's hot path.
pub fn in_several_slots<'a>(mut keys: impl Iterator<Item = &'a Bytes>) -> bool {
    let (Some(first), Some(second)) = (keys.next(), keys.next()) else {
        return false;
    };
    let slot = kv_proto::slot::key_slot(first);
    std::iter::once(second)
        .chain(keys)
        .any(|k| kv_proto::slot::key_slot(k) != slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intercepted_commands_are_known_and_the_rest_skip_the_intercepts() {
        for name in INTERCEPTED {
            let info = kv_proto::commands::lookup(name.to_uppercase().as_bytes());
            assert!(info.is_some(), "{name} is in the command table");
            assert!(intercepted(info), "{name}");
        }
        for name in ["get", "set", "hset", "lpush", "ping", "client", "hello"] {
            assert!(!intercepted(kv_proto::commands::lookup(name.as_bytes())), "{name}");
        }
        assert!(intercepted(None), "an unknown or internal command");
    }
}
