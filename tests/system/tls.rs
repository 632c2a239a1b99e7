//! TLS with certificates the test makes with openssl: redis-cli `--tls` and redis-py
//! `ssl=True` at the gate's RESP-over-TLS port and at kvservers' TLS client ports (cluster
//! mode follows redirections to TLS ports), curl at the gate's HTTPS port, client
//! certificates required, the cluster ports on TLS (`--tls-cluster`: the gate's traffic,
//! replication and key moves), and a certificate replaced on disk served without a restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{TestCluster, eventually, every_slot_served, redis_cli};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and `name`.crt/.key signed by it (v3, with `ext` as its extensions).
fn issue(dir: &Path, name: &str, subject: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let ext = format!("{name}.ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
}

fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kvstore test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    // Servers and gates present it as clients too, to each other's cluster ports.
    let server = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n";
    issue(dir, "server", "/CN=kvstore server", server);
    issue(dir, "client", "/CN=kvstore client", "extendedKeyUsage=clientAuth\n");
}

/// The serial number of the certificate served at `addr`.
fn served_serial(dir: &Path, addr: &str) -> Option<String> {
    let script = format!(
        "openssl s_client -connect {addr} -CAfile ca.crt -cert client.crt -key client.key </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    let out = Command::new("sh")
        .current_dir(dir)
        .args(["-c", &script])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| s.starts_with("serial="))
}

