//! How a kvserver follows the cluster: separate tasks, so none can block another.
//!
//! - **Membership** ([`run`], this module): registration (an ephemeral node per session
//!   generation), the node's view of the ring, election, following. When a shard has no
//!   leader, an eligible server takes the ephemeral leader lock, re-reads the shard state and
//!   bumps the epoch with a version-checked write ([`election`] decides). Eligible: in the
//!   in-sync set (or, with `--unclean-election`, when no in-sync replica is alive; or on a
//!   shard that never had a leader).
//! - While leading, three more tasks, started on election and stopped on stepping down
//!   ([`Term`]):
//!   - the **lease** ([`lease`]): timed confirmations that the leader lock is still this
//!     session's, each extending the lease;
//!   - the **shard state** ([`state`]): the in-sync set the replication layer wants, and
//!     readiness to receive keys, written to the state node with version checks, before
//!     writes stop waiting for a removed follower;
//!   - the **ring duties** ([`ring`]): get ready to receive keys, stream away the keys
//!     that move ([`moves`]), delete what the shard no longer owns once a ring is final,
//!     and, for whichever leader holds the ring lock, move the ring itself.
//!
//! A per-term task that finds the leadership lost asks the membership task to step down
//! (a channel), which owns the role.

pub mod election;
mod lease;
mod links;
mod moves;
mod ring;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_client::ConnOptions;
use kv_cluster::{
    ClusterView, CoordError, Coordinator, CreateMode, NodeInfo, Paths, PlacementCache, ShardState, ShardView,
    watch_view,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use tracing::{debug, error, info, warn};

use crate::node::{Node, Role, Stats};
use crate::replication::follower;

pub(crate) use links::Links;

/// The lease a leader holds after a confirmation sent at `t`: two thirds of the session
/// timeout. ZooKeeper cannot expire the session (and so free the lock) sooner than a
/// session timeout after it last heard from it, which is after `t`.
fn lease_after(coord: &dyn Coordinator, t: Instant) -> Instant {
    t + coord.session_timeout() * 2 / 3
}

/// A request from a per-term task: step down from `term`, for `reason`.
type StepDown = (u64, String);

/// The tasks of one leadership term.
struct Term {
    epoch: u64,
    term: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl Term {
    fn stop(self, node: &Node) {
        for t in self.tasks {
            t.abort();
        }
        node.clear_move();
    }
}

struct Following {
    leader_id: String,
    epoch: u64,
    task: JoinHandle<()>,
}

/// What every task of this server shares to reach the cluster.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub node: Arc<Node>,
    pub coord: Arc<dyn Coordinator>,
    pub paths: Paths,
    /// Options of connections to other servers' cluster ports.
    pub peer: ConnOptions,
    pub view: watch::Receiver<Arc<ClusterView>>,
}

struct Membership {
    ctx: Ctx,
    registered: Option<u64>,
    leading: Option<Term>,
    following: Option<Following>,
    /// The last regressed epoch reported, so each is logged once.
    regressed: Option<u64>,
    placements: PlacementCache,
    step_down: mpsc::Sender<StepDown>,
}

/// Runs the server's part in the cluster until `shutdown`, then closes the coordinator
/// session (so the shard fails over at once).
pub async fn run(
    node: Arc<Node>,
    coord: Arc<dyn Coordinator>,
    paths: Paths,
    peer: ConnOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let view = watch_view(coord.clone(), paths.clone());
    // The client port's users follow the cluster's stored ones.
    let _users = kv_acl::store::follow(node.acl.clone(), view.clone());
    let (step_down, mut step_downs) = mpsc::channel(8);
    let mut m = Membership {
        ctx: Ctx {
            node,
            coord,
            paths,
            peer,
            view,
        },
        registered: None,
        leading: None,
        following: None,
        regressed: None,
        placements: PlacementCache::default(),
        step_down,
    };
    let mut session = m.ctx.coord.session();
    let mut view = m.ctx.view.clone();
    let mut retry = tokio::time::interval(Duration::from_millis(250));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        m.reconcile().await;
        tokio::select! {
            _ = shutdown.changed() => break,
            r = view.changed() => if r.is_err() { break },
            r = session.changed() => if r.is_err() { break },
            Some((term, why)) = step_downs.recv() => {
                if m.leading.as_ref().is_some_and(|l| l.term == term) {
                    m.step_down(&why).await;
                }
            }
            _ = retry.tick() => {}
        }
    }
    if let Some(f) = m.following.take() {
        f.task.abort();
    }
    if let Some(t) = m.leading.take() {
        t.stop(&m.ctx.node);
    }
    m.ctx.node.change_role(Role::Idle);
    m.ctx.coord.close().await;
}

impl Membership {
    fn node(&self) -> &Arc<Node> {
        &self.ctx.node
    }

