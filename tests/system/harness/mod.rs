//! Real-process test harness: a ZooKeeper started on a free port with a temporary data
//! directory, and the built binaries as child processes.
//!
//! Every child is started by the test, killed through its own handle when the test ends
//! (`Drop`), and asked to die with the test thread (`PR_SET_PDEATHSIG`) should the test
//! binary itself be killed. Readiness is polled against deadlines, never slept for. When a
//! test fails, the children's logs are printed.

pub mod cluster;
pub mod history;
pub mod load;
pub mod metrics;
pub mod netns;
pub mod proc;
pub mod workload;
pub mod zk;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use cluster::TestCluster;
pub use proc::Proc;
pub use zk::ZooKeeper;

/// Runs `redis-cli -h host -p port args...` (installed by `scripts/ensure-deps.sh`) and
/// returns its output, trimmed; panics when it fails.
pub fn redis_cli(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("run redis-cli (installed by scripts/ensure-deps.sh)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Waits until the server at `addr` sees every slot served (each server follows the cluster
/// on its own); returns its `CLUSTER INFO`.
pub async fn every_slot_served(addr: &str) -> String {
    eventually(
        &format!("{addr} to see every slot served"),
        Duration::from_secs(10),
        || async { Some(redis_cli(addr, &["CLUSTER", "INFO"])).filter(|i| i.starts_with("cluster_state:ok")) },
    )
    .await
}

/// The Python with redis-py that `scripts/ensure-deps.sh pyredis` installs.
pub fn pyredis() -> &'static str {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyredis/bin/python");
    assert!(
        Path::new(python).exists(),
        "redis-py is missing: run scripts/ensure-deps.sh pyredis (scripts/test.sh does)"
    );
    python
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "kvstore-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port that was free a moment ago (for ZooKeeper, which cannot bind port 0 and report it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Sends one command on a raw RESP connection (a client whose replies a test reads itself:
/// a blocked client, a transaction's session).
pub async fn send(conn: &mut tokio::net::TcpStream, args: &[&str]) {
    use tokio::io::AsyncWriteExt;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.write_all(out.as_bytes()).await.unwrap();
}

/// Reads whatever arrives on `conn` within `limit` (at least one byte), as text.
pub async fn read_some(conn: &mut tokio::net::TcpStream, limit: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(limit, conn.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// Reads from `conn` until what arrived contains `want` (10 s between reads at most).
pub async fn read_until(conn: &mut tokio::net::TcpStream, want: &str) -> String {
    let mut got = String::new();
    while !got.contains(want) {
        got += &read_some(conn, std::time::Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("waiting for {want:?}; got {got:?}"));
    }
    got
}

/// The client address of `shard`'s leader in `info`.
pub fn leader_addr(info: &kv_client::api::ClusterInfo, shard: &str) -> String {
    let s = info.shards.iter().find(|s| s.name == shard).expect("shard listed");
    s.leader.clone().expect("a leader")
}
