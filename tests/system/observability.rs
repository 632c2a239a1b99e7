//! What operators read: the gate's and the servers' `/metrics` (parsed with Prometheus's own
//! parser, values checked against the traffic the test sent), `SLOWLOG` and `LATENCY` for
//! commands the test made slow, and `/ready` while a shard's leader is unreachable and after
//! a new one took over.

use std::time::Duration;

use crate::harness::metrics::{Scrape, scrape};
use crate::harness::{TestCluster, eventually, leader_addr, redis_cli};

/// One shard of two replicas whose servers serve metrics, and a gate; returns the cluster,
/// the gate's RESP address and the shard's leader (client address).
async fn cluster() -> (TestCluster, String, String) {
    let mut c = TestCluster::start().await;
    c.start_server("s1", &["--metrics-port", "0"]).await;
    c.start_server("s1", &["--metrics-port", "0"]).await;
    c.start_gate(&[]).await;
    let info = c.wait_ready(&[("s1", 2)]).await;
    let resp = c.gates[0].resp.clone().expect("the gate's RESP address");
    (c, resp, leader_addr(&info, "s1"))
}

fn metrics_url(c: &mut TestCluster, server: &str) -> String {
    let addr = c
        .server_at(server)
        .metrics
        .clone()
        .expect("the server announces its metrics port");
    format!("http://{addr}/metrics")
}

