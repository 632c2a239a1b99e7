//! kvserver's configuration: flags, `KVSERVER_*` environment variables, an optional config
//! file (see `kv_config`), defaults in one place and a `validate` step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kv_config::parse_size;
use kv_peer::ClusterSecret;
use kv_proto::Limits;
use kv_store::StoreLimits;

/// When the leader acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplicationMode {
    /// After every in-sync follower applied it (the original system's behaviour).
    Sync,
    /// As soon as the leader applied it; followers catch up in the background.
    Async,
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// kvserver: one replica of one shard of a kvstore cluster.
#[derive(Debug, Clone, Parser)]
#[command(name = "kvserver", version, about = "kvserver: one replica of one shard of a kvstore cluster", long_about = None)]
pub struct Config {
    /// Config file (flat TOML, keys are the long flag names); flags and env override it.
    #[arg(long, env = "KVSERVER_CONFIG")]
    pub config: Option<PathBuf>,

    /// Shard this server is a replica of. Servers with the same shard name replicate each other.
    #[arg(long, env = "KVSERVER_SHARD")]
    pub shard: String,

    /// Client port (RESP). 0 picks a free port; the chosen one is advertised.
    #[arg(long, env = "KVSERVER_PORT", default_value_t = 0)]
    pub port: u16,

    /// Cluster port: replication, key moves, internal commands and the gates' traffic, for
    /// authenticated peers only [default: --port + 10000, as Redis Cluster's bus; a free
    /// port when --port is 0]. 0 picks a free port; the chosen one is advertised.
    #[arg(long, env = "KVSERVER_CLUSTER_PORT")]
    pub cluster_port: Option<u16>,

    #[command(flatten)]
    pub cluster_auth: kv_config::ClusterAuth,

    /// Users for the client port (cluster-aware clients); the cluster's stored users once
    /// they exist (see kv_acl::store).
    #[command(flatten)]
    pub users: kv_config::UserAuth,

    /// The cluster secret itself, for an embedding process (the local cluster makes one);
    /// takes precedence over --cluster-secret-file.
    #[arg(skip)]
    pub cluster_secret: Option<Arc<ClusterSecret>>,

    /// Most connections on the cluster port (peers: gates, followers, key moves). Separate
    /// from --max-clients, so no number of clients can block the cluster's own traffic.
    #[arg(long, env = "KVSERVER_CLUSTER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub cluster_max_connections: usize,

    /// How long a peer may take to prove the cluster secret after connecting.
    #[arg(long, env = "KVSERVER_CLUSTER_HANDSHAKE_TIMEOUT_MS", default_value_t = 5000)]
    pub cluster_handshake_timeout_ms: u64,

    /// Address advertised to gates and replicas.
    #[arg(long, env = "KVSERVER_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Address to listen on [default: the value of --host].
    #[arg(long, env = "KVSERVER_BIND")]
    pub bind: Option<String>,

    /// ZooKeeper connection string, e.g. `zk1:2181,zk2:2181,zk3:2181`.
    #[arg(long, env = "KVSERVER_ZK")]
    pub zk: Option<String>,

    /// Cluster name: several clusters can share one ZooKeeper (`/kvstore/<cluster>`).
    #[arg(long, env = "KVSERVER_CLUSTER", default_value = "default")]
    pub cluster: String,

    /// ZooKeeper session timeout. A dead leader is replaced about this long after it died.
    #[arg(long, env = "KVSERVER_ZK_SESSION_TIMEOUT_MS", default_value_t = 4000)]
    pub zk_session_timeout_ms: u64,

    /// Most keys held; least recently used keys are evicted beyond it. 0 = no limit (the
    /// default, as Redis holds every key until `maxmemory`).
    #[arg(long, env = "KVSERVER_MAX_KEYS", default_value_t = 0)]
    pub max_keys: u64,

    /// Most bytes held (keys + values + 64 bytes per entry), e.g. `256mb`; LRU eviction
    /// beyond it. 0 = no limit.
    #[arg(long, env = "KVSERVER_MAXMEMORY", default_value = "0", value_parser = size)]
    pub maxmemory: u64,

    /// When writes are acknowledged: `sync` (after every in-sync follower applied them) or
    /// `async` (after the leader applied them).
    #[arg(long, env = "KVSERVER_REPLICATION", value_enum, default_value_t = ReplicationMode::Sync)]
    pub replication: ReplicationMode,

    /// A follower that has not caught up for this long leaves the in-sync set, so writes stop
    /// waiting for it. It rejoins by itself once it catches up.
    #[arg(long, env = "KVSERVER_REPLICA_LAG_TIMEOUT_MS", default_value_t = 2000)]
    pub replica_lag_timeout_ms: u64,

    /// A replication stream on which nothing arrived for this long is closed (the leader
    /// sends heartbeats every quarter of it and followers answer them). The follower
    /// reconnects and resumes from the backlog, or copies everything when the backlog no
    /// longer holds its position. At least `--replica-lag-timeout-ms`.
    #[arg(long, env = "KVSERVER_REPLICA_TIMEOUT_MS", default_value_t = 10_000)]
    pub replica_timeout_ms: u64,

