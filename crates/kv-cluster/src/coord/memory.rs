//! The in-process coordinator: a tree in a mutex, shared by every session made from one
//! [`MemoryCluster`]. It runs the embedded local cluster (`cargo run`) and the in-process
//! tests with the semantics of ZooKeeper that kvstore relies on: versions, ephemeral nodes
//! owned by a session, session expiry and close.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{CoordError, Coordinator, CreateMode, NodeStat, SessionStatus, TreeEvents, TreeWatch};

#[derive(Debug)]
struct MemNode {
    data: Vec<u8>,
    version: i32,
    /// Owning session for ephemeral nodes, 0 for persistent ones.
    owner: i64,
}

#[derive(Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, MemNode>,
    next_session: i64,
}

struct Shared {
    tree: Mutex<Tree>,
    /// Tree watches: the watched path and where its events go.
    watches: Mutex<Vec<(String, TreeEvents)>>,
}

/// One in-process coordination service. Clone it to share; [`MemoryCluster::connect`] opens
/// a session.
#[derive(Clone)]
pub struct MemoryCluster {
    shared: Arc<Shared>,
}

impl Default for MemoryCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCluster {
    /// An empty tree.
    pub fn new() -> MemoryCluster {
        MemoryCluster {
            shared: Arc::new(Shared {
                tree: Mutex::new(Tree::default()),
                watches: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Opens a new session.
    pub fn connect(&self) -> MemoryCoordinator {
        let session = self.new_session_id();
        MemoryCoordinator {
            cluster: self.clone(),
            session: AtomicI64::new(session),
            status: watch::channel(SessionStatus {
                generation: 0,
                connected: true,
                closed: false,
                reconnects: 0,
            })
            .0,
        }
    }

    fn new_session_id(&self) -> i64 {
        let mut tree = self.shared.tree.lock().expect("tree lock");
        tree.next_session += 1;
        tree.next_session
    }

    /// Tells the watches under which each of `paths` lies.
    fn changed(&self, paths: &[String]) {
        let mut watches = self.shared.watches.lock().expect("watches lock");
        watches.retain(|(_, events)| !events.abandoned());
        for (root, events) in watches.iter() {
            for p in paths.iter().filter(|p| p.starts_with(root.as_str())) {
                events.path(p);
            }
        }
    }

    fn drop_session(&self, session: i64) {
        let mut tree = self.shared.tree.lock().expect("tree lock");
        let removed: Vec<String> = tree
            .nodes
            .iter()
            .filter(|(_, n)| n.owner == session)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &removed {
            tree.nodes.remove(k);
        }
        drop(tree);
        self.changed(&removed);
    }
}

/// A session on a [`MemoryCluster`]. Dropping it ends the session, like dropping a
/// ZooKeeper client.
pub struct MemoryCoordinator {
    cluster: MemoryCluster,
    session: AtomicI64,
    status: watch::Sender<SessionStatus>,
}

impl MemoryCoordinator {
    /// Simulates session expiry: this session's ephemeral nodes vanish and a new session
    /// (next generation) replaces it, as [`super::zookeeper::ZkCoordinator`] does.
    pub fn expire(&self) {
        let old = self.session.load(Ordering::SeqCst);
        self.session.store(self.cluster.new_session_id(), Ordering::SeqCst);
        self.cluster.drop_session(old);
        self.status.send_modify(|s| s.generation += 1);
    }

    fn check_open(&self) -> Result<i64, CoordError> {
        if self.status.borrow().closed {
            return Err(CoordError::Closed);
        }
        Ok(self.session.load(Ordering::SeqCst))
    }

    /// Runs `f` on the tree; `f` returns its result and the paths it changed.
    fn with_tree<T>(
        &self,
        f: impl FnOnce(&mut Tree, i64) -> Result<(T, Vec<String>), CoordError>,
    ) -> Result<T, CoordError> {
        let session = self.check_open()?;
        let mut tree = self.cluster.shared.tree.lock().expect("tree lock");
        let (out, changed) = f(&mut tree, session)?;
        drop(tree);
        self.cluster.changed(&changed);
        Ok(out)
    }
}

impl Drop for MemoryCoordinator {
    fn drop(&mut self) {
        self.cluster.drop_session(self.session.load(Ordering::SeqCst));
    }
}

fn parent(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    (i > 0).then(|| &path[..i])
}

fn check_path(path: &str) -> Result<(), CoordError> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(CoordError::Other(format!("invalid path `{path}`")));
    }
    Ok(())
}

#[async_trait]
impl Coordinator for MemoryCoordinator {
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<(), CoordError> {
        check_path(path)?;
        self.with_tree(|tree, session| {
            if tree.nodes.contains_key(path) {
                return Err(CoordError::NodeExists);
            }
            if let Some(p) = parent(path)
                && !tree.nodes.contains_key(p)
            {
                return Err(CoordError::NoNode);
            }
            let owner = if mode == CreateMode::Ephemeral { session } else { 0 };
            tree.nodes.insert(
                path.to_string(),
                MemNode {
                    data: data.to_vec(),
                    version: 0,
                    owner,
                },
            );
            Ok(((), vec![path.to_string()]))
        })
    }

    async fn ensure_path(&self, path: &str) -> Result<(), CoordError> {
        check_path(path)?;
        self.with_tree(|tree, _| {
            let mut changed = Vec::new();
            for (i, _) in path.match_indices('/').skip(1).chain([(path.len(), "")]) {
                let prefix = &path[..i];
                if !tree.nodes.contains_key(prefix) {
                    tree.nodes.insert(
                        prefix.to_string(),
                        MemNode {
                            data: Vec::new(),
                            version: 0,
                            owner: 0,
                        },
                    );
                    changed.push(prefix.to_string());
                }
            }
            Ok(((), changed))
        })
    }

    async fn get(&self, path: &str) -> Result<Option<(Vec<u8>, NodeStat)>, CoordError> {
        self.with_tree(|tree, _| {
            let found = tree.nodes.get(path).map(|n| {
                (
                    n.data.clone(),
                    NodeStat {
                        version: n.version,
                        owner: n.owner,
                    },
                )
            });
            Ok((found, Vec::new()))
        })
    }

    async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<i32, CoordError> {
        self.with_tree(|tree, _| {
            let node = tree.nodes.get_mut(path).ok_or(CoordError::NoNode)?;
            if version.is_some_and(|v| v != node.version) {
                return Err(CoordError::BadVersion);
            }
            node.data = data.to_vec();
            node.version += 1;
            Ok((node.version, vec![path.to_string()]))
        })
    }

    async fn delete(&self, path: &str, version: Option<i32>) -> Result<(), CoordError> {
        self.with_tree(|tree, _| {
            let node = tree.nodes.get(path).ok_or(CoordError::NoNode)?;
            if version.is_some_and(|v| v != node.version) {
                return Err(CoordError::BadVersion);
            }
            let prefix = format!("{path}/");
            if tree
                .nodes
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&prefix))
            {
                return Err(CoordError::NotEmpty);
            }
            tree.nodes.remove(path);
            Ok(((), vec![path.to_string()]))
        })
    }

