//! Clients of kvstore's two protocols.
//!
//! - [`resp`]: [`Connection`], one TCP connection carrying many pipelined requests, replies
//!   matched in order, with a bound on requests in flight.
//! - [`pool`]: [`Pool`], a few persistent connections to one server, reconnected on failure.
//!   The gate keeps one pool per kvserver: no connection per request.
//! - [`http`]: [`GateClient`], the gate's HTTP API (used by kvctl and the tests).
//! - [`api`]: the JSON types of the HTTP API, shared by the gate (which writes them) and its
//!   clients (which read them).
//! - [`registry`]: a process's connected RESP clients (`CLIENT LIST`/`KILL`), shared by
//!   gates and kvservers.
//! - [`woken`]: [`WhenWoken`], how a connection waits for its end without polling the wait
//!   on every read.

pub mod api;
pub mod http;
pub mod pool;
pub mod registry;
pub mod resp;
pub mod woken;

pub use http::{GateClient, GateError, HttpReply};
pub use pool::Pool;
pub use resp::{BatchReply, CallError, ConnOptions, Connection, Reply, Shape, keepalive, open};
pub use woken::WhenWoken;
