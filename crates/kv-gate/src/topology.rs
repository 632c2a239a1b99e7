//! `/api/cluster`: the topology from the cluster view, with each server's own figures
//! (`KV.INFO`), asked concurrently with a short timeout over the [`Monitor`]'s own
//! connections, so a slow report never delays (or fails) a client's command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_client::api::{ClusterInfo, Migration, ReplicaInfo, ShardInfo};
use kv_client::{ConnOptions, Pool};
use kv_cluster::Phase;
use kv_peer::{PeerCommand, ServerInfo};
use tokio::task::JoinSet;

use crate::routing::Routing;

/// How long a server may take to report.
const INFO_TIMEOUT: Duration = Duration::from_millis(1000);

/// One connection per server for monitoring and admin calls, apart from the data path.
pub struct Monitor {
    options: ConnOptions,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl Monitor {
    pub fn new(options: ConnOptions) -> Monitor {
        Monitor {
            options,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pools of the servers `routing` names (by cluster address); others are closed.
    fn pools(&self, routing: &Routing) -> Vec<(String, Arc<Pool>)> {
        let mut pools = self.pools.lock().expect("monitor pools");
        let live: Vec<&String> = routing
            .view
            .live_shards()
            .flat_map(|sv| sv.nodes.values().map(|n| &n.cluster_addr))
            .collect();
        pools.retain(|addr, pool| {
            let keep = live.contains(&addr);
            if !keep {
                pool.close();
            }
            keep
        });
        live.into_iter()
            .map(|addr| {
                let pool = pools
                    .entry(addr.clone())
                    .or_insert_with(|| Arc::new(Pool::new(addr.clone(), 1, self.options.clone())));
                (addr.clone(), pool.clone())
            })
            .collect()
    }

    /// Asks every server for `KV.INFO`, by cluster address; servers that do not answer are
    /// missing.
    pub async fn collect(&self, routing: &Routing) -> HashMap<String, ServerInfo> {
        let request = PeerCommand::Info.encode();
        let mut set = JoinSet::new();
        for (addr, pool) in self.pools(routing) {
            let request = request.clone();
            set.spawn(async move { (addr, pool.call(request, INFO_TIMEOUT).await) });
        }
        let mut out = HashMap::new();
        while let Some(done) = set.join_next().await {
            if let Ok((addr, Ok(frame))) = done
                && let Ok(info) = ServerInfo::from_frame(&frame)
            {
                out.insert(addr, info);
            }
        }
        out
    }
}

/// Assembles `/api/cluster`.
pub async fn cluster_info(monitor: &Monitor, routing: &Routing) -> ClusterInfo {
    let infos = monitor.collect(routing).await;
    let mut slots: HashMap<&str, Vec<[u16; 2]>> = HashMap::new();
    for (first, last, shard) in routing.ring().slot_ranges() {
        slots.entry(shard).or_default().push([first, last]);
    }
    let shards = routing
        .view
        .live_shards()
        .map(|sv| {
            let leader = sv.leader();
            let mut replicas: Vec<ReplicaInfo> = sv
                .nodes
                .values()
                .map(|n| {
                    let info = infos.get(&n.cluster_addr);
                    let is_leader = leader.is_some_and(|l| l.id == n.id);
                    ReplicaInfo {
                        addr: n.addr.clone(),
                        role: if is_leader { "leader" } else { "follower" }.to_string(),
                        in_sync: sv.in_sync(&n.id),
                        keys: info.map(|i| i.keys),
                        id: n.id.clone(),
                        offset: info.map(|i| i.offset),
                        lag: None,
                        bytes: info.map(|i| i.bytes),
                        digest: info.map(|i| i.digest.clone()),
                        reachable: info.is_some(),
                        cluster_addr: n.cluster_addr.clone(),
                        serving_reads: info.map(|i| i.serving_reads),
                        commands: info.map(|i| i.commands),
                        latency: info.map(|i| i.latency.clone()).unwrap_or_default(),
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
                slots: slots.get(sv.name.as_str()).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let view = &routing.view;
    let mut migrations = Vec::new();
    if let Some(ring) = &view.ring
        && let Some(next) = &ring.next
    {
        for from in &ring.shards {
            // A source's progress, as its leader reports it.
            let progress = view
                .shards
                .get(from)
                .and_then(|sv| sv.leader())
                .and_then(|l| infos.get(&l.cluster_addr))
                .and_then(|i| i.moving.as_ref())
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
        latency_bounds_ns: kv_metrics::histogram::BOUNDS.to_vec(),
        now_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    }
}
