//! RESP3 on the gate and on a kvserver's client port: `HELLO` as Redis answers it, replies in
//! the negotiated protocol (byte for byte where RESP2 and RESP3 differ), and real clients that
//! default to RESP3: redis-py 8 with no options, the `redis` crate with `protocol=resp3`.

use std::process::Command;

use bytes::BytesMut;
use kv_proto::{Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::TestCluster;

/// One shard of one server and a gate: `(cluster, gate RESP address, server client address)`.
async fn cluster() -> (TestCluster, String, String) {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1)]).await;
    let gate = c.gates[0].resp.clone().expect("the gate's RESP address");
    let server = c.servers[0].addr.clone();
    crate::harness::every_slot_served(&server).await;
    (c, gate, server)
}

/// Sends `commands` as one pipeline and returns the raw bytes of `n` replies.
async fn exchange(stream: &mut TcpStream, commands: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in commands {
        out.extend_from_slice(&kv_proto::write::command(c.iter().map(|a| a.as_bytes())));
    }
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let mut raw = Vec::new();
    let mut replies = 0;
    while replies < commands.len() {
        let before = buf.clone();
        match kv_proto::parse_reply(&mut buf, &Limits::REDIS).unwrap() {
            Some(_) => {
                raw.extend_from_slice(&before[..before.len() - buf.len()]);
                replies += 1;
            }
            None => {
                let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_buf(&mut buf))
                    .await
                    .expect("a reply within 10 s")
                    .unwrap();
                assert!(n > 0, "the connection closed");
            }
        }
    }
    raw
}

async fn one(stream: &mut TcpStream, command: &[&str]) -> Frame {
    let raw = exchange(stream, &[command]).await;
    kv_proto::parse_reply(&mut BytesMut::from(&raw[..]), &Limits::REDIS)
        .unwrap()
        .unwrap()
}

fn field<'a>(map: &'a Frame, name: &str) -> &'a Frame {
    let Frame::Map(pairs) = map else {
        panic!("not a map: {map:?}")
    };
    &pairs
        .iter()
        .find(|(k, _)| k.as_bytes().is_some_and(|b| b == name.as_bytes()))
        .unwrap_or_else(|| panic!("no {name} in {map:?}"))
        .1
}

#[tokio::test]
async fn hello_and_replies_in_the_negotiated_protocol() {
    let (_c, gate, server) = cluster().await;
    for (addr, mode) in [(&gate, "standalone"), (&server, "cluster")] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Before HELLO: RESP2, and HELLO without a version reports it as a flat array.
        let before = exchange(&mut s, &[&["GET", "absent"], &["HELLO"]]).await;
        assert!(
            before.starts_with(b"$-1\r\n*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
            "{addr}"
        );
        for (line, want) in [
            (&["HELLO", "4"][..], "NOPROTO unsupported protocol version"),
            (
                &["HELLO", "x"],
                "ERR Protocol version is not an integer or out of range",
            ),
            (&["HELLO", "3", "FOO"], "ERR Syntax error in HELLO option 'FOO'"),
            (
                &["HELLO", "3", "AUTH", "bob", "x"],
                "WRONGPASS invalid username-password pair or user is disabled.",
            ),
        ] {
            assert_eq!(one(&mut s, line).await, Frame::error(want), "{addr}: {line:?}");
        }
        let hello = one(&mut s, &["HELLO", "3", "AUTH", "default", "any", "SETNAME", "t1"]).await;
        assert_eq!(field(&hello, "proto"), &Frame::Integer(3), "{addr}");
        assert_eq!(field(&hello, "mode"), &Frame::bulk(mode), "{addr}");
        assert_eq!(field(&hello, "version"), &Frame::bulk("7.0.15"), "{addr}");
        assert!(matches!(field(&hello, "id"), Frame::Integer(id) if *id > 0), "{addr}");

        // Nulls are RESP3's `_`, alone and inside arrays; the rest reads as in RESP2.
        let raw = exchange(
            &mut s,
            &[
                &["SET", "{r3}", "v"],
                &["GET", "absent"],
                &["MGET", "{r3}", "{r3}absent"],
                &["SET", "{r3}", "w", "NX"],
                &["GETDEL", "absent"],
                &["TTL", "{r3}"],
            ],
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&raw),
            "+OK\r\n_\r\n*2\r\n$1\r\nv\r\n_\r\n_\r\n_\r\n:-1\r\n",
            "{addr}"
        );
        // A pipeline switching back: each reply in the protocol in force when its request
        // arrived, HELLO's own in the one it switches to.
        let raw = exchange(&mut s, &[&["GET", "absent"], &["HELLO", "2"], &["GET", "absent"]]).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with("_\r\n*14\r\n") && text.ends_with("*0\r\n$-1\r\n"),
            "{addr}: {text:?}"
        );
    }
    // The gate's own replies take RESP3's types: INFO is verbatim text, COMMAND's flags a set.
    let mut s = TcpStream::connect(&gate).await.unwrap();
    one(&mut s, &["HELLO", "3"]).await;
    let info = exchange(&mut s, &[&["INFO", "server"]]).await;
    assert!(
        info.starts_with(b"=") && info.windows(4).any(|w| w == b"txt:"),
        "{info:?}"
    );
    let cmd = exchange(&mut s, &[&["COMMAND", "INFO", "get"]]).await;
    assert!(
        cmd.windows(14).any(|w| w == b"~2\r\n+readonly\r"),
        "{:?}",
        String::from_utf8_lossy(&cmd)
    );
}

