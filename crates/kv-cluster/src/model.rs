//! What the coordinator stores, and the [`ClusterView`] assembled from it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::placement::RingState;

/// A server's registration (ephemeral: it disappears with the server's session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique per server process: a restarted server is a new node, because it restarts empty.
    pub id: String,
    /// The shard this server is a replica of.
    pub shard: String,
    /// `host:port` of its client port (clients and cluster-aware Redis clients).
    pub addr: String,
    /// `host:port` of its cluster port, where peers (other servers and gates) reach it:
    /// replication, key moves, internal commands and the gates' forwarded traffic.
    pub cluster_addr: String,
    /// `host:port` of its TLS client port, when it has one (`--tls-port`): what TLS
    /// clients are sent to in `MOVED` and `CLUSTER SLOTS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_addr: Option<String>,
}

/// A shard's persistent state. Written only by the shard's leader (or a server winning an
/// election), always with a version check, so two writers can never both succeed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// The leadership term; only grows. Every replication message carries it.
    pub epoch: u64,
    /// Node id of the leader of `epoch`.
    pub leader: Option<String>,
    /// The in-sync replica set (node ids, the leader included): the replicas holding every
    /// acknowledged write, and so the only ones that may be elected.
    pub isr: Vec<String>,
    /// The highest ring version this shard is ready to receive keys for (see
    /// [`crate::placement`]).
    #[serde(default)]
    pub ring_ready: u64,
}

/// One shard as currently registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardView {
    pub name: String,
    /// Live servers by node id.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// The persistent state, when the shard has ever had a leader.
    pub state: Option<ShardState>,
    /// Version of the state node, for version-checked writes.
    pub state_version: i32,
    /// The node id holding the leader lock, if any.
    pub leader_lock: Option<String>,
}

impl ShardView {
    /// The shard's current leader: the node named by the state, holding the lock, and alive.
    pub fn leader(&self) -> Option<&NodeInfo> {
        let id = self.state.as_ref()?.leader.as_ref()?;
        if self.leader_lock.as_ref() != Some(id) {
            return None;
        }
        self.nodes.get(id)
    }

    /// The current epoch (0 before the first election).
    pub fn epoch(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.epoch)
    }

    /// True when `id` is in the in-sync replica set.
    pub fn in_sync(&self, id: &str) -> bool {
        self.state.as_ref().is_some_and(|s| s.isr.iter().any(|i| i == id))
    }
}

/// Every shard with at least one registration or persistent state, and the ring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub shards: BTreeMap<String, ShardView>,
    /// The stored ring, once the ring manager created it.
    pub ring: Option<RingState>,
    /// Version of the ring node, for version-checked writes.
    pub ring_node_version: i32,
    /// Shards an operator asked to remove.
    pub removing: BTreeSet<String>,
    /// The node id holding the ring manager's lock, if any.
    pub ring_lock: Option<String>,
    /// The users (ACL file text), once a process seeded them, and the node's version.
    pub users: Option<String>,
    pub users_version: i32,
}

impl ClusterView {
    /// Shards that have at least one live server: the shards on the ring.
    pub fn live_shards(&self) -> impl Iterator<Item = &ShardView> {
        self.shards.values().filter(|s| !s.nodes.is_empty())
    }
}

/// The 40-hex-digit node id Redis Cluster clients expect (`CLUSTER NODES`, `MYID`), derived
/// from a node's kvstore id so that every server reports the same id for it.
pub fn cluster_node_id(id: &str) -> String {
    (0..3u8)
        .map(|i| format!("{:016x}", kv_proto::hash::hash64(format!("{id}#{i}").as_bytes())))
        .collect::<String>()[..40]
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            shard: "s".into(),
            addr: format!("{id}:1"),
            cluster_addr: format!("{id}:2"),
            tls_addr: None,
        }
    }

    #[test]
    fn leader_needs_state_lock_and_registration() {
        let mut v = ShardView {
            name: "s".into(),
            ..Default::default()
        };
        v.nodes.insert("a".into(), node("a"));
        assert!(v.leader().is_none());
        v.state = Some(ShardState {
            epoch: 3,
            leader: Some("a".into()),
            isr: vec!["a".into()],
            ..Default::default()
        });
        assert!(v.leader().is_none(), "no lock yet");
        v.leader_lock = Some("a".into());
        assert_eq!(v.leader().unwrap().id, "a");
        assert!(v.in_sync("a") && !v.in_sync("b"));
        v.nodes.clear();
        assert!(v.leader().is_none(), "not registered");
    }
}
