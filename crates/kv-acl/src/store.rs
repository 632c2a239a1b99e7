//! One user store for the whole cluster: the users as ACL file text in the coordinator
//! (`/kvstore/<cluster>/users`, passwords as SHA-256 hashes only), followed by every gate
//! and server. A user defined once, at any gate or server, is known by all of them.
//!
//! - Seeding: a process started with `--requirepass` or `--aclfile` creates the store from
//!   them if it does not exist yet; once it exists, it is the truth (a process whose flags
//!   disagree says so in its log). A cluster whose processes have neither stays open.
//! - Changing (`ACL SETUSER`, `DELUSER`, `LOAD`): the change is applied to the stored users
//!   and written back with a version check, retried when another process wrote first, so
//!   concurrent changes at two gates both land.
//! - Following: [`follow`] replaces a process's [`Acl`] whenever the cluster view reports new
//!   stored text.

use std::sync::Arc;
use std::time::Duration;

use kv_cluster::{ClusterView, CoordError, Coordinator, CreateMode, Paths};
use kv_proto::Frame;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::users::{Acl, Users};

/// The cluster's stored users.
#[derive(Clone)]
pub struct Store {
    coord: Arc<dyn Coordinator>,
    path: String,
}

/// Version-checked writes tried before giving up on a change (each loses only to another
/// process's change, so this is reached only under a storm of them).
const ATTEMPTS: usize = 20;

impl Store {
    pub fn new(coord: Arc<dyn Coordinator>, paths: &Paths) -> Store {
        Store {
            coord,
            path: paths.users(),
        }
    }

    /// Creates the store holding `users` unless it exists. Returns the stored users (the
    /// ones given, or those already there).
    pub async fn seed(&self, users: &Users) -> Result<Users, CoordError> {
        self.coord.ensure_path(parent(&self.path)).await?;
        match self
            .coord
            .create(&self.path, users.to_file().as_bytes(), CreateMode::Persistent)
            .await
        {
            Ok(()) => {
                info!("seeded the cluster's users from this process's flags");
                return Ok(users.clone());
            }
            Err(CoordError::NodeExists) => {}
            Err(e) => return Err(e),
        }
        let stored = self.read().await?.map(|(u, _)| u).unwrap_or_else(|| users.clone());
        if stored != *users {
            warn!("the cluster's users differ from this process's --requirepass/--aclfile; the cluster's are used");
        }
        Ok(stored)
    }

    /// The stored users and the node's version, if the store exists.
    async fn read(&self) -> Result<Option<(Users, i32)>, CoordError> {
        let Some((data, stat)) = self.coord.get(&self.path).await? else {
            return Ok(None);
        };
        match Users::parse(&String::from_utf8_lossy(&data)) {
            Ok(users) => Ok(Some((users, stat.version))),
            Err(e) => Err(CoordError::Other(format!("the stored users cannot be read: {}", e.0))),
        }
    }

