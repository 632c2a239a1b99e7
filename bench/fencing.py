#!/usr/bin/env python3
"""The cost of fenced reads: GET throughput of this commit against a commit before reads
were fenced, side by side in one run, as paired ratios.

Reads are fenced since issue 9: a leader serves a read only within its lease, a follower
only within its read lease, every key is checked against the ring, and a read that saw a
write not yet replicated waits for it. Each build runs a shard of a leader and one follower
(so the leader's reads consult the followers' progress) and a gate; redis-benchmark GETs
(-c 50 -d 100 -r 100000) go to the leader directly and through the gate, at -P 1 and -P 16,
alternating the builds in each repeat.

Usage: bench/fencing.py [--base 1fe05dc] [--base-bin DIR] [--tests get] [--repeats 3] [--quick]

The base commit is checked out in a temporary worktree and built into target/bench-base
(`--base-bin`: use release binaries already built there instead). Any change's cost on the hot
path is measured the same way: `--base <the commit before it> --tests set,get`.
"""

import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402


def build_base(rev):
    tree = os.path.join(b.WORK, "base")
    subprocess.run(["git", "worktree", "add", "--detach", tree, rev], cwd=b.ROOT, check=True,
                   capture_output=True)
    target = os.path.join(b.ROOT, "target", "bench-base")
    try:
        subprocess.run(["cargo", "build", "--release", "--bins", "-p", "kvstore"], cwd=tree, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": target})
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=b.ROOT, capture_output=True)
    return os.path.join(target, "release")


def shard(zk, name, rel):
    """A leader and a follower of one shard, and a gate; returns (leader port, gate port)."""
    ports = [b.kvserver(zk, "s", name, rel) for _ in range(2)]
    gate_port = b.kvgate(zk, name, name=f"kvgate-{name}", rel=rel, flags=["--threads", "1"])["resp"]
    b.serving(gate_port)
    # The leader is the one that serves reads straight away.
    for p in ports:
        out = subprocess.run(["redis-cli", "-p", str(p), "set", "probe", "x"], capture_output=True, text=True).stdout
        if out.strip() == "OK":
            return p, gate_port
    raise SystemExit(f"no leader found among {ports}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="1fe05dc")
    ap.add_argument("--base-bin", help="release binaries of the base, already built")
    ap.add_argument("--tests", default="get", help="redis-benchmark tests, comma-separated (set,get)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    b.prepare(["zookeeper", "redis", "bench"], ["--bins", "-p", "kvstore"])
    base_rel = args.base_bin or build_base(args.base)
    tests = tuple(t.strip().upper() for t in args.tests.split(","))
    n1, n16 = (50_000, 300_000) if args.quick else (200_000, 1_000_000)
    try:
        zk = b.zookeeper()
        targets = {}
        for name, rel in (("base", base_rel), ("this", b.REL)):
            leader, gate = shard(zk, name, rel)
            targets[(name, "kvserver")], targets[(name, "gate")] = leader, gate
            b.redis_benchmark(leader, 16, 200_000, ("SET",))  # the keys GET will read
        results = {}
        for r in range(args.repeats):
            b.log(f"repeat {r + 1}/{args.repeats}")
            for via in ("kvserver", "gate"):
                for pipeline, n in ((1, n1), (16, n16)):
                    order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
                    for name in order:
                        rows = b.redis_benchmark(targets[(name, via)], pipeline, n, tests)
                        for t in tests:
                            results.setdefault((name, via, pipeline, t), []).append(rows[t])
        print(f"# Commit {b.commit_id()} against {args.base} "
              f"({args.repeats} repeats, redis-benchmark -t {args.tests} -c 50 -d 100 -r 100000)\n")
        print("| path | -P | test | base ops/s | this ops/s | this / base (median of paired ratios) | p99 ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for via in ("kvserver", "gate"):
            for pipeline in (1, 16):
                for t in tests:
                    a, c = results[("this", via, pipeline, t)], results[("base", via, pipeline, t)]
                    ratio = b.median([x["rps"] / y["rps"] for x, y in zip(a, c)])
                    p99 = b.median([x["p99"] / y["p99"] for x, y in zip(a, c)])
                    print(f"| {via} | {pipeline} | {t} | {b.median([y['rps'] for y in c]) / 1000:.0f}k | "
                          f"{b.median([x['rps'] for x in a]) / 1000:.0f}k | {ratio:.2f}x | {p99:.2f}x |")
    finally:
        b.stop_all()
        shutil.rmtree(b.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
