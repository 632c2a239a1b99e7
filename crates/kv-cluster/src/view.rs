//! Assembling a [`ClusterView`] from the coordinator and keeping it current.
//!
//! [`watch_view`] reads the whole tree once (and again after every reconnection, when events
//! may have been lost), then re-reads only the parts the coordinator reported changed: one
//! shard's registrations, state and lock; the ring; the ring lock; the removal requests; the
//! users.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{Changes, ClusterView, CoordError, Coordinator, NodeInfo, Paths, RingState, ShardState, ShardView};

/// Reads every shard's registrations, state and leader lock.
pub async fn read_view(coord: &dyn Coordinator, paths: &Paths) -> Result<ClusterView, CoordError> {
    let mut view = ClusterView::default();
    for part in [Part::Shards, Part::Ring, Part::RingLock, Part::Removing, Part::Users] {
        reread(coord, paths, &mut view, &part).await?;
    }
    Ok(view)
}

/// A part of the view that can be re-read on its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// The list of shards (and every shard not seen before).
    Shards,
    /// One shard: registrations, state, lock.
    Shard(String),
    Ring,
    RingLock,
    Removing,
    Users,
}

/// The part of the view a changed `path` belongs to, if any.
fn part_of(paths: &Paths, path: &str) -> Option<Part> {
    let rest = path.strip_prefix(paths.root())?;
    let mut segments = rest.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (None, _) => Some(Part::Shards),
        (Some("shards"), None) => Some(Part::Shards),
        (Some("shards"), Some(shard)) => Some(Part::Shard(shard.to_string())),
        (Some("ring"), _) => Some(Part::Ring),
        (Some("ring-lock"), _) => Some(Part::RingLock),
        (Some("removing"), _) => Some(Part::Removing),
        (Some("users"), _) => Some(Part::Users),
        _ => None,
    }
}

