//! [`Routing`]: an immutable snapshot of where every key goes, rebuilt whenever the cluster
//! view changes. Requests take the current snapshot (an `Arc` clone) and never lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use kv_client::{ConnOptions, Pool};
use kv_cluster::{ClusterView, Phase, Placement, Ring};
use tokio::sync::watch;
use tracing::info;

use crate::ReadPolicy;

/// Why a key cannot be routed right now. Both clear up when the cluster changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no shard is registered in the cluster yet")]
    NoShards,
    #[error("shard {0} has no leader right now")]
    NoLeader(String),
}

/// One shard's targets.
pub struct ShardRoute {
    pub epoch: u64,
    pub leader: Option<Arc<Pool>>,
    /// Where reads may go under the `any` policy: the leader and in-sync followers.
    pub readers: Vec<Arc<Pool>>,
}

/// See the module documentation.
pub struct Routing {
    /// The stored ring and, during a ring change, the next one.
    placement: Placement,
    shards: HashMap<String, ShardRoute>,
    policy: ReadPolicy,
    next_reader: AtomicUsize,
    /// The view this routing was built from.
    pub view: Arc<ClusterView>,
    /// Every server's pool, by address.
    pub pools: HashMap<String, Arc<Pool>>,
}

impl Routing {
    /// The current ring.
    pub fn ring(&self) -> &Ring {
        self.placement.current()
    }

    /// The shard that serves `key` now (its new owner while it is moving).
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        self.placement.owner(key)
    }

    /// `(from, to, ring version)` when `key` is moving between shards.
    pub fn moving(&self, key: &[u8]) -> Option<(&str, &str, u64)> {
        let (from, to) = self.placement.moving(key)?;
        Some((from, to, self.placement.next()?.0))
    }

    /// The shard and server to send to: the leader for writes, per the read policy for
    /// reads. The shard is the one owning the key, or the one named.
    pub fn target<'a>(&'a self, target: &'a Target, write: bool) -> Result<(&'a str, &'a Arc<Pool>), RouteError> {
        let shard = match target {
            Target::Key(key) => self.placement.owner(key).ok_or(RouteError::NoShards)?,
            Target::Shard(name) => name.as_str(),
        };
        let no_leader = || RouteError::NoLeader(shard.to_string());
        let route = self.shards.get(shard).ok_or_else(no_leader)?;
        let pool = if write || self.policy == ReadPolicy::Leader || route.readers.is_empty() {
            route.leader.as_ref().ok_or_else(no_leader)?
        } else {
            let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % route.readers.len();
            &route.readers[i]
        };
        Ok((shard, pool))
    }

    /// The shards keys are served from: the next ring's while keys move to it.
    pub fn shard_names(&self) -> &[String] {
        match self.placement.next() {
            Some((_, next, Phase::Moving)) => next.shards(),
            _ => self.placement.current().shards(),
        }
    }
}

/// What a command is about: a key (routed by the ring) or a whole shard (fan-out commands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Key(Bytes),
    Shard(String),
}

/// Builds [`Routing`]s, keeping each server's pool across rebuilds.
pub struct RoutingBuilder {
    policy: ReadPolicy,
    pool_size: usize,
    options: ConnOptions,
    pools: HashMap<String, Arc<Pool>>,
}

impl RoutingBuilder {
    pub fn new(policy: ReadPolicy, pool_size: usize, options: ConnOptions) -> RoutingBuilder {
        RoutingBuilder {
            policy,
            pool_size,
            options,
            pools: HashMap::new(),
        }
    }

    fn pool(&mut self, addr: &str) -> Arc<Pool> {
        self.pools
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Pool::new(addr, self.pool_size, self.options)))
            .clone()
    }

    /// Routing for `view`. Pools of servers no longer in the view are closed.
    pub fn build(&mut self, view: Arc<ClusterView>) -> Routing {
        let mut live = HashMap::new();
        let mut shards = HashMap::new();
        for sv in view.live_shards() {
            for n in sv.nodes.values() {
                live.insert(n.addr.clone(), self.pool(&n.addr));
            }
            let leader = sv.leader().map(|l| self.pool(&l.addr));
            let mut readers: Vec<Arc<Pool>> = sv
                .nodes
                .values()
                .filter(|n| sv.in_sync(&n.id) || sv.leader().is_some_and(|l| l.id == n.id))
                .map(|n| self.pool(&n.addr))
                .collect();
            readers.dedup_by(|a, b| a.addr() == b.addr());
            shards.insert(
                sv.name.clone(),
                ShardRoute {
                    epoch: sv.epoch(),
                    leader,
                    readers,
                },
            );
        }
        self.pools.retain(|addr, pool| {
            let keep = live.contains_key(addr);
            if !keep {
                pool.close();
            }
            keep
        });
        Routing {
            placement: Placement::new(view.ring.as_ref()),
            shards,
            policy: self.policy,
            next_reader: AtomicUsize::new(fastrand::usize(..)),
            view,
            pools: live,
        }
    }
}

