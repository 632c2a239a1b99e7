//! [`Gate::start`]: binds the HTTP port, follows the cluster, serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kv_client::ConnOptions;
use kv_cluster::{Coordinator, CreateMode, Paths, watch_view};
use kv_peer::{ClusterSecret, PeerAuth};
use kv_proto::Limits;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::Config;
use crate::discovery::{self, Hints};
use crate::forward::Forwarder;
use crate::http::{self, HttpState};
use crate::resp::{self, RespState};
use crate::routing::{RoutingBuilder, spawn_routing};
use crate::topology::Monitor;
use kv_http::LimitedListener;

/// Why a gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bind(#[from] kv_tls::BindError),
    /// The TLS certificates or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] kv_tls::TlsError),
}

/// A TLS listener: its certificates (reloaded as they change), socket and address.
type TlsListener = (Arc<kv_tls::Tls>, TcpListener, SocketAddr);

/// Binds a TLS port when `port` is set, with `alpn` offered.
async fn bind_tls(config: &Config, port: Option<u16>, alpn: &[&[u8]]) -> Result<Option<TlsListener>, StartError> {
    let Some(port) = port else { return Ok(None) };
    let server = kv_tls::Tls::load(&config.tls, alpn)?;
    server.spawn_reloader();
    let (listener, local) = kv_tls::bind(format!("{}:{port}", config.bind)).await?;
    Ok(Some((server, listener, local)))
}

/// Entry point: starts a gate.
pub struct Gate;

/// A running gate.
pub struct GateHandle {
    http_addr: SocketAddr,
    resp_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// Tasks that end on `shutdown` (or when the coordinator closes).
    tasks: Vec<JoinHandle<()>>,
    /// Keeps the ACL equal to the stored users; stopped at shutdown.
    follow_users: JoinHandle<()>,
    coord: Arc<dyn Coordinator>,
}

