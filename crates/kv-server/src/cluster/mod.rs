//! Cluster membership for one kvserver: registration, leader election, following, the
//! leader's lease, its in-sync set in the coordinator, and its part in ring changes.
//!
//! One task ([`run`]) reconciles the node with the cluster view whenever either changes:
//!
//! - **Registration**: an ephemeral node per session generation; after a session expiry the
//!   server re-registers (and, if it led, has already stepped down).
//! - **Election**: when a shard has no leader, an eligible server takes the ephemeral leader
//!   lock, re-reads the shard state and bumps the epoch with a version-checked write. Eligible:
//!   in the in-sync set (or, with `--unclean-election`, when no in-sync replica is alive; or
//!   on a shard that never had a leader).
//! - **Following**: a follower task per (leader, epoch).
//! - **Leading**: the in-sync set the replication layer wants is written to the state node
//!   (version-checked) before writes stop waiting for a removed follower; the lease is renewed
//!   by timed probes of the session.
//! - **Ring changes** (`ring.rs`, `moves.rs`): a leader gets its shard ready to receive keys,
//!   streams away the keys that move, deletes what it no longer owns once a ring is final, and
//!   the leader holding the ring lock moves the ring itself.

pub mod election;
mod moves;
mod ring;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_cluster::{
    ClusterView, CoordError, Coordinator, CreateMode, NodeInfo, Paths, ShardState, ShardView, watch_view,
};
use std::sync::atomic::Ordering;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::node::{Node, Role};
use crate::replication::follower;

struct Leading {
    epoch: u64,
    state_version: i32,
    /// The shard state as last written.
    written: ShardState,
}

struct Following {
    leader_id: String,
    epoch: u64,
    task: JoinHandle<()>,
}

struct Runtime {
    node: Arc<Node>,
    coord: Arc<dyn Coordinator>,
    paths: Paths,
    view: watch::Receiver<Arc<ClusterView>>,
    registered: Option<u64>,
    leading: Option<Leading>,
    following: Option<Following>,
    /// The last regressed epoch reported, so each is logged once.
    regressed: Option<u64>,
    /// This leader's part in ring changes.
    ring: ring::RingDuties,
}

/// The lease a leader holds after a successful probe sent at `t`: two thirds of the session
/// timeout. ZooKeeper cannot expire the session sooner than a full timeout after `t`.
fn lease_after(coord: &dyn Coordinator, t: Instant) -> Instant {
    t + coord.session_timeout() * 2 / 3
}

/// Runs membership until `shutdown`, then closes the coordinator session (so the shard fails
/// over at once).
pub async fn run(node: Arc<Node>, coord: Arc<dyn Coordinator>, paths: Paths, mut shutdown: watch::Receiver<bool>) {
    let view = watch_view(coord.clone(), paths.clone());
    let mut rt = Runtime {
        node,
        coord,
        paths,
        view,
        registered: None,
        leading: None,
        following: None,
        regressed: None,
        ring: ring::RingDuties::default(),
    };
    let mut session = rt.coord.session();
    let mut lease_tick = tokio::time::interval((rt.coord.session_timeout() / 6).max(Duration::from_millis(20)));
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(Duration::from_millis(250));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        rt.reconcile().await;
        tokio::select! {
            _ = shutdown.changed() => break,
            r = rt.view.changed() => if r.is_err() { break },
            r = session.changed() => if r.is_err() { break },
            _ = rt.node.cluster_poked() => {}
            _ = lease_tick.tick() => rt.renew_lease().await,
            _ = retry.tick() => {}
        }
    }
    if let Some(f) = rt.following.take() {
        f.task.abort();
    }
    rt.node.change_role(Role::Idle);
    rt.coord.close().await;
}

impl Runtime {
    fn shard(&self) -> &str {
        &self.node.shard
    }

