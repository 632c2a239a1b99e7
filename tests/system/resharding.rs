//! Adding and removing shards under load: keys move online with no misses for keys that
//! existed before, no lost acknowledged writes, and the old owners end without the moved keys.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kv_client::api::ClusterInfo;
use tokio::task::JoinHandle;

use crate::harness::load::{Load, Stopped, assert_none_lost};
use crate::harness::{TestCluster, eventually};

const KEYS: usize = 100_000;
/// Servers hold every key (the default `--max-keys` would evict).
const NO_LIMIT: [&str; 2] = ["--max-keys", "0"];

async fn connect(addr: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the gate")
}

/// Writes `pre:<i>` = `v<i>` for every i < n through the gate, in pipelined MSETs.
async fn preload(resp: &str, n: usize) {
    let mut conn = connect(resp).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut cmd = redis::cmd("MSET");
        for i in chunk {
            cmd.arg(format!("pre:{i}")).arg(format!("v{i}"));
        }
        let () = cmd.query_async(&mut conn).await.expect("MSET");
    }
}

/// Readers of pre-existing keys through the gate's RESP port, counting misses (worker 0
/// rewrites them instead).
struct Readers {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<Vec<String>>>,
}

impl Readers {
    async fn start(resp: &str, n: usize, workers: usize) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let (reads, misses) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut tasks = Vec::new();
        for w in 0..workers {
            let mut conn = connect(resp).await;
            let (stop, reads, misses) = (stop.clone(), reads.clone(), misses.clone());
            tasks.push(tokio::spawn(async move {
                let mut missed = Vec::new();
                let mut i = w * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 104_729) % n;
                    let key = format!("pre:{i}");
                    if w == 0 {
                        // One worker rewrites pre-existing keys with their own values, so moving
                        // keys are also written (pulled, then dropped at the old owner).
                        let set: redis::RedisResult<()> = redis::cmd("SET")
                            .arg(&key)
                            .arg(format!("v{i}"))
                            .query_async(&mut conn)
                            .await;
                        // A SET a killed leader had taken is reported as of unknown outcome
                        // (the gate does not send a write twice); the key holds its value
                        // either way.
                        if let Err(e) = set {
                            assert!(e.to_string().contains("outcome of the write is unknown"), "SET: {e}");
                        }
                        continue;
                    }
                    let got: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.expect("GET");
                    reads.fetch_add(1, Ordering::Relaxed);
                    if got.as_deref() != Some(format!("v{i}").as_str()) {
                        misses.fetch_add(1, Ordering::Relaxed);
                        missed.push(key);
                    }
                }
                missed
            }));
        }
        Readers {
            stop,
            reads,
            misses,
            tasks,
        }
    }

    /// Stops; returns (reads, keys that missed).
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut missed = Vec::new();
        for t in self.tasks {
            missed.extend(t.await.unwrap());
        }
        assert_eq!(self.misses.load(Ordering::Relaxed) as usize, missed.len());
        (self.reads.load(Ordering::Relaxed), missed)
    }
}

/// Waits until the ring is exactly `shards` with no move under way.
async fn ring_settles(c: &TestCluster, shards: &[&str], limit: Duration) -> ClusterInfo {
    let gate = c.client(0);
    eventually(&format!("the ring to settle on {shards:?}"), limit, || async {
        let info = gate.cluster().await.ok()?;
        (info.ring == shards && info.next_ring.is_none() && info.migrations.is_empty()).then_some(info)
    })
    .await
}

/// Keys held by each shard's leader.
fn leader_keys(info: &ClusterInfo, shard: &str) -> u64 {
    info.shards
        .iter()
        .find(|s| s.name == shard)
        .and_then(|s| s.replicas.iter().find(|r| r.role == "leader"))
        .and_then(|r| r.keys)
        .unwrap_or(0)
}

/// Waits until the leaders' key counts add up to `distinct` (the old owners deleted what
/// moved), or up to `unknown` more (writes of unknown outcome that were applied); returns the
/// counts.
async fn counts_add_up(c: &TestCluster, shards: &[&str], distinct: u64, unknown: u64) -> Vec<u64> {
    let gate = c.client(0);
    eventually(
        "per-shard key counts to add up to the distinct keys",
        Duration::from_secs(30),
        || async {
            let info = gate.cluster().await.ok()?;
            let counts: Vec<u64> = shards.iter().map(|s| leader_keys(&info, s)).collect();
            (distinct..=distinct + unknown)
                .contains(&counts.iter().sum::<u64>())
                .then_some(counts)
        },
    )
    .await
}

/// Checks no acknowledged write was lost and none failed, except, when a leader was killed,
/// at most `in_flight` of unknown outcome (each writer's one write the dead leader had taken).
/// Returns how many were acknowledged and how many are of unknown outcome.
async fn check_writes(c: &TestCluster, load: Load, in_flight: u64) -> (u64, u64) {
    let Stopped { acked, failed, unknown } = load.stop().await;
    assert_none_lost(&c.client(0), &acked, failed).await;
    assert_eq!(failed, unknown, "writes failed during the move, not for a dead leader");
    assert!(
        unknown <= in_flight,
        "{unknown} writes of unknown outcome, at most {in_flight} expected"
    );
    (acked.len() as u64, unknown)
}

async fn check_reads(readers: Readers) {
    let (reads, missed) = readers.stop().await;
    assert!(
        missed.is_empty(),
        "{} of {reads} reads of pre-existing keys missed, e.g. {:?}",
        missed.len(),
        &missed[..missed.len().min(5)]
    );
    eprintln!("{reads} reads of pre-existing keys during the move, none missed");
}

