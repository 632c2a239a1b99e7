//! A test cluster: one ZooKeeper, any number of kvservers and kvgates, sharing a cluster
//! secret the harness writes.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kv_client::api::ClusterInfo;
use kv_client::{ConnOptions, Connection, GateClient};
use kv_peer::{ClusterSecret, Counters, PeerAuth, PeerCommand, ServerInfo};

use super::{Proc, TempDir, ZooKeeper, eventually};

/// ZooKeeper session timeout the servers use in tests.
pub const SESSION_TIMEOUT_MS: u64 = 2000;

/// Where a process runs: on loopback, or in a host of a [`super::netns::Net`].
#[derive(Debug, Clone)]
pub struct Place {
    /// Runs the program there (`ip netns exec NAME`), or nothing.
    pub prefix: Vec<String>,
    /// The address it listens on and advertises.
    pub ip: String,
}

impl Place {
    /// This machine's loopback.
    pub fn local() -> Place {
        Place {
            prefix: Vec::new(),
            ip: "127.0.0.1".into(),
        }
    }

    /// Clients of a process in a network namespace come from other addresses than loopback:
    /// protected mode (on by default, as in Redis) would refuse them while no password is set.
    fn protected_mode(&self) -> &'static [&'static str] {
        if self.prefix.is_empty() {
            &[]
        } else {
            &["--protected-mode", "no"]
        }
    }

    fn command(&self, program: &str) -> Command {
        match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

pub struct TestCluster {
    /// The ZooKeeper server (the first, for an ensemble).
    pub zk: ZooKeeper,
    /// The other members of an ensemble.
    pub more_zk: Vec<ZooKeeper>,
    /// The connection string of every member.
    pub zk_connect: String,
    pub dir: TempDir,
    pub servers: Vec<Proc>,
    pub gates: Vec<Proc>,
    /// The file every server and gate reads the cluster secret from.
    pub secret_file: std::path::PathBuf,
    secret: Arc<ClusterSecret>,
    seq: usize,
    /// Environment for the servers and gates started from now on (`RUST_LOG`: the log
    /// filter, `info` when unset).
    pub env: Vec<(String, String)>,
}

impl TestCluster {
    /// Starts ZooKeeper; no servers or gates yet.
    pub async fn start() -> TestCluster {
        let zk = ZooKeeper::start().await;
        TestCluster::with_zk(zk, Vec::new())
    }

    /// A cluster on ZooKeeper servers started elsewhere (an ensemble when `more` is not
    /// empty).
    pub fn with_zk(zk: ZooKeeper, more: Vec<ZooKeeper>) -> TestCluster {
        let zk_connect = std::iter::once(&zk)
            .chain(&more)
            .map(ZooKeeper::connect_string)
            .collect::<Vec<_>>()
            .join(",");
        let dir = TempDir::new("cluster");
        let secret_file = dir.path().join("cluster.secret");
        let mut key = [0u8; 24];
        for b in &mut key {
            *b = fastrand::u8(..);
        }
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&secret_file, format!("{hex}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = Arc::new(ClusterSecret::from_file(&secret_file).unwrap());
        TestCluster {
            zk,
            more_zk: more,
            zk_connect,
            dir,
            servers: Vec::new(),
            gates: Vec::new(),
            secret_file,
            secret,
            seq: 0,
            env: Vec::new(),
        }
    }

    fn log_path(&mut self, name: &str) -> std::path::PathBuf {
        self.seq += 1;
        self.dir.path().join(format!("{:02}-{name}.log", self.seq))
    }

    /// Starts a kvserver of `shard`; returns its index in `servers`.
    pub async fn start_server(&mut self, shard: &str, extra: &[&str]) -> usize {
        self.start_server_at(&Place::local(), shard, extra).await
    }

    /// Starts a kvserver of `shard` at `place`; returns its index in `servers`.
    pub async fn start_server_at(&mut self, place: &Place, shard: &str, extra: &[&str]) -> usize {
        let mut cmd = place.command(env!("CARGO_BIN_EXE_kvserver"));
        cmd.args([
            "--shard",
            shard,
            "--port",
            "0",
            "--zk",
            &self.zk_connect,
            "--host",
            &place.ip,
        ])
        .args(["--zk-session-timeout-ms", &SESSION_TIMEOUT_MS.to_string()])
        .arg("--cluster-secret-file")
        .arg(&self.secret_file)
        .args(place.protected_mode())
        .args(extra)
        .envs(self.env.iter().map(|(k, v)| (k, v)));
        let log = self.log_path(&format!("kvserver-{shard}"));
        let p = Proc::spawn(&format!("kvserver {shard}"), cmd, log).await;
        self.servers.push(p);
        self.servers.len() - 1
    }

    /// Starts a kvgate on free ports; returns its index in `gates`.
    pub async fn start_gate(&mut self, extra: &[&str]) -> usize {
        self.start_gate_at(&Place::local(), extra).await
    }

    /// Starts a kvgate at `place` on free ports; returns its index in `gates`.
    pub async fn start_gate_at(&mut self, place: &Place, extra: &[&str]) -> usize {
        let mut cmd = place.command(env!("CARGO_BIN_EXE_kvgate"));
        cmd.args(["--zk", &self.zk_connect, "--http-port", "0", "--resp-port", "0"])
            .args(["--bind", &place.ip])
            .arg("--cluster-secret-file")
            .arg(&self.secret_file)
            .args(place.protected_mode())
            .args(extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let log = self.log_path("kvgate");
        let p = Proc::spawn("kvgate", cmd, log).await;
        self.gates.push(p);
        self.gates.len() - 1
    }

    /// An HTTP client of gate `i`.
    pub fn client(&self, i: usize) -> GateClient {
        GateClient::new(vec![self.gates[i].addr.clone()], Duration::from_secs(20))
    }

    /// The server announced at `addr` (its client address).
    pub fn server_at(&mut self, addr: &str) -> &mut Proc {
        self.servers
            .iter_mut()
            .find(|p| p.addr == addr)
            .unwrap_or_else(|| panic!("no server at {addr}"))
    }

    /// How a peer (a server or gate of this cluster) connects to a cluster port.
    pub fn peer_options(&self) -> ConnOptions {
        ConnOptions {
            peer: Some(PeerAuth {
                secret: self.secret.clone(),
                name: Arc::from("test"),
            }),
            ..ConnOptions::default()
        }
    }

    /// The `KV.INFO` of the server whose client address is `addr`, asked on its cluster port.
    pub async fn server_info(&self, addr: &str) -> Option<ServerInfo> {
        let p = self.servers.iter().find(|p| p.addr == addr)?;
        let conn = Connection::connect(p.cluster_addr(), &self.peer_options()).await.ok()?;
        let reply = tokio::time::timeout(Duration::from_secs(2), conn.call(PeerCommand::Info.encode()))
            .await
            .ok()?
            .ok()?;
        ServerInfo::from_frame(&reply).ok()
    }

    /// The counters of the server at `addr`.
    pub async fn counters(&self, addr: &str) -> Counters {
        self.server_info(addr).await.expect("KV.INFO answers").counters
    }

    /// Waits until `field` of the counters of the server at `addr` reaches `at_least`.
    pub async fn counter_reaches(&self, addr: &str, what: &str, field: fn(&Counters) -> u64, at_least: u64) -> u64 {
        eventually(
            &format!("{what} of {addr} to reach {at_least}"),
            Duration::from_secs(20),
            || async {
                let info = self.server_info(addr).await?;
                Some(field(&info.counters)).filter(|v| *v >= at_least)
            },
        )
        .await
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

    /// The usual shape: shards `s1` and `s2` of two replicas each and one gate, ready; returns
    /// the cluster and the gate's RESP address.
    pub async fn two_by_two() -> (TestCluster, String) {
        let mut c = TestCluster::start().await;
        for shard in ["s1", "s2"] {
            c.start_server(shard, &[]).await;
            c.start_server(shard, &[]).await;
        }
        c.start_gate(&[]).await;
        c.wait_ready(&[("s1", 2), ("s2", 2)]).await;
        // A shard led a moment after the other joins the ring by a move: wait until the ring
        // holds both and nothing moves, so tests start from a settled cluster.
        let client = c.client(0);
        eventually("the ring settled on s1 and s2", Duration::from_secs(60), || async {
            let info = client.cluster().await.ok()?;
            (info.ring == ["s1", "s2"] && info.next_ring.is_none() && info.migrations.is_empty()).then_some(())
        })
        .await;
        let resp = c.gates[0].resp.clone().expect("the gate announces its RESP address");
        (c, resp)
    }

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
            for zk in std::iter::once(&self.zk).chain(&self.more_zk) {
                let log = zk.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("---- zookeeper {} ----", zk.connect_string());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}
