//! ZooKeeper restarted while the cluster serves (briefly, then long enough for the servers'
//! sessions to expire): writes resume within a bound and nothing acknowledged is lost.

use std::time::{Duration, Instant};

use crate::harness::cluster::SESSION_TIMEOUT_MS;
use crate::harness::load::{Load, Stopped, assert_none_lost};
use crate::harness::{TestCluster, eventually};

#[tokio::test]
async fn service_resumes_after_zookeeper_restarts() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 2)]).await;
    let gate_client = c.client(0);
    let load = Load::start(c.client(0), 4, "w");
    eventually("writes flowing", Duration::from_secs(10), || async {
        (load.acked() >= 100).then_some(())
    })
    .await;

    c.zk.stop();
    // How long ZooKeeper stays down is the experiment (half a session timeout), not a wait.
    tokio::time::sleep(Duration::from_millis(SESSION_TIMEOUT_MS / 2)).await;
    c.zk.restart().await;
    let restarted = Instant::now();
    let resumed = load
        .resumed_after(
            restarted,
            "writes acknowledged after the restart",
            Duration::from_secs(20),
        )
        .await;
    eprintln!("writes resumed {resumed:?} after ZooKeeper came back");
    let bound = Duration::from_millis(2 * SESSION_TIMEOUT_MS) + Duration::from_secs(2);
    assert!(resumed <= bound, "writes resumed after {resumed:?}, bound {bound:?}");

    // A longer outage, during which the leader dies: the servers' sessions (2 s) expire and
    // the survivor becomes leader; the gate's session (10 s) survives the outage and must
    // still see the change. Its ZooKeeper client may still be backing off (the backoff
    // doubles up to the outage's length), so the gate finds the new leader by asking the
    // servers: without that, this took up to 6.5 s.
    let leader = gate_client.cluster().await.unwrap().shards[0]
        .leader
        .clone()
        .expect("a leader");
    c.zk.stop();
    c.server_at(&leader).kill();
    tokio::time::sleep(Duration::from_millis(3 * SESSION_TIMEOUT_MS)).await;
    c.zk.restart().await;
    let restarted = Instant::now();
    let resumed = load
        .resumed_after(
            restarted,
            "writes acknowledged after the second restart",
            Duration::from_secs(20),
        )
        .await;
    eprintln!("writes resumed {resumed:?} after ZooKeeper came back from a longer outage");
    let bound = Duration::from_millis(2 * SESSION_TIMEOUT_MS) + Duration::from_secs(2);
    assert!(resumed <= bound, "writes resumed after {resumed:?}, bound {bound:?}");

    let Stopped { acked, failed, .. } = load.stop().await;
    let gate = c.client(0);
    eventually("the survivor leading", Duration::from_secs(20), || async {
        let info = gate.cluster().await.ok()?;
        let rs = &info.shards.first()?.replicas;
        (rs.len() == 1 && rs[0].role == "leader" && rs[0].in_sync).then_some(())
    })
    .await;
    assert_none_lost(&gate, &acked, failed).await;
}
