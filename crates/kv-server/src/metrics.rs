//! The metrics port (`--metrics-port`): `GET /metrics` in the Prometheus text format,
//! `GET /health` (liveness: the process serves) and `GET /ready` (readiness: this server
//! serves its shard's keys), for Prometheus and Kubernetes probes.
//!
//! The page is assembled per scrape from the node's own figures (`Node::info`, the command
//! tables of `kv_metrics`, the coordinator's session): nothing is recorded for it on the
//! request path beyond what `INFO` already keeps.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kv_cluster::SessionStatus;
use kv_metrics::prom::{Kind, Page};
use kv_peer::ServerInfo;
use tokio::sync::watch;

use crate::node::Node;

/// What the endpoints read.
pub struct MetricsState {
    pub node: Arc<Node>,
    pub session: watch::Receiver<SessionStatus>,
}

pub fn router(state: Arc<MetricsState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<MetricsState>>) -> impl IntoResponse {
    let session = *state.session.borrow();
    let text = page(&state.node, &state.node.info(), session);
    ([(header::CONTENT_TYPE, kv_metrics::prom::CONTENT_TYPE)], text)
}

async fn ready(State(state): State<Arc<MetricsState>>) -> impl IntoResponse {
    let session = *state.session.borrow();
    match readiness(&state.node.info(), session) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

/// Ready when this server holds a role in its shard and may serve its keys: a leader within
/// its lease, or a follower streaming from its leader within its read lease; and routes by a
/// ring, with its coordinator session connected.
pub fn readiness(info: &ServerInfo, session: SessionStatus) -> Result<(), String> {
    if !session.connected {
        return Err("no ZooKeeper session".into());
    }
    if info.ring_version == 0 {
        return Err("no ring yet".into());
    }
    match info.role.as_str() {
        "leader" | "follower" if info.serving_reads => Ok(()),
        "leader" => Err("leader without a valid lease".into()),
        "follower" => Err("follower not caught up with its leader".into()),
        _ => Err("no role in the shard yet".into()),
    }
}

/// The Prometheus page.
pub fn page(node: &Node, info: &ServerInfo, session: SessionStatus) -> String {
    let mut p = Page::new();
    p.family(
        "kvstore_server_info",
        Kind::Gauge,
        "This server: its node id, shard and version (always 1).",
    )
    .sample(
        "kvstore_server_info",
        &[
            ("node", &info.id),
            ("shard", &info.shard),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1.0,
    );
    p.single(
        "kvstore_uptime_seconds",
        Kind::Gauge,
        "Seconds since the server started.",
        node.started.elapsed().as_secs_f64(),
    );
    p.commands(&node.observer.commands, &node.observer.errors);
    let clients = node.clients_connected.load(std::sync::atomic::Ordering::Relaxed);
    let tls = node.tls_clients.load(std::sync::atomic::Ordering::Relaxed);
    let peers = node.peer_links.load(std::sync::atomic::Ordering::Relaxed);
    p.family(
        "kvstore_connections",
        Kind::Gauge,
        "Open connections by protocol: Redis clients (plain and TLS) and peers on the cluster port.",
    )
    .sample(
        "kvstore_connections",
        &[("protocol", "resp")],
        clients.saturating_sub(tls) as f64,
    )
    .sample("kvstore_connections", &[("protocol", "resp-tls")], tls as f64)
    .sample("kvstore_connections", &[("protocol", "cluster")], peers as f64);
    p.single(
        "kvstore_blocked_clients",
        Kind::Gauge,
        "Clients waiting in a blocking command.",
        node.clients_blocked.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    p.single("kvstore_keys", Kind::Gauge, "Keys held.", info.keys as f64);
    p.single(
        "kvstore_memory_used_bytes",
        Kind::Gauge,
        "Bytes of keys and values held, as counted for --maxmemory.",
        info.bytes as f64,
    );
    p.single(
        "kvstore_memory_max_bytes",
        Kind::Gauge,
        "--maxmemory (0: no limit).",
        info.maxmemory as f64,
    );
    let c = &info.counters;
    p.single(
        "kvstore_evictions_total",
        Kind::Counter,
        "Keys evicted to stay within --maxmemory or --max-keys.",
        c.evicted_keys as f64,
    );
    p.single(
        "kvstore_expired_keys_total",
        Kind::Counter,
        "Keys deleted because their time to live ran out.",
        c.expired_keys as f64,
    );
    p.family(
        "kvstore_role",
        Kind::Gauge,
        "This server's role in its shard (1 for the current one).",
    );
    for role in ["leader", "follower", "idle"] {
        let on = if info.role == role { 1.0 } else { 0.0 };
        p.sample("kvstore_role", &[("role", role)], on);
    }
    p.single(
        "kvstore_epoch",
        Kind::Gauge,
        "The leadership epoch led or followed.",
        info.epoch as f64,
    );
    p.single(
        "kvstore_replication_offset",
        Kind::Gauge,
        "Offset of the last log entry applied.",
        info.offset as f64,
    );
    p.family(
        "kvstore_replication_lag",
        Kind::Gauge,
        "Log entries each connected follower is behind this leader.",
    );
    for (follower, lag) in &info.follower_lag {
        p.sample("kvstore_replication_lag", &[("follower", follower)], *lag as f64);
    }
    p.single(
        "kvstore_in_sync_replicas",
        Kind::Gauge,
        "Followers in this leader's in-sync set (writes wait for them).",
        info.isr_followers.len() as f64,
    );
    p.single(
        "kvstore_replication_backlog_bytes",
        Kind::Gauge,
        "Bytes of the replication backlog.",
        info.backlog_bytes as f64,
    );
    p.single(
        "kvstore_elections_total",
        Kind::Counter,
        "Times this server became its shard's leader.",
        c.elections_won as f64,
    );
    p.family(
        "kvstore_resyncs_total",
        Kind::Counter,
        "Follower resynchronisations, partial (from the backlog) or full (a snapshot), served as leader or done as follower.",
    )
    .sample(
        "kvstore_resyncs_total",
        &[("kind", "partial"), ("side", "served")],
        c.partial_syncs_served as f64,
    )
    .sample("kvstore_resyncs_total", &[("kind", "full"), ("side", "served")], c.full_syncs_served as f64)
    .sample("kvstore_resyncs_total", &[("kind", "partial"), ("side", "done")], c.partial_syncs_done as f64)
    .sample("kvstore_resyncs_total", &[("kind", "full"), ("side", "done")], c.full_syncs_done as f64);
    p.single(
        "kvstore_replica_timeouts_total",
        Kind::Counter,
        "Replication streams ended because the other side went silent.",
        c.replica_timeouts as f64,
    );
    p.single(
        "kvstore_reads_fenced_total",
        Kind::Counter,
        "Reads refused because this server could not vouch for its data (a lapsed lease).",
        c.reads_fenced as f64,
    );
    p.single(
        "kvstore_redirects_total",
        Kind::Counter,
        "Requests for keys another shard owns (MOVED).",
        c.not_owned as f64,
    );
    p.single(
        "kvstore_peer_auth_failures_total",
        Kind::Counter,
        "Cluster-port connections that failed the handshake.",
        c.peer_auth_failures as f64,
    );
    p.single(
        "kvstore_ring_version",
        Kind::Gauge,
        "The ring version this server routes by.",
        info.ring_version as f64,
    );
    let moving = info.moving.as_ref();
    p.single(
        "kvstore_migration_keys_moved",
        Kind::Gauge,
        "Keys this leader has sent in the ring change under way.",
        moving.map_or(0, |m| m.moved.values().sum::<u64>()) as f64,
    );
    p.single(
        "kvstore_migration_keys",
        Kind::Gauge,
        "Keys this leader is to send in the ring change under way.",
        moving.map_or(0, |m| m.total.values().sum::<u64>()) as f64,
    );
    p.single(
        "kvstore_migration_rate_keys_per_second",
        Kind::Gauge,
        "Keys per second sent in the ring change under way.",
        moving.map_or(0, |m| m.rate) as f64,
    );
    p.single(
        "kvstore_migration_keys_received_total",
        Kind::Counter,
        "Keys received from other shards in ring changes.",
        c.keys_moved_in as f64,
    );
    p.single(
        "kvstore_migration_retries_total",
        Kind::Counter,
        "Batches of moving keys sent again.",
        c.move_retries as f64,
    );
    p.zookeeper(session.connected, session.reconnects, session.generation);
    p.single(
        "kvstore_slowlog_length",
        Kind::Gauge,
        "Entries in the slow log.",
        node.observer.slowlog.len() as f64,
    );
    p.finish()
}
