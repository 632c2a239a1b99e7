//! A child process of one of the built binaries.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Asks the kernel to SIGKILL the child when the thread that started it ends, so that a
/// killed test binary leaves no process behind.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A running kvserver or kvgate.
pub struct Proc {
    pub name: String,
    /// The address it announced (`... listening on ADDR`).
    pub addr: String,
    /// A gate's RESP address (`resp=ADDR` on the same line).
    pub resp: Option<String>,
    /// A server's cluster port (`cluster=ADDR` on the same line).
    pub cluster: Option<String>,
    /// Its TLS port (`tls=ADDR` on the same line), when it has one.
    pub tls: Option<String>,
    /// A gate's HTTPS address (`https=ADDR`), when it has one.
    pub https: Option<String>,
    /// A server's metrics address (`metrics=ADDR`), when it has one.
    pub metrics: Option<String>,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

fn word(rest: &str, prefix: &str) -> Option<String> {
    rest.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix))
        .map(String::from)
}

impl Proc {
    /// Starts `cmd` (stdout and stderr are set here) and waits, without blocking the test's
    /// runtime, up to 20 s for its `listening on` line.
    pub async fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).expect("create log file");
        // `info`, unless the test chose its own filter.
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        // Lines are read on a thread of their own (the pipe must be drained for the child's
        // whole life); the first `listening on` line is handed over.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok(rest)) => Proc {
                name: name.into(),
                addr: rest.split_whitespace().next().unwrap_or_default().to_string(),
                resp: word(&rest, "resp="),
                cluster: word(&rest, "cluster="),
                tls: word(&rest, "tls="),
                https: word(&rest, "https="),
                metrics: word(&rest, "metrics="),
                child,
                log,
                exited: None,
            },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let logs = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{name} did not start within 20 s; its log:\n{logs}");
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The server's cluster address.
    pub fn cluster_addr(&self) -> &str {
        self.cluster.as_deref().expect("a kvserver announces its cluster port")
    }

    /// Sends `sig` (SIGSTOP, SIGCONT, SIGTERM, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by its pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// SIGKILL, and reap (immediate for a killed process).
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit status.
    pub async fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The process's stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too.
        self.kill();
    }
}
