//! A gate client's pub/sub commands (see [`crate::pubsub`] for how messages cross the
//! cluster): subscriptions are kept in the gate's hub and mirrored upstream by the links;
//! `PUBLISH`/`SPUBLISH` go to the channel's home; `PUBSUB` asks every shard leader.

use bytes::{Bytes, BytesMut};
use kv_proto::{Frame, Protocol, Request};
use kv_pubsub::{Client, Op, Space};

use super::{Pending, Session};
use crate::forward::Access;
use crate::routing::Target;

impl Session<'_> {
    /// Serves `req` when it is a pub/sub command, or refuses what a RESP2 connection in
    /// subscribed mode may not send; `None` otherwise.
    pub(super) async fn pubsub(&mut self, req: &Request) -> Option<Pending> {
        let name = req.name();
        let args = req.args();
        let subscribed = self.pubsub.as_ref().is_some_and(Client::active);
        if subscribed && self.proto == Protocol::Resp2 {
            if !kv_pubsub::allowed_while_subscribed(name) {
                return Some(Pending::Now(kv_pubsub::not_allowed(name)));
            }
            if name.eq_ignore_ascii_case(b"PING") && args.len() <= 2 {
                let mut out = BytesMut::new();
                kv_pubsub::subscribed_pong(&mut out, args.get(1).map(|a| &a[..]));
                return Some(Pending::Now(Frame::Relayed(out.freeze())));
            }
        }
        if let Some(op) = Op::of(name) {
            let reply = self.subscribe(op, args);
            self.state.pubsub.sync().await;
            return Some(Pending::Now(reply));
        }
        // Compared in place: this runs for every command.
        let is = |c: &[u8]| name.eq_ignore_ascii_case(c);
        let publish = is(b"PUBLISH") || is(b"SPUBLISH");
        match () {
            () if publish && args.len() != 3 => Some(Pending::Now(arity(name))),
            () if publish => {
                let bytes = kv_proto::write::command(args.iter().map(|a| &a[..]));
                let target = Target::Key(args[1].clone());
                // Not repeated blindly: a message delivered twice is a duplicate.
                let access = Access::Write;
                let affinity = self.id as usize;
                Some(Pending::Forward(
                    self.state.forwarder.start(target, access, bytes, affinity).await,
                ))
            }
            () if is(b"PUBSUB") => Some(Pending::Now(self.pubsub_info(args).await)),
            _ => None,
        }
    }

    fn subscribe(&mut self, op: Op, args: &[Bytes]) -> Frame {
        if op.needs_args() && args.len() < 2 {
            return arity(&args[0]);
        }
        if op == Op::Subscribe(Space::Shard) {
            let routing = self.state.forwarder.routing();
            let mut slots = args[1..].iter().map(|c| kv_proto::slot::key_slot(c));
            let first = slots.next();
            if slots.any(|s| Some(s) != first) || args[1..].iter().any(|c| routing.moving(c).is_some()) {
                return Frame::error("CROSSSLOT Keys in request don't hash to the same slot");
            }
        }
        let hub = &self.state.pubsub.hub;
        let client = self.pubsub.get_or_insert_with(|| Client::new(hub));
        let mut out = BytesMut::new();
        client.apply(op, &args[1..], 1, &mut out, self.proto);
        Frame::Relayed(out.freeze())
    }

    /// `PUBSUB ...` over the cluster: each channel is subscribed at its home and each
    /// pattern at every leader, so channel lists are joined, channel counts added and the
    /// pattern count is any leader's (the largest, while links catch up).
    async fn pubsub_info(&mut self, args: &[Bytes]) -> Frame {
        let sub = args.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        // HELP and the errors: one server's answer, as Redis words it.
        let known = [&b"CHANNELS"[..], b"SHARDCHANNELS", b"NUMSUB", b"SHARDNUMSUB", b"NUMPAT"];
        if !self.batcher.is_empty() {
            let affinity = self.id as usize;
            self.batcher.flush(affinity).await;
        }
        let routing = self.state.forwarder.routing();
        let request = kv_proto::write::command(args.iter().map(|a| &a[..]));
        let mut replies = Vec::new();
        for shard in routing.shard_names() {
            let target = Target::Shard(shard.clone());
            let leader = Access::Write;
            match self.state.forwarder.execute(&target, leader, request.clone()).await {
                Ok(f) if f.as_error().is_some() => return f,
                Ok(f) => replies.push(f),
                Err(e) => return super::forward_error(&e),
            }
        }
        if !known.contains(&&sub[..]) || replies.is_empty() {
            return replies
                .into_iter()
                .next()
                .unwrap_or_else(|| Frame::error("CLUSTERDOWN no shard is registered in the cluster yet"));
        }
        match &sub[..] {
            b"CHANNELS" | b"SHARDCHANNELS" => {
                let mut all: Vec<Bytes> = replies
                    .into_iter()
                    .flat_map(|f| match f {
                        Frame::Array(items) => items.into_iter().filter_map(|i| i.as_bytes().cloned()).collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                all.sort();
                all.dedup();
                Frame::Array(all.into_iter().map(Frame::Bulk).collect())
            }
            b"NUMSUB" | b"SHARDNUMSUB" => {
                let mut counts = vec![0i64; args.len().saturating_sub(2)];
                for f in replies {
                    if let Frame::Array(items) = f {
                        for (i, n) in items.iter().skip(1).step_by(2).enumerate() {
                            if let (Some(c), Some(n)) = (counts.get_mut(i), n.as_integer()) {
                                *c += n;
                            }
                        }
                    }
                }
                Frame::Array(
                    args[2..]
                        .iter()
                        .zip(counts)
                        .flat_map(|(c, n)| [Frame::Bulk(c.clone()), Frame::Integer(n)])
                        .collect(),
                )
            }
            _ => Frame::Integer(replies.iter().filter_map(Frame::as_integer).max().unwrap_or(0)),
        }
    }
}

fn arity(name: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    ))
}
