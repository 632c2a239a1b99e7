//! [`GateClient`]: the gate's HTTP API, for kvctl and tests.
//!
//! One short-lived HTTP/1.1 connection per call: a command-line client makes a handful of
//! calls, so pooling would buy nothing. Gates are tried in the order given until one answers;
//! an HTTP response of any status counts as an answer.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::api::{ClusterInfo, ErrorBody, PutRequest};

/// A response from a gate.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpReply {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The `error` field of a JSON error body, or the body as text.
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No gate could be reached.
    #[error("cannot reach any gate ({0})")]
    Unreachable(String),
    /// The gate answered with an error status.
    #[error("{message} (HTTP {status})")]
    Status { status: u16, message: String },
    /// The gate's answer could not be understood.
    #[error("unexpected answer from the gate: {0}")]
    Decode(String),
}

/// A client of one or more gates.
#[derive(Debug, Clone)]
pub struct GateClient {
    hosts: Vec<String>,
    timeout: Duration,
    /// `Authorization` header value (`Basic …`), when credentials were given.
    authorization: Option<String>,
}

impl GateClient {
    /// A client trying `hosts` (`host:port`) in order; each call gives up after `timeout`.
    pub fn new(hosts: Vec<String>, timeout: Duration) -> GateClient {
        GateClient {
            hosts,
            timeout,
            authorization: None,
        }
    }

    /// Sends `user`'s credentials with every request (HTTP Basic), for a cluster with users.
    pub fn with_credentials(mut self, user: &str, password: &str) -> GateClient {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorization = Some(format!("Basic {token}"));
        self
    }

    /// The gates, in the order they are tried.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Sends one request, trying each gate in turn until one answers.
    pub async fn request(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<HttpReply, GateError> {
        let mut failures = Vec::new();
        for host in &self.hosts {
            match tokio::time::timeout(
                self.timeout,
                send(host, self.authorization.as_deref(), method.clone(), path, body.clone()),
            )
            .await
            {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(e)) => failures.push(format!("{host}: {e}")),
                Err(_) => failures.push(format!("{host}: timed out after {:?}", self.timeout)),
            }
        }
        Err(GateError::Unreachable(failures.join("; ")))
    }

    /// `GET /api/cache/get`: the value, or `None` when the key is absent.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, GateError> {
        let reply = self
            .request(Method::GET, &format!("/api/cache/get?key={}", encode(key)), None)
            .await?;
        match reply.status {
            200 => Ok(Some(reply.body)),
            404 => Ok(None),
            status => Err(GateError::Status {
                status,
                message: reply.error_message(),
            }),
        }
    }

    /// `POST /api/cache/put`.
    pub async fn put(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), GateError> {
        let body = PutRequest {
            key: key.to_string(),
            value: base64::engine::general_purpose::STANDARD.encode(value),
            ttl_ms,
        };
        let body = serde_json::to_vec(&body).map_err(|e| GateError::Decode(e.to_string()))?;
        let reply = self.request(Method::POST, "/api/cache/put", Some(body.into())).await?;
        match reply.status {
            200 => Ok(()),
            status => Err(GateError::Status {
                status,
                message: reply.error_message(),
            }),
        }
    }

    /// `POST /api/shards/remove`: asks the cluster to drain shard `name` and take it off the
    /// ring.
    pub async fn remove_shard(&self, name: &str) -> Result<(), GateError> {
        let body = serde_json::to_vec(&crate::api::RemoveShard { name: name.to_string() })
            .map_err(|e| GateError::Decode(e.to_string()))?;
        let reply = self
            .request(Method::POST, "/api/shards/remove", Some(body.into()))
            .await?;
        match reply.status {
            200 | 202 => Ok(()),
            status => Err(GateError::Status {
                status,
                message: reply.error_message(),
            }),
        }
    }

    /// `DELETE /api/cache/delete`: true when the key existed.
    pub async fn delete(&self, key: &str) -> Result<bool, GateError> {
        let reply = self
            .request(Method::DELETE, &format!("/api/cache/delete?key={}", encode(key)), None)
            .await?;
        match reply.status {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(GateError::Status {
                status,
                message: reply.error_message(),
            }),
        }
    }

    /// `GET /api/cluster`.
    pub async fn cluster(&self) -> Result<ClusterInfo, GateError> {
        let reply = self.request(Method::GET, "/api/cluster", None).await?;
        if reply.status != 200 {
            return Err(GateError::Status {
                status: reply.status,
                message: reply.error_message(),
            });
        }
        serde_json::from_slice(&reply.body).map_err(|e| GateError::Decode(e.to_string()))
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn send(
    host: &str,
    authorization: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Bytes>,
) -> Result<HttpReply, String> {
    let stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", host);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    driver.abort();
    Ok(HttpReply { status, headers, body })
}
