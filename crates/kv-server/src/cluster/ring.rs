//! A leader's part in ring changes (see `kv_cluster::placement`):
//!
//! - refuse writes of keys moving away, during the moving phase;
//! - get ready to receive keys (log the inbound marker, wait until it is replicated, then
//!   report `ring_ready` in the shard state), and stop receiving once the ring is final;
//! - as a source, stream the moving keys ([`super::moves::send`]);
//! - once a ring is final, delete what the shard no longer owns;
//! - and, for whichever leader holds the ring lock, manage the ring itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use kv_cluster::placement::{ManagerInput, next_ring};
use kv_cluster::{ClusterView, CoordError, Coordinator, CreateMode, Paths, Phase, Placement, RingState};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::moves;
use crate::node::Node;

/// Per-term state of a leader's ring duties.
#[derive(Default)]
pub struct RingDuties {
    /// The ring version this shard is ready to receive keys for (reported in its state).
    pub ready_for: u64,
    sender: Option<(u64, JoinHandle<()>)>,
    cleaner: Option<(u64, JoinHandle<()>)>,
    cleaned: u64,
    /// When each ring shard was first seen without any live server.
    empty_since: HashMap<String, Instant>,
    /// The placement of the last ring seen, rebuilt only when the ring changes.
    placement: Option<(RingState, Arc<Placement>)>,
}

impl RingDuties {
    /// Stops the background tasks (leadership ended).
    pub fn stop(&mut self, node: &Node) {
        if let Some((_, t)) = self.sender.take() {
            t.abort();
        }
        if let Some((_, t)) = self.cleaner.take() {
            t.abort();
        }
        node.clear_move();
        node.lock().moving = None;
        self.ready_for = 0;
        self.cleaned = 0;
    }

    /// Reconciles the leader's duties with the ring in `view`.
    pub async fn reconcile(&mut self, node: &Arc<Node>, view: &watch::Receiver<Arc<ClusterView>>) {
        let snapshot = view.borrow().clone();
        let Some(ring) = snapshot.ring.as_ref() else {
            return;
        };
        let placement = match &self.placement {
            Some((seen, p)) if seen == ring => p.clone(),
            _ => {
                let p = Arc::new(Placement::new(Some(ring)));
                self.placement = Some((ring.clone(), p.clone()));
                p
            }
        };
        let shard = node.shard.as_str();
        let moving = ring.next.as_ref().is_some_and(|n| n.phase == Phase::Moving);
        node.lock().moving = moving.then(|| placement.clone());

        // Receiving.
        match &ring.next {
            Some(next) if next.shards.iter().any(|s| s == shard) => {
                if node.lock().inbound != Some(next.version) {
                    match node.write_unguarded(|w| w.set_inbound(next.version)) {
                        Ok((_, Some(p))) if node.wait_replicated(p).await.is_err() => return,
                        Ok(_) => info!(version = next.version, "ready to receive keys"),
                        Err(e) => {
                            debug!(error = %e, "cannot start receiving keys");
                            return;
                        }
                    }
                }
                self.ready_for = next.version;
            }
            None if node.lock().inbound.is_some() => {
                let _ = node.write_unguarded(|w| w.set_inbound(0));
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
                    let task = tokio::spawn(moves::send(node.clone(), placement.clone(), next.version, view.clone()));
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
            let (version, view) = (ring.version, view.clone());
            let still = move || {
                view.borrow()
                    .ring
                    .as_ref()
                    .is_some_and(|r| r.version == version && r.next.is_none())
            };
            let task = tokio::spawn(moves::clean_up(node.clone(), placement.clone(), still));
            self.cleaner = Some((ring.version, task));
        }
    }

    /// If this leader holds (or takes) the ring lock, moves the ring one step.
    pub async fn manage(&mut self, node: &Node, coord: &dyn Coordinator, paths: &Paths, view: &ClusterView) {
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
}
