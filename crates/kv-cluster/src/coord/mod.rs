//! The [`Coordinator`] trait: the slice of ZooKeeper that kvstore uses.
//!
//! - [`zookeeper`]: [`ZkCoordinator`](zookeeper::ZkCoordinator), a real ensemble.
//! - [`memory`]: [`MemoryCoordinator`](memory::MemoryCoordinator), in-process, same semantics
//!   (versions, ephemeral nodes owned by sessions, sessions that can expire).

pub mod memory;
pub mod zookeeper;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

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
}

/// Notifies that something under a watched path changed (or may have: after a reconnect,
/// events can be lost, so a reconnect also notifies). Consumers re-read what they need.
pub struct TreeWatch {
    rx: watch::Receiver<u64>,
}

impl TreeWatch {
    pub(crate) fn new(rx: watch::Receiver<u64>) -> TreeWatch {
        TreeWatch { rx }
    }

    /// Waits for the next change. Errors only when the coordinator is gone.
    pub async fn changed(&mut self) -> Result<(), CoordError> {
        self.rx.changed().await.map_err(|_| CoordError::Closed)
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

    /// A round trip that succeeds only while the session is alive. A leader times these to
    /// hold a lease: the session cannot expire sooner than a session timeout after the moment
    /// a successful probe was sent.
    async fn probe(&self) -> Result<(), CoordError>;

    /// The session's state, as a watch channel.
    fn session(&self) -> watch::Receiver<SessionStatus>;

    /// The current session id (owner of the ephemeral nodes this process creates).
    fn session_id(&self) -> i64;

    /// The negotiated session timeout.
    fn session_timeout(&self) -> Duration;

    /// Ends the session (its ephemeral nodes disappear at once) and stops reconnecting.
    async fn close(&self);
}
