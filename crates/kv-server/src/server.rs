//! [`Server`]: binds the client and cluster ports and starts the node's tasks;
//! [`ServerHandle`] stops them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_client::ConnOptions;
use kv_cluster::{Coordinator, Paths};
use kv_peer::{ClusterSecret, PeerAuth};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument as _, debug, info, warn};

use crate::config::Config;
use crate::connection::Connection;
use crate::handler::{self, Port};
use crate::node::{Node, Role, Stats};
use crate::peer::pull::Puller;
use crate::{cluster, replication};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is invalid; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listening address could not be bound.
    #[error(transparent)]
    Bind(#[from] kv_tls::BindError),
    /// The TLS certificates or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] kv_tls::TlsError),
}

/// Entry point: starts a kvserver.
pub struct Server;

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    cluster_addr: SocketAddr,
    node: Arc<Node>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds, registers with the cluster through `coord` and starts serving.
    pub async fn start(config: Config, coord: Arc<dyn Coordinator>) -> Result<ServerHandle, StartError> {
        config.validate().map_err(StartError::Config)?;
        let (listener, local_addr) = kv_tls::bind(config.bind_addr()).await?;
        let (cluster_listener, cluster_addr) = kv_tls::bind(config.cluster_bind_addr()).await?;
        let tls = match config.tls_bind_addr() {
            Some(at) => {
                let server = kv_tls::Tls::load(&config.tls, &[])?;
                server.spawn_reloader();
                let (listener, local) = kv_tls::bind(at).await?;
                Some((server, listener, local))
            }
            None => None,
        };
        let addr = format!("{}:{}", config.host, local_addr.port());
        let advertised_cluster = format!("{}:{}", config.host, cluster_addr.port());
        let secret = match &config.cluster_secret {
            Some(s) => s.clone(),
            None => Arc::new(
                ClusterSecret::load(
                    config.cluster_auth.cluster_secret_file.as_deref(),
                    &format!("the cluster port {advertised_cluster}"),
                )
                .map_err(|e| StartError::Config(e.to_string()))?,
            ),
        };
        // Unique per process: a restarted server starts empty, so it must not inherit the
        // in-sync membership of its previous life.
        let id = format!("{addr}-{:06x}", fastrand::u32(..) & 0xff_ffff);
        let paths = Paths::new(&config.cluster);
        let cluster_tls = if config.tls.cluster() {
            let tls = kv_tls::Tls::load_for_cluster(&config.tls)?;
            tls.spawn_reloader();
            Some(tls)
        } else {
            None
        };
        let peer = ConnOptions {
            tls: cluster_tls.clone(),
            peer: Some(PeerAuth {
                secret: secret.clone(),
                name: Arc::from(id.as_str()),
            }),
            connect_timeout: config.handshake_timeout().min(Duration::from_secs(2)),
            stall_timeout: Some(config.replica_timeout()),
            ..ConnOptions::default()
        };
        let own_users =
            kv_acl::command::initial_users(config.users.aclfile.as_deref(), config.users.requirepass.as_deref())
                .map_err(StartError::Config)?;
        let from_flags = config.users.aclfile.is_some() || config.users.requirepass.is_some();
        let store = kv_acl::store::Store::new(coord.clone(), &paths);
        let users = kv_acl::store::initial(&store, own_users, from_flags, Duration::from_secs(5)).await;
        let mut node = Node::new(id, addr, advertised_cluster, config);
        node.tls_addr = tls
            .as_ref()
            .map(|(_, _, at)| format!("{}:{}", node.config.host, at.port()));
        node.acl = Arc::new(kv_acl::Acl::new(users));
        node.users_store = Some(store);
        let node = Arc::new(node);
        let puller = Arc::new(Puller::new(peer.clone(), node.config.replica_timeout()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Plain and TLS clients share --max-clients, as in Redis.
        let client_slots = Arc::new(Semaphore::new(node.config.resp.max_clients));
        let serve_client = |tls: Option<Arc<kv_tls::Tls>>| {
            let (node, puller) = (node.clone(), puller.clone());
            move |stream: TcpStream, permit: OwnedSemaphorePermit, shutdown| {
                let (node, puller, tls) = (node.clone(), puller.clone(), tls.clone());
                async move {
                    let stream = match kv_tls::listen::accept(tls.as_deref(), stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let mut conn = Connection::new(stream, node.config.limits());
                    let open = node.acl.users().default_is_open();
                    if let Ok(peer) = conn.stream.peer_addr()
                        && kv_config::protected_mode_refuses(node.config.users.protected_mode, peer.ip(), open)
                    {
                        let _ = conn.stream.write_all(kv_config::PROTECTED_MODE_DENIED).await;
                        return;
                    }
                    if tls.is_some() {
                        conn.output.tls_addrs = Some(node.tls_addrs.clone());
                    }
                    use std::sync::atomic::Ordering::Relaxed;
                    node.clients_connected.fetch_add(1, Relaxed);
                    if tls.is_some() {
                        node.tls_clients.fetch_add(1, Relaxed);
                    }
                    handler::serve(node.clone(), conn, Port::Client, Some(puller), shutdown).await;
                    node.clients_connected.fetch_sub(1, Relaxed);
                    if tls.is_some() {
                        node.tls_clients.fetch_sub(1, Relaxed);
                    }
                    drop(permit);
                }
            }
        };
        let client_loop = accept_loop(
            listener,
            client_slots.clone(),
            b"-ERR max number of clients reached\r\n",
            shutdown_rx.clone(),
            serve_client(None),
        );
        let mut tasks = Vec::new();
        let mut tls_local = None;
        if let Some((server, listener, local)) = tls {
            tls_local = Some(local);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                client_slots,
                // Written before the handshake: a TLS client sees a failed handshake.
                b"-ERR max number of clients reached\r\n",
                shutdown_rx.clone(),
                serve_client(Some(server)),
            )));
        }
        let cluster_node = node.clone();
        let cluster_loop = accept_loop(
            cluster_listener,
            Arc::new(Semaphore::new(node.config.cluster_max_connections)),
            b"-ERR max number of cluster connections reached\r\n",
            shutdown_rx.clone(),
            move |stream: TcpStream, permit, shutdown| {
                let (node, secret, tls) = (cluster_node.clone(), secret.clone(), cluster_tls.clone());
                async move {
                    kv_client::keepalive(&stream);
                    let stream = match kv_tls::listen::accept(tls.as_deref(), stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            Stats::bump(&node.stats.peer_auth_failures);
                            warn!(error = %e, "a TLS handshake on the cluster port failed");
                            return;
                        }
                    };
                    serve_peer(node, secret, stream, shutdown).await;
                    drop(permit);
                }
            },
        );
        let mut metrics_addr = None;
        if let Some(at) = node.config.metrics_bind_addr() {
            let (listener, local) = kv_tls::bind(at).await?;
            metrics_addr = Some(local);
            let state = Arc::new(crate::metrics::MetricsState {
                node: node.clone(),
                session: coord.session(),
            });
            let limits = node.config.metrics_limits();
            tasks.push(tokio::spawn(kv_http::serve(
                kv_http::LimitedListener::new(listener, &limits),
                crate::metrics::router(state),
                limits,
                None,
                shutdown_rx.clone(),
            )));
        }
        tasks.extend([
            tokio::spawn(client_loop),
            tokio::spawn(cluster_loop),
            tokio::spawn(
                cluster::run(node.clone(), coord, paths, peer, shutdown_rx.clone())
                    .instrument(tracing::info_span!("cluster", node = %node.id, shard = %node.shard)),
            ),
            tokio::spawn(replication::leader::monitor(node.clone(), shutdown_rx.clone())),
            tokio::spawn(expire_loop(node.clone(), shutdown_rx)),
        ]);
        info!(
            node = node.id,
            shard = node.shard,
            addr = node.addr,
            cluster_addr = node.cluster_addr,
            tls_addr = node.tls_addr,
            "kvserver started"
        );
        Ok(ServerHandle {
            local_addr,
            tls_addr: tls_local,
            metrics_addr,
            cluster_addr,
            node,
            shutdown,
            tasks,
        })
    }
}

