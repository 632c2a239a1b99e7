//! [`Routing`]: an immutable snapshot of where every key goes, rebuilt whenever the cluster
//! view changes. Requests take the current snapshot (an `Arc` clone) and never lock.
//!
//! The gate reaches servers on their cluster ports (`NodeInfo::cluster_addr`), as an
//! authenticated peer. While the gate cannot confirm its view (its coordinator session is
//! disconnected), reads go to leaders only: a leader refuses reads once its own lease
//! lapses, so a gate cut off from the coordinator never serves a read from a server it
//! cannot vouch for. Meanwhile a leader that announced itself beyond the view
//! ([`crate::discovery`]) takes its shard's traffic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use kv_client::{ConnOptions, Pool};
use kv_cluster::{ClusterView, Phase, Placement, PlacementCache, Ring, SessionStatus};
use kv_proto::slot::key_slot;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ReadPolicy;
use crate::discovery::Hints;

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
    placement: Arc<Placement>,
    /// Each live shard's targets.
    routes: Vec<ShardRoute>,
    /// Index in `routes` by shard name, for commands sent to a named shard: hashbrown's
    /// default hasher (foldhash) rather than SipHash. The names come from the cluster's own
    /// view, not from clients.
    shards: hashbrown::HashMap<String, usize>,
    /// Index in `routes` by the shard's index on the owner ring
    /// ([`Placement::owner_ring`]), `None` for a shard on the ring with no live servers: a
    /// key's route is its slot, two table reads and no hashing of a name (which, with the
    /// lookup, was about 2% of the gate's instructions under `SET -P 16`, callgrind).
    owner_routes: Vec<Option<usize>>,
    policy: ReadPolicy,
    next_reader: AtomicUsize,
    /// The view this routing was built from.
    pub view: Arc<ClusterView>,
    /// False while the gate's coordinator session is disconnected: `view` may be stale.
    pub confirmed: bool,
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
        self.target_as(target, write, false)
    }

    /// [`Routing::target`]; with `leader`, reads go to the leader whatever the policy (a
    /// follower refused to vouch for its data).
    pub fn target_as<'a>(
        &'a self,
        target: &'a Target,
        write: bool,
        leader: bool,
    ) -> Result<(&'a str, &'a Arc<Pool>), RouteError> {
        let write = write || leader;
        let (shard, route) = match target {
            Target::Key(key) => {
                let ring = self.placement.owner_ring();
                let i = ring.owner_index(key_slot(key)).ok_or(RouteError::NoShards)?;
                let shard = ring.shards()[i].as_str();
                let route = self.owner_routes[i].map(|r| &self.routes[r]);
                (shard, route)
            }
            Target::Shard(name) | Target::Owner(name) => (name.as_str(), self.route(name)),
        };
        let no_leader = || RouteError::NoLeader(shard.to_string());
        let route = route.ok_or_else(no_leader)?;
        let leader_only = write || self.policy == ReadPolicy::Leader || !self.confirmed;
        let pool = if leader_only || route.readers.is_empty() {
            route.leader.as_ref().ok_or_else(no_leader)?
        } else {
            let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % route.readers.len();
            &route.readers[i]
        };
        Ok((shard, pool))
    }

    /// The targets of the shard named `shard`, when it has live servers.
    pub fn route(&self, shard: &str) -> Option<&ShardRoute> {
        self.shards.get(shard).map(|&i| &self.routes[i])
    }

    /// A pool for every server of every shard (each once).
    pub fn all_pools(&self) -> Vec<Arc<Pool>> {
        let mut seen = HashSet::new();
        self.routes
            .iter()
            .flat_map(|r| r.leader.iter().chain(r.readers.iter()))
            .filter(|p| seen.insert(p.addr().to_string()))
            .cloned()
            .collect()
    }

    /// Every shard holding keys, in the order a `SCAN` walks them: shards leaving the ring
    /// first, then those staying, then those joining, so a key moving during the walk
    /// always moves from a shard visited earlier to one visited later (a ring change only
    /// moves keys off leaving shards or onto joining ones).
    pub fn scan_order(&self) -> Vec<String> {
        let current = self.placement.current().shards();
        let Some((_, next, _)) = self.placement.next() else {
            let mut all = current.to_vec();
            all.sort();
            return all;
        };
        let next = next.shards();
        let mut leaving: Vec<String> = current.iter().filter(|s| !next.contains(s)).cloned().collect();
        let mut staying: Vec<String> = current.iter().filter(|s| next.contains(s)).cloned().collect();
        let mut joining: Vec<String> = next.iter().filter(|s| !current.contains(s)).cloned().collect();
        leaving.sort();
        staying.sort();
        joining.sort();
        leaving.into_iter().chain(staying).chain(joining).collect()
    }

    /// The shards keys are served from: the next ring's while keys move to it.
    pub fn shard_names(&self) -> &[String] {
        match self.placement.next() {
            Some((_, next, Phase::Moving)) => next.shards(),
            _ => self.placement.current().shards(),
        }
    }
}

