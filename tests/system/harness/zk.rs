//! ZooKeeper for one test: standalone on loopback, or members of an ensemble (possibly each
//! in its own network namespace, see `netns`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{TempDir, free_port, proc::die_with_parent};

const JAR: &str = "/usr/share/java/zookeeper.jar";

/// A running ZooKeeper server (tickTime 200 ms, sessions from 1 s), killed on drop.
pub struct ZooKeeper {
    child: Option<Child>,
    host: String,
    port: u16,
    dir: TempDir,
    /// How to run it (a network namespace's `ip netns exec` prefix, or nothing).
    prefix: Vec<String>,
}

fn ensure_installed() {
    if std::path::Path::new(JAR).exists() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ensure-deps.sh");
    let status = Command::new(script)
        .arg("zookeeper")
        .status()
        .expect("run scripts/ensure-deps.sh");
    assert!(
        status.success() && std::path::Path::new(JAR).exists(),
        "ZooKeeper could not be installed"
    );
}

/// Sends a four-letter command and returns the answer.
pub async fn four_letter(host: &str, port: u16, cmd: &str) -> Option<String> {
    let connect = tokio::net::TcpStream::connect((host, port));
    let mut s = tokio::time::timeout(Duration::from_millis(300), connect)
        .await
        .ok()?
        .ok()?;
    s.write_all(cmd.as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_millis(500), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

/// True when the server answers `srvr` with a `Mode:` line (it serves clients).
pub async fn serving(host: &str, port: u16) -> bool {
    four_letter(host, port, "srvr")
        .await
        .is_some_and(|out| out.lines().any(|l| l.starts_with("Mode:")))
}

/// One member of an ensemble: `server.N=host:peer:election` lines are shared.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: u32,
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub election_port: u16,
}

fn config(data: &std::path::Path, host: &str, port: u16, ensemble: &[Member]) -> String {
    let mut cfg = format!(
        "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
         clientPortAddress={host}\nadmin.enableServer=false\n\
         4lw.commands.whitelist=srvr,ruok,stat,mntr\nminSessionTimeout=1000\n\
         maxSessionTimeout=60000\nmaxClientCnxns=0\n",
        data.display()
    );
    for m in ensemble {
        cfg.push_str(&format!(
            "server.{}={}:{}:{}\n",
            m.id, m.host, m.peer_port, m.election_port
        ));
    }
    cfg
}

impl ZooKeeper {
    /// Starts a standalone ZooKeeper on loopback (installing it if missing) and waits until
    /// it serves.
    pub async fn start() -> ZooKeeper {
        ensure_installed();
        let mut last_log = String::new();
        for _ in 0..3 {
            let mut zk = ZooKeeper {
                child: None,
                host: "127.0.0.1".into(),
                port: free_port(),
                dir: TempDir::new("zk"),
                prefix: Vec::new(),
            };
            let data = zk.dir.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(zk.cfg(), config(&data, &zk.host, zk.port, &[])).unwrap();
            zk.launch();
            if zk.wait_serving(Duration::from_secs(20)).await {
                return zk;
            }
            last_log = zk.log();
        }
        panic!("ZooKeeper did not start; its log:\n{last_log}");
    }

    /// Launches member `me` of `ensemble` (run through `prefix`, e.g. `ip netns exec ns`);
    /// does not wait: an ensemble serves only once a quorum is up
    /// ([`ZooKeeper::wait_serving`]).
    pub fn launch_member(me: &Member, ensemble: &[Member], prefix: Vec<String>) -> ZooKeeper {
        ensure_installed();
        let mut zk = ZooKeeper {
            child: None,
            host: me.host.clone(),
            port: me.client_port,
            dir: TempDir::new("zk"),
            prefix,
        };
        let data = zk.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if !ensemble.is_empty() {
            std::fs::write(data.join("myid"), me.id.to_string()).unwrap();
        }
        std::fs::write(zk.cfg(), config(&data, &zk.host, zk.port, ensemble)).unwrap();
        zk.launch();
        zk
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path().join("zoo.cfg")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("zk.log"))
            .unwrap();
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg("java");
                c
            }
            None => Command::new("java"),
        };
        cmd.args([
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-cp",
            "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        ])
        .arg(self.cfg())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("start java (ZooKeeper)"));
    }

    /// Polls until the server serves clients; false after `limit` (or when it exited).
    pub async fn wait_serving(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if serving(&self.host, self.port).await {
                return true;
            }
            if let Some(c) = &mut self.child
                && c.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Kills the server (its data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same data (sessions and ephemeral
    /// nodes survive, as after a restart of a real ensemble member). A standalone server is
    /// waited for.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch();
        if !self.wait_serving(Duration::from_secs(20)).await {
            panic!("ZooKeeper did not restart; its log:\n{}", self.log());
        }
    }

    /// `host:port`
    pub fn connect_string(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zk.log")).unwrap_or_default()
    }
}

/// Runs ZooKeeper's own command-line client (`zkCli.sh`) on `connect`, feeding it
/// `commands` one per line, and returns what it printed (stdout and stderr: it reports
/// refusals such as `Insufficient permission` on stderr).
pub fn zk_cli(connect: &str, commands: &[String]) -> String {
    use std::io::Write;
    let mut child = Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .args(["-server", connect])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run zkCli.sh");
    let mut input = commands.join("\n");
    input.push_str("\nquit\n");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("zkCli.sh output");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}
