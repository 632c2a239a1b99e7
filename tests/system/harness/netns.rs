//! Hosts in network namespaces joined by a bridge, and partitions between them.
//!
//! Each host is a namespace with one veth into a bridge in the test's own namespace, which
//! holds the bridge's address, so the test (the clients) reaches every host. Processes run
//! in a host with `ip netns exec` (which execs the program: its handle is the process).
//!
//! This kernel has no `netem` and the machine no iptables, so a partition is made with `tc`:
//! on each cut-off host's veth, an `htb` root whose default class passes traffic and whose
//! second class ends in a zero-length `pfifo`; `u32` filters send packets to the addresses
//! the host must not reach into that class, where they are dropped. Connections across a
//! cut hang (nothing is reset), as across a real partition. Cuts are made in both
//! directions. Needs root (CI runs as root).

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::cluster::Place;

/// One host of a [`Net`].
#[derive(Debug)]
struct Host {
    netns: String,
    veth: String,
    ip: String,
    /// Addresses this host cannot reach.
    blocked: BTreeSet<String>,
}

/// A handle on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostId(usize);

/// A private network of hosts; everything is removed on drop.
pub struct Net {
    tag: String,
    bridge: String,
    prefix: String,
    hosts: Vec<Host>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("network setup failed: {e}");
    }
}

/// Removes the namespaces and links that test processes no longer running left behind
/// (their names carry the creating process's id, in hex, before an `s`).
fn remove_leftovers() {
    let dead = |name: &str, prefix: &str| -> bool {
        let Some(rest) = name.strip_prefix(prefix) else {
            return false;
        };
        let Some((pid, _)) = rest.split_once('s') else {
            return false;
        };
        u32::from_str_radix(pid, 16).is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for line in list(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if dead(name, "kvt") {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
    for line in list(&["-o", "link", "show"]).lines() {
        // "7: kvb1f2s0: <...>" or "8: kv1f2s0o2@if9: <...>"
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else {
            continue;
        };
        if dead(name, "kvb") || (!name.starts_with("kvb") && dead(name, "kv")) {
            let _ = run(&["ip", "link", "del", name]);
        }
    }
}

impl Net {
    /// Why namespaces cannot be used here, if they cannot (not root, no `ip`).
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("network namespaces need root".into());
        }
        run(&["ip", "netns", "list"]).err()
    }

    /// A new network with its bridge.
    pub fn new() -> Net {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(remove_leftovers);
        let pid = std::process::id();
        // A /24 of its own, 10.(100 + pid % 100).(seq).0, skipping any the host already
        // uses (another test process, or a run killed before it could clean up).
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let (seq, prefix) = loop {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let prefix = format!("10.{}.{}", 100 + pid % 100, seq % 250 + 1);
            if !used.contains(&format!("inet {prefix}.")) || seq >= 500 {
                break (seq, prefix);
            }
        };
        let tag = format!("{pid:x}s{seq:x}");
        let bridge = format!("kvb{tag}");
        let _ = run(&["ip", "link", "del", &bridge]);
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        must(&["ip", "addr", "add", &format!("{prefix}.1/24"), "dev", &bridge]);
        must(&["ip", "link", "set", &bridge, "up"]);
        Net {
            tag,
            bridge,
            prefix,
            hosts: Vec::new(),
        }
    }

    /// Adds a host; returns its handle.
    pub fn host(&mut self) -> HostId {
        let n = self.hosts.len() + 2;
        let netns = format!("kvt{}h{n}", self.tag);
        let (outer, inner) = (format!("kv{}o{n}", self.tag), format!("kv{}i{n}", self.tag));
        let ip = format!("{}.{n}", self.prefix);
        let _ = run(&["ip", "netns", "del", &netns]);
        must(&["ip", "netns", "add", &netns]);
        must(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner]);
        must(&["ip", "link", "set", &inner, "netns", &netns]);
        must(&["ip", "link", "set", &outer, "master", &self.bridge]);
        must(&["ip", "link", "set", &outer, "up"]);
        let exec = ["ip", "netns", "exec", netns.as_str()];
        must(&[&exec[..], &["ip", "addr", "add", &format!("{ip}/24"), "dev", &inner]].concat());
        must(&[&exec[..], &["ip", "link", "set", &inner, "up"]].concat());
        must(&[&exec[..], &["ip", "link", "set", "lo", "up"]].concat());
        self.hosts.push(Host {
            netns,
            veth: inner,
            ip,
            blocked: BTreeSet::new(),
        });
        HostId(self.hosts.len() - 1)
    }

    /// The host's address.
    pub fn ip(&self, h: HostId) -> &str {
        &self.hosts[h.0].ip
    }

    /// The prefix that runs a program in the host (`ip netns exec NAME`).
    pub fn prefix(&self, h: HostId) -> Vec<String> {
        ["ip", "netns", "exec", &self.hosts[h.0].netns]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Where processes run in the host.
    pub fn place(&self, h: HostId) -> Place {
        Place {
            prefix: self.prefix(h),
            ip: self.ip(h).to_string(),
        }
    }

    /// Cuts `a` off from each of `others`, both ways.
    pub fn cut(&mut self, a: HostId, others: &[HostId]) {
        for &b in others {
            let (ip_a, ip_b) = (self.hosts[a.0].ip.clone(), self.hosts[b.0].ip.clone());
            self.hosts[a.0].blocked.insert(ip_b);
            self.hosts[b.0].blocked.insert(ip_a);
            self.apply(b);
        }
        self.apply(a);
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        for i in 0..self.hosts.len() {
            if !self.hosts[i].blocked.is_empty() {
                self.hosts[i].blocked.clear();
                self.apply(HostId(i));
            }
        }
    }

    /// Rebuilds the host's filters from its blocked set.
    fn apply(&self, h: HostId) {
        let host = &self.hosts[h.0];
        let exec = ["ip", "netns", "exec", host.netns.as_str()];
        let tc = |args: &[&str]| must(&[&exec[..], &["tc"], args].concat());
        let _ = run(&[&exec[..], &["tc", "qdisc", "del", "dev", &host.veth, "root"]].concat());
        if host.blocked.is_empty() {
            return;
        }
        let dev = host.veth.as_str();
        tc(&[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1", "r2q", "100000",
        ]);
        tc(&[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit",
        ]);
        tc(&[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb", "rate", "8bit",
        ]);
        tc(&[
            "qdisc", "add", "dev", dev, "parent", "1:2", "handle", "2:", "pfifo", "limit", "0",
        ]);
        for ip in &host.blocked {
            let dst = format!("{ip}/32");
            tc(&[
                "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip",
                "dst", &dst, "flowid", "1:2",
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The processes in the hosts were killed through their handles before (a test
        // declares its `Net` first, so it is dropped last).
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.netns]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}
