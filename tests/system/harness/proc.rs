//! A child process of one of the built binaries.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `bin` with `args` and waits (up to 20 s) for its `listening on` line.
    pub fn spawn(name: &str, bin: &str, args: &[String], log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).expect("create log file");
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                        let resp = rest
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("resp="))
                            .map(String::from);
                        return Proc {
                            name: name.into(),
                            addr,
                            resp,
                            child,
                            log,
                            exited: None,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let logs = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("{name} did not start within 20 s; its log:\n{logs}");
                }
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` (SIGSTOP, SIGCONT, SIGTERM, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by its pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
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
        // A SIGSTOPped child must be continued to die promptly... SIGKILL works regardless.
        self.kill();
    }
}