#[tokio::test]
async fn adding_a_shard_under_load_moves_a_third_of_the_keys() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &NO_LIMIT).await;
    c.start_server("s2", &NO_LIMIT).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1), ("s2", 1)]).await;
    ring_settles(&c, &["s1", "s2"], Duration::from_secs(20)).await;
    let resp = c.gates[0].resp.clone().unwrap();
    preload(&resp, KEYS).await;
    let readers = Readers::start(&resp, KEYS, 4).await;
    let load = Load::start(c.client(0), 2, "w");

    c.start_server("s3", &NO_LIMIT).await;
    let began = Instant::now();
    ring_settles(&c, &["s1", "s2", "s3"], Duration::from_secs(120)).await;
    eprintln!("the ring settled {:?} after the third shard started", began.elapsed());

    check_reads(readers).await;
    let (written, unknown) = check_writes(&c, load, 0).await;
    let counts = counts_add_up(&c, &["s1", "s2", "s3"], KEYS as u64 + written, unknown).await;
    let share = counts[2] as f64 / (KEYS as u64 + written) as f64;
    eprintln!(
        "keys per shard after the move: {counts:?} (new shard {:.1}%)",
        share * 100.0
    );
    assert!(
        (0.25..=0.40).contains(&share),
        "the new shard holds {:.1}% of the keys",
        share * 100.0
    );
}

#[tokio::test]
async fn removing_a_shard_under_load_drains_it() {
    let mut c = TestCluster::start().await;
    for s in ["s1", "s2", "s3"] {
        c.start_server(s, &NO_LIMIT).await;
    }
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1), ("s2", 1), ("s3", 1)]).await;
    ring_settles(&c, &["s1", "s2", "s3"], Duration::from_secs(20)).await;
    let resp = c.gates[0].resp.clone().unwrap();
    preload(&resp, KEYS).await;
    let readers = Readers::start(&resp, KEYS, 4).await;
    let load = Load::start(c.client(0), 2, "w");

    let host = c.gates[0].addr.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kvctl"))
            .args(["--host", &host, "shard", "remove", "s3"])
            .output()
            .expect("run kvctl")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kvctl shard remove failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("off the ring"), "{stdout}");
    let info = ring_settles(&c, &["s1", "s2"], Duration::from_secs(60)).await;
    assert_eq!(info.ring, ["s1", "s2"]);

    check_reads(readers).await;
    let (written, unknown) = check_writes(&c, load, 0).await;
    let counts = counts_add_up(&c, &["s1", "s2", "s3"], KEYS as u64 + written, unknown).await;
    eprintln!("keys per shard after draining s3: {counts:?}");
    assert_eq!(counts[2], 0, "the removed shard holds nothing");
}

/// Adds s3 to s1 and s2 (2 replicas each), SIGKILLs the leader of `victim` while keys move,
/// and checks the move completes with nothing missed or lost.
async fn leader_killed_mid_move(victim: &str) {
    let mut c = TestCluster::start().await;
    // Slow moves, so the kill lands in the middle of one.
    let flags = ["--max-keys", "0", "--migration-rate", "5000"];
    for s in ["s1", "s2"] {
        c.start_server(s, &flags).await;
        c.start_server(s, &flags).await;
    }
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 2), ("s2", 2)]).await;
    ring_settles(&c, &["s1", "s2"], Duration::from_secs(20)).await;
    let resp = c.gates[0].resp.clone().unwrap();
    let keys = KEYS / 2;
    preload(&resp, keys).await;
    let readers = Readers::start(&resp, keys, 3).await;
    let load = Load::start(c.client(0), 2, "w");

    c.start_server("s3", &flags).await;
    c.start_server("s3", &flags).await;
    let gate = c.client(0);
    let leader = eventually("s1 to be moving keys", Duration::from_secs(30), || async {
        let info = gate.cluster().await.ok()?;
        let m = info
            .migrations
            .iter()
            .find(|m| m.from == "s1" && m.state == "moving" && m.moved > 0)?;
        eprintln!(
            "killing the leader of {victim} at {}/{} keys moved from s1",
            m.moved, m.total
        );
        info.shards.iter().find(|s| s.name == victim)?.leader.clone()
    })
    .await;
    c.server_at(&leader).kill();
    // A gate started mid-move routes from what ZooKeeper holds.
    let late_gate = c.start_gate(&[]).await;
    let late_resp = c.gates[late_gate].resp.clone().unwrap();
    let mid_move = !gate.cluster().await.unwrap().migrations.is_empty();
    let mut conn = connect(&late_resp).await;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let mut cmd = redis::cmd("MGET");
        for i in chunk {
            cmd.arg(format!("pre:{i}"));
        }
        let got: Vec<Option<String>> = cmd.query_async(&mut conn).await.expect("MGET");
        for (i, v) in chunk.iter().zip(got) {
            assert_eq!(v, Some(format!("v{i}")), "pre:{i} through the gate started mid-move");
        }
    }
    eprintln!("a gate started mid-move (move still under way: {mid_move}) read every key");
    ring_settles(&c, &["s1", "s2", "s3"], Duration::from_secs(120)).await;

    check_reads(readers).await;
    // The killed leader's writers may each have had one write in flight.
    let (written, unknown) = check_writes(&c, load, 2).await;
    let counts = counts_add_up(&c, &["s1", "s2", "s3"], keys as u64 + written, unknown).await;
    eprintln!("keys per shard after the move: {counts:?}");
}

#[tokio::test]
async fn a_source_leader_killed_mid_move_does_not_stop_the_move() {
    leader_killed_mid_move("s1").await;
}

#[tokio::test]
async fn a_target_leader_killed_mid_move_does_not_stop_the_move() {
    leader_killed_mid_move("s3").await;
}
