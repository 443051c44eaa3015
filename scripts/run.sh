#!/usr/bin/env bash
# Sets up, builds and starts TaskMaster standalone (a master and a local
# worker) on http://127.0.0.1:8080/. Extra arguments go to taskmasterd.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh" taskmasterd
exec "${BUILD_DIR:-$root/build}/taskmasterd" "$@"