/// A `curl` of `url`: (status, body).
fn get(url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

/// Checks a histogram's buckets rise to its count.
fn histogram_holds(s: &Scrape, family: &str, command: &str, count: f64) {
    let mut buckets: Vec<(f64, f64)> = s
        .all(&format!("{family}_bucket"))
        .into_iter()
        .filter(|b| b.labels.get("command").map(String::as_str) == Some(command))
        .map(|b| {
            let le = b.labels["le"].as_str();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, b.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 10, "{command}: {buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{command}: not cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count), "{command}");
    let labels = [("command", command)];
    assert_eq!(s.get(&format!("{family}_count"), &labels), Some(count), "{command}");
    assert!(s.get(&format!("{family}_sum"), &labels).unwrap() > 0.0, "{command}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_sent() {
    let (mut c, resp, leader) = cluster().await;
    let gate_url = format!("http://{}/metrics", c.gates[0].addr);
    // What this test sends; nothing else talks RESP to this gate.
    for i in 0..25 {
        redis_cli(&resp, &["SET", &format!("key:{i}"), "v"]);
    }
    for i in 0..10 {
        redis_cli(&resp, &["GET", &format!("key:{i}")]);
    }
    for _ in 0..3 {
        redis_cli(&resp, &["NOSUCHCOMMAND"]);
    }
    redis_cli(&resp, &["LPUSH", "key:0", "x"]); // WRONGTYPE
    // And over HTTP: 3 puts, a get that finds its key and one that does not.
    let http = c.client(0);
    for i in 0..3 {
        http.put(&format!("http:{i}"), b"v", None).await.unwrap();
    }
    assert!(http.get("http:0").await.unwrap().is_some());
    assert!(http.get("http:none").await.unwrap().is_none());

    let g = scrape(&gate_url, None);
    assert_eq!(g.kind("kvstore_commands"), Some("counter"));
    assert_eq!(g.kind("kvstore_command_duration_seconds"), Some("histogram"));
    assert_eq!(g.get("kvstore_commands_total", &[("command", "set")]), Some(25.0));
    assert_eq!(g.get("kvstore_commands_total", &[("command", "get")]), Some(10.0));
    histogram_holds(&g, "kvstore_command_duration_seconds", "set", 25.0);
    histogram_holds(&g, "kvstore_command_duration_seconds", "get", 10.0);
    assert_eq!(g.get("kvstore_errors_total", &[("kind", "ERR")]), Some(3.0));
    assert_eq!(g.get("kvstore_errors_total", &[("kind", "WRONGTYPE")]), Some(1.0));
    assert_eq!(
        g.get("kvstore_commands_failed_total", &[("command", "lpush")]),
        Some(1.0)
    );
    assert_eq!(g.get("kvstore_gate_shards", &[]), Some(1.0));
    assert_eq!(g.get("kvstore_gate_shards_with_leader", &[]), Some(1.0));
    assert_eq!(g.get("kvstore_zookeeper_connected", &[]), Some(1.0));
    assert_eq!(g.get("kvstore_connections_received_total", &[]), Some(39.0));
    let put = [("endpoint", "/api/cache/put"), ("code", "2xx")];
    assert_eq!(g.get("kvstore_http_requests_total", &put), Some(3.0));
    let get = |code| [("endpoint", "/api/cache/get"), ("code", code)];
    assert_eq!(g.get("kvstore_http_requests_total", &get("2xx")), Some(1.0));
    assert_eq!(g.get("kvstore_http_requests_total", &get("4xx")), Some(1.0));
    let puts = [("endpoint", "/api/cache/put")];
    assert_eq!(g.get("kvstore_http_request_duration_seconds_count", &puts), Some(3.0));
    assert_eq!(
        g.get(
            "kvstore_http_request_duration_seconds_bucket",
            &[puts[0], ("le", "+Inf")]
        ),
        Some(3.0)
    );
    // The scrape itself is an open HTTP connection.
    assert!(g.get("kvstore_connections", &[("protocol", "http")]).unwrap() >= 1.0);

    // The leader ran every write; the follower applied them from the log.
    let url = metrics_url(&mut c, &leader);
    let s = eventually(
        "the leader's in-sync follower caught up",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move {
                let s = scrape(&url, None);
                let caught_up = s.all("kvstore_replication_lag").iter().any(|l| l.value == 0.0);
                caught_up.then_some(s)
            }
        },
    )
    .await;
    // (The HTTP puts and gets arrive as SETs and GETs.)
    assert_eq!(s.get("kvstore_commands_total", &[("command", "set")]), Some(28.0));
    assert_eq!(s.get("kvstore_commands_total", &[("command", "get")]), Some(12.0));
    histogram_holds(&s, "kvstore_command_duration_seconds", "set", 28.0);
    assert_eq!(s.get("kvstore_errors_total", &[("kind", "WRONGTYPE")]), Some(1.0));
    assert_eq!(s.get("kvstore_keys", &[]), Some(28.0));
    assert_eq!(s.get("kvstore_role", &[("role", "leader")]), Some(1.0));
    assert_eq!(s.get("kvstore_in_sync_replicas", &[]), Some(1.0));
    assert_eq!(s.get("kvstore_elections_total", &[]), Some(1.0));
    assert!(s.get("kvstore_replication_offset", &[]).unwrap() >= 25.0);
    assert!(s.get("kvstore_memory_used_bytes", &[]).unwrap() > 0.0);
    assert!(s.get("kvstore_connections", &[("protocol", "cluster")]).unwrap() >= 1.0);
    assert_eq!(s.get("kvstore_zookeeper_connected", &[]), Some(1.0));
    let follower = c
        .servers
        .iter()
        .find(|p| p.addr != leader)
        .and_then(|p| p.metrics.clone())
        .unwrap();
    let f = scrape(&format!("http://{follower}/metrics"), None);
    assert_eq!(f.get("kvstore_role", &[("role", "follower")]), Some(1.0));
    assert_eq!(f.get("kvstore_keys", &[]), Some(28.0));
    assert_eq!(f.get("kvstore_commands_total", &[("command", "set")]), None);

    // Every series the Grafana dashboard in docs/ queries is one these pages serve.
    let served: std::collections::BTreeSet<&str> = [&g, &s, &f]
        .iter()
        .flat_map(|p| p.0.iter().map(|x| x.name.as_str()))
        .collect();
    let grafana = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&grafana).expect("the Grafana JSON parses");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let mut queried = std::collections::BTreeSet::new();
    for (i, _) in grafana.match_indices("kvstore_") {
        let name: String = grafana[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        queried.insert(name);
    }
    queried.remove("kvstore_"); // the dashboard's own uid and tag
    let missing: Vec<&String> = queried.iter().filter(|n| !served.contains(n.as_str())).collect();
    assert!(
        missing.is_empty(),
        "the Grafana dashboard queries series no page serves: {missing:?}"
    );

    // Expiry is counted where it happens: on the leader.
    redis_cli(&resp, &["SET", "short", "v", "PX", "50"]);
    eventually("the leader counted an expired key", Duration::from_secs(10), || {
        let url = url.clone();
        async move { (scrape(&url, None).get("kvstore_expired_keys_total", &[]) == Some(1.0)).then_some(()) }
    })
    .await;
}

/// A script that spins for a while (`n` iterations).
fn spin(n: u64) -> String {
    format!("local i = 0 while i < {n} do i = i + 1 end return i")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_commands_reach_the_slow_log_and_the_latency_monitor() {
    let (_c, resp, leader) = cluster().await;
    for at in [&resp, &leader] {
        assert_eq!(redis_cli(at, &["SLOWLOG", "RESET"]), "OK");
        assert_eq!(
            redis_cli(at, &["CONFIG", "SET", "slowlog-log-slower-than", "2000"]),
            "OK"
        );
        assert_eq!(
            redis_cli(at, &["CONFIG", "SET", "latency-monitor-threshold", "2"]),
            "OK"
        );
        assert_eq!(
            redis_cli(at, &["CONFIG", "GET", "slowlog-log-slower-than"]),
            "slowlog-log-slower-than\n2000"
        );
    }
    // Slower than 2 ms on any machine, in any build: millions of Lua steps.
    let script = spin(3_000_000);
    assert_eq!(redis_cli(&resp, &["EVAL", &script, "0"]), "3000000");

    // The gate logs it end to end, the leader as it ran it; both as it was sent.
    for at in [&resp, &leader] {
        let entries = redis_cli(at, &["SLOWLOG", "GET", "-1"]);
        let lines: Vec<&str> = entries.lines().collect();
        let eval = lines
            .iter()
            .position(|l| *l == "EVAL")
            .unwrap_or_else(|| panic!("{at}: no EVAL in the slow log: {entries}"));
        // id, time, µs, then the arguments.
        let micros: u64 = lines[eval - 1].parse().unwrap();
        assert!(micros >= 2000, "{at}: {entries}");
        assert_eq!(lines[eval + 1], script, "{at}");
        assert!(redis_cli(at, &["SLOWLOG", "LEN"]).parse::<u64>().unwrap() >= 1);
        let latest = redis_cli(at, &["LATENCY", "LATEST"]);
        assert!(latest.lines().next() == Some("command"), "{at}: {latest}");
        let history = redis_cli(at, &["LATENCY", "HISTORY", "command"]);
        assert!(history.lines().count() >= 2, "{at}: {history}");
        assert!(
            redis_cli(at, &["INFO", "latencystats"]).contains("latency_percentiles_usec_eval:p50="),
            "{at}"
        );
        assert_eq!(
            redis_cli(at, &["SLOWLOG", "GET", "-2"]),
            "ERR count should be greater than or equal to -1"
        );
        assert_eq!(redis_cli(at, &["SLOWLOG", "RESET"]), "OK");
        assert_eq!(redis_cli(at, &["SLOWLOG", "LEN"]), "0");
        assert_eq!(redis_cli(at, &["LATENCY", "RESET"]), "1");
    }
    // Off: nothing is logged, however slow.
    for at in [&resp, &leader] {
        redis_cli(at, &["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    }
    redis_cli(&resp, &["EVAL", &script, "0"]);
    for at in [&resp, &leader] {
        assert_eq!(redis_cli(at, &["SLOWLOG", "LEN"]), "0", "{at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_shards_leaders() {
    let (mut c, _resp, leader) = cluster().await;
    let gate_ready = format!("http://{}/ready", c.gates[0].addr);
    let (status, body) = get(&gate_ready);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""s1":"ok""#), "{body}");
    let leader_metrics = c.server_at(&leader).metrics.clone().unwrap();
    assert_eq!(get(&format!("http://{leader_metrics}/ready")).0, 200);
    assert_eq!(get(&format!("http://{leader_metrics}/health")).0, 200);

    // The leader stops answering: not ready until the follower takes over.
    c.server_at(&leader).signal(libc::SIGSTOP);
    let body = eventually("the gate not ready", Duration::from_secs(20), || {
        let url = gate_ready.clone();
        async move {
            let (status, body) = get(&url);
            (status == 503).then_some(body)
        }
    })
    .await;
    assert!(body.contains(r#""ready":false"#), "{body}");
    let body = eventually("the gate ready again", Duration::from_secs(30), || {
        let url = gate_ready.clone();
        async move {
            let (status, body) = get(&url);
            (status == 200).then_some(body)
        }
    })
    .await;
    assert!(body.contains(r#""s1":"ok""#), "{body}");
    let info = c.client(0).cluster().await.unwrap();
    let new_leader = leader_addr(&info, "s1");
    assert_ne!(new_leader, leader);
    let new_metrics = c.server_at(&new_leader).metrics.clone().unwrap();
    assert_eq!(get(&format!("http://{new_metrics}/ready")).0, 200);
    c.server_at(&leader).signal(libc::SIGCONT);
    // The old leader comes back as a follower (or stays out of the way): never a second
    // ready leader.
    let s = scrape(&format!("http://{new_metrics}/metrics"), None);
    assert_eq!(s.get("kvstore_role", &[("role", "leader")]), Some(1.0));
    assert_eq!(s.get("kvstore_elections_total", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_a_command_from_the_gate_to_the_server() {
    let mut c = TestCluster::start().await;
    c.env.push(("RUST_LOG".into(), "info,kvstore::request=debug".into()));
    c.start_server("s1", &[]).await;
    c.start_gate(&[]).await;
    c.wait_ready(&[("s1", 1)]).await;
    let resp = c.gates[0].resp.clone().unwrap();
    assert_eq!(redis_cli(&resp, &["SET", "traced-key", "v"]), "OK");
    // The gate logged the id it forwarded the SET under; the server logs the SET under it.
    let gate_logs = c.gates[0].logs();
    let id = gate_logs
        .lines()
        .filter(|l| l.contains("forwarding") && l.contains("command=SET"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("request=")))
        .unwrap_or_else(|| panic!("no forwarded SET in the gate's log:\n{gate_logs}"))
        .to_string();
    let served = eventually("the server to log the request", Duration::from_secs(10), || {
        let logs = c.servers[0].logs();
        let line = logs
            .lines()
            .find(|l| l.contains("served") && l.contains(&format!("request={id} ")))
            .map(String::from);
        async move { line }
    })
    .await;
    assert!(served.contains("command=SET"), "{served}");
    assert!(served.contains("micros="), "{served}");
}

/// The metrics port's limits are the flags given: a request whose headers stall is cut off
/// after `--metrics-header-timeout-ms`, and past `--metrics-max-connections` the quietest
/// connection makes room for a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_ports_limits_are_its_flags() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = TestCluster::start().await;
    c.start_server("s1", &["--metrics-port", "0", "--metrics-header-timeout-ms", "300"])
        .await;
    // (hyper's header timeout also closes a connection idle between requests: long here.)
    let one = [
        "--metrics-port",
        "0",
        "--metrics-max-connections",
        "1",
        "--metrics-header-timeout-ms",
        "20000",
    ];
    c.start_server("s1", &one).await;
    let addr = c.servers[0].metrics.clone().expect("the metrics address");
    // True when the server closes `s` within 10 s (whatever it sends before).
    let closed = |mut s: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 1024];
        let read_to_end = async {
            while let Ok(n) = s.read(&mut buf).await
                && n > 0
            {}
        };
        tokio::time::timeout(Duration::from_secs(10), read_to_end).await.is_ok()
    };

    // Half a request line, then nothing: closed once the header timeout passes.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(b"GET /metr").await.unwrap();
    let started = std::time::Instant::now();
    assert!(closed(stalled).await, "a stalled request is cut off");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "cut off after {waited:?}, before the timeout"
    );
    assert!(
        waited < Duration::from_secs(5),
        "cut off after {waited:?}: not the 300 ms flag"
    );

    // One connection allowed: a second one is served, and the first, idle after a request
    // (its idle timeout is a minute), is closed to make room for it.
    let addr = c.servers[1].metrics.clone().expect("the metrics address");
    let mut quiet = tokio::net::TcpStream::connect(&addr).await.unwrap();
    quiet
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    quiet.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Full, but nobody is waiting: the idle connection stays open past the second after
    // which it could be evicted.
    let mut rest = [0u8; 1024];
    let mut got = 0;
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(2500), quiet.read(&mut rest)).await {
        assert!(n > 0, "closed with nobody waiting for its slot");
        got += n;
    }
    assert!(got > 0, "the rest of the response");
    let url = format!("http://{addr}/health");
    let (status, _) = tokio::task::spawn_blocking(move || get(&url)).await.unwrap();
    assert_eq!(status, 200);
    assert!(closed(quiet).await, "the quietest connection made room");
}
