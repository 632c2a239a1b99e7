//! Commands the gate answers itself: PING, ECHO, QUIT, SELECT, HELLO, CLIENT, COMMAND, INFO,
//! TIME, CONFIG (see [`kv_proto::settings`]), FUNCTION.

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
        "acl" => {
            let state = session.state;
            // Changes go to the cluster's stored users; the rest is answered here.
            if kv_acl::command::changes_users(a) {
                return Pending::Acl(a.to_vec(), session.user.user.clone());
            }
            let storage = acl_storage(state);
            kv_acl::command::acl(&state.acl, &state.acl_log, &*storage, &session.user.user, a)
        }
        "client" => client(session, a),
        "command" => command_reply(a, ServedBy::Gate),
        "time" => kv_proto::commands::time_reply(),
        "script" => match (upper(&a[1]).as_slice(), a.len()) {
            // Loaded on every server, followers too: an EVALSHA finds it after a failover.
            (b"LOAD", 3) | (b"FLUSH", 2 | 3) => return Pending::EveryServer(a.to_vec()),
            // EXISTS, KILL, HELP and the errors: the first shard's leader answers.
            _ => match session.state.forwarder.routing().shard_names().first() {
                Some(shard) => {
                    let target = crate::routing::Target::Shard(shard.clone());
                    let bytes = kv_proto::write::command(a.iter().map(|x| &x[..]));
                    return Pending::Execute(target, bytes);
                }
                None => Frame::error("CLUSTERDOWN no shard is registered in the cluster yet"),
            },
        },
        "config" => {
            let reply = session.state.config.command(a);
            if reply.as_error().is_none() && kv_proto::settings::resets_stats(a) {
                session.state.observer.reset();
            }
            session.state.observer.configure(&session.state.config);
            if let Some(limit) = session.state.config.output_limit("pubsub") {
                session.state.pubsub.hub.set_limit(limit);
            }
            if reply.as_error().is_none() && kv_proto::settings::sets_cluster_wide(a) {
                return Pending::ConfigSet(a.to_vec());
            }
            reply
        }
        // The gate's own: end-to-end times, as its clients see them.
        "slowlog" => session.state.observer.slowlog.command(a),
        "latency" => session.state.observer.latency.command(a),
        "function" => match upper(&a[1]).as_slice() {
            // Loaded on every server, followers too, as scripts are.
            b"LOAD" | b"DELETE" | b"FLUSH" => return Pending::EveryServer(a.to_vec()),
            // LIST and the errors: the first shard's leader answers.
            _ => match session.state.forwarder.routing().shard_names().first() {
                Some(shard) => {
                    let target = crate::routing::Target::Shard(shard.clone());
                    return Pending::Execute(target, kv_proto::write::command(a.iter().map(|x| &x[..])));
                }
                None => Frame::error("CLUSTERDOWN no shard is registered in the cluster yet"),
            },
        },
        "info" => {
            return Pending::Info(
                a[1..]
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect(),
            );
        }
        other => Frame::error(format!("ERR command '{other}' is not served locally")),
    };
    Pending::Now(frame)
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: switches the client to RESP2 or
/// RESP3. The gate serves clients that are not cluster-aware, so it is a `standalone` master.
/// Where `ACL SAVE` and `ACL LOAD` keep the users: `--aclfile`, or nowhere.
pub fn acl_storage(state: &RespState) -> Box<dyn kv_acl::command::Storage> {
    match &state.acl_file {
        Some(path) => Box::new(kv_acl::command::FileStorage(path.clone())),
        None => Box::new(kv_acl::command::NoStorage),
    }
}

