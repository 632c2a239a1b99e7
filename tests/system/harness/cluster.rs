//! A test cluster: one ZooKeeper, any number of kvservers and kvgates.

use std::time::Duration;

use kv_client::GateClient;
use kv_client::api::ClusterInfo;

use super::{Proc, TempDir, ZooKeeper, eventually};

/// ZooKeeper session timeout the servers use in tests.
pub const SESSION_TIMEOUT_MS: u64 = 2000;

pub struct TestCluster {
    pub zk: ZooKeeper,
    pub dir: TempDir,
    pub servers: Vec<Proc>,
    pub gates: Vec<Proc>,
    seq: usize,
}

impl TestCluster {
    /// Starts ZooKeeper; no servers or gates yet.
    pub fn start() -> TestCluster {
        TestCluster {
            zk: ZooKeeper::start(),
            dir: TempDir::new("cluster"),
            servers: Vec::new(),
            gates: Vec::new(),
            seq: 0,
        }
    }

    fn log_path(&mut self, name: &str) -> std::path::PathBuf {
        self.seq += 1;
        self.dir.path().join(format!("{:02}-{name}.log", self.seq))
    }

    /// Starts a kvserver of `shard`; returns its index in `servers`.
    pub fn start_server(&mut self, shard: &str, extra: &[&str]) -> usize {
        let mut args: Vec<String> = vec![
            "--shard".into(),
            shard.into(),
            "--port".into(),
            "0".into(),
            "--zk".into(),
            self.zk.connect_string(),
            "--zk-session-timeout-ms".into(),
            SESSION_TIMEOUT_MS.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.log_path(&format!("kvserver-{shard}"));
        let p = Proc::spawn(&format!("kvserver {shard}"), env!("CARGO_BIN_EXE_kvserver"), &args, log);
        self.servers.push(p);
        self.servers.len() - 1
    }

    /// Starts a kvgate on a free port; returns its index in `gates`.
    pub fn start_gate(&mut self, extra: &[&str]) -> usize {
        let mut args: Vec<String> = vec![
            "--zk".into(),
            self.zk.connect_string(),
            "--http-port".into(),
            "0".into(),
            "--resp-port".into(),
            "0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.log_path("kvgate");
        let p = Proc::spawn("kvgate", env!("CARGO_BIN_EXE_kvgate"), &args, log);
        self.gates.push(p);
        self.gates.len() - 1
    }

    /// An HTTP client of gate `i`.
    pub fn client(&self, i: usize) -> GateClient {
        GateClient::new(vec![self.gates[i].addr.clone()], Duration::from_secs(20))
    }

    /// The server announced at `addr`.
    pub fn server_at(&mut self, addr: &str) -> &mut Proc {
        self.servers
            .iter_mut()
            .find(|p| p.addr == addr)
            .unwrap_or_else(|| panic!("no server at {addr}"))
    }

    /// Waits until every listed shard has a leader and exactly the given number of replicas,
    /// all in sync and reachable.
    pub async fn wait_ready(&self, shards: &[(&str, usize)]) -> ClusterInfo {
        let client = self.client(0);
        let want: Vec<(String, usize)> = shards.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        eventually(
            "every shard led, with all replicas in sync",
            Duration::from_secs(30),
            || {
                let client = client.clone();
                let want = want.clone();
                async move {
                    let info = client.cluster().await.ok()?;
                    let ok = want.iter().all(|(name, n)| {
                        info.shards.iter().any(|s| {
                            &s.name == name
                                && s.leader.is_some()
                                && s.replicas.len() == *n
                                && s.replicas.iter().all(|r| r.in_sync && r.reachable)
                        })
                    }) && info.shards.len() == want.len();
                    ok.then_some(info)
                }
            },
        )
        .await
    }
}

impl TestCluster {
    /// Waits until `shard` has a leader and exactly `replicas` replicas, all in sync, at the
    /// leader's offset and with equal contents (digests).
    pub async fn converged(&self, shard: &str, replicas: usize) -> ClusterInfo {
        let client = self.client(0);
        eventually(
            &format!("the {replicas} replicas of {shard} in sync with equal digests"),
            Duration::from_secs(20),
            || async {
                let info = client.cluster().await.ok()?;
                let s = info.shards.iter().find(|s| s.name == shard)?;
                let rs = &s.replicas;
                let equal = rs
                    .iter()
                    .all(|r| r.in_sync && r.digest.is_some() && r.digest == rs[0].digest && r.lag == Some(0));
                (s.leader.is_some() && rs.len() == replicas && equal).then_some(info)
            },
        )
        .await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("==== logs of the failed test's processes ====");
            for p in self.servers.iter().chain(&self.gates) {
                let logs = p.logs();
                let tail: Vec<&str> = logs.lines().rev().take(60).collect();
                eprintln!("---- {} ({}) ----", p.name, p.addr);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
            let zk = self.zk.log();
            let tail: Vec<&str> = zk.lines().rev().take(20).collect();
            eprintln!("---- zookeeper ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
