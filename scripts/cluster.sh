#!/usr/bin/env bash
# A real kvstore cluster on this machine: ZooKeeper, N shards x R replicas of kvserver and a
# kvgate, as separate processes. Installs ZooKeeper from the distribution's packages when
# missing. `down` stops exactly the processes `up` started (their pids are recorded).
#
#   scripts/cluster.sh up [--secure] [--shards N] [--replicas R] [--http-port P] [--resp-port Q] [--zk-port Z] [--base-port B]
#   scripts/cluster.sh status
#   scripts/cluster.sh down
#
# --secure: a password for the default user, ZooKeeper digest ACLs, and TLS (a CA and
# certificates made with openssl) on every client port and on the cluster ports; the
# secrets are in $dir/secure/.
# Each kvserver serves Prometheus metrics, /health and /ready on its port + 2000.
# State and logs: $KVSTORE_CLUSTER_DIR (default: .cluster/ in the repository).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KVSTORE_CLUSTER_DIR:-$root/.cluster}
bin=${KVSTORE_BIN_DIR:-$root/target/release}   # tests point it at the binaries they built

shards=2 replicas=2 http_port=3000 resp_port=7379 zk_port=2181 base_port=7001 secure=0

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "cluster.sh: timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

zk_serving() { # the `srvr` four-letter command answers with a Mode: line
  # Bounded: while starting, ZooKeeper may accept a connection and never answer on it.
  local out
  out=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf srvr >&3 && cat <&3' _ "$zk_port") || return 1
  case "$out" in *Mode:*) return 0 ;; *) return 1 ;; esac
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Only processes we started, and only if the pid still runs the same program.
ours() { # ours PID PATTERN
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$2"
}

# The secured cluster's secrets, made once: a ZooKeeper digest user, the default user's
# password, a CA and, signed by it, a server certificate for 127.0.0.1 and a client one.
make_secrets() {
  local s=$dir/secure
  [ -s "$s/client.crt" ] && return 0
  mkdir -p "$s" && chmod 700 "$s"
  (umask 077
   echo "kvstore:$(openssl rand -hex 16)" >"$s/zk.auth"
   openssl rand -hex 16 >"$s/password"
   cd "$s"
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
     -subj "/CN=kvstore local CA" -keyout ca.key -out ca.crt 2>/dev/null
   # Servers and gates present it to each other's cluster ports too (clientAuth).
   printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext
   printf 'extendedKeyUsage=clientAuth\n' >client.ext
   for who in server client; do
     openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=kvstore $who" \
       -keyout "$who.key" -out "$who.csr" 2>/dev/null
     openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
       -extfile "$who.ext" -out "$who.crt" 2>/dev/null
   done)
}

stop_all() {
  [ -f "$dir/pids" ] || { echo "cluster.sh: no cluster recorded in $dir"; return 0; }
  # Gate first, then servers, then ZooKeeper (reverse order of start).
  tac "$dir/pids" | while read -r pid name pattern; do
    if ours "$pid" "$pattern"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do ours "$pid" "$pattern" || break; sleep 0.1; done
      if ours "$pid" "$pattern"; then kill -KILL "$pid" 2>/dev/null || true; fi
      echo "stopped $name (pid $pid)"
    fi
  done
  rm -f "$dir/pids"
}

