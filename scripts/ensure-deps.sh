#!/usr/bin/env bash
# Installs what kvstore's tests, scripts and benchmarks need, from the distribution's
# packages, when it is missing. Usage:
#   scripts/ensure-deps.sh [zookeeper] [redis] [netns] [pyredis] [tcl] [chromium] [tmux] [bench]
# (no argument: zookeeper and redis). Idempotent; prints what it installs. `pyredis` is the
# Python Redis client the tests drive (redis-py, pinned) and Prometheus's Python client (its
# text parser checks /metrics), in a virtualenv under target/.
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(zookeeper redis)

pkgs=()
for w in "${want[@]}"; do
  case "$w" in
    zookeeper)
      [ -f /usr/share/java/zookeeper.jar ] || pkgs+=(zookeeper)
      command -v java >/dev/null 2>&1 || pkgs+=(default-jre-headless)
      ;;
    redis) # redis-cli; and curl, the HTTP client the tests drive
      command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
      command -v curl >/dev/null 2>&1 || pkgs+=(curl)
      ;;
    tcl) # the upstream Redis test suite (tests/redis-suite) is Tcl
      { command -v tclsh8.6 || command -v tclsh8.7 || command -v tclsh8.5; } >/dev/null 2>&1 || pkgs+=(tcl)
      ;;
    chromium) # the dashboard's test: headless Chromium
      command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
      ;;
    tmux) # kvctl top's test: a real terminal
      command -v tmux >/dev/null 2>&1 || pkgs+=(tmux)
      ;;
    netns) # the partition tests: ip netns, veth, bridge, tc
      { command -v ip && command -v tc; } >/dev/null 2>&1 || pkgs+=(iproute2)
      ;;
    pyredis) # redis-py in target/pyredis (PyPI); needs python3 with venv
      python3 -m venv --help >/dev/null 2>&1 || pkgs+=(python3-venv)
      ;;
    bench)
      command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
      command -v redis-benchmark >/dev/null 2>&1 || pkgs+=(redis-tools)
      command -v nutcracker >/dev/null 2>&1 || pkgs+=(nutcracker)
      command -v wrk >/dev/null 2>&1 || pkgs+=(wrk)
      ;;
    *) echo "ensure-deps: unknown component $w" >&2; exit 2 ;;
  esac
done

install_pyredis() {
  # Pinned: the tests check this client's defaults (redis-py 8 speaks RESP3 from the start).
  # Beside it, Prometheus's own Python client, whose text parser reads the /metrics pages.
  local version=8.1.0 prom=0.26.0 venv
  venv="$(cd "$(dirname "$0")/.." && pwd)/target/pyredis"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import redis, prometheus_client, sys; sys.exit(redis.__version__ != '$version')" 2>/dev/null; then
    return 0
  fi
  echo "ensure-deps: installing redis-py $version and prometheus-client $prom into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "redis==$version" "prometheus-client==$prom" >&2
}

if [ ${#pkgs[@]} -eq 0 ]; then
  for w in "${want[@]}"; do [ "$w" = pyredis ] && install_pyredis; done
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "ensure-deps: need root (or sudo) to install: ${pkgs[*]}" >&2; exit 1
  fi
fi
echo "ensure-deps: installing ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
for w in "${want[@]}"; do [ "$w" = pyredis ] && install_pyredis; done
exit 0
