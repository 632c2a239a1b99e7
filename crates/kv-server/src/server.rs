//! [`Server`]: binds the listener and starts the node's tasks; [`ServerHandle`] stops them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_cluster::{Coordinator, Paths};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::connection::Connection;
use crate::node::{Node, Role};
use crate::{cluster, handler, replication};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is invalid; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Entry point: starts a kvserver.
pub struct Server;

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    node: Arc<Node>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds, registers with the cluster through `coord` and starts serving.
    pub async fn start(config: Config, coord: Arc<dyn Coordinator>) -> Result<ServerHandle, StartError> {
        config.validate().map_err(StartError::Config)?;
        let bind = config.bind_addr();
        let listener = TcpListener::bind(&bind).await.map_err(|source| StartError::Bind {
            addr: bind.clone(),
            source,
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr: bind, source })?;
        let addr = format!("{}:{}", config.host, local_addr.port());
        // Unique per process: a restarted server starts empty, so it must not inherit the
        // in-sync membership of its previous life.
        let id = format!("{addr}-{:06x}", fastrand::u32(..) & 0xff_ffff);
        let paths = Paths::new(&config.cluster);
        let max_clients = config.resp.max_clients;
        let node = Arc::new(Node::new(id, addr, config));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(accept_loop(node.clone(), listener, max_clients, shutdown_rx.clone())),
            tokio::spawn(cluster::run(node.clone(), coord, paths, shutdown_rx.clone())),
            tokio::spawn(replication::leader::monitor(node.clone(), shutdown_rx.clone())),
            tokio::spawn(expire_loop(node.clone(), shutdown_rx)),
        ];
        info!(node = node.id, shard = node.shard, addr = node.addr, "kvserver started");
        Ok(ServerHandle {
            local_addr,
            node,
            shutdown,
            tasks,
        })
    }
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address advertised to the cluster.
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
    /// then the listener and every connection.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        info!(node = self.node.id, "kvserver stopped");
    }
}

async fn accept_loop(node: Arc<Node>, listener: TcpListener, max_clients: usize, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(max_clients));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let stream = match accepted {
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
                use tokio::io::AsyncWriteExt;
                let mut s = stream;
                let _ = s.write_all(b"-ERR max number of clients reached\r\n").await;
            });
            continue;
        };
        let conn = Connection::new(stream, node.config.limits());
        let node = node.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            handler::serve(node, conn, shutdown).await;
            drop(permit);
        });
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
            match node.write(|w| w.expire_due(BATCH)) {
                Ok((n, _)) if n == BATCH => tokio::task::yield_now().await,
                _ => break,
            }
        }
    }
}
