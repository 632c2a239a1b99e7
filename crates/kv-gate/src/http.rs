//! The HTTP API, byte-compatible with the original system's two endpoints:
//!
//! | endpoint | success | errors |
//! | --- | --- | --- |
//! | `POST /api/cache/put` `{"key","value":"<base64>","ttl_ms"?}` | 200 | 400, 413, 503 |
//! | `GET /api/cache/get?key=K` | 200, raw bytes | 400, 404, 413, 503 |
//! | `DELETE /api/cache/delete?key=K` | 200 | 400, 404, 413, 503 |
//! | `GET /api/cluster` | 200, JSON topology | |
//! | `GET /health` | 200 | |
//!
//! Every error is JSON `{"error": "..."}`; 503 carries `Retry-After`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
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
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

/// The router.
pub fn router(state: Arc<HttpState>, max_body: usize) -> Router {
    Router::new()
        .route("/api/cache/put", post(put))
        .route("/api/cache/get", get(get_value))
        .route("/api/cache/delete", delete(delete_value))
        .route("/api/cluster", get(cluster))
        .route("/api/shards/remove", post(remove_shard))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
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

impl HttpState {
    fn check_key(&self, key: &str) -> Result<(), ApiError> {
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

/// The `key` query parameter.
fn key_param(query: Option<&str>) -> Result<String, ApiError> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "missing query parameter `key`"))
}

async fn put(State(state): State<Arc<HttpState>>, body: Result<Bytes, BytesRejection>) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(ref inner) if inner.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than a key and value within the limits",
            )
        }
        other => ApiError::new(other.status(), other.body_text()),
    })?;
    let req: PutRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))?;
    state.check_key(&req.key)?;
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
        .execute(
            &Target::Key(Bytes::from(req.key.clone())),
            Access::Write { idempotent: true },
            command,
        )
        .await?;
    match frame {
        Frame::Simple(_) => Ok(StatusCode::OK),
        f @ Frame::Error(_) => Err(server_error(&f)),
        f => Err(unexpected(&f)),
    }
}

async fn get_value(State(state): State<Arc<HttpState>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let key = key_param(query.as_deref())?;
    state.check_key(&key)?;
    let command = CommandBuilder::new(2).arg(b"GET").arg(key.as_bytes()).finish();
    match state
        .forwarder
        .execute(&Target::Key(Bytes::from(key.clone())), Access::Read, command)
        .await?
    {
        Frame::Bulk(value) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()),
        Frame::Null => Err(ApiError::new(StatusCode::NOT_FOUND, format!("key not found: {key}"))),
        f @ Frame::Error(_) => Err(server_error(&f)),
        f => Err(unexpected(&f)),
    }
}

async fn delete_value(State(state): State<Arc<HttpState>>, RawQuery(query): RawQuery) -> Result<StatusCode, ApiError> {
    let key = key_param(query.as_deref())?;
    state.check_key(&key)?;
    let command = CommandBuilder::new(2).arg(b"DEL").arg(key.as_bytes()).finish();
    let frame = state
        .forwarder
        .execute(
            &Target::Key(Bytes::from(key.clone())),
            Access::Write { idempotent: true },
            command,
        )
        .await?;
    match frame {
        Frame::Integer(n) if n > 0 => Ok(StatusCode::OK),
        Frame::Integer(_) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("key not found: {key}"))),
        f @ Frame::Error(_) => Err(server_error(&f)),
        f => Err(unexpected(&f)),
    }
}

async fn cluster(State(state): State<Arc<HttpState>>) -> Response {
    let info = topology::cluster_info(&state.monitor, &state.forwarder.routing()).await;
    axum::Json(info).into_response()
}

/// `POST /api/shards/remove` `{"name": ...}`: records the request in the coordinator; the
/// ring manager drains the shard (its keys move to the others), then takes it off the ring.
async fn remove_shard(
    State(state): State<Arc<HttpState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let req: RemoveShard = serde_json::from_slice(&body)
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
