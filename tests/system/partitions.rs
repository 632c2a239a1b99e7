//! Network partitions (hosts in network namespaces, see `harness::netns`), under clients
//! that read and write shared keys through gates while every operation's invocation and
//! completion is recorded. After each scenario: acknowledged writes lost (keys written
//! once), stale reads, and a linearizability check of every key's history (reads through
//! gates with `--read-policy leader`; reads through an `any` gate are checked for staleness).
//!
//! Needs root for `ip netns` (CI runs as root). `KVSTORE_SKIP_NETNS=1` skips these tests
//! explicitly; otherwise a machine without the privilege fails them.

use std::time::Duration;

use crate::harness::cluster::SESSION_TIMEOUT_MS;
use crate::harness::history::{Kind, Op, check_register, stale_reads};
use crate::harness::netns::{HostId, Net};
use crate::harness::workload::{Recorded, Settings, Workload};
use crate::harness::zk::{Member, ZooKeeper};
use crate::harness::{TestCluster, eventually};

/// The gates retry this long before answering `CLUSTERDOWN`.
const GATE: [&str; 4] = ["--retry-timeout-ms", "3000", "--zk-session-timeout-ms", "2000"];

/// A cluster whose processes each run in a host of their own.
struct Lab {
    /// Dropped first: kills the processes before their namespaces go.
    c: TestCluster,
    net: Net,
    zk: Vec<HostId>,
    /// The host of each server, by index in `c.servers`.
    server_hosts: Vec<HostId>,
    gate_hosts: Vec<HostId>,
}

fn skip() -> bool {
    if std::env::var_os("KVSTORE_SKIP_NETNS").is_some() {
        eprintln!("partition tests skipped: KVSTORE_SKIP_NETNS is set");
        return true;
    }
    if let Some(why) = Net::unavailable() {
        panic!("partition tests need network namespaces: {why} (set KVSTORE_SKIP_NETNS=1 to skip them)");
    }
    false
}

impl Lab {
    /// ZooKeeper (`zk_members` servers: 1 standalone, 3 an ensemble), `replicas` servers of
    /// shard `s1` (lag timeout 1 s), and a gate per entry of `gates` (its extra flags).
    async fn start(zk_members: usize, replicas: usize, gates: &[&[&str]]) -> Lab {
        Lab::start_with(zk_members, replicas, gates, 1000).await
    }