    /// Writes are refused (`-NOREPLICAS`) while the shard has fewer in-sync replicas than
    /// this, the leader included. 1 = never refuse.
    #[arg(long, env = "KVSERVER_MIN_INSYNC", default_value_t = 1)]
    pub min_insync: usize,

    /// Bytes of recent writes the leader keeps so a reconnecting follower can resume
    /// (partial resync) instead of copying everything.
    #[arg(long, env = "KVSERVER_REPL_BACKLOG_BYTES", default_value = "16mb", value_parser = size)]
    pub repl_backlog_bytes: u64,

    /// How long a leader keeps its backlog after its last follower left (so that follower can
    /// still resume); a leader that never had followers keeps none, like Redis.
    #[arg(long, env = "KVSERVER_REPL_BACKLOG_TTL_SECS", default_value_t = 3600)]
    pub repl_backlog_ttl_secs: u64,

    /// When no in-sync replica of the shard is alive, let any live replica become leader
    /// (availability over the acknowledged writes that were lost with the in-sync replicas).
    #[arg(long, env = "KVSERVER_UNCLEAN_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub unclean_election: bool,

    /// Most bytes the Lua interpreter holds, e.g. `256mb`: every script's and function
    /// library's data, together. An allocation past it fails the script with an error
    /// (Redis has no such limit; a script can make a server run out of memory there). 0 = no
    /// limit.
    #[arg(long, env = "KVSERVER_SCRIPT_MEMORY", default_value = "256mb", value_parser = size)]
    pub script_memory: u64,

    /// Most keys per second a leader sends to other shards when the ring changes (adding or
    /// removing a shard). 0 = no limit.
    #[arg(long, env = "KVSERVER_MIGRATION_RATE", default_value_t = 200_000)]
    pub migration_rate: u64,

    #[command(flatten)]
    pub resp: kv_config::RespLimits,

    /// Port of the metrics endpoint: HTTP `/metrics` (Prometheus), `/health` (liveness) and
    /// `/ready` (readiness). Read-only and unauthenticated, as Prometheus scrapes; off when
    /// not given. 0 picks a free port.
    #[arg(long, env = "KVSERVER_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Most connections the metrics port serves at once (a scraper and a few probes). When
    /// all are taken, the quietest is closed to make room for a new one.
    #[arg(long, env = "KVSERVER_METRICS_MAX_CONNECTIONS", default_value_t = 64)]
    pub metrics_max_connections: usize,

    /// How long a metrics request's headers may take to arrive, whole.
    #[arg(long, env = "KVSERVER_METRICS_HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub metrics_header_timeout_ms: u64,

    /// A metrics connection on which nothing arrives for this long is closed.
    #[arg(long, env = "KVSERVER_METRICS_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub metrics_idle_timeout_ms: u64,

    /// TLS for clients (`--tls-port` beside the plain port).
    #[command(flatten)]
    pub tls: kv_tls::TlsSettings,

    /// Worker threads. One, like Redis: the store sits behind one lock, so more threads
    /// mostly add contention; run more shards per machine to use more cores.
    #[arg(long, env = "KVSERVER_THREADS", default_value_t = 1)]
    pub threads: usize,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `kv_server=debug`.
    #[arg(long, env = "KVSERVER_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// A configuration with every default, for `shard` (used by the embedded local cluster).
    pub fn for_shard(shard: &str) -> Config {
        Config::parse_from(["kvserver", "--shard", shard])
    }

