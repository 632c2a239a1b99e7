//! The HTTP API, byte-compatible with the original system's two endpoints:
//!
//! | endpoint | success | errors |
//! | --- | --- | --- |
//! | `POST /api/cache/put` `{"key","value":"<base64>","ttl_ms"?}` | 200 | 400, 413, 503 |
//! | `GET /api/cache/get?key=K` | 200, raw bytes | 400, 404, 413, 503 |
//! | `DELETE /api/cache/delete?key=K` | 200 | 400, 404, 413, 503 |
//! | `GET /api/cluster` | 200, JSON topology | |
//! | `GET /health` | 200 (liveness) | |
//! | `GET /ready` | 200 (every shard on the ring has a leader the gate reaches) | 503 |
//! | `GET /metrics` | 200, Prometheus text (as `INFO`) | |
//! | `GET /dashboard` | 200, the live dashboard (HTML; it reads `/api/cluster`) | |
//!
//! Every error is JSON `{"error": "..."}`; 503 carries `Retry-After`. Any endpoint but
//! `/health`, `/ready` and `/dashboard` may also answer 401 and 403 (credentials, below), 408 (a body too slow) and
//! 503 (the gate's body budget is spent).
//!
//! Credentials: the cluster's users (kv-acl), as `Authorization: Basic` (user:password).
//! Without them a request runs as the default user when it needs no password, and gets 401
//! otherwise; a user without the permission gets 403 with Redis's `NOPERM` text. Each
//! endpoint is checked as the command it runs (`SET`, `GET`, `DEL` on its key), the topology
//! as `CLUSTER`, `/metrics` as `INFO`, shard removal needs every `@admin` command. `/health`,
//! `/ready` and `/dashboard` are open (probes carry no credentials; the dashboard's page holds
//! no data).
//!
//! Keys in query strings are percent-decoded to exact bytes: `%FF` is the byte 0xFF, not
//! U+FFFD, so distinct keys never collide.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use kv_client::api::{ErrorBody, PutRequest, RemoveShard};
use kv_cluster::{CoordError, Coordinator, CreateMode, Paths};
use kv_proto::{CommandBuilder, Frame};

use crate::forward::{Access, ForwardError, Forwarder};
use crate::routing::Target;
use crate::topology::{self, Monitor};
use kv_peer::ErrorCode;

/// What the handlers share.
pub struct HttpState {
    pub forwarder: Forwarder,
    pub monitor: Arc<Monitor>,
    /// For operator requests recorded in the coordinator (shard removal).
    pub coord: Arc<dyn Coordinator>,
    pub paths: Paths,
    /// The cluster's users (shared with the RESP front).
    pub acl: Arc<kv_acl::Acl>,
    /// Bytes of request bodies that may be buffered at once, over all connections.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// How long a body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The largest body accepted (a key and value within the limits, as JSON).
    pub max_body: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// The RESP front's state: its command figures, slow log and connections.
    pub resp: Arc<crate::resp::RespState>,
    /// The HTTP listeners' open connections by protocol (set once they are bound).
    pub http_connections: std::sync::OnceLock<Vec<(&'static str, kv_http::OpenConnections)>>,
    /// Requests by endpoint and status, and their latency (told by the listeners).
    pub http_stats: Arc<crate::observe::HttpStats>,
}

/// The router.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/api/cache/put", post(put))
        .route("/api/cache/get", get(get_value))
        .route("/api/cache/delete", delete(delete_value))
        .route("/api/cluster", get(cluster))
        .route("/api/shards/remove", post(remove_shard))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/dashboard", get(dashboard))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// An error response: status and message, rendered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody { error: self.message }).expect("serialisable");
        let mut resp = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<ForwardError> for ApiError {
    fn from(e: ForwardError) -> ApiError {
        match e {
            ForwardError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            ForwardError::OutcomeUnknown(m) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the outcome of the write is unknown: {m}"),
            ),
        }
    }
}

