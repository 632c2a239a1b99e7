//! 2 shards × 2 replicas through the gate: the HTTP API and kvctl.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hyper::Method;

use crate::harness::{TestCluster, eventually};

fn kvctl(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kvctl");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().expect("kvctl output")
}

#[tokio::test]
async fn put_get_delete_over_http_and_kvctl() {
    let (c, _) = TestCluster::two_by_two().await;
    let gate = c.client(0);

    // The topology's field names are a contract.
    let raw = gate.request(Method::GET, "/api/cluster", None).await.unwrap();
    assert_eq!(raw.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    for shard in json["shards"].as_array().unwrap() {
        assert!(shard["name"].is_string() && shard["epoch"].as_u64().unwrap() >= 1 && shard["leader"].is_string());
        for r in shard["replicas"].as_array().unwrap() {
            assert!(r["addr"].is_string() && r["in_sync"].is_boolean() && r["keys"].is_u64());
            assert!(["leader", "follower"].contains(&r["role"].as_str().unwrap()));
        }
    }

    // HTTP: binary-safe values, overwrite, delete.
    for i in 0..200u32 {
        let value = format!("value-{i}\0\r\n{}", "x".repeat(i as usize));
        gate.put(&format!("key-{i}"), value.as_bytes(), None).await.unwrap();
    }
    gate.put("key-0", b"overwritten", None).await.unwrap();
    for i in 1..200u32 {
        let want = format!("value-{i}\0\r\n{}", "x".repeat(i as usize));
        assert_eq!(gate.get(&format!("key-{i}")).await.unwrap().unwrap(), want.as_bytes());
    }
    assert_eq!(gate.get("key-0").await.unwrap().unwrap(), &b"overwritten"[..]);
    assert!(gate.delete("key-1").await.unwrap());
    assert!(!gate.delete("key-1").await.unwrap(), "second delete finds nothing");
    assert_eq!(gate.get("key-1").await.unwrap(), None);
    let raw = gate
        .request(Method::GET, "/api/cache/get?key=key-2", None)
        .await
        .unwrap();
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));

    // A TTL expires the key.
    gate.put("short-lived", b"v", Some(300)).await.unwrap();
    assert_eq!(gate.get("short-lived").await.unwrap().unwrap(), &b"v"[..]);
    eventually("the TTL key to expire", Duration::from_secs(5), || async {
        gate.get("short-lived").await.unwrap().is_none().then_some(())
    })
    .await;

    // kvctl: one-shot commands and exit codes.
    let host = c.gates[0].addr.clone();
    let ok = kvctl(&["--host", &host, "put", "cli-key", "cli value"], None);
    assert!(ok.status.success(), "{ok:?}");
    let got = kvctl(&["--host", &host, "get", "cli-key"], None);
    assert_eq!((got.status.code(), got.stdout.as_slice()), (Some(0), &b"cli value"[..]));
    let binary = b"\x00\x01\r\n\xffend";
    assert!(
        kvctl(&["--host", &host, "put", "bin", "-"], Some(binary))
            .status
            .success()
    );
    assert_eq!(kvctl(&["--host", &host, "get", "bin"], None).stdout, binary);
    assert_eq!(gate.get("bin").await.unwrap().unwrap(), &binary[..]);
    assert_eq!(kvctl(&["--host", &host, "del", "cli-key"], None).status.code(), Some(0));
    let missing = kvctl(&["--host", &host, "get", "cli-key"], None);
    assert_eq!(missing.status.code(), Some(1), "not found exits 1");
    assert_eq!(kvctl(&["--host", &host, "del", "cli-key"], None).status.code(), Some(1));
    // Several hosts: tried in order until one answers.
    let fallback = kvctl(&["--host", "127.0.0.1:1", "--host", &host, "get", "bin"], None);
    assert_eq!(fallback.stdout, binary);
    let unreachable = kvctl(&["--host", "127.0.0.1:1", "get", "bin"], None);
    assert_eq!(unreachable.status.code(), Some(2), "connection error exits 2");
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
    assert_eq!(
        kvctl(&["--host", &host, "frobnicate"], None).status.code(),
        Some(2),
        "usage error exits 2"
    );
    // Piped commands run like the shell.
    let piped = kvctl(&["--host", &host], Some(b"put p1 'a b'\nget p1\ndel p1\nget p1\n"));
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "OK\na b\n(deleted)\n(nil)\n");
    assert_eq!(
        piped.status.code(),
        Some(1),
        "the last failure (not found) decides the exit code"
    );

    // Replicas converge: equal digests and key counts within each shard.
    eventually("replicas to converge", Duration::from_secs(10), || async {
        let info = gate.cluster().await.ok()?;
        info.shards
            .iter()
            .all(|s| {
                let first = &s.replicas[0];
                first.keys.is_some()
                    && s.replicas
                        .iter()
                        .all(|r| r.digest == first.digest && r.keys == first.keys)
            })
            .then_some(())
    })
    .await;
    let info = gate.cluster().await.unwrap();
    let total: u64 = info.shards.iter().map(|s| s.replicas[0].keys.unwrap()).sum();
    assert_eq!(total, 199 + 1, "199 keys left of 200, plus `bin`");

    let table = kvctl(&["--host", &host, "cluster"], None);
    let text = String::from_utf8_lossy(&table.stdout);
    for word in ["SHARD", "EPOCH", "s1", "s2", "leader", "follower", "IN-SYNC"] {
        assert!(text.contains(word), "missing {word} in\n{text}");
    }
    let json = kvctl(&["--host", &host, "cluster", "--json"], None);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["shards"].as_array().unwrap().len(), 2);
}