impl ServerHandle {
    /// The bound client address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound TLS client address, when there is a TLS port.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The bound metrics address, when there is a metrics port.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The bound cluster address.
    pub fn cluster_addr(&self) -> SocketAddr {
        self.cluster_addr
    }

    /// The client address advertised to the cluster.
    pub fn addr(&self) -> &str {
        &self.node.addr
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.node.id
    }

    /// The node's shared state.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stops serving: closes the coordinator session first (the shard fails over at once),
    /// then the listeners and every connection.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        info!(node = self.node.id, "kvserver stopped");
    }
}

/// Accepts connections until `shutdown`, as many at once as `slots` allows: beyond it a
/// connection gets `refusal` and is closed. Each accepted connection runs `serve` in its
/// own task.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    refusal: &'static [u8],
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, OwnedSemaphorePermit, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let mut stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream.write_all(refusal).await;
            });
            continue;
        };
        tokio::spawn(serve(stream, permit, shutdown.clone()));
    }
}

/// A cluster-port connection: the peer proves the secret first, then is served.
async fn serve_peer(
    node: Arc<Node>,
    secret: Arc<ClusterSecret>,
    stream: kv_tls::Stream,
    shutdown: watch::Receiver<bool>,
) {
    let mut conn = Connection::new(stream, node.config.limits());
    let timeout = node.config.handshake_timeout();
    match kv_peer::handshake::accept(&mut conn.stream, &mut conn.input, &secret, timeout).await {
        Ok(peer) => {
            debug!(peer, "peer authenticated");
            use std::sync::atomic::Ordering::Relaxed;
            node.peer_links.fetch_add(1, Relaxed);
            handler::serve(node.clone(), conn, Port::Cluster, None, shutdown).await;
            node.peer_links.fetch_sub(1, Relaxed);
        }
        Err(e) => {
            Stats::bump(&node.stats.peer_auth_failures);
            let from = conn.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            warn!(from, error = %e, "a connection to the cluster port failed to authenticate");
        }
    }
}

/// Active expiry: the leader deletes expired keys (and replicates the deletes) without
/// waiting for a read to find them.
async fn expire_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    const BATCH: usize = 512;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        while matches!(node.role(), Role::Leader { .. }) {
            match node.write_internal(|w| w.expire_due(BATCH)) {
                Ok((n, _)) if n == BATCH => tokio::task::yield_now().await,
                _ => break,
            }
        }
    }
}
