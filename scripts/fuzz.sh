#!/usr/bin/env bash
# Builds TaskMaster's libFuzzer targets with clang (ASan + UBSan, coverage
# instrumentation in all of TaskMaster's code) and runs each one: first over
# the kept regression inputs, then fuzzing for a while from the seed corpus.
#   scripts/fuzz.sh [--seconds=N]      (default 300 per target)
# New crashes are written to build-fuzz/artifacts/; a fixed one belongs in
# test/fuzz/regressions/<target>/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds=300
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds="${arg#--seconds=}" ;;
    *) echo "usage: scripts/fuzz.sh [--seconds=N]" >&2; exit 2 ;;
  esac
done
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
flags="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
if [[ ! -f "$build/build.ninja" ]]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=None -DTASKMASTER_FUZZ=ON -DTASKMASTER_BUILD_TESTS=OFF \
    -DCMAKE_CXX_FLAGS="$flags" >/dev/null
fi
cmake --build "$build" --target fuzz_submission fuzz_request_head
mkdir -p "$build/artifacts"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=0
passed=0
for target in fuzz_submission fuzz_request_head; do
  regressions="$root/test/fuzz/regressions/$target"
  if compgen -G "$regressions/*" >/dev/null; then
    if "$build/$target" "$regressions"/* >"$build/$target.regressions.log" 2>&1; then
      echo "$target: regression inputs pass"
    else
      echo "$target: a regression input fails:"; tail -30 "$build/$target.regressions.log"
      failed=$((failed + 1)); continue
    fi
  fi
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  if "$build/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$build/artifacts/$target-" -print_final_stats=1 \
       "$corpus" "$root/test/fuzz/corpus/$target" >"$build/$target.log" 2>&1; then
    echo "$target: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/$target.log" | grep -o '[0-9]*$') runs in ${seconds}s, no finding"
    passed=$((passed + 1))
  else
    echo "$target: FINDING"; tail -40 "$build/$target.log"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
