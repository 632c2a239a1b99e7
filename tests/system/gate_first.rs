//! A gate started before any server answers 503 until servers arrive, then serves.

use std::time::{Duration, Instant};

use hyper::Method;

use crate::harness::{TestCluster, eventually};

#[tokio::test]
async fn a_gate_started_before_any_server_becomes_useful() {
    let mut c = TestCluster::start().await;
    c.start_gate(&["--retry-timeout-ms", "300"]).await;
    let gate = c.client(0);
    let asked = Instant::now();
    let reply = gate.request(Method::GET, "/api/cache/get?key=a", None).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.error_message());
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.error_message().contains("no shard"), "{}", reply.error_message());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        asked.elapsed()
    );
    let health = gate.request(Method::GET, "/health", None).await.unwrap();
    assert_eq!(health.status, 200);

    c.start_server("s1", &[]).await;
    c.start_server("s2", &[]).await;
    eventually("the gate to accept writes", Duration::from_secs(15), || async {
        gate.put("a", b"1", None).await.ok()
    })
    .await;
    assert_eq!(gate.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    // The first write may succeed while the second shard is still registering.
    eventually("both shards on the ring", Duration::from_secs(15), || async {
        let info = gate.cluster().await.ok()?;
        (info.ring == ["s1", "s2"]).then_some(())
    })
    .await;
}
