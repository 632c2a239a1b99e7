//! The wire protocol every kvstore hop speaks: RESP (RESP2, and RESP3 for clients that ask
//! for it with `HELLO 3`).
//!
//! Clients reach the gate with RESP (and HTTP); the gate reaches kvserver with RESP over
//! persistent pipelined connections; followers stream the replication log from their leader
//! as RESP arrays. One protocol, so one parser to harden.
//!
//! - [`frame`]: the [`Frame`] value (RESP3's types included) and its encoding for either
//!   [`Protocol`].
//! - [`write`]: allocation-free reply writers for the hot path, and [`Out`], a connection's
//!   output buffer that knows its protocol.
//! - [`request`]: the server-side, resumable, bounded request parser (multibulk and inline).
//! - [`reply`]: the client-side reply parser.
//! - [`limits`]: the bounds every parser enforces ([`Limits`]).
//! - [`error`]: [`ProtocolError`], worded as Redis words it.
//! - [`commands`]: the command table `COMMAND` reports (arity, flags, key positions).
//! - [`info`]: `INFO`'s sections, shared by gates and servers.
//! - [`hello`]: `HELLO`, parsed and answered alike by gates and servers.
//! - [`notify`]: keyspace notification classes (`notify-keyspace-events`).
//! - [`settings`]: the parameters `CONFIG GET/SET` answer.
//! - [`sort`]: `SORT`'s options and ordering, shared by gates and servers.
//! - [`slot`]: Redis Cluster's key slots (CRC16 and hash tags): where a key lives.
//! - [`glob`]: Redis's glob patterns (`KEYS`, `SCAN … MATCH`).
//! - [`hash`]: the one hash every process agrees on (ring placement, content digests).
//! - [`kind`]: the types of stored values ([`Kind`]) and the `WRONGTYPE` error.

pub mod addrs;
pub mod commands;
pub mod error;
pub mod frame;
pub mod glob;
pub mod hash;
pub mod hello;
pub mod info;
pub mod kind;
pub mod limits;
pub mod notify;
pub mod reply;
pub mod request;
pub mod settings;
pub mod slot;
pub mod sort;
pub mod write;

pub use error::ProtocolError;
pub use frame::{Frame, Protocol};
pub use kind::Kind;
pub use limits::Limits;
pub use reply::{parse_reply, parse_reply_relayed};
pub use request::{Request, RequestParser};
pub use write::{CommandBuilder, Out};
