//! Cluster-aware Redis clients straight at the kvservers, with no gate in the path:
//! `CLUSTER SLOTS`/`SHARDS`/`NODES`/`INFO`, `MOVED <slot> <host:port>`, `CROSSSLOT`,
//! replicas that redirect reads unless `READONLY`; redis-cli `-c`, redis-py `RedisCluster`
//! with its defaults and redis-benchmark `--cluster` against them.

use std::collections::HashSet;
use std::process::Command;

use crate::harness::TestCluster;
use crate::harness::every_slot_served;
use crate::harness::redis_cli as cli;

/// Two shards of two replicas; returns the cluster and every server's client address.
async fn cluster() -> (TestCluster, Vec<String>) {
    let (c, _) = TestCluster::two_by_two().await;
    let addrs: Vec<String> = c.servers.iter().map(|s| s.addr.clone()).collect();
    for addr in &addrs {
        every_slot_served(addr).await;
    }
    (c, addrs)
}

/// Runs `redis-benchmark --cluster` (SET and GET, `n` requests, 4 clients) against the
/// server at `addr`; returns its output once it exited successfully.
async fn benchmark_cluster(addr: &str, n: usize) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let n = n.to_string();
    let out = tokio::process::Command::new("redis-benchmark")
        .args([
            "--cluster",
            "-h",
            host,
            "-p",
            port,
            "-t",
            "set,get",
            "-n",
            &n,
            "-c",
            "4",
            "-q",
        ])
        .output()
        .await
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark --cluster at {addr}: {text}");
    text
}

#[tokio::test]
async fn the_cluster_protocol_on_every_server() {
    let (c, addrs) = cluster().await;
    let info = c.wait_ready(&[("s1", 2), ("s2", 2)]).await;
    let leaders: HashSet<String> = info.shards.iter().filter_map(|s| s.leader.clone()).collect();
    for addr in &addrs {
        let info = every_slot_served(addr).await;
        assert!(
            info.contains("cluster_slots_ok:16384") && info.contains("cluster_size:2"),
            "{info}"
        );
        // Every server tells the same story.
        assert_eq!(cli(addr, &["CLUSTER", "NODES"]).lines().count(), 4, "{addr}");
        assert_eq!(cli(addr, &["CLUSTER", "MYID"]).len(), 40);
        assert_eq!(cli(addr, &["CLUSTER", "KEYSLOT", "{user1000}:following"]), "3443");
    }
    // Masters in CLUSTER NODES are the shards' leaders, with the slots their ring gives them.
    let nodes = cli(&addrs[0], &["CLUSTER", "NODES"]);
    let masters: HashSet<String> = nodes
        .lines()
        .filter(|l| l.contains("master"))
        .map(|l| l.split(' ').nth(1).unwrap().split('@').next().unwrap().to_string())
        .collect();
    assert_eq!(masters, leaders, "{nodes}");

    // A key another shard owns: MOVED to its slot and its leader, exactly as Redis Cluster.
    let leader = addrs.iter().find(|a| leaders.contains(*a)).unwrap();
    let slot: u16 = cli(leader, &["CLUSTER", "KEYSLOT", "probe"]).parse().unwrap();
    let owner_reply = cli(leader, &["SET", "probe", "v"]);
    if owner_reply != "OK" {
        let other = leaders.iter().find(|a| *a != leader).unwrap();
        assert_eq!(owner_reply, format!("MOVED {slot} {other}"));
    }
    // Keys of different slots in one command: CROSSSLOT; of one tag: fine.
    assert_eq!(
        cli(leader, &["MGET", "a", "b"]),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    let tagged = cli(leader, &["-c", "MSET", "{t}a", "1", "{t}b", "2"]);
    assert_eq!(tagged, "OK");
    // A replica redirects reads unless the client said READONLY: straight to the leader
    // of the shard that owns the slot (whichever shard the replica belongs to).
    let owner = leaders.iter().find(|l| cli(l, &["GET", "{t}a"]) == "1").unwrap();
    let slot = cli(owner, &["CLUSTER", "KEYSLOT", "{t}a"]);
    for follower in addrs.iter().filter(|a| !leaders.contains(*a)) {
        assert_eq!(cli(follower, &["GET", "{t}a"]), format!("MOVED {slot} {owner}"));
        assert_eq!(cli(follower, &["SET", "{t}a", "x"]), format!("MOVED {slot} {owner}"));
    }
}

#[tokio::test]
async fn redis_cli_c_and_redis_benchmark_cluster() {
    let (_c, addrs) = cluster().await;
    // redis-cli -c follows MOVED from whichever server it asks.
    for i in 0..20 {
        let key = format!("cli-{i}");
        let addr = &addrs[i % addrs.len()];
        assert_eq!(cli(addr, &["-c", "SET", &key, &format!("v{i}")]), "OK");
    }
    for i in 0..20 {
        let key = format!("cli-{i}");
        let addr = &addrs[(i + 1) % addrs.len()];
        assert_eq!(cli(addr, &["-c", "GET", &key]), format!("v{i}"));
    }
    let text = benchmark_cluster(&addrs[0], 2000).await;
    // Progress is redrawn with `\r`: the final figures follow the last one.
    let rates: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| l.contains("requests per second"))
        .collect();
    assert!(
        rates.iter().any(|l| l.starts_with("SET")) && rates.iter().any(|l| l.starts_with("GET")),
        "{text}"
    );
    assert!(!text.contains("Error") && !text.contains("ERR"), "{text}");
}

