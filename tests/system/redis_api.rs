//! The gate's Redis protocol, through real clients: the `redis` crate and redis-cli.

use std::process::Command;
use std::time::Duration;

use redis::AsyncCommands;

use crate::harness::redis_cli as cli;
use crate::harness::{TestCluster, eventually};

async fn cluster() -> (TestCluster, String) {
    TestCluster::two_by_two().await
}

async fn connect(addr: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the gate")
}

fn err_text(e: redis::RedisError) -> String {
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

#[tokio::test]
async fn the_redis_crate_against_the_gate() {
    let (c, addr) = cluster().await;
    let mut r = connect(&addr).await;

    // SET options and TTLs.
    let _: () = r.set("k", "v1").await.unwrap();
    let nx: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .arg("NX")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(nx, None, "NX on an existing key does nothing");
    let old: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("v3")
        .arg("XX")
        .arg("GET")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(old.as_deref(), Some("v1"));
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("x")
        .arg("EX")
        .arg(100)
        .query_async(&mut r)
        .await
        .unwrap();
    let ttl: i64 = r.ttl("t").await.unwrap();
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    let pttl: i64 = r.pttl("t").await.unwrap();
    assert!(pttl > 98_000 && pttl <= 100_000, "pttl {pttl}");
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("y")
        .arg("KEEPTTL")
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(r.ttl::<_, i64>("t").await.unwrap() > 90, "KEEPTTL keeps the expiry");
    let _: () = redis::cmd("SET")
        .arg("p")
        .arg("x")
        .arg("PX")
        .arg(150)
        .query_async(&mut r)
        .await
        .unwrap();
    eventually("a PX key to expire", Duration::from_secs(5), || {
        let mut r = r.clone();
        async move { r.get::<_, Option<String>>("p").await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert_eq!(r.ttl::<_, i64>("p").await.unwrap(), -2);
    assert_eq!(r.ttl::<_, i64>("k").await.unwrap(), -1);
    assert!(r.persist::<_, bool>("t").await.unwrap());
    assert_eq!(r.ttl::<_, i64>("t").await.unwrap(), -1);
    assert!(r.expire::<_, bool>("t", 50).await.unwrap());
    let e = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(0)
        .query_async::<()>(&mut r)
        .await
        .unwrap_err();
    assert!(err_text(e).contains("invalid expire time"));
    let setnx: i64 = redis::cmd("SETNX")
        .arg("fresh")
        .arg("1")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(setnx, 1);
    let _: () = redis::cmd("SETEX")
        .arg("sx")
        .arg(30)
        .arg("v")
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(r.ttl::<_, i64>("sx").await.unwrap() > 25);
    let old: String = redis::cmd("GETSET")
        .arg("fresh")
        .arg("2")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(old, "1");
    let gone: String = redis::cmd("GETDEL").arg("fresh").query_async(&mut r).await.unwrap();
    assert_eq!(gone, "2");
    assert!(!r.exists::<_, bool>("fresh").await.unwrap());

    // MSET / MGET across shards, in order; DEL and EXISTS counts.
    let pairs: Vec<(String, String)> = (0..50).map(|i| (format!("m{i}"), format!("val{i}"))).collect();
    let _: () = r.mset(&pairs).await.unwrap();
    let mut keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    keys.insert(10, "absent".into());
    let got: Vec<Option<String>> = r.mget(&keys).await.unwrap();
    for (k, v) in keys.iter().zip(&got) {
        let want = (k != "absent").then(|| k.replacen('m', "val", 1));
        assert_eq!(v, &want, "key {k}");
    }
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&keys[..20])
        .arg("m0")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(exists, 20, "19 present of the first 20, and m0 counted twice");
    let deleted: i64 = r.del(&keys[..20]).await.unwrap();
    assert_eq!(deleted, 19);
    let unlinked: i64 = r.unlink(&keys[20..25]).await.unwrap();
    assert_eq!(unlinked, 5);

    // Binary keys and values.
    let key = b"bin\0key\r\n".to_vec();
    let value = b"\0\r\n\xff\x00end\r\n".to_vec();
    let _: () = r.set(&key, &value).await.unwrap();
    let back: Vec<u8> = r.get(&key).await.unwrap();
    assert_eq!(back, value);
    assert_eq!(r.strlen::<_, i64>(&key).await.unwrap(), value.len() as i64);

    // Counters.
    assert_eq!(r.incr::<_, _, i64>("ctr", 1).await.unwrap(), 1);
    assert_eq!(r.incr::<_, _, i64>("ctr", 41).await.unwrap(), 42);
    assert_eq!(r.decr::<_, _, i64>("ctr", 2).await.unwrap(), 40);
    let e = r.incr::<_, _, i64>("k", 1).await.unwrap_err();
    assert!(err_text(e).contains("value is not an integer or out of range"));
    let _: () = r.set("big", i64::MAX).await.unwrap();
    let e = r.incr::<_, _, i64>("big", 1).await.unwrap_err();
    assert!(err_text(e).contains("overflow"));
    assert_eq!(r.append::<_, _, i64>("ap", "ab").await.unwrap(), 2);
    assert_eq!(r.append::<_, _, i64>("ap", "cd").await.unwrap(), 4);
    assert_eq!(r.get::<_, String>("ap").await.unwrap(), "abcd");

    // Pipelined requests: replies in order.
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.set(format!("pl{i}"), i).ignore();
        pipe.get(format!("pl{i}"));
    }
    let values: Vec<i64> = pipe.query_async(&mut r).await.unwrap();
    assert_eq!(values, (0..500).collect::<Vec<i64>>());

    // Unknown commands and wrong arity.
    let e = redis::cmd("FLUBBER")
        .arg("a")
        .query_async::<()>(&mut r)
        .await
        .unwrap_err();
    assert!(err_text(e).contains("unknown command 'FLUBBER'"));
    let e = redis::cmd("GET").query_async::<()>(&mut r).await.unwrap_err();
    assert!(err_text(e).contains("wrong number of arguments for 'get' command"));
    let e = redis::cmd("MSET")
        .arg("a")
        .arg("b")
        .arg("c")
        .query_async::<()>(&mut r)
        .await
        .unwrap_err();
    assert!(err_text(e).contains("wrong number of arguments"));
    // The connection is still good after errors.
    let pong: String = redis::cmd("PING").query_async(&mut r).await.unwrap();
    assert_eq!(pong, "PONG");

    // DBSIZE is summed over the shards; the HTTP API sees the same data.
    let dbsize: i64 = redis::cmd("DBSIZE").query_async(&mut r).await.unwrap();
    let http = c.client(0);
    let info = http.cluster().await.unwrap();
    let leaders: u64 = info.shards.iter().map(|s| s.replicas[0].keys.unwrap()).sum();
    assert_eq!(dbsize as u64, leaders);
    assert_eq!(http.get("ap").await.unwrap().as_deref(), Some(&b"abcd"[..]));
    http.put("from-http", b"h", None).await.unwrap();
    assert_eq!(r.get::<_, String>("from-http").await.unwrap(), "h");
    let info: String = redis::cmd("INFO").query_async(&mut r).await.unwrap();
    assert!(
        info.contains("# Cluster") && info.contains("kvstore_shards:2"),
        "{info}"
    );
}

#[tokio::test]
async fn redis_cli_against_the_gate() {
    let (_c, addr) = cluster().await;
    assert_eq!(cli(&addr, &["PING"]), "PONG");
    assert_eq!(cli(&addr, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(cli(&addr, &["GET", "greeting"]), "hello world");
    assert_eq!(cli(&addr, &["MSET", "a", "1", "b", "2", "c", "3"]), "OK");
    assert_eq!(cli(&addr, &["MGET", "a", "b", "zz", "c"]), "1\n2\n\n3");
    assert_eq!(cli(&addr, &["DEL", "a", "b", "zz"]), "2");
    assert_eq!(cli(&addr, &["INCR", "n"]), "1");
    assert_eq!(cli(&addr, &["INCRBY", "n", "10"]), "11");
    assert_eq!(
        cli(&addr, &["INCR", "greeting"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(&addr, &["SET", "e", "v", "PX", "100000"]), "OK");
    let pttl: i64 = cli(&addr, &["PTTL", "e"]).parse().unwrap();
    assert!(pttl > 90_000);
    assert!(cli(&addr, &["NOSUCH"]).starts_with("ERR unknown command 'NOSUCH'"));
    assert!(cli(&addr, &["INFO", "keyspace"]).contains("db0:keys="));
    assert!(cli(&addr, &["COMMAND", "COUNT"]).parse::<i64>().unwrap() > 30);
    // Container commands: an unknown subcommand, or a known one with the wrong count, in
    // redis-server 7.0's words (its replies to these exact lines), at the gate and at a
    // server.
    let server = _c.servers[0].addr.clone();
    for at in [&addr, &server] {
        for (line, want) in [
            ("OBJECT foo x", "ERR unknown subcommand 'foo'. Try OBJECT HELP."),
            (
                "OBJECT encoding",
                "ERR wrong number of arguments for 'object|encoding' command",
            ),
            ("ACL whoami x", "ERR wrong number of arguments for 'acl|whoami' command"),
            (
                "SCRIPT exists",
                "ERR wrong number of arguments for 'script|exists' command",
            ),
            (
                "PUBSUB numpat x",
                "ERR wrong number of arguments for 'pubsub|numpat' command",
            ),
            ("FUNCTION foo", "ERR unknown subcommand 'foo'. Try FUNCTION HELP."),
            ("CONFIG foo", "ERR unknown subcommand 'foo'. Try CONFIG HELP."),
            ("CLIENT foo", "ERR unknown subcommand 'foo'. Try CLIENT HELP."),
            ("MEMORY foo", "ERR unknown subcommand 'foo'. Try MEMORY HELP."),
        ] {
            let args: Vec<&str> = line.split(' ').collect();
            assert_eq!(cli(at, &args), want, "{line} at {at}");
        }
    }
    // Piped input (redis-cli --pipe sends a stream of commands and counts the replies).
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut input = String::new();
    for i in 0..1000 {
        input.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\npipe:{i}\r\n$1\r\nx\r\n",
            format!("pipe:{i}").len()
        ));
    }
    let mut child = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 1000"), "{text}");
    assert_eq!(cli(&addr, &["EXISTS", "pipe:0", "pipe:999"]), "2");
}
