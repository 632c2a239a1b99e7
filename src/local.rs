//! The embedded local cluster: N shards × R replicas and a gate in one process, on the
//! in-process coordinator. It runs the same server and gate code as a real cluster; only
//! coordination differs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_cluster::{MemoryCluster, Paths, read_view};
use kv_gate::{Gate, GateHandle};
use kv_peer::ClusterSecret;
use kv_server::{Server, ServerHandle};

/// A running local cluster.
pub struct LocalCluster {
    pub coordinator: MemoryCluster,
    pub servers: Vec<ServerHandle>,
    pub gate: GateHandle,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub shards: usize,
    pub replicas: usize,
    pub gate: kv_gate::Config,
    /// Settings applied to every server (its shard is set per server).
    pub server: kv_server::Config,
}

impl LocalCluster {
    /// Starts the servers and the gate, and waits (up to 10 s) until every shard has a leader.
    pub async fn start(opts: LocalOptions) -> anyhow::Result<LocalCluster> {
        let coordinator = MemoryCluster::new();
        // The cluster's own secret, made fresh: its cluster ports admit only its members.
        let secret = Arc::new(ClusterSecret::generate());
        let mut servers = Vec::new();
        for s in 1..=opts.shards {
            for _ in 0..opts.replicas {
                let mut config = opts.server.clone();
                config.shard = format!("shard-{s}");
                config.cluster_secret.get_or_insert_with(|| secret.clone());
                servers.push(Server::start(config, Arc::new(coordinator.connect())).await?);
            }
        }
        let mut gate_config = opts.gate.clone();
        gate_config.cluster_secret.get_or_insert(secret);
        let gate = Gate::start(gate_config, Arc::new(coordinator.connect())).await?;
        let cluster = LocalCluster {
            coordinator,
            servers,
            gate,
        };
        cluster.wait_for_leaders(opts.shards, Duration::from_secs(10)).await?;
        Ok(cluster)
    }

    async fn wait_for_leaders(&self, shards: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let session = self.coordinator.connect();
        let paths = Paths::new(&self.servers[0].node().config.cluster);
        loop {
            let view = read_view(&session, &paths).await?;
            let led = view.shards.values().filter(|s| s.leader().is_some()).count();
            if led == shards {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("only {led} of {shards} shards elected a leader within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the gate, then the followers, then the leaders (so no follower sees its
    /// leader vanish).
    pub async fn shutdown(self) {
        self.gate.shutdown().await;
        let (leaders, followers): (Vec<_>, Vec<_>) = self
            .servers
            .into_iter()
            .partition(|s| matches!(s.node().role(), kv_server::node::Role::Leader { .. }));
        for s in followers.into_iter().chain(leaders) {
            s.shutdown().await;
        }
    }
}
