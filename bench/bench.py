#!/usr/bin/env python3
"""kvstore against its peers, side by side in one run, on loopback.

Systems (all started by this script, stopped when it ends):
  gate       kvgate + 2 kvservers (2 shards, 1 replica each) + ZooKeeper
  twemproxy  nutcracker (ketama, one server connection) + 2 redis-servers
  kvserver   one kvserver alone
  redis      one redis-server alone

RESP: redis-benchmark -t set,get -c 50 -d 100 -r 100000 at -P 1 and -P 16, the compared
systems alternated inside every repeat (order flipped on every other repeat); reported as
medians and the median of the paired per-repeat ratios.
HTTP: wrk GET and PUT through the gate against a trivial axum key-value server.
Memory: RSS of kvserver and redis-server holding 1M keys of 100-byte values.
Types memory (--only types-memory): RSS of kvserver and redis-server, each fresh, holding
1M hashes of 5 small fields, 1M sets of 5 small members, one sorted set of 1M members,
1M HyperLogLogs of 100 elements, 1M lists of 5 small elements and one list of 1M elements
(--types-scale scales the counts down).

Default list (--only default-list): redis-benchmark's default tests (PING_MBULK, SET, GET,
INCR, LPUSH, RPUSH, LPOP, RPOP, SADD, HSET, SPOP, ZADD, ZPOPMIN, LRANGE_*, MSET; not
PING_INLINE, which twemproxy refuses) through the gate and through twemproxy, each test run
on both back to back (order flipped per test and per repeat), with the median of the paired
ratios and their range.

EVALSHA and MULTI/EXEC (--only scripts-tx): an INCR script by EVALSHA through the gate,
twemproxy and one redis-server (redis-benchmark), and MULTI/EXEC through the gate and
redis-server (Python asyncio clients; twemproxy has no transactions).

Pub/sub fan-out (--only pubsub): 100 subscribers, half on each of two gates, against 100 on
one redis-server; messages delivered per second.

Usage: bench/bench.py [--repeats N] [--only resp,http,memory,types-memory,default-list,scripts-tx,pubsub] [--quick]
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
PROCS = []
PIDS = {}  # process name -> pid, for the CPU accounting
WORK = tempfile.mkdtemp(prefix="kvstore-bench-")
# With --pin: servers on CPU 1, load generators on CPU 0 (steadier; each system gets one core).
PIN = {"server": [], "load": []}
# One cluster secret for every kvserver and kvgate started here (they read it from the
# environment): the gates reach the servers on their authenticated cluster ports.
SECRET = os.path.join(WORK, "cluster.secret")
with open(os.open(SECRET, os.O_WRONLY | os.O_CREAT, 0o600), "w") as _f:
    _f.write(os.urandom(32).hex())
os.environ["KVSTORE_CLUSTER_SECRET_FILE"] = SECRET


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port} after {limit}s")


def start(name, args, env=None):
    logf = open(os.path.join(WORK, f"{name}.log"), "w")
    p = subprocess.Popen(PIN["server"] + args, stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL,
                         env={**os.environ, **(env or {})}, text=True)
    PROCS.append(p)
    PIDS[name] = p.pid
    return p


def ready_line(p, name, limit=30):
    """Reads the process's `... listening on ADDR ...` line."""
    deadline = time.time() + limit
    while time.time() < deadline:
        line = p.stdout.readline()
        if "listening on" in line:
            return line.split("listening on ")[1].split()
        if p.poll() is not None:
            break
    raise SystemExit(f"{name} did not start; see {WORK}/{name}.log")


