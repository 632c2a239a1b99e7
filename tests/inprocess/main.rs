//! In-process tests: servers and a gate in this process on port 0, coordinated by the
//! in-process coordinator — the same server and gate code as a real cluster.

use std::sync::Arc;
use std::time::Duration;

use kv_client::GateClient;
use kv_client::api::ClusterInfo;
use kvstore::local::{LocalCluster, LocalOptions};

async fn start(shards: usize, replicas: usize, tweak: impl FnOnce(&mut LocalOptions)) -> (LocalCluster, GateClient) {
    let mut opts = LocalOptions {
        shards,
        replicas,
        gate: kv_gate::Config::local(0, 0),
        server: kv_server::Config::for_shard("unused"),
    };
    tweak(&mut opts);
    let cluster = LocalCluster::start(opts).await.expect("local cluster starts");
    let client = GateClient::new(vec![cluster.gate.http_addr().to_string()], Duration::from_secs(20));
    (cluster, client)
}

/// Polls the topology until `ok` holds (10 s at most).
async fn until(client: &GateClient, what: &str, ok: impl Fn(&ClusterInfo) -> bool) -> ClusterInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(info) = client.cluster().await {
            if ok(&info) {
                return info;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; last topology: {info:#?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn converged(info: &ClusterInfo) -> bool {
    info.shards.iter().all(|s| {
        let first = &s.replicas[0];
        first.digest.is_some()
            && s.replicas
                .iter()
                .all(|r| r.in_sync && r.digest == first.digest && r.keys == first.keys)
    })
}

#[tokio::test]
async fn serves_and_replicas_converge() {
    let (cluster, client) = start(2, 2, |_| {}).await;
    for i in 0..100 {
        client
            .put(&format!("k{i}"), format!("v{i}").as_bytes(), None)
            .await
            .unwrap();
    }
    for i in (0..100).step_by(2) {
        assert!(client.delete(&format!("k{i}")).await.unwrap());
    }
    for i in 0..100 {
        let got = client.get(&format!("k{i}")).await.unwrap();
        assert_eq!(got.is_some(), i % 2 == 1, "k{i}");
    }
    let info = until(&client, "replicas to converge", converged).await;
    let keys: u64 = info.shards.iter().map(|s| s.replicas[0].keys.unwrap()).sum();
    assert_eq!(keys, 50);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_leader_that_stops_is_replaced_and_nothing_is_lost() {
    let (mut cluster, client) = start(1, 3, |_| {}).await;
    for i in 0..200 {
        client.put(&format!("k{i}"), b"v", None).await.unwrap();
    }
    let leader = cluster
        .servers
        .iter()
        .position(|s| matches!(s.node().role(), kv_server::node::Role::Leader { .. }))
        .unwrap();
    let old = cluster.servers.remove(leader);
    let old_addr = old.addr().to_string();
    old.shutdown().await;
    client.put("after", b"x", None).await.expect("writes resume");
    for i in 0..200 {
        assert!(client.get(&format!("k{i}")).await.unwrap().is_some(), "k{i} lost");
    }
    let info = until(&client, "two converged replicas under a new leader", |i| {
        i.shards[0].replicas.len() == 2 && i.shards[0].leader.as_deref() != Some(old_addr.as_str()) && converged(i)
    })
    .await;
    assert_eq!(info.shards[0].epoch, 2);
    assert_eq!(info.shards[0].replicas[0].keys, Some(201));
    cluster.shutdown().await;
}

#[tokio::test]
async fn evictions_are_decided_by_the_leader_and_replicated() {
    let (cluster, client) = start(1, 2, |o| o.server.max_keys = 20).await;
    for i in 0..100 {
        client.put(&format!("k{i}"), b"v", None).await.unwrap();
    }
    let info = until(&client, "replicas to converge", converged).await;
    assert_eq!(info.shards[0].replicas[0].keys, Some(20));
    // Least recently used went first: the last 20 written remain.
    for i in 80..100 {
        assert!(client.get(&format!("k{i}")).await.unwrap().is_some(), "k{i} evicted");
    }
    assert!(client.get("k0").await.unwrap().is_none());
    cluster.shutdown().await;
}

#[tokio::test]
async fn expiry_is_decided_by_the_leader_and_replicated() {
    let (cluster, client) = start(1, 2, |_| {}).await;
    for i in 0..50 {
        client.put(&format!("t{i}"), b"v", Some(100)).await.unwrap();
    }
    client.put("stays", b"v", None).await.unwrap();
    // Active expiry removes them on the leader, and the deletes reach the follower.
    let info = until(&client, "expired keys to be removed everywhere", |i| {
        converged(i) && i.shards[0].replicas[0].keys == Some(1)
    })
    .await;
    assert_eq!(info.shards[0].replicas[1].keys, Some(1));
    cluster.shutdown().await;
}

#[tokio::test]
async fn reads_spread_over_in_sync_replicas_with_policy_any() {
    let (cluster, client) = start(1, 3, |o| o.gate.read_policy = kv_gate::ReadPolicy::Any).await;
    until(&client, "three in-sync replicas", |i| {
        i.shards[0].replicas.iter().filter(|r| r.in_sync).count() == 3
    })
    .await;
    for i in 0..30 {
        client
            .put(&format!("k{i}"), format!("v{i}").as_bytes(), None)
            .await
            .unwrap();
        // Read-your-writes holds: in sync mode every in-sync replica applied the write.
        assert_eq!(
            client.get(&format!("k{i}")).await.unwrap().as_deref(),
            Some(format!("v{i}").as_bytes())
        );
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_replica_added_later_copies_the_data() {
    let (mut cluster, client) = start(1, 1, |_| {}).await;
    for i in 0..300 {
        client.put(&format!("k{i}"), b"v", None).await.unwrap();
    }
    let config = cluster.servers[0].node().config.clone();
    let coord = Arc::new(cluster.coordinator.connect());
    cluster
        .servers
        .push(kv_server::Server::start(config, coord).await.unwrap());
    let info = until(&client, "the new replica in sync", |i| {
        i.shards[0].replicas.len() == 2 && converged(i)
    })
    .await;
    assert_eq!(info.shards[0].replicas[1].keys, Some(300));
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_coordinator_that_lost_its_data_never_makes_the_epoch_go_backwards() {
    use kv_cluster::{Coordinator, Paths};
    use std::sync::atomic::Ordering;

    let (cluster, client) = start(1, 2, |_| {}).await;
    for i in 0..50 {
        client.put(&format!("k{i}"), b"v", None).await.unwrap();
    }
    let before = until(&client, "both replicas in sync", |i| {
        i.shards[0].replicas.len() == 2 && converged(i)
    })
    .await;
    let old_epoch = before.shards[0].epoch;
    let shard = before.shards[0].name.clone();

    // Wipe the shard's leadership state, as a ZooKeeper restored from an old backup (or
    // wiped) would present it.
    let admin = cluster.coordinator.connect();
    let paths = Paths::new(&cluster.servers[0].node().config.cluster);
    admin.delete(&paths.state(&shard), None).await.unwrap();
    admin.delete(&paths.leader(&shard), None).await.unwrap();

    let after = until(&client, "a new leader above the old epoch", |i| {
        i.shards[0].leader.is_some() && ![0, old_epoch].contains(&i.shards[0].epoch) && converged(i)
    })
    .await;
    assert!(
        after.shards[0].epoch > old_epoch,
        "epoch {} after the loss, {old_epoch} before",
        after.shards[0].epoch
    );
    let regressions: u64 = cluster
        .servers
        .iter()
        .map(|s| s.node().stats.epoch_regressions.load(Ordering::Relaxed))
        .sum();
    assert!(regressions >= 1, "the loss was reported");
    client.put("after", b"x", None).await.unwrap();
    for i in 0..50 {
        assert!(client.get(&format!("k{i}")).await.unwrap().is_some(), "k{i} lost");
    }
    cluster.shutdown().await;
}
