//! `CLUSTER …`: Redis Cluster's view of kvstore, so cluster-aware clients (redis-cli `-c`,
//! redis-benchmark `--cluster`, redis-py `RedisCluster`, …) route straight to the shards.
//!
//! The mapping: each shard is a Redis Cluster "shard" whose master is its leader and whose
//! replicas are its in-sync followers; its slots are the ranges the ring gives it (during a
//! move, the ring being moved to: the new owner serves a moving slot). Node ids are derived
//! from kvstore's ids (`kv_cluster::model::cluster_node_id`), the same on every server.
//! Addresses are client ports; the `@cport` of `CLUSTER NODES` is the cluster port.

use std::fmt::Write as _;

use bytes::Bytes;
use kv_cluster::model::cluster_node_id;
use kv_cluster::{ClusterView, NodeInfo, Placement, ShardView};
use kv_proto::slot::{SLOTS, key_slot};
use kv_proto::{Frame, Out};

use super::{Args, CmdError};
use crate::node::Node;

/// A parsed `CLUSTER` subcommand.
#[derive(Debug)]
pub enum Cluster {
    Slots,
    Shards,
    Nodes,
    Info,
    MyId,
    KeySlot(Bytes),
    CountKeysInSlot(u16),
    GetKeysInSlot(u16, usize),
}

impl Cluster {
    pub fn parse(args: &mut Args) -> Result<Cluster, CmdError> {
        let sub = args.arg()?;
        let name = String::from_utf8_lossy(&sub).to_ascii_lowercase();
        let arity = |args: &Args, n: usize| {
            if args.remaining() == n {
                Ok(())
            } else {
                Err(CmdError::Arity(format!("cluster|{name}")))
            }
        };
        let slot = |b: Bytes| -> Result<u16, CmdError> {
            let n = super::args::parse_i64(&b).ok_or(CmdError::NotInteger)?;
            u16::try_from(n)
                .ok()
                .filter(|s| *s < SLOTS)
                .ok_or_else(|| CmdError::Other("Invalid slot".into()))
        };
        Ok(match name.as_str() {
            "slots" | "shards" | "nodes" | "info" | "myid" => {
                arity(args, 0)?;
                match name.as_str() {
                    "slots" => Cluster::Slots,
                    "shards" => Cluster::Shards,
                    "nodes" => Cluster::Nodes,
                    "info" => Cluster::Info,
                    _ => Cluster::MyId,
                }
            }
            "keyslot" => {
                arity(args, 1)?;
                Cluster::KeySlot(args.arg()?)
            }
            "countkeysinslot" => {
                arity(args, 1)?;
                Cluster::CountKeysInSlot(slot(args.arg()?)?)
            }
            "getkeysinslot" => {
                arity(args, 2)?;
                let s = args.arg()?;
                let n = super::args::parse_i64(&args.arg()?).ok_or(CmdError::NotInteger)?;
                let s = slot(s)?;
                let n = usize::try_from(n).map_err(|_| CmdError::Other("Invalid slot or number of keys".into()))?;
                Cluster::GetKeysInSlot(s, n)
            }
            _ => {
                return Err(CmdError::Other(format!(
                    "unknown subcommand '{}'. Try CLUSTER HELP.",
                    String::from_utf8_lossy(&sub)
                )));
            }
        })
    }

    pub fn apply(self, node: &Node, out: &mut Out) {
        let (placement, view) = node.cluster();
        let map = SlotMap::new(&placement, &view);
        let frame = match self {
            Cluster::Slots => map.slots(out),
            Cluster::Shards => map.shards(out),
            Cluster::Nodes => Frame::text(map.nodes(&node.id, out)),
            Cluster::Info => Frame::text(map.info(&node.shard)),
            Cluster::MyId => Frame::bulk(cluster_node_id(&node.id)),
            Cluster::KeySlot(key) => Frame::Integer(key_slot(&key) as i64),
            Cluster::CountKeysInSlot(slot) => Frame::Integer(node.count_in_slot(slot) as i64),
            Cluster::GetKeysInSlot(slot, max) => {
                let mut keys = Vec::new();
                let max = max.min(node.count_in_slot(slot));
                keys_in_slot(node, slot, max, |k| keys.push(Frame::bulk(Bytes::copy_from_slice(k))));
                Frame::Array(keys)
            }
        };
        out.frame(&frame);
    }
}

