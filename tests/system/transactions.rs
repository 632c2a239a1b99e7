//! Transactions: `MULTI`/`EXEC` run whole on one shard; `WATCH` guards them against any
//! change of a watched key — by another client through another gate, by expiry — and a
//! failover between `WATCH` and `EXEC` fails the transaction instead of running it
//! unguarded. Real clients: redis-cli, and redis-py's optimistic-locking loop.

use std::process::Command;
use std::time::Duration;

use kv_cluster::Ring;
use kv_cluster::ring::DEFAULT_VNODES;
use tokio::net::TcpStream;

use crate::harness::redis_cli as cli;
use crate::harness::{TestCluster, eventually, leader_addr, read_some, send};

/// Sends `cmd` and reads until the reply so far ends with `end`.
async fn call(conn: &mut TcpStream, cmd: &[&str], end: &str) -> String {
    send(conn, cmd).await;
    let mut reply = String::new();
    while !reply.ends_with(end) {
        reply += &read_some(conn, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{cmd:?} answered; so far {reply:?}"));
    }
    reply
}

#[tokio::test]
async fn transactions_run_whole_on_one_shard() {
    let (c, gate) = TestCluster::two_by_two().await;
    let mut conn = TcpStream::connect(&gate).await.unwrap();
    for cmd in [
        &["MULTI"][..],
        &["INCR", "{t}n"],
        &["INCR", "{t}n"],
        &["RPUSH", "{t}l", "a"],
        &["EXEC"],
    ] {
        send(&mut conn, cmd).await;
    }
    let mut reply = String::new();
    while !reply.ends_with(":1\r\n") {
        reply += &read_some(&mut conn, Duration::from_secs(5))
            .await
            .expect("EXEC answered");
    }
    assert_eq!(
        reply,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:1\r\n:2\r\n:1\r\n"
    );
    // A bad command aborts the transaction; nothing of it runs.
    send(&mut conn, &["MULTI"]).await;
    send(&mut conn, &["INCR", "{t}n"]).await;
    send(&mut conn, &["NOSUCHCOMMAND"]).await;
    send(&mut conn, &["EXEC"]).await;
    let mut reply = String::new();
    while !reply.contains("EXECABORT") {
        reply += &read_some(&mut conn, Duration::from_secs(5)).await.expect("answered");
    }
    assert_eq!(cli(&gate, &["GET", "{t}n"]), "2");
    // Keys on two shards cannot share a transaction.
    let shards: Vec<bool> = (0..20)
        .map(|i| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "printf 'MULTI\\nSET a 1\\nSET k{i} 1\\nEXEC\\n' | redis-cli -h {h} -p {p}",
                    h = gate.rsplit_once(':').unwrap().0,
                    p = gate.rsplit_once(':').unwrap().1
                ))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("CROSSSLOT")
        })
        .collect();
    assert!(shards.iter().any(|&x| x) && shards.iter().any(|&x| !x), "{shards:?}");
    for shard in ["s1", "s2"] {
        c.converged(shard, 2).await;
    }
}