impl Gate {
    /// Starts a gate on the cluster reached through `coord`.
    pub async fn start(mut config: Config, coord: Arc<dyn Coordinator>) -> Result<GateHandle, StartError> {
        config.validate().map_err(StartError::Config)?;
        let users =
            kv_acl::command::initial_users(config.users.aclfile.as_deref(), config.users.requirepass.as_deref())
                .map_err(StartError::Config)?;
        let (listener, http_addr) = kv_tls::bind(format!("{}:{}", config.bind, config.http_port())).await?;
        let (resp_listener, resp_addr) = kv_tls::bind(format!("{}:{}", config.bind, config.resp_port)).await?;
        let resp_tls = bind_tls(&config, config.tls.tls_port, &[]).await?;
        let https = bind_tls(&config, config.https_port, &[b"http/1.1"]).await?;
        let tls_addr = resp_tls.as_ref().map(|t| t.2);
        let https_addr = https.as_ref().map(|t| t.2);

        let paths = Paths::new(&config.cluster);
        let secret = match &config.cluster_secret {
            Some(s) => s.clone(),
            None => Arc::new(
                ClusterSecret::load(
                    config.cluster_auth.cluster_secret_file.as_deref(),
                    "the cluster's ports (this gate connects to them)",
                )
                .map_err(|e| StartError::Config(e.to_string()))?,
            ),
        };
        let peer = Some(PeerAuth {
            secret,
            name: Arc::from(format!("gate:{http_addr}").as_str()),
        });
        let view = watch_view(coord.clone(), paths.clone());
        // The cluster's users: the stored ones, or this gate's flags seed them.
        let store = kv_acl::store::Store::new(coord.clone(), &paths);
        let from_flags = config.users.aclfile.is_some() || config.users.requirepass.is_some();
        let users = kv_acl::store::initial(&store, users, from_flags, Duration::from_secs(5)).await;
        let acl = Arc::new(kv_acl::Acl::new(users));
        let follow_users = kv_acl::store::follow(acl.clone(), view.clone());
        let cluster_tls = if config.tls.cluster() {
            let tls = kv_tls::Tls::load_for_cluster(&config.tls)?;
            tls.spawn_reloader();
            Some(tls)
        } else {
            None
        };
        let options = ConnOptions {
            tls: cluster_tls,
            max_in_flight: config.backend_max_in_flight,
            connect_timeout: Duration::from_secs(2),
            limits: Limits::REDIS,
            peer: peer.clone(),
            stall_timeout: Some(config.backend_timeout()),
        };
        let (hints_tx, hints) = watch::channel(Hints::new());
        let routing = spawn_routing(
            view,
            coord.session(),
            hints,
            RoutingBuilder::new(config.read_policy, config.backend_connections, options.clone()),
        );
        let settings = kv_proto::settings::Settings::new(config.resp.max_clients, config.resp.limits().max_bulk_len);
        // `client-output-buffer-limit pubsub`'s default; `CONFIG SET` changes it.
        let pubsub_limit = settings.output_limit("pubsub").unwrap_or(0);
        let pubsub = crate::pubsub::Links::start(routing.clone(), options.clone(), pubsub_limit);
        let monitor = Arc::new(Monitor::new(ConnOptions {
            max_in_flight: 64,
            ..options
        }));
        let discovery = tokio::spawn(discovery::run(
            hints_tx,
            coord.session(),
            routing.clone(),
            monitor.clone(),
        ));
        let forwarder = Forwarder::new(routing, config.retry_timeout(), config.backend_timeout());
        let resp_state = Arc::new(RespState {
            forwarder: forwarder.clone(),
            monitor: monitor.clone(),
            limits: config.resp.limits(),
            key_limit: config.resp.key_limit(),
            protected_mode: config.users.protected_mode,
            idle_timeout: config.resp.idle_timeout(),
            started: std::time::Instant::now(),
            http_addr: http_addr.to_string(),
            resp_addr: resp_addr.to_string(),
            stats: Default::default(),
            observer: Default::default(),
            acl: acl.clone(),
            users_store: store,
            acl_log: Default::default(),
            acl_file: config.users.aclfile.clone(),
            config: settings,
            clients: Default::default(),
            pubsub,
        });
        let state = Arc::new(HttpState {
            forwarder,
            monitor,
            coord: coord.clone(),
            paths: paths.clone(),
            acl,
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                (config.http_body_budget as usize).min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            body_timeout: Duration::from_millis(config.http_body_timeout_ms),
            max_body: config.max_body_bytes(),
            max_key_bytes: config.max_key_bytes as usize,
            max_value_bytes: config.max_value_bytes as usize,
            resp: resp_state.clone(),
            http_connections: Default::default(),
            http_stats: Default::default(),
        });
        let app = http::router(state.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Plain and TLS clients share --max-clients, as in Redis.
        let client_slots = Arc::new(tokio::sync::Semaphore::new(config.resp.max_clients));
        let mut tasks = Vec::new();
        if let Some((tls, listener, _)) = resp_tls {
            tasks.push(tokio::spawn(resp::accept_loop(
                resp_state.clone(),
                listener,
                client_slots.clone(),
                Some(tls),
                shutdown_rx.clone(),
            )));
        }
        let resp_task = tokio::spawn(resp::accept_loop(
            resp_state,
            resp_listener,
            client_slots,
            None,
            shutdown_rx.clone(),
        ));
        let limits = config.http_limits();
        let mut gauges = Vec::new();
        if let Some((tls, listener, _)) = https {
            let listener = LimitedListener::new(listener, &limits).observed(state.http_stats.clone());
            gauges.push(("https", listener.gauge()));
            tasks.push(tokio::spawn(kv_http::serve(
                listener,
                app.clone(),
                limits,
                Some(tls),
                shutdown_rx.clone(),
            )));
        }
        let http_listener = LimitedListener::new(listener, &limits).observed(state.http_stats.clone());
        gauges.push(("http", http_listener.gauge()));
        let _ = state.http_connections.set(gauges);
        tasks.extend([
            tokio::spawn(kv_http::serve(http_listener, app, limits, None, shutdown_rx.clone())),
            tokio::spawn(register(coord.clone(), paths, http_addr, resp_addr)),
            resp_task,
            discovery,
        ]);
        info!(http = %http_addr, resp = %resp_addr, tls = ?tls_addr, https = ?https_addr, cluster = config.cluster, "kvgate started");
        Ok(GateHandle {
            http_addr,
            resp_addr,
            tls_addr,
            https_addr,
            shutdown,
            tasks,
            follow_users,
            coord,
        })
    }
}

/// Announces the gate under `/kvstore/<cluster>/gates` (ephemeral), for discovery.
async fn register(coord: Arc<dyn Coordinator>, paths: Paths, http: SocketAddr, resp: SocketAddr) {
    let id = format!("{http}-{:06x}", fastrand::u32(..) & 0xff_ffff);
    let data = serde_json::json!({ "id": id, "http": http.to_string(), "resp": resp.to_string() }).to_string();
    let mut session = coord.session();
    loop {
        let done = async {
            coord.ensure_path(&paths.gates()).await?;
            coord
                .create(&paths.gate(&id), data.as_bytes(), CreateMode::Ephemeral)
                .await
        }
        .await;
        if let Err(e) = &done
            && *e != kv_cluster::CoordError::NodeExists
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // Re-register after the session is replaced.
        let generation = session.borrow_and_update().generation;
        loop {
            if session.changed().await.is_err() || session.borrow().closed {
                return;
            }
            if session.borrow().generation != generation {
                break;
            }
        }
    }
}

impl GateHandle {
    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound RESP address.
    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    /// The bound RESP-over-TLS address (`--tls-port`).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The bound HTTPS address (`--https-port`).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Stops serving and closes the coordinator session.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.coord.close().await;
        // Following the stored users has nothing to finish, and would wait for a view that
        // other parts of the gate keep alive: it is stopped, not waited for (waiting made
        // every SIGTERM take the 5 s below).
        self.follow_users.abort();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        info!("kvgate stopped");
    }
}
