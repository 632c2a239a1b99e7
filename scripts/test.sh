#!/usr/bin/env bash
# Runs every test: unit tests, in-process tests, and real-process tests of the built binaries
# against a real ZooKeeper (started by the test harness on a free port). Installs what the
# tests need (ZooKeeper, redis-tools, iproute2, Tcl for the upstream Redis suite, Chromium for the
# dashboard, tmux for kvctl top) from the distribution's packages when missing,
# and redis-py (pinned) from PyPI into target/pyredis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh zookeeper redis netns pyredis tcl chromium tmux
exec cargo test --workspace "$@"
