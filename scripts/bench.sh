#!/usr/bin/env bash
# Benchmarks TaskMaster on real processes on loopback against baselines
# measured in the same run, and prints a table (also written as JSON).
#   scripts/bench.sh                       W1-W4 (a couple of minutes)
#   scripts/bench.sh --workloads=w5,w6     the deep queue and 200 workers
#   scripts/bench.sh --workloads=w1,w2,w3,w4,w5,w6 --json=results.json
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh"
"$root/scripts/build.sh" taskmasterd taskmaster-bench
args=("$@")
if [[ ! " ${args[*]:-} " =~ " --json=" ]]; then
  args+=("--json=$build/bench.json")
fi
exec "$build/taskmaster-bench" "${args[@]}"
