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

impl ZooKeeper {
    /// Starts ZooKeeper (installing it if missing) and waits until it serves.
    pub fn start() -> ZooKeeper {
        ensure_installed();
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("zk");
            let port = free_port();
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
            let log = std::fs::File::create(dir.path().join("zk.log")).unwrap();
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
                    return ZooKeeper {
                        child: Some(child),
                        port,
                        dir,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.path().join("zk.log")).unwrap_or_default();
        }
        panic!("ZooKeeper did not start; its log:\n{last_log}");
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