fn file_serial(dir: &Path, crt: &str) -> String {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-noout", "-serial", "-in", crt])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn tls_clients_at_gates_and_servers_with_client_certificates_and_reloads() {
    let mut c = TestCluster::start().await;
    let certs = c.dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let at = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let (crt, key, ca) = (at("server.crt"), at("server.key"), at("ca.crt"));
    let tls = [
        "--tls-port",
        "0",
        "--tls-cert-file",
        &crt,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-reload-interval-ms",
        "100",
        "--tls-cluster",
        "yes",
    ];
    // s1 with a follower (replication over TLS), data, then s2 (keys move over TLS).
    c.start_server("s1", &tls).await;
    c.start_server("s1", &tls).await;
    let mut gate_flags = tls.to_vec();
    gate_flags.extend(["--https-port", "0"]);
    let g = c.start_gate(&gate_flags).await;
    c.wait_ready(&[("s1", 2)]).await;
    let gate_tls = c.gates[g].tls.clone().expect("the gate announces its TLS port");
    let https = c.gates[g].https.clone().expect("the gate announces its HTTPS port");
    let mut cert_flags = vec!["--tls", "--cacert", &ca];
    let (client_crt, client_key) = (at("client.crt"), at("client.key"));
    cert_flags.extend(["--cert", &client_crt, "--key", &client_key]);
    let tls_cli = |addr: &str, args: &[&str]| {
        let mut all = cert_flags.clone();
        all.extend_from_slice(args);
        redis_cli(addr, &all)
    };

    // redis-cli --tls at the gate; the gate reaches the servers' cluster ports over TLS.
    assert_eq!(tls_cli(&gate_tls, &["SET", "via-gate", "1"]), "OK");
    let mut mset = vec!["MSET".to_string()];
    for i in 0..200 {
        mset.extend([format!("pre{i}"), format!("v{i}")]);
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(tls_cli(&gate_tls, &mset), "OK");
    c.start_server("s2", &tls).await;
    c.wait_ready(&[("s1", 2), ("s2", 1)]).await;
    for s in &c.servers {
        every_slot_served(&s.addr).await;
    }
    let server_tls: Vec<String> = c.servers.iter().map(|s| s.tls.clone().expect("a TLS port")).collect();
    // Every key, wherever it moved, and a follower that replicated over TLS.
    let mut mget = vec!["MGET".to_string()];
    mget.extend((0..200).map(|i| format!("pre{i}")));
    let mget: Vec<&str> = mget.iter().map(String::as_str).collect();
    let want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    assert_eq!(tls_cli(&gate_tls, &mget), want.join("\n"));
    let follower = eventually("the follower to hold the keys", Duration::from_secs(10), || async {
        let n = tls_cli(&server_tls[1], &["DBSIZE"]);
        Some(n).filter(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
    })
    .await;
    assert!(follower.parse::<u64>().unwrap() > 0);
    // The cluster ports speak TLS.
    for server in &c.servers {
        assert!(
            served_serial(&certs, server.cluster_addr()).is_some(),
            "no TLS on {}",
            server.cluster_addr()
        );
    }

    // Straight at the servers in cluster mode.
    for i in 0..40 {
        let k = format!("k{i}");
        assert_eq!(tls_cli(&server_tls[0], &["-c", "SET", &k, &i.to_string()]), "OK");
    }
    for i in 0..40 {
        assert_eq!(tls_cli(&server_tls[2], &["-c", "GET", &format!("k{i}")]), i.to_string());
    }
    assert_eq!(redis_cli(&c.gates[g].resp.clone().unwrap(), &["GET", "k7"]), "7");
    // A TLS client is sent to TLS ports, a plain client to plain ones, as Redis Cluster does.
    let over_tls = tls_cli(&server_tls[0], &["CLUSTER", "SLOTS"]);
    let plain = redis_cli(&c.servers[0].addr, &["CLUSTER", "SLOTS"]);
    for (s, t) in c.servers.iter().zip(&server_tls) {
        let port = |a: &str| a.rsplit_once(':').unwrap().1.to_string();
        assert!(over_tls.lines().any(|l| l == port(t)), "{t} not in:\n{over_tls}");
        assert!(
            !over_tls.lines().any(|l| l == port(&s.addr)),
            "a plain port over TLS:\n{over_tls}"
        );
        assert!(plain.lines().any(|l| l == port(&s.addr)), "{} not in:\n{plain}", s.addr);
    }

    // No client certificate, no service (--tls-auth-clients yes, Redis's default); a plain
    // client on a TLS port gets nothing either.
    for addr in [&gate_tls, &server_tls[0]] {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let out = Command::new("redis-cli")
            .args(["-h", host, "-p", port, "--tls", "--cacert", &ca, "PING"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("PONG"), "{out:?}");
        let out = Command::new("redis-cli")
            .args(["-h", host, "-p", port, "PING"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("PONG"), "{out:?}");
    }

    // curl over HTTPS, with and without a client certificate.
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert", &ca])
            .args(extra)
            .arg(format!("https://{https}/health"))
            .output()
            .unwrap()
    };
    let ok = curl(&["--cert", &client_crt, "--key", &client_key]);
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("\"status\":\"ok\""),
        "{ok:?}"
    );
    assert!(
        !curl(&[]).status.success(),
        "HTTPS served a client without a certificate"
    );

    // redis-py with ssl=True: a plain client at the gate, RedisCluster at a server.
    let script = r#"
import sys, redis
from redis.cluster import RedisCluster
gate, server, ca, crt, key = sys.argv[1:6]
tls = dict(ssl=True, ssl_ca_certs=ca, ssl_certfile=crt, ssl_keyfile=key)
h, p = gate.rsplit(":", 1)
r = redis.Redis(host=h, port=int(p), **tls)
r.set("py", "1")
h, p = server.rsplit(":", 1)
rc = RedisCluster(host=h, port=int(p), **tls)
for i in range(50):
    rc.set(f"pyc{i}", i)
print(r.get("py"), all(rc.get(f"pyc{i}") == str(i).encode() for i in range(50)))
"#;
    let out = Command::new(crate::harness::pyredis())
        .args(["-c", script, &gate_tls, &server_tls[0], &ca, &client_crt, &client_key])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "b'1' True");

    // A new certificate, written over the old files: served without a restart.
    let before = served_serial(&certs, &gate_tls).expect("the gate serves a certificate");
    issue(
        &certs,
        "server2",
        "/CN=kvstore server renewed",
        "subjectAltName=IP:127.0.0.1\n",
    );
    let want = file_serial(&certs, "server2.crt");
    assert_ne!(before, want);
    for (from, to) in [("server2.key", "server.key"), ("server2.crt", "server.crt")] {
        std::fs::rename(certs.join(from), certs.join(to)).unwrap();
    }
    for addr in [&gate_tls, &https, &server_tls[0]] {
        eventually(
            &format!("{addr} to serve the new certificate"),
            Duration::from_secs(10),
            || async { served_serial(&certs, addr).filter(|s| *s == want) },
        )
        .await;
    }
    assert_eq!(tls_cli(&gate_tls, &["GET", "via-gate"]), "1");
}
