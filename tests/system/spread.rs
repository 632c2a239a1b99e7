//! Keys spread over shards by the consistent-hash ring.

use std::sync::Arc;

use crate::harness::TestCluster;

#[tokio::test]
async fn ten_thousand_keys_spread_over_two_shards() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &["--max-keys", "0"]).await;
    c.start_server("s2", &["--max-keys", "0"]).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1), ("s2", 1)]).await;
    let gate = Arc::new(c.client(0));
    const N: usize = 10_000;
    const WORKERS: usize = 16;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..N).step_by(WORKERS) {
                gate.put(&format!("user:{i}"), b"v", None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let info = gate.cluster().await.unwrap();
    let counts: Vec<u64> = info.shards.iter().map(|s| s.replicas[0].keys.unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), N as u64);
    for k in &counts {
        let share = *k as f64 / N as f64;
        assert!((0.30..=0.70).contains(&share), "shard shares {counts:?}");
    }
    eprintln!("10k keys over 2 shards: {counts:?}");
}