    async fn reconcile(&mut self) {
        let status = *self.coord.session().borrow();
        if status.closed {
            return;
        }
        if self.registered != Some(status.generation) {
            if self.leading.is_some() {
                self.step_down("the coordinator session was replaced").await;
            }
            match self.register().await {
                Ok(()) => {
                    info!(
                        node = self.node.id,
                        shard = self.shard(),
                        addr = self.node.addr,
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
        let view = self.view.borrow().clone();
        let sv = view.shards.get(self.shard()).cloned().unwrap_or_default();
        if self.leading.is_some() {
            self.lead(&sv).await;
        } else {
            self.not_leading(&sv).await;
        }
    }

    async fn register(&self) -> Result<(), CoordError> {
        let shard = self.shard();
        self.coord.ensure_path(&self.paths.nodes(shard)).await?;
        let info = NodeInfo {
            id: self.node.id.clone(),
            shard: shard.to_string(),
            addr: self.node.addr.clone(),
        };
        let data = serde_json::to_vec(&info).expect("NodeInfo serialises");
        let path = self.paths.node(shard, &self.node.id);
        match self.coord.create(&path, &data, CreateMode::Ephemeral).await {
            Err(CoordError::NodeExists) => {
                // Left by our previous (expired) session: replace it with one we own.
                self.coord.delete(&path, None).await.or_else(ignore_no_node)?;
                self.coord.create(&path, &data, CreateMode::Ephemeral).await
            }
            other => other,
        }
    }

    /// True (and reported loudly, once) when the coordinator names an epoch older than one
    /// this node has seen: its data was lost or rolled back. Such a state is never obeyed.
    fn epoch_regressed(&mut self, sv: &ShardView) -> bool {
        let (named, seen) = (sv.epoch(), self.node.highest_epoch());
        if sv.state.is_none() || named >= seen {
            return false;
        }
        if self.regressed != Some(named) {
            self.regressed = Some(named);
            self.node.stats.epoch_regressions.fetch_add(1, Ordering::Relaxed);
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

    async fn lead(&mut self, sv: &ShardView) {
        let epoch = self.leading.as_ref().map_or(0, |l| l.epoch);
        let lock_mine = sv.leader_lock.as_deref() == Some(self.node.id.as_str());
        if sv.epoch() > epoch || (sv.epoch() == epoch && !lock_mine) {
            self.step_down("another leader took over or the leader lock was lost")
                .await;
            return;
        }
        if !lock_mine {
            // Either the view has not caught up with our election yet, or the coordinator
            // lost the lock and the state (its data was wiped): ask it directly.
            self.recheck_state().await;
            if self.leading.is_none() {
                return;
            }
        }
        self.ring.reconcile(&self.node, &self.view).await;
        let view = self.view.borrow().clone();
        self.ring
            .manage(&self.node, self.coord.as_ref(), &self.paths, &view)
            .await;
        self.sync_state().await;
    }

    async fn not_leading(&mut self, sv: &ShardView) {
        match sv.leader() {
            Some(_) if self.epoch_regressed(sv) => {
                if let Some(f) = self.following.take() {
                    f.task.abort();
                    self.node.change_role(Role::Idle);
                    self.node.set_leader_hint(None);
                }
            }
            Some(leader) if leader.id != self.node.id => {
                let leader = leader.clone();
                self.ensure_following(&leader, sv.epoch());
            }
            Some(_) => {
                // The state names us but we are not leading (we stepped down): free the lock.
                self.release_lock().await;
            }
            None => {
                if let Some(f) = self.following.take() {
                    f.task.abort();
                    self.node.change_role(Role::Idle);
                    self.node.set_leader_hint(None);
                }
                match sv.leader_lock.as_deref() {
                    None if self.eligible(sv.state.as_ref(), sv) => self.try_elect(sv).await,
                    Some(id) if id == self.node.id => self.release_lock().await,
                    _ => {}
                }
            }
        }
    }

    fn eligible(&self, state: Option<&ShardState>, sv: &ShardView) -> bool {
        election::eligible(
            &self.node.id,
            state,
            |id| sv.nodes.contains_key(id),
            self.node.config.unclean_election,
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
        let term = self.node.change_role(Role::Follower { epoch });
        self.node.set_leader_hint(Some(leader.addr.clone()));
        info!(leader = leader.id, addr = leader.addr, epoch, "following");
        let task = tokio::spawn(follower::follow(self.node.clone(), leader.addr.clone(), epoch, term));
        self.following = Some(Following {
            leader_id: leader.id.clone(),
            epoch,
            task,
        });
    }

    async fn try_elect(&mut self, sv: &ShardView) {
        let shard = self.shard().to_string();
        let sent = Instant::now();
        match self
            .coord
            .create(
                &self.paths.leader(&shard),
                self.node.id.as_bytes(),
                CreateMode::Ephemeral,
            )
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
        let fresh = match self.coord.get(&self.paths.state(&shard)).await {
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
            &self.node.id,
            fresh.as_ref().map(|(s, _)| s),
            |id| sv.nodes.contains_key(id),
            self.node.highest_epoch(),
        );
        if plan.regressed {
            // Never reuse an epoch: the coordinator lost the state or was rolled back.
            self.node.stats.epoch_regressions.fetch_add(1, Ordering::Relaxed);
            error!(
                shard,
                stored = fresh.as_ref().map_or(0, |(s, _)| s.epoch),
                seen = self.node.highest_epoch(),
                "the shard state's epoch is older than one this node has seen: the coordinator lost \
                 data; continuing above it"
            );
        }
        let epoch = plan.epoch;
        let state = ShardState {
            epoch,
            leader: Some(self.node.id.clone()),
            isr: plan.isr,
            ring_ready: self.node.lock().inbound.unwrap_or(0),
            moving: None,
        };
        let data = serde_json::to_vec(&state).expect("ShardState serialises");
        let path = self.paths.state(&shard);
        let written = match fresh {
            Some((_, version)) => self.coord.set(&path, &data, Some(version)).await,
            None => self
                .coord
                .create(&path, &data, CreateMode::Persistent)
                .await
                .map(|()| 0),
        };
        match written {
            Ok(version) => {
                if let Some(f) = self.following.take() {
                    f.task.abort();
                }
                self.node
                    .become_leader(epoch, lease_after(self.coord.as_ref(), sent), plan.inherited);
                self.ring.stop(&self.node);
                self.ring.ready_for = state.ring_ready;
                self.leading = Some(Leading {
                    epoch,
                    state_version: version,
                    written: state.clone(),
                });
                info!(node = self.node.id, shard, epoch, "elected leader");
            }
            Err(e) => {
                debug!(error = %e, "lost the election race");
                self.release_lock().await;
            }
        }
    }

    async fn release_lock(&self) {
        self.release(&self.paths.leader(self.shard())).await;
    }

    /// Deletes the lock node at `path` if this node holds it.
    async fn release(&self, path: &str) {
        if let Ok(Some((data, _))) = self.coord.get(path).await
            && data == self.node.id.as_bytes()
        {
            let _ = self.coord.delete(path, None).await;
        }
    }

    async fn step_down(&mut self, why: &str) {
        if let Some(l) = self.leading.take() {
            warn!(node = self.node.id, epoch = l.epoch, why, "stepping down");
        }
        self.ring.stop(&self.node);
        self.node.change_role(Role::Idle);
        self.node.set_leader_hint(None);
        self.release_lock().await;
        // Only leaders manage the ring: let another leader take over.
        self.release(&self.paths.ring_lock()).await;
    }

    /// Writes the shard state when what it should say changed: the in-sync set the
    /// replication layer wants, readiness to receive keys, progress in moving keys away.
    async fn sync_state(&mut self) {
        let Some(leading) = &self.leading else { return };
        let (desired, confirmed) = {
            let d = self.node.lock();
            (d.followers.desired(), d.followers.confirmed().clone())
        };
        let moving = self.node.move_progress();
        let isr_changed = desired != confirmed;
        if !isr_changed && leading.written.ring_ready == self.ring.ready_for && leading.written.moving == moving {
            return;
        }
        let mut isr = vec![self.node.id.clone()];
        isr.extend(desired.iter().cloned());
        let state = ShardState {
            epoch: leading.epoch,
            leader: Some(self.node.id.clone()),
            isr,
            ring_ready: self.ring.ready_for,
            moving,
        };
        let path = self.paths.state(self.shard());
        let data = serde_json::to_vec(&state).expect("ShardState serialises");
        match self.coord.set(&path, &data, Some(leading.state_version)).await {
            Ok(version) => {
                if let Some(l) = &mut self.leading {
                    l.state_version = version;
                    l.written = state.clone();
                }
                if isr_changed {
                    let mut d = self.node.lock();
                    d.followers.confirm(desired);
                    self.node.publish_commit(&d);
                    drop(d);
                    info!(shard = self.shard(), isr = ?state.isr, "in-sync set changed");
                }
            }
            Err(CoordError::BadVersion) => self.recheck_state().await,
            Err(e) => debug!(error = %e, "cannot write the shard state; will retry"),
        }
    }

    /// A version-checked write failed, or the view shows neither our lock nor our state:
    /// adopt the stored version if the state and the lock are still ours, step down otherwise.
    async fn recheck_state(&mut self) {
        let Some(epoch) = self.leading.as_ref().map(|l| l.epoch) else {
            return;
        };
        match self.coord.get(&self.paths.leader(self.shard())).await {
            Ok(Some((holder, _))) if holder == self.node.id.as_bytes() => {}
            Ok(_) => {
                self.step_down("the leader lock is gone").await;
                return;
            }
            Err(e) => {
                debug!(error = %e, "cannot read the leader lock");
                return;
            }
        }
        match self.coord.get(&self.paths.state(self.shard())).await {
            Ok(Some((data, stat))) => match serde_json::from_slice::<ShardState>(&data) {
                Ok(s) if s.epoch == epoch && s.leader.as_deref() == Some(self.node.id.as_str()) => {
                    if let Some(l) = &mut self.leading {
                        l.state_version = stat.version;
                    }
                    self.node.poke_cluster();
                }
                _ => self.step_down("the shard state changed under us").await,
            },
            Ok(None) => self.step_down("the shard state disappeared").await,
            Err(e) => debug!(error = %e, "cannot re-read the shard state"),
        }
    }

    async fn renew_lease(&mut self) {
        if self.leading.is_none() {
            return;
        }
        let sent = Instant::now();
        let probe = tokio::time::timeout(self.coord.session_timeout() / 3, self.coord.probe()).await;
        match probe {
            Ok(Ok(())) => self.node.extend_lease(lease_after(self.coord.as_ref(), sent)),
            Ok(Err(e)) => debug!(error = %e, "lease probe failed"),
            Err(_) => debug!("lease probe timed out"),
        }
    }
}

fn ignore_no_node(e: CoordError) -> Result<(), CoordError> {
    match e {
        CoordError::NoNode => Ok(()),
        e => Err(e),
    }
}