fn hello(session: &mut Session<'_>, a: &[Bytes]) -> Frame {
    let hello = match Hello::parse(a) {
        Ok(h) => h,
        Err(e) => return Frame::error(e.to_string()),
    };
    // Its `AUTH` was checked before it ran (`Session::refuse`).
    if let Some(name) = hello.setname {
        session
            .client
            .set_name((!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned()));
    }
    if let Some(proto) = hello.proto {
        session.proto = proto;
        session.client.set_resp(proto.version());
    }
    HelloReply {
        proto: session.proto,
        id: session.id,
        mode: "standalone",
        role: "master",
    }
    .frame()
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients of specified IDs only.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "HELP",
    "    Print this help.",
];

/// `CLIENT LIST | KILL | INFO | ID | SETNAME | GETNAME | SETINFO | NO-EVICT | REPLY | HELP`
fn client(session: &mut Session<'_>, a: &[Bytes]) -> Frame {
    let sub = upper(&a[1]);
    let clients = &session.state.clients;
    match (sub.as_slice(), a.len()) {
        (b"SETNAME", 3) => {
            if !valid_client_name(&a[2]) {
                return Frame::error("ERR Client names cannot contain spaces, newlines or special characters.");
            }
            session
                .client
                .set_name((!a[2].is_empty()).then(|| String::from_utf8_lossy(&a[2]).into_owned()));
            ok()
        }
        (b"GETNAME", 2) => session.client.name().map_or(Frame::Null, bulk),
        (b"SETINFO", 4) => ok(),
        (b"ID", 2) => Frame::Integer(session.id as i64),
        (b"INFO", 2) => Frame::text(format!("{}\n", session.client.line())),
        (b"HELP", 2) => Frame::Array(CLIENT_HELP.iter().map(|l| Frame::simple(l)).collect()),
        (b"NO-EVICT", 3) => match upper(&a[2]).as_slice() {
            b"ON" | b"OFF" => {
                let on = a[2].eq_ignore_ascii_case(b"ON");
                session.client.no_evict.store(on, Ordering::Relaxed);
                ok()
            }
            _ => Frame::error("ERR syntax error"),
        },
        // The mode itself is applied as the request arrives (`Session::silenced`).
        (b"REPLY", 3) => match upper(&a[2]).as_slice() {
            b"ON" | b"OFF" | b"SKIP" => ok(),
            _ => Frame::error("ERR syntax error"),
        },
        (b"LIST", _) => clients.list_reply(&a[2..]),
        // The old form: one address, OK or an error.
        (b"KILL", 3) => {
            let addr = &a[2][..];
            match clients.kill(|c| c.addr.as_bytes() == addr) {
                0 => Frame::error("ERR No such client"),
                _ => ok(),
            }
        }
        (b"KILL", n) if n >= 4 && n % 2 == 0 => clients.kill_reply(&a[2..], session.id),
        (b"UNBLOCK", 3 | 4) => {
            let error = match a.get(3).map(|r| upper(r)) {
                None => false,
                Some(r) if r == b"TIMEOUT" => false,
                Some(r) if r == b"ERROR" => true,
                Some(_) => return Frame::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
            };
            match std::str::from_utf8(&a[2]).ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(id) => Frame::Integer(session.state.clients.unblock(id, error) as i64),
                None => Frame::error("ERR value is not an integer or out of range"),
            }
        }
        (
            b"SETNAME" | b"GETNAME" | b"SETINFO" | b"ID" | b"INFO" | b"HELP" | b"NO-EVICT" | b"KILL" | b"UNBLOCK"
            | b"REPLY",
            _,
        ) => Frame::error(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(&a[1]).to_ascii_lowercase()
        )),
        _ => Frame::error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(&a[1])
        )),
    }
}

