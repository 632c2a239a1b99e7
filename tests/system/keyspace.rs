//! The keyspace, string and admin commands of issue 11 through a gate in front of 2 shards
//! × 2 replicas, and straight at a kvserver as a cluster client sees it: every write is
//! replicated (replicas end with equal digests), whole-keyspace commands cover every shard,
//! commands whose keys must share a shard work within one and are refused across shards.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::harness::redis_cli as cli;
use crate::harness::{TestCluster, eventually};

async fn cluster() -> (TestCluster, String) {
    TestCluster::two_by_two().await
}

#[tokio::test]
async fn strings_and_bitmaps_are_replicated() {
    let (c, gate) = cluster().await;
    let g = |args: &[&str]| cli(&gate, args);
    assert_eq!(g(&["SET", "s", "Hello World"]), "OK");
    assert_eq!(g(&["SETRANGE", "s", "6", "Redis"]), "11");
    assert_eq!(g(&["GETRANGE", "s", "0", "4"]), "Hello");
    assert_eq!(g(&["SUBSTR", "s", "-5", "-1"]), "Redis");
    assert_eq!(g(&["INCRBYFLOAT", "f", "10.5"]), "10.5");
    assert_eq!(g(&["INCRBYFLOAT", "f", "0.1"]), "10.6");
    assert_eq!(g(&["SET", "e", "v"]), "OK");
    assert_eq!(g(&["GETEX", "e", "PX", "100000"]), "v");
    let ttl: i64 = g(&["PTTL", "e"]).parse().unwrap();
    assert!((90_000..=100_000).contains(&ttl), "{ttl}");
    let at: i64 = g(&["PEXPIRETIME", "e"]).parse().unwrap();
    assert!(at > 1_700_000_000_000, "{at}");
    assert_eq!(g(&["GETEX", "e", "PERSIST"]), "v");
    assert_eq!(g(&["TTL", "e"]), "-1");
    assert_eq!(g(&["EXPIRE", "e", "100", "LT"]), "1", "no expiry counts as infinite");
    assert_eq!(g(&["EXPIRE", "e", "200", "LT", "XX"]), "0");
    assert_eq!(g(&["SETBIT", "b", "7", "1"]), "0");
    assert_eq!(g(&["SETBIT", "b", "7", "1"]), "1");
    assert_eq!(g(&["GETBIT", "b", "7"]), "1");
    assert_eq!(g(&["BITCOUNT", "b"]), "1");
    assert_eq!(g(&["BITPOS", "b", "1"]), "7");
    assert_eq!(
        g(&["BITFIELD", "bf", "SET", "u8", "0", "200", "INCRBY", "u8", "0", "100"]),
        "0\n44"
    );
    assert_eq!(g(&["BITFIELD_RO", "bf", "GET", "u8", "0"]), "44");
    assert_eq!(g(&["MSETNX", "{t}a", "1", "{t}b", "2"]), "1");
    assert_eq!(g(&["MSETNX", "{t}b", "3", "{t}c", "4"]), "0");
    assert_eq!(g(&["SET", "{t}x", "ohmytext"]), "OK");
    assert_eq!(g(&["SET", "{t}y", "mynewtext"]), "OK");
    assert_eq!(g(&["LCS", "{t}x", "{t}y"]), "mytext");
    assert_eq!(g(&["BITOP", "XOR", "{t}d", "{t}x", "{t}y"]), "9");
    assert_eq!(g(&["TYPE", "s"]), "string");
    assert_eq!(g(&["TYPE", "nosuchkey"]), "none");
    assert_eq!(g(&["OBJECT", "ENCODING", "f"]), "embstr");
    assert!(g(&["MEMORY", "USAGE", "s"]).parse::<u64>().unwrap() > 11);
    for shard in ["s1", "s2"] {
        c.converged(shard, 2).await;
    }
}