#[tokio::test]
async fn the_redis_crate_with_resp3() {
    use redis::AsyncCommands;
    let (_c, gate, server) = cluster().await;
    for addr in [&gate, &server] {
        let client = redis::Client::open(format!("redis://{addr}/?protocol=resp3")).unwrap();
        let mut r = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect with RESP3");
        let _: () = r.set("crate", "v").await.unwrap();
        let got: Option<String> = r.get("crate").await.unwrap();
        let absent: Option<String> = r.get("absent").await.unwrap();
        // One hash tag: a kvserver, like Redis Cluster, refuses keys of several slots.
        let _: () = r.set("{crate}", "v").await.unwrap();
        let many: Vec<Option<String>> = r.mget(&["{crate}", "{crate}absent"]).await.unwrap();
        // Both addresses reach the same shard: a counter of its own per address.
        let n: i64 = r.incr(format!("crate-n-{addr}"), 5).await.unwrap();
        assert_eq!(
            (got.as_deref(), absent, many, n),
            (Some("v"), None, vec![Some("v".to_string()), None], 5),
            "{addr}"
        );
        let hello: redis::Value = redis::cmd("HELLO").arg(3).query_async(&mut r).await.unwrap();
        assert!(matches!(hello, redis::Value::Map(_)), "{addr}: {hello:?}");
    }
}

/// redis-py 8 sends `HELLO 3` on every new connection and has no fallback: with no options
/// it must just work, against the gate and a server.
#[tokio::test]
async fn redis_py_8_with_its_defaults() {
    let python = crate::harness::pyredis();
    let (_c, gate, server) = cluster().await;
    let script = r#"
import sys, redis
host, port = sys.argv[1].rsplit(":", 1)
r = redis.Redis(host=host, port=int(port))
assert r.get_connection_kwargs().get("protocol") in (None, 3), r.get_connection_kwargs()
r.set("py", "v"); r.set("{py}", "v")
p = r.pipeline(transaction=False)
p.get("py"); p.get("absent"); p.mget("{py}", "{py}absent"); p.incrby("py-n-" + sys.argv[1], 3); p.expire("py", 100); p.ttl("py")
out = p.execute()
conn = r.connection_pool.get_connection()
proto = conn.handshake_metadata.get(b"proto") or conn.handshake_metadata.get("proto")
r.connection_pool.release(conn)
print(repr((out, r.exists("{py}", "{py}absent"), r.delete("py"), proto)))
"#;
    for addr in [&gate, &server] {
        let out = Command::new(python).args(["-c", script, addr]).output().unwrap();
        assert!(out.status.success(), "{addr}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "([b'v', None, [b'v', None], 3, True, 100], 1, 1, 3)",
            "{addr}"
        );
    }
}
