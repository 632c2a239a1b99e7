//! Serving one connection: read requests, apply them, reply in order.
//!
//! Requests that arrive together (a pipeline) are applied together and their replies written
//! with one syscall. Replies that must wait for replication (writes, and reads that saw
//! unreplicated writes) are waited for once, for the last of them, before any reply goes
//! out: no reply leaves before what it shows is safe.

use std::sync::Arc;

use kv_peer::PeerCommand;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::cmd::{self, Command};
use crate::connection::Connection;
use crate::node::{ClientRoute, Node, Pending};
use crate::peer::pull::Puller;
use crate::{peer, replication};

/// Replies buffered beyond this are flushed mid-pipeline (after waiting for replication).
const FLUSH_AT: usize = 64 * 1024;

/// Which port a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Clients: the Redis commands only.
    Client,
    /// Authenticated peers: the Redis commands and the internal ones.
    Cluster,
}

/// A client port connection in [`Node::clients`], removed when it closes.
struct Registered {
    node: Arc<Node>,
    info: Arc<kv_client::registry::ClientInfo>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.node.clients.remove(self.info.id);
    }
}

/// Serves `conn` until the peer leaves, breaks the protocol, or the server shuts down.
/// `puller` serves keys moving to this shard for the Redis Cluster clients of the client port
/// (`crate::peer::pull`); `None` on the cluster port.
pub async fn serve(
    node: Arc<Node>,
    mut conn: Connection,
    port: Port,
    puller: Option<Arc<Puller>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Clients on the client port are Redis Cluster clients: slot redirections, one slot per
    // command. Gates (cluster port) route by shard and get kvstore's own codes.
    conn.output.cluster_client = port == Port::Client;
    // Clients are admitted by the cluster's users; peers proved the cluster secret.
    if port == Port::Client {
        conn.user = Some(kv_acl::Session::new(&node.acl));
    }
    // The client port's connections are listed (`CLIENT LIST`) and can be closed (`CLIENT
    // KILL`); gates' links on the cluster port are peers, not clients.
    let client = (port == Port::Client).then(|| {
        let id = *conn.id.get_or_insert_with(|| node.next_conn_id());
        let addr = |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        Registered {
            node: node.clone(),
            info: node
                .clients
                .add(id, addr(conn.stream.peer_addr()), addr(conn.stream.local_addr())),
        }
    });
    // The calls of the current batch, for the command figures and the slow log.
    let mut batch = kv_metrics::Batch::default();
    // The last command looked up by name (a pipeline usually repeats one).
    let mut last_found = kv_proto::commands::LastFound::default();
    // A peer (a gate) is named by its address in the slow log.
    let peer_addr = match &client {
        Some(_) => String::new(),
        None => conn.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
    };
    let who = |client: &Option<Registered>| {
        let info = client.as_ref().map(|c| &c.info);
        kv_metrics::Client {
            addr: info.map_or_else(|| peer_addr.clone(), |i| i.addr.clone()),
            name: info.and_then(|i| i.name()).unwrap_or_default(),
        }
    };
    // `CLIENT KILL` and the server's shutdown, waited for across the whole connection: one
    // registration rather than one per read (callgrind: registering and dropping the
    // `Notify` per batch was about 230 instructions of a `-P 1` request), and polled only
    // when one of them fired (`WhenWoken`).
    let mut stopping = shutdown.clone();
    let ended = kv_client::WhenWoken::new(async {
        let killed = async {
            match &client {
                Some(c) => c.info.killed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = killed => {}
            _ = stopping.changed() => {}
        }
    });
    tokio::pin!(ended);
    loop {
        let mut pending: Option<Pending> = None;
        let mut first = true;
        // Requests in this batch: a pipeline's replies are gathered (below).
        let mut served = 0usize;
        let mut batch_started = std::time::Instant::now();
        loop {
            let req = match conn.parse() {
                Ok(Some(req)) => {
                    served += 1;
                    req
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(error = %e, "closing a connection that broke the protocol");
                    kv_proto::write::error(&mut conn.output, format!("ERR {e}").as_bytes());
                    finish(&node, &mut conn, pending).await;
                    return;
                }
            };
            // A gate's RESP3 client: this command's reply in RESP3 (see kv_peer::command).
            // (`HELLO` may change the protocol for good: only a wrapped command's change is
            // undone after it.)
            // A gate's request id (`KV.TRACE`): the command is logged under it.
            let (req, traced) = match port {
                Port::Cluster => match kv_peer::command::unwrap_traced(&req) {
                    Some((id, inner)) => (inner, Some((id, std::time::Instant::now()))),
                    None => (req, None),
                },
                Port::Client => (req, None),
            };
            let traced_name = traced
                .as_ref()
                .map(|_| String::from_utf8_lossy(req.name()).into_owned());
            let proto = conn.output.proto;
            let mut wrapped = false;
            let req = match port {
                Port::Cluster => match kv_peer::command::unwrap_resp3(&req) {
                    Some(inner) => {
                        conn.output.proto = kv_proto::Protocol::Resp3;
                        wrapped = true;
                        inner
                    }
                    None => req,
                },
                Port::Client => req,
            };
            // A gate's restricted client running a script: its user's rules apply inside.
            let (req, as_user) = match port {
                Port::Cluster => match kv_peer::command::unwrap_as_user(&req) {
                    Some((user, inner)) => (inner, Some(user)),
                    None => (req, None),
                },
                Port::Client => (req, None),
            };
            let internal = match port {
                Port::Cluster => PeerCommand::parse(&req),
                Port::Client => None,
            };
            match internal {
                Some(Ok(PeerCommand::Sync(sync))) => {
                    if finish(&node, &mut conn, pending.take()).await {
                        use tracing::Instrument as _;
                        let span = tracing::info_span!("replication", role = "leader", follower = %sync.node_id);
                        replication::leader::serve_follower(node, conn, sync, shutdown)
                            .instrument(span)
                            .await;
                    }
                    return;
                }
                Some(Ok(cmd)) => pending = Pending::max(pending, peer::apply(cmd, &node, &mut conn.output)),
                Some(Err(e)) => kv_proto::write::error(&mut conn.output, e.to_string().as_bytes()),
                None => {
                    // Counted for `INFO commandstats` (timed per batch, or alone when it
                    // can take long: `kv_metrics::batch`); its bytes kept for the slow log.
                    let info = last_found.get(req.name(), kv_proto::commands::lookup);
                    // Once per batch: what `CLIENT LIST` shows as its last command and idle
                    // time (client port only, where no request is wrapped).
                    if first && let Some(c) = &client {
                        first = false;
                        c.info.touch(batch_started, info.map_or("", |i| i.name));
                    }
                    let before = conn.output.len();
                    let started = info
                        .is_some_and(kv_metrics::batch::timed_alone)
                        .then(std::time::Instant::now);
                    let raw = node.observer.slowlog.threshold().map(|_| req.raw().clone());
                    let mut rejected = info.is_some_and(|i| !i.arity_ok(req.len()));
                    // A blocking pop's wait is not run time, and its reply is written after
                    // a flush: counted as a call only.
                    let mut timed = true;
                    'serve: {
                        // A container command's subcommand, checked with the arity (before
                        // the ACL), as Redis checks it.
                        if !rejected
                            && let Some(e) = info.and_then(|i| kv_proto::commands::subcommand_error(i, req.args()))
                        {
                            kv_proto::write::error(&mut conn.output, e.as_bytes());
                            rejected = true;
                            if let Some(m) = conn.multi.as_mut() {
                                m.abort();
                            }
                            break 'serve;
                        }
                        if let (Some(session), Some(info), false) = (conn.user.as_mut(), info, rejected) {
                            let addr = client.as_ref().map_or("", |c| c.info.addr.as_str());
                            let multi = conn.multi.is_some();
                            match session.admit(&node.acl, &node.acl_log, info, req.args(), multi, addr) {
                                kv_acl::Admit::Pass => {
                                    if let Some(e) = node
                                        .config
                                        .resp
                                        .key_limit()
                                        .and_then(|max| info.key_too_long(req.args(), max))
                                    {
                                        kv_proto::write::error(&mut conn.output, e.as_bytes());
                                        rejected = true;
                                        if let Some(m) = conn.multi.as_mut() {
                                            m.abort();
                                        }
                                        break 'serve;
                                    }
                                }
                                kv_acl::Admit::Reply(f) => {
                                    conn.output.frame(&f);
                                    break 'serve;
                                }
                                kv_acl::Admit::Refused(f) => {
                                    rejected = true;
                                    conn.output.frame(&f);
                                    if let Some(m) = conn.multi.as_mut() {
                                        m.abort();
                                    }
                                    break 'serve;
                                }
                                kv_acl::Admit::Close(f) => {
                                    conn.output.frame(&f);
                                    finish(&node, &mut conn, pending).await;
                                    return;
                                }
                            }
                        }
                        if info.is_some_and(|i| i.name == "acl") {
                            let reply = cmd::acl(&node, &conn, req.args()).await;
                            conn.output.frame(&reply);
                            break 'serve;
                        }
                        // Subscribers and transactions pass the intercepts whatever the
                        // command; other connections only with their commands.
                        let intercept = cmd::intercepted(info) || conn.multi.is_some() || conn.pubsub.is_some();
                        if intercept && conn.multi.is_none() && cmd::pubsub::intercept(&mut conn, &node, &req) {
                            break 'serve;
                        }
                        if intercept
                            && conn.multi.is_none()
                            && let Some(p) = cmd::scripting::intercept(&mut conn, &node, &req, as_user.as_deref())
                        {
                            pending = Pending::max(pending, p);
                            break 'serve;
                        }
                        let req = match intercept {
                            false => req,
                            true => match cmd::transaction::intercept(&mut conn, &node, req) {
                                cmd::transaction::Intercepted::Done(p) => {
                                    pending = Pending::max(pending, p);
                                    break 'serve;
                                }
                                cmd::transaction::Intercepted::Pass(req) => req,
                            },
                        };
                        let cluster_client = conn.output.cluster_client;
                        if cluster_client
                            && info.is_some_and(|i| !i.at_most_one_key() && cmd::in_several_slots(i.keys(req.args())))
                        {
                            kv_proto::write::error(
                                &mut conn.output,
                                b"CROSSSLOT Keys in request don't hash to the same slot",
                            );
                            rejected = true;
                            break 'serve;
                        }
                        // Collected only when a routing check will need them (no allocation for
                        // a leader's commands while no move is under way).
                        let keys: Vec<bytes::Bytes> = if cluster_client && !node.plain_route() {
                            info.map(|i| i.keys(req.args()).cloned().collect()).unwrap_or_default()
                        } else {
                            Vec::new()
                        };
                        // Named for its keyspace events; unnamed again after it (below), so no
                        // later change on this thread (a follower's replay) takes its name.
                        let named = node.notifying();
                        if named {
                            crate::node::events::set_command(info.map(|i| i.name));
                        }
                        match Command::from_request_with(req, info) {
                            Ok(Command::Quit) => {
                                kv_proto::write::ok(&mut conn.output);
                                finish(&node, &mut conn, pending).await;
                                return;
                            }
                            Ok(Command::Hello(hello)) => cmd::connection::hello(hello, &node, &mut conn),
                            Ok(Command::Client(args)) => cmd::connection::client(&args, &node, &mut conn),
                            Ok(Command::ReadOnly(on)) => {
                                conn.readonly = on;
                                kv_proto::write::ok(&mut conn.output);
                            }
                            Ok(Command::Block(b)) => {
                                timed = false;
                                // The batch so far is timed without the wait.
                                batch.record(&node.observer, batch_started.elapsed(), || who(&client));
                                // The replies before it leave first: the client waits on this one.
                                if !finish(&node, &mut conn, pending.take()).await {
                                    return;
                                }
                                match cmd::blocking::serve(b, &node, &mut conn, &mut shutdown).await {
                                    Ok(p) => pending = p,
                                    Err(()) => return,
                                }
                                batch_started = std::time::Instant::now();
                            }
                            Ok(c) => {
                                let route = match (&puller, c.has_keys() && !keys.is_empty()) {
                                    (Some(_), true) => node.cluster_client_route(&keys, c.is_read(), conn.readonly),
                                    _ => ClientRoute::Serve,
                                };
                                match route {
                                    ClientRoute::Serve => {
                                        let _shared = node.shared();
                                        pending = Pending::max(pending, c.apply(&node, &mut conn.output));
                                    }
                                    ClientRoute::Redirect(text) => {
                                        rejected = true;
                                        let text = conn.output.redirect_text(text);
                                        kv_proto::write::error(&mut conn.output, text.as_bytes())
                                    }
                                    ClientRoute::Moving {
                                        version,
                                        source,
                                        absent,
                                        moving,
                                    } => {
                                        let puller = puller.as_ref().expect("a cluster client has a puller");
                                        let write = !c.is_read();
                                        match puller.pull(&node, version, &source, &absent).await {
                                            Ok(pulled) => {
                                                pending = Pending::max(pending, pulled);
                                                let before = conn.output.len();
                                                let applied = {
                                                    let _shared = node.shared();
                                                    c.apply(&node, &mut conn.output)
                                                };
                                                pending = Pending::max(pending, applied);
                                                let failed = conn.output.get(before) == Some(&b'-');
                                                if write && !failed {
                                                    // The old copy goes only once the write (and the
                                                    // pulled value under it) is replicated here: until
                                                    // then it may be the only surviving copy.
                                                    if !finish(&node, &mut conn, pending.take()).await {
                                                        return;
                                                    }
                                                    puller.drop_old(&source, moving).await;
                                                }
                                            }
                                            Err(text) => {
                                                let text = conn.output.redirect_text(text);
                                                kv_proto::write::error(&mut conn.output, text.as_bytes())
                                            }
                                        }
                                    }
                                }
                            }
                            Err(e) => kv_proto::write::error(&mut conn.output, e.to_string().as_bytes()),
                        }
                        if named {
                            crate::node::events::set_command(None);
                        }
                    }
                    // Queued by MULTI: counted when EXEC runs it (as part of EXEC).
                    let queued = conn.multi.is_some() && info.is_some_and(|i| i.name != "multi");
                    let errored = conn.output.len() > before && conn.output[before] == b'-';
                    if errored {
                        node.observer.errors.record_reply(&conn.output[before..]);
                    }
                    if let Some(info) = info
                        && !queued
                    {
                        use kv_metrics::cmdstats::Outcome;
                        let outcome = if rejected {
                            Outcome::Rejected
                        } else if !timed {
                            Outcome::Blocked
                        } else {
                            Outcome::Ran { failed: errored }
                        };
                        let took = started.filter(|_| timed).map(|t| t.elapsed());
                        batch.push(info, outcome, took, raw);
                    }
                }
            }
            if wrapped {
                conn.output.proto = proto;
            }
            if let (Some((id, started)), Some(name)) = (traced, traced_name) {
                debug!(
                    target: "kvstore::request",
                    request = %String::from_utf8_lossy(&id),
                    command = %name,
                    micros = started.elapsed().as_micros() as u64,
                    "served"
                );
            }
            if conn.output.len() >= FLUSH_AT && !finish(&node, &mut conn, pending.take()).await {
                return;
            }
        }
        if !batch.is_empty() {
            batch.record(&node.observer, batch_started.elapsed(), || who(&client));
        }
        // A client's pipelined replies wait for the end of the scheduler's round, as Redis
        // writes its replies before it sleeps: every connection that was ready is read and
        // served first, then the replies leave together, so a client process with many
        // connections (redis-benchmark, a cluster client's pool) is woken once for many
        // replies rather than once for each. Measured straight at a kvserver, `-P 16 -c 50`
        // SET: the client's context switches per 1M requests 21,700-27,500 -> 3,300-3,500
        // (redis-server 2,400-2,800), its CPU per request 1.67-1.93 -> 1.38-1.43 us, the
        // kvserver's 2.45-3.18 -> 2.20-2.25 us. A lone request is written at once: serving
        // one takes a few microseconds, so its reply is not spread from the others, and
        // waiting would only add a scheduler pass. Gates' links (the cluster port) are a few
        // connections carrying batches: nothing to gather there.
        if port == Port::Client && served > 1 && !conn.output.is_empty() {
            tokio::task::yield_now().await;
        }
        if !finish(&node, &mut conn, pending).await {
            return;
        }
        if conn.input.capacity() - conn.input.len() < crate::connection::READ_CHUNK / 4 {
            conn.input.reserve(crate::connection::READ_CHUNK);
        }
        let proto = conn.output.proto;
        // `--timeout`, for clients (peers are exempt, and so are subscribers).
        let idle = match (port, &conn.pubsub, node.config.resp.idle_timeout()) {
            (Port::Client, None, Some(t)) => Some(t),
            _ => None,
        };
        tokio::select! {
            // In this order, with no random start (`select!` draws one per call otherwise):
            // the ends are registered once and cheap to poll.
            biased;
            // `CLIENT KILL`, or the server stopping.
            _ = &mut ended => return,
            r = tokio::io::AsyncReadExt::read_buf(&mut conn.stream, &mut conn.input) => match r {
                Ok(n) if n > 0 => {}
                _ => return,
            },
            _ = async {
                match idle {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            } => return,
            // A subscriber's messages, written as they come (with whatever else is queued).
            m = async {
                match conn.pubsub.as_mut() {
                    Some(c) => c.inbox.recv().await,
                    None => std::future::pending().await,
                }
            } => match m {
                Some(m) => {
                    m.encode(&mut conn.output, proto);
                    let client = conn.pubsub.as_mut().expect("subscribed");
                    while conn.output.len() < FLUSH_AT
                        && let Some(m) = client.inbox.try_recv()
                    {
                        m.encode(&mut conn.output, proto);
                    }
                    if conn.flush().await.is_err() {
                        return;
                    }
                }
                // Dropped past the output limit (client-output-buffer-limit pubsub).
                None => return,
            },
        }
    }
}

/// Waits for `pending` to be replicated, then flushes the replies. False when the connection
/// must close: a write whose replication could not be confirmed has an unknown outcome (and
/// a read may have seen it), and closing tells the client exactly that.
async fn finish(node: &Node, conn: &mut Connection, pending: Option<Pending>) -> bool {
    if let Some(p) = pending
        && let Err(e) = node.wait_replicated(p).await
    {
        warn!(error = %e, offset = p.offset, "replies not confirmed by followers; closing the connection");
        return false;
    }
    conn.flush().await.is_ok()
}
