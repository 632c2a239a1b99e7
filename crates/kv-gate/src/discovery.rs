//! Leader discovery while the gate cannot follow the coordinator.
//!
//! The gate learns leaders from the cluster view. While its coordinator session is
//! disconnected that view is frozen, and a failover behind its back would leave every write
//! to the shard retrying against the dead leader until the session comes back. That can
//! take far longer than the outage itself: the ZooKeeper client backs off exponentially
//! between reconnection attempts (0.1 s, 0.2 s, 0.4 s … capped only by the session
//! timeout), so after a 6 s outage the gate may wait another 6 s before it reconnects.
//!
//! So, while disconnected, the gate asks the servers it knows (over its monitoring
//! connections) who leads. A server that reports itself leader of its shard, within its
//! lease, under an epoch newer than the view's, becomes a [`Hints`] entry; the routing sends
//! that shard's writes (and, as always without a confirmed view, its reads) there. This is
//! safe because the gate vouches for nothing: servers fence themselves (a leader refuses
//! writes and reads once its lease lapses), so a hint can only make a request succeed
//! sooner, never make a stale or lost one succeed. Epochs come from the coordinator and only
//! grow, so the newest claim wins and a hint is ignored once the view catches up with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kv_cluster::{ClusterView, SessionStatus};
use kv_peer::ServerInfo;
use tokio::sync::watch;
use tracing::info;

use crate::routing::Routing;
use crate::topology::Monitor;

/// How often the servers are asked while the session is disconnected.
const PROBE_INTERVAL: Duration = Duration::from_millis(300);

/// A leader a server announced itself, newer than the view's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub epoch: u64,
    /// The node's id, as registered in the view.
    pub node: String,
}

/// Per shard, the leader the servers announced beyond the view.
pub type Hints = HashMap<String, Hint>;

/// The hints `infos` (server reports by cluster address) give beyond `view`: per shard,
/// the registered node that claims leadership within its lease under the highest epoch,
/// when that epoch is newer than the view's.
pub fn hints(view: &ClusterView, infos: &HashMap<String, ServerInfo>) -> Hints {
    let mut out = Hints::new();
    for sv in view.live_shards() {
        let best = sv
            .nodes
            .values()
            .filter_map(|n| infos.get(&n.cluster_addr).map(|i| (n, i)))
            .filter(|(n, i)| i.id == n.id && i.shard == sv.name && i.role == "leader" && i.serving_reads)
            .filter(|(_, i)| i.epoch > sv.epoch())
            .max_by_key(|(_, i)| i.epoch);
        if let Some((n, i)) = best {
            out.insert(
                sv.name.clone(),
                Hint {
                    epoch: i.epoch,
                    node: n.id.clone(),
                },
            );
        }
    }
    out
}

/// Keeps `tx` filled with [`hints`] while the session is disconnected, and drops hints the
/// view has caught up with.
pub async fn run(
    tx: watch::Sender<Hints>,
    mut session: watch::Receiver<SessionStatus>,
    routing: watch::Receiver<Arc<Routing>>,
    monitor: Arc<Monitor>,
) {
    loop {
        let status = *session.borrow_and_update();
        if status.closed {
            return;
        }
        if status.connected {
            // The view is authoritative again; a hint stays only until the view has it.
            let view = routing.borrow().view.clone();
            tx.send_if_modified(|h| {
                let before = h.len();
                h.retain(|shard, hint| view.shards.get(shard).is_none_or(|sv| hint.epoch > sv.epoch()));
                h.len() != before
            });
            tokio::select! {
                r = session.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
            continue;
        }
        let current = routing.borrow().clone();
        let found = hints(&current.view, &monitor.collect(&current).await);
        tx.send_if_modified(|h| {
            let mut changed = false;
            for (shard, hint) in found {
                if h.get(&shard).is_none_or(|old| old.epoch < hint.epoch) {
                    info!(
                        shard,
                        leader = hint.node,
                        epoch = hint.epoch,
                        "a server announced itself leader beyond the gate's view"
                    );
                    h.insert(shard, hint);
                    changed = true;
                }
            }
            changed
        });
        tokio::select! {
            r = session.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_cluster::{NodeInfo, ShardState, ShardView};

    fn view() -> ClusterView {
        let mut v = ClusterView::default();
        let mut sv = ShardView {
            name: "s1".into(),
            ..Default::default()
        };
        for id in ["a", "b", "c"] {
            sv.nodes.insert(
                id.into(),
                NodeInfo {
                    id: id.into(),
                    shard: "s1".into(),
                    addr: format!("{id}:1"),
                    cluster_addr: format!("{id}:2"),
                    tls_addr: None,
                },
            );
        }
        sv.state = Some(ShardState {
            epoch: 4,
            leader: Some("a".into()),
            ..Default::default()
        });
        sv.leader_lock = Some("a".into());
        v.shards.insert("s1".into(), sv);
        v
    }

    fn info(id: &str, role: &str, epoch: u64, serving: bool) -> (String, ServerInfo) {
        (
            format!("{id}:2"),
            ServerInfo {
                id: id.into(),
                shard: "s1".into(),
                role: role.into(),
                epoch,
                serving_reads: serving,
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_newest_leader_within_its_lease_is_a_hint() {
        let v = view();
        let infos = HashMap::from([info("a", "leader", 4, false), info("b", "leader", 5, true)]);
        assert_eq!(
            hints(&v, &infos),
            Hints::from([(
                "s1".into(),
                Hint {
                    epoch: 5,
                    node: "b".into()
                }
            )])
        );
        let infos = HashMap::from([info("b", "leader", 5, true), info("c", "leader", 6, true)]);
        assert_eq!(hints(&v, &infos)["s1"].node, "c", "the highest epoch wins");
    }

    #[test]
    fn no_hint_without_a_newer_leader_in_its_lease() {
        let v = view();
        for infos in [
            HashMap::from([info("a", "leader", 4, true)]),
            HashMap::from([info("b", "follower", 5, true)]),
            HashMap::from([info("b", "leader", 5, false)]),
            HashMap::new(),
        ] {
            assert!(hints(&v, &infos).is_empty(), "{infos:?}");
        }
        // A report from an address that another node now uses does not count.
        let (addr, mut other) = info("b", "leader", 5, true);
        other.id = "z".into();
        assert!(hints(&v, &HashMap::from([(addr, other)])).is_empty());
    }
}
