#!/usr/bin/env bash
# Runs Redis 7.0.15's own test suite (tests/redis-suite, unpatched) against a fresh kvstore
# cluster — 2 shards x 2 replicas behind a gate, started with scripts/cluster.sh on free
# ports — and prints each unit's passed/failed count next to a real redis-server's.
#
#   scripts/redis-suite.sh              every unit in tests/redis-suite/baseline.txt, in its
#                                       groups, each group on a fresh cluster (~5 minutes)
#   scripts/redis-suite.sh UNIT...      these units on one cluster (e.g. type/hash scan)
#
# The system tests run issue 11's units on every scripts/test.sh; this is the whole picture.
# Installs Tcl and ZooKeeper when missing; builds the release binaries when missing. A unit
# that runs past REDIS_TESTS_TIMEOUT seconds (default here 120; redis-server needs at most
# 52 for any unit) is cut, its unreached tests counted as failed.
set -euo pipefail
export REDIS_TESTS_TIMEOUT=${REDIS_TESTS_TIMEOUT:-120}
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/ensure-deps.sh" zookeeper tcl
[ -x "$root/target/release/kvgate" ] || (cd "$root" && cargo build --release)

# Groups as measured in tests/redis-suite/README.md: settings leak between units, so each
# group starts from a fresh cluster.
groups=(
  "type/string type/incr expire keyspace scan bitops info-command protocol other quit sort slowlog"
  "type/hash type/list type/set type/zset hyperloglog geo"
  "multi scripting pubsub pubsubshard"
)
[ $# -gt 0 ] && groups=("$*")

# A base port with 4 server ports and their cluster ports (+10000) free, plus three more.
free_ports() {
  python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(500):
    base = random.randrange(20000, 40000)
    ports = [base + i for i in range(7)] + [base + 10000 + i for i in range(4)]
    if all(free(p) for p in ports):
        print(base); break
PY
}

declare -A base_passed=()
while read -r u n _; do
  case "$u" in unit/*) base_passed[${u#unit/}]=$n ;; esac
done <"$root/tests/redis-suite/baseline.txt"

dir=$(mktemp -d)
cleanup() { KVSTORE_CLUSTER_DIR="$dir/cluster" "$root/scripts/cluster.sh" down >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

total_ok=0 total_base=0
printf '%-16s %8s %8s\n' unit kvstore redis-server
for group in "${groups[@]}"; do
  base=$(free_ports)
  [ -n "$base" ] || { echo "redis-suite.sh: no free ports" >&2; exit 1; }
  KVSTORE_CLUSTER_DIR="$dir/cluster" "$root/scripts/cluster.sh" up --shards 2 --replicas 2 \
    --base-port "$base" --zk-port $((base + 4)) --http-port $((base + 5)) --resp-port $((base + 6)) >"$dir/up.log" 2>&1 \
    || { cat "$dir/up.log" >&2; exit 1; }
  # shellcheck disable=SC2086
  out=$("$root/tests/redis-suite/run.sh" 127.0.0.1 $((base + 6)) $group || true)
  KVSTORE_CLUSTER_DIR="$dir/cluster" "$root/scripts/cluster.sh" down >/dev/null
  rm -rf "$dir/cluster"
  while read -r unit rest; do
    case "$rest" in passed=*) ;; *) continue ;; esac
    ok=${rest#passed=}; ok=${ok%% *}
    b=${base_passed[$unit]:-?}
    printf '%-16s %8s %8s   %s\n' "$unit" "$ok" "$b" "${rest#* }"
    total_ok=$((total_ok + ok))
    [ "$b" != "?" ] && total_base=$((total_base + b))
  done <<<"$out"
done
printf '%-16s %8s %8s\n' total "$total_ok" "$total_base"
