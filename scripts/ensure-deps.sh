#!/usr/bin/env bash
# Installs what kvstore's tests, scripts and benchmarks need, from the distribution's
# packages, when it is missing. Usage: scripts/ensure-deps.sh [zookeeper] [redis] [netns] [bench]
# (no argument: zookeeper and redis). Idempotent; prints what it installs.
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
    redis)
      command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
      ;;
    netns) # the partition tests: ip netns, veth, bridge, tc
      { command -v ip && command -v tc; } >/dev/null 2>&1 || pkgs+=(iproute2)
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

[ ${#pkgs[@]} -eq 0 ] && exit 0

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