#[tokio::test]
async fn renames_copies_and_dumps_within_a_shard() {
    let (_c, gate) = cluster().await;
    let g = |args: &[&str]| cli(&gate, args);
    assert_eq!(g(&["SET", "{u}a", "1", "EX", "100"]), "OK");
    assert_eq!(g(&["RENAME", "{u}a", "{u}b"]), "OK");
    assert_eq!(g(&["EXISTS", "{u}a"]), "0");
    assert!(
        g(&["TTL", "{u}b"]).parse::<i64>().unwrap() > 90,
        "the expiry moves with the value"
    );
    assert_eq!(g(&["RENAMENX", "{u}b", "{u}b"]), "0");
    assert_eq!(g(&["COPY", "{u}b", "{u}c"]), "1");
    assert_eq!(g(&["COPY", "{u}b", "{u}c"]), "0");
    assert_eq!(g(&["GET", "{u}c"]), "1");
    assert_eq!(g(&["RENAME", "{u}nosuch", "{u}d"]), "ERR no such key");
    // Keys on two shards: refused whole, nothing changes.
    let names: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    for n in &names {
        g(&["SET", n, n]);
    }
    let refused = names
        .iter()
        .skip(1)
        .filter(|n| {
            let r = g(&["RENAMENX", &names[0], n]);
            assert!(r == "0" || r.starts_with("CROSSSLOT"), "{r}");
            r != "0"
        })
        .count();
    assert!(refused > 0 && refused < 39, "40 keys all on one shard of two");
    assert_eq!(g(&["GET", &names[0]]), names[0]);
    // DUMP and RESTORE, with a TTL, in Redis's format.
    assert_eq!(g(&["SET", "d", "payload"]), "OK");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -h {h} -p {p} --raw DUMP d | head -c -1 | redis-cli -h {h} -p {p} -x RESTORE d2 50000",
            h = gate.rsplit_once(':').unwrap().0,
            p = gate.rsplit_once(':').unwrap().1
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK", "{out:?}");
    assert_eq!(g(&["GET", "d2"]), "payload");
    assert!(g(&["PTTL", "d2"]).parse::<i64>().unwrap() > 40_000);
    assert!(g(&["RESTORE", "d3", "0", "junk"]).contains("payload version or checksum are wrong"));
    assert!(g(&["RESTORE", "d", "0", "x"]).starts_with("BUSYKEY"));
}

#[tokio::test]
async fn whole_keyspace_commands_cover_every_shard() {
    let (c, gate) = cluster().await;
    let g = |args: &[&str]| cli(&gate, args);
    let n = 300;
    let pairs: Vec<String> = (0..n).flat_map(|i| [format!("key:{i}"), i.to_string()]).collect();
    let mut mset = vec!["MSET"];
    mset.extend(pairs.iter().map(String::as_str));
    assert_eq!(g(&mset), "OK");
    assert_eq!(g(&["DBSIZE"]), n.to_string());
    let keys: HashSet<String> = g(&["KEYS", "key:*"]).lines().map(str::to_string).collect();
    assert_eq!(keys.len(), n);
    assert_eq!(g(&["KEYS", "key:1?"]).lines().count(), 10);
    // SCAN walks every shard: each key at least once, the cursor ends at 0.
    let scanned: HashSet<String> = cli(&gate, &["--scan"]).lines().map(str::to_string).collect();
    assert_eq!(scanned, keys);
    let matched = cli(&gate, &["--scan", "--pattern", "key:2*"]).lines().count();
    assert_eq!(matched, 111);
    assert!(keys.contains(&g(&["RANDOMKEY"])));
    assert_eq!(g(&["FLUSHALL"]), "OK");
    assert_eq!(g(&["DBSIZE"]), "0");
    assert_eq!(g(&["RANDOMKEY"]), "");
    // Replicated: every replica of both shards is empty.
    let client = c.client(0);
    eventually(
        "every replica empty after FLUSHALL",
        Duration::from_secs(10),
        || async {
            let info = client.cluster().await.ok()?;
            info.shards
                .iter()
                .flat_map(|s| &s.replicas)
                .all(|r| r.keys == Some(0))
                .then_some(())
        },
    )
    .await;
}

