//! Lua scripts through the gate: atomic on the key's leader, replicated as effects (the
//! replicas end equal), cached for `EVALSHA` on every server so that it survives a failover,
//! a runaway script stopped by the time limit (in a `pcall` or a coroutine too) or the memory
//! limit, and real clients' uses: redis-py's `Lock` under contention and a token-bucket rate
//! limiter.

use std::process::Command;
use std::time::Duration;

use kv_cluster::Ring;
use kv_cluster::ring::DEFAULT_VNODES;

use crate::harness::redis_cli as cli;
use crate::harness::{TestCluster, eventually, leader_addr};

#[tokio::test]
async fn scripts_run_on_the_leader_replicate_and_survive_a_failover() {
    let (mut c, gate) = TestCluster::two_by_two().await;
    let g = |args: &[&str]| cli(&gate, args);
    // Several writes in one script, and Redis's conversions both ways.
    let script = "redis.call('set', KEYS[1], ARGV[1]); redis.call('rpush', KEYS[2], 'a', 'b'); \
                  return {redis.call('get', KEYS[1]), redis.call('llen', KEYS[2]), {ok='fine'}}";
    assert_eq!(g(&["EVAL", script, "2", "{s}k", "{s}l", "v"]), "v\n2\nfine");
    assert!(g(&["EVAL", "return redis.call('incr', KEYS[1])", "1", "{s}k"]).starts_with("ERR value is not an integer"));
    assert!(
        g(&["EVAL", "return 1", "2", "{a}x", "{b}y"]).starts_with("CROSSSLOT") || {
            // Two tags may land on one shard; two shards' keys must not share a script.
            let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
            ring.shard_for(b"{a}x") == ring.shard_for(b"{b}y")
        }
    );
    assert!(g(&["EVAL_RO", "return redis.call('del', KEYS[1])", "1", "{s}k"]).contains("read-only scripts"));
    // Globals are read-only: no script can change what the next one sees.
    assert!(g(&["EVAL", "redis = 1 return 1", "1", "{s}k"]).contains("Attempt to modify a readonly table"));
    assert_eq!(g(&["EVAL", "return redis.call('get', KEYS[1])", "1", "{s}k"]), "v");
    for shard in ["s1", "s2"] {
        c.converged(shard, 2).await;
    }
    // Loaded through the gate on every server: EVALSHA finds it on a new leader.
    let sha = g(&["SCRIPT", "LOAD", "return redis.call('get', KEYS[1])"]);
    assert_eq!(g(&["EVALSHA", &sha, "1", "{s}k"]), "v");
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    let shard = ring.shard_for(b"{s}k").unwrap().to_string();
    let old = leader_addr(&c.client(0).cluster().await.unwrap(), &shard);
    c.server_at(&old).kill();
    eventually("EVALSHA on the new leader", Duration::from_secs(60), || async {
        (g(&["EVALSHA", &sha, "1", "{s}k"]) == "v").then_some(())
    })
    .await;
    assert!(g(&["EVALSHA", "0000000000000000000000000000000000000000", "0"]).starts_with("NOSCRIPT"));
}

#[tokio::test]
async fn a_runaway_script_is_stopped_and_the_server_serves_on() {
    let (c, gate) = TestCluster::two_by_two().await;
    for s in &c.servers {
        assert_eq!(cli(&s.addr, &["CONFIG", "SET", "lua-time-limit", "300"]), "OK");
    }
    // A plain loop; one that catches every error with pcall (Redis's suite has it); one in a
    // coroutine. Each once held its server's only thread for ever, and the gate then sent it
    // to the next leader.
    for script in [
        "local i = 0 while true do i = i + 1 end",
        "local f = function() while true do redis.call('ping') end end while true do pcall(f) end",
        "local co = coroutine.wrap(function() while true do end end) co()",
    ] {
        let reply = cli(&gate, &["EVAL", script, "1", "spin"]);
        assert!(reply.contains("busy-reply-threshold"), "{script}: {reply}");
        assert_eq!(cli(&gate, &["SET", "spin", "1"]), "OK");
    }
    // One that would take 400 MB stops at `--script-memory` (256 MB by default).
    let hog = "local t = {} for i = 1, 400 do t[i] = string.rep('x', 1048576) .. i end return #t";
    let reply = cli(&gate, &["EVAL", hog, "1", "spin"]);
    assert!(reply.contains("not enough memory"), "{reply}");
    let fits = "local t = {} for i = 1, 10 do t[i] = string.rep('x', 1048576) .. i end return #t";
    assert_eq!(cli(&gate, &["EVAL", fits, "1", "spin"]), "10");
    // A library's code gets 500 ms to load, as in Redis.
    let reply = cli(&gate, &["FUNCTION", "LOAD", "#!lua name=spin\nwhile true do end"]);
    assert!(reply.contains("FUNCTION LOAD timeout"), "{reply}");
    assert_eq!(cli(&gate, &["GET", "spin"]), "1");
}

/// redis-py's `Lock` (its release and extend are `EVALSHA`s) guarding a read-modify-write
/// from 4 threads, and a token bucket written as a script.
#[tokio::test]
async fn redis_py_lock_and_a_rate_limiter_script() {
    let python = crate::harness::pyredis();
    let (_c, gate) = TestCluster::two_by_two().await;
    let script = r#"
import sys, threading, redis
host, port = sys.argv[1].rsplit(":", 1)
def client():
    return redis.Redis(host=host, port=int(port))
def worker():
    c = client()
    for _ in range(100):
        with c.lock("lock:n", timeout=10, blocking_timeout=30) as l:
            c.set("n", int(c.get("n") or 0) + 1)
    lk = c.lock("lock:x", timeout=5)
    assert lk.acquire() and lk.extend(5) and lk.owned()
    lk.release()
ts = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
bucket = client().register_script("""
local tokens = tonumber(redis.call('get', KEYS[1]) or ARGV[1])
if tokens > 0 then redis.call('set', KEYS[1], tokens - 1) return 1 end
return 0
""")
print(repr((int(client().get("n")), [bucket(keys=["bucket"], args=[3]) for _ in range(5)])))
"#;
    let out = Command::new(python).args(["-c", script, &gate]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "(400, [1, 1, 1, 0, 0])");
}

