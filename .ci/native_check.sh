#!/usr/bin/env bash
# Native kernel check (tests/native/README.md), run by .ci/run. In its own temp dir it:
#   1. installs SIMDe (Debian: libsimde-dev, header-only) with apt-get if it is missing, and CMake
#      if there is none;
#   2. builds tests/native/kernel_diff: the production scalar/avx2/avx512 kernel files, the fused
#      scalar reference, an unfused AVX2 twin of the scalar table and the AVX-512 kernels over
#      SIMDe's emulation of the AVX-512F intrinsics (runs on AVX2 hardware);
#   3. runs it: every table this CPU can run against its bit-exact reference, over every rule and
#      every storage combination of the kernel table (param dtype x state kind x param mode);
#   4. when qemu-user is installed (.ci/wheel_check.sh installs it), runs `kernel_diff --quick`
#      under a CPU model without AVX2 (it must skip the AVX2 tables and say so, no SIGILL) and under
#      one with AVX2 but no AVX-512 (the emulated AVX-512 tables must match).
# Prints PASS/FAIL lines and ends with "native_check: N passed, M failed"; exits non-zero on any
# failure. Env: CXX (default c++), KEEP_WORK=1 keeps the temp dir, NATIVE_BUILD_DIR=dir builds in
# dir and keeps it (a later run recompiles only what changed: the kernel files take ~2 min of a
# cold build on 2 cores). ccache is used when installed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/adaptopt-native-check.XXXXXX")"
cleanup() {
  if [[ "${KEEP_WORK:-0}" == 1 ]]; then echo "native_check: work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "FAIL: native_check: unexpected error at line $LINENO: $BASH_COMMAND" >&2' ERR

ulimit -c 0 # a SIGILL under qemu must not leave a core file
npass=0
nfail=0
t_start=$SECONDS
t_mark=$SECONDS
lap() { dt="$((SECONDS - t_mark)) s"; t_mark=$SECONDS; }
pass() { npass=$((npass + 1)); echo "PASS: $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL: $*"; }
fatal() { fail "$*"; echo "native_check: $npass passed, $nfail failed"; exit 1; }
show() { sed -e '/TCG doesn.t support requested feature/d' -e 's/^/    | /' "$1"; }

echo "native_check: repo $repo, work dir $work"
[[ "$(uname -m)" == x86_64 ]] || { echo "native_check: SKIP: the kernel tables compared are x86-64 ($(uname -m))"; exit 0; }

# ------------------------------------------------------------------------------------ 1. tools
need=()
[[ -f /usr/include/simde/x86/avx512.h ]] || need+=(libsimde-dev)
command -v cmake >/dev/null || need+=(cmake)
if ((${#need[@]})); then
  sudo=()
  [[ "$(id -u)" -ne 0 ]] && sudo=(sudo -n)
  { "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"; } \
    >"$work/apt.log" 2>&1 || { show "$work/apt.log"; fatal "apt-get install ${need[*]}"; }
fi
simde="$(dpkg-query -W -f '${Version}' libsimde-dev 2>/dev/null || echo '?')"
lap
echo "native_check: tools ready: SIMDe $simde, $(cmake --version | head -1), $(${CXX:-c++} --version | head -1) ($dt)"

# ------------------------------------------------------------------------------------ 2. build
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
command -v ccache >/dev/null && gen+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
build="${NATIVE_BUILD_DIR:-$work/build}"
if CXX="${CXX:-c++}" cmake -S "$repo/tests/native" -B "$build" "${gen[@]}" >"$work/build.log" 2>&1 &&
  cmake --build "$build" -j "$(nproc)" >>"$work/build.log" 2>&1; then
  lap
  pass "built tests/native/kernel_diff ($dt)"
else
  tail -40 "$work/build.log" | show /dev/stdin
  fatal "build tests/native/kernel_diff"
fi
kd="$build/kernel_diff"

# ------------------------------------------------------------------------------------- 3. run
if "$kd" >"$work/run.log" 2>&1; then
  lap
  pass "$(tail -1 "$work/run.log") ($dt)"
  grep -E '^(SKIP|kernel_diff: SIMDe)' "$work/run.log" | sed 's/^/    | /' || true
  sed -E -n '/^kernel_diff: ([0-9]+ rules, |no table pair)/,$p' "$work/run.log" | sed -e '$d' -e 's/^/    | /'
else
  lap
  show "$work/run.log" | head -80
  fail "kernel_diff ($dt, log: $work/run.log)"
fi

# ------------------------------------------------------------------------ 4. other CPU models
qemu="$(command -v qemu-x86_64 || command -v qemu-x86_64-static || true)"
if [[ -z "$qemu" ]]; then
  echo "native_check: SKIP: no qemu-x86_64 (installed by .ci/wheel_check.sh): CPU-model runs not done"
else
  # model | a line the output must contain
  models=(
    "Westmere|^SKIP avx2, avx2-unfused, avx512-simde: this CPU has no AVX2"
    "Haswell|^  avx512-simde vs scalar-fma .* ok"
  )
  for entry in "${models[@]}"; do
    IFS='|' read -r cpu want <<<"$entry"
    qrc=0
    { "$qemu" -cpu "$cpu" "$kd" --quick >"$work/q.log" 2>&1; } 2>/dev/null || qrc=$?
    lap
    if [[ $qrc -eq 0 ]] && grep -q -E "$want" "$work/q.log"; then
      pass "qemu -cpu $cpu: kernel_diff --quick: $(grep -E "$want" "$work/q.log" | head -1 | cut -c1-110) ($dt)"
    else
      show "$work/q.log"
      fail "qemu -cpu $cpu: kernel_diff --quick exit status $qrc$([[ $qrc -eq 132 ]] && echo ' (SIGILL)'), want a line /$want/"
    fi
  done
fi

echo "native_check: total $((SECONDS - t_start)) s"
echo "native_check: $npass passed, $nfail failed"
if ((nfail > 0)); then exit 1; fi
