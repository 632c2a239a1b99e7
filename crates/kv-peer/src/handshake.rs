//! The handshake that opens every cluster-port connection: both sides prove they hold the
//! cluster secret, and neither learns anything it could replay.
//!
//! ```text
//! peer → server   KV.HELLO <client-nonce> <peer-name>
//! server → peer   [KV.CHALLENGE, <server-nonce>, HMAC(secret, server | client-nonce | server-nonce)]
//! peer → server   KV.AUTH HMAC(secret, client | client-nonce | server-nonce)
//! server → peer   +OK
//! ```
//!
//! The peer checks the server's proof before it sends its own, so a process that merely
//! listens on a cluster address learns nothing; the server checks the peer's proof before it
//! serves anything else. Nonces are fresh random values from both sides, so a recorded
//! exchange is useless later. Any other first command gets `-NOAUTH` and the connection
//! closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kv_proto::{CommandBuilder, Frame, Limits, RequestParser, parse_reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::secret::{ClusterSecret, Side, nonce};

const HELLO: &[u8] = b"KV.HELLO";
const CHALLENGE: &[u8] = b"KV.CHALLENGE";
const AUTH: &[u8] = b"KV.AUTH";

/// Bounds on handshake messages: a few short arguments.
const LIMITS: Limits = Limits {
    max_bulk_len: 256,
    max_multibulk_len: 4,
    max_inline_len: 512,
    max_query_buffer: 4096,
};

/// What a peer presents when it connects to a cluster port.
#[derive(Debug, Clone)]
pub struct PeerAuth {
    pub secret: Arc<ClusterSecret>,
    /// Who is connecting (a node id or `gate:<addr>`), for the server's logs.
    pub name: Arc<str>,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the handshake did not complete within {0:?}")]
    Timeout(Duration),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed during the handshake")]
    Closed,
    #[error("the other side broke the handshake: {0}")]
    Protocol(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("the other side could not prove it holds the cluster secret (the secrets differ)")]
    BadProof,
}

/// Opens a connection as `auth`: proves the secret and checks the server's proof. Bounded by
/// `limit` as a whole.
pub async fn connect<S>(stream: &mut S, auth: &PeerAuth, limit: Duration) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, connect_inner(stream, auth)).await {
        Ok(r) => r,
        Err(_) => Err(HandshakeError::Timeout(limit)),
    }
}

async fn connect_inner<S>(stream: &mut S, auth: &PeerAuth) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client_nonce = nonce();
    let hello = CommandBuilder::new(3)
        .arg(HELLO)
        .arg(client_nonce.as_bytes())
        .arg(auth.name.as_bytes())
        .finish();
    stream.write_all(&hello).await?;
    let mut buf = BytesMut::with_capacity(512);
    let challenge = read_reply(stream, &mut buf).await?;
    let server_nonce = match &challenge {
        Frame::Array(items) => match &items[..] {
            [Frame::Bulk(name), Frame::Bulk(nonce), Frame::Bulk(proof)] if &name[..] == CHALLENGE => {
                if !auth.secret.verify(Side::Server, client_nonce.as_bytes(), nonce, proof) {
                    return Err(HandshakeError::BadProof);
                }
                nonce.clone()
            }
            _ => return Err(HandshakeError::Protocol("malformed challenge".into())),
        },
        Frame::Error(e) => return Err(HandshakeError::Refused(String::from_utf8_lossy(e).into_owned())),
        other => return Err(HandshakeError::Protocol(format!("unexpected reply {other:?}"))),
    };
    let proof = auth.secret.proof(Side::Client, client_nonce.as_bytes(), &server_nonce);
    let msg = CommandBuilder::new(2).arg(AUTH).arg(proof.as_bytes()).finish();
    stream.write_all(&msg).await?;
    match read_reply(stream, &mut buf).await? {
        Frame::Simple(_) if buf.is_empty() => Ok(()),
        Frame::Simple(_) => Err(HandshakeError::Protocol("unsolicited data after the handshake".into())),
        Frame::Error(e) => Err(HandshakeError::Refused(String::from_utf8_lossy(&e).into_owned())),
        other => Err(HandshakeError::Protocol(format!("unexpected reply {other:?}"))),
    }
}

