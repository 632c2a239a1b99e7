//! Continuous writes through a gate, recording which were acknowledged, so a test can check
//! that none of them was lost whatever happened meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_client::GateClient;
use tokio::task::JoinHandle;

use super::eventually;

/// One acknowledged write: its key (the value is the key too) and when it was sent and
/// acknowledged.
#[derive(Debug, Clone)]
pub struct Acked {
    pub key: String,
    pub sent: Instant,
    pub done: Instant,
}

/// Writers putting unique keys through a gate until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    acked: Arc<Mutex<Vec<Acked>>>,
    failed: Arc<AtomicU64>,
    unknown: Arc<AtomicU64>,
}

/// What the writers did, once stopped.
pub struct Stopped {
    pub acked: Vec<Acked>,
    /// Writes the gate failed for any reason, those of unknown outcome included.
    pub failed: u64,
    /// Of those, writes the gate reported as of unknown outcome (`502`): sent to a server
    /// that failed before answering, so never sent again (see the gate's `forward` module).
    pub unknown: u64,
}

impl Load {
    /// Starts `workers` writers, each putting `<prefix>-<worker>-<n>` for n = 0, 1, ...
    pub fn start(client: GateClient, workers: usize, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let unknown = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|w| {
                let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
                let (failed, unknown) = (failed.clone(), unknown.clone());
                let prefix = format!("{prefix}-{w}");
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{prefix}-{n}");
                        n += 1;
                        let sent = Instant::now();
                        match client.put(&key, key.as_bytes(), None).await {
                            Ok(()) => acked.lock().unwrap().push(Acked {
                                key,
                                sent,
                                done: Instant::now(),
                            }),
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                if matches!(e, kv_client::GateError::Status { status: 502, .. }) {
                                    unknown.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            acked,
            failed,
            unknown,
        }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// When the first write of a key matching `which`, sent at or after `t`, was acknowledged.
    pub fn first_ack_sent_after(&self, t: Instant, which: impl Fn(&str) -> bool) -> Option<Instant> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.sent >= t && which(&a.key))
            .map(|a| a.done)
            .min()
    }

    /// Waits (up to `limit`, naming `what` on failure) until a write sent at or after `t` is
    /// acknowledged; returns how long after `t` that was.
    pub async fn resumed_after(&self, t: Instant, what: &str, limit: Duration) -> Duration {
        let at = eventually(what, limit, || async { self.first_ack_sent_after(t, |_| true) }).await;
        at - t
    }

    /// Stops the writers; returns what they did.
    pub async fn stop(self) -> Stopped {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer task");
        }
        Stopped {
            acked: std::mem::take(&mut *self.acked.lock().unwrap()),
            failed: self.failed.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
        }
    }
}

/// Reads back every acknowledged write through `client`; returns the keys that are missing
/// or hold another value.
pub async fn lost(client: &GateClient, acked: &[Acked]) -> Vec<String> {
    let mut lost = Vec::new();
    for a in acked {
        match client.get(&a.key).await {
            Ok(Some(v)) if v == a.key.as_bytes() => {}
            _ => lost.push(a.key.clone()),
        }
    }
    lost
}

/// Asserts that every acknowledged write reads back through `client`, and reports how many
/// there were (and how many writes failed, which is allowed: they were never acknowledged).
pub async fn assert_none_lost(client: &GateClient, acked: &[Acked], failed: u64) {
    assert!(
        !acked.is_empty(),
        "no write was acknowledged at all ({failed} failed): the check would prove nothing"
    );
    let missing = lost(client, acked).await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} acknowledged writes all present ({failed} reported failed)",
        acked.len()
    );
}
