//! Blocking pops: `BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BLMPOP`, `BZPOPMIN`, `BZPOPMAX`,
//! `BZMPOP`. They wait on the shard leader, where writes happen: the connection tries the pop,
//! and while there is nothing to pop it joins the node's waiters (`crate::node::waiters`),
//! served in the order they blocked by the write that gives them something, until the
//! timeout.
//!
//! Defined behaviour when the ground moves under a waiting client: each try is a write, with
//! a write's checks, so when this server stops leading or the key's slot moves away, the
//! next try (within [`RECHECK`]) answers the client with the redirection a write would get
//! (`MOVED` for a cluster client; the gate's own codes, on which it sends the command to the
//! new owner with what is left of the timeout). Nothing was popped: no element is lost or
//! delivered twice.

use std::time::Duration;

use bytes::Bytes;
use kv_proto::{Frame, Out};
use tokio::sync::watch;
use tokio::time::Instant;

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::family;
use super::{CmdError, lists, zsets};
use crate::connection::Connection;
use crate::node::waiters::Waiting;
use crate::node::{Node, Pending, Writer};

/// How often a waiting client checks that this node still leads its keys (a failover or a
/// move is not a write here).
pub const RECHECK: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
enum What {
    /// `BLPOP`/`BRPOP`: `[key, element]`.
    Pop { left: bool },
    /// `BLMOVE`/`BRPOPLPUSH`: the element.
    Move { dst: Bytes, from_left: bool, to_left: bool },
    /// `BLMPOP`: `[key, [elements]]`.
    LMPop { left: bool, count: usize },
    /// `BZPOPMIN`/`BZPOPMAX`: `[key, member, score]`.
    ZPop { min: bool },
    /// `BZMPOP`: `[key, [[member, score], ...]]`.
    ZMPop { min: bool, count: usize },
}

/// A parsed blocking command.
#[derive(Debug)]
pub struct Block {
    what: What,
    keys: Vec<Bytes>,
    /// `None`: wait forever (a timeout of 0).
    timeout: Option<Duration>,
}

fn timeout(b: &[u8]) -> Result<Option<Duration>, CmdError> {
    let t = super::strings::parse_float(b)
        .filter(|t| t.is_finite())
        .ok_or_else(|| CmdError::Other("timeout is not a float or out of range".into()))?;
    if t < 0.0 {
        return Err(CmdError::Other("timeout is negative".into()));
    }
    Ok((t > 0.0).then(|| Duration::from_secs_f64(t)))
}

fn coded(e: &'static str) -> CmdError {
    CmdError::Coded(e.into())
}

impl Block {
    /// Parses `a` (`a[0]` the name, upper case in `name`).
    pub fn parse(name: &[u8], a: &[Bytes]) -> Result<Block, CmdError> {
        let n = a.len();
        let arity = || CmdError::Arity(String::from_utf8_lossy(name).to_lowercase());
        Ok(match name {
            b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => {
                if n < 3 {
                    return Err(arity());
                }
                let what = match name {
                    b"BLPOP" => What::Pop { left: true },
                    b"BRPOP" => What::Pop { left: false },
                    b"BZPOPMIN" => What::ZPop { min: true },
                    _ => What::ZPop { min: false },
                };
                Block {
                    what,
                    keys: a[1..n - 1].to_vec(),
                    timeout: timeout(&a[n - 1])?,
                }
            }
            b"BRPOPLPUSH" => {
                if n != 4 {
                    return Err(arity());
                }
                Block {
                    what: What::Move {
                        dst: a[2].clone(),
                        from_left: false,
                        to_left: true,
                    },
                    keys: vec![a[1].clone()],
                    timeout: timeout(&a[3])?,
                }
            }
            b"BLMOVE" => {
                if n != 6 {
                    return Err(arity());
                }
                let (Some(from_left), Some(to_left)) = (lists::side(&a[3]), lists::side(&a[4])) else {
                    return Err(CmdError::Syntax);
                };
                Block {
                    what: What::Move {
                        dst: a[2].clone(),
                        from_left,
                        to_left,
                    },
                    keys: vec![a[1].clone()],
                    timeout: timeout(&a[5])?,
                }
            }
            _ => {
                // BLMPOP / BZMPOP timeout numkeys key [key ...] <side> [COUNT count]
                if n < 5 {
                    return Err(arity());
                }
                let t = timeout(&a[1])?;
                let (keys, opts) = super::sets::numkeys(&a[1..]).map_err(coded)?;
                let what = if name == b"BLMPOP" {
                    let (left, count) = lists::mpop_options(opts).map_err(coded)?;
                    What::LMPop { left, count }
                } else {
                    let (min, count) = zsets::mpop_options(opts).map_err(coded)?;
                    What::ZMPop { min, count }
                };
                Block {
                    what,
                    keys: keys.to_vec(),
                    timeout: t,
                }
            }
        })
    }

