//! Assembling a [`ClusterView`] from the coordinator and keeping it current.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::{ClusterView, CoordError, Coordinator, NodeInfo, Paths, RingState, ShardState, ShardView};

/// Reads every shard's registrations, state and leader lock.
pub async fn read_view(coord: &dyn Coordinator, paths: &Paths) -> Result<ClusterView, CoordError> {
    let mut view = ClusterView::default();
    for shard in children_or_empty(coord, &paths.shards()).await? {
        let mut sv = ShardView {
            name: shard.clone(),
            ..Default::default()
        };
        for id in children_or_empty(coord, &paths.nodes(&shard)).await? {
            let Some((data, _)) = coord.get(&paths.node(&shard, &id)).await? else {
                continue;
            };
            match serde_json::from_slice::<NodeInfo>(&data) {
                Ok(info) => {
                    sv.nodes.insert(id, info);
                }
                Err(e) => warn!(shard, id, error = %e, "ignoring unreadable node registration"),
            }
        }
        if let Some((data, stat)) = coord.get(&paths.state(&shard)).await? {
            match serde_json::from_slice::<ShardState>(&data) {
                Ok(state) => {
                    sv.state = Some(state);
                    sv.state_version = stat.version;
                }
                Err(e) => warn!(shard, error = %e, "ignoring unreadable shard state"),
            }
        }
        if let Some((data, _)) = coord.get(&paths.leader(&shard)).await? {
            sv.leader_lock = String::from_utf8(data).ok();
        }
        view.shards.insert(shard, sv);
    }
    if let Some((data, stat)) = coord.get(&paths.ring()).await? {
        match serde_json::from_slice::<RingState>(&data) {
            Ok(ring) => {
                view.ring = Some(ring);
                view.ring_node_version = stat.version;
            }
            Err(e) => warn!(error = %e, "ignoring an unreadable ring"),
        }
    }
    view.removing = children_or_empty(coord, &paths.removing()).await?.into_iter().collect();
    if let Some((data, _)) = coord.get(&paths.ring_lock()).await? {
        view.ring_lock = String::from_utf8(data).ok();
    }
    Ok(view)
}

async fn children_or_empty(coord: &dyn Coordinator, path: &str) -> Result<Vec<String>, CoordError> {
    match coord.children(path).await {
        Ok(c) => Ok(c),
        Err(CoordError::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Keeps a [`ClusterView`] current: re-reads the tree after every change notification (and
/// after reconnects), publishing only when the view changed. The task ends when every
/// receiver is dropped or the coordinator is closed.
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
        let mut session = coord.session();
        loop {
            match read_view(coord.as_ref(), &paths).await {
                Ok(view) => {
                    tx.send_if_modified(|cur| {
                        if **cur == view {
                            return false;
                        }
                        debug!(shards = view.shards.len(), "cluster view changed");
                        *cur = Arc::new(view);
                        true
                    });
                }
                Err(CoordError::Closed) => return,
                Err(e) => {
                    debug!(error = %e, "reading the cluster view failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = tx.closed() => return,
                    }
                    continue;
                }
            }
            tokio::select! {
                r = tree.changed() => if r.is_err() { return },
                r = session.changed() => if r.is_err() || session.borrow().closed { return },
                _ = tx.closed() => return,
            }
            // Coalesce bursts of events (a registration is several writes) into one read.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    rx
}
