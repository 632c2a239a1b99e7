//! The in-memory store of one kvserver: a hash map of binary keys to binary values with
//! second-chance (CLOCK) eviction approximating LRU, bounds on entries and bytes, absolute expiry times and an order-independent
//! digest of the contents. No sockets, no clocks, no locks: callers pass the time in and
//! serialise access (kvserver holds it under one mutex together with its replication log, so
//! that the order of the log is the order of application).
//!
//! - [`store`]: [`Store`], the map, LRU list and TTL index.
//! - [`object`]: collections (hashes, lists, sets, sorted sets), compact and general forms.
//! - [`time`]: wall-clock milliseconds, the unit of expiry times.
//!
//! Who decides what: the store reports a lookup of an expired key as [`Lookup::Expired`] and
//! evicts only when asked ([`Store::evict_over_limit`]). A shard leader asks, and replicates
//! the resulting deletes; a follower never does, so replicas cannot diverge on their own.

pub mod hll;
pub mod object;
pub mod store;
pub mod time;

pub use object::{CompactLimits, Object, WrongType};
pub use store::{ENTRY_OVERHEAD, Entry, Lookup, ObjRead, Store, StoreLimits, Val};
