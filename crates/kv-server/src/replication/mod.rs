//! Log-based replication.
//!
//! Every write the leader applies becomes a [`ops::Mutation`] with an `(epoch, offset)`,
//! kept in a bounded [`backlog::Backlog`]. Mutations carry full state (a `SET` carries the
//! whole value, never "increment"), so replaying one twice converges: a snapshot can be taken
//! in chunks while writes continue and made consistent by replaying the log from where it
//! began.
//!
//! - [`ops`]: mutations and their wire encoding (`KV.OP` frames).
//! - [`backlog`]: the bounded log of recent entries.
//! - [`progress`]: the leader's view of its followers — acks, lag, the in-sync set it wants
//!   and the one ZooKeeper confirmed — as a pure state machine.
//! - [`leader`]: serving one follower: handshake, snapshot or resume, streaming, acks.
//! - [`follower`]: following the leader: sync, apply, ack.
//!
//! The stream, all RESP arrays of bulk strings:
//!
//! ```text
//! follower → leader   KV.SYNC <node-id> <last-epoch> <last-offset> <known-epoch>
//! leader → follower   KV.FULLSYNC <epoch> <offset>    then KV.SNAP chunks, [KV.SNAPIN
//!                                                     <inbound> <done> <tombstones...>],
//!                                                     KV.SNAPEND <offset>
//!                  or KV.CONTINUE <epoch> <offset>     (resume after <offset>)
//!                  or KV.ERR <message>
//! leader → follower   KV.OP <epoch> <offset> SET <key> <value> <expires-at-ms|0>
//!                     KV.OP <epoch> <offset> DEL <key>
//!                     KV.OP <epoch> <offset> EXPIRE <key> <expires-at-ms|0>
//!                     KV.OP <epoch> <offset> INBOUND <ring-version|0>  (a ring change)
//! leader → follower   KV.PING                          (heartbeat when idle)
//! follower → leader   KV.ACK <offset>                  (after applying, and per heartbeat)
//! ```
//!
//! Either side closes a stream on which nothing arrived for `--replica-timeout-ms`; the
//! follower then reconnects and resumes from its last `(epoch, offset)`.

pub mod backlog;
pub mod follower;
pub mod leader;
pub mod ops;
pub mod progress;
