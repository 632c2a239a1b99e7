//! [`Tls`]: the TLS side of a port (and, on the cluster port, of the connections
//! to other cluster ports), reloading its files when they change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{info, warn};

use crate::{AuthClients, Stream, TlsError, TlsSettings};

/// What identifies a version of a file: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The TLS side of a process's ports: the current configuration, replaced whole when a
/// file changes, and the settings to rebuild it from.
pub struct Tls {
    settings: TlsSettings,
    /// ALPN protocols offered (`http/1.1` on HTTPS ports; none for RESP).
    alpn: Vec<Vec<u8>>,
    current: RwLock<Configs>,
    /// Whether connections are opened too (`connect`): the cluster port's peers.
    client: bool,
    stamps: Mutex<Vec<Stamp>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

fn files(s: &TlsSettings) -> Vec<&PathBuf> {
    [&s.tls_cert_file, &s.tls_key_file, &s.tls_ca_cert_file]
        .into_iter()
        .flatten()
        .collect()
}

fn stamps_now(s: &TlsSettings) -> Vec<Stamp> {
    files(s).into_iter().map(|p| stamp(p)).collect()
}

/// The configurations in use, replaced together on reload.
#[derive(Clone)]
struct Configs {
    server: Arc<ServerConfig>,
    client: Option<Arc<ClientConfig>>,
}

fn build(s: &TlsSettings, alpn: &[Vec<u8>], client: bool) -> Result<Configs, TlsError> {
    Ok(Configs {
        server: Arc::new(build_server(s, alpn)?),
        client: if client { Some(Arc::new(build_client(s)?)) } else { None },
    })
}

/// The side that opens connections: verifies the server against the CA and presents this
/// process's certificate (a cluster port may require one, as client ports do).
fn build_client(s: &TlsSettings) -> Result<ClientConfig, TlsError> {
    let need = || {
        TlsError::Settings("TLS to cluster ports needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file".into())
    };
    let ca_path = s.tls_ca_cert_file.as_deref().ok_or_else(need)?;
    let cert_path = s.tls_cert_file.as_deref().ok_or_else(need)?;
    let key_path = s.tls_key_file.as_deref().ok_or_else(need)?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(ca_path)? {
        roots.add(ca).map_err(|e| file_error(ca_path, e))?;
    }
    let chain = certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, e))?;
    Ok(
        ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?,
    )
}

/// Builds the serving configuration from the files as they are now.
fn build_server(s: &TlsSettings, alpn: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let missing = || TlsError::Settings("--tls-cert-file and --tls-key-file are required for TLS".into());
    let cert_path = s.tls_cert_file.as_deref().ok_or_else(missing)?;
    let key_path = s.tls_key_file.as_deref().ok_or_else(missing)?;
    let chain = certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, e))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut config = match (s.tls_auth_clients, &s.tls_ca_cert_file) {
        (AuthClients::No, _) | (_, None) => builder.with_no_client_auth().with_single_cert(chain, key)?,
        (mode, Some(ca_path)) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(ca_path)? {
                roots.add(ca).map_err(|e| file_error(ca_path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match mode {
                AuthClients::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| file_error(ca_path, format!("unusable CA: {e}")))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?
        }
    };
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

impl Tls {
    /// Loads the files named by `settings` (which must be [`TlsSettings::enabled`]);
    /// `alpn` lists the application protocols to offer.
    pub fn load(settings: &TlsSettings, alpn: &[&[u8]]) -> Result<Arc<Tls>, TlsError> {
        Self::load_with(settings, alpn, false)
    }

    /// Like [`Tls::load`], and able to [`Tls::connect`] as well: the cluster
    /// port's TLS (`--tls-cluster`).
    pub fn load_for_cluster(settings: &TlsSettings) -> Result<Arc<Tls>, TlsError> {
        Self::load_with(settings, &[], true)
    }

    fn load_with(settings: &TlsSettings, alpn: &[&[u8]], client: bool) -> Result<Arc<Tls>, TlsError> {
        settings.validate().map_err(TlsError::Settings)?;
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let stamps = stamps_now(settings);
        let configs = build(settings, &alpn, client)?;
        Ok(Arc::new(Tls {
            settings: settings.clone(),
            alpn,
            current: RwLock::new(configs),
            client,
            stamps: Mutex::new(stamps),
        }))
    }

    /// Loads the files again if any changed since the last load; true when a new
    /// configuration is in use. A failed load keeps the old configuration.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps_now(&self.settings);
        {
            let mut seen = self.stamps.lock().expect("tls stamps");
            if *seen == now {
                return Ok(false);
            }
            // Remember the failed version too: it is reported once, not at every check.
            *seen = now;
        }
        let configs = build(&self.settings, &self.alpn, self.client)?;
        *self.current.write().expect("tls config") = configs;
        Ok(true)
    }

    /// Checks the files every `--tls-reload-interval-ms` for as long as `self` lives.
    pub fn spawn_reloader(self: &Arc<Self>) {
        let every = Duration::from_millis(self.settings.tls_reload_interval_ms);
        let weak: Weak<Tls> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(server) = weak.upgrade() else { return };
                match server.reload_if_changed() {
                    Ok(true) => info!("TLS certificates reloaded"),
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous ones"),
                }
            }
        });
    }

    /// Opens TLS on a connection to `host` (a cluster port), verifying its certificate for
    /// `host`, within `--tls-handshake-timeout-ms`. Only for [`Tls::load_for_cluster`].
    pub async fn connect(&self, tcp: TcpStream, host: &str) -> std::io::Result<Stream> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let config = self.current.read().expect("tls config").client.clone();
        let config = config.ok_or_else(|| invalid("this TLS context does not open connections".into()))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| invalid(format!("{host}: {e}")))?;
        let limit = Duration::from_millis(self.settings.tls_handshake_timeout_ms);
        match tokio::time::timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
            Ok(r) => Ok(Stream::TlsClient(Box::new(r?))),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// Completes the TLS handshake on an accepted connection within
    /// `--tls-handshake-timeout-ms`.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        Ok(Stream::Tls(Box::new(self.accept_io(tcp).await?)))
    }

    /// [`Tls::accept`] over any transport (the HTTP side's guarded connections).
    pub async fn accept_io<IO>(&self, io: IO) -> std::io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.current.read().expect("tls config").server.clone());
        let limit = Duration::from_millis(self.settings.tls_handshake_timeout_ms);
        match tokio::time::timeout(limit, acceptor.accept(io)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}