async fn read_reply<S>(stream: &mut S, buf: &mut BytesMut) -> Result<Frame, HandshakeError>
where
    S: AsyncRead + Unpin,
{
    loop {
        match parse_reply(buf, &LIMITS) {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(HandshakeError::Protocol(e.to_string())),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

/// Accepts a connection on a cluster port: the peer must prove the secret before anything
/// else. `input` is the connection's input buffer; bytes after the handshake stay in it.
/// Returns the peer's name. Bounded by `limit` as a whole.
pub async fn accept<S>(
    stream: &mut S,
    input: &mut BytesMut,
    secret: &ClusterSecret,
    limit: Duration,
) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, accept_inner(stream, input, secret)).await {
        Ok(r) => r,
        Err(_) => Err(HandshakeError::Timeout(limit)),
    }
}

async fn accept_inner<S>(stream: &mut S, input: &mut BytesMut, secret: &ClusterSecret) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut parser = RequestParser::new(LIMITS);
    let hello = next_request(stream, input, &mut parser).await?;
    let (client_nonce, name) = match hello.args() {
        [cmd, nonce, name] if cmd.eq_ignore_ascii_case(HELLO) && !nonce.is_empty() => (nonce.clone(), name.clone()),
        _ => {
            stream
                .write_all(b"-NOAUTH this is a kvstore cluster port: peers authenticate first (KV.HELLO)\r\n")
                .await?;
            return Err(HandshakeError::Refused(format!(
                "the first command was not KV.HELLO: {:?}",
                String::from_utf8_lossy(hello.name())
            )));
        }
    };
    let server_nonce = nonce();
    let proof = secret.proof(Side::Server, &client_nonce, server_nonce.as_bytes());
    let challenge = CommandBuilder::new(3)
        .arg(CHALLENGE)
        .arg(server_nonce.as_bytes())
        .arg(proof.as_bytes())
        .finish();
    stream.write_all(&challenge).await?;
    let auth = next_request(stream, input, &mut parser).await?;
    match auth.args() {
        [cmd, proof] if cmd.eq_ignore_ascii_case(AUTH) => {
            if secret.verify(Side::Client, &client_nonce, server_nonce.as_bytes(), proof) {
                stream.write_all(b"+OK\r\n").await?;
                Ok(String::from_utf8_lossy(&name).into_owned())
            } else {
                stream
                    .write_all(b"-ERR peer authentication failed: the cluster secrets differ\r\n")
                    .await?;
                Err(HandshakeError::BadProof)
            }
        }
        _ => {
            stream.write_all(b"-NOAUTH expected KV.AUTH\r\n").await?;
            Err(HandshakeError::Protocol("expected KV.AUTH".into()))
        }
    }
}

async fn next_request<S>(
    stream: &mut S,
    input: &mut BytesMut,
    parser: &mut RequestParser,
) -> Result<kv_proto::Request, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match parser.parse(input) {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => {}
            Err(e) => {
                let _ = stream
                    .write_all(format!("-ERR Protocol error: {e}\r\n").as_bytes())
                    .await;
                return Err(HandshakeError::Protocol(e.to_string()));
            }
        }
        if stream.read_buf(input).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secret: &ClusterSecret) -> PeerAuth {
        PeerAuth {
            secret: Arc::new(secret.clone()),
            name: Arc::from("test-peer"),
        }
    }

    const LIMIT: Duration = Duration::from_secs(5);

    async fn run(
        client: &ClusterSecret,
        server: &ClusterSecret,
    ) -> (Result<(), HandshakeError>, Result<String, HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = server.clone();
        let accepted = tokio::spawn(async move {
            let mut input = BytesMut::new();
            let r = accept(&mut b, &mut input, &server, LIMIT).await;
            // Keep the stream open until the client has read the last reply.
            let _ = b.read_u8().await;
            r
        });
        let connected = connect(&mut a, &auth(client), LIMIT).await;
        drop(a);
        (connected, accepted.await.unwrap())
    }

    #[tokio::test]
    async fn equal_secrets_pass() {
        let s = ClusterSecret::generate();
        let (c, a) = run(&s, &s).await;
        c.unwrap();
        assert_eq!(a.unwrap(), "test-peer");
        let (c, a) = run(&ClusterSecret::none(), &ClusterSecret::none()).await;
        assert!(c.is_ok() && a.is_ok(), "no secret on either side");
    }

    #[tokio::test]
    async fn different_secrets_fail_on_both_sides() {
        let (c, a) = run(&ClusterSecret::generate(), &ClusterSecret::generate()).await;
        assert!(matches!(c, Err(HandshakeError::BadProof)), "{c:?}");
        assert!(a.is_err(), "{a:?}");
        let (c, _) = run(&ClusterSecret::none(), &ClusterSecret::generate()).await;
        assert!(matches!(c, Err(HandshakeError::BadProof)), "{c:?}");
    }

    #[tokio::test]
    async fn anything_else_first_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut input = BytesMut::new();
            accept(&mut b, &mut input, &ClusterSecret::generate(), LIMIT).await
        });
        a.write_all(b"*1\r\n$7\r\nKV.INFO\r\n").await.unwrap();
        let mut reply = Vec::new();
        a.read_to_end(&mut reply).await.unwrap();
        assert!(reply.starts_with(b"-NOAUTH"), "{}", String::from_utf8_lossy(&reply));
        assert!(matches!(server.await.unwrap(), Err(HandshakeError::Refused(_))));
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_a, mut b) = tokio::io::duplex(4096);
        let mut input = BytesMut::new();
        let r = accept(
            &mut b,
            &mut input,
            &ClusterSecret::generate(),
            Duration::from_millis(50),
        )
        .await;
        assert!(matches!(r, Err(HandshakeError::Timeout(_))));
    }
}