/// What a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A key, routed by the ring.
    Key(Bytes),
    /// A whole shard (fan-out commands): a `MOVED` reply comes back to the caller, which
    /// redoes the command key by key.
    Shard(String),
    /// The shard that serves a moving key under the gate's view: its own view of the ring
    /// may lag for a moment, so a `MOVED` reply is retried.
    Owner(String),
}

/// Builds [`Routing`]s, keeping each server's pool across rebuilds.
pub struct RoutingBuilder {
    policy: ReadPolicy,
    pool_size: usize,
    options: ConnOptions,
    pools: HashMap<String, Arc<Pool>>,
    placements: PlacementCache,
}

impl RoutingBuilder {
    pub fn new(policy: ReadPolicy, pool_size: usize, options: ConnOptions) -> RoutingBuilder {
        RoutingBuilder {
            policy,
            pool_size,
            options,
            pools: HashMap::new(),
            placements: PlacementCache::default(),
        }
    }

    fn pool(&mut self, addr: &str) -> Arc<Pool> {
        self.pools
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Pool::new(addr, self.pool_size, self.options.clone())))
            .clone()
    }

    /// Routing for `view` (`confirmed`: the gate's session is connected), with the leaders
    /// `hints` name where they are newer than the view's. Pools of servers no longer in the
    /// view are closed.
    pub fn build(&mut self, view: Arc<ClusterView>, confirmed: bool, hints: &Hints) -> Routing {
        let mut live = HashSet::new();
        let mut routes = Vec::new();
        let mut shards = hashbrown::HashMap::new();
        for sv in view.live_shards() {
            for n in sv.nodes.values() {
                live.insert(n.cluster_addr.clone());
            }
            let hinted = hints
                .get(&sv.name)
                .filter(|h| h.epoch > sv.epoch())
                .and_then(|h| Some((h.epoch, sv.nodes.get(&h.node)?)));
            let epoch = hinted.map_or(sv.epoch(), |(epoch, _)| epoch);
            let leader = hinted
                .map(|(_, n)| n)
                .or_else(|| sv.leader())
                .map(|l| self.pool(&l.cluster_addr));
            let mut readers: Vec<Arc<Pool>> = sv
                .nodes
                .values()
                .filter(|n| sv.in_sync(&n.id) || sv.leader().is_some_and(|l| l.id == n.id))
                .map(|n| self.pool(&n.cluster_addr))
                .collect();
            readers.dedup_by(|a, b| a.addr() == b.addr());
            shards.insert(sv.name.clone(), routes.len());
            routes.push(ShardRoute { epoch, leader, readers });
        }
        self.pools.retain(|addr, pool| {
            let keep = live.contains(addr);
            if !keep {
                pool.close();
            }
            keep
        });
        let placement = self.placements.get(view.ring.as_ref());
        let owner_routes = placement
            .owner_ring()
            .shards()
            .iter()
            .map(|name| shards.get(name).copied())
            .collect();
        Routing {
            placement,
            routes,
            shards,
            owner_routes,
            policy: self.policy,
            next_reader: AtomicUsize::new(fastrand::usize(..)),
            view,
            confirmed,
        }
    }
}

