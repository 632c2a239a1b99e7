//! Clients for fault tests: each reads and writes a few shared registers (keys) through a
//! gate's RESP port, and also writes keys of its own once each, recording every operation's
//! invocation and completion ([`super::history`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kv_proto::{Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::history::{Kind, Op};

/// Settings of a workload.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shared registers.
    pub keys: usize,
    /// Clients per gate that read, write shared keys and write keys of their own.
    pub clients_per_gate: usize,
    /// Clients per gate that only read: a write stuck behind a partition cannot keep them
    /// from reading wherever their gate routes reads.
    pub readers_per_gate: usize,
    /// How long a client waits for one reply before it gives up on it.
    pub op_timeout: Duration,
    /// Pause between a client's operations.
    pub pause: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keys: 6,
            clients_per_gate: 2,
            readers_per_gate: 2,
            op_timeout: Duration::from_secs(10),
            pause: Duration::from_millis(5),
        }
    }
}

/// One acknowledged write of a key written once.
#[derive(Debug, Clone)]
pub struct Unique {
    pub client: usize,
    pub key: String,
    pub value: String,
    pub call: Duration,
    pub done: Duration,
}

/// What the clients recorded.
#[derive(Default)]
pub struct Recorded {
    pub ops: Vec<Op>,
    pub unique: Vec<Unique>,
}

impl Recorded {
    /// When each write invoked at or after `t` was acknowledged, in order.
    pub fn acks(&self, t: Duration) -> Vec<Duration> {
        self.acks_of(t, |_| true)
    }

    /// [`Recorded::acks`] of the clients `of` accepts.
    pub fn acks_of(&self, t: Duration, of: impl Fn(usize) -> bool) -> Vec<Duration> {
        let shared = self
            .ops
            .iter()
            .filter(|o| matches!(o.kind, Kind::Write(_)) && o.call >= t && of(o.client))
            .filter_map(|o| o.ret);
        let once = self
            .unique
            .iter()
            .filter(|u| u.call >= t && of(u.client))
            .map(|u| u.done);
        let mut acks: Vec<Duration> = shared.chain(once).collect();
        acks.sort();
        acks
    }

    /// The longest time in `[from, to]` during which no write (invoked in that window) was
    /// acknowledged: how long writes were unavailable.
    pub fn longest_gap(&self, from: Duration, to: Duration) -> Duration {
        self.longest_gap_of(from, to, |_| true)
    }

    /// [`Recorded::longest_gap`] for the clients `of` accepts.
    pub fn longest_gap_of(&self, from: Duration, to: Duration, of: impl Fn(usize) -> bool) -> Duration {
        let mut last = from;
        let mut gap = Duration::ZERO;
        for a in self.acks_of(from, of).into_iter().filter(|a| *a <= to).chain([to]) {
            gap = gap.max(a.saturating_sub(last));
            last = last.max(a);
        }
        gap
    }
}

/// Clients running until stopped.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    recorded: Arc<Mutex<Recorded>>,
    pub start: Instant,
}

/// The outcome of one request.
enum Outcome {
    Reply(Frame),
    /// No reply: the request may or may not have been applied.
    Unknown,
}

/// One client's connection, re-opened after a failure.
struct Client {
    addr: String,
    conn: Option<TcpStream>,
    buf: BytesMut,
    timeout: Duration,
}

impl Client {
    async fn call(&mut self, args: &[&[u8]]) -> Outcome {
        if self.conn.is_none() {
            let connect = TcpStream::connect(&self.addr);
            match tokio::time::timeout(Duration::from_secs(1), connect).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    self.conn = Some(s);
                    self.buf.clear();
                }
                // Never sent: for a write this is a definite failure, but it is simply not
                // recorded as one (counted as unknown is also correct, only weaker).
                _ => return Outcome::Unknown,
            }
        }
        let conn = self.conn.as_mut().expect("connected");
        let request = kv_proto::write::command(args.iter().copied());
        let exchange = async {
            conn.write_all(&request).await.ok()?;
            loop {
                if let Ok(Some(frame)) = kv_proto::parse_reply(&mut self.buf, &Limits::REDIS) {
                    return Some(frame);
                }
                if conn.read_buf(&mut self.buf).await.ok()? == 0 {
                    return None;
                }
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Some(frame)) => Outcome::Reply(frame),
            _ => {
                self.conn = None;
                Outcome::Unknown
            }
        }
    }
}