    /// The reply when the timeout passes.
    fn timed_out(&self) -> Frame {
        match self.what {
            What::Move { .. } => Frame::Null,
            _ => Frame::NullArray,
        }
    }

    /// Inside a transaction: one try, and the timeout's reply when there is nothing.
    pub fn try_now(&self, node: &Node, out: &mut Out) -> Option<Pending> {
        match self.try_once(node, out) {
            Some(pending) => pending,
            None => {
                out.frame(&self.timed_out());
                None
            }
        }
    }

    /// Tries once: `Some` when the client has its answer (in `out`): an element, or a refusal.
    fn try_once(&self, node: &Node, out: &mut Out) -> Option<Option<Pending>> {
        let keys = self.keys.iter().map(|k| &k[..]);
        let result = match &self.what {
            What::Move { dst, .. } => node.write(keys.chain(std::iter::once(&dst[..])), |w| self.pop(w)),
            _ => node.write(keys, |w| self.pop(w)),
        };
        match result {
            Ok((None, _)) => None,
            Ok((Some(frame), pending)) => {
                out.frame(&frame);
                Some(pending)
            }
            Err(refusal) => {
                refusal.write(out);
                Some(None)
            }
        }
    }

    /// Every key the command names (the destination of a move included).
    fn all_keys(&self) -> impl Iterator<Item = &[u8]> {
        let dst = match &self.what {
            What::Move { dst, .. } => Some(&dst[..]),
            _ => None,
        };
        self.keys.iter().map(|k| &k[..]).chain(dst)
    }

    /// A try for a waiter: keys holding another kind are passed over (Redis serves a
    /// blocked client only from a key of the kind it waits on), except a move's
    /// destination, whose wrong kind is the client's answer.
    fn pop_ready(&self, w: &mut Writer<'_>) -> Option<Frame> {
        let want = match self.what {
            What::ZPop { .. } | What::ZMPop { .. } => kv_proto::Kind::ZSet,
            _ => kv_proto::Kind::List,
        };
        let ready: Vec<Bytes> = self
            .keys
            .iter()
            .filter(|k| w.kind_of(k).is_some_and(|(kind, _)| kind == want))
            .cloned()
            .collect();
        if ready.is_empty() {
            return None;
        }
        if let What::Move { dst, .. } = &self.what
            && w.kind_of(dst).is_some_and(|(kind, _)| kind != kv_proto::Kind::List)
        {
            return Some(Frame::error(kv_proto::kind::WRONGTYPE));
        }
        let narrowed = Block {
            what: self.what.clone(),
            keys: ready,
            timeout: None,
        };
        let reply = narrowed.pop(w);
        w.clear_failed();
        reply
    }

    fn pop(&self, w: &mut Writer<'_>) -> Option<Frame> {
        match &self.what {
            What::Pop { left } => self.keys.iter().find_map(|k| {
                let v = lists::pop_from(w, k, *left, 1)?.pop()?;
                Some(Frame::Array(vec![Frame::Bulk(k.clone()), family::bulk(&v)]))
            }),
            What::Move {
                dst,
                from_left,
                to_left,
            } => lists::move_one(w, &self.keys[0], dst, *from_left, *to_left).map(|v| family::bulk(&v)),
            What::LMPop { left, count } => lists::mpop_first(w, &self.keys, *left, *count),
            What::ZPop { min } => self.keys.iter().find_map(|k| {
                let (m, s) = zsets::pop_from(w, k, *min, 1)?.pop()?;
                Some(Frame::Array(vec![
                    Frame::Bulk(k.clone()),
                    Frame::Bulk(m),
                    Frame::Double(s),
                ]))
            }),
            What::ZMPop { min, count } => zsets::mpop_first(w, &self.keys, *min, *count),
        }
    }
}

