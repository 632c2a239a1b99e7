//! kvserver: one replica of one shard.
//!
//! The data path reads like a sentence:
//!
//! ```text
//! server::accept_loop ─▶ handler::serve ─▶ Connection::parse ─▶ Command::from_request
//!                      ─▶ Command::apply(&Node) ─▶ Node::write (store + replication log)
//!                      ─▶ Node::wait_replicated ─▶ reply
//! ```
//!
//! - [`config`]: flags, environment, config file.
//! - [`server`]: [`Server::start`] and [`ServerHandle`].
//! - [`connection`], [`handler`]: a client connection and its request loop.
//! - [`cmd`]: the commands, one file each.
//! - [`node`]: [`node::Node`], the shared state: store, log, role, lease.
//! - [`replication`]: the log, the leader and follower sides, follower progress.
//! - [`cluster`]: registration, election, following, the in-sync set in the coordinator.

pub mod cluster;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod handler;
pub mod node;
pub mod replication;
pub mod server;

pub use config::{Config, ReplicationMode};
pub use server::{Server, ServerHandle, StartError};
