//! kvgate: the front door. Clients talk only to gates; a gate holds no data.
//!
//! ```text
//! client ─HTTP─▶ http (parse, validate) ─┐
//! client ─RESP─▶ resp (parse, look up) ───┴▶ Forwarder (key, access, command)
//!          ─▶ Routing::target: key ─ring─▶ shard ─read policy─▶ server ─▶ Pool (pipelined RESP)
//! ```
//!
//! - [`config`]: flags (including the original positional form), environment, config file.
//! - [`routing`]: [`routing::Routing`], an immutable snapshot of ring, leaders and replicas,
//!   rebuilt from the cluster view; it owns the connection pools of the servers it names.
//! - [`discovery`]: leaders servers announce while the gate's coordinator session is
//!   down, so a failover behind its back does not stall writes until it reconnects.
//! - [`forward`]: [`forward::Forwarder`], sending one command to the right server, retrying
//!   what is safe to retry while a shard fails over.
//! - [`http`]: the HTTP API (the original's endpoints plus `/api/cluster`, `/health`,
//!   `/ready`, `/metrics` and the dashboard), with the cluster's users as Basic credentials,
//!   served by kv-http's guarded listener.
//! - [`resp`]: the Redis protocol front (redis-cli, redis-benchmark, Redis client libraries).
//! - [`observe`]: `/metrics` and `/ready`.
//! - [`topology`]: `/api/cluster`, assembled from the view and each server's `KV.INFO`.
//! - [`gate`]: [`Gate::start`] and [`GateHandle`].

pub mod config;
pub mod deadline;
pub mod discovery;
pub mod forward;
pub mod gate;
pub mod http;
pub mod observe;
pub mod pubsub;
pub mod resp;
pub mod routing;
pub mod topology;

pub use config::{Config, ReadPolicy};
pub use gate::{Gate, GateHandle, StartError};
