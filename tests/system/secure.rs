//! `--secure`, as the README starts it: `scripts/cluster.sh up --secure` and the embedded
//! `kvstore --secure`. Every way in without credentials is refused: RESP on the gate and on
//! the servers (NOAUTH), HTTP (401), TLS without a client certificate, the cluster port
//! without the cluster secret, and ZooKeeper without the digest user; with them, everything
//! works.

use std::path::Path;
use std::process::Command;

use crate::harness::zk::zk_cli;
use crate::harness::{Proc, TempDir, redis_cli};

/// A base port whose `base + offset` ports are all free now (ports well below the ephemeral
/// range, so that `+ 10000` stays valid).
fn free_base(offsets: &[u16]) -> u16 {
    for _ in 0..200 {
        let base = 20000 + fastrand::u16(..9000);
        if offsets
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
        {
            return base;
        }
    }
    panic!("no free port range found");
}

fn bin_dir() -> String {
    Path::new(env!("CARGO_BIN_EXE_kvserver"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

fn curl_status(url: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A RESP `PING` that must not be answered `PONG`.
fn refused(addr: &str, extra: &[&str]) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(extra)
        .arg("PING")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("PONG"), "{addr} {extra:?} answered: {text}");
}

/// Stops the script's cluster however the test ends.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
            .arg("down")
            .env("KVSTORE_CLUSTER_DIR", self.0)
            .output();
    }
}

#[tokio::test]
async fn cluster_sh_secure_refuses_every_unauthenticated_way_in() {
    let dir = TempDir::new("secure-cluster");
    // base: server; +1000 its TLS port; +10000 its cluster port; then ZooKeeper, HTTP (+443
    // HTTPS) and RESP (+1 TLS).
    let base = free_base(&[0, 1000, 10000, 1, 2, 445, 3, 4]);
    let (zk, http, resp) = (base + 1, base + 2, base + 3);
    let _down = Down(dir.path());
    let up = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
        .args(["up", "--secure", "--shards", "1", "--replicas", "1"])
        .args(["--base-port", &base.to_string(), "--zk-port", &zk.to_string()])
        .args(["--http-port", &http.to_string(), "--resp-port", &resp.to_string()])
        .env("KVSTORE_CLUSTER_DIR", dir.path())
        .env("KVSTORE_BIN_DIR", bin_dir())
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "cluster.sh up --secure failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let s = dir.path().join("secure");
    let password = std::fs::read_to_string(s.join("password")).unwrap().trim().to_string();
    let file = |f: &str| s.join(f).to_str().unwrap().to_string();
    let (ca, crt, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
    let tls = ["--tls", "--cacert", &ca, "--cert", &crt, "--key", &key];
    let at = |p: u16| format!("127.0.0.1:{p}");

    // Without credentials: nothing.
    assert_eq!(redis_cli(&at(resp), &["GET", "k"]), "NOAUTH Authentication required.");
    assert_eq!(redis_cli(&at(base), &["GET", "k"]), "NOAUTH Authentication required.");
    refused(
        &at(resp + 1),
        &["--tls", "--cacert", &ca, "-a", &password, "--no-auth-warning"],
    );
    refused(
        &at(base + 1000),
        &["--tls", "--cacert", &ca, "-a", &password, "--no-auth-warning"],
    );
    refused(&at(base + 10000), &[]);
    assert_eq!(curl_status(&format!("http://{}/api/cluster", at(http)), &[]), "401");
    let https = format!("https://{}/api/cluster", at(http + 443));
    assert_eq!(
        curl_status(&https, &["--cacert", &ca, "--cert", &crt, "--key", &key]),
        "401"
    );
    let zk_out = zk_cli(
        &at(zk),
        &["ls /kvstore/default".into(), "get /kvstore/default/users".into()],
    );
    assert_eq!(zk_out.matches("Insufficient permission").count(), 2, "{zk_out}");
    let kvctl = env!("CARGO_BIN_EXE_kvctl");
    let denied = Command::new(kvctl)
        .args(["--host", &at(http), "cluster"])
        .output()
        .unwrap();
    assert!(!denied.status.success(), "kvctl without a password: {denied:?}");

    // With them: everything.
    let auth = ["-a", &password, "--no-auth-warning"];
    let with = |addr: String, args: &[&str]| {
        let mut all: Vec<&str> = tls.to_vec();
        all.extend(auth);
        all.extend_from_slice(args);
        redis_cli(&addr, &all)
    };
    assert_eq!(with(at(resp + 1), &["SET", "k", "v"]), "OK");
    assert_eq!(with(at(base + 1000), &["-c", "GET", "k"]), "v");
    let mut plain = auth.to_vec();
    plain.extend(["GET", "k"]);
    assert_eq!(redis_cli(&at(resp), &plain), "v");
    let basic = format!("default:{password}");
    assert_eq!(
        curl_status(&https, &["--cacert", &ca, "--cert", &crt, "--key", &key, "-u", &basic]),
        "200"
    );
    let ok = Command::new(kvctl)
        .args(["--host", &at(http), "get", "k"])
        .env("KVCTL_PASSWORD", &password)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "v", "{ok:?}");
}

#[tokio::test]
async fn the_embedded_cluster_secure_needs_a_password_and_serves_tls() {
    let dir = TempDir::new("secure-local");
    let base = free_base(&[0, 443, 1, 2]);
    let (http, resp) = (base, base + 1);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvstore"));
    cmd.args(["--secure", "--shards", "1", "--replicas", "1"])
        .args(["--http-port", &http.to_string(), "--resp-port", &resp.to_string()])
        .arg("--secure-dir")
        .arg(dir.path().join("s"));
    let p = Proc::spawn("kvstore --secure", cmd, dir.path().join("kvstore.log")).await;
    let s = dir.path().join("s");
    let password = std::fs::read_to_string(s.join("password")).unwrap().trim().to_string();
    let file = |f: &str| s.join(f).to_str().unwrap().to_string();
    let (ca, crt, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
    let gate_tls = p.tls.clone().expect("a secured local cluster announces its TLS port");
    let https = p.https.clone().expect("and its HTTPS port");

    assert_eq!(
        redis_cli(p.resp.as_deref().unwrap(), &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert_eq!(curl_status(&format!("http://{}/api/cluster", p.addr), &[]), "401");
    refused(
        &gate_tls,
        &["--tls", "--cacert", &ca, "-a", &password, "--no-auth-warning"],
    );
    let tls = [
        "--tls",
        "--cacert",
        &ca,
        "--cert",
        &crt,
        "--key",
        &key,
        "-a",
        &password,
        "--no-auth-warning",
    ];
    let mut set = tls.to_vec();
    set.extend(["SET", "k", "v"]);
    assert_eq!(redis_cli(&gate_tls, &set), "OK");
    let basic = format!("default:{password}");
    let url = format!("https://{https}/api/cache/get?key=k");
    assert_eq!(
        curl_status(&url, &["--cacert", &ca, "--cert", &crt, "--key", &key, "-u", &basic]),
        "200"
    );
}
