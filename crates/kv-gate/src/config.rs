//! kvgate's configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kv_config::parse_size;
use kv_peer::ClusterSecret;

/// Where reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadPolicy {
    /// Every read goes to the shard leader.
    Leader,
    /// Reads are spread over the leader and its in-sync followers (which hold every
    /// acknowledged write in `sync` replication mode).
    Any,
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// kvgate: the front door of a kvstore cluster.
///
/// The original positional form `kvgate CONNECT_STRING [PORT]` is accepted too.
#[derive(Debug, Clone, Parser)]
#[command(name = "kvgate", version, about = "kvgate: the front door of a kvstore cluster (HTTP API, routing, failover)", long_about = None)]
pub struct Config {
    /// ZooKeeper connection string (positional form).
    #[arg(value_name = "CONNECT_STRING")]
    pub zk_positional: Option<String>,

    /// HTTP port (positional form).
    #[arg(value_name = "PORT")]
    pub port_positional: Option<u16>,

    /// Config file (flat TOML, keys are the long flag names); flags and env override it.
    #[arg(long, env = "KVGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// ZooKeeper connection string, e.g. `zk1:2181,zk2:2181,zk3:2181`.
    #[arg(long, env = "KVGATE_ZK")]
    pub zk: Option<String>,

    /// HTTP port [default: 3000]. 0 picks a free port.
    #[arg(long, env = "KVGATE_HTTP_PORT")]
    pub http_port: Option<u16>,

    /// RESP (Redis protocol) port. 7379, not Redis's 6379, so a gate can run beside Redis.
    /// 0 picks a free port.
    #[arg(long, env = "KVGATE_RESP_PORT", default_value_t = 7379)]
    pub resp_port: u16,

    /// Address to listen on (HTTP and RESP).
    #[arg(long, env = "KVGATE_BIND", default_value = "127.0.0.1")]
    pub bind: String,

    /// Cluster name (`/kvstore/<cluster>` in ZooKeeper).
    #[arg(long, env = "KVGATE_CLUSTER", default_value = "default")]
    pub cluster: String,

    /// Where reads go: `leader` or `any` (leader and in-sync followers, round robin).
    #[arg(long, env = "KVGATE_READ_POLICY", value_enum, default_value_t = ReadPolicy::Leader)]
    pub read_policy: ReadPolicy,

    /// How long a request waits for a shard to have a (new) leader before failing with 503.
    #[arg(long, env = "KVGATE_RETRY_TIMEOUT_MS", default_value_t = 8000)]
    pub retry_timeout_ms: u64,

    /// How long one forwarded command may wait for a server's reply.
    #[arg(long, env = "KVGATE_BACKEND_TIMEOUT_MS", default_value_t = 5000)]
    pub backend_timeout_ms: u64,

    /// Persistent connections per server (on its cluster port; monitoring uses one more).
    #[arg(long, env = "KVGATE_BACKEND_CONNECTIONS", default_value_t = 2)]
    pub backend_connections: usize,

    /// Commands in flight per server connection, at most.
    #[arg(long, env = "KVGATE_BACKEND_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub backend_max_in_flight: usize,

    /// Largest key accepted, in bytes (413 beyond).
    #[arg(long, env = "KVGATE_MAX_KEY_BYTES", default_value = "8kb", value_parser = size)]
    pub max_key_bytes: u64,

    /// Largest value accepted, in bytes (413 beyond).
    #[arg(long, env = "KVGATE_MAX_VALUE_BYTES", default_value = "16mb", value_parser = size)]
    pub max_value_bytes: u64,

    #[command(flatten)]
    pub resp: kv_config::RespLimits,

    #[command(flatten)]
    pub cluster_auth: kv_config::ClusterAuth,

    #[command(flatten)]
    pub users: kv_config::UserAuth,

    /// TLS: `--tls-port` serves RESP over TLS beside the plain RESP port.
    #[command(flatten)]
    pub tls: kv_tls::TlsSettings,

    /// HTTPS port: the HTTP API over TLS (the --tls-* certificate), beside the plain HTTP
    /// port. 0 picks a free port.
    #[arg(long, env = "KVGATE_HTTPS_PORT")]
    pub https_port: Option<u16>,

    /// The cluster secret itself, for an embedding process (the local cluster makes one);
    /// takes precedence over --cluster-secret-file.
    #[arg(skip)]
    pub cluster_secret: Option<Arc<ClusterSecret>>,

    /// Most HTTP connections served at once. When all are taken, the quietest is closed to
    /// make room for a new one; only when all are busy does a new one wait for a slot.
    #[arg(long, env = "KVGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// How long an HTTP request's headers may take to arrive, whole.
    #[arg(long, env = "KVGATE_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,

    /// How long an HTTP request's body may take to arrive, whole.
    #[arg(long, env = "KVGATE_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_body_timeout_ms: u64,

    /// An HTTP connection on which nothing arrives for this long is closed.
    #[arg(long, env = "KVGATE_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub http_idle_timeout_ms: u64,

    /// Most bytes of request bodies buffered at once, over all HTTP connections; an upload
    /// that would pass it gets 503 (retry later).
    #[arg(long, env = "KVGATE_HTTP_BODY_BUDGET", default_value = "256mb", value_parser = size)]
    pub http_body_budget: u64,

    /// ZooKeeper session timeout.
    #[arg(long, env = "KVGATE_ZK_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub zk_session_timeout_ms: u64,

