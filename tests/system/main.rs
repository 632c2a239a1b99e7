//! Real-process tests: the built `kvserver`, `kvgate` and `kvctl` binaries against a real
//! ZooKeeper started by the harness on a free port.

mod harness;

mod acl;
mod bad_input;
mod basic;
mod cluster_clients;
mod cluster_port;
mod dashboard;
mod failover;
mod gate_first;
mod hostile_http;
mod keyspace;
mod observability;
mod partitions;
mod pubsub;
mod redis_api;
mod redis_suite;
mod replica_join;
mod replication;
mod resharding;
mod resp3;
mod resp_limits;
mod scripting;
mod secure;
mod spread;
mod tls;
mod transactions;
mod types;
mod zk_acl;
mod zk_restart;
