//! Client commands: one file per command (or family), each with `parse` from a request and
//! `apply` to the node, writing its reply. A command whose reply must wait until followers
//! applied what it wrote (or saw) returns the [`Pending`] entry to wait for.
//!
//! These are the commands of the client port. The cluster port serves them too (gates
//! forward their clients' commands there), plus the internal ones (`crate::peer`).
//!
//! Error replies follow Redis's wording, so Redis clients and tools recognise them.

mod args;
pub mod connection;
mod del;
mod exists;
mod expire;
mod get;
mod incr;
mod set;

use bytes::Bytes;
use kv_proto::Out;
use kv_proto::Request;

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
}

impl Command {
    /// Parses a request; unknown commands and bad arguments become Redis-style errors.
    pub fn from_request(req: Request) -> Result<Command, CmdError> {
        let mut args = Args::new(req);
        let Some((buf, len)) = args::upper(args.name()) else {
            return Err(args.unknown());
        };
        Ok(match &buf[..len] {
            b"PING" => Command::Ping(connection::Ping::parse(&mut args)?),
            b"ECHO" => Command::Echo(connection::Echo::parse(&mut args)?),
            b"SELECT" => Command::Select(connection::Select::parse(&mut args)?),
            b"QUIT" => Command::Quit,
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
            _ => return Err(args.unknown()),
        })
    }

    /// Executes the command, appending its reply to `out`.
    pub fn apply(self, node: &Node, out: &mut Out) -> Option<Pending> {
        match self {
            Command::Ping(c) => c.apply(out),
            Command::Echo(c) => c.apply(out),
            Command::Select(c) => c.apply(out),
            Command::Quit => kv_proto::write::ok(out),
            // The connection's state changes: the handler serves it (`connection::hello`).
            Command::Hello(_) => kv_proto::write::error(out, b"ERR HELLO is served by the connection"),
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
            kv_proto::write::error(out, e.to_string().as_bytes());
            None
        }
    }
}

/// Bulk reply of an optional value.
fn write_opt(out: &mut Out, v: Option<&Bytes>) {
    match v {
        Some(v) => kv_proto::write::bulk(out, v),
        None => out.null(),
    }
}
