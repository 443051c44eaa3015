#!/usr/bin/env bash
# Benchmarks TaskMaster against the raw cost of spawning the same commands,
# both measured in this run: a master and two workers with 2 slots each on
# loopback, then W1 (throughput), W2 (parallel efficiency), W3 (latency).
#   scripts/bench.sh [--workloads=w1,w2,w3] [--json=PATH]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh"
BUILD_TYPE="${BUILD_TYPE:-Release}" "$root/scripts/build.sh" taskmasterd taskmaster-bench
bin="$build/taskmasterd"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" --role=master --data-dir="$work/data" --http-port=0 --cluster-port=0 \
  >"$work/master.out" 2>"$work/master.err" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q "API and dashboard" "$work/master.out" 2>/dev/null && break
  sleep 0.1
done
url="$(grep -o 'http://[^/ ]*' "$work/master.out" | head -1)"
cluster="$(grep -o -- '--master=[^) ]*' "$work/master.out" | head -1 | cut -d= -f2)"
[[ -n "$url" && -n "$cluster" ]] || { cat "$work/master.err"; exit 1; }
for i in 1 2; do
  "$bin" --role=worker --master="$cluster" --worker-id="bench$i" --slots=2 \
    >"$work/w$i.out" 2>"$work/w$i.err" &
  pids+=($!)
done
for _ in $(seq 1 100); do
  [[ "$(curl -s "$url/stats" | grep -o '"workers_up":[0-9]*' | cut -d: -f2)" == "2" ]] && break
  sleep 0.1
done
echo "master $url, workers on $cluster, $(nproc) cores"
"$build/taskmaster-bench" --server="$url" --json="${JSON:-$build/bench.json}" "$@"