/// A server's error reply, as HTTP.
fn server_error(frame: &Frame) -> ApiError {
    let text = String::from_utf8_lossy(frame.as_error().unwrap_or_default()).into_owned();
    let status = match ErrorCode::of(frame) {
        Some(ErrorCode::Oom) => StatusCode::INSUFFICIENT_STORAGE,
        Some(ErrorCode::NoReplicas) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, text)
}

fn unexpected(frame: &Frame) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected reply from the server: {frame:?}"),
    )
}

/// The user a request runs as: its `Authorization: Basic` credentials, or the default user
/// when that needs no password; 401 otherwise. Passed to the handlers as an extension.
async fn authenticate(State(state): State<Arc<HttpState>>, mut req: Request, next: Next) -> Response {
    let users = state.acl.users();
    let user = match basic_credentials(req.headers()) {
        Some((name, pass)) => users.authenticate(&name, &pass),
        None if users.default_is_open() => users.get("default").cloned(),
        None => {
            return unauthorized("authentication required: send the user and password as Authorization: Basic");
        }
    };
    let Some(user) = user else {
        return unauthorized("invalid username-password pair or user is disabled");
    };
    req.extensions_mut().insert(user);
    next.run(req).await
}

fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"kvstore\", charset=\"UTF-8\""),
    );
    resp
}

/// `Authorization: Basic base64(user:password)`, split at the first colon.
fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let encoded = value
        .strip_prefix(b"Basic ")
        .or_else(|| value.strip_prefix(b"basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// 403 unless `user` may run `args` as a command (keys and all).
fn permit(user: &kv_acl::User, args: &[&[u8]]) -> Result<(), ApiError> {
    if user.unrestricted() {
        return Ok(());
    }
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let info = kv_proto::commands::lookup(&args[0]).expect("a known command");
    user.check(info, &args)
        .map_err(|d| ApiError::new(StatusCode::FORBIDDEN, d.error()))
}

/// Percent-decodes a query component to exact bytes (`+` is a space). Hand-written:
/// `form_urlencoded` decodes to UTF-8 lossily, mapping every invalid byte to U+FFFD.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(s.get(i + 1)), hex(s.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                // A `%` not followed by two hex digits stands for itself.
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// A refused body up to this size is read to its end and dropped, so its reply arrives.
const DRAIN_MAX: u64 = 64 * 1024;

/// A request body, read whole, and its share of the body budget (returned when dropped).
struct ReadBody {
    bytes: Bytes,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl HttpState {
    /// Reads a request body: 413 before reading anything when its declared length is over
    /// the limit (and as soon as a chunked one passes it), 503 when the gate already
    /// buffers its budget of bodies, 408 when it does not arrive within the body timeout.
    async fn read_body(&self, headers: &axum::http::HeaderMap, body: Body) -> Result<ReadBody, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than a key and value within the limits",
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(too_large());
        }
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        let mut budget: Option<tokio::sync::OwnedSemaphorePermit> = None;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body did not arrive within the body timeout",
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}")));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            if buf.len() + data.len() > self.max_body {
                return Err(too_large());
            }
            let permit = u32::try_from(data.len())
                .ok()
                .and_then(|n| self.body_budget.clone().try_acquire_many_owned(n).ok());
            let Some(permit) = permit else {
                // The rest of a small body is read and dropped (no buffering), so the client
                // gets the reply instead of a reset for bytes left unread.
                if declared.is_some_and(|n| n <= DRAIN_MAX) {
                    while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, body.frame()).await {}
                }
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gate is buffering as many request bodies as it may (--http-body-budget); retry",
                ));
            };
            match &mut budget {
                Some(b) => b.merge(permit),
                None => budget = Some(permit),
            }
            buf.extend_from_slice(&data);
        }
        Ok(ReadBody {
            bytes: buf.freeze(),
            _budget: budget,
        })
    }

    fn check_key(&self, key: &[u8]) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "the key must not be empty"));
        }
        if key.len() > self.max_key_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the key is {} bytes; the limit is {} (--max-key-bytes)",
                    key.len(),
                    self.max_key_bytes
                ),
            ));
        }
        Ok(())
    }

    fn value_too_large(&self, len: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the value is {len} bytes; the limit is {} (--max-value-bytes)",
                self.max_value_bytes
            ),
        )
    }
}