/// `INFO [section ...]` with cluster-wide figures gathered from every server.
pub async fn info(state: &RespState, args: &[String]) -> Frame {
    let routing = state.forwarder.routing();
    let sections = kv_proto::info::sections(args);
    let wanted = |name: &str| sections.contains(&name);
    let mut out = String::new();
    let s = &state.stats;
    let needs_cluster = wanted("keyspace") || wanted("cluster") || wanted("memory") || wanted("persistence");
    let cluster = if needs_cluster {
        Some(topology::cluster_info(&state.monitor, &routing).await)
    } else {
        None
    };
    let leaders = || {
        cluster
            .iter()
            .flat_map(|c| c.shards.iter())
            .filter_map(|sh| sh.replicas.iter().find(|r| r.role == "leader"))
    };
    let keys: u64 = leaders().filter_map(|r| r.keys).sum();
    let bytes: u64 = leaders().filter_map(|r| r.bytes).sum();
    // Every change a leader makes is one entry of its shard's log: the offsets summed count
    // the changes (a cache never saves, so all of them are "since the last save").
    let changes: u64 = leaders().filter_map(|r| r.offset).sum();
    for section in sections.iter().copied() {
        match section {
            "server" => {
                let uptime = state.started.elapsed().as_secs();
                let _ = write!(
                    out,
                    "# Server\r\nredis_version:{REDIS_VERSION}\r\nkvstore_version:{}\r\nredis_mode:standalone\r\n\
                     os:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nhttp_addr:{}\r\n\
                     uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:10\r\n\r\n",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    std::process::id(),
                    state.resp_addr.rsplit(':').next().unwrap_or(""),
                    state.http_addr,
                    uptime / 86400
                );
            }
            "clients" => {
                let _ = write!(
                    out,
                    "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\n\r\n",
                    s.connected.load(Ordering::Relaxed),
                    s.blocked.load(Ordering::Relaxed)
                );
            }
            "memory" => {
                // Every server caches the scripts a gate loads: a leader's count stands for all.
                let scripts = match routing.shard_names().first() {
                    Some(shard) => {
                        let request = kv_proto::write::command([&b"INFO"[..], b"memory"]);
                        let target = crate::routing::Target::Shard(shard.clone());
                        match state
                            .forwarder
                            .execute(&target, crate::forward::Access::Read, request)
                            .await
                        {
                            Ok(Frame::Bulk(text)) => String::from_utf8_lossy(&text)
                                .lines()
                                .find_map(|l| l.strip_prefix("number_of_cached_scripts:").map(str::to_string))
                                .unwrap_or_else(|| "0".into()),
                            _ => "0".into(),
                        }
                    }
                    None => "0".into(),
                };
                let _ = write!(
                    out,
                    "# Memory\r\nused_memory:{bytes}\r\nused_memory_human:{:.2}K\r\nused_memory_dataset:{bytes}\r\n\
                     maxmemory:0\r\nnumber_of_cached_scripts:{scripts}\r\n\r\n",
                    bytes as f64 / 1024.0
                );
            }
            "persistence" => {
                let _ = write!(
                    out,
                    "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{changes}\r\nrdb_bgsave_in_progress:0\r\n\
                     rdb_last_bgsave_status:ok\r\naof_enabled:0\r\n\r\n"
                );
            }
            "stats" => {
                let _ = write!(
                    out,
                    "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\n\r\n",
                    s.connections_received.load(Ordering::Relaxed),
                    s.commands.load(Ordering::Relaxed),
                    s.rejected_connections.load(Ordering::Relaxed)
                );
            }
            // The gate is each client's only server: a master without replicas of its own
            // (the shards' replication is in `cluster`).
            "replication" => {
                out.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n\r\n")
            }
            "cpu" => {
                kv_proto::info::cpu(&mut out);
            }
            "modules" => out.push_str("# Modules\r\n\r\n"),
            "errorstats" => state.observer.errors.section(&mut out),
            "latencystats" => state.observer.latency_section(&mut out),
            "commandstats" => state.observer.commands.section(&mut out),
            "keyspace" => {
                let _ = write!(out, "# Keyspace\r\n");
                if keys > 0 {
                    let _ = write!(out, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
                }
                out.push_str("\r\n");
            }
            "cluster" => {
                let Some(cluster) = &cluster else { continue };
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
            _ => {}
        }
    }
    Frame::text(out)
}