/// One command's `INFO commandstats` fields (`calls`, `usec`, `rejected_calls`, ...).
fn cmdstat(info: &str, name: &str) -> HashMap<String, u64> {
    let prefix = format!("cmdstat_{name}:");
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {info}"));
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

#[tokio::test]
async fn admin_commands_answer_as_redis_does() {
    let (_c, gate) = cluster().await;
    let g = |args: &[&str]| cli(&gate, args);
    assert_eq!(g(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]), "OK");
    assert_eq!(g(&["CONFIG", "GET", "maxmemory-p*"]), "maxmemory-policy\nallkeys-lfu");
    assert!(g(&["CONFIG", "SET", "nosuch", "1"]).starts_with("ERR Unknown option"));
    let info = g(&["INFO", "cpu", "commandstats"]);
    assert!(
        info.contains("used_cpu_user:") && info.contains("cmdstat_config:calls=3"),
        "{info}"
    );
    assert!(!info.contains("# Server"));
    // Calls, time, failures and rejections per command, at the gate and at the servers.
    assert_eq!(g(&["CONFIG", "RESETSTAT"]), "OK");
    assert_eq!(g(&["SET", "stat:s", "v"]), "OK");
    assert_eq!(g(&["GET", "stat:s"]), "v");
    assert!(g(&["INCR", "stat:s"]).starts_with("ERR value is not an integer"));
    assert!(g(&["GET", "stat:s", "extra"]).starts_with("ERR wrong number of arguments"));
    let info = g(&["INFO", "commandstats"]);
    let get = cmdstat(&info, "get");
    assert_eq!(
        (get["calls"], get["rejected_calls"], get["failed_calls"]),
        (1, 1, 0),
        "{info}"
    );
    assert!(get["usec"] > 0, "a forwarded call takes the shard's round trip: {info}");
    let incr = cmdstat(&info, "incr");
    assert_eq!((incr["calls"], incr["failed_calls"]), (1, 1), "{info}");
    // Reset, then counted itself (as Redis counts a call once it returns).
    assert_eq!(cmdstat(&info, "config")["calls"], 1, "{info}");
    // The shards counted the commands the gate sent them (a server keeps its own table).
    let mut served = 0;
    for s in &_c.servers {
        let info = cli(&s.addr, &["INFO", "commandstats"]);
        if info.contains("cmdstat_get:") {
            served += cmdstat(&info, "get")["calls"];
        }
    }
    assert!(served >= 1, "GET counted by a server");
    assert_eq!(g(&["TIME"]).lines().count(), 2);
    assert_eq!(g(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]), "a\nb");
    // CLIENT LIST shows another client; CLIENT KILL closes it.
    let mut other = TcpStream::connect(&gate).await.unwrap();
    let list = eventually("the other client listed", Duration::from_secs(5), || async {
        Some(g(&["CLIENT", "LIST"])).filter(|l| l.lines().count() >= 2)
    })
    .await;
    let local = other.local_addr().unwrap().to_string();
    let line = list
        .lines()
        .find(|l| l.contains(&format!("addr={local} ")))
        .expect("listed");
    let id = line.split_whitespace().next().unwrap().trim_start_matches("id=");
    assert_eq!(g(&["CLIENT", "KILL", "ID", id]), "1");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), other.read(&mut buf))
        .await
        .expect("the killed client is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(g(&["CLIENT", "KILL", "127.0.0.1:1"]), "ERR No such client");
}

#[tokio::test]
async fn a_cluster_client_gets_crossslot_for_keys_in_two_slots() {
    let (_c, _gate) = cluster().await;
    let server = _c.servers[0].addr.clone();
    crate::harness::every_slot_served(&server).await;
    let c = |args: &[&str]| {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(&server, &all)
    };
    assert_eq!(c(&["SET", "{v}a", "1"]), "OK");
    assert_eq!(c(&["RENAME", "{v}a", "{v}b"]), "OK");
    assert_eq!(c(&["GET", "{v}b"]), "1");
    assert!(c(&["RENAME", "{v}b", "other"]).starts_with("CROSSSLOT"));
    assert!(c(&["BITOP", "AND", "{v}d", "{v}b", "x"]).starts_with("CROSSSLOT"));
    // Each server reports itself, as a Redis Cluster node does.
    let info = cli(&server, &["INFO", "replication", "cluster", "keyspace"]);
    assert!(
        info.contains("cluster_enabled:1") && info.contains("master_repl_offset:"),
        "{info}"
    );
    assert!(info.contains("role:master") || info.contains("role:slave"), "{info}");
    assert!(!info.contains("# Server"));
    assert_eq!(cli(&server, &["CONFIG", "GET", "save"]), "save");
    assert_eq!(cli(&server, &["CLIENT", "SETNAME", "me"]), "OK");
    assert!(cli(&server, &["CLIENT", "INFO"]).contains("cmd=client|info"));
    // A server lists its client port's connections and closes one on CLIENT KILL.
    let mut victim = TcpStream::connect(&server).await.unwrap();
    crate::harness::send(&mut victim, &["CLIENT", "SETNAME", "victim"]).await;
    crate::harness::read_until(&mut victim, "+OK\r\n").await;
    crate::harness::send(&mut victim, &["CLIENT", "ID"]).await;
    let id = crate::harness::read_until(&mut victim, "\r\n").await;
    let id = id.trim().trim_start_matches(':').to_string();
    let list = cli(&server, &["CLIENT", "LIST"]);
    assert!(
        list.contains(&format!("id={id} ")) && list.contains("name=victim"),
        "{list}"
    );
    assert_eq!(cli(&server, &["CLIENT", "KILL", "ID", &id]), "1");
    let mut rest = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), victim.read(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the killed connection closes: {closed:?}"
    );
    assert!(!cli(&server, &["CLIENT", "LIST"]).contains("name=victim"));
}