    /// [`Lab::start`] with the servers' `--replica-lag-timeout-ms`.
    async fn start_with(zk_members: usize, replicas: usize, gates: &[&[&str]], lag_ms: u64) -> Lab {
        let mut net = Net::new();
        let zk_hosts: Vec<HostId> = (0..zk_members).map(|_| net.host()).collect();
        let members: Vec<Member> = zk_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Member {
                id: i as u32 + 1,
                host: net.ip(*h).to_string(),
                client_port: 2181,
                peer_port: 2888,
                election_port: 3888,
            })
            .collect();
        let ensemble: &[Member] = if zk_members > 1 { &members } else { &[] };
        let mut zks: Vec<ZooKeeper> = members
            .iter()
            .zip(&zk_hosts)
            .map(|(m, h)| ZooKeeper::launch_member(m, ensemble, net.prefix(*h)))
            .collect();
        for zk in &mut zks {
            assert!(
                zk.wait_serving(Duration::from_secs(90)).await,
                "ZooKeeper did not serve:\n{}",
                zk.log()
            );
        }
        let first = zks.remove(0);
        let mut c = TestCluster::with_zk(first, zks);
        let mut server_hosts = Vec::new();
        for _ in 0..replicas {
            let h = net.host();
            let lag = lag_ms.to_string();
            c.start_server_at(&net.place(h), "s1", &["--replica-lag-timeout-ms", &lag])
                .await;
            server_hosts.push(h);
        }
        let mut gate_hosts = Vec::new();
        for extra in gates {
            let h = net.host();
            let flags: Vec<&str> = GATE.iter().chain(extra.iter()).copied().collect();
            c.start_gate_at(&net.place(h), &flags).await;
            gate_hosts.push(h);
        }
        c.wait_ready(&[("s1", replicas)]).await;
        Lab {
            c,
            net,
            zk: zk_hosts,
            server_hosts,
            gate_hosts,
        }
    }

    /// The host of the server at client address `addr`.
    fn host_of(&self, addr: &str) -> HostId {
        let i = self
            .c
            .servers
            .iter()
            .position(|p| p.addr == addr)
            .expect("a server there");
        self.server_hosts[i]
    }

    /// The leader's host and the followers' hosts.
    async fn roles(&self) -> (String, HostId, Vec<HostId>) {
        let info = self.c.client(0).cluster().await.unwrap();
        let leader = info.shards[0].leader.clone().expect("a leader");
        let followers = info.shards[0]
            .replicas
            .iter()
            .filter(|r| r.addr != leader)
            .map(|r| self.host_of(&r.addr))
            .collect();
        (leader.clone(), self.host_of(&leader), followers)
    }

    fn resp(&self, gates: &[usize]) -> Vec<String> {
        gates
            .iter()
            .map(|&g| self.c.gates[g].resp.clone().expect("a RESP address"))
            .collect()
    }

    /// The reads the server on host `h` refused because it could not vouch for its data.
    async fn reads_fenced(&self, h: HostId) -> u64 {
        let i = self.server_hosts.iter().position(|x| *x == h).expect("a server host");
        self.c.counters(&self.c.servers[i].addr).await.reads_fenced
    }

    /// Polls the server on host `h` with `GET` on its cluster port until it answers
    /// `-MASTERDOWN`; returns how long that took.
    async fn follower_refuses_reads(&self, h: HostId) -> Duration {
        let i = self.server_hosts.iter().position(|x| *x == h).expect("a server host");
        let addr = self.c.servers[i].cluster_addr().to_string();
        let options = self.c.peer_options();
        let get = kv_proto::write::command([&b"GET"[..], b"reg-0"]);
        let started = std::time::Instant::now();
        eventually(
            "the cut-off follower to refuse reads",
            Duration::from_secs(10),
            || async {
                let conn = kv_client::Connection::connect(&addr, &options).await.ok()?;
                let reply = tokio::time::timeout(Duration::from_secs(1), conn.call(get.clone()))
                    .await
                    .ok()?
                    .ok()?;
                (kv_peer::ErrorCode::of(&reply) == Some(kv_peer::ErrorCode::MasterDown)).then_some(())
            },
        )
        .await;
        started.elapsed()
    }

    /// Once healed: stops the clients, waits until the shard's `replicas` have converged,
    /// reads every register once more (through gate 0) into the history, reads back every
    /// acknowledged write of a key written once, and checks it all ([`verdict`]).
    async fn conclude(
        &self,
        w: Workload,
        replicas: usize,
        name: &str,
        any_clients: &[usize],
        unavailable: impl FnOnce(&Recorded) -> String,
    ) -> Verdict {
        let start = w.start;
        let rec = w.stop().await;
        let (rec, lost) = self.settle(replicas, rec, start).await;
        verdict(name, &rec, lost, any_clients, &unavailable(&rec))
    }

    async fn settle(&self, replicas: usize, mut rec: Recorded, start: std::time::Instant) -> (Recorded, usize) {
        self.c.converged("s1", replicas).await;
        let gate = self.c.client(0);
        let keys: std::collections::BTreeSet<String> = rec.ops.iter().map(|o| o.key.clone()).collect();
        for key in keys {
            let call = start.elapsed();
            let got = gate.get(&key).await.expect("a final read");
            rec.ops.push(Op {
                client: usize::MAX,
                key,
                kind: Kind::Read(got.map(|v| String::from_utf8_lossy(&v).into_owned())),
                call,
                ret: Some(start.elapsed()),
            });
        }
        let mut lost = 0;
        for u in &rec.unique {
            match gate.get(&u.key).await {
                Ok(Some(v)) if v == u.value.as_bytes() => {}
                _ => lost += 1,
            }
        }
        (rec, lost)
    }
}

/// The checks of one scenario, printed as a row of the README's partition table.
struct Verdict {
    lost: usize,
    acked: usize,
    stale: usize,
    ops: usize,
    linearizable: Result<(), String>,
}

/// Checks `rec`; `any_clients` read through a gate with `--read-policy any`: their reads
/// are checked for staleness, not for linearizability. `unavailable` says how long writes
/// were unavailable, for the printed row.
fn verdict(name: &str, rec: &Recorded, lost: usize, any_clients: &[usize], unavailable: &str) -> Verdict {
    let stale = stale_reads(&rec.ops);
    for s in stale.iter().take(5) {
        eprintln!("stale read: {s:?}");
    }
    let checked: Vec<&Op> = rec
        .ops
        .iter()
        .filter(|o| matches!(o.kind, Kind::Write(_)) || !any_clients.contains(&o.client))
        .collect();
    let mut by_key: std::collections::BTreeMap<&str, Vec<Op>> = Default::default();
    for o in checked {
        by_key.entry(o.key.as_str()).or_default().push(o.clone());
    }
    let mut linearizable = Ok(());
    for (key, ops) in &by_key {
        match check_register(ops, 5_000_000) {
            Ok(()) => {}
            Err(Some(v)) => {
                linearizable = Err(format!("{key}: {}", v.0));
                break;
            }
            Err(None) => {
                linearizable = Err(format!("{key}: the search gave up ({} ops)", ops.len()));
                break;
            }
        }
    }
    let v = Verdict {
        lost,
        acked: rec.unique.len(),
        stale: stale.len(),
        ops: rec.ops.len(),
        linearizable,
    };
    eprintln!(
        "PARTITION | {name} | {} of {} acknowledged writes lost | {} stale reads in {} operations | {} | {unavailable}",
        v.lost,
        v.acked,
        v.stale,
        v.ops,
        match &v.linearizable {
            Ok(()) => "linearizable".to_string(),
            Err(e) => format!("NOT linearizable: {e}"),
        },
    );
    v
}

