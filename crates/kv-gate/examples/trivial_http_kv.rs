//! A trivial axum key-value server with the gate's HTTP API: the HTTP ceiling the gate's
//! HTTP front is compared with in `bench/`. No routing, no forwarding, no replication.
//!
//! `cargo run --release -p kv-gate --example trivial_http_kv -- PORT`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

type Db = Arc<Mutex<HashMap<String, Bytes>>>;

#[derive(serde::Deserialize)]
struct Put {
    key: String,
    value: String,
}

#[derive(serde::Deserialize)]
struct Key {
    key: String,
}

async fn put(State(db): State<Db>, axum::Json(p): axum::Json<Put>) -> StatusCode {
    match base64::engine::general_purpose::STANDARD.decode(p.value) {
        Ok(v) => {
            db.lock().unwrap().insert(p.key, Bytes::from(v));
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn fetch(State(db): State<Db>, Query(k): Query<Key>) -> Response {
    match db.lock().unwrap().get(&k.key) {
        Some(v) => v.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(3999);
    let db: Db = Arc::default();
    let app = Router::new()
        .route("/api/cache/put", post(put))
        .route("/api/cache/get", get(fetch))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    println!("trivial_http_kv listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
