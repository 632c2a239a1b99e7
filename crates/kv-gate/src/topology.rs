//! `/api/cluster`: the topology from the cluster view, with each server's own figures
//! (`KV.INFO`), asked concurrently with a short timeout.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kv_client::api::{ClusterInfo, Migration, ReplicaInfo, ShardInfo};
use kv_cluster::Phase;
use kv_proto::Frame;
use tokio::task::JoinSet;

use crate::routing::Routing;

/// How long a server may take to report.
const INFO_TIMEOUT: Duration = Duration::from_millis(1000);

/// Parses a `KV.INFO` reply (flat field/value array).
pub fn parse_info(frame: &Frame) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Frame::Array(items) = frame {
        for pair in items.chunks_exact(2) {
            if let (Some(k), Some(v)) = (pair[0].as_bytes(), pair[1].as_bytes()) {
                out.insert(
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                );
            }
        }
    }
    out
}

/// Asks every server for `KV.INFO`; servers that do not answer map to `None`.
pub async fn collect_info(routing: &Routing) -> HashMap<String, HashMap<String, String>> {
    let request = Bytes::from_static(b"*1\r\n$7\r\nKV.INFO\r\n");
    let mut set = JoinSet::new();
    for (addr, pool) in &routing.pools {
        let (addr, pool, request) = (addr.clone(), pool.clone(), request.clone());
        set.spawn(async move { (addr, pool.call(request, INFO_TIMEOUT).await) });
    }
    let mut out = HashMap::new();
    while let Some(done) = set.join_next().await {
        if let Ok((addr, Ok(frame))) = done
            && frame.as_error().is_none()
        {
            out.insert(addr, parse_info(&frame));
        }
    }
    out
}

/// Assembles `/api/cluster`.
pub async fn cluster_info(routing: &Routing) -> ClusterInfo {
    let infos = collect_info(routing).await;
    let num = |m: Option<&HashMap<String, String>>, k: &str| m.and_then(|m| m.get(k)).and_then(|v| v.parse().ok());
    let shards = routing
        .view
        .live_shards()
        .map(|sv| {
            let leader = sv.leader();
            let mut replicas: Vec<ReplicaInfo> = sv
                .nodes
                .values()
                .map(|n| {
                    let info = infos.get(&n.addr);
                    let is_leader = leader.is_some_and(|l| l.id == n.id);
                    ReplicaInfo {
                        addr: n.addr.clone(),
                        role: if is_leader { "leader" } else { "follower" }.to_string(),
                        in_sync: sv.in_sync(&n.id),
                        keys: num(info, "keys"),
                        id: n.id.clone(),
                        offset: num(info, "offset"),
                        lag: None,
                        bytes: num(info, "bytes"),
                        digest: info.and_then(|m| m.get("digest").cloned()),
                        reachable: info.is_some(),
                    }
                })
                .collect();
            let leader_offset = replicas.iter().find(|r| r.role == "leader").and_then(|r| r.offset);
            for r in &mut replicas {
                r.lag = leader_offset.zip(r.offset).map(|(l, o)| l.saturating_sub(o));
            }
            // Leader first, then by address: stable, and readable in kvctl's table.
            replicas.sort_by(|a, b| (a.role != "leader", &a.addr).cmp(&(b.role != "leader", &b.addr)));
            ShardInfo {
                name: sv.name.clone(),
                epoch: sv.epoch(),
                leader: leader.map(|l| l.addr.clone()),
                replicas,
            }
        })
        .collect();
    let view = &routing.view;
    let mut migrations = Vec::new();
    if let Some(ring) = &view.ring
        && let Some(next) = &ring.next
    {
        for from in &ring.shards {
            let progress = view
                .shards
                .get(from)
                .and_then(|sv| sv.state.as_ref())
                .and_then(|st| st.moving.as_ref())
                .filter(|m| m.version == next.version);
            let Some(p) = progress else {
                if next.phase == Phase::Prepare {
                    migrations.push(Migration {
                        from: from.clone(),
                        state: "preparing".into(),
                        ..Default::default()
                    });
                }
                continue;
            };
            for (to, total) in &p.total {
                migrations.push(Migration {
                    from: from.clone(),
                    to: to.clone(),
                    moved: p.moved.get(to).copied().unwrap_or(0),
                    total: *total,
                    rate: p.rate,
                    state: if p.done { "done" } else { "moving" }.into(),
                });
            }
        }
    }
    ClusterInfo {
        shards,
        ring: routing.ring().shards().to_vec(),
        ring_version: view.ring.as_ref().map_or(0, |r| r.version),
        next_ring: view
            .ring
            .as_ref()
            .and_then(|r| r.next.as_ref())
            .map(|n| n.shards.clone()),
        migrations,
        removing: view.removing.iter().cloned().collect(),
    }
}