/// The `key` query parameter, as exact bytes.
fn key_param(query: Option<&str>) -> Result<Bytes, ApiError> {
    query
        .unwrap_or("")
        .as_bytes()
        .split(|&b| b == b'&')
        .find_map(|pair| pair.strip_prefix(b"key="))
        .map(|v| Bytes::from(percent_decode(v)))
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "missing query parameter `key`"))
}

async fn put(
    State(state): State<Arc<HttpState>>,
    Extension(user): Extension<Arc<kv_acl::User>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let body = state.read_body(&headers, body).await?;
    let req: PutRequest = serde_json::from_slice(&body.bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))?;
    state.check_key(req.key.as_bytes())?;
    permit(&user, &[b"SET", req.key.as_bytes(), b""])?;
    // Reject by the encoded length before decoding, so a huge value costs no allocation.
    let max_encoded = state.max_value_bytes.div_ceil(3) * 4;
    if req.value.len() > max_encoded {
        return Err(state.value_too_large(req.value.len() / 4 * 3));
    }
    let value = base64::engine::general_purpose::STANDARD
        .decode(req.value.as_bytes())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("`value` is not valid base64: {e}")))?;
    if value.len() > state.max_value_bytes {
        return Err(state.value_too_large(value.len()));
    }
    let command = match req.ttl_ms {
        Some(0) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "`ttl_ms` must be a positive number of milliseconds",
            ));
        }
        Some(ttl) if ttl > i64::MAX as u64 / 2 => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "`ttl_ms` is too large"));
        }
        Some(ttl) => CommandBuilder::new(5)
            .arg(b"SET")
            .arg(req.key.as_bytes())
            .arg(&value)
            .arg(b"PX")
            .int(ttl as i64),
        None => CommandBuilder::new(3).arg(b"SET").arg(req.key.as_bytes()).arg(&value),
    }
    .finish();
    let frame = state
        .forwarder
        .execute(&Target::Key(Bytes::from(req.key.clone())), Access::Write, command)
        .await?;
    match frame {
        Frame::Simple(_) => Ok(StatusCode::OK),
        f @ Frame::Error(_) => Err(server_error(&f)),
        f => Err(unexpected(&f)),
    }
}

async fn get_value(
    State(state): State<Arc<HttpState>>,
    Extension(user): Extension<Arc<kv_acl::User>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let key = key_param(query.as_deref())?;
    state.check_key(&key)?;
    permit(&user, &[b"GET", &key])?;
    let command = CommandBuilder::new(2).arg(b"GET").arg(&key).finish();
    match state
        .forwarder
        .execute(&Target::Key(key.clone()), Access::Read, command)
        .await?
    {
        Frame::Bulk(value) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()),
        Frame::Null => Err(not_found_key(&key)),
        f @ Frame::Error(_) => Err(server_error(&f)),
        f => Err(unexpected(&f)),
    }
}

async fn delete_value(
    State(state): State<Arc<HttpState>>,
    Extension(user): Extension<Arc<kv_acl::User>>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let key = key_param(query.as_deref())?;
    state.check_key(&key)?;
    permit(&user, &[b"DEL", &key])?;
    let command = CommandBuilder::new(2).arg(b"DEL").arg(&key).finish();
    let frame = state
        .forwarder
        .execute(&Target::Key(key.clone()), Access::Write, command)
        .await?;
    match frame {
        Frame::Integer(n) if n > 0 => Ok(StatusCode::OK),
        Frame::Integer(_) => Err(not_found_key(&key)),
        f @ Frame::Error(_) => Err(server_error(&f)),
        f => Err(unexpected(&f)),
    }
}

/// 404 for a missing key (named as text, invalid UTF-8 escaped).
fn not_found_key(key: &[u8]) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("key not found: {}", key.escape_ascii()))
}

