//! kvserver: one replica of one shard.
//!
//! Two ports. The client port speaks the Redis commands as a Redis Cluster node does, for
//! cluster-aware clients (slots, `MOVED <slot> <host:port>`, `CROSSSLOT`, `CLUSTER …`, RESP2
//! or RESP3); the cluster port serves authenticated peers (gates, the other replicas, other
//! shards' leaders moving keys) and carries replication and every internal command, with
//! kvstore's own error codes. The data path reads like a sentence:
//!
//! ```text
//! server::accept_loop ─▶ handler::serve ─▶ Connection::parse ─▶ Command::from_request
//!                      ─▶ Command::apply(&Node) ─▶ Node::write (checks, store + log)
//!                      ─▶ Node::wait_replicated ─▶ reply
//! ```
//!
//! - [`config`]: flags, environment, config file.
//! - [`server`]: [`Server::start`] and [`ServerHandle`]; both listeners.
//! - [`connection`], [`handler`]: a connection and its request loop.
//! - [`cmd`]: the client commands, one file each (`cmd::cluster`: the `CLUSTER` commands).
//! - [`peer`]: the cluster port's internal commands, and `peer::pull`, which fetches a key
//!   moving to this shard for a cluster client.
//! - [`node`]: [`node::Node`], the one owner of the replica's state: store, log, role,
//!   leases, followers, key ownership.
//! - [`replication`]: the log, the leader and follower sides, follower progress.
//! - [`metrics`]: the metrics port (`--metrics-port`): Prometheus `/metrics`, `/health`,
//!   `/ready`.
//! - [`cluster`]: the tasks that follow the coordinator: membership and election, the
//!   leader's lease, its shard state (in-sync set), its part in ring changes.

pub mod cluster;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod handler;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod replication;
pub mod server;

pub use config::{Config, ReplicationMode};
pub use server::{Server, ServerHandle, StartError};
