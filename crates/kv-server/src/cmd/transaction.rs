//! `MULTI`, `EXEC`, `DISCARD`: a connection's transaction. Commands after `MULTI` are
//! parsed and queued (`+QUEUED`); one that cannot be parsed (unknown, wrong arity, bad
//! syntax) is answered with its error and makes `EXEC` refuse the whole transaction
//! (`EXECABORT`), as in Redis. `EXEC` runs the queue while holding the node's transaction
//! lock exclusively ([`Node::exclusive`]): every other command takes it shared
//! ([`Node::shared`]), so no other client sees or changes anything between the queued
//! commands. A command that fails at run time (`WRONGTYPE`, say) gets its error in the
//! reply array and the others still run, as in Redis.
//!
//! `WATCH` keys, then `EXEC`: the transaction runs only if no watched key changed (or
//! expired) in between; otherwise `EXEC` answers a null array and runs nothing
//! (`crate::node::watches`). `EXEC`, `DISCARD` and `UNWATCH` end the watch. A watch lives on
//! the leader that took it: after a failover the new leader has none, and `EXEC` fails as if
//! a key had changed, so the client retries — never a transaction run unguarded.
//!
//! Gates multiplex clients over pooled connections, so a gate names each client's watch by a
//! session number: `KV.WATCH <session> key ...`, `KV.UNWATCH <session>`, and
//! `MULTI ... KV.EXEC <session>` in place of `EXEC` (cluster port only).
//!
//! A transaction that writes is replicated as one unit: its log entries come between a
//! `MULTI` and an `EXEC` entry, and a follower applies them together when the end arrives —
//! or never, if the leader fails first (then the client got no reply either).

use std::sync::Arc;

use bytes::Bytes;
use kv_proto::{Frame, Request};

use super::Command;
use crate::connection::Connection;
use crate::node::watches::Owner;
use crate::node::{Node, Pending};

/// Ends a connection's watches when it closes (held by the connection from its first
/// `WATCH`).
pub struct WatchGuard {
    node: Arc<Node>,
    conn: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.node.unwatch_connection(self.conn);
    }
}

/// The owner of a watch by session `session` of `conn`, arming the connection's guard.
fn owner(conn: &mut Connection, node: &Arc<Node>, session: u64) -> Owner {
    let id = *conn.id.get_or_insert_with(|| node.next_conn_id());
    conn.watches.get_or_insert_with(|| WatchGuard {
        node: node.clone(),
        conn: id,
    });
    (id, session)
}

/// Parses a gate's session number.
fn session(arg: &[u8]) -> Option<u64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// A transaction being queued.
#[derive(Debug, Default)]
pub struct Multi {
    queued: Vec<Command>,
    /// A queued command was refused: `EXEC` answers `EXECABORT`.
    aborted: bool,
}

impl Multi {
    /// A command was refused before queueing (`NOAUTH`, `NOPERM`, a key too long): `EXEC`
    /// answers `EXECABORT`, as Redis flags a transaction whose command it rejected.
    pub fn abort(&mut self) {
        self.aborted = true;
    }
}

/// What [`intercept`] did with a request.
pub enum Intercepted {
    /// Answered (transaction control, or queued): nothing more to do.
    Done(Option<Pending>),
    /// Not part of a transaction: serve it as usual.
    Pass(Request),
}

