//! What the gate tells its operators: `GET /metrics` (Prometheus) and `GET /ready`
//! (readiness: every shard on the ring has a leader the gate can reach).
//!
//! The gate's figures are its own: commands as its clients see them (end to end, the
//! shard's round trip included), its connections, retries and redirections, its
//! coordinator session. Each kvserver serves its own on `--metrics-port`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kv_metrics::histogram::Histogram;
use kv_metrics::prom::{Kind, Page};
use serde::Serialize;

use crate::http::HttpState;

/// The HTTP API's endpoints, as `kvstore_http_*` label them (anything else is `other`).
pub const ENDPOINTS: [&str; 10] = [
    "/api/cache/put",
    "/api/cache/get",
    "/api/cache/delete",
    "/api/cluster",
    "/api/shards/remove",
    "/metrics",
    "/health",
    "/ready",
    "/dashboard",
    "other",
];

/// Status classes counted per endpoint.
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The HTTP API's requests: per endpoint, counts by status class and a latency histogram.
/// Atomics in fixed slots, as the RESP side's command table.
#[derive(Debug, Default)]
pub struct HttpStats {
    counts: [[AtomicU64; CLASSES.len()]; ENDPOINTS.len()],
    nanos: [AtomicU64; ENDPOINTS.len()],
    latency: [Histogram; ENDPOINTS.len()],
}

impl kv_http::Observe for HttpStats {
    fn endpoint(&self, path: &str) -> usize {
        ENDPOINTS.iter().position(|e| *e == path).unwrap_or(ENDPOINTS.len() - 1)
    }

    fn done(&self, endpoint: usize, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(2, 5) - 2;
        let endpoint = endpoint.min(ENDPOINTS.len() - 1);
        self.counts[endpoint][class].fetch_add(1, Ordering::Relaxed);
        self.nanos[endpoint].fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.latency[endpoint].record(took);
    }
}

impl HttpStats {
    fn write(&self, p: &mut Page) {
        p.family(
            "kvstore_http_requests_total",
            Kind::Counter,
            "HTTP requests answered, by endpoint and status class.",
        );
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.counts[e][c].load(Ordering::Relaxed);
                if n > 0 {
                    p.sample(
                        "kvstore_http_requests_total",
                        &[("endpoint", endpoint), ("code", class)],
                        n as f64,
                    );
                }
            }
        }
        p.family(
            "kvstore_http_request_duration_seconds",
            Kind::Histogram,
            "Time from a request's headers to its response, by endpoint.",
        );
        let name = "kvstore_http_request_duration_seconds";
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            let snapshot = self.latency[e].snapshot();
            if snapshot.count() == 0 {
                continue;
            }
            let nanos = self.nanos[e].load(Ordering::Relaxed);
            p.histogram(name, &[("endpoint", endpoint)], &snapshot, nanos);
        }
    }
}

