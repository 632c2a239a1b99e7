//! A replica that joins a shard later receives the data; it may then outlive the others.

use std::time::Duration;

use crate::harness::{TestCluster, eventually};

#[tokio::test]
async fn a_late_replica_gets_the_data_and_survives_the_old_ones() {
    let mut c = TestCluster::start().await;
    let a = c.start_server("s1", &[]).await;
    let b = c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 2)]).await;
    let gate = c.client(0);
    for i in 0..500 {
        gate.put(&format!("k{i}"), format!("v{i}").as_bytes(), None)
            .await
            .unwrap();
    }
    let late = c.start_server("s1", &[]).await;
    let late_addr = c.servers[late].addr.clone();
    let info = c.wait_ready(&[("s1", 3)]).await;
    let joined = info.shards[0].replicas.iter().find(|r| r.addr == late_addr).unwrap();
    assert_eq!(joined.keys, Some(500), "the new replica holds every key once in sync");

    // Writes after the join reach it too.
    gate.put("after-join", b"x", None).await.unwrap();
    c.servers[a].kill();
    c.servers[b].kill();
    eventually("the late replica to lead", Duration::from_secs(15), || async {
        let info = gate.cluster().await.ok()?;
        (info.shards.first()?.leader.as_deref() == Some(late_addr.as_str())).then_some(())
    })
    .await;
    for i in 0..500 {
        assert_eq!(
            gate.get(&format!("k{i}")).await.unwrap().as_deref(),
            Some(format!("v{i}").as_bytes())
        );
    }
    assert_eq!(gate.get("after-join").await.unwrap().as_deref(), Some(&b"x"[..]));
}
