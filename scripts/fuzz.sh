#!/usr/bin/env bash
# Fuzzes the RESP parsers with cargo-fuzz (libFuzzer), installing cargo-fuzz when missing.
# Runs on the stable toolchain (no sanitizer; the parsers contain no unsafe code).
#   scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]   targets: resp_request resp_reply
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}; shift || true
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(resp_request resp_reply)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${secs}s"
  cargo fuzz run --sanitizer none "$t" -- -max_total_time="$secs"
done
