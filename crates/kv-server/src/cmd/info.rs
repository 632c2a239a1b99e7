//! `INFO [section ...]` on a kvserver: this server alone, as a Redis Cluster node reports
//! itself to cluster-aware clients and exporters (a shard's leader is a `master`, its
//! followers are `slave`s).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use kv_proto::hello::REDIS_VERSION;
use kv_proto::{Frame, Out};

use crate::node::Node;

pub fn apply(node: &Node, args: &[String], out: &mut Out) {
    let sections = kv_proto::info::sections(args);
    let info = node.info();
    let mut text = String::new();
    for section in sections {
        match section {
            "server" => {
                let uptime = node.started.elapsed().as_secs();
                let port = node.addr.rsplit(':').next().unwrap_or("");
                let _ = write!(
                    text,
                    "# Server\r\nredis_version:{REDIS_VERSION}\r\nkvstore_version:{}\r\nredis_mode:cluster\r\n\
                     os:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{port}\r\n\
                     uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:10\r\nkvstore_shard:{}\r\n\r\n",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    std::process::id(),
                    kv_cluster::model::cluster_node_id(&node.id),
                    uptime / 86400,
                    node.shard
                );
            }
            "clients" => {
                let _ = write!(
                    text,
                    "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
                    node.clients_connected.load(Ordering::Relaxed),
                    node.config.resp.max_clients,
                    node.clients_blocked.load(Ordering::Relaxed)
                );
            }
            "memory" => {
                let _ = write!(
                    text,
                    "# Memory\r\nused_memory:{b}\r\nused_memory_human:{:.2}K\r\nused_memory_dataset:{b}\r\n\
                     maxmemory:{}\r\nmaxmemory_policy:allkeys-lru\r\nrepl_backlog_bytes:{}\r\n\
                     number_of_cached_scripts:{}\r\n\r\n",
                    info.bytes as f64 / 1024.0,
                    info.maxmemory,
                    info.backlog_bytes,
                    node.scripts.cached(),
                    b = info.bytes
                );
            }
            "persistence" => {
                let _ = write!(
                    text,
                    "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:0\r\n\
                     rdb_last_bgsave_status:ok\r\naof_enabled:0\r\n\r\n",
                    info.offset
                );
            }
            "stats" => {
                let c = &info.counters;
                let _ = write!(
                    text,
                    "# Stats\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nkvstore_reads_fenced:{}\r\nkvstore_not_owned:{}\r\n\r\n",
                    c.full_syncs_served, c.partial_syncs_served, c.reads_fenced, c.not_owned
                );
            }
            "replication" => {
                let role = if info.role == "leader" { "master" } else { "slave" };
                let _ = write!(
                    text,
                    "# Replication\r\nrole:{role}\r\nconnected_slaves:{}\r\nmaster_repl_offset:{}\r\n\r\n",
                    info.followers, info.offset
                );
            }
            "cpu" => kv_proto::info::cpu(&mut text),
            "modules" => text.push_str("# Modules\r\n\r\n"),
            "errorstats" => node.observer.errors.section(&mut text),
            "commandstats" => node.observer.commands.section(&mut text),
            "latencystats" => node.observer.latency_section(&mut text),
            "cluster" => text.push_str("# Cluster\r\ncluster_enabled:1\r\n\r\n"),
            "keyspace" => {
                text.push_str("# Keyspace\r\n");
                if info.keys > 0 {
                    let _ = write!(text, "db0:keys={},expires=0,avg_ttl=0\r\n", info.keys);
                }
                text.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.frame(&Frame::text(text));
}