    /// Worker threads; 0 (the default) = chosen for the machine ([`Config::worker_threads`]):
    /// one on a machine of up to two cores, one per core on a larger one. A gate holds no
    /// shared state, so it scales with threads when it has cores to itself.
    #[arg(long, env = "KVGATE_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "KVGATE_LOG", default_value = "info")]
    pub log: String,
}

/// Worker threads for a machine of `cores`. Up to two cores: one thread (a current-thread
/// runtime, no cross-thread handoffs), which left the rest to the kernel's loopback work and
/// measured 1.13× twemproxy's SET rate at -P 1 where one thread per core made 0.93× (issue 10;
/// `bench/bench.py`, 2 cores). Above that, one per core: the gate shares nothing between
/// connections. (Only the 2-core case was measured here.)
pub fn auto_threads(cores: usize) -> usize {
    if cores <= 2 { 1 } else { cores }
}

impl Config {
    /// Defaults, for the embedded local cluster and tests.
    pub fn local(http_port: u16, resp_port: u16) -> Config {
        let mut c = Config::parse_from(["kvgate"]);
        c.http_port = Some(http_port);
        c.resp_port = resp_port;
        c
    }

    /// The worker threads to run: `--threads`, or when 0, a choice for this machine.
    pub fn worker_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self.threads {
            0 => auto_threads(cores),
            n => n,
        }
    }

    /// Checks values clap cannot and resolves the positional form.
    pub fn validate(&mut self) -> Result<(), String> {
        self.tls.validate()?;
        if self.https_port.is_some() && !self.tls.enabled() {
            return Err("--https-port needs --tls-cert-file and --tls-key-file".into());
        }
        match (&self.zk, self.zk_positional.take()) {
            (Some(a), Some(b)) if *a != b => {
                return Err(format!("--zk {a} and the positional connection string {b} disagree"));
            }
            (None, Some(b)) => self.zk = Some(b),
            _ => {}
        }
        match (self.http_port, self.port_positional.take()) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!("--http-port {a} and the positional port {b} disagree"));
            }
            (None, Some(b)) => self.http_port = Some(b),
            _ => {}
        }
        kv_cluster::paths::validate_name("cluster", &self.cluster)?;
        for (flag, value) in [
            ("--backend-connections", self.backend_connections as u64),
            ("--backend-max-in-flight", self.backend_max_in_flight as u64),
            ("--max-connections", self.max_connections as u64),
            ("--http-header-timeout-ms", self.http_header_timeout_ms),
            ("--http-body-timeout-ms", self.http_body_timeout_ms),
            ("--http-idle-timeout-ms", self.http_idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        self.resp.validate()?;
        if self.max_key_bytes == 0 || self.max_value_bytes == 0 {
            return Err("--max-key-bytes and --max-value-bytes must be at least 1".into());
        }
        if self.max_value_bytes > 1 << 30 {
            return Err("--max-value-bytes above 1gb is not supported over HTTP".into());
        }
        Ok(())
    }

    /// The HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port.unwrap_or(3000)
    }

    pub fn retry_timeout(&self) -> Duration {
        Duration::from_millis(self.retry_timeout_ms)
    }

    pub fn backend_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_timeout_ms)
    }

    /// Largest HTTP request body that can hold a key and a value within the limits.
    /// The HTTP side's connection limits.
    pub fn http_limits(&self) -> kv_http::HttpLimits {
        kv_http::HttpLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        let value = (self.max_value_bytes as usize).div_ceil(3) * 4;
        // JSON escaping can multiply a key by 6 (\uXXXX), plus field names and ttl.
        value + self.max_key_bytes as usize * 6 + 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_form_and_flags() {
        let mut c = Config::parse_from(["kvgate", "zk:2181", "3100"]);
        c.validate().unwrap();
        assert_eq!((c.zk.as_deref(), c.http_port()), (Some("zk:2181"), 3100));
        let mut c = Config::parse_from(["kvgate", "--zk", "zk:2181", "--http-port", "3200"]);
        c.validate().unwrap();
        assert_eq!((c.zk.as_deref(), c.http_port()), (Some("zk:2181"), 3200));
        let mut c = Config::parse_from(["kvgate", "--zk", "a:1"]);
        c.validate().unwrap();
        assert_eq!(c.http_port(), 3000);
        let mut c = Config::parse_from(["kvgate", "a:1", "--zk", "b:1"]);
        assert!(c.validate().is_err());
        assert_eq!(Config::parse_from(["kvgate"]).read_policy, ReadPolicy::Leader);
        for flag in [
            "--backend-connections",
            "--backend-max-in-flight",
            "--max-connections",
            "--http-header-timeout-ms",
            "--http-body-timeout-ms",
            "--http-idle-timeout-ms",
        ] {
            let mut c = Config::parse_from(["kvgate", "a:1", flag, "0"]);
            assert_eq!(c.validate().unwrap_err(), format!("{flag} must be at least 1"));
        }
    }

    #[test]
    fn default_threads_follow_the_machine() {
        assert_eq!((auto_threads(1), auto_threads(2), auto_threads(8)), (1, 1, 8));
        let mut c = Config::parse_from(["kvgate", "--threads", "3"]);
        assert_eq!(c.worker_threads(), 3);
        c.threads = 0;
        assert!(c.worker_threads() >= 1);
    }
}