/// The Prometheus page.
pub fn page(state: &HttpState) -> String {
    let resp = &state.resp;
    let mut p = Page::new();
    p.family("kvstore_gate_info", Kind::Gauge, "This gate: its version (always 1).")
        .sample("kvstore_gate_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    p.single(
        "kvstore_uptime_seconds",
        Kind::Gauge,
        "Seconds since the gate started.",
        resp.started.elapsed().as_secs_f64(),
    );
    p.commands(&resp.observer.commands, &resp.observer.errors);
    let s = &resp.stats;
    let connected = s.connected.load(Ordering::Relaxed);
    let tls = s.connected_tls.load(Ordering::Relaxed);
    p.family(
        "kvstore_connections",
        Kind::Gauge,
        "Open client connections by protocol.",
    )
    .sample(
        "kvstore_connections",
        &[("protocol", "resp")],
        connected.saturating_sub(tls) as f64,
    )
    .sample("kvstore_connections", &[("protocol", "resp-tls")], tls as f64);
    for (protocol, gauge) in state.http_connections.get().into_iter().flatten() {
        p.sample("kvstore_connections", &[("protocol", protocol)], gauge.open() as f64);
    }
    p.single(
        "kvstore_connections_received_total",
        Kind::Counter,
        "RESP client connections accepted.",
        s.connections_received.load(Ordering::Relaxed) as f64,
    );
    p.single(
        "kvstore_connections_rejected_total",
        Kind::Counter,
        "RESP client connections refused (--max-clients, protected mode).",
        s.rejected_connections.load(Ordering::Relaxed) as f64,
    );
    p.single(
        "kvstore_blocked_clients",
        Kind::Gauge,
        "Clients waiting in a blocking command.",
        s.blocked.load(Ordering::Relaxed) as f64,
    );
    let fwd = state.forwarder.stats();
    p.single(
        "kvstore_gate_retries_total",
        Kind::Counter,
        "Requests the gate sent again: after a redirection, a failed or missing reply, or while a shard had no leader.",
        fwd.retries.load(Ordering::Relaxed) as f64,
    );
    p.single(
        "kvstore_gate_redirects_total",
        Kind::Counter,
        "Replies that sent the gate elsewhere (not the leader, the key moved, try again).",
        fwd.redirects.load(Ordering::Relaxed) as f64,
    );
    let routing = state.forwarder.routing();
    let shards = routing.shard_names();
    let led = shards
        .iter()
        .filter(|name| routing.view.shards.get(*name).and_then(|s| s.leader()).is_some())
        .count();
    p.single(
        "kvstore_gate_shards",
        Kind::Gauge,
        "Shards on the ring.",
        shards.len() as f64,
    );
    p.single(
        "kvstore_gate_shards_with_leader",
        Kind::Gauge,
        "Shards on the ring whose leader the coordinator names.",
        led as f64,
    );
    p.single(
        "kvstore_ring_version",
        Kind::Gauge,
        "The ring version the gate routes by.",
        routing.view.ring.as_ref().map_or(0, |r| r.version) as f64,
    );
    state.http_stats.write(&mut p);
    let session = *state.coord.session().borrow();
    p.zookeeper(session.connected, session.reconnects, session.generation);
    p.single(
        "kvstore_slowlog_length",
        Kind::Gauge,
        "Entries in the gate's slow log.",
        resp.observer.slowlog.len() as f64,
    );
    p.finish()
}

/// The `/ready` body.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Each shard on the ring: `ok` or why not.
    pub shards: BTreeMap<String, String>,
    /// Why the gate as a whole is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Asks every shard's leader for its report (over the monitor's connections, with their
/// short timeout) and checks that each shard on the ring has one that answers as a leader
/// able to serve.
pub async fn readiness(state: &HttpState) -> Readiness {
    let routing = state.forwarder.routing();
    let not = |reason: &str| Readiness {
        ready: false,
        shards: BTreeMap::new(),
        reason: Some(reason.to_string()),
    };
    if !routing.confirmed {
        return not("the gate's ZooKeeper session is disconnected");
    }
    let names = routing.shard_names();
    if names.is_empty() {
        return not("no shard is on the ring yet");
    }
    let reports = state.monitor.collect(&routing).await;
    let shards: BTreeMap<String, String> = names
        .iter()
        .map(|name| {
            let leader = routing.view.shards.get(name).and_then(|s| s.leader());
            let verdict = match leader {
                None => "no leader".to_string(),
                Some(node) => match reports.get(&node.cluster_addr) {
                    None => format!("leader {} does not answer", node.cluster_addr),
                    Some(info) if info.role == "leader" && info.serving_reads => "ok".to_string(),
                    Some(info) => format!("leader {} is {} without a valid lease", node.cluster_addr, info.role),
                },
            };
            (name.clone(), verdict)
        })
        .collect();
    Readiness {
        ready: shards.values().all(|v| v == "ok"),
        shards,
        reason: None,
    }
}
