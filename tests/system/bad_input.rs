//! Every documented bad input gets its documented error, and the processes keep serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;

use crate::harness::TestCluster;

async fn expect(
    gate: &kv_client::GateClient,
    method: Method,
    path: &str,
    body: Option<&str>,
    status: u16,
    needle: &str,
) {
    let reply = gate
        .request(method.clone(), path, body.map(|b| Bytes::from(b.to_string())))
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        status,
        "{method} {path} {body:?}: {:?}",
        reply.error_message()
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "errors are JSON"
    );
    let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON error body");
    let msg = json["error"].as_str().expect("an `error` field");
    assert!(
        msg.contains(needle),
        "{method} {path}: `{msg}` should mention `{needle}`"
    );
}

#[tokio::test]
async fn http_errors_are_documented_json() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_gate(&[
        "--max-key-bytes",
        "16",
        "--max-value-bytes",
        "64",
        "--retry-timeout-ms",
        "300",
    ])
    .await;
    c.wait_ready(&[("s1", 1)]).await;
    let gate = c.client(0);
    let put = "/api/cache/put";

    expect(&gate, Method::POST, put, Some("{not json"), 400, "malformed JSON").await;
    expect(&gate, Method::POST, put, Some("[1,2]"), 400, "malformed JSON").await;
    expect(&gate, Method::POST, put, Some(r#"{"value":"YQ=="}"#), 400, "key").await;
    expect(&gate, Method::POST, put, Some(r#"{"key":"k"}"#), 400, "value").await;
    expect(
        &gate,
        Method::POST,
        put,
        Some(r#"{"key":"k","value":"%%%"}"#),
        400,
        "base64",
    )
    .await;
    expect(
        &gate,
        Method::POST,
        put,
        Some(r#"{"key":"","value":"YQ=="}"#),
        400,
        "empty",
    )
    .await;
    expect(
        &gate,
        Method::POST,
        put,
        Some(r#"{"key":"k","value":"YQ==","ttl_ms":0}"#),
        400,
        "ttl_ms",
    )
    .await;
    expect(
        &gate,
        Method::POST,
        put,
        Some(r#"{"key":"k","value":"YQ==","ttl_ms":-5}"#),
        400,
        "malformed JSON",
    )
    .await;
    let long_key = format!(r#"{{"key":"{}","value":"YQ=="}}"#, "k".repeat(17));
    expect(&gate, Method::POST, put, Some(&long_key), 413, "--max-key-bytes").await;
    let big_value = format!(r#"{{"key":"k","value":"{}"}}"#, "QUFB".repeat(30));
    expect(&gate, Method::POST, put, Some(&big_value), 413, "--max-value-bytes").await;
    // Over the body bound (about 1.2 KB with these limits) yet small enough that the client
    // finishes sending before the gate answers and closes: a client still sending a huge
    // body when the 413 arrives sees a reset, as with any HTTP server.
    let huge_body = format!(r#"{{"key":"k","value":"{}"}}"#, "A".repeat(8 << 10));
    expect(&gate, Method::POST, put, Some(&huge_body), 413, "larger").await;
    expect(&gate, Method::GET, "/api/cache/get", None, 400, "key").await;
    expect(&gate, Method::GET, "/api/cache/get?other=1", None, 400, "key").await;
    expect(&gate, Method::GET, "/api/cache/get?key=", None, 400, "empty").await;
    expect(
        &gate,
        Method::GET,
        &format!("/api/cache/get?key={}", "k".repeat(17)),
        None,
        413,
        "limit",
    )
    .await;
    expect(&gate, Method::GET, "/api/cache/get?key=absent", None, 404, "not found").await;
    expect(
        &gate,
        Method::DELETE,
        "/api/cache/delete?key=absent",
        None,
        404,
        "not found",
    )
    .await;
    expect(&gate, Method::DELETE, "/api/cache/delete", None, 400, "key").await;
    expect(&gate, Method::GET, "/no/such/endpoint", None, 404, "endpoint").await;
    expect(&gate, Method::PUT, "/api/cache/get?key=a", None, 405, "method").await;

    // The gate still serves after all that.
    gate.put("fine", b"still serving", None).await.unwrap();
    assert_eq!(gate.get("fine").await.unwrap().as_deref(), Some(&b"still serving"[..]));

    // kvserver: a malformed RESP stream gets a protocol error and that connection closes;
    // HTTP sent to it is refused; the server keeps serving others.
    let server = c.servers[0].addr.clone();
    for (bad, want) in [
        (&b"*abc\r\n"[..], "-ERR Protocol error: invalid multibulk length"),
        (
            &b"*1\r\n$99999999999\r\n"[..],
            "-ERR Protocol error: invalid bulk length",
        ),
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "-ERR Protocol error: HTTP"),
        (&b"*1\r\n:5\r\n"[..], "-ERR Protocol error: expected '$'"),
    ] {
        let mut s = TcpStream::connect(&server).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bad).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("the server closes the connection");
        assert!(
            reply.starts_with(want),
            "sent {:?}, got {reply:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut s = TcpStream::connect(&server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"NOSUCH a b\r\nGET\r\nPING\r\n").unwrap();
    let mut buf = [0u8; 512];
    let mut got = String::new();
    while !got.contains("PONG") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(
        got,
        "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n\
         -ERR wrong number of arguments for 'get' command\r\n+PONG\r\n"
    );

    // A shard whose leader is gone: 503 with Retry-After, within the retry window.
    c.servers[0].kill();
    let asked = Instant::now();
    let reply = gate
        .request(Method::GET, "/api/cache/get?key=fine", None)
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.error_message());
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        asked.elapsed()
    );
    let reply = gate
        .request(
            Method::POST,
            put,
            Some(Bytes::from_static(br#"{"key":"k","value":"YQ=="}"#)),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 503);
}