/// Keeps a [`Routing`] current with the cluster view, the gate's session state and the
/// leaders servers announced beyond the view.
pub fn spawn_routing(
    mut view: watch::Receiver<Arc<ClusterView>>,
    mut session: watch::Receiver<SessionStatus>,
    mut hints: watch::Receiver<Hints>,
    mut builder: RoutingBuilder,
) -> watch::Receiver<Arc<Routing>> {
    let connected = session.borrow_and_update().connected;
    let first = builder.build(view.borrow_and_update().clone(), connected, &hints.borrow_and_update());
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = view.changed() => if r.is_err() { return },
                r = hints.changed() => if r.is_err() { return },
                r = session.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let status = *session.borrow_and_update();
                    if status.closed {
                        return;
                    }
                    let connected = status.connected;
                    if connected == tx.borrow().confirmed {
                        continue;
                    }
                    if !connected {
                        warn!("the coordinator session is disconnected: reading from shard leaders only");
                    }
                }
            }
            let v = view.borrow_and_update().clone();
            let connected = session.borrow().connected;
            let routing = builder.build(v, connected, &hints.borrow_and_update());
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
                        cluster_addr: format!("127.0.0.1:{}", 10_000 + id.as_bytes()[0] as u32),
                        tls_addr: None,
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
        let r = b.build(view(), true, &Hints::new());
        assert_eq!(r.ring().shards(), ["s1", "s2"]);
        let mut readers = std::collections::HashSet::new();
        for i in 0..200 {
            let key = format!("k{i}");
            let target = Target::Key(Bytes::from(key.clone()));
            let (shard, w) = r.target(&target, true).unwrap();
            let leader = if shard == "s1" {
                "127.0.0.1:10097"
            } else {
                "127.0.0.1:10099"
            };
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
        let unconfirmed = b.build(view(), false, &Hints::new());
        for i in 0..50 {
            let target = Target::Key(Bytes::from(format!("k{i}")));
            let (_, read) = unconfirmed.target(&target, false).unwrap();
            let (_, write) = unconfirmed.target(&target, true).unwrap();
            assert_eq!(read.addr(), write.addr(), "an unconfirmed view reads from leaders only");
        }

        let mut b = RoutingBuilder::new(ReadPolicy::Leader, 1, ConnOptions::default());
        let mut v = (*view()).clone();
        v.shards.get_mut("s1").unwrap().leader_lock = None;
        let r = b.build(Arc::new(v), true, &Hints::new());
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| r.ring().shard_for(k.as_bytes()) == Some("s1"))
            .unwrap();
        assert_eq!(
            r.target(&Target::Key(Bytes::from(key.clone())), false).unwrap_err(),
            RouteError::NoLeader("s1".into())
        );
        assert_eq!(
            b.build(Arc::new(ClusterView::default()), true, &Hints::new())
                .target(&Target::Key(Bytes::from_static(b"x")), true)
                .unwrap_err(),
            RouteError::NoShards
        );
    }

    /// A key's route (by its slot and the owner ring's index) is the route of the shard
    /// [`Placement::owner`] names, in every phase of a ring change, including a shard on
    /// the ring with no live servers.
    #[tokio::test]
    async fn a_keys_route_is_its_owners_in_every_phase_of_a_ring_change() {
        use kv_cluster::placement::NextRing;
        let mut b = RoutingBuilder::new(ReadPolicy::Leader, 1, ConnOptions::default());
        for phase in [None, Some(Phase::Prepare), Some(Phase::Moving)] {
            let mut v = (*view()).clone();
            v.ring = Some(RingState {
                version: 1,
                shards: vec!["s1".into()],
                next: phase.map(|phase| NextRing {
                    version: 2,
                    // "s0" has no servers: its keys have no leader.
                    shards: vec!["s0".into(), "s1".into(), "s2".into()],
                    phase,
                }),
            });
            let r = b.build(Arc::new(v), true, &Hints::new());
            let mut seen = HashSet::new();
            for i in 0..500 {
                let key = Bytes::from(format!("key:{i}"));
                let owner = r.owner(&key).unwrap().to_string();
                let target = Target::Key(key);
                let routed = r.target(&target, true);
                match (owner.as_str(), routed) {
                    ("s0", Err(e)) => assert_eq!(e, RouteError::NoLeader("s0".into())),
                    (_, Ok((shard, pool))) => {
                        assert_eq!(shard, owner, "phase {phase:?}");
                        let named = Target::Shard(owner.clone());
                        let by_name = r.target(&named, true).unwrap().1;
                        assert!(Arc::ptr_eq(pool, by_name), "phase {phase:?}");
                    }
                    (_, Err(e)) => panic!("phase {phase:?}: {owner}: {e}"),
                }
                seen.insert(owner);
            }
            let expected = if phase == Some(Phase::Moving) { 3 } else { 1 };
            assert_eq!(seen.len(), expected, "phase {phase:?}: {seen:?}");
        }
    }

    #[tokio::test]
    async fn a_newer_announced_leader_takes_the_shards_traffic() {
        let mut b = RoutingBuilder::new(ReadPolicy::Leader, 1, ConnOptions::default());
        let target = Target::Shard("s1".into());
        let hint = |epoch| {
            Hints::from([(
                "s1".to_string(),
                crate::discovery::Hint {
                    epoch,
                    node: "b".into(),
                },
            )])
        };
        let r = b.build(view(), false, &hint(2));
        assert_eq!(r.target(&target, true).unwrap().1.addr(), "127.0.0.1:10098");
        assert_eq!(r.target(&target, false).unwrap().1.addr(), "127.0.0.1:10098");
        assert_eq!(r.route("s1").unwrap().epoch, 2);
        // A hint the view has caught up with (or passed) is ignored.
        let r = b.build(view(), true, &hint(1));
        assert_eq!(r.target(&target, true).unwrap().1.addr(), "127.0.0.1:10097");
        // So is one naming a node the view does not know.
        let mut unknown = hint(2);
        unknown.get_mut("s1").unwrap().node = "zz".into();
        let r = b.build(view(), false, &unknown);
        assert_eq!(r.target(&target, true).unwrap().1.addr(), "127.0.0.1:10097");
    }
}
