//! `MULTI`, `EXEC`, `DISCARD`: a connection's transaction. Commands after `MULTI` are
//! parsed and queued (`+QUEUED`); one that cannot be parsed (unknown, wrong arity, bad
//! syntax) is answered with its error and makes `EXEC` refuse the whole transaction
//! (`EXECABORT`), as in Redis. `EXEC` runs the queue while holding the node's transaction
//! lock exclusively ([`Node::exclusive`]): every other command takes it shared
//! ([`Node::shared`]), so no other client sees or changes anything between the queued
//! commands. A command that fails at run time (`WRONGTYPE`, say) gets its error in the
//! reply array and the others still run, as in Redis.
//!
//! Not yet: `WATCH` (refused, so that no client believes it holds an optimistic lock), and
//! replicating a transaction as one unit — followers apply its entries one by one, so a
//! reader of a follower could see part of one.

use bytes::Bytes;
use kv_proto::Request;

use super::Command;
use crate::connection::Connection;
use crate::node::{Node, Pending};

/// A transaction being queued.
#[derive(Debug, Default)]
pub struct Multi {
    queued: Vec<Command>,
    /// A queued command was refused: `EXEC` answers `EXECABORT`.
    aborted: bool,
}

/// What [`intercept`] did with a request.
pub enum Intercepted {
    /// Answered (transaction control, or queued): nothing more to do.
    Done(Option<Pending>),
    /// Not part of a transaction: serve it as usual.
    Pass(Request),
}

/// Serves transaction control and queues commands inside `MULTI`.
pub fn intercept(conn: &mut Connection, node: &Node, req: Request) -> Intercepted {
    let in_multi = conn.multi.is_some();
    // Outside a transaction only its own commands stop here: no allocation per request.
    let control = (4..=7).contains(&req.name().len())
        && [&b"MULTI"[..], b"EXEC", b"DISCARD", b"WATCH", b"UNWATCH"]
            .iter()
            .any(|c| req.name().eq_ignore_ascii_case(c));
    if !in_multi && !control {
        return Intercepted::Pass(req);
    }
    let name = req.name().to_ascii_uppercase();
    let out = &mut conn.output;
    match (&name[..], in_multi) {
        (b"MULTI", false) if req.len() == 1 => {
            conn.multi = Some(Multi::default());
            kv_proto::write::ok(out);
        }
        (b"MULTI", true) => {
            kv_proto::write::error(out, b"ERR MULTI calls can not be nested");
        }
        (b"EXEC" | b"DISCARD", false) if req.len() == 1 => {
            let text = format!("ERR {} without MULTI", String::from_utf8_lossy(&name));
            kv_proto::write::error(out, text.as_bytes());
        }
        (b"DISCARD", true) if req.len() == 1 => {
            conn.multi = None;
            kv_proto::write::ok(out);
        }
        (b"EXEC", true) if req.len() == 1 => {
            let multi = conn.multi.take().expect("in a transaction");
            return Intercepted::Done(exec(multi, node, conn));
        }
        (b"MULTI" | b"EXEC" | b"DISCARD", _) => {
            let text = format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&name).to_lowercase()
            );
            kv_proto::write::error(out, text.as_bytes());
        }
        (b"WATCH", true) => kv_proto::write::error(out, b"ERR WATCH inside MULTI is not allowed"),
        (b"WATCH", false) => kv_proto::write::error(out, b"ERR WATCH is not supported yet"),
        (b"UNWATCH", _) => kv_proto::write::ok(out),
        (_, true) => match Command::from_request(req) {
            Ok(Command::Quit) => {
                // QUIT ends the connection, transaction or not.
                return Intercepted::Pass(Request::new(vec![Bytes::from_static(b"QUIT")]));
            }
            Ok(c) => {
                conn.multi.as_mut().expect("in a transaction").queued.push(c);
                kv_proto::write::simple(out, b"QUEUED");
            }
            Err(e) => {
                conn.multi.as_mut().expect("in a transaction").aborted = true;
                kv_proto::write::error(out, e.to_string().as_bytes());
            }
        },
        (_, false) => return Intercepted::Pass(req),
    }
    Intercepted::Done(None)
}

/// Runs a queued transaction atomically; its replies as one array.
fn exec(multi: Multi, node: &Node, conn: &mut Connection) -> Option<Pending> {
    let out = &mut conn.output;
    if multi.aborted {
        kv_proto::write::error(out, b"EXECABORT Transaction discarded because of previous errors.");
        return None;
    }
    let _exclusive = node.exclusive();
    node.begin_exec();
    kv_proto::write::array_header(out, multi.queued.len());
    let mut pending = None;
    for c in multi.queued {
        let p = match c {
            // Inside a transaction a blocking pop does not wait (Redis's rule).
            Command::Block(b) => b.try_now(node, out),
            c => c.apply(node, out),
        };
        pending = Pending::max(pending, p);
    }
    Pending::max(pending, node.end_exec())
}
