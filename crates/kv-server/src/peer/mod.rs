//! The cluster port: where peers (gates and other servers) reach this server, after proving
//! they hold the cluster secret (`kv_peer::handshake`). Besides the client commands, which
//! gates forward here, it serves the internal ones ([`kv_peer::PeerCommand`]):
//!
//! - `KV.SYNC` turns the connection into a replication stream (`crate::replication`);
//! - `KV.MIGRATE`, `KV.MIGRATEPART`, `KV.DROP`, `KV.FETCH`: key moves in a ring change ([`moves`]);
//! - `KV.INFO`: this server's [`kv_peer::ServerInfo`].
//!
//! [`pull`] is the other direction: this server pulling a moving key from its old owner for
//! a Redis Cluster client.
//!
//! The client port answers all of these as unknown commands.

pub mod moves;
pub mod pull;

use kv_peer::PeerCommand;
use kv_proto::Out;

use crate::node::{Node, Pending};

/// Applies an internal command other than `KV.SYNC` (which the connection handler turns
/// into a stream), appending its reply to `out`.
pub fn apply(cmd: PeerCommand, node: &Node, out: &mut Out) -> Option<Pending> {
    match cmd {
        PeerCommand::Migrate { version, items } => moves::migrate(node, version, &items, out),
        PeerCommand::MigratePart {
            version,
            item,
            offset,
            total,
        } => moves::migrate_part(node, version, item, offset, total, out),
        PeerCommand::Drop { keys } => moves::drop(node, &keys, out),
        PeerCommand::Fetch { key } => moves::fetch(node, &key, out),
        PeerCommand::Info => {
            node.info().to_frame().encode(out);
            None
        }
        PeerCommand::Sync(_) => {
            kv_proto::write::error(out, b"ERR KV.SYNC must be the first command on a connection");
            None
        }
    }
}