/// `SORT` through the gate: `BY` and `GET` patterns naming keys on both shards, `STORE` to a
/// destination on either shard; straight at a kvserver, patterns are refused as Redis
/// Cluster refuses them, and a same-slot `STORE` is atomic there.
#[tokio::test]
async fn sort_reads_patterns_and_stores_on_any_shard() {
    let (c, gate) = cluster().await;
    let g = |args: &[&str]| cli(&gate, args);
    // 30 ids weighted in reverse: weights and hashes spread over both shards.
    for i in 0..30 {
        g(&["RPUSH", "ids", &i.to_string()]);
        g(&["SET", &format!("w_{i}"), &(100 - i).to_string()]);
        g(&[
            "HSET",
            &format!("o_{i}"),
            "w",
            &(100 - i).to_string(),
            "name",
            &format!("n{i}"),
        ]);
    }
    let reversed: Vec<String> = (0..30).rev().map(|i| i.to_string()).collect();
    assert_eq!(g(&["SORT", "ids", "BY", "w_*"]), reversed.join("\n"));
    assert_eq!(g(&["SORT", "ids", "BY", "o_*->w", "LIMIT", "0", "3"]), "29\n28\n27");
    assert_eq!(
        g(&[
            "SORT_RO",
            "ids",
            "BY",
            "o_*->w",
            "DESC",
            "LIMIT",
            "0",
            "2",
            "GET",
            "#",
            "GET",
            "o_*->name"
        ]),
        "0\nn0\n1\nn1"
    );
    assert_eq!(
        g(&["SORT", "ids", "LIMIT", "0", "3", "GET", "#", "GET", "nokey_*"]),
        "0\n\n1\n\n2"
    );
    // STORE to 20 destinations: some on the list's shard (sent whole), some on the other.
    for d in 0..20 {
        let dst = format!("dst{d}");
        assert_eq!(g(&["SORT", "ids", "BY", "w_*", "LIMIT", "0", "5", "STORE", &dst]), "5");
        assert_eq!(g(&["LRANGE", &dst, "0", "-1"]), "29\n28\n27\n26\n25");
        assert_eq!(g(&["SORT", "ids", "DESC", "LIMIT", "0", "2", "STORE", &dst]), "2");
        assert_eq!(g(&["LRANGE", &dst, "0", "-1"]), "29\n28");
        assert_eq!(g(&["SORT", "nosuchlist", "STORE", &dst]), "0");
        assert_eq!(g(&["EXISTS", &dst]), "0", "an empty result deletes the destination");
    }
    g(&["SET", "w_3", "x"]);
    assert!(g(&["SORT", "ids", "BY", "w_*"]).contains("can't be converted into double"));
    assert!(g(&["SORT", "w_4"]).starts_with("WRONGTYPE"));
    assert_eq!(g(&["SORT_RO", "ids", "STORE", "x"]), "ERR syntax error");
    // Straight at a kvserver, as a cluster client.
    let server = c.servers[0].addr.clone();
    crate::harness::every_slot_served(&server).await;
    let k = |args: &[&str]| {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(&server, &all)
    };
    assert_eq!(k(&["RPUSH", "{s}l", "3", "1", "2"]), "3");
    assert_eq!(k(&["SORT", "{s}l"]), "1\n2\n3");
    assert_eq!(k(&["SORT", "{s}l", "DESC", "STORE", "{s}d"]), "3");
    assert_eq!(k(&["LRANGE", "{s}d", "0", "-1"]), "3\n2\n1");
    assert_eq!(
        k(&["SORT", "{s}l", "BY", "w_*"]),
        "ERR BY option of SORT denied in Cluster mode."
    );
    assert_eq!(
        k(&["SORT", "{s}l", "GET", "x_*"]),
        "ERR GET option of SORT denied in Cluster mode."
    );
    assert_eq!(k(&["SORT", "{s}l", "GET", "#"]), "1\n2\n3", "GET # names no key");
    assert!(k(&["SORT", "{s}l", "STORE", "other"]).starts_with("CROSSSLOT"));
    for shard in ["s1", "s2"] {
        c.converged(shard, 2).await;
    }
}

