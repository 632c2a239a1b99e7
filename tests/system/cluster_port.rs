//! The cluster's own traffic on its own authenticated port: a plain client reaches no
//! internal command, a peer without the secret reaches nothing, a server serves only the
//! keys its shard owns, and no number of clients can block the cluster's traffic.

use std::sync::Arc;
use std::time::Duration;

use kv_client::{ConnOptions, Connection};
use kv_cluster::Ring;
use kv_cluster::ring::DEFAULT_VNODES;
use kv_peer::{ClusterSecret, PeerAuth, PeerCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestCluster, eventually};

/// Sends `cmd` (RESP) on a fresh connection to `addr`; the raw reply, `None` when the
/// connection closed without one.
async fn raw(addr: &str, cmd: &[u8]) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(cmd).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn resp(args: &[&str]) -> Vec<u8> {
    kv_proto::write::command(args.iter().map(|a| a.as_bytes())).to_vec()
}

#[tokio::test]
async fn a_plain_client_reaches_no_internal_command() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 2)]).await;
    c.client(0).put("secret-key", b"secret-value", None).await.unwrap();
    let leader = info.shards[0].leader.clone().unwrap();
    let follower_id = info.shards[0].replicas[1].id.clone();
    let internal: [&[&str]; 8] = [
        &["KV.SYNC", &follower_id, "-", "-", "0"],
        &["KV.SYNC", "x", "-", "-", "0"],
        &["KV.INFO"],
        &["KV.MIGRATE", "1", "k", "v", "0"],
        &["KV.DROP", "secret-key"],
        &["KV.FETCH", "secret-key"],
        &["KV.ACK", "999999999999", "1"],
        &["KV.OP", "1", "1", "DEL", "secret-key"],
    ];
    for cmd in internal {
        let reply = raw(&leader, &resp(cmd)).await.expect("a reply");
        assert!(
            reply.starts_with("-ERR unknown command"),
            "{cmd:?} on the client port answered {reply:?}"
        );
        assert!(!reply.contains("secret-value"), "{cmd:?} leaked data: {reply:?}");
    }
    assert_eq!(
        c.client(0).get("secret-key").await.unwrap().as_deref(),
        Some(&b"secret-value"[..]),
        "nothing changed"
    );
    c.converged("s1", 2).await;
}

#[tokio::test]
async fn the_cluster_port_admits_only_holders_of_the_secret() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 1)]).await;
    let leader = info.shards[0].leader.clone().unwrap();
    let cluster_addr = c.servers[0].cluster_addr().to_string();
    assert_eq!(info.shards[0].replicas[0].cluster_addr, cluster_addr);

    // Anything but the handshake first: refused, and the connection closes.
    let reply = raw(&cluster_addr, &resp(&["KV.INFO"])).await.unwrap_or_default();
    assert!(reply.starts_with("-NOAUTH"), "{reply:?}");
    let reply = raw(&cluster_addr, &resp(&["GET", "k"])).await.unwrap_or_default();
    assert!(reply.starts_with("-NOAUTH"), "{reply:?}");

    // Another secret: the handshake fails on both sides.
    let wrong = ConnOptions {
        peer: Some(PeerAuth {
            secret: Arc::new(ClusterSecret::generate()),
            name: Arc::from("intruder"),
        }),
        ..ConnOptions::default()
    };
    let refused = Connection::connect(&cluster_addr, &wrong).await;
    assert!(refused.is_err(), "a peer with another secret was admitted");
    let failures = c
        .counter_reaches(&leader, "peer auth failures", |k| k.peer_auth_failures, 3)
        .await;
    eprintln!("{failures} failed handshakes counted");

    // The secret: admitted.
    let conn = Connection::connect(&cluster_addr, &c.peer_options()).await.unwrap();
    let reply = conn.call(PeerCommand::Info.encode()).await.unwrap();
    assert!(kv_peer::ServerInfo::from_frame(&reply).is_ok(), "{reply:?}");
}

