//! The live views as a person sees them: the gate's dashboard opened in headless Chromium
//! (Debian's `chromium`, installed by `scripts/ensure-deps.sh chromium`), whose DOM shows the
//! shards and leaders the cluster has, and the new leader after a failover (a screenshot is
//! kept in `target/ci-artifacts/dashboard.png`); and `kvctl top` in a tmux terminal.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{TempDir, TestCluster, eventually, leader_addr};

/// Chromium's DOM of `url` after the page had `budget_ms` of (virtual) time to poll;
/// `screenshot`: also saves a PNG there.
fn chromium(url: &str, budget_ms: u64, screenshot: Option<&Path>) -> String {
    let profile = TempDir::new("chromium");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg("--window-size=1400,1100");
    match screenshot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .output()
        .expect("run chromium (scripts/ensure-deps.sh chromium installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-leader` of shard `shard`'s panel in `dom`.
fn shown_leader<'a>(dom: &'a str, shard: &str) -> Option<&'a str> {
    let at = dom.find(&format!(r#"data-shard="{shard}""#))?;
    let rest = &dom[at..];
    let start = rest.find(r#"data-leader=""#)? + r#"data-leader=""#.len();
    rest[start..].split('"').next()
}

/// Ends the tmux session it names when dropped (the test failed before Ctrl-C stopped it).
struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).output();
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_cluster_and_follows_a_failover() {
    let (mut c, resp) = TestCluster::two_by_two().await;
    let url = format!("http://{}/dashboard", c.gates[0].addr);
    // Some traffic, for the plots.
    let load = Command::new("redis-benchmark")
        .args([
            "-h",
            resp.rsplit_once(':').unwrap().0,
            "-p",
            resp.rsplit_once(':').unwrap().1,
        ])
        .args(["-t", "set,get", "-n", "20000", "-c", "8", "-r", "1000", "-q"])
        .output()
        .expect("run redis-benchmark");
    assert!(load.status.success());
    let info = c.client(0).cluster().await.unwrap();

    let dom = chromium(&url, 5000, None);
    for shard in ["s1", "s2"] {
        let leader = leader_addr(&info, shard);
        assert_eq!(shown_leader(&dom, shard), Some(leader.as_str()), "{shard} in:\n{dom}");
        for r in &info.shards.iter().find(|s| s.name == shard).unwrap().replicas {
            assert!(
                dom.contains(&format!(r#"data-addr="{}" data-role="{}""#, r.addr, r.role)),
                "{}",
                r.addr
            );
        }
    }
    assert!(dom.contains("data-updates="), "the page never updated:\n{dom}");

    // The leader of s1 dies: the page shows its successor.
    let old = leader_addr(&info, "s1");
    c.server_at(&old).kill();
    let client = c.client(0);
    let new = eventually("s1 to elect a new leader", Duration::from_secs(30), || async {
        let info = client.cluster().await.ok()?;
        let s = info.shards.iter().find(|s| s.name == "s1")?;
        s.leader.clone().filter(|l| *l != old)
    })
    .await;
    let dom = chromium(&url, 3000, None);
    assert_eq!(
        shown_leader(&dom, "s1"),
        Some(new.as_str()),
        "after the failover:\n{dom}"
    );

    // kvctl top in a terminal: the same cluster, refreshed until Ctrl-C.
    let session = format!("kvtop-{}-{}", std::process::id(), fastrand::u32(..));
    let top = format!(
        "{} --host {} top --interval-ms 300",
        env!("CARGO_BIN_EXE_kvctl"),
        c.gates[0].addr
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("run tmux");
    assert!(
        tmux(&["new-session", "-d", "-s", &session, "-x", "160", "-y", "40", &top])
            .status
            .success()
    );
    let _session = TmuxSession(session.clone());
    let pane = eventually("kvctl top to show the new leader", Duration::from_secs(20), || {
        let out = tmux(&["capture-pane", "-p", "-t", &session]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ok = text.contains("kvstore top | ring v")
            && text.lines().any(|l| l.contains(new.as_str()) && l.contains("leader"))
            && text.contains("OPS/S");
        async move { ok.then_some(text) }
    })
    .await;
    assert!(pane.contains("s2"), "{pane}");
    tmux(&["send-keys", "-t", &session, "C-c"]);
    eventually("kvctl top to stop on Ctrl-C", Duration::from_secs(10), || {
        let gone = !tmux(&["has-session", "-t", &session]).status.success();
        async move { gone.then_some(()) }
    })
    .await;

    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&url, 5000, Some(&shot));
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}