    fn shard(&self) -> &str {
        &self.ctx.node.shard
    }

    async fn reconcile(&mut self) {
        let status = *self.ctx.coord.session().borrow();
        if status.closed {
            return;
        }
        let view = self.ctx.view.borrow().clone();
        let placement = self.placements.get(view.ring.as_ref());
        self.node().set_cluster(placement, view.clone());
        if self.registered != Some(status.generation) {
            if self.leading.is_some() {
                self.step_down("the coordinator session was replaced").await;
            }
            match self.register().await {
                Ok(()) => {
                    info!(
                        node = self.node().id,
                        shard = self.shard(),
                        addr = self.node().addr,
                        cluster_addr = self.node().cluster_addr,
                        "registered"
                    );
                    self.registered = Some(status.generation);
                }
                Err(e) => {
                    debug!(error = %e, "registration failed; will retry");
                    return;
                }
            }
        }
        let sv = view.shards.get(self.shard()).cloned().unwrap_or_default();
        match &self.leading {
            Some(l) => {
                // Another leader took over (a newer epoch, or the lock held by someone else).
                // A lock that merely vanished is caught by the lease task.
                let lock_other = sv.leader_lock.as_deref().is_some_and(|id| id != self.node().id);
                if sv.epoch() > l.epoch || (sv.epoch() == l.epoch && lock_other) {
                    self.step_down("another leader took over").await;
                }
            }
            None => self.not_leading(&sv).await,
        }
    }

    async fn register(&self) -> Result<(), CoordError> {
        let (coord, paths, shard) = (&self.ctx.coord, &self.ctx.paths, self.shard());
        coord.ensure_path(&paths.nodes(shard)).await?;
        let info = NodeInfo {
            id: self.node().id.clone(),
            shard: shard.to_string(),
            addr: self.node().addr.clone(),
            cluster_addr: self.node().cluster_addr.clone(),
            tls_addr: self.node().tls_addr.clone(),
        };
        let data = serde_json::to_vec(&info).expect("NodeInfo serialises");
        let path = paths.node(shard, &self.node().id);
        match coord.create(&path, &data, CreateMode::Ephemeral).await {
            Err(CoordError::NodeExists) => {
                // Left by our previous (expired) session: replace it with one we own.
                match coord.delete(&path, None).await {
                    Ok(()) | Err(CoordError::NoNode) => {}
                    Err(e) => return Err(e),
                }
                coord.create(&path, &data, CreateMode::Ephemeral).await
            }
            other => other,
        }
    }

    /// True (and reported loudly, once) when the coordinator names an epoch older than one
    /// this node has seen: its data was lost or rolled back. Such a state is never obeyed.
    fn epoch_regressed(&mut self, sv: &ShardView) -> bool {
        let (named, seen) = (sv.epoch(), self.node().highest_epoch());
        if sv.state.is_none() || named >= seen {
            return false;
        }
        if self.regressed != Some(named) {
            self.regressed = Some(named);
            Stats::bump(&self.node().stats.epoch_regressions);
            error!(
                shard = self.shard(),
                named,
                seen,
                "the coordinator names epoch {named}, older than epoch {seen} this node has seen: \
                 its data was lost or rolled back; refusing that state"
            );
        }
        true
    }

    fn stop_following(&mut self) {
        if let Some(f) = self.following.take() {
            f.task.abort();
            self.node().change_role(Role::Idle);
            self.node().set_leader_hint(None);
        }
    }

    async fn not_leading(&mut self, sv: &ShardView) {
        match sv.leader() {
            Some(_) if self.epoch_regressed(sv) => self.stop_following(),
            Some(leader) if leader.id != self.node().id => {
                let leader = leader.clone();
                self.ensure_following(&leader, sv.epoch());
            }
            Some(_) => {
                // The state names us but we are not leading (we stepped down): free the lock.
                self.release_lock().await;
            }
            None => {
                self.stop_following();
                match sv.leader_lock.as_deref() {
                    None if self.eligible(sv.state.as_ref(), sv) => self.try_elect(sv).await,
                    Some(id) if id == self.node().id => self.release_lock().await,
                    _ => {}
                }
            }
        }
    }

    fn eligible(&self, state: Option<&ShardState>, sv: &ShardView) -> bool {
        election::eligible(
            &self.node().id,
            state,
            |id| sv.nodes.contains_key(id),
            self.node().config.unclean_election,
        )
    }

    fn ensure_following(&mut self, leader: &NodeInfo, epoch: u64) {
        if let Some(f) = &self.following
            && f.leader_id == leader.id
            && f.epoch == epoch
        {
            return;
        }
        if let Some(f) = self.following.take() {
            f.task.abort();
        }
        let term = self.node().change_role(Role::Follower { epoch });
        self.node().set_leader_hint(Some(leader.addr.clone()));
        info!(leader = leader.id, addr = leader.cluster_addr, epoch, "following");
        let span = tracing::info_span!("replication", role = "follower", leader = %leader.id, epoch);
        let task = tokio::spawn(
            follower::follow(
                self.node().clone(),
                self.ctx.peer.clone(),
                leader.cluster_addr.clone(),
                epoch,
                term,
            )
            .instrument(span),
        );
        self.following = Some(Following {
            leader_id: leader.id.clone(),
            epoch,
            task,
        });
    }

