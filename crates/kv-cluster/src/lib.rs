//! Cluster coordination: who is in the cluster, who leads each shard, where a key lives.
//!
//! - [`ring`]: the consistent-hash ring over shard names (pinned by golden vectors).
//! - [`paths`]: the layout of kvstore's nodes in the coordinator's tree.
//! - [`model`]: what is stored there ([`NodeInfo`], [`ShardState`]) and the assembled
//!   [`ClusterView`] that gates and servers act on.
//! - [`coord`]: the [`Coordinator`] trait (a small ZooKeeper-shaped interface) with two
//!   implementations: [`ZkCoordinator`] on a real ZooKeeper ensemble and
//!   [`MemoryCluster`]/[`MemoryCoordinator`] in-process, for the embedded local cluster and tests.
//! - [`placement`]: the versioned ring, moves between ring versions, the ring manager's
//!   decisions.
//! - [`view`]: reads the tree into a [`ClusterView`] and keeps it current.
//!
//! All cluster logic (election, in-sync sets, routing) is written once against the trait, so
//! the in-process coordinator exercises the same code paths as ZooKeeper.

pub mod coord;
pub mod model;
pub mod paths;
pub mod placement;
pub mod ring;
pub mod view;

pub use coord::memory::{MemoryCluster, MemoryCoordinator};
pub use coord::zookeeper::{ZkAuth, ZkCoordinator};
pub use coord::{Changes, CoordError, Coordinator, CreateMode, NodeStat, SessionStatus, TreeWatch};
pub use model::{ClusterView, NodeInfo, ShardState, ShardView};
pub use paths::Paths;
pub use placement::{Ownership, Phase, Placement, PlacementCache, RingState, ServedSlots};
pub use ring::Ring;
pub use view::{read_view, watch_view};
