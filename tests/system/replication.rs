//! Followers that stall, disconnect or restart: the in-sync set shrinks and heals by itself,
//! resyncs are partial within the backlog and full beyond it (asserted through the servers'
//! counters), and `--min-insync` refuses writes that would have too few copies.

use std::time::{Duration, Instant};

use kv_client::api::{ClusterInfo, ReplicaInfo};

use crate::harness::{TestCluster, eventually};

fn replica<'a>(info: &'a ClusterInfo, role: &str) -> &'a ReplicaInfo {
    info.shards[0]
        .replicas
        .iter()
        .find(|r| r.role == role)
        .expect("replica listed")
}

#[tokio::test]
async fn a_stalled_follower_stops_blocking_writes_and_rejoins() {
    let mut c = TestCluster::start().await;
    let lag = ["--replica-lag-timeout-ms", "500"];
    c.start_server("s1", &lag).await;
    c.start_server("s1", &lag).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 2)]).await;
    let gate = c.client(0);
    gate.put("before", b"1", None).await.unwrap();
    let follower = info.shards[0]
        .replicas
        .iter()
        .find(|r| r.role == "follower")
        .unwrap()
        .addr
        .clone();

    c.server_at(&follower).signal(libc::SIGSTOP);
    let paused = Instant::now();
    gate.put("during", b"2", None)
        .await
        .expect("a write while the follower is stalled");
    let waited = paused.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the write waited {waited:?} for a stalled follower"
    );
    eprintln!("a write waited {waited:?} for a stalled follower (lag timeout 500 ms)");
    // The in-sync set shrank in ZooKeeper before the write was released; the gate's view of
    // it follows through its watch.
    crate::harness::eventually(
        "the stalled follower to leave the in-sync set",
        Duration::from_secs(5),
        || async {
            let info = gate.cluster().await.ok()?;
            let f = info.shards[0].replicas.iter().find(|r| r.addr == follower)?;
            (!f.in_sync).then_some(())
        },
    )
    .await;
    // Later writes do not wait for it at all.
    let t = Instant::now();
    for i in 0..20 {
        gate.put(&format!("k{i}"), b"v", None).await.unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(5), "20 writes took {:?}", t.elapsed());

    c.server_at(&follower).signal(libc::SIGCONT);
    crate::harness::eventually(
        "the follower to rejoin with equal contents",
        Duration::from_secs(15),
        || async {
            let info = gate.cluster().await.ok()?;
            let rs = &info.shards[0].replicas;
            (rs.len() == 2
                && rs
                    .iter()
                    .all(|r| r.in_sync && r.digest.is_some() && r.digest == rs[0].digest))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_follower_resumes_within_the_backlog_and_copies_everything_beyond_it() {
    let mut c = TestCluster::start().await;
    let flags = [
        "--replica-lag-timeout-ms",
        "300",
        "--replica-timeout-ms",
        "600",
        "--repl-backlog-bytes",
        "256kb",
    ];
    c.start_server("s1", &flags).await;
    c.start_server("s1", &flags).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 2)]).await;
    let gate = c.client(0);
    for i in 0..200 {
        gate.put(&format!("k{i}"), b"v", None).await.unwrap();
    }
    let leader = replica(&info, "leader").addr.clone();
    let follower = replica(&info, "follower").addr.clone();
    let (full0, partial0) = (
        c.counters(&follower).await.full_syncs_done,
        c.counters(&follower).await.partial_syncs_done,
    );

    // 1. Stalled past the replica timeout while a few writes go on: the leader closes the
    //    stream; resumed, the follower continues from the leader's backlog.
    let timeouts = c.counters(&leader).await.replica_timeouts;
    c.server_at(&follower).signal(libc::SIGSTOP);
    for i in 0..50 {
        gate.put(&format!("p{i}"), b"partial", None).await.unwrap();
    }
    c.counter_reaches(&leader, "replica_timeouts", |k| k.replica_timeouts, timeouts + 1)
        .await;
    c.server_at(&follower).signal(libc::SIGCONT);
    c.counter_reaches(&follower, "partial_syncs_done", |k| k.partial_syncs_done, partial0 + 1)
        .await;
    let info = c.converged("s1", 2).await;
    assert_eq!(
        c.counters(&follower).await.full_syncs_done,
        full0,
        "no full copy was needed"
    );
    assert_eq!(replica(&info, "follower").keys, Some(250));

    // 2. Stalled while more than the backlog is written: it must copy everything.
    let timeouts = c.counters(&leader).await.replica_timeouts;
    c.server_at(&follower).signal(libc::SIGSTOP);
    let value = vec![b'x'; 1024];
    for i in 0..400 {
        gate.put(&format!("f{i}"), &value, None).await.unwrap();
    }
    c.counter_reaches(&leader, "replica_timeouts", |k| k.replica_timeouts, timeouts + 1)
        .await;
    c.server_at(&follower).signal(libc::SIGCONT);
    c.counter_reaches(&follower, "full_syncs_done", |k| k.full_syncs_done, full0 + 1)
        .await;
    let info = c.converged("s1", 2).await;
    assert_eq!(replica(&info, "follower").keys, Some(650));

    // 3. Killed and restarted: an in-memory replica restarts empty, so it copies everything.
    let served = c.counters(&leader).await.full_syncs_served;
    c.server_at(&follower).kill();
    let restarted = c.start_server("s1", &flags).await;
    let addr = c.servers[restarted].addr.clone();
    c.counter_reaches(&addr, "full_syncs_done", |k| k.full_syncs_done, 1)
        .await;
    let info = c.converged("s1", 2).await;
    assert_eq!(replica(&info, "follower").addr, addr);
    assert_eq!(replica(&info, "follower").keys, Some(650));
    assert_eq!(c.counters(&leader).await.full_syncs_served, served + 1);
}

#[tokio::test]
async fn min_insync_refuses_writes_without_enough_copies() {
    let mut c = TestCluster::start().await;
    let flags = ["--min-insync", "2", "--replica-lag-timeout-ms", "300"];
    c.start_server("s1", &flags).await;
    c.start_server("s1", &flags).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 2)]).await;
    let gate = c.client(0);
    gate.put("a", b"1", None).await.unwrap();
    let follower = replica(&info, "follower").addr.clone();

    c.server_at(&follower).signal(libc::SIGSTOP);
    let refused = eventually(
        "a write to be refused for too few copies",
        Duration::from_secs(10),
        || async {
            match gate.put("b", b"2", None).await {
                Err(e) => Some(e.to_string()),
                Ok(()) => None,
            }
        },
    )
    .await;
    assert!(
        refused.contains("NOREPLICAS") && refused.contains("--min-insync"),
        "{refused}"
    );
    assert!(refused.contains("503"), "refused as unavailable: {refused}");

    c.server_at(&follower).signal(libc::SIGCONT);
    let t = Instant::now();
    eventually("writes accepted again", Duration::from_secs(15), || async {
        gate.put("c", b"3", None).await.ok()
    })
    .await;
    eprintln!("writes accepted again {:?} after the follower resumed", t.elapsed());
    c.converged("s1", 2).await;
    assert_eq!(gate.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
}