    async fn try_elect(&mut self, sv: &ShardView) {
        let (coord, paths) = (self.ctx.coord.clone(), self.ctx.paths.clone());
        let shard = self.shard().to_string();
        let sent = Instant::now();
        match coord
            .create(&paths.leader(&shard), self.node().id.as_bytes(), CreateMode::Ephemeral)
            .await
        {
            Ok(()) => {}
            Err(CoordError::NodeExists) => return,
            Err(e) => {
                debug!(error = %e, "cannot take the leader lock");
                return;
            }
        }
        // Holding the lock: decide on the freshest state.
        let fresh = match coord.get(&paths.state(&shard)).await {
            Ok(Some((data, stat))) => match serde_json::from_slice::<ShardState>(&data) {
                Ok(s) => Some((s, stat.version)),
                Err(e) => {
                    warn!(error = %e, "unreadable shard state; not electing");
                    self.release_lock().await;
                    return;
                }
            },
            Ok(None) => None,
            Err(e) => {
                debug!(error = %e, "cannot read the shard state");
                self.release_lock().await;
                return;
            }
        };
        if !self.eligible(fresh.as_ref().map(|(s, _)| s), sv) {
            self.release_lock().await;
            return;
        }
        let plan = election::plan(
            &self.node().id,
            fresh.as_ref().map(|(s, _)| s),
            |id| sv.nodes.contains_key(id),
            self.node().highest_epoch(),
        );
        if plan.regressed {
            // Never reuse an epoch: the coordinator lost the state or was rolled back.
            Stats::bump(&self.node().stats.epoch_regressions);
            error!(
                shard,
                stored = fresh.as_ref().map_or(0, |(s, _)| s.epoch),
                seen = self.node().highest_epoch(),
                "the shard state's epoch is older than one this node has seen: the coordinator lost \
                 data; continuing above it"
            );
        }
        let epoch = plan.epoch;
        let state = ShardState {
            epoch,
            leader: Some(self.node().id.clone()),
            isr: plan.isr,
            ring_ready: self.node().inbound().unwrap_or(0),
        };
        let data = serde_json::to_vec(&state).expect("ShardState serialises");
        let path = paths.state(&shard);
        let written = match fresh {
            Some((_, version)) => coord.set(&path, &data, Some(version)).await,
            None => coord.create(&path, &data, CreateMode::Persistent).await.map(|()| 0),
        };
        match written {
            Ok(version) => {
                if let Some(f) = self.following.take() {
                    f.task.abort();
                }
                let term = self
                    .node()
                    .become_leader(epoch, lease_after(coord.as_ref(), sent), plan.inherited);
                // The ring duties report readiness to receive keys to the shard-state task.
                let (ready_tx, ready_rx) = watch::channel(state.ring_ready);
                let ctx = &self.ctx;
                let span = tracing::info_span!("leadership", shard = %shard, epoch);
                self.leading = Some(Term {
                    epoch,
                    term,
                    tasks: vec![
                        tokio::spawn(lease::run(ctx.clone(), term, self.step_down.clone()).instrument(span.clone())),
                        tokio::spawn(
                            state::run(ctx.clone(), term, state, version, ready_rx, self.step_down.clone())
                                .instrument(span.clone()),
                        ),
                        tokio::spawn(ring::run(ctx.clone(), term, ready_tx).instrument(span)),
                    ],
                });
                info!(node = self.node().id, shard, epoch, "elected leader");
            }
            Err(e) => {
                debug!(error = %e, "lost the election race");
                self.release_lock().await;
            }
        }
    }

    async fn release_lock(&self) {
        release(&self.ctx, &self.ctx.paths.leader(self.shard())).await;
    }

    async fn step_down(&mut self, why: &str) {
        if let Some(t) = self.leading.take() {
            warn!(node = self.node().id, epoch = t.epoch, why, "stepping down");
            t.stop(self.node());
        }
        self.node().change_role(Role::Idle);
        self.node().set_leader_hint(None);
        self.release_lock().await;
        // Only leaders manage the ring: let another leader take over.
        release(&self.ctx, &self.ctx.paths.ring_lock()).await;
    }
}

/// Deletes the lock at `path` if this session holds it.
async fn release(ctx: &Ctx, path: &str) {
    if let Err(e) = ctx.coord.delete_owned(path).await {
        debug!(path, error = %e, "cannot release a lock; it goes with the session");
    }
}
