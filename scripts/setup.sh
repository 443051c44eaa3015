#!/usr/bin/env bash
# Installs the Debian 12 packages TaskMaster builds and tests with.
# Only what is missing is installed, so a second run is a no-op.
#   scripts/setup.sh           build dependencies
#   scripts/setup.sh --test    also what the test suite needs (browser, fuzzing runtime)
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build pkg-config
  libcaf-dev libcpp-httplib-dev nlohmann-json3-dev prometheus-cpp-dev
  libfmt-dev catch2 libsqlite3-dev libboost-dev libssl-dev
)
test_pkgs=(chromium curl procps openssl clang libclang-rt-14-dev)
# The machine image may already carry Node.js with its own npm (the Debian
# npm package conflicts with it); only ask Debian for them when absent.
if ! command -v node >/dev/null 2>&1; then test_pkgs+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then test_pkgs+=(npm); fi

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