fn assert_clean(v: &Verdict) {
    assert!(v.acked > 0, "no write was acknowledged: the scenario proved nothing");
    assert_eq!(v.lost, 0, "acknowledged writes lost");
    assert_eq!(v.stale, 0, "stale reads");
    if let Err(e) = &v.linearizable {
        panic!("not linearizable: {e}");
    }
}

/// Waits until a write invoked at or after `t` was acknowledged.
async fn resumed(w: &Workload, t: Duration, limit: Duration) {
    eventually("writes to resume", limit, || async { w.first_write_acked_after(t) }).await;
}

/// Lets the clients run for `d` (the load is the experiment, not a wait for a condition).
async fn under_load(d: Duration) {
    tokio::time::sleep(d).await;
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test]
async fn a_leader_cut_from_zookeeper_and_its_followers_with_a_gate_on_its_side() {
    if skip() {
        return;
    }
    let mut lab = Lab::start(1, 3, &[&[], &[]]).await;
    let w = Workload::start(&lab.resp(&[0, 1]), Settings::default());
    under_load(Duration::from_secs(2)).await;
    let (leader, l, followers) = lab.roles().await;
    let (zk, g1, g2) = (lab.zk[0], lab.gate_hosts[0], lab.gate_hosts[1]);
    // The leader and gate 2 on one side (the clients reach both gates); ZooKeeper, the
    // followers and gate 1 on the other.
    let mut cut: Vec<HostId> = vec![zk, g1];
    cut.extend(&followers);
    lab.net.cut(l, &cut);
    let mut g2_cut = vec![zk];
    g2_cut.extend(&followers);
    lab.net.cut(g2, &g2_cut);
    let t = w.now();
    resumed(&w, t, Duration::from_secs(20)).await;
    under_load(Duration::from_millis(3 * SESSION_TIMEOUT_MS)).await;
    let healed = w.now();
    lab.net.heal();
    under_load(Duration::from_secs(2)).await;
    let v = lab
        .conclude(
            w,
            3,
            "a leader cut from ZooKeeper and its followers, a second gate on its side",
            &[],
            |r| format!("writes unavailable for {} at most", secs(r.longest_gap(t, healed))),
        )
        .await;
    let info = lab.c.client(0).cluster().await.unwrap();
    assert_ne!(
        info.shards[0].leader.as_deref(),
        Some(leader.as_str()),
        "a new leader took over"
    );
    let fenced = lab.reads_fenced(l).await;
    assert!(
        fenced > 0,
        "the old leader was asked to read after its lease and refused"
    );
    eprintln!("the old leader refused {fenced} reads after its lease ran out");
    assert_clean(&v);
}

#[tokio::test]
async fn a_follower_cut_from_its_leader_and_zookeeper_but_not_from_the_gates() {
    if skip() {
        return;
    }
    // A lag timeout (3 s) well past the read lease (500 ms): for 2.5 s the cut-off follower is
    // still in the in-sync set, so the `any` gate keeps sending it reads, which it must refuse.
    let mut lab = Lab::start_with(1, 3, &[&[], &["--read-policy", "any"]], 3000).await;
    let any_clients: Vec<usize> = Workload::clients_of(&Settings::default(), 1).collect();
    let w = Workload::start(&lab.resp(&[0, 1]), Settings::default());
    under_load(Duration::from_secs(2)).await;
    let (_, l, followers) = lab.roles().await;
    let f = followers[0];
    lab.net.cut(f, &[lab.zk[0], l, followers[1]]);
    let t = w.now();
    // Asked directly (as a gate would), the cut-off follower stops serving reads once its
    // read lease runs out: well before the leader drops it from the in-sync set.
    let refused_after = lab.follower_refuses_reads(f).await;
    assert!(
        refused_after < Duration::from_millis(3000),
        "the cut-off follower served reads for {refused_after:?}"
    );
    eprintln!("the cut-off follower refused reads {refused_after:?} after the cut (read lease 500 ms)");
    under_load(Duration::from_millis(3 * SESSION_TIMEOUT_MS)).await;
    let healed = w.now();
    lab.net.heal();
    under_load(Duration::from_secs(2)).await;
    let v = lab
        .conclude(
            w,
            3,
            "a follower cut from its leader and ZooKeeper (gates still reach it; one reads with `any`)",
            &any_clients,
            |r| format!("writes unavailable for {} at most", secs(r.longest_gap(t, healed))),
        )
        .await;
    let fenced = lab.reads_fenced(f).await;
    assert!(
        fenced > 0,
        "the `any` gate's reads reached the cut-off follower, which refused them"
    );
    eprintln!("the cut-off follower refused {fenced} reads (the `any` gate's and the probe's)");
    assert_clean(&v);
}

