//! TLS for kvstore's ports, with Redis's setting names.
//!
//! - [`TlsSettings`]: the `--tls-*` flags, shared by kvserver and kvgate.
//! - [`Tls`]: a TLS port's side (and, for cluster ports, the side opening connections to
//!   them): certificates and the CA loaded from PEM files, reloaded when the files change,
//!   so certificates rotate without a restart (connections already open keep the
//!   certificate they were made with).
//! - [`Stream`]: one type for a plain or a TLS connection, so the RESP and HTTP code paths
//!   stay the same for both.
//! - [`listen`]: binding a port (an error naming the address) and accepting a connection as
//!   plain or TLS, for every listener of the gate and the servers.
//!
//! rustls with the `ring` provider: no OpenSSL, and a short build.

mod context;
pub mod listen;
mod settings;
mod stream;

pub use context::Tls;
pub use listen::{BindError, bind};
pub use settings::{AuthClients, TlsSettings, YesNo};
pub use stream::{ReadHalf, Stream, WriteHalf};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A setting is missing or contradicts another.
    #[error("{0}")]
    Settings(String),
    /// rustls refused the certificates or key.
    #[error("TLS: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}