cmd=${1:-}; shift || true
case "$cmd" in
  up)
    while [ $# -gt 0 ]; do
      case "$1" in
        --shards) shards=$2; shift 2 ;;
        --replicas) replicas=$2; shift 2 ;;
        --http-port) http_port=$2; shift 2 ;;
        --resp-port) resp_port=$2; shift 2 ;;
        --zk-port) zk_port=$2; shift 2 ;;
        --base-port) base_port=$2; shift 2 ;;
        --secure) secure=1; shift ;;
        *) usage ;;
      esac
    done
    if [ -f "$dir/pids" ]; then echo "cluster.sh: a cluster is already up (scripts/cluster.sh down first)" >&2; exit 1; fi
    more_ports=()
    if [ "$secure" = 1 ]; then more_ports=($((http_port + 443)) $((resp_port + 1))); fi
    for p in "$zk_port" "$http_port" "$resp_port" "${more_ports[@]}"; do
      port_free "$p" || { echo "cluster.sh: port $p is in use" >&2; exit 1; }
    done
    "$root/scripts/ensure-deps.sh" zookeeper
    if [ -z "${KVSTORE_BIN_DIR:-}" ] && { [ ! -x "$bin/kvserver" ] || [ ! -x "$bin/kvgate" ] || [ ! -x "$bin/kvctl" ]; }; then
      (cd "$root" && cargo build --release)
    fi
    mkdir -p "$dir/zk-data" "$dir/logs"
    # The cluster secret every server and gate proves on the cluster ports (made once).
    if [ ! -s "$dir/cluster.secret" ]; then
      (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/cluster.secret")
    fi
    export KVSTORE_CLUSTER_SECRET_FILE="$dir/cluster.secret"
    tls_args=() gate_tls_args=()
    if [ "$secure" = 1 ]; then
      make_secrets
      export KVSTORE_ZK_AUTH_FILE="$dir/secure/zk.auth"
      KVSTORE_REQUIREPASS=$(cat "$dir/secure/password"); export KVSTORE_REQUIREPASS
      export KVCTL_PASSWORD=$KVSTORE_REQUIREPASS
      export KVSTORE_TLS_CERT_FILE="$dir/secure/server.crt" KVSTORE_TLS_KEY_FILE="$dir/secure/server.key"
      export KVSTORE_TLS_CA_CERT_FILE="$dir/secure/ca.crt" KVSTORE_TLS_CLUSTER=yes
      gate_tls_args=(--tls-port $((resp_port + 1)) --https-port $((http_port + 443)))
    fi
    : >"$dir/pids"
    trap 'echo "cluster.sh: start failed; stopping what was started" >&2; stop_all' ERR

    cat >"$dir/zoo.cfg" <<CFG
tickTime=200
initLimit=10
syncLimit=5
dataDir=$dir/zk-data
clientPort=$zk_port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat,mntr
minSessionTimeout=1000
maxSessionTimeout=60000
maxClientCnxns=0
CFG
    java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dzookeeper.jmx.log4j.disable=true \
      -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/logs/zookeeper.log" 2>&1 &
    echo "$! zookeeper $dir/zoo.cfg" >>"$dir/pids"
    wait_for 30 "ZooKeeper on port $zk_port" zk_serving
    echo "zookeeper   127.0.0.1:$zk_port"

    zk=127.0.0.1:$zk_port
    port=$base_port
    for s in $(seq 1 "$shards"); do
      for r in $(seq 1 "$replicas"); do
        port_free "$port" || { echo "cluster.sh: port $port is in use" >&2; false; }
        port_free $((port + 10000)) || { echo "cluster.sh: port $((port + 10000)) (cluster port) is in use" >&2; false; }
        if [ "$secure" = 1 ]; then port_free $((port + 1000)) || { echo "cluster.sh: port $((port + 1000)) (TLS port) is in use" >&2; false; }; fi
        port_free $((port + 2000)) || { echo "cluster.sh: port $((port + 2000)) (metrics port) is in use" >&2; false; }
        if [ "$secure" = 1 ]; then tls_args=(--tls-port $((port + 1000))); fi
        "$bin/kvserver" --shard "shard-$s" --port "$port" --zk "$zk" --metrics-port $((port + 2000)) "${tls_args[@]}" \
          >"$dir/logs/kvserver-$port.out" 2>"$dir/logs/kvserver-$port.log" &
        echo "$! kvserver-$port kvserver --shard shard-$s --port $port" >>"$dir/pids"
        echo "kvserver    127.0.0.1:$port  shard-$s  (cluster port $((port + 10000)), metrics http://127.0.0.1:$((port + 2000))/metrics${tls_args:+, TLS $((port + 1000))})"
        port=$((port + 1))
      done
    done
    "$bin/kvgate" "$zk" "$http_port" --resp-port "$resp_port" "${gate_tls_args[@]}" >"$dir/logs/kvgate.out" 2>"$dir/logs/kvgate.log" &
    echo "$! kvgate kvgate $zk $http_port" >>"$dir/pids"
    echo "kvgate      http://127.0.0.1:$http_port  redis://127.0.0.1:$resp_port"

    all_led() {
      local json
      json=$("$bin/kvctl" --host "127.0.0.1:$http_port" cluster --json) || return 1
      python3 -c '
import json, sys
info = json.load(sys.stdin)
want_shards, want_replicas = int(sys.argv[1]), int(sys.argv[2])
ok = len(info["shards"]) == want_shards and all(
    s["leader"] and len(s["replicas"]) == want_replicas and all(r["in_sync"] for r in s["replicas"])
    for s in info["shards"])
sys.exit(0 if ok else 1)
' "$shards" "$replicas" <<<"$json"
    }
    wait_for 60 "every shard to elect a leader" all_led

    trap - ERR
    echo
    "$bin/kvctl" --host "127.0.0.1:$http_port" cluster
    echo
    if [ "$secure" = 1 ]; then
      s=$dir/secure
      echo "Secured: the default user's password is in $s/password; certificates in $s/."
      echo "Try: KVCTL_PASSWORD=\$(cat $s/password) $bin/kvctl --host 127.0.0.1:$http_port put hello world"
      echo "     redis-cli -p $((resp_port + 1)) --tls --cacert $s/ca.crt --cert $s/client.crt --key $s/client.key -a \$(cat $s/password) get hello"
      echo "     curl --cacert $s/ca.crt --cert $s/client.crt --key $s/client.key -u default:\$(cat $s/password) https://127.0.0.1:$((http_port + 443))/api/cache/get?key=hello"
    else
      echo "Try: $bin/kvctl --host 127.0.0.1:$http_port put hello world"
      echo "     redis-cli -p $resp_port get hello"
    fi
    echo "Logs: $dir/logs   Stop: scripts/cluster.sh down"
    ;;
  status)
    [ -f "$dir/pids" ] || { echo "no cluster is up"; exit 1; }
    [ -s "$dir/secure/password" ] && { KVCTL_PASSWORD=$(cat "$dir/secure/password"); export KVCTL_PASSWORD; }
    gate=$(awk '$2 == "kvgate" {print $5}' "$dir/pids")
    "$bin/kvctl" --host "127.0.0.1:$gate" cluster
    ;;
  down)
    stop_all
    ;;
  *) usage ;;
esac
