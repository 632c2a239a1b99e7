//! The listening side of every port, plain or TLS: binding with an error that names the
//! address, and accepting a connection as the port's kind of [`Stream`].

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use crate::{Stream, Tls};

/// A port could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: String,
    pub source: std::io::Error,
}

/// Binds `addr`; returns the listener and the address it got (the port chosen for port 0).
pub async fn bind(addr: String) -> Result<(TcpListener, SocketAddr), BindError> {
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(source) => return Err(BindError { addr, source }),
    };
    match listener.local_addr() {
        Ok(local) => Ok((listener, local)),
        Err(source) => Err(BindError { addr, source }),
    }
}

/// A connection accepted on a port: as is on a plain port, after the TLS handshake (within
/// `--tls-handshake-timeout-ms`) on a TLS one.
pub async fn accept(tls: Option<&Tls>, tcp: TcpStream) -> std::io::Result<Stream> {
    match tls {
        None => Ok(Stream::Plain(tcp)),
        Some(tls) => tls.accept(tcp).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_named_in_the_error() {
        let (_held, at) = bind("127.0.0.1:0".into()).await.unwrap();
        let err = bind(at.to_string()).await.unwrap_err();
        assert_eq!(err.addr, at.to_string());
        assert!(
            err.to_string().starts_with(&format!("cannot listen on {at}: ")),
            "{err}"
        );
    }
}