    /// Checks values that clap cannot, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        kv_cluster::paths::validate_name("shard", &self.shard)?;
        self.tls.validate()?;
        kv_cluster::paths::validate_name("cluster", &self.cluster)?;
        if self.zk_session_timeout_ms < 500 {
            return Err(format!(
                "--zk-session-timeout-ms {} is below 500",
                self.zk_session_timeout_ms
            ));
        }
        if self.replica_lag_timeout_ms < 10 {
            return Err(format!(
                "--replica-lag-timeout-ms {} is below 10",
                self.replica_lag_timeout_ms
            ));
        }
        if self.replica_timeout_ms < self.replica_lag_timeout_ms {
            return Err(format!(
                "--replica-timeout-ms {} is below --replica-lag-timeout-ms {}",
                self.replica_timeout_ms, self.replica_lag_timeout_ms
            ));
        }
        if self.min_insync == 0 {
            return Err("--min-insync must be at least 1".into());
        }
        self.resp.validate()?;
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.host.is_empty() {
            return Err("--host must not be empty".into());
        }
        if self.cluster_port.is_none() && self.port > u16::MAX - 10_000 {
            return Err(format!(
                "--port {} leaves no room for the default cluster port (--port + 10000); set --cluster-port",
                self.port
            ));
        }
        if self.cluster_port.is_some_and(|c| c != 0 && c == self.port) {
            return Err("--cluster-port must differ from --port".into());
        }
        if self.cluster_max_connections == 0 {
            return Err("--cluster-max-connections must be at least 1".into());
        }
        if self.cluster_handshake_timeout_ms == 0 {
            return Err("--cluster-handshake-timeout-ms must be at least 1".into());
        }
        for (flag, value) in [
            ("--metrics-max-connections", self.metrics_max_connections as u64),
            ("--metrics-header-timeout-ms", self.metrics_header_timeout_ms),
            ("--metrics-idle-timeout-ms", self.metrics_idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The cluster port to bind: as given, or `--port` + 10000 (0 when `--port` is 0).
    pub fn cluster_port(&self) -> u16 {
        self.cluster_port
            .unwrap_or(if self.port == 0 { 0 } else { self.port + 10_000 })
    }

    /// The address the cluster port listens on.
    pub fn cluster_bind_addr(&self) -> String {
        format!("{}:{}", self.bind.as_deref().unwrap_or(&self.host), self.cluster_port())
    }

    /// How long a peer may take to prove the secret.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.cluster_handshake_timeout_ms)
    }

    /// The address to listen on.
    pub fn bind_addr(&self) -> String {
        format!("{}:{}", self.bind.as_deref().unwrap_or(&self.host), self.port)
    }

    /// Where the metrics port listens, when there is one.
    pub fn metrics_bind_addr(&self) -> Option<String> {
        let port = self.metrics_port?;
        Some(format!("{}:{port}", self.bind.as_deref().unwrap_or(&self.host)))
    }

    /// The metrics port's connection limits.
    pub fn metrics_limits(&self) -> kv_http::HttpLimits {
        kv_http::HttpLimits {
            max_connections: self.metrics_max_connections,
            header_timeout: Duration::from_millis(self.metrics_header_timeout_ms),
            idle_timeout: Duration::from_millis(self.metrics_idle_timeout_ms),
        }
    }

    /// Where the TLS client port listens, when there is one.
    pub fn tls_bind_addr(&self) -> Option<String> {
        let port = self.tls.tls_port?;
        Some(format!("{}:{port}", self.bind.as_deref().unwrap_or(&self.host)))
    }

    /// Store bounds.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            max_keys: self.max_keys as usize,
            max_bytes: self.maxmemory as usize,
        }
    }

    /// Client request bounds.
    pub fn limits(&self) -> Limits {
        self.resp.limits()
    }

    /// The requested ZooKeeper session timeout.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.zk_session_timeout_ms)
    }

    /// The follower lag bound.
    pub fn lag_timeout(&self) -> Duration {
        Duration::from_millis(self.replica_lag_timeout_ms)
    }

    /// How long a replication stream may stay silent before it is closed.
    pub fn replica_timeout(&self) -> Duration {
        Duration::from_millis(self.replica_timeout_ms)
    }

    /// How long a follower may serve reads after the leader vouched for it: half the lag
    /// timeout (so a follower that stopped hearing from its leader has stopped serving
    /// before the leader gives up waiting for it) and under a third of the session timeout
    /// (so it has stopped before a new leader can be elected after its leader's lease).
    pub fn read_lease(&self) -> Duration {
        (self.lag_timeout() / 2).min(self.session_timeout() / 4)
    }

    /// How often a leader sends a heartbeat on each follower stream, busy or idle: often
    /// enough to keep the followers' read leases and the stream's silence timeout satisfied.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.replica_timeout() / 4)
            .min(self.read_lease() / 3)
            .clamp(Duration::from_millis(5), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c = Config::for_shard("s1");
        assert_eq!(c.max_keys, 0);
        assert_eq!(c.replication, ReplicationMode::Sync);
        assert!(c.unclean_election);
        assert!(c.validate().is_ok());
        let c = Config::parse_from(["kvserver", "--shard", "a/b"]);
        assert!(c.validate().unwrap_err().contains("shard"));
        let c = Config::parse_from([
            "kvserver",
            "--shard",
            "s",
            "--maxmemory",
            "1mb",
            "--unclean-election",
            "false",
        ]);
        assert_eq!(c.maxmemory, 1 << 20);
        assert!(!c.unclean_election);
        assert!(Config::try_parse_from(["kvserver", "--shard", "s", "--maxmemory", "lots"]).is_err());
        let c = Config::parse_from(["kvserver", "--shard", "s", "--replica-timeout-ms", "100"]);
        assert!(c.validate().unwrap_err().contains("--replica-timeout-ms"));
        let c = Config::parse_from(["kvserver", "--shard", "s", "--min-insync", "0"]);
        assert!(c.validate().unwrap_err().contains("--min-insync"));
        for flag in [
            "--metrics-max-connections",
            "--metrics-header-timeout-ms",
            "--metrics-idle-timeout-ms",
        ] {
            let c = Config::parse_from(["kvserver", "--shard", "s", flag, "0"]);
            assert_eq!(c.validate().unwrap_err(), format!("{flag} must be at least 1"));
        }
    }
}
