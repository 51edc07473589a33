#!/usr/bin/env bash
# ThreadSanitizer run of the thread pool on its own (cpp/src/pool.cpp + cpp/tests/pool_stress.cpp):
# several callers publish jobs of random sizes and thread counts; a hook delays workers at random
# between reading the generation, the job slot and claiming a chunk, so late workers meet later
# jobs. Built with the futex and with the condition-variable fallback. Fails on a TSan report, a
# chunk run other than once, or a hang (timeout). Last, the same pinned to one CPU.
#   .ci/pool_tsan.sh [jobs per caller (default 3000)] [callers (default 3)]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CXX="${CXX:-c++}"
jobs="${1:-3000}"
callers="${2:-3}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/adaptopt-pool-tsan.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
status=0
for variant in "futex:" "condvar:-DADAPTOPT_POOL_NO_FUTEX"; do
  name="${variant%%:*}"
  flags="${variant#*:}"
  for hook in "" "-DADAPTOPT_POOL_STRESS_HOOK"; do
    label="$name${hook:+ + delays}"
    # shellcheck disable=SC2086
    "$CXX" -std=c++17 -O1 -g -fsanitize=thread -Wall -Wextra -Werror $flags $hook \
      -I"$repo/cpp/src" "$repo/cpp/tests/pool_stress.cpp" "$repo/cpp/src/pool.cpp" \
      -o "$tmp/stress" -pthread
    if timeout 600 "$tmp/stress" "$jobs" "$callers" >"$tmp/out.log" 2>&1; then
      echo "PASS: pool_tsan $label: $(tail -1 "$tmp/out.log")"
    else
      rc=$?
      sed -e 's/^/    | /' "$tmp/out.log" | tail -40
      why="exit status $rc"
      [[ $rc -eq 124 ]] && why="timeout: a hang?"
      echo "FAIL: pool_tsan $label ($why)"
      status=1
    fi
  done
done
# On one CPU every worker finds itself on the caller's CPU: the step-aside and wake-up backoff path.
if command -v taskset >/dev/null; then
  "$CXX" -std=c++17 -O1 -g -fsanitize=thread -Wall -Wextra -Werror -DADAPTOPT_POOL_STRESS_HOOK \
    -I"$repo/cpp/src" "$repo/cpp/tests/pool_stress.cpp" "$repo/cpp/src/pool.cpp" -o "$tmp/stress" -pthread
  cpu="$(taskset -pc $$ | sed 's/.*: //; s/[-,].*//')"
  if timeout 600 taskset -c "$cpu" "$tmp/stress" "$((jobs / 4))" "$callers" >"$tmp/out.log" 2>&1; then
    echo "PASS: pool_tsan futex + delays on one CPU: $(tail -1 "$tmp/out.log")"
  else
    sed -e 's/^/    | /' "$tmp/out.log" | tail -40
    echo "FAIL: pool_tsan futex + delays on one CPU"
    status=1
  fi
fi
exit $status
