//! [`Connection`]: a client socket with its input buffer, request parser and output buffer.

use bytes::BytesMut;
use kv_proto::{Limits, Out, ProtocolError, Request, RequestParser};
use kv_tls::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Read in chunks of this size; the input buffer grows only with bytes that arrived.
pub const READ_CHUNK: usize = 16 * 1024;

/// One peer connection: bytes in, requests out; replies in, bytes out.
pub struct Connection {
    pub stream: Stream,
    pub input: BytesMut,
    /// Replies, written in the protocol the client negotiated (`HELLO`).
    pub output: Out,
    pub parser: RequestParser,
    /// The client id `HELLO` reports, assigned when first asked for.
    pub id: Option<u64>,
    /// Set by `HELLO ... SETNAME`.
    pub name: Option<bytes::Bytes>,
    /// `READONLY`: this cluster client's reads may be served by a replica.
    pub readonly: bool,
    /// Commands queued after `MULTI`.
    pub multi: Option<crate::cmd::transaction::Multi>,
    /// This client's own `WATCH` is on (session 0 of the connection).
    pub watching: bool,
    /// Set at the first `WATCH`: ends the connection's watches when it closes.
    pub watches: Option<crate::cmd::transaction::WatchGuard>,
    /// Its channels and patterns, from its first subscribe (`crate::cmd::pubsub`).
    pub pubsub: Option<kv_pubsub::Client>,
    /// Who this client is (`AUTH`); `None` on the cluster port, whose peers proved the
    /// cluster secret.
    pub user: Option<kv_acl::Session>,
}

impl Connection {
    /// Wraps a socket; requests are parsed under `limits`.
    pub fn new(stream: impl Into<Stream>, limits: Limits) -> Connection {
        let stream = stream.into();
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            input: BytesMut::with_capacity(READ_CHUNK),
            output: Out::with_capacity(READ_CHUNK),
            parser: RequestParser::new(limits),
            id: None,
            name: None,
            readonly: false,
            multi: None,
            watching: false,
            watches: None,
            pubsub: None,
            user: None,
        }
    }

    /// The next complete request already buffered, if any.
    pub fn parse(&mut self) -> Result<Option<Request>, ProtocolError> {
        self.parser.parse(&mut self.input)
    }

    /// Reads more bytes; false at end of stream.
    pub async fn read_more(&mut self) -> std::io::Result<bool> {
        if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
            self.input.reserve(READ_CHUNK);
        }
        Ok(self.stream.read_buf(&mut self.input).await? > 0)
    }

    /// Reads until a complete request is buffered and returns it; `None` at end of stream.
    pub async fn next_request(&mut self) -> Result<Option<Request>, ConnError> {
        loop {
            if let Some(req) = self.parse()? {
                return Ok(Some(req));
            }
            if !self.read_more().await? {
                return Ok(None);
            }
        }
    }

    /// Writes out everything in the output buffer.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }
}

/// A connection-level failure.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}
