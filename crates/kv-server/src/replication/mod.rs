//! Log-based replication.
//!
//! Every write the leader applies becomes a [`kv_peer::Mutation`] with an `(epoch, offset)`,
//! kept in a bounded [`backlog::Backlog`]. Mutations carry full state (a `SET` carries the
//! whole value, never "increment"), so replaying one twice converges: a snapshot can be taken
//! in chunks while writes continue and made consistent by replaying the log from where it
//! began. The stream's messages are defined in `kv_peer::stream`; it runs on the cluster
//! port only, after both sides proved the cluster secret.
//!
//! - [`backlog`]: the bounded log of recent entries.
//! - [`progress`]: the leader's view of its followers — acks, lag, read leases, the in-sync
//!   set it wants and the one ZooKeeper confirmed — as a pure state machine.
//! - [`leader`]: serving one follower: handshake, snapshot or resume, streaming, heartbeats,
//!   acks; and the lag monitor.
//! - [`follower`]: following the leader: sync, apply, ack, hold the read lease.
//!
//! Either side closes a stream on which nothing arrived for `--replica-timeout-ms`; the
//! follower then reconnects and resumes from its last `(epoch, offset)`.

pub mod backlog;
pub mod follower;
pub mod leader;
pub mod progress;