/// redis-py's `RedisCluster` with its defaults (RESP3, replicas not read) against one
/// server: it learns the slots and reaches every shard directly.
#[tokio::test]
async fn redis_py_cluster_client_with_its_defaults() {
    let python = crate::harness::pyredis();
    let (_c, addrs) = cluster().await;
    let script = r#"
import sys, redis
from redis.cluster import RedisCluster
host, port = sys.argv[1].rsplit(":", 1)
rc = RedisCluster(host=host, port=int(port))
for i in range(200):
    rc.set(f"py-{i}", f"v{i}")
ok = all(rc.get(f"py-{i}") == f"v{i}".encode() for i in range(200))
masters = {n.name for n in rc.get_primaries()}
owners = {rc.get_node_from_key(f"py-{i}").name for i in range(200)}
rc.mset({"{u1}:a": "1", "{u1}:b": "2"})
tagged = rc.mget("{u1}:a", "{u1}:b")
print(repr((ok, len(masters), len(owners), tagged, rc.incr("py-n", 3))))
"#;
    let out = Command::new(python).args(["-c", script, &addrs[0]]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "(True, 2, 2, [b'1', b'2'], 3)"
    );
}

/// redis-py's `RedisCluster` straight at the servers while a shard is added (slow moves, so
/// its requests land mid-move) and a source leader is killed mid-move: no read of an
/// existing key misses or sees a wrong value, and every acknowledged write is read back.
/// redis-cli `-c` reads and a redis-benchmark `--cluster` run go on mid-move as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_cluster_client_across_a_reshard_and_a_failover() {
    use std::time::Duration;
    use tokio::io::AsyncBufReadExt;

    use crate::harness::eventually;

    let python = crate::harness::pyredis();
    let mut c = TestCluster::start().await;
    let flags = ["--max-keys", "0", "--migration-rate", "400"];
    for s in ["s1", "s2"] {
        c.start_server(s, &flags).await;
        c.start_server(s, &flags).await;
    }
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 2), ("s2", 2)]).await;
    for s in &c.servers {
        every_slot_served(&s.addr).await;
    }
    let stop = c.dir.path().join("stop");
    let script = r#"
