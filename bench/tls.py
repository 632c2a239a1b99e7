#!/usr/bin/env python3
"""The cost of TLS: each system measured over plain TCP and over TLS, side by side in one run.

Systems (started by this script, stopped when it ends), each with a plain and a TLS port:
  gate      kvgate (--tls-port) + 2 kvservers (2 shards) + ZooKeeper
  kvserver  one kvserver of a one-shard cluster (--tls-port), straight
  redis     redis-server --port P --tls-port Q

Certificates: a CA and a server certificate made with openssl; clients are not asked for
certificates (--tls-auth-clients no), so the handshake and the record layer are what is
measured. Load: redis-benchmark -t set,get -c 50 -d 100 -r 100000 at -P 1 and -P 16; in
every repeat each system's plain and TLS runs are alternated (order flipped on every other
repeat). Reported: medians, the median paired ratio TLS / plain per system, and kvstore's TLS
rate against Redis's TLS rate.

Usage: bench/tls.py [--repeats N] [--quick]
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402


def certs():
    d = os.path.join(b.WORK, "certs")
    os.makedirs(d)

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=bench CA", "-keyout", "ca.key", "-out", "ca.crt")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=bench",
        "-keyout", "server.key", "-out", "server.csr")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext", "-out", "server.crt")
    return {k: os.path.join(d, f) for k, f in (("ca", "ca.crt"), ("crt", "server.crt"), ("key", "server.key"))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    b.prepare(["zookeeper", "bench"], ["--bins", "-p", "kvstore"])
    c = certs()
    tls_flags = ["--tls-cert-file", c["crt"], "--tls-key-file", c["key"], "--tls-auth-clients", "no"]
    try:
        zk = b.zookeeper()
        systems = {}  # name -> (plain port, TLS port)
        for s in ("s1", "s2"):
            b.kvserver(zk, s, "gated")
        gate = b.kvgate(zk, "gated", flags=["--tls-port", "0", *tls_flags])
        systems["gate"] = (gate["resp"], gate["tls"])
        p = b.start("kvserver-alone", [os.path.join(b.REL, "kvserver"), "--shard", "s1", "--port", "0", "--zk", zk,
                                       "--cluster", "alone", "--max-keys", "0", "--tls-port", "0", *tls_flags,
                                       "--log", "warn"])
        words = b.ready_line(p, "kvserver-alone")
        tls_port = int(next(w for w in words if w.startswith("tls=")).rsplit(":", 1)[1])
        systems["kvserver"] = (int(words[0].rsplit(":", 1)[1]), tls_port)
        plain, tls = b.free_port(), b.free_port()
        b.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(plain), "--tls-port", str(tls),
                          "--tls-cert-file", c["crt"], "--tls-key-file", c["key"], "--tls-ca-cert-file", c["ca"],
                          "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
        b.wait_port(tls)
        systems["redis"] = (plain, tls)
        for name in ("gate", "kvserver"):
            b.serving(systems[name][0])
        tls_args = ["--tls", "--cacert", c["ca"]]
        results = {}  # (system, transport, P, test) -> rows
        for pipeline in (1, 16):
            n = (50_000 if args.quick else 200_000) * (4 if pipeline > 1 else 1)
            for r in range(args.repeats):
                for name, (plain_port, tls_port) in systems.items():
                    runs = [("plain", plain_port, []), ("tls", tls_port, tls_args)]
                    for transport, port_, extra in (runs if r % 2 == 0 else runs[::-1]):
                        rows = b.redis_benchmark(port_, pipeline, n, extra=extra)
                        for test, row in rows.items():
                            results.setdefault((name, transport, pipeline, test), []).append(row)
                        b.log(f"-P {pipeline} repeat {r + 1} {name} {transport}: " +
                              ", ".join(f"{t} {row['rps']:.0f}/s" for t, row in rows.items()))
        print(f"commit {b.commit_id()}, {args.repeats} repeats, redis-benchmark -c 50 -d 100")
        print("| system | test | -P | plain ops/s | TLS ops/s | TLS / plain | TLS p99 ms | TLS vs Redis TLS |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in systems:
            for pipeline in (1, 16):
                for test in ("SET", "GET"):
                    pl, tl = results[(name, "plain", pipeline, test)], results[(name, "tls", pipeline, test)]
                    rd = results[("redis", "tls", pipeline, test)]
                    ratio = b.median([t["rps"] / p["rps"] for t, p in zip(tl, pl)])
                    vs = b.median([t["rps"] / x["rps"] for t, x in zip(tl, rd)])
                    print(f"| {name} | {test} | {pipeline} | {b.median([x['rps'] for x in pl]):.0f} | "
                          f"{b.median([x['rps'] for x in tl]):.0f} | {ratio:.2f}x | "
                          f"{b.median([x['p99'] for x in tl]):.2f} | {vs:.2f}x |")
    finally:
        b.stop_all()


if __name__ == "__main__":
    main()