/// One `SCAN` step through the gate: the next cursor and the keys returned.
fn scan_step(gate: &str, cursor: &str) -> (String, Vec<String>) {
    let out = cli(gate, &["SCAN", cursor, "COUNT", "20"]);
    let mut lines = out.lines().map(str::to_string);
    let next = lines.next().expect("a cursor");
    (next, lines.filter(|l| !l.is_empty()).collect())
}

#[tokio::test]
async fn scan_returns_every_key_across_an_added_shard() {
    let mut c = TestCluster::start().await;
    let flags = ["--migration-rate", "200"];
    for shard in ["s1", "s2"] {
        c.start_server(shard, &flags).await;
    }
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1), ("s2", 1)]).await;
    let gate = c.gates[0].resp.clone().unwrap();
    let n = 6000;
    let pairs: Vec<String> = (0..n).flat_map(|i| [format!("k:{i}"), i.to_string()]).collect();
    let mut mset = vec!["MSET"];
    mset.extend(pairs.iter().map(String::as_str));
    assert_eq!(cli(&gate, &mset), "OK");

    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..10 {
        let (next, keys) = scan_step(&gate, &cursor);
        seen.extend(keys);
        cursor = next;
    }
    assert_ne!(cursor, "0", "the walk is under way");
    c.start_server("s3", &flags).await;
    let client = c.client(0);
    let moving = eventually("the ring change to s3 under way", Duration::from_secs(60), || async {
        let info = client.cluster().await.ok()?;
        let moving = info.migrations.iter().any(|m| m.state == "moving" && m.moved > 0);
        (moving || info.ring.len() == 3).then_some(moving)
    })
    .await;
    eprintln!("keys were moving when the walk went on: {moving}");
    // The rest of the walk runs while keys move (each step is a round trip; the move takes
    // seconds at this rate), and on past the end of the move if it is quicker.
    let mut steps = 0;
    while cursor != "0" {
        let (next, keys) = scan_step(&gate, &cursor);
        seen.extend(keys);
        cursor = next;
        steps += 1;
        assert!(steps < 10_000, "the walk ends");
    }
    let missing: Vec<String> = (0..n).map(|i| format!("k:{i}")).filter(|k| !seen.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "{} keys never returned: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test]
async fn flushall_mid_move_brings_nothing_back() {
    let mut c = TestCluster::start().await;
    let flags = ["--migration-rate", "200"];
    for shard in ["s1", "s2"] {
        c.start_server(shard, &flags).await;
    }
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1), ("s2", 1)]).await;
    let gate = c.gates[0].resp.clone().unwrap();
    let n = 6000;
    let pairs: Vec<String> = (0..n).flat_map(|i| [format!("f:{i}"), i.to_string()]).collect();
    let mut mset = vec!["MSET"];
    mset.extend(pairs.iter().map(String::as_str));
    assert_eq!(cli(&gate, &mset), "OK");
    c.start_server("s3", &flags).await;
    let client = c.client(0);
    eventually("keys moving to s3", Duration::from_secs(60), || async {
        let info = client.cluster().await.ok()?;
        info.migrations
            .iter()
            .any(|m| m.state == "moving" && m.moved > 0)
            .then_some(())
    })
    .await;
    assert_eq!(cli(&gate, &["FLUSHALL"]), "OK");
    assert_eq!(cli(&gate, &["SET", "after", "1"]), "OK");
    eventually(
        "the ring to settle on three shards",
        Duration::from_secs(120),
        || async {
            let info = client.cluster().await.ok()?;
            (info.ring.len() == 3 && info.next_ring.is_none() && info.migrations.is_empty()).then_some(())
        },
    )
    .await;
    // The flush and the move both complete and nothing written before the flush comes back
    // (that a copy still in flight is refused is shown deterministically by the node's unit
    // test `a_flush_mid_move_refuses_copies_made_before_it`).
    assert_eq!(cli(&gate, &["DBSIZE"]), "1");
    assert_eq!(cli(&gate, &["KEYS", "*"]), "after");
}