async fn cluster(
    State(state): State<Arc<HttpState>>,
    Extension(user): Extension<Arc<kv_acl::User>>,
) -> Result<Response, ApiError> {
    permit(&user, &[b"CLUSTER", b"INFO"])?;
    let info = topology::cluster_info(&state.monitor, &state.forwarder.routing()).await;
    Ok(axum::Json(info).into_response())
}

/// `POST /api/shards/remove` `{"name": ...}`: records the request in the coordinator; the
/// ring manager drains the shard (its keys move to the others), then takes it off the ring.
async fn remove_shard(
    State(state): State<Arc<HttpState>>,
    Extension(user): Extension<Arc<kv_acl::User>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !user.unrestricted() && !user.has_category("admin") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "NOPERM this user has no permissions to run admin commands (@admin)",
        ));
    }
    let body = state.read_body(&headers, body).await?;
    let req: RemoveShard = serde_json::from_slice(&body.bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))?;
    kv_cluster::paths::validate_name("shard", &req.name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let routing = state.forwarder.routing();
    let ring = routing.view.ring.clone().unwrap_or_default();
    let on_ring = ring.shards.contains(&req.name) || ring.next.as_ref().is_some_and(|n| n.shards.contains(&req.name));
    if !on_ring {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("shard {} is not on the ring", req.name),
        ));
    }
    let remaining = ring
        .shards
        .iter()
        .filter(|s| **s != req.name && !routing.view.removing.contains(*s))
        .count();
    if remaining == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot remove the last shard: its keys would have nowhere to go",
        ));
    }
    let unavailable = |e: CoordError| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("coordinator: {e}"));
    state
        .coord
        .ensure_path(&state.paths.removing())
        .await
        .map_err(unavailable)?;
    match state
        .coord
        .create(&state.paths.removing_shard(&req.name), b"", CreateMode::Persistent)
        .await
    {
        Ok(()) | Err(CoordError::NodeExists) => {}
        Err(e) => return Err(unavailable(e)),
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "removing": req.name })),
    )
        .into_response())
}

/// The dashboard's page, in the binary (no build step, no outside requests).
const DASHBOARD: &str = include_str!("dashboard.html");

/// `GET /dashboard`: the live view of the cluster. The page holds no data: what it shows it
/// reads from `/api/cluster`, with the browser's credentials.
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        DASHBOARD,
    )
        .into_response()
}

/// `GET /metrics`: the gate's figures in the Prometheus text format (as `INFO`).
async fn metrics(
    State(state): State<Arc<HttpState>>,
    Extension(user): Extension<Arc<kv_acl::User>>,
) -> Result<Response, ApiError> {
    permit(&user, &[b"INFO"])?;
    let text = crate::observe::page(&state);
    Ok(([(header::CONTENT_TYPE, kv_metrics::prom::CONTENT_TYPE)], text).into_response())
}

/// `GET /ready`: 200 when every shard on the ring has a leader the gate can reach, 503
/// (with each shard's verdict) otherwise. Open, as `/health`: a probe carries no credentials.
async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let r = crate::observe::readiness(&state).await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r)).into_response()
}

async fn health(State(state): State<Arc<HttpState>>) -> Response {
    let routing = state.forwarder.routing();
    let shards = routing.ring().shards().len();
    axum::Json(serde_json::json!({ "status": "ok", "shards": shards })).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_exact_bytes() {
        assert_eq!(percent_decode(b"a%FFb"), b"a\xffb");
        assert_ne!(percent_decode(b"%FF"), percent_decode(b"%FE"));
        assert_eq!(percent_decode(b"%C0%80"), b"\xc0\x80");
        assert_eq!(percent_decode(b"a+b%2"), b"a b%2");
        assert_eq!(percent_decode(b"%zz"), b"%zz");
        let q = Some("x=1&key=k%00ey&key=second");
        assert_eq!(key_param(q).unwrap(), Bytes::from_static(b"k\0ey"));
        assert!(key_param(Some("x=1")).is_err());
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let mut h = axum::http::HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        h.insert(header::AUTHORIZATION, format!("Basic {enc}").parse().unwrap());
        assert_eq!(basic_credentials(&h), Some((b"alice".to_vec(), b"pa:ss".to_vec())));
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }
}
