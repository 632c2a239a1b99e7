//! The JSON of the gate's HTTP API. The field names of [`ClusterInfo`], [`ShardInfo`] and
//! [`ReplicaInfo`] listed in the README are a contract other tools depend on: add fields,
//! never rename or remove them.

use serde::{Deserialize, Serialize};

/// Body of `POST /api/cache/put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: String,
    /// The value, base64 (standard alphabet, padded).
    pub value: String,
    /// Time to live in milliseconds; absent = no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /api/cluster`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub shards: Vec<ShardInfo>,
    /// Shard names on the hash ring, sorted.
    #[serde(default)]
    pub ring: Vec<String>,
    /// Version of the ring (grows with every change; 0 before the first ring).
    #[serde(default)]
    pub ring_version: u64,
    /// The ring being moved to, while a change is under way.
    #[serde(default)]
    pub next_ring: Option<Vec<String>>,
    /// Keys moving between shards right now; empty when idle.
    #[serde(default)]
    pub migrations: Vec<Migration>,
    /// Shards being drained for removal.
    #[serde(default)]
    pub removing: Vec<String>,
    /// Upper bounds (ns) of the buckets of [`ReplicaInfo::latency`] (one more bucket holds
    /// the rest).
    #[serde(default)]
    pub latency_bounds_ns: Vec<u64>,
    /// When the gate assembled this (Unix ms): rates between two reports use its clock.
    #[serde(default)]
    pub now_ms: u64,
}

/// One source → destination move in [`ClusterInfo::migrations`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub from: String,
    pub to: String,
    /// Keys sent so far.
    pub moved: u64,
    /// Keys to send (counted when the move began).
    pub total: u64,
    /// The source's sending rate, keys per second.
    pub rate: u64,
    /// `"preparing"` (targets getting ready), `"moving"` or `"done"` (this source finished).
    pub state: String,
}

/// Body of `POST /api/shards/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveShard {
    pub name: String,
}

/// One shard in [`ClusterInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub name: String,
    /// Current leadership term (0 before the first election).
    pub epoch: u64,
    /// `host:port` of the leader, `null` while the shard has none.
    pub leader: Option<String>,
    pub replicas: Vec<ReplicaInfo>,
    /// The Redis Cluster slots the current ring gives this shard, as inclusive ranges.
    #[serde(default)]
    pub slots: Vec<[u16; 2]>,
}

/// One replica in [`ShardInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// `host:port`.
    pub addr: String,
    /// `"leader"` or `"follower"`.
    pub role: String,
    /// In the shard's in-sync replica set: holds every acknowledged write, may be elected.
    pub in_sync: bool,
    /// Keys held; `null` when the replica did not answer.
    pub keys: Option<u64>,
    /// The node id (unique per server process).
    #[serde(default)]
    pub id: String,
    /// Replication offset applied; `null` when the replica did not answer.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Entries behind the leader (`leader offset − offset`); `null` when either did not answer.
    #[serde(default)]
    pub lag: Option<u64>,
    /// Bytes held (as counted against `--maxmemory`); `null` when the replica did not answer.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Order-independent digest of the replica's contents (hex): equal contents, equal digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// False when the gate could not reach the replica just now.
    #[serde(default)]
    pub reachable: bool,
    /// `host:port` of the replica's cluster port (peers only: replication, gates).
    #[serde(default)]
    pub cluster_addr: String,
    /// True while the replica may serve reads (a leader within its lease, a follower within
    /// its read lease); `null` when it did not answer.
    #[serde(default)]
    pub serving_reads: Option<bool>,
    /// Commands run since the replica started; `null` when it did not answer.
    #[serde(default)]
    pub commands: Option<u64>,
    /// Its commands' latency as histogram counts (see [`ClusterInfo::latency_bounds_ns`]):
    /// two reports apart give the latency of the commands between them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<u64>,
}
