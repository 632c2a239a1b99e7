//! A leader's part in ring changes (see `kv_cluster::placement`), in its own task:
//!
//! - get ready to receive keys (log the inbound marker, wait until it is replicated, then
//!   report readiness to the shard-state task), and stop receiving once the ring is final;
//! - as a source, stream the moving keys ([`super::moves::send`]);
//! - once a ring is final, delete what the shard no longer owns;
//! - and, for whichever leader holds the ring lock, manage the ring itself, reading the
//!   sources' progress from their `KV.INFO` on the cluster port.
//!
//! Writes of keys moving away are refused by the node itself: the membership task keeps
//! the node's placement current, and ownership is checked on every write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_cluster::placement::{ManagerInput, next_ring};
use kv_cluster::{ClusterView, CoordError, CreateMode, Phase, PlacementCache, RingState};
use kv_peer::{PeerCommand, ServerInfo};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use tracing::{debug, info, warn};

use super::{Ctx, Links, moves};

/// How often the ring manager reads the sources' progress during a move.
const POLL: Duration = Duration::from_millis(250);
/// How long a source may take to report.
const INFO_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs a leader's ring duties for `term`; readiness to receive keys goes to `ready`.
pub(super) async fn run(ctx: Ctx, term: u64, ready: watch::Sender<u64>) {
    let mut duties = RingDuties {
        ready,
        sender: None,
        cleaner: None,
        cleaned: 0,
        empty_since: HashMap::new(),
        placements: PlacementCache::default(),
        links: Links::new(ctx.peer.clone()),
    };
    let mut view = ctx.view.clone();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !ctx.node.in_term(term) {
            return;
        }
        let snapshot = view.borrow_and_update().clone();
        duties.reconcile(&ctx, &snapshot).await;
        duties.manage(&ctx, &snapshot).await;
        tokio::select! {
            r = view.changed() => if r.is_err() { return },
            _ = poll.tick() => {}
        }
    }
}

struct RingDuties {
    ready: watch::Sender<u64>,
    sender: Option<(u64, JoinHandle<()>)>,
    cleaner: Option<(u64, JoinHandle<()>)>,
    cleaned: u64,
    /// When each ring shard was first seen without any live server.
    empty_since: HashMap<String, Instant>,
    placements: PlacementCache,
    /// To read the sources' progress.
    links: Links,
}

impl Drop for RingDuties {
    fn drop(&mut self) {
        for (_, t) in self.sender.take().into_iter().chain(self.cleaner.take()) {
            t.abort();
        }
    }
}

impl RingDuties {
    /// Reconciles the leader's duties with the ring in `view`.
    async fn reconcile(&mut self, ctx: &Ctx, view: &Arc<ClusterView>) {
        let Some(ring) = view.ring.as_ref() else {
            return;
        };
        let node = &ctx.node;
        let placement = self.placements.get(Some(ring));
        let shard = node.shard.as_str();
        let moving = ring.next.as_ref().is_some_and(|n| n.phase == Phase::Moving);

        // Receiving.
        match &ring.next {
            Some(next) if next.shards.iter().any(|s| s == shard) => {
                if node.inbound() != Some(next.version) {
                    match node.write_internal(|w| w.set_inbound(next.version)) {
                        Ok((_, Some(p))) if node.wait_replicated(p).await.is_err() => return,
                        Ok(_) => info!(version = next.version, "ready to receive keys"),
                        Err(e) => {
                            debug!(error = %e, "cannot start receiving keys");
                            return;
                        }
                    }
                }
                self.ready.send_replace(next.version);
            }
            None if node.inbound().is_some() => {
                let _ = node.write_internal(|w| w.set_inbound(0));
            }
            _ => {}
        }

        // Sending.
        let source = ring.shards.iter().any(|s| s == shard);
        match &ring.next {
            Some(next) if moving && source => {
                if self.sender.as_ref().is_none_or(|(v, _)| *v != next.version) {
                    if let Some((_, t)) = self.sender.take() {
                        t.abort();
                    }
                    node.clear_move();
                    let span = tracing::info_span!("migration", ring = next.version);
                    let task = tokio::spawn(moves::send(ctx.clone(), placement.clone(), next.version).instrument(span));
                    self.sender = Some((next.version, task));
                }
            }
            _ => {
                if let Some((_, t)) = self.sender.take() {
                    t.abort();
                }
            }
        }

        // Cleaning up after a final ring.
        if ring.next.is_none() && self.cleaned < ring.version {
            self.cleaned = ring.version;
            node.clear_move();
            if let Some((_, t)) = self.cleaner.take() {
                t.abort();
            }
            let (version, watched) = (ring.version, ctx.view.clone());
            let still = move || {
                watched
                    .borrow()
                    .ring
                    .as_ref()
                    .is_some_and(|r| r.version == version && r.next.is_none())
            };
            let span = tracing::info_span!("migration_clean_up", ring = ring.version);
            let task = tokio::spawn(moves::clean_up(node.clone(), placement, still).instrument(span));
            self.cleaner = Some((ring.version, task));
        }
    }

