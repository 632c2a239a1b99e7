#!/usr/bin/env python3
"""Replication figures for kvstore, on loopback (processes started and stopped here).

  failover  SIGKILL the leader of a 3-replica shard, time until a SET sent through the gate
            right after the kill is acknowledged (the gate waits for the new leader); a new
            replica replaces the killed one between trials. p50 and max per session timeout.
  resync    a follower joining a leader that holds 1M keys of 100 bytes (full resync), and a
            follower paused while 50k writes went on, then resumed (partial resync from the
            backlog): time until it is in sync.
  modes     redis-benchmark SET straight at the leader (-c 50 -d 100 -r 100000, -P 1 and
            -P 16) for --replication sync and async with 0, 1 and 2 followers, alternated
            over the repeats; medians and sync/async ratios.

Usage: bench/replication.py [--only failover,resync,modes] [--trials 10] [--repeats 3]
"""

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402  (shared process helpers: start, zookeeper, redis_benchmark...)


def resp(port, *args, timeout=30):
    """Sends one command, returns the decoded reply (str, int, list, or Exception for errors)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(f"${len(a)}\r\n".encode() + a + b"\r\n")
        s.sendall(b"".join(parts))
        f = s.makefile("rb")
        return read_reply(f)


def read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        return Exception(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        return None if n < 0 else f.read(n + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        return [read_reply(f) for _ in range(int(body))]
    raise ValueError(f"bad reply {line!r}")


def send(s, *args):
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(f"${len(a)}\r\n".encode() + a + b"\r\n")
    s.sendall(b"".join(parts))


def peer_call(port, *args, timeout=2):
    """Sends one command to a kvserver's cluster port, after the handshake that proves the
    cluster secret (kv_peer::handshake: HMAC-SHA256 over both sides' nonces)."""
    with open(b.SECRET, "rb") as f:
        key = f.read().rstrip()
    proof = lambda side, c, s: hmac.new(key, f"kvstore cluster {side} proof\0".encode() + c + b"\0" + s,
                                        hashlib.sha256).hexdigest()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        client_nonce = os.urandom(32).hex().encode()
        send(s, "KV.HELLO", client_nonce, "bench")
        _, server_nonce, server_proof = read_reply(f)
        server_nonce = server_nonce.encode()
        if not hmac.compare_digest(server_proof, proof("server", client_nonce, server_nonce)):
            raise ConnectionError("the server could not prove the cluster secret")
        send(s, "KV.AUTH", proof("client", client_nonce, server_nonce))
        if read_reply(f) != "OK":
            raise ConnectionError("the cluster port refused the handshake")
        send(s, *args)
        return read_reply(f)


def info(shard, port):
    """The `KV.INFO` of the server whose client port is `port` (flattened: counters too)."""
    try:
        r = peer_call(shard.cluster[port], "KV.INFO")
    except OSError:
        return {}
    if not isinstance(r, str):
        return {}
    d = json.loads(r)
    d.update(d.pop("counters", {}))
    return d


def wait(what, cond, limit=120):
    deadline = time.time() + limit
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


class Shard:
    """Replicas of one shard in their own cluster namespace."""

    def __init__(self, zk, cluster, flags):
        self.zk, self.name, self.flags, self.procs, self.seq = zk, cluster, flags, {}, 0
        self.cluster = {}  # client port -> cluster port

    def add(self):
        self.seq += 1
        name = f"kvserver-{self.name}-{self.seq}"
        p = b.start(name, [os.path.join(b.REL, "kvserver"), "--shard", "s", "--port", "0", "--zk", self.zk,
                           "--cluster", self.name, "--max-keys", "0", "--log", "warn"] + self.flags)
        words = b.ready_line(p, name)
        port = int(words[0].rsplit(":", 1)[1])
        self.cluster[port] = int(next(w for w in words if w.startswith("cluster=")).rsplit(":", 1)[1])
        self.procs[port] = p
        return port

    def leader(self):
        for port in self.procs:
            i = info(self, port)
            # Leading, and the ring exists (writes straight to it need one).
            if i.get("role") == "leader" and i.get("ring_version"):
                return port
        return None

    def in_sync(self, followers):
        """The leader's port once it has `followers` in-sync followers all at its offset."""
        lead = self.leader()
        if lead is None:
            return None
        li = info(self, lead)
        if len(li.get("isr_followers", [])) != followers:
            return None
        offs = [info(self, p).get("offset") for p in self.procs if p != lead]
        return lead if all(o == li["offset"] for o in offs) else None

    def kill(self, port):
        p = self.procs.pop(port)
        p.send_signal(signal.SIGKILL)
        p.wait()


def failover(zk, trials, session_ms):
    sh = Shard(zk, f"fo{session_ms}", ["--zk-session-timeout-ms", str(session_ms)])
    for _ in range(3):
        sh.add()
    gate_resp = b.kvgate(zk, f"fo{session_ms}", name=f"kvgate-fo{session_ms}")["resp"]
    times = []
    for t in range(trials):
        lead = wait("3 replicas in sync", lambda: sh.in_sync(2))
        wait("the gate to write", lambda: resp(gate_resp, "SET", "probe", "x") == "OK")
        sh.kill(lead)
        killed = time.monotonic()
        r = resp(gate_resp, "SET", "probe", f"after-{t}")
        if "outcome of the write is unknown" in str(r):
            # The gate sent it on a connection the dead leader had not yet been seen to
            # close; the gate never sends such a write twice, but this probe may be.
            r = resp(gate_resp, "SET", "probe", f"after-{t}")
        took = time.monotonic() - killed
        if r != "OK":
            raise SystemExit(f"the write after the kill failed: {r}")
        times.append(took)
        b.log(f"failover {t + 1}/{trials} (session {session_ms} ms): {took * 1000:.0f} ms")
        sh.add()
    times.sort()
    return times


def resync(zk, keys):
    sh = Shard(zk, "rs", ["--replica-timeout-ms", "2000", "--repl-backlog-bytes", "64mb"])
    lead = sh.add()
    wait("a leader", sh.leader)
    b.load_keys(lead, keys)
    t0 = time.monotonic()
    follower = sh.add()
    wait("the new follower in sync", lambda: sh.in_sync(1), limit=600)
    full = time.monotonic() - t0
    fi = info(sh, follower)
    assert fi["keys"] == keys and fi["full_syncs_done"] == 1, fi
    # Partial: pause the follower past the replica timeout while writes go on.
    timeouts = info(sh, lead)["replica_timeouts"]
    sh.procs[follower].send_signal(signal.SIGSTOP)
    value = "w" * 100
    data = "".join(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$100\r\n{value}\r\n"
                   for k in (f"new:{i:09d}" for i in range(50_000))).encode()
    out = subprocess.run(["redis-cli", "-p", str(lead), "--pipe"], input=data, capture_output=True, timeout=600)
    if b"errors: 0" not in out.stdout:
        raise SystemExit(f"writes during the pause failed: {out.stdout[-300:]!r}")
    wait("the leader to drop the paused follower", lambda: info(sh, lead)["replica_timeouts"] > timeouts)
    t0 = time.monotonic()
    sh.procs[follower].send_signal(signal.SIGCONT)
    wait("the resumed follower in sync", lambda: sh.in_sync(1), limit=600)
    partial = time.monotonic() - t0
    fi = info(sh, follower)
    assert fi["partial_syncs_done"] == 1 and fi["full_syncs_done"] == 1, fi
    for p in list(sh.procs):
        sh.kill(p)
    return full, partial


def modes(zk, repeats, quick):
    n1, n16 = (30_000, 200_000) if quick else (100_000, 600_000)
    configs = [(m, f) for f in (0, 1, 2) for m in ("sync", "async")]
    leaders = {}
    for mode, followers in configs:
        sh = Shard(zk, f"m-{mode}-{followers}", ["--replication", mode])
        for _ in range(followers + 1):
            sh.add()
        leaders[(mode, followers)] = wait(f"{mode} with {followers} followers", lambda: sh.in_sync(followers))
    results = {}
    for r in range(repeats):
        b.log(f"modes: repeat {r + 1}/{repeats}")
        for pipeline, n in ((1, n1), (16, n16)):
            order = configs if r % 2 == 0 else list(reversed(configs))
            for c in order:
                row = b.redis_benchmark(leaders[c], pipeline, n, ("SET",))["SET"]
                results.setdefault((c, pipeline), []).append(row)
    return configs, results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="failover,resync,modes")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    only = set(args.only.split(","))
    b.prepare(["zookeeper", "redis"], ["--bins", "-p", "kvstore"])
    try:
        zk = b.zookeeper()
        commit = b.commit_id()
        print(f"# kvstore replication figures — {time.strftime('%Y-%m-%d %H:%M')} — "
              f"{os.cpu_count()} cores, loopback, commit {commit}")
        if "failover" in only:
            print(f"\n## Failover: SIGKILL of the leader (3 replicas), {args.trials} trials\n")
            print("| session timeout | p50 | max | bound (timeout + 1 s) |")
            print("| --- | --- | --- | --- |")
            for session_ms in (2000, 4000):
                t = failover(zk, args.trials, session_ms)
                p50 = t[len(t) // 2] if len(t) % 2 else (t[len(t) // 2 - 1] + t[len(t) // 2]) / 2
                print(f"| {session_ms} ms | {p50 * 1000:.0f} ms | {t[-1] * 1000:.0f} ms | "
                      f"{session_ms + 1000} ms |", flush=True)
        if "resync" in only:
            full, partial = resync(zk, args.keys)
            print(f"\n## Resync, {args.keys // 1000}k keys of 100 bytes\n")
            print("| kind | time |")
            print("| --- | --- |")
            print(f"| full (a new follower copies everything) | {full:.2f} s |")
            print(f"| partial (50k writes missed while paused, from the backlog) | {partial:.2f} s |", flush=True)
        if "modes" in only:
            configs, results = modes(zk, args.repeats, args.quick)
            print("\n## Write throughput at the leader: redis-benchmark -t set -c 50 -d 100 -r 100000 (medians)\n")
            print("| followers | mode | -P 1 SET/s | -P 1 p99 ms | -P 16 SET/s | -P 16 p99 ms |")
            print("| --- | --- | --- | --- | --- | --- |")
            for c in configs:
                cells = []
                for pipeline in (1, 16):
                    rows = results[(c, pipeline)]
                    cells += [f"{b.median([x['rps'] for x in rows]) / 1000:.0f}k",
                              f"{b.median([x['p99'] for x in rows]):.2f}"]
                print(f"| {c[1]} | {c[0]} | " + " | ".join(cells) + " |")
            print("\nsync / async (median of paired ratios):\n")
            print("| followers | -P 1 SET/s | -P 16 SET/s |")
            print("| --- | --- | --- |")
            for f in (0, 1, 2):
                cells = []
                for pipeline in (1, 16):
                    s, a = results[(("sync", f), pipeline)], results[(("async", f), pipeline)]
                    cells.append(f"{b.median([x['rps'] / y['rps'] for x, y in zip(s, a)]):.2f}x")
                print(f"| {f} | " + " | ".join(cells) + " |")
    finally:
        b.stop_all()
        shutil.rmtree(b.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