/// Serves a blocking command on its connection: answers when an element arrives, when the
/// client must go elsewhere, or when the timeout (or shutdown) comes.
///
/// A client that disconnects while it waits stops the wait before anything is popped for
/// it: an element is never taken for a reply nobody will read. `Err` tells the handler the
/// client is gone.
pub async fn serve(
    b: Block,
    node: &Node,
    conn: &mut Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Pending>, ()> {
    use std::sync::atomic::Ordering;
    node.clients_blocked.fetch_add(1, Ordering::Relaxed);
    let pending = wait(b, node, conn, shutdown).await;
    node.clients_blocked.fetch_sub(1, Ordering::Relaxed);
    pending
}

/// Pipelined requests buffered behind a waiting command, at most; past it the connection
/// is no longer read (nor watched for a close) until the wait ends.
const MAX_BUFFERED: usize = 1 << 20;

/// A waiter's reply and what it waits for.
type Served = (Frame, Option<Pending>);

/// A blocked client in the node's list (`crate::node::waiters`).
struct Waiter {
    block: Block,
    reply: Mutex<Option<oneshot::Sender<Served>>>,
}

impl Waiting for Waiter {
    fn serve(&self, w: &mut Writer<'_>) -> Option<Frame> {
        self.block.pop_ready(w)
    }

    fn deliver(&self, reply: Frame, pending: Option<Pending>) {
        if let Some(tx) = self.reply.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send((reply, pending));
        }
    }
}

async fn wait(
    b: Block,
    node: &Node,
    conn: &mut Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Pending>, ()> {
    let deadline = b.timeout.map(|t| Instant::now() + t);
    let (tx, mut rx) = oneshot::channel();
    let keys = b.keys.clone();
    let waiter = Arc::new(Waiter {
        block: b,
        reply: Mutex::new(Some(tx)),
    });
    let as_waiting: Arc<dyn Waiting> = waiter.clone();
    // The first try, and the registration when it finds nothing, under one lock: a write
    // that comes after sees the waiter.
    let first = {
        let _shared = node.shared();
        node.write(waiter.block.all_keys(), |w| {
            if let Some(reply) = waiter.block.pop(w) {
                return Some(reply);
            }
            if !w.failed() {
                w.waiters().add(as_waiting.clone());
            }
            None
        })
    };
    match first {
        Ok((Some(reply), pending)) => {
            conn.output.frame(&reply);
            return Ok(pending);
        }
        Ok((None, _)) => {}
        Err(refusal) => {
            refusal.write(&mut conn.output);
            return Ok(None);
        }
    }
    loop {
        let recheck = Instant::now() + RECHECK;
        let wake = deadline.map_or(recheck, |d| d.min(recheck));
        let watch_client = conn.input.len() < MAX_BUFFERED;
        tokio::select! {
            served = &mut rx => {
                let Ok((reply, pending)) = served else { return Ok(None) };
                conn.output.frame(&reply);
                return Ok(pending);
            }
            _ = tokio::time::sleep_until(wake) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    if node.forget_waiter(&as_waiting) {
                        conn.output.frame(&waiter.block.timed_out());
                        return Ok(None);
                    }
                    // Served just now: its reply is on the way.
                    continue;
                }
                // Still the key's leader? (Not a write: a failover or a move is not seen
                // by the writes this node applies.)
                if let Err(refusal) = node.write(keys.iter().map(|k| &k[..]), |_| ())
                    && node.forget_waiter(&as_waiting)
                {
                    refusal.write(&mut conn.output);
                    return Ok(None);
                }
            }
            r = conn.read_more(), if watch_client => {
                if !matches!(r, Ok(true)) {
                    node.forget_waiter(&as_waiting);
                    return Err(());
                }
            }
            _ = shutdown.changed() => {
                node.forget_waiter(&as_waiting);
                conn.output.frame(&waiter.block.timed_out());
                return Ok(None);
            }
        }
    }
}