import os, sys, json, random, redis
from redis.cluster import RedisCluster
host, port = sys.argv[1].rsplit(":", 1)
stop, n = sys.argv[2], 6000
rc = RedisCluster(host=host, port=int(port))
pipe = rc.pipeline()
for i in range(n):
    pipe.set(f"pre:{i}", f"v{i}")
pipe.execute()
print("loaded", flush=True)
reads = missed = wrong = errors = 0
acked, seq, examples = {}, 0, []
while not os.path.exists(stop):
    i = random.randrange(n)
    try:
        v = rc.get(f"pre:{i}")
        reads += 1
        if v is None:
            missed += 1; examples.append(f"pre:{i} missing")
        elif v != f"v{i}".encode():
            wrong += 1; examples.append(f"pre:{i}={v!r}")
    except Exception as e:
        errors += 1; examples.append(repr(e)[:120])
    seq += 1
    key = f"w:{seq % 500}"
    try:
        if rc.set(key, str(seq)):
            acked[key] = {str(seq)}
    except Exception as e:
        # Not acknowledged, but it may have been applied: either value may be read back.
        if key in acked:
            acked[key].add(str(seq))
        errors += 1; examples.append(repr(e)[:120])
finals = {k: rc.get(k) for k in acked}
lost = [f"{k}={finals[k]!r} not in {sorted(v)}" for k, v in acked.items()
        if finals[k] is None or finals[k].decode() not in v]
examples += lost[:4]
print(json.dumps({"reads": reads, "missed": missed, "wrong": wrong, "errors": errors,
                  "acked": len(acked), "lost": len(lost), "examples": examples[:8]}), flush=True)
