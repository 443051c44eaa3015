#!/usr/bin/env bash
# Sets up, builds and runs every TaskMaster test: the scheduling core, the
# actors, the HTTP API, the config, the multi-process integration tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/setup.sh" --test
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure --timeout 900
