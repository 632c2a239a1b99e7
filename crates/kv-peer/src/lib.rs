//! The cluster port's protocol, in one place: what servers and gates say to each other.
//!
//! Every kvserver listens on two ports. Clients (and cluster-aware Redis clients) use the
//! client port, which speaks only the Redis command set. Peers — other servers and gates —
//! use the cluster port: replication, snapshots, key moves and every internal `KV.*` command
//! travel there and only there, after both sides proved they hold the cluster secret.
//!
//! - [`secret`]: [`ClusterSecret`], the shared key, loaded from a file or generated.
//! - [`handshake`]: the mutual challenge-response every cluster-port connection opens with
//!   (HMAC-SHA256 over fresh nonces from both sides: nothing secret crosses the wire).
//! - [`command`]: [`PeerCommand`], the internal commands (`KV.SYNC`, `KV.MIGRATE`, `KV.DROP`,
//!   `KV.FETCH`, `KV.INFO`), typed at both ends.
//! - [`stream`]: the replication stream's messages in both directions.
//! - [`log`]: [`Mutation`], one replicated change, and its `KV.OP` encoding.
//! - [`info`]: [`ServerInfo`], what `KV.INFO` reports (role, position, contents, counters,
//!   progress of a key move).
//! - [`error`]: [`ErrorCode`], the error codes peers act on (`MOVED`, `NOTLEADER`, ...).

pub mod command;
pub mod error;
pub mod handshake;
pub mod info;
pub mod log;
pub mod secret;
pub mod stream;

pub use command::{MigrateItem, PeerCommand, SyncRequest};
pub use error::ErrorCode;
pub use handshake::{HandshakeError, PeerAuth};
pub use info::{Counters, MoveProgress, ServerInfo};
pub use log::{DecodeError, ElemOp, Entry, Mutation};
pub use secret::{ClusterSecret, SecretError};

/// Parses a decimal argument.
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}