/// Keeps a [`Routing`] current with the cluster view.
pub fn spawn_routing(
    mut view: watch::Receiver<Arc<ClusterView>>,
    mut builder: RoutingBuilder,
) -> watch::Receiver<Arc<Routing>> {
    let first = builder.build(view.borrow_and_update().clone());
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        while view.changed().await.is_ok() {
            let v = view.borrow_and_update().clone();
            let routing = builder.build(v);
            let (before, after) = (tx.borrow().placement.version, routing.placement.version);
            if before != after
                || tx.borrow().placement.next().map(|n| (n.0, n.2)) != routing.placement.next().map(|n| (n.0, n.2))
            {
                info!(version = after, shards = ?routing.ring().shards(), next = ?routing.placement.next().map(|n| (n.0, n.1.shards().to_vec(), n.2)), "hash ring changed");
            }
            if tx.send(Arc::new(routing)).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_cluster::{NodeInfo, RingState, ShardState, ShardView};

    fn view() -> Arc<ClusterView> {
        let mut v = ClusterView::default();
        for (shard, ids) in [("s1", ["a", "b"]), ("s2", ["c", "d"])] {
            let mut sv = ShardView {
                name: shard.into(),
                ..Default::default()
            };
            for id in ids {
                sv.nodes.insert(
                    id.into(),
                    NodeInfo {
                        id: id.into(),
                        shard: shard.into(),
                        addr: format!("127.0.0.1:{}", id.as_bytes()[0]),
                    },
                );
            }
            sv.state = Some(ShardState {
                epoch: 1,
                leader: Some(ids[0].into()),
                isr: vec![ids[0].into(), ids[1].into()],
                ..Default::default()
            });
            sv.leader_lock = Some(ids[0].into());
            v.shards.insert(shard.into(), sv);
        }
        v.ring = Some(RingState {
            version: 1,
            shards: vec!["s1".into(), "s2".into()],
            next: None,
        });
        Arc::new(v)
    }

    #[tokio::test]
    async fn writes_to_leaders_reads_by_policy() {
        let mut b = RoutingBuilder::new(ReadPolicy::Any, 1, ConnOptions::default());
        let r = b.build(view());
        assert_eq!(r.ring().shards(), ["s1", "s2"]);
        let mut readers = std::collections::HashSet::new();
        for i in 0..200 {
            let key = format!("k{i}");
            let target = Target::Key(Bytes::from(key.clone()));
            let (shard, w) = r.target(&target, true).unwrap();
            let leader = if shard == "s1" { "127.0.0.1:97" } else { "127.0.0.1:99" };
            assert_eq!(w.addr(), leader);
            readers.insert(
                r.target(&Target::Key(Bytes::from(key.clone())), false)
                    .unwrap()
                    .1
                    .addr()
                    .to_string(),
            );
        }
        assert_eq!(readers.len(), 4, "reads spread over leaders and in-sync followers");

        let mut b = RoutingBuilder::new(ReadPolicy::Leader, 1, ConnOptions::default());
        let mut v = (*view()).clone();
        v.shards.get_mut("s1").unwrap().leader_lock = None;
        let r = b.build(Arc::new(v));
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| r.ring().shard_for(k.as_bytes()) == Some("s1"))
            .unwrap();
        assert_eq!(
            r.target(&Target::Key(Bytes::from(key.clone())), false).unwrap_err(),
            RouteError::NoLeader("s1".into())
        );
        assert_eq!(
            b.build(Arc::new(ClusterView::default()))
                .target(&Target::Key(Bytes::from_static(b"x")), true)
                .unwrap_err(),
            RouteError::NoShards
        );
    }
}