"#;
    let addr = c.servers[0].addr.clone();
    let mut child = tokio::process::Command::new(python)
        .args(["-c", script, &addr, stop.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
    assert!(matches!(&first, Ok(Ok(Some(l))) if l == "loaded"), "{first:?}");

    c.start_server("s3", &flags).await;
    c.start_server("s3", &flags).await;
    let gate = c.client(0);
    let leader = eventually("s1 to be moving keys", Duration::from_secs(30), || async {
        let info = gate.cluster().await.ok()?;
        info.migrations
            .iter()
            .find(|m| m.from == "s1" && m.state == "moving" && m.moved > 0)?;
        info.shards.iter().find(|s| s.name == "s1")?.leader.clone()
    })
    .await;
    // Mid-move, redis-benchmark --cluster and redis-cli -c too, at servers other than the
    // leader about to be killed.
    let live: Vec<String> = c
        .servers
        .iter()
        .map(|s| s.addr.clone())
        .filter(|a| *a != leader)
        .collect();
    let benchmark = benchmark_cluster(&live[0], 5000);
    let cli_reads = async {
        for i in (0..6000).step_by(200) {
            let addr = &live[i / 200 % live.len()];
            let got = tokio::task::block_in_place(|| cli(addr, &["-c", "GET", &format!("pre:{i}")]));
            assert_eq!(got, format!("v{i}"), "redis-cli -c GET pre:{i} at {addr} mid-move");
        }
    };
    let (text, ()) = tokio::join!(benchmark, cli_reads);
    assert!(text.contains("GET: "), "redis-benchmark --cluster mid-move: {text}");
    let still_moving = !gate.cluster().await.unwrap().migrations.is_empty();
    eprintln!("redis-benchmark --cluster and redis-cli -c done; the move still under way: {still_moving}");
    c.server_at(&leader).kill();
    eventually(
        "the ring to settle on three shards",
        Duration::from_secs(120),
        || async {
            let info = gate.cluster().await.ok()?;
            (info.ring == ["s1", "s2", "s3"] && info.next_ring.is_none() && info.migrations.is_empty()).then_some(())
        },
    )
    .await;
    // Until a new leader of s1 is elected, a MOVED may still name the dead one (as Redis
    // Cluster's would, until its failover).
    eventually("a new leader of s1", Duration::from_secs(20), || async {
        let info = gate.cluster().await.ok()?;
        let l = info.shards.iter().find(|s| s.name == "s1")?.leader.clone()?;
        (l != leader).then_some(())
    })
    .await;
    let moved_to_live = || {
        let nodes = cli(&live[1], &["CLUSTER", "NODES"]);
        (!nodes.contains(&format!(" {leader}@"))).then_some(())
    };
    eventually(
        "the servers to stop naming the dead leader",
        Duration::from_secs(20),
        || async { moved_to_live() },
    )
    .await;
    for i in (0..6000).step_by(300) {
        let got = cli(&live[1], &["-c", "GET", &format!("pre:{i}")]);
        assert_eq!(
            got,
            format!("v{i}"),
            "redis-cli -c GET pre:{i} after the move and the failover"
        );
    }
    std::fs::write(&stop, b"").unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the client's summary")
        .unwrap()
        .expect("a summary line");
    let _ = child.wait().await;
    eprintln!("redis-py RedisCluster across a reshard and a failover: {summary}");
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(v["reads"].as_u64().unwrap() > 100, "{summary}");
    assert_eq!(
        (&v["missed"], &v["wrong"], &v["lost"]),
        (&serde_json::json!(0), &serde_json::json!(0), &serde_json::json!(0)),
        "{summary}"
    );
    assert!(v["acked"].as_u64().unwrap() > 0, "{summary}");
}

/// Keys sharing a hash tag share a shard, through the gate too: 50 `{user1000}:*` keys all
/// land on one of two shards (untagged, they split between both).
#[tokio::test]
async fn hash_tags_co_locate_keys_through_the_gate() {
    let (c, _) = cluster().await;
    let gate = c.client(0);
    for i in 0..50 {
        gate.put(&format!("{{user1000}}:{i}"), b"v", None).await.unwrap();
        gate.put(&format!("user2000:{i}"), b"v", None).await.unwrap();
    }
    let counts = |info: &kv_client::api::ClusterInfo| -> Vec<u64> {
        info.shards
            .iter()
            .map(|s| {
                s.replicas
                    .iter()
                    .find(|r| r.role == "leader")
                    .and_then(|r| r.keys)
                    .unwrap_or(0)
            })
            .collect()
    };
    let info = gate.cluster().await.unwrap();
    let total = counts(&info);
    assert_eq!(total.iter().sum::<u64>(), 100, "{total:?}");
    assert!(
        total.iter().all(|n| *n > 0),
        "untagged keys spread over both shards: {total:?}"
    );
    // Every tagged key is on the shard of its tag's slot.
    let slot = kv_proto::slot::key_slot(b"user1000").to_string();
    let leaders: Vec<&str> = info.shards.iter().filter_map(|s| s.leader.as_deref()).collect();
    let (owner, others): (Vec<&str>, Vec<&str>) = leaders
        .iter()
        .partition(|l| cli(l, &["CLUSTER", "COUNTKEYSINSLOT", &slot]) == "50");
    assert_eq!(owner.len(), 1, "one shard holds all 50 keys of the tag's slot");
    // Its keys are listed whole, or as many as asked for; the other shard has none.
    let listed = |addr: &str, count: &str| -> HashSet<String> {
        let out = cli(addr, &["CLUSTER", "GETKEYSINSLOT", &slot, count]);
        out.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    };
    let tagged: HashSet<String> = (0..50).map(|i| format!("{{user1000}}:{i}")).collect();
    assert_eq!(listed(owner[0], "100"), tagged);
    let some = listed(owner[0], "10");
    assert_eq!(some.len(), 10);
    assert!(some.is_subset(&tagged), "{some:?}");
    for other in others {
        assert_eq!(cli(other, &["CLUSTER", "COUNTKEYSINSLOT", &slot]), "0");
        assert!(listed(other, "100").is_empty());
    }
}