/// Serves transaction control and queues commands inside `MULTI`.
pub fn intercept(conn: &mut Connection, node: &Arc<Node>, req: Request) -> Intercepted {
    let in_multi = conn.multi.is_some();
    // Outside a transaction only its own commands stop here: no allocation per request.
    let control = (4..=10).contains(&req.name().len())
        && [
            &b"MULTI"[..],
            b"EXEC",
            b"DISCARD",
            b"WATCH",
            b"UNWATCH",
            b"KV.WATCH",
            b"KV.UNWATCH",
            b"KV.EXEC",
        ]
        .iter()
        .any(|c| req.name().eq_ignore_ascii_case(c));
    if !in_multi && !control {
        return Intercepted::Pass(req);
    }
    let name = req.name().to_ascii_uppercase();
    // A gate's session commands, on the cluster port only.
    let peer = !conn.output.cluster_client;
    let args = req.args();
    match (&name[..], in_multi) {
        (b"WATCH", false) if args.len() >= 2 => {
            if conn.output.cluster_client && super::cross_slot(&req) {
                let out = &mut conn.output;
                kv_proto::write::error(out, b"CROSSSLOT Keys in request don't hash to the same slot");
                return Intercepted::Done(None);
            }
            let who = owner(conn, node, 0);
            conn.watching |= watch(conn, node, who, &args[1..]);
            return Intercepted::Done(None);
        }
        (b"KV.WATCH", false) if peer && args.len() >= 3 => {
            match session(&args[1]) {
                Some(s) => {
                    let who = owner(conn, node, s);
                    watch(conn, node, who, &args[2..]);
                }
                None => kv_proto::write::error(&mut conn.output, b"ERR bad session"),
            }
            return Intercepted::Done(None);
        }
        (b"KV.UNWATCH", _) if peer && args.len() == 2 => {
            match session(&args[1]) {
                Some(s) => {
                    let who = owner(conn, node, s);
                    node.unwatch(who);
                    kv_proto::write::ok(&mut conn.output);
                }
                None => kv_proto::write::error(&mut conn.output, b"ERR bad session"),
            }
            return Intercepted::Done(None);
        }
        (b"KV.EXEC", true) if peer && args.len() == 2 => {
            let multi = conn.multi.take().expect("in a transaction");
            let Some(s) = session(&args[1]) else {
                kv_proto::write::error(&mut conn.output, b"ERR bad session");
                return Intercepted::Done(None);
            };
            let who = owner(conn, node, s);
            return Intercepted::Done(exec(multi, node, conn, Some(who)));
        }
        (b"UNWATCH", _) | (b"DISCARD", true) if conn.watching => {
            conn.watching = false;
            let who = owner(conn, node, 0);
            node.unwatch(who);
        }
        _ => {}
    }
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
            let watched = std::mem::take(&mut conn.watching).then(|| owner(conn, node, 0));
            return Intercepted::Done(exec(multi, node, conn, watched));
        }
        (b"MULTI" | b"EXEC" | b"DISCARD", _) => {
            let text = format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&name).to_lowercase()
            );
            kv_proto::write::error(out, text.as_bytes());
        }
        (b"WATCH", true) => kv_proto::write::error(out, b"ERR WATCH inside MULTI is not allowed"),
        (b"WATCH", false) => kv_proto::write::error(out, b"ERR wrong number of arguments for 'watch' command"),
        (b"UNWATCH", _) if req.len() == 1 => kv_proto::write::ok(out),
        (b"UNWATCH", _) => kv_proto::write::error(out, b"ERR wrong number of arguments for 'unwatch' command"),
        (b"KV.WATCH" | b"KV.UNWATCH" | b"KV.EXEC", _) if peer => {
            kv_proto::write::error(out, b"ERR wrong arguments for a session command")
        }
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

/// `owner` watches `keys`; answers `OK` or the refusal. True when the watch was taken.
fn watch(conn: &mut Connection, node: &Node, owner: Owner, keys: &[Bytes]) -> bool {
    match node.watch(owner, keys) {
        Ok(_) => {
            kv_proto::write::ok(&mut conn.output);
            true
        }
        Err(refusal) => {
            refusal.write(&mut conn.output);
            false
        }
    }
}

/// Runs a queued transaction atomically; its replies as one array. With a `watched` owner,
/// only if that watch holds (a null array otherwise).
fn exec(multi: Multi, node: &Node, conn: &mut Connection, watched: Option<Owner>) -> Option<Pending> {
    let out = &mut conn.output;
    if multi.aborted {
        if let Some(w) = watched {
            node.unwatch(w);
        }
        kv_proto::write::error(out, b"EXECABORT Transaction discarded because of previous errors.");
        return None;
    }
    let _exclusive = node.exclusive();
    if let Some(w) = watched
        && !node.watch_holds(w)
    {
        out.frame(&Frame::NullArray);
        return None;
    }
    node.begin_exec();
    let writes = multi.queued.iter().any(|c| !c.is_read());
    if writes {
        let _ = node.write_internal(|w| w.mark_transaction(true));
    }
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
    if writes && let Ok((_, p)) = node.write_internal(|w| w.mark_transaction(false)) {
        pending = Pending::max(pending, p);
    }
    Pending::max(pending, node.end_exec())
}
