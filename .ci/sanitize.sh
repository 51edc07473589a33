#!/usr/bin/env bash
# Builds adaptopt with AddressSanitizer + UndefinedBehaviorSanitizer into a fresh temporary venv
# (never the editable install or build/) and runs the whole test suite against that build.
# Exits non-zero on any build failure, test failure or sanitizer report.
#
#   .ci/sanitize.sh                 # everything
#   .ci/sanitize.sh -k adam         # extra arguments go to every pytest run
#
# Environment:
#   SANITIZE_KEEP=1                 keep the temporary directory (build tree, logs)
#   SANITIZE_TORCH=0                do not install torch (test_torch_parity.py then skips)
#   SANITIZE_BUILD_TYPE=Debug       CMake build type (default RelWithDebInfo: -g for reports)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
build_type="${SANITIZE_BUILD_TYPE:-RelWithDebInfo}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/adaptopt-sanitize.XXXXXX")"
cleanup() {
  if [[ "${SANITIZE_KEEP:-0}" == 1 ]]; then
    echo "sanitize: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

t_start=$SECONDS
log() { printf '\n=== sanitize [%4ds]: %s\n' "$((SECONDS - t_start))" "$*"; }

# ------------------------------------------------------------------------------ build
log "venv in $tmp/venv"
"$python" -m venv "$tmp/venv"
venv_py="$tmp/venv/bin/python"

# The bench extra too: its tests drive the bandwidth-probe kernel, which nothing else runs.
log "building with -DADAPTOPT_SANITIZE=ON ($build_type), build dir $tmp/build"
"$venv_py" -m pip install -v "$repo[test,bench]" \
  --config-settings=cmake.define.ADAPTOPT_SANITIZE=ON \
  --config-settings=cmake.build-type="$build_type" \
  --config-settings=build-dir="$tmp/build" >"$tmp/build.log" 2>&1 || {
  tail -n 80 "$tmp/build.log"
  echo "sanitize: build failed (full log: $tmp/build.log)" >&2
  SANITIZE_KEEP=1
  exit 1
}
grep -E -- "-fsanitize=address,undefined" "$tmp/build.log" | head -n 1 | cut -c1-300 || true

torch_installed=0
if [[ "${SANITIZE_TORCH:-1}" != 0 ]]; then
  log "installing torch (optional: without it test_torch_parity.py skips itself)"
  if "$venv_py" -m pip install -q "torch==2.13.0" >"$tmp/torch.log" 2>&1; then
    torch_installed=1
  else
    echo "sanitize: torch could not be installed; the parity tests will skip (log: $tmp/torch.log)"
  fi
fi

# ------------------------------------------------------------------------------ sanitizer runtime
platlib="$("$venv_py" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
so=("$platlib"/adaptopt/_core*.so)
[[ -f "${so[0]}" ]] || { echo "sanitize: no _core*.so under $platlib/adaptopt" >&2; exit 1; }
so="${so[0]}"
log "checking that $so is instrumented"
ldd "$so" | grep -E "asan|ubsan|gomp" || true
asan_lib="$(ldd "$so" | awk '/libasan/ {print $3}')"
ubsan_lib="$(ldd "$so" | awk '/libubsan/ {print $3}')"
if [[ -z "$asan_lib" || -z "$ubsan_lib" ]]; then
  echo "sanitize: $so does not link libasan and libubsan: not a sanitized build" >&2
  exit 1
fi
symbols="$(nm -D "$so")"
n_asan="$(grep -c "__asan_report" <<<"$symbols" || true)"
n_ubsan="$(grep -c "__ubsan_handle" <<<"$symbols" || true)"
echo "instrumentation: $n_asan __asan_report_* and $n_ubsan __ubsan_handle_* imports"
if [[ "$n_asan" -eq 0 || "$n_ubsan" -eq 0 ]]; then
  echo "sanitize: $so is not instrumented" >&2
  exit 1
fi

# The interpreter is not instrumented, so the ASan runtime must be loaded first.
export LD_PRELOAD="$asan_lib:$ubsan_lib"
# CPython does not free everything at exit: leak detection would only report the interpreter.
asan_base="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1"
asan_base+=":check_initialization_order=1:strict_string_checks=1:print_summary=1"
export ASAN_OPTIONS="$asan_base"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:print_summary=1"
export PYTHONMALLOC=malloc                      # Python objects through malloc: ASan sees them
export PYTHONDONTWRITEBYTECODE=1                # nothing written into the source tree
export PYTHONFAULTHANDLER=1
export HYPOTHESIS_PROFILE=ci                    # derandomized
export HYPOTHESIS_STORAGE_DIRECTORY="$tmp/hypothesis"
export CI="${CI:-true}"

# Run from a directory where `adaptopt` can only come from the venv.
cd "$tmp"
where="$("$venv_py" -c 'import adaptopt, adaptopt._core as c; print(c.__file__); print(adaptopt.isa(), adaptopt.available_isas(), adaptopt.get_num_threads())')"
echo "$where"
case "$(head -n 1 <<<"$where")" in
  "$tmp"/venv/*) ;;
  *) echo "sanitize: adaptopt._core was not imported from the sanitized venv" >&2; exit 1 ;;
esac

# torch is not ours and not instrumented; if it cannot even run under the ASan runtime, the
# parity tests are skipped with that reason instead of failing the sanitizer run.
torch_note=""
if [[ $torch_installed == 1 ]]; then
  if "$venv_py" -c 'import torch; t = torch.ones(3, requires_grad=True); (t * 2).sum().backward(); torch.optim.Adam([t]).step(); print("torch", torch.__version__, "runs under ASan")' >"$tmp/torch-check.log" 2>&1; then
    cat "$tmp/torch-check.log"
  else
    tail -n 20 "$tmp/torch-check.log"
    torch_note="torch does not run under the ASan runtime: $(grep -m1 -E "ERROR|Error" "$tmp/torch-check.log" | cut -c1-120)"
  fi
fi

# ------------------------------------------------------------------------------ tests
# One pytest process per file: a sanitizer abort ends that file's run only, so one report
# does not hide the results of the other files.
shopt -s nullglob
files=("$repo"/tests/test_*.py)
declare -a summary=()
failed=0
for f in "${files[@]}"; do
  name="$(basename "$f")"
  if [[ "$name" == test_torch_parity.py && -n "$torch_note" ]]; then
    echo "sanitize: SKIPPING $name: $torch_note"
    summary+=("$(printf '%-28s %-9s %5s  %s' "$name" SKIPPED - "$torch_note")")
    continue
  fi
  opts="$asan_base"
  # RSS is only meaningful without the quarantine of freed blocks (see test_leaks.py).
  [[ "$name" == test_leaks.py ]] && opts+=":quarantine_size_mb=0"
  log "pytest $name"
  t0=$SECONDS
  set +e
  ASAN_OPTIONS="$opts" "$venv_py" -m pytest -p no:cacheprovider -q -ra \
    --rootdir="$repo" "$f" "$@" 2>&1 | tee "$tmp/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  dt=$((SECONDS - t0))
  status=ok
  if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$tmp/$name.log"; then
    status=SANITIZER
    [[ $rc -eq 0 ]] && rc=1
  elif [[ $rc -eq 5 && $# -gt 0 ]]; then
    status=none       # pytest's "no tests collected": the extra arguments deselected them all
    rc=0
  elif [[ $rc -eq 5 ]] && grep -qE "^[0-9]+ skipped" "$tmp/$name.log"; then
    status=skipped    # a module-level skip (e.g. torch not installed), reason in the log
    rc=0
  elif [[ $rc -ne 0 ]]; then
    status="rc=$rc"
  fi
  # (A sanitizer report from a subprocess that a test started shows up in the captured output.)
  last="$(grep -E "passed|failed|skipped|error|deselected" "$tmp/$name.log" | tail -n 1 | tr -s '=' | cut -c1-90 || true)"
  summary+=("$(printf '%-28s %-9s %4ss  %s' "$name" "$status" "$dt" "$last")")
  if [[ $rc -ne 0 ]]; then
    failed=1
  fi
done

log "summary (build type $build_type, $(nproc) cores)"
printf '%s\n' "${summary[@]}"
echo "total: $((SECONDS - t_start)) s"
if [[ $failed -ne 0 ]]; then
  echo "sanitize: FAILED (logs in $tmp)" >&2
  SANITIZE_KEEP=1
  exit 1
fi
echo "sanitize: clean"
