//! Commands the gate answers itself: PING, ECHO, QUIT, SELECT, HELLO, CLIENT, COMMAND, INFO.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use kv_proto::hello::{Hello, HelloReply, REDIS_VERSION, valid_client_name};
use kv_proto::{Frame, Request};

use super::command::Spec;
use super::{Pending, RespState, Session};
use crate::topology;
use kv_proto::commands::{ServedBy, command_reply};

fn bulk(s: impl Into<Bytes>) -> Frame {
    Frame::Bulk(s.into())
}

fn ok() -> Frame {
    Frame::simple("OK")
}

fn upper(b: &[u8]) -> Vec<u8> {
    b.to_ascii_uppercase()
}

/// Serves a local command.
pub fn apply(session: &mut Session<'_>, spec: &Spec, req: &Request) -> Pending {
    let a = req.args();
    let frame = match spec.name {
        "ping" => match a.len() {
            1 => Frame::simple("PONG"),
            2 => Frame::Bulk(a[1].clone()),
            _ => Frame::error("ERR wrong number of arguments for 'ping' command"),
        },
        "echo" => Frame::Bulk(a[1].clone()),
        "quit" => {
            session.quit = true;
            ok()
        }
        "select" => match &a[1][..] {
            b"0" => ok(),
            _ if a[1].iter().all(u8::is_ascii_digit) => Frame::error("ERR DB index is out of range"),
            _ => Frame::error("ERR value is not an integer or out of range"),
        },
        "hello" => hello(session, a),
        "client" => client(session, a),
        "command" => command_reply(a, ServedBy::Gate),
        "info" => {
            if a.len() > 2 {
                Frame::error("ERR syntax error")
            } else {
                return Pending::Info(a.get(1).map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()));
            }
        }
        other => Frame::error(format!("ERR command '{other}' is not served locally")),
    };
    Pending::Now(frame)
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: switches the client to RESP2 or
/// RESP3. The gate serves clients that are not cluster-aware, so it is a `standalone` master.
fn hello(session: &mut Session<'_>, a: &[Bytes]) -> Frame {
    let hello = match Hello::parse(a) {
        Ok(h) => h,
        Err(e) => return Frame::error(e.to_string()),
    };
    if let Some(name) = hello.setname {
        session.name = (!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned());
    }
    if let Some(proto) = hello.proto {
        session.proto = proto;
    }
    HelloReply {
        proto: session.proto,
        id: session.id,
        mode: "standalone",
        role: "master",
    }
    .frame()
}

/// `CLIENT SETNAME | GETNAME | SETINFO | ID | INFO`
fn client(session: &mut Session<'_>, a: &[Bytes]) -> Frame {
    let sub = upper(&a[1]);
    match (sub.as_slice(), a.len()) {
        (b"SETNAME", 3) => {
            if !valid_client_name(&a[2]) {
                return Frame::error("ERR Client names cannot contain spaces, newlines or special characters.");
            }
            session.name = (!a[2].is_empty()).then(|| String::from_utf8_lossy(&a[2]).into_owned());
            ok()
        }
        (b"GETNAME", 2) => session.name.clone().map_or(Frame::Null, bulk),
        (b"SETINFO", 4) => ok(),
        (b"ID", 2) => Frame::Integer(session.id as i64),
        (b"INFO", 2) => Frame::text(format!(
            "id={} name={} db=0 cmd=client|info\n",
            session.id,
            session.name.as_deref().unwrap_or("")
        )),
        (b"SETNAME" | b"GETNAME" | b"SETINFO" | b"ID" | b"INFO", _) => Frame::error(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(&a[1]).to_ascii_lowercase()
        )),
        _ => Frame::error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(&a[1])
        )),
    }
}

/// `INFO [section]` with cluster-wide figures gathered from every server.
pub async fn info(state: &RespState, section: Option<&str>) -> Frame {
    let routing = state.forwarder.routing();
    let wanted = |name: &str| match section {
        None | Some("all" | "everything" | "default") => true,
        Some(s) => s == name,
    };
    let mut out = String::new();
    if wanted("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nkvstore_version:{}\r\nredis_mode:standalone\r\nprocess_id:{}\r\n\
             tcp_port:{}\r\nhttp_addr:{}\r\nuptime_in_seconds:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            state.resp_addr.rsplit(':').next().unwrap_or(""),
            state.http_addr,
            state.started.elapsed().as_secs()
        );
    }
    let s = &state.stats;
    if wanted("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\n\r\n",
            s.connected.load(Ordering::Relaxed)
        );
    }
    if wanted("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\n\r\n",
            s.connections_received.load(Ordering::Relaxed),
            s.commands.load(Ordering::Relaxed),
            s.rejected_connections.load(Ordering::Relaxed)
        );
    }
    let needs_cluster = wanted("keyspace") || wanted("cluster") || wanted("memory");
    if needs_cluster {
        let cluster = topology::cluster_info(&state.monitor, &routing).await;
        let leaders = || {
            cluster
                .shards
                .iter()
                .filter_map(|sh| sh.replicas.iter().find(|r| r.role == "leader"))
        };
        let keys: u64 = leaders().filter_map(|r| r.keys).sum();
        let bytes: u64 = leaders().filter_map(|r| r.bytes).sum();
        if wanted("memory") {
            let _ = write!(out, "# Memory\r\nused_memory_dataset:{bytes}\r\n\r\n");
        }
        if wanted("keyspace") {
            let _ = write!(out, "# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n\r\n");
        }
        if wanted("cluster") {
            let _ = write!(
                out,
                "# Cluster\r\ncluster_enabled:0\r\nkvstore_shards:{}\r\nkvstore_ring:{}\r\nkvstore_keys:{keys}\r\n",
                cluster.shards.len(),
                cluster.ring.join(",")
            );
            for sh in &cluster.shards {
                let _ = write!(
                    out,
                    "shard_{}:epoch={},leader={},replicas={},in_sync={},keys={}\r\n",
                    sh.name,
                    sh.epoch,
                    sh.leader.as_deref().unwrap_or("-"),
                    sh.replicas.len(),
                    sh.replicas.iter().filter(|r| r.in_sync).count(),
                    sh.replicas
                        .iter()
                        .find(|r| r.role == "leader")
                        .and_then(|r| r.keys)
                        .unwrap_or(0)
                );
            }
            out.push_str("\r\n");
        }
    }
    Frame::text(out)
}