#[tokio::test]
async fn a_gate_cut_from_zookeeper_while_the_leader_fails_over() {
    if skip() {
        return;
    }
    let mut lab = Lab::start(1, 3, &[&[], &[]]).await;
    let w = Workload::start(&lab.resp(&[0, 1]), Settings::default());
    under_load(Duration::from_secs(2)).await;
    lab.net.cut(lab.gate_hosts[1], &[lab.zk[0]]);
    // Gate 2 can no longer follow the cluster: fail the leader over behind its back.
    let (leader, _, _) = lab.roles().await;
    let t = w.now();
    lab.c.server_at(&leader).kill();
    resumed(&w, t, Duration::from_secs(20)).await;
    under_load(Duration::from_millis(2 * SESSION_TIMEOUT_MS)).await;
    let healed = w.now();
    lab.net.heal();
    under_load(Duration::from_secs(3)).await;
    // Gate 2 finds the new leader by asking the servers, not by waiting for ZooKeeper.
    let cut_gate = Workload::clients_of(&Settings::default(), 1);
    let through_cut_gate = std::cell::Cell::new(Duration::ZERO);
    let v = lab
        .conclude(
            w,
            2,
            "a gate cut from ZooKeeper while the leader is killed and replaced",
            &[],
            |r| {
                through_cut_gate.set(r.longest_gap_of(t, healed, |c| cut_gate.contains(&c)));
                format!(
                    "writes unavailable for {} at most ({} through the cut-off gate)",
                    secs(r.longest_gap(t, healed)),
                    secs(through_cut_gate.get())
                )
            },
        )
        .await;
    assert_clean(&v);
    assert!(
        through_cut_gate.get() < healed - t,
        "the gate cut from ZooKeeper never reached the new leader before the heal"
    );
}

#[tokio::test]
async fn a_zookeeper_ensemble_loses_its_leader_then_its_quorum() {
    if skip() {
        return;
    }
    let mut lab = Lab::start(3, 3, &[&[]]).await;
    let w = Workload::start(&lab.resp(&[0]), Settings::default());
    under_load(Duration::from_secs(2)).await;
    let everyone: Vec<HostId> = lab
        .zk
        .iter()
        .chain(&lab.server_hosts)
        .chain(&lab.gate_hosts)
        .copied()
        .collect();
    let zk_leader = zk_leader(&lab).await;
    let others: Vec<HostId> = everyone.iter().copied().filter(|h| *h != zk_leader).collect();
    lab.net.cut(zk_leader, &others);
    let t1 = w.now();
    // The ensemble elects a new leader; sessions move to the remaining members.
    under_load(Duration::from_millis(3 * SESSION_TIMEOUT_MS)).await;
    resumed(&w, w.now(), Duration::from_secs(30)).await;
    let t2 = w.now();
    // Now a second member: no quorum. Writes and reads must stop, not go wrong.
    let second = *lab.zk.iter().find(|h| **h != zk_leader).unwrap();
    let others: Vec<HostId> = everyone.iter().copied().filter(|h| *h != second).collect();
    lab.net.cut(second, &others);
    under_load(Duration::from_millis(3 * SESSION_TIMEOUT_MS)).await;
    let healed = w.now();
    lab.net.heal();
    resumed(&w, healed, Duration::from_secs(40)).await;
    under_load(Duration::from_secs(2)).await;
    let v = lab
        .conclude(
            w,
            3,
            "a 3-node ZooKeeper ensemble loses its leader, then its quorum",
            &[],
            |r| {
                let back = r
                    .acks(healed)
                    .first()
                    .copied()
                    .unwrap_or_default()
                    .saturating_sub(healed);
                format!(
                    "writes unavailable for {} at most after the leader loss; back {} after quorum returned",
                    secs(r.longest_gap(t1, t2)),
                    secs(back)
                )
            },
        )
        .await;
    assert_clean(&v);
}

/// The host of the ensemble's current leader.
async fn zk_leader(lab: &Lab) -> HostId {
    eventually("the ZooKeeper leader", Duration::from_secs(10), || async {
        for h in &lab.zk {
            let out = crate::harness::zk::four_letter(lab.net.ip(*h), 2181, "srvr").await?;
            if out.contains("Mode: leader") {
                return Some(*h);
            }
        }
        None
    })
    .await
}