    /// Runs an `ACL` command that may change users against the stored users (or `local`'s,
    /// before anything was stored) and stores the result; `local` takes it at once. The
    /// reply is `command`'s.
    pub async fn change(&self, local: &Acl, command: impl Fn(&Acl) -> Frame) -> Frame {
        for _ in 0..ATTEMPTS {
            let stored = match self.read().await {
                Ok(s) => s,
                Err(e) => return Frame::error(format!("ERR the cluster's users cannot be read: {e}")),
            };
            let (base, version) = match stored {
                Some((users, v)) => (users, Some(v)),
                None => ((*local.users()).clone(), None),
            };
            let scratch = Acl::new(base);
            let reply = command(&scratch);
            if reply.as_error().is_some() || scratch.generation() == 0 {
                return reply;
            }
            let next = (*scratch.users()).clone();
            let text = next.to_file();
            let written = match version {
                Some(v) => self.coord.set(&self.path, text.as_bytes(), Some(v)).await.map(|_| ()),
                None => {
                    let _ = self.coord.ensure_path(parent(&self.path)).await;
                    self.coord
                        .create(&self.path, text.as_bytes(), CreateMode::Persistent)
                        .await
                }
            };
            match written {
                Ok(()) => {
                    local.replace(next);
                    return reply;
                }
                Err(CoordError::BadVersion | CoordError::NodeExists) => continue,
                Err(e) => return Frame::error(format!("ERR the cluster's users cannot be stored: {e}")),
            }
        }
        Frame::error("ERR the cluster's users are changing too fast; try again")
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("/", |(p, _)| p)
}

/// Keeps `acl` equal to the stored users as `view` reports them, until the view's sender
/// is gone. Text that cannot be parsed is logged and ignored (the users in force stay).
pub fn follow(acl: Arc<Acl>, mut view: watch::Receiver<Arc<ClusterView>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut applied: Option<String> = None;
        loop {
            let text = view.borrow_and_update().users.clone();
            if text.is_some() && text != applied {
                match Users::parse(text.as_deref().unwrap_or_default()) {
                    Ok(users) => {
                        acl.replace(users);
                        applied = text;
                    }
                    Err(e) => warn!(error = %e.0, "ignoring unreadable stored users"),
                }
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The users a process starts with: the stored ones when the store exists; else its own
/// (`own`), which seed the store when they come from its flags (`from_flags`). Tried for
/// `patience`; a coordinator that does not answer by then leaves the process with its own
/// users until [`follow`] reads the store.
pub async fn initial(store: &Store, own: Users, from_flags: bool, patience: Duration) -> Users {
    let attempt = async {
        loop {
            let r = if from_flags {
                store.seed(&own).await
            } else {
                store.read().await.map(|s| s.map_or_else(|| own.clone(), |(u, _)| u))
            };
            match r {
                Ok(users) => return users,
                Err(CoordError::Closed) => return own.clone(),
                Err(e) => {
                    warn!(error = %e, "cannot read the cluster's users yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    match tokio::time::timeout(patience, attempt).await {
        Ok(users) => users,
        Err(_) => {
            warn!("the cluster's users could not be read at start; using this process's own until they can");
            own
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_cluster::MemoryCluster;

    fn setuser(rules: &'static str) -> impl Fn(&Acl) -> Frame {
        move |acl: &Acl| {
            let args: Vec<bytes::Bytes> = rules
                .split_whitespace()
                .map(|s| bytes::Bytes::from(s.to_string()))
                .collect();
            let me = acl.users().get("default").unwrap().clone();
            crate::command::acl(acl, &Default::default(), &crate::command::NoStorage, &me, &args)
        }
    }

    #[tokio::test]
    async fn a_user_defined_at_one_process_reaches_every_other() {
        let cluster = MemoryCluster::new();
        let paths = Paths::new("c");
        let (a, b): (Arc<dyn Coordinator>, Arc<dyn Coordinator>) =
            (Arc::new(cluster.connect()), Arc::new(cluster.connect()));
        let (store_a, store_b) = (Store::new(a.clone(), &paths), Store::new(b.clone(), &paths));
        let seeded = store_a.seed(&Users::new(Some(b"pw"))).await.unwrap();
        // A later process with other flags takes the stored users.
        assert_eq!(store_b.seed(&Users::new(None)).await.unwrap(), seeded);
        let (acl_a, acl_b) = (Acl::new(seeded.clone()), Arc::new(Acl::new(seeded)));
        let _follow = follow(acl_b.clone(), kv_cluster::view::watch_view(b.clone(), paths.clone()));
        let reply = store_a
            .change(&acl_a, setuser("ACL SETUSER alice on >a +@all ~*"))
            .await;
        assert_eq!(reply, Frame::simple("OK"));
        assert!(acl_a.users().authenticate(b"alice", b"a").is_some());
        tokio::time::timeout(Duration::from_secs(5), async {
            while acl_b.users().authenticate(b"alice", b"a").is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the other process follows");
        // Changes at both land (each on top of the other).
        let (r1, r2) = tokio::join!(
            store_a.change(&acl_a, setuser("ACL SETUSER bob on nopass")),
            store_b.change(&acl_b, setuser("ACL SETUSER carol on nopass")),
        );
        assert_eq!((r1, r2), (Frame::simple("OK"), Frame::simple("OK")));
        let stored = store_a.read().await.unwrap().unwrap().0;
        assert!(stored.get("bob").is_some() && stored.get("carol").is_some() && stored.get("alice").is_some());
        // A refused change stores nothing.
        let before = store_a.read().await.unwrap();
        assert!(
            store_a
                .change(&acl_a, setuser("ACL SETUSER bob +nosuch"))
                .await
                .as_error()
                .is_some()
        );
        assert_eq!(store_a.read().await.unwrap(), before);
    }
}