/// Walks the store for keys of `slot` (up to `max`, which the caller caps at the slot's
/// count, so the walk stops once it has them all and an empty slot costs nothing), calling
/// `f` on each; returns how many. The store counts keys per slot but does not list them
/// (Redis keeps a list per slot, 16 bytes per key): a slot's keys cost a walk until the
/// last of them is found. Each step holds the store's lock for one bounded batch only.
fn keys_in_slot(node: &Node, slot: u16, max: usize, mut f: impl FnMut(&[u8])) -> usize {
    let mut found = 0;
    let mut cursor = 0;
    while found < max {
        let next = node.scan(cursor, 1024, |k, _, _| {
            if key_slot(k) == slot && found < max {
                f(k);
                found += 1;
            }
            found < max
        });
        match next {
            Some(c) if c != 0 => cursor = c,
            _ => break,
        }
    }
    found
}

/// Who serves which slots, from the placement and the view.
struct SlotMap<'a> {
    /// `(first, last, shard)` in slot order.
    ranges: Vec<(u16, u16, &'a str)>,
    view: &'a ClusterView,
}

fn host_port(addr: &str) -> (&str, i64) {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
    (host, port.parse().unwrap_or(0))
}

impl<'a> SlotMap<'a> {
    fn new(placement: &'a Placement, view: &'a ClusterView) -> SlotMap<'a> {
        let ring = match placement.next() {
            Some((_, next, kv_cluster::Phase::Moving)) => next,
            _ => placement.current(),
        };
        SlotMap {
            ranges: ring.slot_ranges(),
            view,
        }
    }

    /// A shard's leader and in-sync followers, leader first.
    fn members(&self, shard: &str) -> Option<(&'a ShardView, &'a NodeInfo, Vec<&'a NodeInfo>)> {
        let sv = self.view.shards.get(shard)?;
        let leader = sv.leader()?;
        let followers = sv
            .nodes
            .values()
            .filter(|n| n.id != leader.id && sv.in_sync(&n.id))
            .collect();
        Some((sv, leader, followers))
    }

    /// The client addresses are the ones `out`'s client should use (TLS or plain).
    fn slots(&self, out: &Out) -> Frame {
        let entry = |n: &NodeInfo| {
            let addr = out.client_addr(&n.addr);
            let (host, port) = host_port(&addr);
            Frame::Array(vec![
                Frame::bulk(host.to_string()),
                Frame::Integer(port),
                Frame::bulk(cluster_node_id(&n.id)),
                Frame::Array(vec![]),
            ])
        };
        Frame::Array(
            self.ranges
                .iter()
                .filter_map(|(first, last, shard)| {
                    let (_, leader, followers) = self.members(shard)?;
                    let mut e = vec![
                        Frame::Integer(*first as i64),
                        Frame::Integer(*last as i64),
                        entry(leader),
                    ];
                    e.extend(followers.into_iter().map(entry));
                    Some(Frame::Array(e))
                })
                .collect(),
        )
    }

    fn shards(&self, out: &Out) -> Frame {
        let mut names: Vec<&str> = self.ranges.iter().map(|r| r.2).collect();
        names.sort_unstable();
        names.dedup();
        let bulk = |s: &str| Frame::bulk(s.to_string());
        Frame::Array(
            names
                .into_iter()
                .filter_map(|shard| {
                    let (_, leader, followers) = self.members(shard)?;
                    let slots = self
                        .ranges
                        .iter()
                        .filter(|r| r.2 == shard)
                        .flat_map(|r| [Frame::Integer(r.0 as i64), Frame::Integer(r.1 as i64)])
                        .collect();
                    let node = |n: &NodeInfo, role: &str| {
                        let addr = out.client_addr(&n.addr);
                        let (host, port) = host_port(&addr);
                        Frame::Map(vec![
                            (bulk("id"), bulk(&cluster_node_id(&n.id))),
                            (bulk("port"), Frame::Integer(port)),
                            (bulk("ip"), bulk(host)),
                            (bulk("endpoint"), bulk(host)),
                            (bulk("role"), bulk(role)),
                            (bulk("replication-offset"), Frame::Integer(0)),
                            (bulk("health"), bulk("online")),
                        ])
                    };
                    let mut nodes = vec![node(leader, "master")];
                    nodes.extend(followers.into_iter().map(|n| node(n, "replica")));
                    Some(Frame::Map(vec![
                        (bulk("slots"), Frame::Array(slots)),
                        (bulk("nodes"), Frame::Array(nodes)),
                    ]))
                })
                .collect(),
        )
    }

    /// `CLUSTER NODES`: one line per leader and in-sync follower.
    fn nodes(&self, me: &str, client: &Out) -> String {
        let mut out = String::new();
        for sv in self.view.live_shards() {
            let Some((sv, leader, followers)) = self.members(&sv.name) else {
                continue;
            };
            let epoch = sv.epoch();
            let leader_id = cluster_node_id(&leader.id);
            let line = |out: &mut String, n: &NodeInfo, role: &str, master: &str| {
                let (_, cport) = host_port(&n.cluster_addr);
                let myself = if n.id == me { "myself," } else { "" };
                let _ = write!(
                    out,
                    "{} {}@{cport} {myself}{role} {master} 0 0 {epoch} connected",
                    cluster_node_id(&n.id),
                    client.client_addr(&n.addr)
                );
            };
            line(&mut out, leader, "master", "-");
            for (first, last, _) in self.ranges.iter().filter(|r| r.2 == sv.name) {
                if first == last {
                    let _ = write!(out, " {first}");
                } else {
                    let _ = write!(out, " {first}-{last}");
                }
            }
            out.push('\n');
            for f in followers {
                line(&mut out, f, "slave", &leader_id);
                out.push('\n');
            }
        }
        out
    }

    fn info(&self, my_shard: &str) -> String {
        let served: usize = self
            .ranges
            .iter()
            .filter(|r| self.members(r.2).is_some())
            .map(|r| (r.1 - r.0) as usize + 1)
            .sum();
        let assigned: usize = self.ranges.iter().map(|r| (r.1 - r.0) as usize + 1).sum();
        let nodes: usize = self.view.live_shards().map(|sv| sv.nodes.len()).sum();
        let mut size: Vec<&str> = self.ranges.iter().map(|r| r.2).collect();
        size.sort_unstable();
        size.dedup();
        let current = self.view.shards.values().map(ShardView::epoch).max().unwrap_or(0);
        let mine = self.view.shards.get(my_shard).map_or(0, ShardView::epoch);
        let state = if assigned == SLOTS as usize && served == assigned {
            "ok"
        } else {
            "fail"
        };
        format!(
            "cluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{served}\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{nodes}\r\n\
             cluster_size:{}\r\ncluster_current_epoch:{current}\r\ncluster_my_epoch:{mine}\r\n\
             cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n",
            assigned - served,
            size.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_cluster::{RingState, ShardState};

    fn view() -> (Placement, ClusterView) {
        let mut v = ClusterView::default();
        for (shard, ids) in [("s1", ["a", "b"]), ("s2", ["c", "d"])] {
            let mut sv = ShardView {
                name: shard.into(),
                ..Default::default()
            };
            for (i, id) in ids.iter().enumerate() {
                sv.nodes.insert(
                    id.to_string(),
                    NodeInfo {
                        id: id.to_string(),
                        shard: shard.into(),
                        addr: format!("127.0.0.1:{}", 7000 + i),
                        cluster_addr: format!("127.0.0.1:{}", 17000 + i),
                        tls_addr: None,
                    },
                );
            }
            sv.state = Some(ShardState {
                epoch: 2,
                leader: Some(ids[0].into()),
                isr: ids.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            });
            sv.leader_lock = Some(ids[0].into());
            v.shards.insert(shard.into(), sv);
        }
        let ring = RingState {
            version: 1,
            shards: vec!["s1".into(), "s2".into()],
            next: None,
        };
        v.ring = Some(ring.clone());
        (Placement::new(Some(&ring)), v)
    }

    #[test]
    fn a_tls_client_is_given_tls_ports() {
        let (p, v) = view();
        let map = SlotMap::new(&p, &v);
        let mut out = Out::with_capacity(0);
        let addrs = std::sync::Arc::new(kv_proto::addrs::ClientAddrs::default());
        addrs.set([("127.0.0.1:7000".to_string(), "127.0.0.1:7100".to_string())].into());
        out.tls_addrs = Some(addrs);
        let Frame::Array(entries) = map.slots(&out) else {
            panic!()
        };
        let Frame::Array(first) = &entries[0] else { panic!() };
        let (Frame::Array(master), Frame::Array(replica)) = (&first[2], &first[3]) else {
            panic!()
        };
        assert_eq!(master[1], Frame::Integer(7100), "the TLS port of a server that has one");
        assert_eq!(replica[1], Frame::Integer(7001), "the plain port of one that has none");
        assert!(map.nodes("a", &out).contains("127.0.0.1:7100@17000"));
    }

    #[test]
    fn slots_cover_the_key_space_with_masters_then_replicas() {
        let (p, v) = view();
        let map = SlotMap::new(&p, &v);
        let Frame::Array(entries) = map.slots(&Out::with_capacity(0)) else {
            panic!()
        };
        let mut next = 0i64;
        for e in &entries {
            let Frame::Array(e) = e else { panic!() };
            assert_eq!(e[0], Frame::Integer(next), "ranges tile the slots");
            let Frame::Integer(last) = e[1] else { panic!() };
            next = last + 1;
            assert_eq!(e.len(), 4, "a master and its in-sync replica");
            let Frame::Array(master) = &e[2] else { panic!() };
            assert_eq!(master[1], Frame::Integer(7000));
            assert_eq!(master[2].as_bytes().unwrap().len(), 40);
        }
        assert_eq!(next, SLOTS as i64);
        let info = map.info("s1");
        assert!(info.starts_with("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n"));
        assert!(info.contains("cluster_known_nodes:4\r\ncluster_size:2\r\n"), "{info}");
        let nodes = map.nodes("a", &Out::with_capacity(0));
        assert_eq!(nodes.lines().count(), 4);
        assert!(
            nodes
                .lines()
                .any(|l| l.contains("myself,master") && l.contains("127.0.0.1:7000@17000"))
        );
        assert_eq!(nodes.lines().filter(|l| l.contains(" slave ")).count(), 2);
    }

    #[test]
    fn a_shard_without_a_leader_serves_no_slot() {
        let (p, mut v) = view();
        v.shards.get_mut("s2").unwrap().leader_lock = None;
        let map = SlotMap::new(&p, &v);
        assert!(map.info("s1").starts_with("cluster_state:fail\r\n"));
        let Frame::Array(shards) = map.shards(&Out::with_capacity(0)) else {
            panic!()
        };
        assert_eq!(shards.len(), 1);
    }

    #[test]
    fn parse_errors_as_redis_words_them() {
        let parse = |a: &[&str]| {
            let req = kv_proto::Request::new(a.iter().map(|s| Bytes::from(s.to_string())).collect());
            Cluster::parse(&mut Args::new(req))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse(&["CLUSTER", "KEYSLOT"]),
            Err("ERR wrong number of arguments for 'cluster|keyslot' command".into())
        );
        assert_eq!(
            parse(&["CLUSTER", "FOO"]),
            Err("ERR unknown subcommand 'FOO'. Try CLUSTER HELP.".into())
        );
        assert_eq!(
            parse(&["CLUSTER", "COUNTKEYSINSLOT", "16384"]),
            Err("ERR Invalid slot".into())
        );
        assert_eq!(
            parse(&["CLUSTER", "COUNTKEYSINSLOT", "x"]),
            Err("ERR value is not an integer or out of range".into())
        );
        assert!(parse(&["cluster", "slots"]).is_ok());
    }
}
