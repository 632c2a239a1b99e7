//! [`ServerInfo`]: what a kvserver reports about itself on `KV.INFO` — role, replication
//! position, contents, counters and the progress of a key move. Gates show it in
//! `/api/cluster`; the ring manager reads move progress from it; tests assert on its
//! counters. Sent as one JSON bulk string: both ends share this type.

use std::collections::BTreeMap;

use bytes::Bytes;
use kv_proto::Frame;
use serde::{Deserialize, Serialize};

use crate::log::DecodeError;

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: String,
    pub shard: String,
    /// The client port's address.
    pub addr: String,
    /// The cluster port's address.
    pub cluster_addr: String,
    /// `leader`, `follower` or `idle`.
    pub role: String,
    pub epoch: u64,
    /// Offset of the last log entry applied.
    pub offset: u64,
    pub keys: u64,
    pub bytes: u64,
    /// Order-independent digest of the contents (hex).
    pub digest: String,
    /// Followers connected (leader).
    pub followers: u64,
    /// Followers in the in-sync set as confirmed in the coordinator (leader).
    pub isr_followers: Vec<String>,
    /// True while this server may serve reads: a leader within its lease, a follower within
    /// its read lease.
    pub serving_reads: bool,
    /// The ring version this server routes by (0: none yet).
    pub ring_version: u64,
    /// The ring version this shard receives keys for (0: none).
    pub inbound: u64,
    pub tombstones: u64,
    pub backlog_bytes: u64,
    pub max_keys: u64,
    pub maxmemory: u64,
    pub counters: Counters,
    /// How far each connected follower is behind this leader's last offset, in entries.
    #[serde(default)]
    pub follower_lag: BTreeMap<String, u64>,
    /// Commands run since the start (or `CONFIG RESETSTAT`).
    #[serde(default)]
    pub commands: u64,
    /// Every command's latency as histogram counts (`kv_metrics::histogram` buckets): a
    /// dashboard takes two and reads percentiles from the difference.
    #[serde(default)]
    pub latency: Vec<u64>,
    #[serde(default)]
    pub connected_clients: u64,
    /// This leader's progress in moving keys away during a ring change.
    pub moving: Option<MoveProgress>,
}

/// Counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Full resyncs served as leader.
    pub full_syncs_served: u64,
    /// Partial resyncs (resumed from the backlog) served as leader.
    pub partial_syncs_served: u64,
    /// Full resyncs completed as follower.
    pub full_syncs_done: u64,
    /// Partial resyncs started as follower.
    pub partial_syncs_done: u64,
    /// Times the coordinator named an epoch older than one this server had seen.
    pub epoch_regressions: u64,
    /// Replication streams ended because the other side was silent.
    pub replica_timeouts: u64,
    /// The highest epoch this server has seen.
    pub highest_epoch: u64,
    /// Keys received from other shards in ring changes.
    pub keys_moved_in: u64,
    /// Batches of moving keys sent again.
    pub move_retries: u64,
    /// Reads refused because this server could not vouch for its data (lease or read
    /// lease lapsed).
    pub reads_fenced: u64,
    /// Requests refused because the key is not this shard's (`MOVED`).
    pub not_owned: u64,
    /// Cluster-port connections that failed the handshake.
    pub peer_auth_failures: u64,
    /// Times this server became its shard's leader.
    #[serde(default)]
    pub elections_won: u64,
    /// Keys deleted because they expired, and evicted (by this server as leader).
    #[serde(default)]
    pub expired_keys: u64,
    #[serde(default)]
    pub evicted_keys: u64,
}

/// A source shard's progress in moving its keys to ring `version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveProgress {
    pub version: u64,
    /// Keys sent, by destination shard.
    pub moved: BTreeMap<String, u64>,
    /// Keys to send, by destination shard (counted when the move began).
    pub total: BTreeMap<String, u64>,
    /// Keys per second over the last report interval.
    #[serde(default)]
    pub rate: u64,
    /// Every moving key was sent and acknowledged.
    pub done: bool,
}

impl ServerInfo {
    /// The `KV.INFO` reply.
    pub fn to_frame(&self) -> Frame {
        Frame::Bulk(Bytes::from(serde_json::to_vec(self).expect("ServerInfo serialises")))
    }

    /// Reads a `KV.INFO` reply.
    pub fn from_frame(frame: &Frame) -> Result<ServerInfo, DecodeError> {
        match frame {
            Frame::Bulk(json) => serde_json::from_slice(json).map_err(|_| DecodeError("malformed KV.INFO reply")),
            _ => Err(DecodeError("KV.INFO reply is not a bulk string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let info = ServerInfo {
            id: "a".into(),
            role: "leader".into(),
            counters: Counters {
                reads_fenced: 3,
                ..Default::default()
            },
            moving: Some(MoveProgress {
                version: 2,
                done: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(ServerInfo::from_frame(&info.to_frame()), Ok(info));
        assert!(ServerInfo::from_frame(&Frame::Null).is_err());
    }
}
