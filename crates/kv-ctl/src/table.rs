//! The `kvctl cluster` table.

use kv_client::api::{ClusterInfo, ReplicaInfo, ShardInfo};

/// Columns padded to their widest cell, two spaces apart (the last one unpadded).
pub fn aligned<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&head);
    for row in rows {
        out.push_str(&line(row.as_ref()));
    }
    out
}

/// A replica's first cells, as `cluster` and `top` show them: shard and epoch (on the
/// shard's first row only), address, role (marked when unreachable), in the in-sync set.
pub fn replica_cells(shard: &ShardInfo, r: &ReplicaInfo, first: bool) -> [String; 5] {
    [
        if first { shard.name.clone() } else { String::new() },
        if first { shard.epoch.to_string() } else { String::new() },
        r.addr.clone(),
        if r.reachable {
            r.role.clone()
        } else {
            format!("{} (unreachable)", r.role)
        },
        if r.in_sync { "yes" } else { "no" }.to_string(),
    ]
}

/// A figure a replica may not have reported: `-` then.
pub fn number(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// Renders the topology as an aligned table.
pub fn render(info: &ClusterInfo) -> String {
    let header = [
        "SHARD", "EPOCH", "REPLICA", "ROLE", "IN-SYNC", "KEYS", "OFFSET", "LAG", "DIGEST",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    for shard in &info.shards {
        for (i, r) in shard.replicas.iter().enumerate() {
            let first = i == 0;
            let [name, epoch, addr, role, in_sync] = replica_cells(shard, r, first);
            rows.push([
                name,
                epoch,
                addr,
                role,
                in_sync,
                number(r.keys),
                number(r.offset),
                number(r.lag),
                r.digest.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        if shard.leader.is_none() {
            rows.push([
                String::new(),
                String::new(),
                "(no leader right now)".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    let mut out = aligned(&header, &rows);
    if info.shards.is_empty() {
        out.push_str("(no shards registered yet)\n");
    }
    let total: u64 = info
        .shards
        .iter()
        .filter_map(|s| s.replicas.iter().find(|r| r.role == "leader").and_then(|r| r.keys))
        .sum();
    out.push_str(&format!(
        "ring v{}: {} | keys (leaders): {total}\n",
        info.ring_version,
        if info.ring.is_empty() {
            "(empty)".to_string()
        } else {
            info.ring.join(", ")
        }
    ));
    if let Some(next) = &info.next_ring {
        out.push_str(&format!(
            "moving to ring v{}: {}\n",
            info.ring_version + 1,
            next.join(", ")
        ));
    }
    for line in migration_lines(info) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// One line per move in progress: `s1 → s3  [#####.....]  1200/2400  5000 keys/s  moving`.
pub fn migration_lines(info: &ClusterInfo) -> Vec<String> {
    info.migrations
        .iter()
        .map(|m| {
            if m.state == "preparing" {
                return format!("{}: preparing the move", m.from);
            }
            const WIDTH: usize = 20;
            let filled = if m.total == 0 {
                WIDTH
            } else {
                (m.moved.min(m.total) as usize * WIDTH) / m.total as usize
            };
            format!(
                "{} → {}  [{}{}]  {}/{}  {} keys/s  {}",
                m.from,
                m.to,
                "#".repeat(filled),
                ".".repeat(WIDTH - filled),
                m.moved,
                m.total,
                m.rate,
                m.state
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_replica() {
        let info = ClusterInfo {
            shards: vec![ShardInfo {
                name: "s1".into(),
                epoch: 3,
                leader: Some("h:1".into()),
                replicas: vec![
                    ReplicaInfo {
                        addr: "h:1".into(),
                        role: "leader".into(),
                        in_sync: true,
                        keys: Some(10),
                        reachable: true,
                        ..Default::default()
                    },
                    ReplicaInfo {
                        addr: "h:2".into(),
                        role: "follower".into(),
                        in_sync: false,
                        keys: None,
                        reachable: false,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ring: vec!["s1".into()],
            ..Default::default()
        };
        let t = render(&info);
        assert!(t.starts_with("SHARD  EPOCH  REPLICA"), "{t}");
        assert!(t.contains("s1     3      h:1      leader"), "{t}");
        assert!(t.contains("follower (unreachable)  no"), "{t}");
        assert!(t.contains("keys (leaders): 10"), "{t}");
    }
}