    async fn children(&self, path: &str) -> Result<Vec<String>, CoordError> {
        self.with_tree(|tree, _| {
            if !tree.nodes.contains_key(path) {
                return Err(CoordError::NoNode);
            }
            let prefix = format!("{path}/");
            let names = tree
                .nodes
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter_map(|(k, _)| {
                    let rest = &k[prefix.len()..];
                    (!rest.contains('/')).then(|| rest.to_string())
                })
                .collect();
            Ok((names, Vec::new()))
        })
    }

    async fn watch_tree(&self, path: &str) -> Result<TreeWatch, CoordError> {
        self.check_open()?;
        let (events, watch) = TreeEvents::channel();
        let mut watches = self.cluster.shared.watches.lock().expect("watches lock");
        watches.push((path.to_string(), events));
        Ok(watch)
    }

    async fn confirm_owner(&self, path: &str) -> Result<bool, CoordError> {
        self.with_tree(|tree, session| {
            let owned = tree.nodes.get(path).is_some_and(|n| n.owner == session);
            Ok((owned, Vec::new()))
        })
    }

    fn session(&self) -> watch::Receiver<SessionStatus> {
        self.status.subscribe()
    }

    fn session_id(&self) -> i64 {
        self.session.load(Ordering::SeqCst)
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_secs(2)
    }

    async fn close(&self) {
        self.status.send_modify(|s| {
            s.closed = true;
            s.connected = false;
        });
        self.cluster.drop_session(self.session.load(Ordering::SeqCst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_ephemerals_and_sessions() {
        let cluster = MemoryCluster::new();
        let a = cluster.connect();
        let b = cluster.connect();
        assert_eq!(
            a.create("/x/y", b"", CreateMode::Persistent).await,
            Err(CoordError::NoNode)
        );
        a.ensure_path("/x/y").await.unwrap();
        a.create("/x/y/e", b"1", CreateMode::Ephemeral).await.unwrap();
        assert_eq!(
            b.create("/x/y/e", b"2", CreateMode::Ephemeral).await,
            Err(CoordError::NodeExists)
        );
        assert_eq!(b.children("/x/y").await.unwrap(), vec!["e".to_string()]);
        let (_, stat) = b.get("/x/y/e").await.unwrap().unwrap();
        assert_eq!(stat.owner, a.session_id());
        assert_eq!(
            b.set("/x/y/e", b"3", Some(stat.version + 1)).await,
            Err(CoordError::BadVersion)
        );
        assert_eq!(b.set("/x/y/e", b"3", Some(stat.version)).await, Ok(1));
        assert_eq!(b.delete("/x/y", None).await, Err(CoordError::NotEmpty));

        let mut watch = b.watch_tree("/x").await.unwrap();
        assert!(watch.changed().await.unwrap().all, "a new watch starts with everything");
        assert!(b.confirm_owner("/x/y/e").await == Ok(false), "a's node, not b's");
        assert!(a.confirm_owner("/x/y/e").await == Ok(true));
        let generation = a.session().borrow().generation;
        a.expire();
        assert_eq!(a.session().borrow().generation, generation + 1);
        let changes = watch.changed().await.unwrap();
        assert_eq!(changes.paths, ["/x/y/e".to_string()].into());
        assert_eq!(b.get("/x/y/e").await.unwrap(), None, "ephemeral gone with its session");
        assert_eq!(a.confirm_owner("/x/y/e").await, Ok(false));

        a.create("/x/y/e", b"1", CreateMode::Ephemeral).await.unwrap();
        assert_eq!(
            b.delete_owned("/x/y/e").await,
            Ok(false),
            "only its owner deletes a lock"
        );
        assert_eq!(a.delete_owned("/x/y/e").await, Ok(true));
        a.create("/x/y/e", b"1", CreateMode::Ephemeral).await.unwrap();
        drop(a);
        assert_eq!(b.get("/x/y/e").await.unwrap(), None, "dropping a session ends it");
        b.close().await;
        assert_eq!(b.get("/x").await, Err(CoordError::Closed));
    }
}