/// A library of functions loaded through the gate is on every server: callable for keys of
/// either shard, and after a failover.
#[tokio::test]
async fn functions_load_everywhere_and_run_by_name() {
    let (mut c, gate) = TestCluster::two_by_two().await;
    let g = |args: &[&str]| cli(&gate, args);
    let lib = "#!lua name=counters\n\
               redis.register_function('bump', function(keys, args) return redis.call('incrby', keys[1], args[1]) end)\n\
               redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";
    assert_eq!(g(&["FUNCTION", "LOAD", lib]), "counters");
    assert!(g(&["FUNCTION", "LOAD", lib]).contains("already exists"));
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    let keys: Vec<String> = ["s1", "s2"]
        .iter()
        .map(|s| {
            (0..)
                .map(|i| format!("f{i}"))
                .find(|k| ring.shard_for(k.as_bytes()) == Some(*s))
                .unwrap()
        })
        .collect();
    for k in &keys {
        assert_eq!(g(&["FCALL", "bump", "1", k, "5"]), "5");
        assert_eq!(g(&["FCALL_RO", "peek", "1", k]), "5");
        assert!(g(&["FCALL_RO", "bump", "1", k, "1"]).contains("write flag"));
    }
    assert!(g(&["FUNCTION", "LIST"]).contains("counters"));
    let old = leader_addr(&c.client(0).cluster().await.unwrap(), "s1");
    c.server_at(&old).kill();
    eventually("FCALL on the new leader", Duration::from_secs(60), || async {
        (g(&["FCALL", "bump", "1", &keys[0], "1"]) == "6").then_some(())
    })
    .await;
    assert_eq!(g(&["FUNCTION", "DELETE", "counters"]), "OK");
    assert_eq!(g(&["FCALL", "bump", "1", &keys[1], "1"]), "ERR Function not found");
}

/// Scripts as a client of one Redis writes them: no declared keys (the gate runs such a
/// script on the shard of the key it touches), Redis's libraries, read-only globals, no
/// access to files or processes; a self-containing reply ends in Redis's error.
#[tokio::test]
async fn undeclared_keys_libraries_and_the_sandbox() {
    let (c, gate) = TestCluster::two_by_two().await;
    let g = |args: &[&str]| cli(&gate, args);
    let script = "redis.call('get', ARGV[1]) return redis.call('set', ARGV[1], ARGV[2])";
    for i in 0..20 {
        let key = format!("free{i}");
        assert_eq!(g(&["EVAL", script, "0", &key, "v"]), "OK", "{key}");
        assert_eq!(g(&["GET", &key]), "v");
    }
    // Keys on two shards: no shard can run it.
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    let other = (0..100)
        .map(|i| format!("other{i}"))
        .find(|k| ring.shard_for(k.as_bytes()) != ring.shard_for(b"free0"))
        .unwrap();
    let both = format!("redis.call('get', 'free0') redis.call('get', '{other}') return 1");
    assert!(g(&["EVAL", &both, "0"]).contains("Script attempted to access a non local key in a cluster node"));
    // A cluster client straight at a server gets Redis Cluster's error.
    // A leader: a key it redirects is another shard's.
    let server = c
        .servers
        .iter()
        .map(|s| s.addr.clone())
        .find(|a| cli(a, &["INFO", "replication"]).contains("role:master"))
        .expect("a leader");
    crate::harness::every_slot_served(&server).await;
    let local = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| {
            let moved = cli(&server, &["GET", k]);
            moved.starts_with("MOVED")
        })
        .expect("a key another shard serves");
    let reply = cli(&server, &["EVAL", "return redis.call('get', ARGV[1])", "0", &local]);
    assert!(reply.contains("non local key"), "{local}: {reply}");
    // Redis's libraries.
    assert_eq!(
        g(&["EVAL", "return cjson.encode({1, 'a', {x = true}})", "0"]),
        r#"[1,"a",{"x":true}]"#
    );
    assert_eq!(g(&["EVAL", "return cjson.decode('{\"a\": [5, 6]}').a[2]", "0"]), "6");
    assert_eq!(
        g(&["EVAL", "return cmsgpack.unpack(cmsgpack.pack({7, 'x'}))[2]", "0"]),
        "x"
    );
    assert_eq!(g(&["EVAL", "return bit.band(7, 3) + bit.lshift(1, 4)", "0"]), "19");
    assert_eq!(
        g(&[
            "EVAL",
            "local a, b = struct.unpack('>hs', struct.pack('>hs', -2, 'ok')) return {a, b}",
            "0"
        ]),
        "-2\nok"
    );
    // The sandbox.
    assert!(g(&["EVAL", "a = 1", "0"]).contains("Attempt to modify a readonly table"));
    assert!(g(&["EVAL", "cjson.encode = nil", "0"]).contains("Attempt to modify a readonly table"));
    for name in ["os", "io", "print", "loadfile", "require"] {
        let reply = g(&["EVAL", &format!("return {name}"), "0"]);
        assert!(reply.contains("nonexistent global variable"), "{name}: {reply}");
    }
    let deep = g(&["EVAL", "local a = {} a[1] = a return a", "0"]);
    assert!(deep.contains("reached lua stack limit"), "{deep}");
    assert_eq!(g(&["PING"]), "PONG");
}
