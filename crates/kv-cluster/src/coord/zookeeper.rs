//! [`ZkCoordinator`]: the [`Coordinator`] on a real ZooKeeper ensemble, via the
//! `zookeeper-client` crate.
//!
//! What this layer adds to the client:
//! - **Session replacement.** `Expired` is final for a ZooKeeper client. A supervisor task
//!   builds a new client and bumps [`SessionStatus::generation`], so owners of ephemeral
//!   nodes know to re-register.
//! - **Access control.** With [`ZkAuth`], every session authenticates with ZooKeeper's
//!   digest scheme and every node it creates carries the ACL `auth::cdrwa` (all rights for
//!   that user, none for anyone else); without it, nodes are `world:anyone:cdrwa`.
//! - **Watches that survive.** A persistent recursive watch is re-armed on every new session,
//!   and a reconnect notifies too, because events during a disconnection can be lost.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tracing::{info, warn};
use zookeeper_client as zk;

use super::{CoordError, Coordinator, CreateMode, NodeStat, SessionStatus, TreeEvents, TreeWatch};

/// A session on a ZooKeeper ensemble, renewed when it expires.
pub struct ZkCoordinator {
    inner: Arc<Inner>,
}

/// ZooKeeper digest credentials (`user:password`), as `--zk-auth-file` holds them.
#[derive(Clone)]
pub struct ZkAuth {
    user: String,
    password: String,
}