    /// If this leader holds (or takes) the ring lock, moves the ring one step.
    async fn manage(&mut self, ctx: &Ctx, view: &ClusterView) {
        let (node, coord, paths) = (&ctx.node, &ctx.coord, &ctx.paths);
        // The view carries the lock holder: no coordinator round trip per reconcile.
        match view.ring_lock.as_deref() {
            Some(holder) if holder == node.id => {}
            Some(_) => return,
            None => match coord
                .create(&paths.ring_lock(), node.id.as_bytes(), CreateMode::Ephemeral)
                .await
            {
                Ok(()) => info!(node = node.id, "managing the ring"),
                Err(_) => return,
            },
        }
        let grace = coord.session_timeout() * 2;
        let now = Instant::now();
        let mut input = ManagerInput {
            removing: view.removing.clone(),
            ..Default::default()
        };
        if let Some(ring) = &view.ring {
            let mut members: Vec<&String> = ring.shards.iter().collect();
            members.extend(ring.next.iter().flat_map(|n| n.shards.iter()));
            self.empty_since.retain(|s, _| members.contains(&s));
            for s in members {
                let empty = view.shards.get(s).is_none_or(|sv| sv.nodes.is_empty());
                if empty {
                    let since = *self.empty_since.entry(s.clone()).or_insert(now);
                    if now.duration_since(since) > grace {
                        input.lost.insert(s.clone());
                    }
                } else {
                    self.empty_since.remove(s);
                }
            }
            if let Some(next) = ring.next.as_ref().filter(|n| n.phase == Phase::Moving) {
                input.done = self.sources_done(ctx, view, ring, next.version).await;
            }
        }
        // A removal request is done once the shard is off the ring and its servers stopped.
        if let Some(ring) = &view.ring {
            for s in &view.removing {
                let on_ring = ring.shards.contains(s) || ring.next.as_ref().is_some_and(|n| n.shards.contains(s));
                let running = view.shards.get(s).is_some_and(|sv| !sv.nodes.is_empty());
                if !on_ring && !running {
                    let _ = coord.delete(&paths.removing_shard(s), None).await;
                }
            }
        }
        let Some(next) = next_ring(view.ring.as_ref(), view, &input) else {
            return;
        };
        let data = serde_json::to_vec(&next).expect("RingState serialises");
        let written = match &view.ring {
            Some(_) => coord
                .set(&paths.ring(), &data, Some(view.ring_node_version))
                .await
                .map(|_| ()),
            None => coord.create(&paths.ring(), &data, CreateMode::Persistent).await,
        };
        match written {
            Ok(()) => info!(
                version = next.version,
                shards = ?next.shards,
                next = ?next.next.as_ref().map(|n| (n.version, &n.shards, n.phase)),
                "ring changed"
            ),
            Err(CoordError::BadVersion | CoordError::NodeExists) => {}
            Err(e) => warn!(error = %e, "cannot write the ring"),
        }
    }

    /// The source shards whose leaders report every key moving to ring `version` sent.
    async fn sources_done(
        &mut self,
        ctx: &Ctx,
        view: &ClusterView,
        ring: &RingState,
        version: u64,
    ) -> BTreeSet<String> {
        let mut done = BTreeSet::new();
        for s in &ring.shards {
            let progress = if *s == ctx.node.shard {
                ctx.node.move_progress()
            } else {
                let Some(leader) = view.shards.get(s).and_then(|sv| sv.leader()) else {
                    continue;
                };
                let reply = self
                    .links
                    .call(&leader.cluster_addr, PeerCommand::Info.encode(), INFO_TIMEOUT)
                    .await;
                match reply.map(|f| ServerInfo::from_frame(&f)) {
                    Ok(Ok(info)) => info.moving,
                    other => {
                        debug!(shard = s, reply = ?other.err(), "cannot read a source's move progress");
                        None
                    }
                }
            };
            if progress.is_some_and(|p| p.version == version && p.done) {
                done.insert(s.clone());
            }
        }
        done
    }
}
