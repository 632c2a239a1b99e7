//! Pub/sub across the cluster: a message published through any gate reaches every
//! subscriber on every gate, once (channels at their home shard's leader, patterns at every
//! leader); subscriptions follow a failover of the home and a subscriber that reconnects; a
//! subscriber that does not read is dropped at the output limit instead of holding memory.

use std::time::Duration;

use kv_cluster::Ring;
use kv_cluster::ring::DEFAULT_VNODES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::redis_cli as cli;
use crate::harness::{TestCluster, eventually, leader_addr, read_some, read_until, send};

#[tokio::test]
async fn messages_cross_gates_and_follow_a_failover_and_a_reconnect() {
    let (mut c, gate) = TestCluster::two_by_two().await;
    c.start_gate(&[]).await;
    let other = c.gates[1].resp.clone().unwrap();
    let mut sub = TcpStream::connect(&gate).await.unwrap();
    send(&mut sub, &["SUBSCRIBE", "news"]).await;
    read_until(&mut sub, ":1\r\n").await;
    send(&mut sub, &["PSUBSCRIBE", "n*"]).await;
    read_until(&mut sub, ":2\r\n").await;
    // Published through the other gate: the channel's and the pattern's subscription each
    // get it once, and PUBLISH counts both.
    assert_eq!(cli(&other, &["PUBLISH", "news", "hello"]), "2");
    let message = "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n";
    let pmessage = "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n";
    let mut got = String::new();
    while !(got.contains(message) && got.contains(pmessage)) {
        got += &read_some(&mut sub, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("both deliveries; got {got:?}"));
    }
    assert_eq!(got.len(), message.len() + pmessage.len(), "each once: {got:?}");
    assert_eq!(cli(&other, &["PUBSUB", "NUMSUB", "news"]), "news\n1");
    assert_eq!(cli(&other, &["PUBSUB", "NUMPAT"]), "1");
    // In RESP2 subscribed mode only the subscribe commands and PING are allowed.
    send(&mut sub, &["GET", "x"]).await;
    assert!(
        read_until(&mut sub, "\r\n")
            .await
            .starts_with("-ERR Can't execute 'get'")
    );

    // A subscriber that reconnects gets what is published after it subscribed again.
    drop(sub);
    eventually(
        "the subscriber's subscriptions left with it",
        Duration::from_secs(10),
        || async { (cli(&other, &["PUBLISH", "news", "nobody"]) == "0").then_some(()) },
    )
    .await;
    let mut sub = TcpStream::connect(&gate).await.unwrap();
    send(&mut sub, &["SUBSCRIBE", "news"]).await;
    read_until(&mut sub, ":1\r\n").await;
    assert_eq!(cli(&other, &["PUBLISH", "news", "again"]), "1");
    read_until(&mut sub, "$5\r\nagain\r\n").await;

    // The channel's home leader fails over: the gate subscribes at the new one.
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    let shard = ring.shard_for(b"news").unwrap().to_string();
    let old = leader_addr(&c.client(0).cluster().await.unwrap(), &shard);
    c.server_at(&old).kill();
    eventually(
        "a message published after the failover arrives",
        Duration::from_secs(60),
        || async { (cli(&other, &["PUBLISH", "news", "after"]) == "1").then_some(()) },
    )
    .await;
    read_until(&mut sub, "$5\r\nafter\r\n").await;

    // Shard channels: their own namespace, a slot's.
    let mut ssub = TcpStream::connect(&other).await.unwrap();
    send(&mut ssub, &["SSUBSCRIBE", "{s}a"]).await;
    read_until(&mut ssub, ":1\r\n").await;
    assert_eq!(cli(&gate, &["SPUBLISH", "{s}a", "x"]), "1");
    read_until(&mut ssub, "*3\r\n$8\r\nsmessage\r\n$4\r\n{s}a\r\n$1\r\nx\r\n").await;
    assert_eq!(cli(&gate, &["PUBLISH", "{s}a", "x"]), "0", "not a plain channel");
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped_at_the_output_limit() {
    let (_c, gate) = TestCluster::two_by_two().await;
    assert_eq!(
        cli(
            &gate,
            &["CONFIG", "SET", "client-output-buffer-limit", "pubsub 64kb 0 0"]
        ),
        "OK"
    );
    let mut slow = TcpStream::connect(&gate).await.unwrap();
    send(&mut slow, &["SUBSCRIBE", "flood"]).await;
    read_until(&mut slow, ":1\r\n").await;
    // 32 MiB published: more than the loopback socket buffers hold, so it piles up at the
    // gate until the limit drops the subscriber.
    let mut publisher = TcpStream::connect(&gate).await.unwrap();
    let payload = "x".repeat(1024);
    let one = format!("*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n$1024\r\n{payload}\r\n");
    let batch = one.repeat(1024);
    let mut replies = vec![0u8; 64 * 1024];
    for _ in 0..32 {
        publisher.write_all(batch.as_bytes()).await.unwrap();
        let mut got = 0;
        while got < 1024 * 4 {
            let n = publisher.read(&mut replies).await.unwrap();
            assert!(n > 0);
            got += n;
        }
    }
    // The subscriber reads what was sent before it was dropped, then the end.
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the slow subscriber was never dropped ({total} bytes read)"),
        }
    }
    assert!(total < 32 * 1024 * 1024, "dropped, not fed everything: {total} bytes");
}