#[tokio::test]
async fn watch_fails_exec_after_a_change_through_another_gate_or_an_expiry() {
    let (mut c, gate) = TestCluster::two_by_two().await;
    c.start_gate(&[]).await;
    let other = c.gates[1].resp.clone().unwrap();
    let mut conn = TcpStream::connect(&gate).await.unwrap();
    // Untouched: the transaction runs.
    cli(&gate, &["SET", "w", "1"]);
    assert_eq!(call(&mut conn, &["WATCH", "w"], "\r\n").await, "+OK\r\n");
    call(&mut conn, &["MULTI"], "\r\n").await;
    call(&mut conn, &["INCR", "w"], "\r\n").await;
    assert_eq!(call(&mut conn, &["EXEC"], ":2\r\n").await, "*1\r\n:2\r\n");
    // Changed by another client through the other gate: nothing runs.
    call(&mut conn, &["WATCH", "w"], "\r\n").await;
    assert_eq!(cli(&other, &["SET", "w", "10"]), "OK");
    call(&mut conn, &["MULTI"], "\r\n").await;
    call(&mut conn, &["INCR", "w"], "\r\n").await;
    assert_eq!(call(&mut conn, &["EXEC"], "\r\n").await, "*-1\r\n");
    assert_eq!(cli(&gate, &["GET", "w"]), "10");
    // EXEC ended the watch: the next transaction runs.
    call(&mut conn, &["MULTI"], "\r\n").await;
    call(&mut conn, &["INCR", "w"], "\r\n").await;
    assert_eq!(call(&mut conn, &["EXEC"], ":11\r\n").await, "*1\r\n:11\r\n");
    // A watched key that expires before EXEC fails it (Redis 7.0's rule).
    cli(&gate, &["SET", "e", "1", "PX", "150"]);
    call(&mut conn, &["WATCH", "e"], "\r\n").await;
    eventually("the key expired", Duration::from_secs(5), || async {
        (cli(&other, &["EXISTS", "e"]) == "0").then_some(())
    })
    .await;
    call(&mut conn, &["MULTI"], "\r\n").await;
    call(&mut conn, &["SET", "e", "x"], "\r\n").await;
    assert_eq!(call(&mut conn, &["EXEC"], "\r\n").await, "*-1\r\n");
    // UNWATCH forgets; keys of two shards cannot be watched together.
    call(&mut conn, &["WATCH", "w"], "\r\n").await;
    cli(&other, &["SET", "w", "0"]);
    assert_eq!(call(&mut conn, &["UNWATCH"], "\r\n").await, "+OK\r\n");
    call(&mut conn, &["MULTI"], "\r\n").await;
    call(&mut conn, &["INCR", "w"], "\r\n").await;
    assert_eq!(call(&mut conn, &["EXEC"], ":1\r\n").await, "*1\r\n:1\r\n");
    let crossed = (0..20).any(|i| cli(&gate, &["WATCH", "w", &format!("k{i}")]).starts_with("CROSSSLOT"));
    assert!(crossed);
    // The same on a kvserver's client port, for a cluster-aware client.
    let info = c.client(0).cluster().await.unwrap();
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    let leader = leader_addr(&info, ring.shard_for(b"w").unwrap());
    let mut direct = TcpStream::connect(&leader).await.unwrap();
    call(&mut direct, &["WATCH", "w"], "\r\n").await;
    cli(&other, &["SET", "w", "5"]);
    call(&mut direct, &["MULTI"], "\r\n").await;
    call(&mut direct, &["INCR", "w"], "\r\n").await;
    assert_eq!(call(&mut direct, &["EXEC"], "\r\n").await, "*-1\r\n");
    assert_eq!(cli(&gate, &["GET", "w"]), "5");
}

/// A failover between `WATCH` and `EXEC` loses the watch with the old leader: `EXEC` fails
/// (the client retries) rather than running unguarded.
#[tokio::test]
async fn a_failover_between_watch_and_exec_fails_the_transaction() {
    let (mut c, gate) = TestCluster::two_by_two().await;
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    let shard = ring.shard_for(b"f").unwrap().to_string();
    cli(&gate, &["SET", "f", "1"]);
    let mut conn = TcpStream::connect(&gate).await.unwrap();
    assert_eq!(call(&mut conn, &["WATCH", "f"], "\r\n").await, "+OK\r\n");
    let old = leader_addr(&c.client(0).cluster().await.unwrap(), &shard);
    c.server_at(&old).kill();
    eventually("a new leader", Duration::from_secs(30), || async {
        let info = c.client(0).cluster().await.ok()?;
        let s = info.shards.iter().find(|s| s.name == shard)?;
        s.leader.clone().filter(|l| *l != old)
    })
    .await;
    call(&mut conn, &["MULTI"], "\r\n").await;
    call(&mut conn, &["SET", "f", "unguarded"], "\r\n").await;
    assert_eq!(call(&mut conn, &["EXEC"], "\r\n").await, "*-1\r\n");
    assert_eq!(cli(&gate, &["GET", "f"]), "1");
}

/// The optimistic-locking loop every Redis client library offers, under contention: 4
/// redis-py clients, two on each of two gates, each adding 1,000 to one counter with
/// `WATCH`/`MULTI`/`EXEC` and retrying when `EXEC` fails. No increment is lost or doubled.
#[tokio::test]
async fn redis_py_watch_increments_through_two_gates_add_up() {
    let python = crate::harness::pyredis();
    let (mut c, gate) = TestCluster::two_by_two().await;
    c.start_gate(&[]).await;
    let other = c.gates[1].resp.clone().unwrap();
    let script = r#"
import sys, threading, redis
def worker(addr, n, out, i):
    host, port = addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    retries = 0
    for _ in range(n):
        while True:
            with r.pipeline() as p:
                try:
                    p.watch("counter")
                    v = int(p.get("counter") or 0)
                    p.multi()
                    p.set("counter", v + 1)
                    p.execute()
                    break
                except redis.WatchError:
                    retries += 1
    out[i] = retries
out = [0] * 4
addrs = [sys.argv[1], sys.argv[1], sys.argv[2], sys.argv[2]]
ts = [threading.Thread(target=worker, args=(a, 1000, out, i)) for i, a in enumerate(addrs)]
[t.start() for t in ts]
[t.join() for t in ts]
print(sum(out))
"#;
    let out = Command::new(python)
        .args(["-c", script, &gate, &other])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let retries = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(cli(&gate, &["GET", "counter"]), "4000", "retries: {retries}");
    eprintln!("4 x 1000 WATCH increments through two gates: {retries} retries after a failed EXEC");
}
