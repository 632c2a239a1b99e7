//! A standalone ZooKeeper for one test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, free_port, proc::die_with_parent};

const JAR: &str = "/usr/share/java/zookeeper.jar";

/// A running ZooKeeper (tickTime 200 ms, sessions from 1 s), killed on drop.
pub struct ZooKeeper {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
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
pub fn four_letter(port: u16, cmd: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().ok()?, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Starts ZooKeeper with its config and data in `dir`, serving on `port`; waits until it
/// serves. `Err` carries its log when it did not come up.
fn spawn(dir: &TempDir, port: u16) -> Result<Child, String> {
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
             4lw.commands.whitelist=srvr,ruok,stat,mntr\nminSessionTimeout=1000\n\
             maxSessionTimeout=60000\nmaxClientCnxns=0\n",
            data.display()
        ),
    )
    .unwrap();
    let log_path = dir.path().join("zk.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let mut cmd = Command::new("java");
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
    .arg(&cfg)
    .stdin(Stdio::null())
    .stdout(log.try_clone().unwrap())
    .stderr(log);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("start java (ZooKeeper)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if four_letter(port, "srvr").is_some_and(|out| out.lines().any(|l| l.starts_with("Mode:"))) {
            return Ok(child);
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(std::fs::read_to_string(log_path).unwrap_or_default())
}

impl ZooKeeper {
    /// Starts ZooKeeper (installing it if missing) and waits until it serves.
    pub fn start() -> ZooKeeper {
        ensure_installed();
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("zk");
            let port = free_port();
            match spawn(&dir, port) {
                Ok(child) => {
                    return ZooKeeper {
                        child: Some(child),
                        port,
                        dir,
                    };
                }
                Err(log) => last_log = log,
            }
        }
        panic!("ZooKeeper did not start; its log:\n{last_log}");
    }

    /// Kills the server (its data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same data (sessions and ephemeral
    /// nodes survive, as after a restart of a real ensemble member).
    pub fn restart(&mut self) {
        self.stop();
        let mut last_log = String::new();
        for _ in 0..3 {
            match spawn(&self.dir, self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(log) => last_log = log,
            }
        }
        panic!("ZooKeeper did not restart; its log:\n{last_log}");
    }

    /// `127.0.0.1:<port>`
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zk.log")).unwrap_or_default()
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
