//! Pub/sub on a kvserver (`kv_pubsub`): `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and their
//! unsubscribes, `PUBLISH`, `SPUBLISH`, `PUBSUB`, and a RESP2 connection's subscribed mode.
//! They are the connection's own state, so they are served here, before the command table.
//!
//! A server delivers what is published at it. Gates meet there: they publish a channel at
//! its home (the leader of its slot's shard) and subscribe there for their clients
//! (`KV.SUBSCRIBE <weight> <command> <name ...>`, cluster port only: the weight is how many
//! of the gate's clients listen, so `PUBLISH` counts them all). A cluster client publishes
//! and subscribes at a channel's home too, as Redis Cluster clients do for shard channels:
//! `SSUBSCRIBE` and `SPUBLISH` of a slot served elsewhere answer `MOVED`.

use bytes::Bytes;
use kv_proto::{Frame, Protocol, Request};
use kv_pubsub::{Client, Op, Space};

use crate::connection::Connection;
use crate::node::Node;

/// True when `req` was a pub/sub command (answered into `conn.output`), or a command a RESP2
/// connection in subscribed mode may not send (refused).
pub fn intercept(conn: &mut Connection, node: &Node, req: &Request) -> bool {
    let name = req.name();
    let args = req.args();
    let subscribed = conn.pubsub.as_ref().is_some_and(Client::active);
    if subscribed && conn.output.proto == Protocol::Resp2 {
        let link = !conn.output.cluster_client && name.eq_ignore_ascii_case(b"KV.SUBSCRIBE");
        if !kv_pubsub::allowed_while_subscribed(name) && !link {
            kv_pubsub::not_allowed(name).encode(&mut conn.output);
            return true;
        }
        if name.eq_ignore_ascii_case(b"PING") && args.len() <= 2 {
            kv_pubsub::subscribed_pong(&mut conn.output, args.get(1).map(|a| &a[..]));
            return true;
        }
    }
    if let Some(op) = Op::of(name) {
        if op.needs_args() && args.len() < 2 {
            arity(conn, name);
            return true;
        }
        if op == Op::Subscribe(Space::Shard) && !shard_channels_here(conn, node, &args[1..]) {
            return true;
        }
        let proto = conn.output.proto;
        let client = conn.pubsub.get_or_insert_with(|| Client::new(&node.pubsub));
        client.apply(op, &args[1..], 1, &mut conn.output, proto);
        return true;
    }
    // Upper-cased on the stack: this runs for every command.
    let Some((buf, len)) = super::args::upper(name) else {
        return false;
    };
    let upper = &buf[..len];
    match upper {
        b"PUBLISH" | b"SPUBLISH" => {
            if args.len() != 3 {
                arity(conn, name);
                return true;
            }
            let space = if upper[0] == b'S' { Space::Shard } else { Space::Global };
            if space == Space::Shard && !shard_channels_here(conn, node, &args[1..2]) {
                return true;
            }
            let n = node.pubsub.publish(space, &args[1], &args[2]);
            kv_proto::write::integer(&mut conn.output, n as i64);
            true
        }
        b"PUBSUB" => {
            let reply = pubsub(node, args);
            conn.output.frame(&reply);
            true
        }
        b"KV.SUBSCRIBE" if !conn.output.cluster_client => {
            // A gate's link: `KV.SUBSCRIBE <weight> <command> <name ...>`.
            let op = args.get(2).and_then(|a| Op::of(a));
            let weight = args
                .get(1)
                .and_then(|w| std::str::from_utf8(w).ok()?.parse::<u64>().ok());
            match (op, weight) {
                (Some(op), Some(w)) => {
                    let proto = conn.output.proto;
                    let client = conn.pubsub.get_or_insert_with(|| Client::new(&node.pubsub));
                    client.apply(op, &args[3..], w, &mut conn.output, proto);
                }
                _ => kv_proto::write::error(&mut conn.output, b"ERR KV.SUBSCRIBE <weight> <command> <name ...>"),
            }
            true
        }
        _ => false,
    }
}

fn arity(conn: &mut Connection, name: &[u8]) {
    let text = format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    );
    kv_proto::write::error(&mut conn.output, text.as_bytes());
}

/// For a cluster client: shard channels must share a slot this server leads (`CROSSSLOT`,
/// `MOVED` otherwise, written here). Gates route them themselves.
fn shard_channels_here(conn: &mut Connection, node: &Node, channels: &[Bytes]) -> bool {
    if !conn.output.cluster_client {
        return true;
    }
    let mut slots = channels.iter().map(|c| kv_proto::slot::key_slot(c));
    let first = slots.next();
    if slots.any(|s| Some(s) != first) {
        kv_proto::write::error(
            &mut conn.output,
            b"CROSSSLOT Keys in request don't hash to the same slot",
        );
        return false;
    }
    match node.write(channels.iter().take(1).map(|c| &c[..]), |_| ()) {
        Ok(_) => true,
        Err(refusal) => {
            refusal.write(&mut conn.output);
            false
        }
    }
}

/// `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB|HELP`, about this server.
pub fn pubsub(node: &Node, args: &[Bytes]) -> Frame {
    let hub = &node.pubsub;
    let sub = args.get(1).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
    let names = |v: Vec<Bytes>| Frame::Array(v.into_iter().map(Frame::Bulk).collect());
    let counts = |space: Space| {
        Frame::Array(
            args[2..]
                .iter()
                .flat_map(|c| [Frame::Bulk(c.clone()), Frame::Integer(hub.numsub(space, c) as i64)])
                .collect(),
        )
    };
    match (&sub[..], args.len()) {
        (b"CHANNELS", 2 | 3) => names(hub.channels(Space::Global, args.get(2).map(|p| &p[..]))),
        (b"SHARDCHANNELS", 2 | 3) => names(hub.channels(Space::Shard, args.get(2).map(|p| &p[..]))),
        (b"NUMSUB", _) => counts(Space::Global),
        (b"SHARDNUMSUB", _) => counts(Space::Shard),
        (b"NUMPAT", 2) => Frame::Integer(hub.patterns().len() as i64),
        (b"HELP", 2) => Frame::Array(HELP.iter().map(|l| Frame::simple(l)).collect()),
        (_, 1) => Frame::error("ERR wrong number of arguments for 'pubsub' command"),
        _ => Frame::unknown_subcommand("PUBSUB", &args[1]),
    }
}

const HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];
