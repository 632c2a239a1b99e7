//! `MULTI` … `EXEC` at the gate. Commands are checked (known, arity) and queued here, and
//! every key of a transaction must live on one shard (`CROSSSLOT` otherwise, as in Redis
//! Cluster; a key moving between shards gets `TRYAGAIN`). `EXEC` sends the whole
//! transaction — `MULTI`, the commands, `EXEC` — to that shard's leader as one message on a
//! pooled connection, so no other client's request comes between them there, and the leader
//! runs it atomically (`kv_server::cmd::transaction`). The client gets `EXEC`'s reply.
//!
//! `WATCH` is held by the leader of the watched keys' shard, under this client's session
//! number on the gate's connection for this client (`KV.WATCH`, `call_pinned`); the
//! transaction then must stay on that shard, and its `EXEC` goes as `KV.EXEC <session>` on
//! the same connection: the leader runs it only if no watched key changed. A failover or a
//! broken connection in between loses the watch, and `EXEC` fails (a null reply), as when a
//! key changed: the client retries, nothing runs unguarded.

use bytes::{Bytes, BytesMut};
use kv_proto::{Frame, Protocol, Request};

use super::command;
use super::{Pending, Session};
use crate::routing::Target;

/// What this client watches: the shard its keys live on, and one of them to route by.
pub struct Watching {
    shard: String,
    key: Bytes,
}

/// True for `MULTI`, `EXEC`, `DISCARD`, `WATCH` and `UNWATCH` (any case).
pub fn is_control(name: &[u8]) -> bool {
    (4..=7).contains(&name.len())
        && [&b"MULTI"[..], b"EXEC", b"DISCARD", b"WATCH", b"UNWATCH"]
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
}

/// A transaction being queued.
#[derive(Default)]
pub struct Multi {
    /// The commands, encoded.
    queued: Vec<Bytes>,
    /// The shard every key so far lives on.
    shard: Option<String>,
    /// A key of the transaction, to route by (`None`: no keys yet).
    route_key: Option<Bytes>,
    aborted: bool,
}

impl Multi {
    /// A command was refused while queueing (`NOAUTH`, `NOPERM`, a key too long): `EXEC`
    /// answers `EXECABORT`, as Redis flags a transaction whose command it rejected.
    pub fn abort(&mut self) {
        self.aborted = true;
    }
}