#[tokio::test]
async fn a_server_serves_only_the_keys_its_shard_owns() {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &[]).await;
    c.start_server("s2", &[]).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 1), ("s2", 1)]).await;
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| ring.shard_for(k.as_bytes()) == Some("s2"))
        .unwrap();
    let leader_of = |name: &str| {
        let shard = info.shards.iter().find(|s| s.name == name).unwrap();
        let leader = shard.leader.clone().unwrap();
        let cluster_addr = shard
            .replicas
            .iter()
            .find(|r| r.addr == leader)
            .unwrap()
            .cluster_addr
            .clone();
        (leader, cluster_addr)
    };
    let ((s1, s1_cluster), (s2, _)) = (leader_of("s1"), leader_of("s2"));
    let gate = c.client(0);
    gate.put(&key, b"real", None).await.unwrap();

    // Planting a value on the wrong shard is refused, and so is reading there: a cluster
    // client (client port) is redirected to the slot's owner, as by Redis Cluster.
    let slot = kv_proto::slot::key_slot(key.as_bytes());
    // s1 learns s2's leader from ZooKeeper on its own schedule (the cluster can be ready for
    // the gate before it is): wait for its redirection to name it.
    let moved = format!("-MOVED {slot} {s2}\r\n");
    eventually("s1 redirects to s2's leader", Duration::from_secs(10), || async {
        (raw(&s1, &resp(&["GET", &key])).await? == moved).then_some(())
    })
    .await;
    for cmd in [
        resp(&["SET", &key, "planted"]),
        resp(&["GET", &key]),
        resp(&["DEL", &key]),
    ] {
        let reply = raw(&s1, &cmd).await.unwrap();
        assert_eq!(reply, moved, "{}", String::from_utf8_lossy(&cmd));
    }
    let cross = raw(&s1, &resp(&["MSET", "x-ok", "1", &key, "planted"])).await.unwrap();
    assert_eq!(cross, "-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    // A peer (a gate, on the cluster port) may send several slots at once; a command with one
    // key of another shard is refused whole, with kvstore's own code.
    let peer = Connection::connect(&s1_cluster, &c.peer_options()).await.unwrap();
    for args in [vec!["SET", &key, "planted"], vec!["MSET", "x-ok", "1", &key, "planted"]] {
        let request = kv_proto::write::command(args.iter().map(|a| a.as_bytes()));
        let reply = peer.call(request).await.unwrap();
        assert_eq!(reply, kv_proto::Frame::error("MOVED s2"), "{args:?}");
    }
    assert!(c.counters(&s1).await.not_owned >= 4);
    assert_eq!(gate.get(&key).await.unwrap().as_deref(), Some(&b"real"[..]));
    assert!(
        gate.get("x-ok").await.unwrap().is_none(),
        "a refused MSET applied nothing"
    );
}

#[tokio::test]
async fn no_number_of_clients_blocks_the_cluster_traffic() {
    let mut c = TestCluster::start().await;
    let flags = ["--max-clients", "8"];
    c.start_server("s1", &flags).await;
    c.start_server("s1", &flags).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 2)]).await;
    let leader = info.shards[0].leader.clone().unwrap();
    let follower = info.shards[0].replicas[1].addr.clone();
    // Every client slot of the leader taken and held.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(&leader).await.unwrap();
        s.write_all(b"PING\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"+PONG\r\n");
        held.push(s);
    }
    let refused = raw(&leader, b"PING\r\n").await.unwrap_or_default();
    assert!(refused.contains("max number of clients"), "{refused:?}");

    // A new gate can write, and a restarted follower copies everything.
    c.start_gate(&[]).await;
    let gate = c.client(1);
    for i in 0..200 {
        gate.put(&format!("k{i}"), b"v", None).await.unwrap();
    }
    c.server_at(&follower).kill();
    let restarted = c.start_server("s1", &flags).await;
    let addr = c.servers[restarted].addr.clone();
    let info = c.converged("s1", 2).await;
    assert!(info.shards[0].replicas.iter().any(|r| r.addr == addr));
    assert!(info.shards[0].replicas.iter().all(|r| r.keys == Some(200)));
    eventually("the held clients still connected", Duration::from_secs(1), || async {
        Some(held.len()).filter(|n| *n == 8)
    })
    .await;
}