/// redis-py 8 with its defaults (RESP3: push frames) subscribed through one gate, a
/// publisher on another.
#[tokio::test]
async fn redis_py_subscribes_through_one_gate_and_hears_another() {
    let python = crate::harness::pyredis();
    let (mut c, gate) = TestCluster::two_by_two().await;
    c.start_gate(&[]).await;
    let other = c.gates[1].resp.clone().unwrap();
    let script = r#"
import sys, redis
def client(addr):
    host, port = addr.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port))
sub, pub = client(sys.argv[1]), client(sys.argv[2])
p = sub.pubsub()
p.subscribe("orders")
p.psubscribe("order*")
acks = [p.get_message(timeout=5)["type"] for _ in range(2)]
n = pub.publish("orders", "o1")
got = sorted((m["type"], m["channel"], m["data"]) for m in (p.get_message(timeout=5) for _ in range(2)))
print(repr((acks, n, got)))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, &gate, &other])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "(['subscribe', 'psubscribe'], 2, [('message', b'orders', b'o1'), ('pmessage', b'orders', b'o1')])"
    );
}

/// Keyspace notifications through two gates: a `CONFIG SET` at one gate reaches every
/// server; a subscriber by pattern, and one by a key's channel, hear the events of keys on
/// both shards once; `CLIENT REPLY OFF` silences replies but not messages.
#[tokio::test]
async fn keyspace_notifications_reach_subscribers_on_any_gate() {
    let (mut c, gate) = TestCluster::two_by_two().await;
    c.start_gate(&[]).await;
    let other = c.gates[1].resp.clone().unwrap();
    assert_eq!(cli(&gate, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]), "OK");
    assert_eq!(
        cli(&gate, &["CONFIG", "GET", "notify-keyspace-events"]),
        "notify-keyspace-events\nAKE"
    );
    assert!(cli(&gate, &["CONFIG", "SET", "notify-keyspace-events", "Kq"]).contains("Invalid event class"));
    let mut sub = TcpStream::connect(&other).await.unwrap();
    send(&mut sub, &["CLIENT", "REPLY", "OFF"]).await;
    send(&mut sub, &["PSUBSCRIBE", "__keyevent@0__:*"]).await;
    read_until(&mut sub, ":1\r\n").await;
    let mut one = TcpStream::connect(&other).await.unwrap();
    send(&mut one, &["SUBSCRIBE", "__keyspace@0__:k7"]).await;
    read_until(&mut one, ":1\r\n").await;
    // Ten keys over both shards, each set, incremented and deleted through the first gate.
    for i in 0..10 {
        let k = format!("k{i}");
        cli(&gate, &["SET", &k, "1"]);
        cli(&gate, &["INCR", &k]);
        cli(&gate, &["DEL", &k]);
    }
    let mut got = String::new();
    for i in 0..10 {
        for event in ["set", "incrby", "del"] {
            let want = format!("__keyevent@0__:{event}\r\n${}\r\nk{i}\r\n", 1 + i.to_string().len());
            while !got.contains(&want) {
                got += &read_some(&mut sub, Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|| panic!("{want:?}; got {got:?}"));
            }
        }
    }
    assert_eq!(got.matches("pmessage").count(), 30, "each event once: {got}");
    assert!(!got.contains("+OK"), "CLIENT REPLY OFF silenced its own reply");
    let heard = read_until(&mut one, "$3\r\ndel\r\n").await;
    assert!(
        heard.contains("$3\r\nset\r\n") && heard.contains("$6\r\nincrby\r\n"),
        "{heard}"
    );
    // Expiry, and a class left out.
    assert_eq!(cli(&gate, &["CONFIG", "SET", "notify-keyspace-events", "Ex"]), "OK");
    cli(&gate, &["SET", "k8", "v", "PX", "50"]);
    read_until(&mut sub, "__keyevent@0__:expired\r\n$2\r\nk8\r\n").await;
    cli(&gate, &["SET", "k9", "v"]);
    assert_eq!(
        read_some(&mut sub, Duration::from_millis(300)).await,
        None,
        "no set event under Ex"
    );
}
