#!/usr/bin/env bash
# Browser end-to-end test of the dashboard.
#   test/e2e/run.sh TASKMASTERD_PATH BUILD_DIR
# Installs playwright-core from the committed lock file when node_modules is
# missing (it never downloads a browser: the test drives /usr/bin/chromium),
# then runs the test. The last line is "N passed, M failed".
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 TASKMASTERD_PATH BUILD_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
daemon="$(realpath "$1")"
build_dir="$(realpath "$2")"
[[ -x "$daemon" ]] || { echo "$0: $daemon is not an executable" >&2; exit 2; }
mkdir -p "$build_dir"
command -v node >/dev/null || { echo "$0: node is not installed (scripts/setup.sh --test)" >&2; exit 2; }
[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || { echo "$0: no chromium at ${CHROMIUM:-/usr/bin/chromium} (scripts/setup.sh --test)" >&2; exit 2; }
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
# The test bounds itself (170 s); this is the backstop.
exec timeout -k 10 240 node "$here/dashboard.test.mjs" "$daemon" "$build_dir"
