//! Client commands: one file per command (or family), each with `parse` from a request and
//! `apply` to the node, writing its reply. A command that must be replicated before its reply
//! is sent returns the [`Pending`] write to wait for.
//!
//! Error replies follow Redis's wording, so Redis clients and tools recognise them.

mod args;
mod connection;
mod del;
mod exists;
mod get;
mod info;
mod set;

use bytes::{Bytes, BytesMut};
use kv_proto::Request;

pub use args::{Args, CmdError};

use crate::node::{Node, Pending, WriteError};
use crate::replication::leader::SyncRequest;

/// A parsed client command.
#[derive(Debug)]
pub enum Command {
    Ping(connection::Ping),
    Echo(connection::Echo),
    Select(connection::Select),
    Quit,
    Get(get::Get),
    Set(set::Set),
    Del(del::Del),
    Exists(exists::Exists),
    DbSize,
    /// `KV.INFO`: this node's role, position and contents, for gates and operators.
    Info,
    /// `KV.SYNC`: a follower asks to replicate; the connection becomes a replication stream.
    Sync(SyncRequest),
}

impl Command {
    /// Parses a request; unknown commands and bad arguments become Redis-style errors.
    pub fn from_request(req: Request) -> Result<Command, CmdError> {
        let mut args = Args::new(req);
        let name = args.name().to_ascii_uppercase();
        Ok(match name.as_slice() {
            b"PING" => Command::Ping(connection::Ping::parse(&mut args)?),
            b"ECHO" => Command::Echo(connection::Echo::parse(&mut args)?),
            b"SELECT" => Command::Select(connection::Select::parse(&mut args)?),
            b"QUIT" => Command::Quit,
            b"GET" => Command::Get(get::Get::parse(&mut args)?),
            b"SET" => Command::Set(set::Set::parse(&mut args)?),
            b"DEL" | b"UNLINK" => Command::Del(del::Del::parse(&mut args)?),
            b"EXISTS" => Command::Exists(exists::Exists::parse(&mut args)?),
            b"DBSIZE" => {
                args.finish()?;
                Command::DbSize
            }
            b"KV.INFO" => {
                args.finish()?;
                Command::Info
            }
            b"KV.SYNC" => Command::Sync(SyncRequest::parse(&mut args)?),
            _ => return Err(args.unknown()),
        })
    }

    /// Executes the command, appending its reply to `out`.
    pub fn apply(self, node: &Node, out: &mut BytesMut) -> Option<Pending> {
        match self {
            Command::Ping(c) => c.apply(out),
            Command::Echo(c) => c.apply(out),
            Command::Select(c) => c.apply(out),
            Command::Quit => kv_proto::write::ok(out),
            Command::Get(c) => c.apply(node, out),
            Command::Set(c) => return c.apply(node, out),
            Command::Del(c) => return c.apply(node, out),
            Command::Exists(c) => c.apply(node, out),
            Command::DbSize => {
                let n = node.read(|r| r.len());
                kv_proto::write::integer(out, n as i64);
            }
            Command::Info => info::apply(node, out),
            Command::Sync(_) => kv_proto::write::error(out, b"ERR KV.SYNC must be the first command on a connection"),
        }
        None
    }
}

/// Writes the reply of a write command: `ok` on success, the refusal otherwise.
fn reply_write<R>(
    out: &mut BytesMut,
    result: Result<(R, Option<Pending>), WriteError>,
    ok: impl FnOnce(&mut BytesMut, R),
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
fn write_opt(out: &mut BytesMut, v: Option<&Bytes>) {
    match v {
        Some(v) => kv_proto::write::bulk(out, v),
        None => kv_proto::write::null(out),
    }
}
