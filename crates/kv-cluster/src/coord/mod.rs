//! The [`Coordinator`] trait: the slice of ZooKeeper that kvstore uses.
//!
//! - [`zookeeper`]: [`ZkCoordinator`](zookeeper::ZkCoordinator), a real ensemble.
//! - [`memory`]: [`MemoryCoordinator`](memory::MemoryCoordinator), in-process, same semantics
//!   (versions, ephemeral nodes owned by sessions, sessions that can expire).

pub mod memory;
pub mod zookeeper;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

/// What went wrong talking to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// `create` of a path that exists. For the leader lock: somebody else holds it.
    #[error("node already exists")]
    NodeExists,
    /// The path (or, for `create`, its parent) does not exist.
    #[error("no such node")]
    NoNode,
    /// A version-checked write lost a race: re-read and decide again.
    #[error("version mismatch")]
    BadVersion,
    /// `delete` of a node that still has children.
    #[error("node has children")]
    NotEmpty,
    /// The session ended; ephemeral nodes are gone. A new session follows automatically
    /// ([`SessionStatus::generation`] grows); re-register and re-elect.
    #[error("session expired")]
    SessionExpired,
    /// No connection right now. The session may still be alive: retry.
    #[error("connection to the coordinator lost")]
    ConnectionLoss,
    /// The coordinator was closed by this process.
    #[error("coordinator closed")]
    Closed,
    /// Anything else, with the coordinator's own description.
    #[error("coordinator error: {0}")]
    Other(String),
}

/// Persistence of a created node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Lives until deleted.
    Persistent,
    /// Deleted when the creating session ends.
    Ephemeral,
}

/// Metadata of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStat {
    /// Data version, for version-checked `set` and `delete`.
    pub version: i32,
    /// Session owning an ephemeral node; 0 for persistent nodes.
    pub owner: i64,
}

/// The state of this process's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStatus {
    /// Grows each time the session expired and a new one replaced it. Ephemeral nodes and
    /// leadership from an older generation are gone.
    pub generation: u64,
    /// False while disconnected (the session may still be alive, or may be expiring).
    pub connected: bool,
    /// True after [`Coordinator::close`].
    pub closed: bool,
    /// Times the connection came back after it was lost (in the same session or a new one).
    pub reconnects: u64,
}

/// What changed under a watched path since the consumer last looked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Anything may have changed (the watch was armed anew after a reconnect or a session
    /// change, when events can be lost, or too many paths piled up): re-read everything.
    pub all: bool,
    /// Paths created, deleted or changed (nodes whose children changed included).
    pub paths: BTreeSet<String>,
}

/// Paths queued beyond this collapse into [`Changes::all`].
const MAX_QUEUED_PATHS: usize = 4096;

#[derive(Default)]
struct Queue {
    changes: Changes,
    closed: bool,
}

/// The producing side of a [`TreeWatch`]: coalesces events until the consumer takes them.
#[derive(Clone)]
pub(crate) struct TreeEvents {
    queue: Arc<Mutex<Queue>>,
    notify: Arc<Notify>,
}

impl TreeEvents {
    /// A new watch and its producer.
    pub(crate) fn channel() -> (TreeEvents, TreeWatch) {
        let events = TreeEvents {
            queue: Arc::new(Mutex::new(Queue {
                changes: Changes {
                    all: true,
                    ..Default::default()
                },
                closed: false,
            })),
            notify: Arc::new(Notify::new()),
        };
        let watch = TreeWatch { events: events.clone() };
        (events, watch)
    }

    /// `path` changed.
    pub(crate) fn path(&self, path: &str) {
        {
            let mut q = self.queue.lock().expect("tree events");
            if !q.changes.all {
                q.changes.paths.insert(path.to_string());
                if q.changes.paths.len() > MAX_QUEUED_PATHS {
                    q.changes.all = true;
                    q.changes.paths.clear();
                }
            }
        }
        self.notify.notify_one();
    }

