#!/usr/bin/env python3
"""Resharding figures for kvstore, on loopback (processes started and stopped here).

One shard holding N keys of 100 bytes behind a gate; a second shard is started and half the
keys move to it. Reported: the move rate (keys moved / time from the start of the moving
phase to the final ring) for the default --migration-rate and with no limit, and the
foreground p99 of redis-benchmark GET/SET through the gate (-c 50 -P 1, back-to-back runs of
20k requests; the highest p99 of the runs before, and of the runs overlapping, the move).

Usage: bench/resharding.py [--keys 1000000]
"""

import argparse
import json
import os
import shutil
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402
from replication import Shard, wait  # noqa: E402


def cluster_info(http):
    with urllib.request.urlopen(f"http://{http}/api/cluster", timeout=5) as r:
        return json.load(r)


class Foreground:
    """Back-to-back short redis-benchmark runs (GET, then SET, 20k requests each, -c 50 -P 1)
    through the gate, so p99 can be read for a time window."""

    def __init__(self, port):
        self.port, self.runs, self.stop = port, [], threading.Event()
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            for test in ("GET", "SET"):
                t0 = time.monotonic()
                row = b.redis_benchmark(self.port, 1, 20_000, (test,))[test]
                self.runs.append((t0, time.monotonic(), test, row["p99"]))

    def finish(self):
        self.stop.set()
        self.thread.join()

    def p99(self, test, start, end):
        """The highest p99 among runs that overlapped [start, end]."""
        xs = [p for (t0, t1, t, p) in self.runs if t == test and t0 < end and t1 > start]
        return max(xs) if xs else float("nan")


def run_one(zk, keys, rate, tag):
    flags = ["--max-keys", "0", "--migration-rate", str(rate)]
    s1 = Shard(zk, f"rs-{tag}", flags)
    s1.add()
    gate = b.kvgate(zk, f"rs-{tag}", name=f"kvgate-rs-{tag}")
    http, resp = gate["http"], gate["resp"]
    wait("the ring", lambda: cluster_info(http).get("ring") == ["s"])
    b.load_keys(resp, keys)
    fg = Foreground(resp)
    time.sleep(3)  # foreground runs before the move: the baseline window
    started = time.monotonic()
    p = b.start(f"kvserver-rs-{tag}-t", [os.path.join(b.REL, "kvserver"), "--shard", "t", "--port", "0", "--zk", zk,
                                        "--cluster", f"rs-{tag}", "--log", "warn"] + flags)
    b.ready_line(p, f"kvserver-rs-{tag}-t")
    t_moving, total = None, 0
    deadline = time.time() + 600
    while time.time() < deadline:
        info = cluster_info(http)
        moving = [m for m in info.get("migrations", []) if m.get("state") in ("moving", "done")]
        if moving and t_moving is None:
            t_moving = time.monotonic()
            total = sum(m["total"] for m in moving)
        if info.get("ring") == ["s", "t"] and not info.get("next_ring") and t_moving is not None:
            ended = time.monotonic()
            break
        time.sleep(0.02)
    else:
        raise SystemExit("the move did not finish")
    fg.finish()
    took = ended - t_moving
    before = {t: fg.p99(t, 0, started) for t in ("GET", "SET")}
    during = {t: fg.p99(t, t_moving, ended) for t in ("GET", "SET")}
    return total, took, before, during


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    args = ap.parse_args()
    b.prepare(["zookeeper", "redis"], ["--bins", "-p", "kvstore"])
    try:
        zk = b.zookeeper()
        commit = b.commit_id()
        print(f"# kvstore resharding figures — {time.strftime('%Y-%m-%d %H:%M')} — "
              f"{os.cpu_count()} cores, loopback, commit {commit}")
        print(f"\nOne shard with {args.keys // 1000}k keys of 100 bytes; a second shard joins.\n")
        print("| --migration-rate | keys moved | move time | keys/s | GET p99 before → during | SET p99 before → during |")
        print("| --- | --- | --- | --- | --- | --- |")
        for rate, tag in ((200_000, "default"), (0, "unlimited")):
            total, took, before, during = run_one(zk, args.keys, rate, tag)
            label = "200000 (default)" if rate else "0 (no limit)"
            print(f"| {label} | {total} | {took:.2f} s | {total / took:,.0f} | "
                  f"{before['GET']:.2f} → {during['GET']:.2f} ms | {before['SET']:.2f} → {during['SET']:.2f} ms |", flush=True)
    finally:
        b.stop_all()
        shutil.rmtree(b.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