impl Workload {
    /// The client ids of gate `g` (ids are numbered gate by gate).
    pub fn clients_of(settings: &Settings, g: usize) -> std::ops::Range<usize> {
        let per = settings.clients_per_gate + settings.readers_per_gate;
        g * per..(g + 1) * per
    }

    /// Starts the clients of `settings` on each gate RESP address in `gates`.
    pub fn start(gates: &[String], settings: Settings) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (g, addr) in gates.iter().enumerate() {
            for id in Self::clients_of(&settings, g) {
                let reader = id - Self::clients_of(&settings, g).start >= settings.clients_per_gate;
                let (stop, recorded, settings) = (stop.clone(), recorded.clone(), settings.clone());
                let mut client = Client {
                    addr: addr.clone(),
                    conn: None,
                    buf: BytesMut::new(),
                    timeout: settings.op_timeout,
                };
                tasks.push(tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(id as u64 * 7919 + 1);
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let key = format!("reg-{}", rng.usize(..settings.keys));
                        let call = start.elapsed();
                        match if reader { 1 } else { rng.u8(..3) } {
                            0 => {
                                let value = format!("c{id}-{seq}");
                                let outcome = client.call(&[b"SET", key.as_bytes(), value.as_bytes()]).await;
                                let ret = match outcome {
                                    Outcome::Reply(Frame::Simple(_)) => Some(start.elapsed()),
                                    // Refused before it was applied: it changed nothing.
                                    Outcome::Reply(f) if refused(&f) => continue,
                                    _ => None,
                                };
                                recorded.lock().unwrap().ops.push(Op {
                                    client: id,
                                    key,
                                    kind: Kind::Write(value),
                                    call,
                                    ret,
                                });
                            }
                            1 => {
                                let outcome = client.call(&[b"GET", key.as_bytes()]).await;
                                let seen = match outcome {
                                    Outcome::Reply(Frame::Bulk(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
                                    Outcome::Reply(Frame::Null) => None,
                                    _ => continue,
                                };
                                recorded.lock().unwrap().ops.push(Op {
                                    client: id,
                                    key,
                                    kind: Kind::Read(seen),
                                    call,
                                    ret: Some(start.elapsed()),
                                });
                            }
                            _ => {
                                let (key, value) = (format!("once-{id}-{seq}"), format!("{seq}"));
                                let outcome = client.call(&[b"SET", key.as_bytes(), value.as_bytes()]).await;
                                if let Outcome::Reply(Frame::Simple(_)) = outcome {
                                    recorded.lock().unwrap().unique.push(Unique {
                                        client: id,
                                        key,
                                        value,
                                        call,
                                        done: start.elapsed(),
                                    });
                                }
                            }
                        }
                        tokio::time::sleep(settings.pause).await;
                    }
                }));
            }
        }
        Workload {
            stop,
            tasks,
            recorded,
            start,
        }
    }

    /// Since the workload began.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// When the first write invoked at or after `t` was acknowledged, if one was.
    pub fn first_write_acked_after(&self, t: Duration) -> Option<Duration> {
        self.recorded.lock().unwrap().acks(t).into_iter().next()
    }

    /// Stops the clients and returns what they recorded.
    pub async fn stop(self) -> Recorded {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("client task");
        }
        std::mem::take(&mut *self.recorded.lock().unwrap())
    }
}

/// An error reply that says the write was not applied.
fn refused(f: &Frame) -> bool {
    matches!(
        kv_peer::ErrorCode::of(f),
        Some(kv_peer::ErrorCode::NoReplicas | kv_peer::ErrorCode::Oom)
    )
}