async fn read_shard(coord: &dyn Coordinator, paths: &Paths, shard: &str) -> Result<Option<ShardView>, CoordError> {
    let mut sv = ShardView {
        name: shard.to_string(),
        ..Default::default()
    };
    let ids = match coord.children(&paths.nodes(shard)).await {
        Ok(c) => c,
        Err(CoordError::NoNode) => {
            if coord.get(&paths.shard(shard)).await?.is_none() {
                return Ok(None);
            }
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    for id in ids {
        let Some((data, _)) = coord.get(&paths.node(shard, &id)).await? else {
            continue;
        };
        match serde_json::from_slice::<NodeInfo>(&data) {
            Ok(info) => {
                sv.nodes.insert(id, info);
            }
            Err(e) => warn!(shard, id, error = %e, "ignoring unreadable node registration"),
        }
    }
    if let Some((data, stat)) = coord.get(&paths.state(shard)).await? {
        match serde_json::from_slice::<ShardState>(&data) {
            Ok(state) => {
                sv.state = Some(state);
                sv.state_version = stat.version;
            }
            Err(e) => warn!(shard, error = %e, "ignoring unreadable shard state"),
        }
    }
    if let Some((data, _)) = coord.get(&paths.leader(shard)).await? {
        sv.leader_lock = String::from_utf8(data).ok();
    }
    Ok(Some(sv))
}

async fn reread(coord: &dyn Coordinator, paths: &Paths, view: &mut ClusterView, part: &Part) -> Result<(), CoordError> {
    match part {
        Part::Shards => {
            let names: BTreeSet<String> = children_or_empty(coord, &paths.shards()).await?.into_iter().collect();
            view.shards.retain(|name, _| names.contains(name));
            for name in names {
                if !view.shards.contains_key(&name)
                    && let Some(sv) = read_shard(coord, paths, &name).await?
                {
                    view.shards.insert(name, sv);
                }
            }
        }
        Part::Shard(name) => match read_shard(coord, paths, name).await? {
            Some(sv) => {
                view.shards.insert(name.clone(), sv);
            }
            None => {
                view.shards.remove(name);
            }
        },
        Part::Ring => {
            view.ring = None;
            view.ring_node_version = 0;
            if let Some((data, stat)) = coord.get(&paths.ring()).await? {
                match serde_json::from_slice::<RingState>(&data) {
                    Ok(ring) => {
                        view.ring = Some(ring);
                        view.ring_node_version = stat.version;
                    }
                    Err(e) => warn!(error = %e, "ignoring an unreadable ring"),
                }
            }
        }
        Part::RingLock => {
            view.ring_lock = match coord.get(&paths.ring_lock()).await? {
                Some((data, _)) => String::from_utf8(data).ok(),
                None => None,
            };
        }
        Part::Removing => {
            view.removing = children_or_empty(coord, &paths.removing()).await?.into_iter().collect();
        }
        Part::Users => {
            (view.users, view.users_version) = match coord.get(&paths.users()).await? {
                Some((data, stat)) => (Some(String::from_utf8_lossy(&data).into_owned()), stat.version),
                None => (None, 0),
            };
        }
    }
    Ok(())
}

async fn children_or_empty(coord: &dyn Coordinator, path: &str) -> Result<Vec<String>, CoordError> {
    match coord.children(path).await {
        Ok(c) => Ok(c),
        Err(CoordError::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Applies `changes` to `view`, re-reading only what they name.
async fn apply(
    coord: &dyn Coordinator,
    paths: &Paths,
    view: &mut ClusterView,
    changes: &Changes,
) -> Result<(), CoordError> {
    if changes.all {
        *view = read_view(coord, paths).await?;
        return Ok(());
    }
    let parts: BTreeSet<Part> = changes.paths.iter().filter_map(|p| part_of(paths, p)).collect();
    for part in &parts {
        reread(coord, paths, view, part).await?;
    }
    Ok(())
}

/// Keeps a [`ClusterView`] current (see the module documentation), publishing only when the
/// view changed. The task ends when every receiver is dropped or the coordinator is closed.
pub fn watch_view(coord: Arc<dyn Coordinator>, paths: Paths) -> watch::Receiver<Arc<ClusterView>> {
    let (tx, rx) = watch::channel(Arc::new(ClusterView::default()));
    tokio::spawn(async move {
        let mut tree = loop {
            match coord.watch_tree(paths.root()).await {
                Ok(w) => break w,
                Err(CoordError::Closed) => return,
                Err(e) => {
                    warn!(error = %e, "cannot watch the cluster; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let mut view = ClusterView::default();
        let mut pending = Changes {
            all: true,
            ..Default::default()
        };
        loop {
            tokio::select! {
                changes = tree.changed() => match changes {
                    Ok(c) => {
                        pending.all |= c.all;
                        pending.paths.extend(c.paths);
                    }
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
            // Coalesce bursts of events (a registration is several writes) into one read.
            tokio::time::sleep(Duration::from_millis(2)).await;
            match apply(coord.as_ref(), &paths, &mut view, &pending).await {
                Ok(()) => {
                    pending = Changes::default();
                    tx.send_if_modified(|cur| {
                        if **cur == view {
                            return false;
                        }
                        debug!(shards = view.shards.len(), "cluster view changed");
                        *cur = Arc::new(view.clone());
                        true
                    });
                }
                Err(CoordError::Closed) => return,
                Err(e) => {
                    // Keep what is pending and read everything again: a partial update may
                    // have been left half-applied.
                    debug!(error = %e, "reading the cluster view failed; retrying");
                    pending.all = true;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CreateMode, MemoryCluster};

    /// Waits until the watched view equals a full read of the tree.
    async fn agrees(rx: &mut watch::Receiver<Arc<ClusterView>>, coord: &dyn Coordinator, paths: &Paths) -> ClusterView {
        let full = read_view(coord, paths).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| **v == full))
            .await
            .expect("the watched view catches up")
            .unwrap();
        (**seen).clone()
    }

    #[tokio::test]
    async fn the_watched_view_follows_every_part_of_the_tree() {
        let cluster = MemoryCluster::new();
        let (a, b) = (Arc::new(cluster.connect()), cluster.connect());
        let paths = Paths::new("c");
        let mut rx = watch_view(a.clone(), paths.clone());
        b.ensure_path(&paths.nodes("s1")).await.unwrap();
        let info = |id: &str| {
            serde_json::to_vec(&NodeInfo {
                id: id.into(),
                shard: "s1".into(),
                addr: "h:1".into(),
                cluster_addr: "h:2".into(),
                tls_addr: None,
            })
            .unwrap()
        };
        b.create(&paths.node("s1", "n1"), &info("n1"), CreateMode::Ephemeral)
            .await
            .unwrap();
        b.create(&paths.leader("s1"), b"n1", CreateMode::Ephemeral)
            .await
            .unwrap();
        let v = agrees(&mut rx, a.as_ref(), &paths).await;
        assert_eq!(v.shards["s1"].leader_lock.as_deref(), Some("n1"));
        // A second shard, the ring, its lock, a removal request: each re-read on its own.
        b.ensure_path(&paths.nodes("s2")).await.unwrap();
        b.create(
            &paths.ring(),
            br#"{"version":1,"shards":["s1"]}"#,
            CreateMode::Persistent,
        )
        .await
        .unwrap();
        b.create(&paths.ring_lock(), b"n1", CreateMode::Ephemeral)
            .await
            .unwrap();
        b.ensure_path(&paths.removing_shard("s1")).await.unwrap();
        let v = agrees(&mut rx, a.as_ref(), &paths).await;
        assert_eq!((v.shards.len(), v.ring.map(|r| r.version)), (2, Some(1)));
        // b's session ends: its ephemeral nodes go, and the view follows.
        drop(b);
        let v = agrees(&mut rx, a.as_ref(), &paths).await;
        assert!(v.shards["s1"].nodes.is_empty() && v.ring_lock.is_none());
    }

    #[test]
    fn paths_map_to_parts() {
        let p = Paths::new("c");
        assert_eq!(
            part_of(&p, "/kvstore/c/shards/s1/nodes/n1"),
            Some(Part::Shard("s1".into()))
        );
        assert_eq!(part_of(&p, "/kvstore/c/shards/s1"), Some(Part::Shard("s1".into())));
        assert_eq!(part_of(&p, "/kvstore/c/shards"), Some(Part::Shards));
        assert_eq!(part_of(&p, "/kvstore/c/ring"), Some(Part::Ring));
        assert_eq!(part_of(&p, "/kvstore/c/ring-lock"), Some(Part::RingLock));
        assert_eq!(part_of(&p, "/kvstore/c/removing/s2"), Some(Part::Removing));
        assert_eq!(part_of(&p, "/kvstore/c/gates/g1"), None);
        assert_eq!(part_of(&p, "/kvstore/other/ring"), None);
    }
}
