#!/usr/bin/env bash
# Starts a local cluster for trying TaskMaster out: a master on
# http://127.0.0.1:8080/ and N workers (default 2) with 2 slots each.
# Ctrl-C stops them all.
#   scripts/cluster.sh [N]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${BUILD_DIR:-$root/build}/taskmasterd"
n="${1:-2}"
[[ -x "$bin" ]] || "$root/scripts/build.sh" taskmasterd
data="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait
  rm -rf "$data"
}
trap cleanup EXIT INT TERM
"$bin" --role=master --data-dir="$data/master" &
pids+=($!)
for i in $(seq 1 "$n"); do
  "$bin" --role=worker --master=127.0.0.1:50051 --worker-id="worker$i" --slots=2 &
  pids+=($!)
done
wait
