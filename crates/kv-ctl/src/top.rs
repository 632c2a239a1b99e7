//! `kvctl top`: the dashboard's live view in a terminal. Every interval it reads the
//! gate's `/api/cluster` and shows each replica's role, lag, keys and memory, its operations
//! per second and p99 latency since the previous frame (from the commands counts and
//! latency histograms the servers report), and keys moving between shards.

use std::collections::HashMap;

use kv_client::api::ClusterInfo;
use kv_metrics::histogram::Snapshot;

use crate::table::{aligned, number, replica_cells};

/// What a replica reported at the previous frame.
struct Seen {
    now_ms: u64,
    commands: u64,
    latency: Vec<u64>,
}

/// Turns successive reports into frames; remembers the previous report of each replica.
#[derive(Default)]
pub struct Top {
    seen: HashMap<String, Seen>,
}

impl Top {
    /// The frame for `info` (rates against the previous report).
    pub fn frame(&mut self, info: &ClusterInfo) -> String {
        let header = [
            "SHARD", "EPOCH", "REPLICA", "ROLE", "IN-SYNC", "LAG", "KEYS", "MEMORY", "OPS/S", "P99",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut total_ops = 0.0;
        let mut seen = HashMap::new();
        for shard in &info.shards {
            for (i, r) in shard.replicas.iter().enumerate() {
                let first = i == 0;
                let (mut ops, mut p99) = ("-".to_string(), "-".to_string());
                if let Some(commands) = r.commands {
                    if let Some(old) = self.seen.get(&r.id)
                        && info.now_ms > old.now_ms
                    {
                        let secs = (info.now_ms - old.now_ms) as f64 / 1000.0;
                        let rate = commands.saturating_sub(old.commands) as f64 / secs;
                        total_ops += rate;
                        ops = format!("{rate:.0}");
                        let delta: Vec<u64> = r
                            .latency
                            .iter()
                            .enumerate()
                            .map(|(i, n)| n.saturating_sub(old.latency.get(i).copied().unwrap_or(0)))
                            .collect();
                        if let Some(q) = Snapshot(delta).quantile(0.99) {
                            p99 = format!("{:.3}ms", q.as_secs_f64() * 1000.0);
                        }
                    }
                    seen.insert(
                        r.id.clone(),
                        Seen {
                            now_ms: info.now_ms,
                            commands,
                            latency: r.latency.clone(),
                        },
                    );
                }
                let mut row = replica_cells(shard, r, first).to_vec();
                row.extend([
                    number(r.lag),
                    number(r.keys),
                    r.bytes.map_or_else(|| "-".to_string(), human_bytes),
                    ops,
                    p99,
                ]);
                rows.push(row);
            }
            if shard.leader.is_none() {
                let mut row = vec![String::new(); header.len()];
                row[2] = "(no leader right now)".into();
                rows.push(row);
            }
        }
        self.seen = seen;
        let keys: u64 = info
            .shards
            .iter()
            .filter_map(|s| s.replicas.iter().find(|r| r.role == "leader").and_then(|r| r.keys))
            .sum();
        let mut out = format!(
            "kvstore top | ring v{} | {} shards | {keys} keys | {total_ops:.0} ops/s\n\n",
            info.ring_version,
            info.shards.len()
        );
        out.push_str(&aligned(&header, &rows));
        if !info.migrations.is_empty() {
            out.push_str("\nMIGRATIONS\n");
            for m in &info.migrations {
                out.push_str(&format!(
                    "{} -> {}  {}  {}/{} keys  {}/s  {}\n",
                    m.from,
                    m.to,
                    bar(m.moved, m.total, 30),
                    m.moved,
                    m.total,
                    m.rate,
                    m.state
                ));
            }
        }
        out
    }
}

/// `[#####.....]  50%`.
fn bar(done: u64, total: u64, width: usize) -> String {
    let frac = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let full = (frac * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(full),
        ".".repeat(width - full),
        frac * 100.0
    )
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_client::api::{Migration, ReplicaInfo, ShardInfo};

    fn info(now_ms: u64, commands: u64, latency: Vec<u64>) -> ClusterInfo {
        ClusterInfo {
            shards: vec![ShardInfo {
                name: "s1".into(),
                epoch: 2,
                leader: Some("h:1".into()),
                replicas: vec![ReplicaInfo {
                    addr: "h:1".into(),
                    id: "n1".into(),
                    role: "leader".into(),
                    in_sync: true,
                    keys: Some(7),
                    lag: Some(0),
                    bytes: Some(3 * 1024 * 1024),
                    reachable: true,
                    commands: Some(commands),
                    latency,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ring_version: 4,
            now_ms,
            migrations: vec![Migration {
                from: "s1".into(),
                to: "s2".into(),
                moved: 50,
                total: 100,
                rate: 25,
                state: "moving".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn rates_and_p99_come_from_the_difference_between_reports() {
        let mut top = Top::default();
        let buckets = kv_metrics::histogram::BUCKETS;
        let first = top.frame(&info(1_000, 100, vec![0; buckets]));
        assert!(
            first.contains("s1     2      h:1      leader  yes      0    7     3.0MiB  -      -"),
            "{first}"
        );
        // 2 s later: 2000 more commands, 99% at ≤ 10 µs (bucket 10), 1% at ≤ 2 ms.
        let mut later = vec![0; buckets];
        later[10] = 1980;
        let ms2 = kv_metrics::histogram::bucket_of(std::time::Duration::from_millis(2));
        later[ms2] = 20;
        let second = top.frame(&info(3_000, 2_100, later));
        assert!(second.contains("1000   0.010ms"), "{second}");
        assert!(
            second.starts_with("kvstore top | ring v4 | 1 shards | 7 keys | 1000 ops/s"),
            "{second}"
        );
        assert!(second.contains("s1 -> s2  [###############...............]  50%  50/100 keys  25/s  moving"));
    }
}
