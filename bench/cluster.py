#!/usr/bin/env python3
"""Cluster-aware clients straight at the shards: kvstore against a real Redis Cluster of the
same shape, side by side in one run.

Systems (started by this script, stopped when it ends):
  kvstore        3 kvservers (3 shards, 1 replica each) + ZooKeeper; no gate
  redis-cluster  3 redis-servers --cluster-enabled yes, joined by redis-cli --cluster create
                 (which needs at least 3 masters)

Load: redis-benchmark --cluster -t set,get -c 50 -d 100 -r 100000 at -P 1 and -P 16 against
one node of each (it learns the slots and connects to every master), the two systems
alternated inside every repeat (order flipped on every other repeat). Reported as medians and
the median of the paired per-repeat ratios (kvstore / Redis Cluster).

Usage: bench/cluster.py [--repeats N] [--quick]
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402


def cluster_ok(port, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True,
                             text=True).stdout
        if "cluster_state:ok" in out:
            return
        time.sleep(0.2)
    raise SystemExit(f"port {port}: the cluster is not ok after {limit}s")


def kvstore(zk):
    ports = [b.kvserver(zk, s, "bench") for s in ("s1", "s2", "s3")]
    for p in ports:
        cluster_ok(p)
    return ports[0]


def redis_cluster():
    ports = []
    for i in range(3):
        port = b.free_port()
        while port > 55000:  # the cluster bus listens on port + 10000
            port = b.free_port()
        d = os.path.join(b.WORK, f"rc{i}")
        os.makedirs(d)
        b.start(f"redis-cluster-{i}", [
            "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", os.path.join(d, "nodes.conf"), "--dir", d])
        b.wait_port(port)
        ports.append(port)
    subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                    "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
    for p in ports:
        cluster_ok(p)
    return ports[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    b.prepare(["zookeeper", "bench"], ["--bins", "-p", "kvstore"])
    try:
        zk = b.zookeeper()
        systems = {"kvstore": kvstore(zk), "redis-cluster": redis_cluster()}
        results = {}
        for pipeline in (1, 16):
            # `redis-benchmark --cluster` runs a thread per node and notices the end of a run
            # only on its 250 ms timer: every duration it reports is a multiple of 0.25 s (seen
            # in every run here: 4.51, 5.01, 5.26 … s). Runs of 15-20 s keep that step to
            # 1.5% of the rate; runs of 5 s made it 5% and the ratios moved by whole steps.
            n = (200_000 if args.quick else 1_000_000) * (8 if pipeline > 1 else 1)
            for r in range(args.repeats):
                order = list(systems) if r % 2 == 0 else list(reversed(systems))
                for name in order:
                    rows = b.redis_benchmark(systems[name], pipeline, n, extra=["--cluster"])
                    for test, row in rows.items():
                        results.setdefault((pipeline, test, name), []).append(row)
                    b.log(f"-P {pipeline} repeat {r + 1} {name}: " +
                          ", ".join(f"{t} {row['rps']:.0f}/s p99 {row['p99']:.2f} ms" for t, row in rows.items()))
        print(f"commit {b.commit_id()}, {args.repeats} repeats, redis-benchmark --cluster -c 50 -d 100")
        print("| test | -P | kvstore ops/s | Redis Cluster ops/s | ratio | kvstore p99 ms | Redis Cluster p99 ms |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                kv, rc = results[(pipeline, test, "kvstore")], results[(pipeline, test, "redis-cluster")]
                ratio = b.median([k["rps"] / r["rps"] for k, r in zip(kv, rc)])
                print(f"| {test} | {pipeline} | {b.median([x['rps'] for x in kv]):.0f} | "
                      f"{b.median([x['rps'] for x in rc]):.0f} | {ratio:.2f}x | "
                      f"{b.median([x['p99'] for x in kv]):.2f} | {b.median([x['p99'] for x in rc]):.2f} |")
    finally:
        b.stop_all()


if __name__ == "__main__":
    main()