impl Session<'_> {
    /// Serves transaction control, and queues commands inside `MULTI`; `None` when `req` is
    /// served as usual.
    pub(super) async fn transaction(&mut self, req: &Request) -> Option<Pending> {
        let in_multi = self.multi.is_some();
        // Outside a transaction only its own commands stop here: no allocation per request.
        if !in_multi && !is_control(req.name()) {
            return None;
        }
        let name = req.name().to_ascii_uppercase();
        let now = |f: Frame| Some(Pending::Now(f));
        match (&name[..], in_multi) {
            (b"MULTI", false) if req.len() == 1 => {
                self.multi = Some(Multi::default());
                now(Frame::simple("OK"))
            }
            (b"MULTI", true) => now(Frame::error("ERR MULTI calls can not be nested")),
            (b"EXEC" | b"DISCARD", false) if req.len() == 1 => now(Frame::error(format!(
                "ERR {} without MULTI",
                String::from_utf8_lossy(&name)
            ))),
            (b"DISCARD", true) if req.len() == 1 => {
                self.multi = None;
                self.unwatch().await;
                now(Frame::simple("OK"))
            }
            (b"EXEC", true) if req.len() == 1 => Some(self.exec().await),
            (b"MULTI" | b"EXEC" | b"DISCARD", _) => now(Frame::error(format!(
                "ERR wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&name).to_lowercase()
            ))),
            (b"WATCH", true) => now(Frame::error("ERR WATCH inside MULTI is not allowed")),
            (b"WATCH", false) if req.len() >= 2 => now(self.watch(req).await),
            (b"WATCH", false) => now(Frame::error("ERR wrong number of arguments for 'watch' command")),
            (b"UNWATCH", _) if req.len() == 1 => {
                self.unwatch().await;
                now(Frame::simple("OK"))
            }
            (b"UNWATCH", _) => now(Frame::error("ERR wrong number of arguments for 'unwatch' command")),
            (b"QUIT", _) => None,
            (_, true) => Some(Pending::Now(self.queue(req))),
            (_, false) => None,
        }
    }

    /// `WATCH keys`: taken by the leader of their shard, for this client's session.
    async fn watch(&mut self, req: &Request) -> Frame {
        let routing = self.state.forwarder.routing();
        let keys = &req.args()[1..];
        if keys.iter().any(|k| routing.moving(k).is_some()) {
            return Frame::error("TRYAGAIN Multiple keys request during rehashing of slot");
        }
        let Some(shard) = routing.owner(&keys[0]).map(str::to_string) else {
            return Frame::error("CLUSTERDOWN no shard is registered in the cluster yet");
        };
        let elsewhere = |k: &Bytes| routing.owner(k) != Some(shard.as_str());
        if keys.iter().any(elsewhere) || self.watching.as_ref().is_some_and(|w| w.shard != shard) {
            return Frame::error("CROSSSLOT Keys in request don't hash to the same slot");
        }
        let session = self.id.to_string();
        let mut args: Vec<&[u8]> = vec![b"KV.WATCH", session.as_bytes()];
        args.extend(keys.iter().map(|k| &k[..]));
        let request = kv_proto::write::command(args);
        if !self.batcher.is_empty() {
            let affinity = self.affinity();
            self.batcher.flush(affinity).await;
        }
        let target = Target::Key(keys[0].clone());
        match self
            .state
            .forwarder
            .call_pinned(&target, request, self.affinity())
            .await
        {
            Ok(reply) => {
                if reply.as_error().is_none() {
                    self.watching = Some(Watching {
                        shard,
                        key: keys[0].clone(),
                    });
                }
                reply
            }
            Err(e) => super::forward_error(&e),
        }
    }

    /// Ends this client's watch, if any (`UNWATCH`, `DISCARD`, a transaction refused).
    pub(super) async fn unwatch(&mut self) {
        if let Some(w) = self.watching.take() {
            let session = self.id.to_string();
            let request = kv_proto::write::command([&b"KV.UNWATCH"[..], session.as_bytes()]);
            // Best effort: a watch the leader lost is gone anyway.
            let _ = self
                .state
                .forwarder
                .call_pinned(&Target::Key(w.key), request, self.affinity())
                .await;
        }
    }

    /// Queues `req`, or refuses it (and the transaction with it).
    fn queue(&mut self, req: &Request) -> Frame {
        let routing = self.state.forwarder.routing();
        let watched = self.watching.as_ref().map(|w| w.shard.clone());
        let multi = self.multi.as_mut().expect("in a transaction");
        if multi.shard.is_none() {
            multi.shard = watched;
        }
        let refuse = |multi: &mut Multi, f: Frame| {
            multi.aborted = true;
            f
        };
        // Redis's `no-multi` commands: refused as Redis refuses them (kvstore has none of
        // them, so they would otherwise be unknown).
        if [&b"SAVE"[..], b"SHUTDOWN", b"SYNC", b"PSYNC", b"REPLCONF", b"MONITOR"]
            .iter()
            .any(|n| req.name().eq_ignore_ascii_case(n))
        {
            return refuse(multi, Frame::error("ERR Command not allowed inside a transaction"));
        }
        let Some(spec) = command::lookup(req.name()) else {
            return refuse(multi, super::unknown(req));
        };
        if !spec.arity_ok(req.len()) {
            return refuse(
                multi,
                Frame::error(format!("ERR wrong number of arguments for '{}' command", spec.name)),
            );
        }
        for key in spec.info.keys(req.args()) {
            if routing.moving(key).is_some() {
                return refuse(
                    multi,
                    Frame::error("TRYAGAIN Multiple keys request during rehashing of slot"),
                );
            }
            let owner = routing.owner(key).map(str::to_string);
            match (&multi.shard, owner) {
                (Some(s), Some(o)) if *s != o => {
                    return refuse(
                        multi,
                        Frame::error("CROSSSLOT Keys in request don't hash to the same slot"),
                    );
                }
                (None, Some(o)) => {
                    multi.shard = Some(o);
                    multi.route_key = Some(key.clone());
                }
                _ => {}
            }
        }
        multi
            .queued
            .push(kv_proto::write::command(req.args().iter().map(|a| &a[..])));
        Frame::simple("QUEUED")
    }

    /// `EXEC`: the whole transaction to its shard's leader (with the watch's check, when
    /// this client watches).
    async fn exec(&mut self) -> Pending {
        let multi = self.multi.take().expect("in a transaction");
        if multi.aborted {
            self.unwatch().await;
            return Pending::Now(Frame::error(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        let watching = self.watching.take();
        if multi.queued.is_empty() && watching.is_none() {
            return Pending::Now(Frame::Array(vec![]));
        }
        let mut batch = BytesMut::new();
        batch.extend_from_slice(&kv_proto::write::command([&b"MULTI"[..]]));
        for q in &multi.queued {
            batch.extend_from_slice(q);
        }
        let session = self.id.to_string();
        let mut exec = match &watching {
            Some(_) => kv_proto::write::command([&b"KV.EXEC"[..], session.as_bytes()]),
            None => kv_proto::write::command([&b"EXEC"[..]]),
        };
        if self.proto == Protocol::Resp3
            && let Some(wrapped) = kv_peer::command::wrap_resp3(&exec)
        {
            exec = wrapped;
        }
        batch.extend_from_slice(&exec);
        let target = match multi.route_key.or(watching.map(|w| w.key)) {
            Some(key) => crate::routing::Target::Key(key),
            None => match self.state.forwarder.routing().shard_names().first() {
                Some(s) => crate::routing::Target::Shard(s.clone()),
                None => return Pending::Now(Frame::error("CLUSTERDOWN no shard is registered in the cluster yet")),
            },
        };
        Pending::Transaction(target, batch.freeze(), multi.queued.len() + 2, self.affinity())
    }
}
