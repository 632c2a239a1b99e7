//! Every RESP limit at the gate: the offending client gets `-ERR Protocol error: ...` and is
//! disconnected; other clients are unaffected.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::TestCluster;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `bytes` and reads until the gate closes the connection.
fn rejected(addr: &str, bytes: &[u8]) -> String {
    let mut s = connect(addr);
    // The gate may close while we are still sending: that is the point.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends one command and reads one line of reply.
fn roundtrip(s: &mut TcpStream, bytes: &[u8]) -> String {
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn limits_contain_bad_clients() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_gate(&[
        "--proto-max-bulk-len",
        "1kb",
        "--proto-max-multibulk-len",
        "16",
        "--proto-max-inline-len",
        "256",
        "--client-query-buffer-limit",
        "4kb",
        "--max-clients",
        "4",
    ])
    .await;
    c.wait_ready(&[("s1", 1)]).await;
    let addr = c.gates[0].resp.clone().unwrap();

    // A well-behaved client, connected throughout.
    let mut good = connect(&addr);
    assert_eq!(
        roundtrip(&mut good, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
        "+OK\r\n"
    );

    let big = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n{}\r\n", "x".repeat(1025));
    assert!(rejected(&addr, big.as_bytes()).starts_with("-ERR Protocol error: invalid bulk length"));
    // A declared length alone is refused before its bytes arrive (nothing is allocated for it).
    assert!(
        rejected(&addr, b"*2\r\n$3\r\nGET\r\n$999999999999\r\n")
            .starts_with("-ERR Protocol error: invalid bulk length")
    );
    assert!(rejected(&addr, b"*17\r\n").starts_with("-ERR Protocol error: invalid multibulk length"));
    assert!(rejected(&addr, b"*-5x\r\n").starts_with("-ERR Protocol error: invalid multibulk length"));
    let inline = format!("GET {}\r\n", "k".repeat(300));
    assert!(rejected(&addr, inline.as_bytes()).starts_with("-ERR Protocol error: too big inline request"));
    // Under every per-element limit, over the query buffer: 5 × 1000-byte elements, incomplete.
    let mut hoard = b"*16\r\n".to_vec();
    for _ in 0..5 {
        hoard.extend_from_slice(format!("$1000\r\n{}\r\n", "y".repeat(1000)).as_bytes());
    }
    assert!(rejected(&addr, &hoard).starts_with("-ERR Protocol error: query buffer exceeds"));
    assert!(rejected(&addr, b"*1\r\n:1\r\n").starts_with("-ERR Protocol error: expected '$'"));
    assert!(rejected(&addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").starts_with("-ERR Protocol error: HTTP"));
    assert!(rejected(&addr, b"SET \"unterminated\r\n").starts_with("-ERR Protocol error: unbalanced quotes"));

    // Connections beyond --max-clients are refused with an error; the others keep working.
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&addr)).collect();
    // Let the gate account for the held connections before the extra one arrives.
    let mut probe = connect(&addr);
    let reply = roundtrip(&mut probe, b"PING\r\n");
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    drop(held);

    // The good client never noticed.
    assert_eq!(roundtrip(&mut good, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), "$1\r\nv\r\n");
    // Inline commands work for humans.
    assert_eq!(roundtrip(&mut good, b"get k\r\n"), "$1\r\nv\r\n");
}

/// `--max-key-len` at the gate and at a server's client port, `--max-key-bytes` on HTTP: a
/// longer key is refused with an error (the command does not run, the connection stays);
/// values are not keys.
#[tokio::test]
async fn long_keys_are_refused_on_every_protocol() {
    use crate::harness::redis_cli;
    let mut c = TestCluster::start().await;
    c.start_server("s1", &["--max-key-len", "64"]).await;
    c.start_gate(&["--max-key-len", "64", "--max-key-bytes", "64"]).await;
    c.wait_ready(&[("s1", 1)]).await;
    let gate = c.gates[0].resp.clone().unwrap();
    let (ok_key, long_key) = ("k".repeat(64), "k".repeat(65));
    let value = "v".repeat(500);
    for addr in [&gate, &c.servers[0].addr] {
        let mut s = connect(addr);
        let set = |k: &str| {
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{value}\r\n",
                k.len(),
                value.len()
            )
        };
        assert_eq!(roundtrip(&mut s, set(&ok_key).as_bytes()), "+OK\r\n");
        assert_eq!(
            roundtrip(&mut s, set(&long_key).as_bytes()),
            "-ERR key too long: 65 bytes, more than max-key-len (64)\r\n"
        );
        // The connection goes on; a multi-key command with one long key does not run at all.
        assert_eq!(
            redis_cli(addr, &["MSET", "{t}a", "1", &format!("{{t}}{long_key}"), "2"]),
            "ERR key too long: 68 bytes, more than max-key-len (64)"
        );
        assert_eq!(redis_cli(addr, &["EXISTS", "{t}a"]), "0");
        assert_eq!(roundtrip(&mut s, b"*1\r\n$4\r\nPING\r\n"), "+PONG\r\n");
    }
    let status = |key: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}/api/cache/get?key={key}", c.gates[0].addr))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(status(&long_key), "413");
    assert_eq!(status(&"j".repeat(64)), "404", "a key at the limit is looked up");
}