    /// Anything may have changed.
    pub(crate) fn all(&self) {
        {
            let mut q = self.queue.lock().expect("tree events");
            q.changes.all = true;
            q.changes.paths.clear();
        }
        self.notify.notify_one();
    }

    /// No more events will come.
    pub(crate) fn close(&self) {
        self.queue.lock().expect("tree events").closed = true;
        self.notify.notify_one();
    }

    /// True when the consumer dropped its watch.
    pub(crate) fn abandoned(&self) -> bool {
        Arc::strong_count(&self.queue) == 1
    }
}

/// Reports what changed under a watched path. Events are coalesced: a consumer that reads
/// slowly gets one batch, never a backlog. A new watch starts with [`Changes::all`].
pub struct TreeWatch {
    events: TreeEvents,
}

impl TreeWatch {
    /// Waits for the next changes. Errors only when the coordinator is gone.
    pub async fn changed(&mut self) -> Result<Changes, CoordError> {
        loop {
            let notified = self.events.notify.notified();
            {
                let mut q = self.events.queue.lock().expect("tree events");
                if q.changes.all || !q.changes.paths.is_empty() {
                    return Ok(std::mem::take(&mut q.changes));
                }
                if q.closed {
                    return Err(CoordError::Closed);
                }
            }
            notified.await;
        }
    }
}

/// A ZooKeeper-shaped coordination service bound to one session.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// Creates `path` holding `data`; its parent must exist.
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<(), CoordError>;

    /// Creates `path` and any missing ancestors as empty persistent nodes (`mkdir -p`).
    async fn ensure_path(&self, path: &str) -> Result<(), CoordError>;

    /// Data and metadata of `path`, `None` when absent.
    async fn get(&self, path: &str) -> Result<Option<(Vec<u8>, NodeStat)>, CoordError>;

    /// Replaces the data of `path`; with `version`, only if the node is at that version.
    /// Returns the new version.
    async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<i32, CoordError>;

    /// Deletes `path`; with `version`, only if the node is at that version.
    async fn delete(&self, path: &str, version: Option<i32>) -> Result<(), CoordError>;

    /// Names of the children of `path`.
    async fn children(&self, path: &str) -> Result<Vec<String>, CoordError>;

    /// Watches `path` and everything below it, across reconnects and session expiry.
    async fn watch_tree(&self, path: &str) -> Result<TreeWatch, CoordError>;

    /// Catches up with the ensemble's leader (a ZooKeeper `sync`, so a server cut off from
    /// its quorum cannot answer from stale data), then tells whether `path` is an ephemeral
    /// node of this session. A leader times these to hold its lease: if the answer is yes, the
    /// session was alive and held `path` after the call was sent, so `path` cannot vanish
    /// (except by this process deleting it) sooner than a session timeout after that moment.
    async fn confirm_owner(&self, path: &str) -> Result<bool, CoordError>;

    /// Deletes `path` only if it is an ephemeral node of this session (a lock this process
    /// holds). True when deleted. Never deletes another session's node: the check and the
    /// delete are tied by the node's version, and only the owner deletes its own locks.
    async fn delete_owned(&self, path: &str) -> Result<bool, CoordError> {
        let Some((_, stat)) = self.get(path).await? else {
            return Ok(false);
        };
        if stat.owner != self.session_id() {
            return Ok(false);
        }
        match self.delete(path, Some(stat.version)).await {
            Ok(()) => Ok(true),
            Err(CoordError::NoNode | CoordError::BadVersion) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The session's state, as a watch channel.
    fn session(&self) -> watch::Receiver<SessionStatus>;

    /// The current session id (owner of the ephemeral nodes this process creates).
    fn session_id(&self) -> i64;

    /// The negotiated session timeout.
    fn session_timeout(&self) -> Duration;

    /// Ends the session (its ephemeral nodes disappear at once) and stops reconnecting.
    async fn close(&self);
}