def prepare(deps, cargo_args):
    """Installs the peers (`scripts/ensure-deps.sh deps...`), builds the release binaries
    (`cargo build --release cargo_args...`), and turns SIGTERM into a clean exit."""
    subprocess.run([os.path.join(ROOT, "scripts", "ensure-deps.sh"), *deps], check=True)
    subprocess.run(["cargo", "build", "--release", *cargo_args], cwd=ROOT, check=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def commit_id():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def stop_all():
    for p in reversed(PROCS):
        if p.poll() is None:
            p.terminate()
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def zookeeper():
    port = free_port()
    data = os.path.join(WORK, "zk")
    os.makedirs(data)
    cfg = os.path.join(WORK, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write(f"tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={port}\n"
                "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n"
                "minSessionTimeout=1000\nmaxSessionTimeout=60000\n")
    start("zookeeper", ["java", "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                        "-Dzookeeper.jmx.log4j.disable=true", "-cp",
                        "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
                        "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg])
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.settimeout(1)
                s.sendall(b"srvr")
                if b"Mode:" in s.recv(4096):
                    return f"127.0.0.1:{port}"
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("ZooKeeper did not start")


def kvserver(zk, shard, cluster, rel=REL, flags=()):
    p = start(f"kvserver-{cluster}-{shard}",
              [os.path.join(rel, "kvserver"), "--shard", shard, "--port", "0", "--zk", zk, "--cluster", cluster,
               "--max-keys", "0", "--log", "warn", *flags])
    return int(ready_line(p, f"kvserver-{cluster}-{shard}")[0].rsplit(":", 1)[1])


def kvgate(zk, cluster, name="kvgate", rel=REL, flags=()):
    """Starts a kvgate of `cluster` on free ports; returns the addresses its ready line
    names: `http` (host:port) and, by name, the port of each `name=addr` (`resp`, `tls`,
    `https`)."""
    p = start(name, [os.path.join(rel, "kvgate"), "--zk", zk, "--cluster", cluster, "--http-port", "0",
                     "--resp-port", "0", "--log", "warn", *flags])
    words = ready_line(p, name)
    ports = {"http": words[0]}
    for w in words[1:]:
        if "=" in w:
            k, v = w.split("=", 1)
            ports[k] = int(v.rsplit(":", 1)[1])
    return ports


def serving(port, limit=30):
    """Waits until `GET` at `port` answers without an error (a leader, on a ring, within its
    lease)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), "get", "probe"], capture_output=True, text=True).stdout
        if not out.startswith(("ERR", "TRYAGAIN", "NOTLEADER", "MASTERDOWN", "MOVED", "CLUSTERDOWN")):
            return
        time.sleep(0.1)
    raise SystemExit(f"port {port} did not serve reads within {limit}s")


def redis(name):
    port = free_port()
    start(name, ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"])
    wait_port(port)
    return port


def twemproxy(r1, r2):
    port = free_port()
    cfg = os.path.join(WORK, "tw.yml")
    with open(cfg, "w") as f:
        f.write(f"""two:
  listen: 127.0.0.1:{port}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  timeout: 4000
  server_connections: 1
  preconnect: true
  servers:
   - 127.0.0.1:{r1}:1 r1
   - 127.0.0.1:{r2}:1 r2
""")
    start("twemproxy", ["nutcracker", "-c", cfg, "-s", str(free_port()), "-a", "127.0.0.1",
                        "-o", os.path.join(WORK, "nutcracker.log")])
    wait_port(port)
    return port


def cpu_seconds(pids):
    """User + system CPU seconds the processes `pids` have used so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def load_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def redis_benchmark(port, pipeline, n, tests=("SET", "GET"), extra=(), cpu=None):
    """Figures per test (`rps`, `p50`, `p99`) of one redis-benchmark run; `extra` goes before
    the other arguments (`--cluster`). With `cpu` (the proxy's and the backends' pids), also
    the CPU microseconds per request that each part and the load generator used (`cpu`)."""
    parts = {"proxy": cpu[0], "backends": cpu[1]} if cpu else {}
    before = {name: cpu_seconds(pids) for name, pids in parts.items()}
    load_before = load_cpu_seconds()
    out = subprocess.run(PIN["load"] + ["redis-benchmark", *extra, "-p", str(port), "-t", ",".join(tests).lower(), "-n", str(n), "-c", "50", "-d", "100",
                          "-r", "100000", "-P", str(pipeline), "--csv"],
                         capture_output=True, text=True, timeout=600).stdout
    rows = {}
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] in ("SET", "GET"):
            # test, rps, avg, min, p50, p95, p99, max
            rows[cells[0]] = {"rps": float(cells[1]), "p50": float(cells[4]), "p99": float(cells[6])}
    if set(rows) != set(tests):
        raise SystemExit(f"redis-benchmark on port {port} printed no figures:\n{out}")
    if cpu:
        requests = n * len(tests)
        used = {name: cpu_seconds(pids) - before[name] for name, pids in parts.items()}
        used["load"] = load_cpu_seconds() - load_before
        rows["cpu"] = {name: secs * 1e6 / requests for name, secs in used.items()}
    return rows


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def resp_bench(ports, repeats, quick, pids):
    n1, n16 = (50_000, 300_000) if quick else (200_000, 1_000_000)
    pairs = [("gate", "twemproxy"), ("kvserver", "redis")]
    results = {}  # (system, P) -> list of rows
    log("warm-up")
    for sys_name, port in ports.items():
        redis_benchmark(port, 16, n16 // 4)
    for r in range(repeats):
        log(f"repeat {r + 1}/{repeats}")
        for pipeline, n in ((1, n1), (16, n16)):
            for ours, peer in pairs:
                order = (ours, peer) if r % 2 == 0 else (peer, ours)
                for name in order:
                    results.setdefault((name, pipeline), []).append(
                        redis_benchmark(ports[name], pipeline, n, cpu=pids[name]))
    print("\n## RESP: redis-benchmark -c 50 -d 100 -r 100000 (medians)\n")
    print("| system | -P | SET ops/s | SET p50 ms | SET p99 ms | GET ops/s | GET p50 ms | GET p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, pipeline), rows in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = []
        for t in ("SET", "GET"):
            cells += [f"{median([x[t]['rps'] for x in rows]) / 1000:.0f}k",
                      f"{median([x[t]['p50'] for x in rows]):.3f}", f"{median([x[t]['p99'] for x in rows]):.3f}"]
        print(f"| {name} | {pipeline} | " + " | ".join(cells) + " |")
    print("\n## RESP: median of paired per-repeat ratios (ours / peer)\n")
    print("| comparison | -P | SET ops/s | GET ops/s | SET p99 | GET p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for ours, peer in pairs:
        for pipeline in (1, 16):
            a, b = results[(ours, pipeline)], results[(peer, pipeline)]
            cells = [f"{median([x[t]['rps'] / y[t]['rps'] for x, y in zip(a, b)]):.2f}x" for t in ("SET", "GET")]
            cells += [f"{median([x[t]['p99'] / y[t]['p99'] for x, y in zip(a, b)]):.2f}x" for t in ("SET", "GET")]
            print(f"| {ours} / {peer} | {pipeline} | " + " | ".join(cells) + " |")
    print("\n## RESP: CPU per request (microseconds, SET and GET runs together, medians)\n")
    print("On two cores every system here is CPU-bound: throughput follows the CPU all processes")
    print("spend per request. proxy: kvgate or nutcracker; backends: the two servers behind it;")
    print("load: redis-benchmark.\n")
    print("| system | -P | proxy | backends | proxy + backends | load generator |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, pipeline), rows in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cpu = {k: median([x["cpu"][k] for x in rows]) for k in ("proxy", "backends", "load")}
        both = median([x["cpu"]["proxy"] + x["cpu"]["backends"] for x in rows])
        print(f"| {name} | {pipeline} | {cpu['proxy']:.2f} | {cpu['backends']:.2f} | {both:.2f} | {cpu['load']:.2f} |")
    for pipeline in (1, 16):
        a, b = results[("gate", pipeline)], results[("twemproxy", pipeline)]
        ratio = median([(x["cpu"]["proxy"] + x["cpu"]["backends"]) / (y["cpu"]["proxy"] + y["cpu"]["backends"])
                        for x, y in zip(a, b)])
        print(f"\n-P {pipeline}: gate + kvservers use {ratio:.2f}x the CPU per request of twemproxy + redis-servers "
              "(median of paired ratios).")
    canary = median([x["SET"]["rps"] for x in results[("redis", 1)]])
    print(f"\nCanary: redis-server alone at -P 1 did {canary / 1000:.0f}k SET/s "
          f"({'quiet' if canary >= 95_000 else 'NOISY: under ~95k, rerun for absolute figures'}).")


def load_keys(port, n):
    """SET key:0..n-1 to 100-byte values through redis-cli --pipe."""
    value = "v" * 100
    chunks = []
    for i in range(n):
        k = f"key:{i:012d}"
        chunks.append(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n$100\r\n{value}\r\n")
    data = "".join(chunks).encode()
    out = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data, capture_output=True, timeout=600)
    if b"errors: 0" not in out.stdout:
        raise SystemExit(f"loading keys into port {port} failed: {out.stdout[-300:]!r}")


def memory_bench(kv_pid, kv_port, redis_pid, redis_port, keys):
    print(f"\n## Memory: {keys // 1000}k keys of 100-byte values (RSS)\n")
    rows = []
    for name, pid, port in (("kvserver", kv_pid, kv_port), ("redis", redis_pid, redis_port)):
        before = rss_kb(pid)
        load_keys(port, keys)
        time.sleep(1)
        after = rss_kb(pid)
        rows.append((name, before, after))
    print("| system | RSS before | RSS after | per key |")
    print("| --- | --- | --- | --- |")
    for name, before, after in rows:
        print(f"| {name} | {before / 1024:.0f} MiB | {after / 1024:.0f} MiB | {after * 1024 / keys:.0f} B |")
    print(f"\nkvserver / redis RSS: {rows[0][2] / rows[1][2]:.2f}x")


def pipe(port, commands):
    """Sends RESP-encoded commands (an iterable of argument lists) through redis-cli --pipe,
    streamed in chunks (1M HyperLogLogs of 100 elements are a gigabyte of commands)."""
    def enc(args):
        out = [f"*{len(args)}\r\n"]
        for a in args:
            out.append(f"${len(a)}\r\n{a}\r\n")
        return "".join(out)
    p = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    chunk = []
    for c in commands:
        chunk.append(enc(c))
        if len(chunk) >= 10_000:
            p.stdin.write("".join(chunk).encode())
            chunk = []
    p.stdin.write("".join(chunk).encode())
    p.stdin.close()
    out = p.stdout.read()
    p.wait(timeout=1800)
    if b"errors: 0" not in out:
        raise SystemExit(f"loading into port {port} failed: {out[-300:]!r}")


# redis-benchmark's default list but PING_INLINE (twemproxy closes the connection on inline
# commands), in its own order: each test leaves the keys the next one reads (LPOP pops what
# LPUSH and RPUSH pushed, SPOP what SADD added …). `lrange` runs its LPUSH preparation and
# the four LRANGE tests.
DEFAULT_LIST = ["ping_mbulk", "set", "get", "incr", "lpush", "rpush", "lpop", "rpop", "sadd", "hset", "spop",
                "zadd", "zpopmin", "lrange", "mset"]


def default_list(port, n, test):
    """ops/s per row of one test of redis-benchmark's default list (`-c 50 -r 100000`)."""
    out = subprocess.run(PIN["load"] + ["redis-benchmark", "-p", str(port), "-n", str(n), "-c", "50", "-r", "100000",
                                        "-t", test, "--csv"], capture_output=True, text=True, timeout=1800).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1:
            rows[cells[0]] = float(cells[1])
    if not rows:
        raise SystemExit(f"redis-benchmark -t {test} on port {port} printed no figures:\n{out}")
    return rows


def default_list_bench(ports, repeats, n):
    """redis-benchmark's default list through the gate and through twemproxy.

    Each test runs on both systems back to back, the order flipped from test to test and
    repeat to repeat, so a pair is seconds apart: on this machine a two-second run moves by
    ±20% with the host's load, and pairs far apart in time add that drift to the ratio."""
    runs = {"gate": [{} for _ in range(repeats)], "twemproxy": [{} for _ in range(repeats)]}
    for r in range(repeats):
        log(f"default list, repeat {r + 1}/{repeats}")
        for i, test in enumerate(DEFAULT_LIST):
            for name in (("gate", "twemproxy") if (r + i) % 2 == 0 else ("twemproxy", "gate")):
                runs[name][r].update(default_list(ports[name], n, test))
    print(f"\n## redis-benchmark's default test list: -n {n} -c 50 -r 100000 "
          f"(each test paired in time; medians of {repeats})\n")
    print("| test | gate ops/s | twemproxy ops/s | gate / twemproxy | lowest, highest pair |")
    print("| --- | --- | --- | --- | --- |")
    for test in runs["gate"][0]:
        g = [x.get(test, 0) for x in runs["gate"]]
        t = [x.get(test, 0) for x in runs["twemproxy"]]
        ratios = [a / b for a, b in zip(g, t) if b]
        print(f"| {test} | {median(g) / 1000:.0f}k | {median(t) / 1000:.0f}k | {median(ratios):.2f}x "
              f"| {min(ratios):.2f}x, {max(ratios):.2f}x |")


def rb_custom(port, n, command, extra=()):
    """ops/s of redis-benchmark running one custom command (`-c 50 -r 100000`)."""
    out = subprocess.run(PIN["load"] + ["redis-benchmark", "-p", str(port), "-n", str(n), "-c", "50", "-r", "100000",
                                        *extra, "--csv", *command], capture_output=True, text=True, timeout=600).stdout
    for line in out.splitlines()[1:]:
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1:
            return float(cells[1])
    raise SystemExit(f"redis-benchmark on port {port} printed no figures:\n{out}")


async def _transactions(port, seconds, clients=50):
    """Transactions/s of `clients` connections each looping MULTI, INCR, INCR, EXEC."""
    import asyncio
    done = 0
    stop = time.time() + seconds

    async def one(i):
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = f"tx:{{{i}}}"
        msg = (f"*1\r\n$5\r\nMULTI\r\n" + f"*2\r\n$4\r\nINCR\r\n${len(key)}\r\n{key}\r\n" * 2
               + "*1\r\n$4\r\nEXEC\r\n").encode()
        while time.time() < stop:
            writer.write(msg)
            got = b""
            while got.count(b"\r\n") < 6:
                got += await reader.read(4096)
            done += 1
        writer.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return done / seconds


def transactions(port, seconds):
    import asyncio
    return asyncio.run(_transactions(port, seconds))


def scripts_tx_bench(ports, backends, repeats, quick):
    """EVALSHA through the gate, twemproxy and one redis-server; MULTI/EXEC through the gate
    and redis-server (twemproxy has no transactions)."""
    body = "return redis.call('incr', KEYS[1])"
    shas = set()
    for port in [ports["gate"], ports["redis"], *backends]:
        shas.add(subprocess.run(["redis-cli", "-p", str(port), "SCRIPT", "LOAD", body], capture_output=True,
                                text=True).stdout.strip())
    if len(shas) != 1:
        raise SystemExit(f"SCRIPT LOAD gave {shas}")
    sha = shas.pop()
    n = 50_000 if quick else 200_000
    seconds = 3 if quick else 6
    runs = {name: {"evalsha": [], "multi": []} for name in ports}
    for r in range(repeats):
        log(f"scripts and transactions, repeat {r + 1}/{repeats}")
        for name, port in ports.items():
            runs[name]["evalsha"].append(rb_custom(port, n, ["EVALSHA", sha, "1", "key:__rand_int__"]))
            if name != "twemproxy":
                runs[name]["multi"].append(transactions(port, seconds))
    print(f"\n## EVALSHA and MULTI/EXEC (medians of {repeats})\n")
    print(f"EVALSHA: redis-benchmark `-n {n} -c 50 -r 100000 EVALSHA <incr script> 1 key:__rand_int__`; "
          f"MULTI/EXEC: 50 Python asyncio connections looping MULTI, INCR, INCR, EXEC for {seconds} s.\n")
    print("| test | gate | twemproxy | redis-server | gate / twemproxy | gate / redis |")
    print("| --- | --- | --- | --- | --- | --- |")
    for test in ("evalsha", "multi"):
        g = median(runs["gate"][test])
        t = median(runs["twemproxy"][test]) if runs["twemproxy"][test] else None
        rd = median(runs["redis"][test])
        tw = f"{t / 1000:.0f}k" if t else "not supported"
        ratio_t = f"{g / t:.2f}x" if t else "-"
        print(f"| {test} | {g / 1000:.0f}k | {tw} | {rd / 1000:.0f}k | {ratio_t} | {g / rd:.2f}x |")


async def _fanout(sub_ports, pub_port, subscribers, messages):
    """Messages/s delivered to `subscribers` connections spread over `sub_ports`."""
    import asyncio
    payload = "x" * 100
    frame = f"*3\r\n$7\r\nmessage\r\n$6\r\nfanout\r\n${len(payload)}\r\n{payload}\r\n".encode()
    want = messages * len(frame)
    conns = []
    for i in range(subscribers):
        reader, writer = await asyncio.open_connection("127.0.0.1", sub_ports[i % len(sub_ports)])
        writer.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nfanout\r\n")
        await reader.readuntil(b":1\r\n")
        conns.append((reader, writer))
    first, last = [None], [0.0]

    async def drain(reader):
        got = 0
        while got < want:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            if first[0] is None:
                first[0] = time.time()
            got += len(chunk)
        last[0] = max(last[0], time.time())

    tasks = [asyncio.create_task(drain(r)) for r, _ in conns]
    started = time.time()
    await asyncio.to_thread(rb_custom, pub_port, messages, ["PUBLISH", "fanout", payload], ("-c", "10"))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
    for _, w in conns:
        w.close()
    return messages * subscribers / (last[0] - (first[0] or started))


def pubsub_bench(gates, redis_port, repeats, quick):
    """Fan-out: 100 subscribers (half on each gate) against 100 on one redis-server."""
    import asyncio
    messages = 2_000 if quick else 10_000
    runs = {"gates": [], "redis": []}
    for r in range(repeats):
        log(f"pub/sub fan-out, repeat {r + 1}/{repeats}")
        runs["gates"].append(asyncio.run(_fanout(gates, gates[0], 100, messages)))
        runs["redis"].append(asyncio.run(_fanout([redis_port], redis_port, 100, messages)))
    g, rd = median(runs["gates"]), median(runs["redis"])
    print(f"\n## Pub/sub fan-out (medians of {repeats})\n")
    print(f"{messages} PUBLISHes of 100 bytes (redis-benchmark -c 10) to 100 subscribers: 50 on each of two "
          "gates, against 100 on one redis-server; messages delivered per second (all subscribers).\n")
    print("| two gates | redis-server | gates / redis |")
    print("| --- | --- | --- |")
    print(f"| {g / 1000:.0f}k | {rd / 1000:.0f}k | {g / rd:.2f}x |")


def types_memory_bench(zk, scale):
    """Each workload into a fresh kvserver and a fresh redis-server; RSS added."""
    n = int(1_000_000 * scale)
    workloads = [
        (f"{n // 1000}k hashes of 5 small fields",
         lambda: (["HSET", f"user:{i}", "name", f"n{i}", "age", "42", "city", "paris", "score", str(i), "on", "1"]
                  for i in range(n))),
        (f"{n // 1000}k sets of 5 small members",
         lambda: (["SADD", f"tags:{i}", "red", "green", "blue", f"t{i % 97}", "new"] for i in range(n))),
        (f"one sorted set of {n // 1000}k members",
         lambda: (["ZADD", "board", *[x for j in range(i, i + 100) for x in (str(j), f"player:{j}")]]
                  for i in range(0, n, 100))),
        (f"{n // 1000}k HyperLogLogs of 100 elements",
         lambda: (["PFADD", f"uniq:{i}", *[f"e{i}-{j}" for j in range(100)]] for i in range(n))),
        (f"{n // 1000}k lists of 5 small elements",
         lambda: (["RPUSH", f"inbox:{i}", "hello", "seen", f"m{i % 97}", "42", "done"] for i in range(n))),
        (f"one list of {n // 1000}k elements",
         lambda: (["RPUSH", "queue", *[f"job:{j}" for j in range(i, i + 100)]] for i in range(0, n, 100))),
    ]
    print(f"\n## Memory of the data types (RSS added, fresh processes)\n")
    print("| workload | kvserver | redis-server | kvserver / redis |")
    print("| --- | --- | --- | --- |")
    for w, (title, commands) in enumerate(workloads):
        sizes = []
        for system in ("kvserver", "redis"):
            if system == "kvserver":
                port = kvserver(zk, f"types{w}", f"types{w}")
                serving(port)
            else:
                port = redis(f"redis-types{w}")
            pid = PROCS[-1].pid
            before = rss_kb(pid)
            pipe(port, commands())
            time.sleep(1)
            sizes.append(rss_kb(pid) - before)
            PROCS[-1].terminate()
        print(f"| {title} | {sizes[0] / 1024:.0f} MiB | {sizes[1] / 1024:.0f} MiB | {sizes[0] / sizes[1]:.2f}x |",
              flush=True)


def wrk(url, script, seconds):
    out = subprocess.run(PIN["load"] + ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps, p99 = 0.0, float("nan")
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        if line.startswith("99%"):
            v = line.split()[1]
            p99 = float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
    return rps, p99


def http_bench(gate_http, axum_port, repeats, quick):
    seconds = 5 if quick else 10
    scripts = {}
    for name, body in {
        "get": 'request = function() return wrk.format("GET", "/api/cache/get?key=k" .. math.random(0, 9999)) end',
        "put": 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
               'local v = string.rep("dmFs", 33)\n'
               'request = function() return wrk.format(nil, "/api/cache/put", nil, '
               '\'{"key":"k\' .. math.random(0, 9999) .. \'","value":"\' .. v .. \'"}\') end',
    }.items():
        path = os.path.join(WORK, f"{name}.lua")
        with open(path, "w") as f:
            f.write(body + "\n")
        scripts[name] = path
    # Preload keys so GETs hit.
    for url in (f"http://{gate_http}", f"http://127.0.0.1:{axum_port}"):
        wrk(url, scripts["put"], 3)
    results = {}
    for r in range(repeats):
        order = [("gate", f"http://{gate_http}"), ("axum", f"http://127.0.0.1:{axum_port}")]
        if r % 2:
            order.reverse()
        for test in ("get", "put"):
            for name, url in order:
                results.setdefault((name, test), []).append(wrk(url, scripts[test], seconds))
    print(f"\n## HTTP: wrk -t1 -c50 -d{seconds}s (medians)\n")
    print("| system | GET req/s | GET p99 ms | PUT req/s | PUT p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("gate", "axum"):
        cells = []
        for test in ("get", "put"):
            rows = results[(name, test)]
            cells += [f"{median([x[0] for x in rows]) / 1000:.0f}k", f"{median([x[1] for x in rows]):.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for test in ("get", "put"):
        ratio = median([a[0] / b[0] for a, b in zip(results[("gate", test)], results[("axum", test)])])
        print(f"\nHTTP {test.upper()} gate / trivial axum: {ratio:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="resp,http,memory")
    ap.add_argument("--quick", action="store_true", help="shorter runs (for a smoke test)")
    ap.add_argument("--memory-keys", type=int, default=1_000_000)
    ap.add_argument("--types-scale", type=float, default=1.0,
                    help="scale of the types-memory workloads (1.0: the issue's 1M)")
    ap.add_argument("--pin", action="store_true",
                    help="pin servers to CPU 1 and the load generators to CPU 0 (taskset)")
    ap.add_argument("--gate-threads", type=int, default=0,
                    help="kvgate --threads (default 0: the gate's own default, chosen for the machine)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if args.pin:
        PIN["server"], PIN["load"] = ["taskset", "-c", "1"], ["taskset", "-c", "0"]
    prepare(["zookeeper", "redis", "bench"],
            ["--bins", "--example", "trivial_http_kv", "-p", "kvstore", "-p", "kv-gate"])
    try:
        zk = zookeeper()
        if only == {"types-memory"}:
            print(f"# kvstore data-type memory — {time.strftime('%Y-%m-%d %H:%M')}; commit {commit_id()}")
            types_memory_bench(zk, args.types_scale)
            return
        s1 = kvserver(zk, "s1", "bench")
        s2 = kvserver(zk, "s2", "bench")
        gate = kvgate(zk, "bench", flags=["--threads", str(args.gate_threads)])
        gate_http, gate_resp = gate["http"], gate["resp"]
        solo = kvserver(zk, "solo", "solo")
        serving(solo)
        r1, r2, rsolo = redis("redis-1"), redis("redis-2"), redis("redis-solo")
        tw = twemproxy(r1, r2)
        # Wait until the gate routes to both shards.
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["redis-cli", "-p", str(gate_resp), "info", "cluster"], capture_output=True,
                                 text=True).stdout
            if "kvstore_shards:2" in out and out.count("leader=127") == 2:
                break
            time.sleep(0.2)
        print(f"# kvstore benchmark — {time.strftime('%Y-%m-%d %H:%M')} — {os.cpu_count()} cores, loopback")
        print(f"\nkvgate --threads {args.gate_threads}, kvserver --threads 1 (default); "
              + ("servers pinned to CPU 1, load generators to CPU 0" if args.pin else "processes unpinned"))
        print(f"\ncommit {commit_id()}; logs in {WORK}")
        if "scripts-tx" in only:
            scripts_tx_bench({"gate": gate_resp, "twemproxy": tw, "redis": rsolo}, [r1, r2], args.repeats,
                             args.quick)
        if "pubsub" in only:
            gate2_resp = kvgate(zk, "bench", name="kvgate-2")["resp"]
            pubsub_bench([gate_resp, gate2_resp], rsolo, args.repeats, args.quick)
        if "default-list" in only:
            default_list_bench({"gate": gate_resp, "twemproxy": tw}, args.repeats, 50_000 if args.quick else 100_000)
        if "resp" in only:
            pids = {"gate": ([PIDS["kvgate"]], [PIDS["kvserver-bench-s1"], PIDS["kvserver-bench-s2"]]),
                    "twemproxy": ([PIDS["twemproxy"]], [PIDS["redis-1"], PIDS["redis-2"]]),
                    "kvserver": ([PIDS["kvserver-solo-solo"]], []), "redis": ([PIDS["redis-solo"]], [])}
            resp_bench({"gate": gate_resp, "twemproxy": tw, "kvserver": solo, "redis": rsolo}, args.repeats,
                       args.quick, pids)
        if "http" in only:
            axum = start("trivial_http_kv", [os.path.join(REL, "examples", "trivial_http_kv"), str(free_port())])
            axum_port = int(ready_line(axum, "trivial_http_kv")[0].rsplit(":", 1)[1])
            http_bench(gate_http, axum_port, args.repeats, args.quick)
        if "memory" in only:
            # Fresh processes, so that neither carries the allocations of the runs above.
            kv_port = kvserver(zk, "mem", "mem")
            kv_pid = PROCS[-1].pid
            serving(kv_port)
            redis_port = redis("redis-mem")
            redis_pid = PROCS[-1].pid
            memory_bench(kv_pid, kv_port, redis_pid, redis_port, args.memory_keys)
    finally:
        stop_all()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