impl std::fmt::Debug for ZkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ZkAuth {
    /// Parses `user:password` (surrounding whitespace ignored); the password may contain `:`.
    pub fn parse(text: &str) -> Result<ZkAuth, String> {
        let line = text.trim();
        let Some((user, password)) = line.split_once(':') else {
            return Err("expected one line `user:password`".into());
        };
        if user.is_empty() || password.is_empty() || line.contains('\n') {
            return Err("expected one line `user:password` with neither part empty".into());
        }
        Ok(ZkAuth {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// Reads and parses an auth file.
    pub fn from_file(path: &std::path::Path) -> Result<ZkAuth, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The identity ZooKeeper records in ACLs: `user:base64(sha1(user:password))`.
    pub fn digest_id(&self) -> String {
        use base64::Engine as _;
        use sha1::Digest as _;
        let hash = sha1::Sha1::digest(format!("{}:{}", self.user, self.password).as_bytes());
        format!(
            "{}:{}",
            self.user,
            base64::engine::general_purpose::STANDARD.encode(hash)
        )
    }
}

struct Inner {
    connect_string: String,
    requested_timeout: Duration,
    auth: Option<ZkAuth>,
    client: Mutex<Option<zk::Client>>,
    status: watch::Sender<SessionStatus>,
}

impl Inner {
    fn client(&self) -> Result<zk::Client, CoordError> {
        self.client
            .lock()
            .expect("client lock")
            .clone()
            .ok_or(CoordError::Closed)
    }

    fn closed(&self) -> bool {
        self.status.borrow().closed
    }

    /// The ACL of every node this session creates.
    fn acls(&self) -> zk::Acls<'static> {
        match self.auth {
            Some(_) => zk::Acls::creator_all(),
            None => zk::Acls::anyone_all(),
        }
    }
}

async fn open(connect_string: &str, timeout: Duration, auth: Option<&ZkAuth>) -> Result<zk::Client, CoordError> {
    let mut connector = zk::Client::connector().with_session_timeout(timeout);
    if let Some(a) = auth {
        connector = connector.with_auth("digest", format!("{}:{}", a.user, a.password).as_bytes());
    }
    connector.connect(connect_string).await.map_err(map_err)
}

impl ZkCoordinator {
    /// Opens a session (authenticated when `auth` is given); fails when no server answers
    /// within about the session timeout.
    pub async fn connect(
        connect_string: &str,
        session_timeout: Duration,
        auth: Option<ZkAuth>,
    ) -> Result<ZkCoordinator, CoordError> {
        let client = open(connect_string, session_timeout, auth.as_ref()).await?;
        info!(
            session = format_args!("{:#x}", client.session_id().0),
            timeout_ms = client.session_timeout().as_millis() as u64,
            "ZooKeeper session established"
        );
        let inner = Arc::new(Inner {
            connect_string: connect_string.to_string(),
            requested_timeout: session_timeout,
            auth,
            client: Mutex::new(Some(client.clone())),
            status: watch::channel(SessionStatus {
                generation: 0,
                connected: true,
                closed: false,
                reconnects: 0,
            })
            .0,
        });
        tokio::spawn(supervise(Arc::downgrade(&inner), client));
        Ok(ZkCoordinator { inner })
    }

    /// Like [`ZkCoordinator::connect`] but keeps trying (with backoff, logging each failure)
    /// until a session is established: a server or gate started before ZooKeeper waits for it.
    pub async fn connect_retrying(
        connect_string: &str,
        session_timeout: Duration,
        auth: Option<ZkAuth>,
    ) -> ZkCoordinator {
        let mut backoff = Duration::from_millis(200);
        loop {
            match Self::connect(connect_string, session_timeout, auth.clone()).await {
                Ok(c) => return c,
                Err(e) => {
                    warn!(zk = connect_string, error = %e, "cannot reach ZooKeeper; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Follows the session state: connection flaps update `connected`; expiry replaces the client.
async fn supervise(inner: Weak<Inner>, mut client: zk::Client) {
    loop {
        let mut states = client.state_watcher();
        drop(client);
        loop {
            let state = states.changed().await;
            let Some(inner) = inner.upgrade() else { return };
            match state {
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    inner.status.send_modify(|s| {
                        if !s.connected {
                            s.reconnects += 1;
                        }
                        s.connected = true;
                    });
                }
                zk::SessionState::Disconnected => {
                    warn!("ZooKeeper connection lost; the session may still be alive");
                    inner.status.send_modify(|s| s.connected = false);
                }
                zk::SessionState::Expired | zk::SessionState::AuthFailed => {
                    warn!(?state, "ZooKeeper session ended; opening a new one");
                    inner.status.send_modify(|s| s.connected = false);
                    break;
                }
                zk::SessionState::Closed => return,
            }
        }
        // Replace the client, with backoff, unless closed meanwhile.
        let mut backoff = Duration::from_millis(100);
        client = loop {
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed() {
                return;
            }
            match open(&inner.connect_string, inner.requested_timeout, inner.auth.as_ref()).await {
                Ok(c) => break c,
                Err(e) => {
                    warn!(error = %e, "cannot open a new ZooKeeper session; retrying");
                    drop(inner);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed() {
            return;
        }
        *inner.client.lock().expect("client lock") = Some(client.clone());
        inner.status.send_modify(|s| {
            s.generation += 1;
            s.reconnects += 1;
            s.connected = true;
        });
        info!(
            session = format_args!("{:#x}", client.session_id().0),
            "new ZooKeeper session established"
        );
    }
}

/// Runs one ZooKeeper request with a deadline of the session timeout: while disconnected,
/// a request would otherwise wait for the reconnection however long it takes.
async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, zk::Error>>,
) -> Result<T, CoordError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(CoordError::ConnectionLoss),
    }
}

fn map_err(e: zk::Error) -> CoordError {
    match e {
        zk::Error::NodeExists => CoordError::NodeExists,
        zk::Error::NoNode => CoordError::NoNode,
        zk::Error::BadVersion => CoordError::BadVersion,
        zk::Error::NotEmpty => CoordError::NotEmpty,
        zk::Error::SessionExpired => CoordError::SessionExpired,
        zk::Error::ConnectionLoss | zk::Error::Timeout => CoordError::ConnectionLoss,
        zk::Error::ClientClosed => CoordError::Closed,
        zk::Error::NoAuth => CoordError::Other(
            "ZooKeeper refused access (NoAuth): the node's ACL admits other credentials; check --zk-auth-file".into(),
        ),
        other => CoordError::Other(other.to_string()),
    }
}

fn stat(s: &zk::Stat) -> NodeStat {
    NodeStat {
        version: s.version,
        owner: s.ephemeral_owner,
    }
}

#[async_trait]
impl Coordinator for ZkCoordinator {
    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<(), CoordError> {
        let mode = match mode {
            CreateMode::Persistent => zk::CreateMode::Persistent,
            CreateMode::Ephemeral => zk::CreateMode::Ephemeral,
        };
        let client = self.inner.client()?;
        let options = mode.with_acls(self.inner.acls());
        bounded(self.session_timeout(), client.create(path, data, &options))
            .await
            .map(|_| ())
    }

    async fn ensure_path(&self, path: &str) -> Result<(), CoordError> {
        let client = self.inner.client()?;
        let options = zk::CreateMode::Persistent.with_acls(self.inner.acls());
        bounded(self.session_timeout(), client.mkdir(path, &options)).await
    }

    async fn get(&self, path: &str) -> Result<Option<(Vec<u8>, NodeStat)>, CoordError> {
        let client = self.inner.client()?;
        match bounded(self.session_timeout(), client.get_data(path)).await {
            Ok((data, s)) => Ok(Some((data, stat(&s)))),
            Err(CoordError::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<i32, CoordError> {
        let client = self.inner.client()?;
        bounded(self.session_timeout(), client.set_data(path, data, version))
            .await
            .map(|s| s.version)
    }

    async fn delete(&self, path: &str, version: Option<i32>) -> Result<(), CoordError> {
        let client = self.inner.client()?;
        bounded(self.session_timeout(), client.delete(path, version)).await
    }

    async fn children(&self, path: &str) -> Result<Vec<String>, CoordError> {
        let client = self.inner.client()?;
        bounded(self.session_timeout(), client.list_children(path)).await
    }

    async fn watch_tree(&self, path: &str) -> Result<TreeWatch, CoordError> {
        self.inner.client()?;
        let (events, watch) = TreeEvents::channel();
        tokio::spawn(keep_watching(Arc::downgrade(&self.inner), path.to_string(), events));
        Ok(watch)
    }

    async fn confirm_owner(&self, path: &str) -> Result<bool, CoordError> {
        let client = self.inner.client()?;
        let session = client.session_id().0;
        let limit = self.session_timeout();
        bounded(limit, client.sync("/")).await?;
        let found = bounded(limit, client.check_stat(path)).await?;
        Ok(found.is_some_and(|s| s.ephemeral_owner == session))
    }

    fn session(&self) -> watch::Receiver<SessionStatus> {
        self.inner.status.subscribe()
    }

    fn session_id(&self) -> i64 {
        self.inner.client().map(|c| c.session_id().0).unwrap_or(0)
    }

    fn session_timeout(&self) -> Duration {
        self.inner
            .client()
            .map(|c| c.session_timeout())
            .unwrap_or(self.inner.requested_timeout)
    }

    async fn close(&self) {
        let client = {
            self.inner.status.send_modify(|s| {
                s.closed = true;
                s.connected = false;
            });
            self.inner.client.lock().expect("client lock").take()
        };
        if let Some(client) = client {
            // Dropping the last handle sends CloseSession; wait (briefly) until it went out,
            // so that our ephemeral nodes vanish now rather than after the session timeout.
            let mut states = client.state_watcher();
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while !matches!(states.changed().await, zk::SessionState::Closed) {}
            })
            .await;
        }
    }
}

/// Keeps a persistent recursive watch on `path` armed for the life of its [`TreeWatch`]:
/// each event reports its path; every (re)arming reports "everything", because events
/// during a disconnection can be lost.
async fn keep_watching(inner: Weak<Inner>, path: String, events: TreeEvents) {
    keep_watching_inner(inner, path, &events).await;
    events.close();
}

async fn keep_watching_inner(inner: Weak<Inner>, path: String, events: &TreeEvents) {
    loop {
        let (client, mut status, acls) = {
            let Some(inner) = inner.upgrade() else { return };
            let Ok(client) = inner.client() else { return };
            (client, inner.status.subscribe(), inner.acls())
        };
        let generation = status.borrow_and_update().generation;
        let options = zk::CreateMode::Persistent.with_acls(acls);
        let _ = client.mkdir(&path, &options).await;
        match client.watch(&path, zk::AddWatchMode::PersistentRecursive).await {
            Ok(mut watcher) => {
                drop(client);
                events.all();
                let mut disconnected = false;
                let mut abandoned = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        event = watcher.changed() => {
                            if event.event_type != zk::EventType::Session {
                                events.path(&event.path);
                                continue;
                            }
                            events.all();
                            match event.session_state {
                                zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed => break,
                                zk::SessionState::Disconnected => disconnected = true,
                                // Back on a server that may have restarted: it may not know the
                                // watch any more (seen with a restarted standalone server), so
                                // arm it again rather than trust that it was restored.
                                _ if disconnected => break,
                                _ => {}
                            }
                        }
                        r = status.changed() => {
                            if r.is_err() {
                                return;
                            }
                            let s = *status.borrow_and_update();
                            if s.closed || s.generation != generation {
                                break;
                            }
                            if !s.connected {
                                disconnected = true;
                            } else if disconnected {
                                break;
                            }
                        }
                        _ = abandoned.tick() => if events.abandoned() { return },
                    }
                }
                // Wait for the session to be usable again (the same one, or a replacement).
                loop {
                    let s = *status.borrow_and_update();
                    if s.generation != generation || (disconnected && s.connected) {
                        break;
                    }
                    if status.changed().await.is_err() || events.abandoned() {
                        return;
                    }
                    if status.borrow().closed {
                        return;
                    }
                }
            }
            Err(e) => {
                drop(client);
                if matches!(e, zk::Error::ClientClosed) && inner.upgrade().is_none_or(|i| i.closed()) {
                    return;
                }
                warn!(path, error = %e, "cannot watch ZooKeeper tree; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                if events.abandoned() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ZkAuth;

    #[test]
    fn auth_files_parse_and_digest_as_zookeeper_does() {
        let a = ZkAuth::parse("kv:s3cret:with:colons\n").unwrap();
        assert_eq!(a.user(), "kv");
        // ZooKeeper's DigestAuthenticationProvider.generateDigest("super:test") is this value.
        assert_eq!(
            ZkAuth::parse("super:test").unwrap().digest_id(),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        for bad in ["", "nocolon", ":pw", "user:", "a:b\nc:d"] {
            assert!(ZkAuth::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
