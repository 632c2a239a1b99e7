//! KV.INFO: this node's role, replication position and contents, as a flat array of
//! field/value pairs (bulk strings). Gates read it for `/api/cluster`.

use bytes::BytesMut;
use std::sync::atomic::Ordering;

use crate::node::{Node, Role};

pub fn apply(node: &Node, out: &mut BytesMut) {
    let fields: Vec<(&str, String)> = node.read(|r| {
        let d = r.data();
        let epoch = match d.role {
            Role::Leader { epoch } | Role::Follower { epoch } => epoch,
            Role::Idle => 0,
        };
        let isr: Vec<&str> = d.followers.confirmed().iter().map(String::as_str).collect();
        vec![
            ("id", node.id.clone()),
            ("shard", node.shard.clone()),
            ("addr", node.addr.clone()),
            ("role", d.role.name().to_string()),
            ("epoch", epoch.to_string()),
            ("offset", d.log.last_offset().to_string()),
            ("keys", d.store.len().to_string()),
            ("bytes", d.store.used_bytes().to_string()),
            ("digest", format!("{:016x}", d.store.digest())),
            ("followers", d.followers.connected().to_string()),
            ("isr_followers", isr.join(",")),
            ("inbound", d.inbound.unwrap_or(0).to_string()),
            ("tombstones", d.tombstones.len().to_string()),
            ("backlog_bytes", d.log.bytes().to_string()),
            ("max_keys", d.store.limits().max_keys.to_string()),
            ("maxmemory", d.store.limits().max_bytes.to_string()),
        ]
    });
    let s = &node.stats;
    let counters = [
        ("full_syncs_served", s.full_syncs_served.load(Ordering::Relaxed)),
        ("partial_syncs_served", s.partial_syncs_served.load(Ordering::Relaxed)),
        ("full_syncs_done", s.full_syncs_done.load(Ordering::Relaxed)),
        ("partial_syncs_done", s.partial_syncs_done.load(Ordering::Relaxed)),
        ("epoch_regressions", s.epoch_regressions.load(Ordering::Relaxed)),
        ("replica_timeouts", s.replica_timeouts.load(Ordering::Relaxed)),
        ("highest_epoch", node.highest_epoch()),
        ("keys_moved_in", s.keys_moved_in.load(Ordering::Relaxed)),
        ("move_retries", s.move_retries.load(Ordering::Relaxed)),
    ];
    kv_proto::write::array_header(out, (fields.len() + counters.len()) * 2);
    for (k, v) in &fields {
        kv_proto::write::bulk(out, k.as_bytes());
        kv_proto::write::bulk(out, v.as_bytes());
    }
    for (k, v) in counters {
        kv_proto::write::bulk(out, k.as_bytes());
        kv_proto::write::bulk(out, v.to_string().as_bytes());
    }
}
