"""Type information: the committed stub of the compiled module is current, the package ships it
with a py.typed marker, and a typed user of the public API passes mypy --strict.

The committed stub is made with the pybind11-stubgen pinned in the ``test`` extra, from a module
built with the pybind11 in build-system.requires; regenerate it after changing the bindings:

    pybind11-stubgen adaptopt._core -o python --exit-code
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import adaptopt
import pytest

TESTS = Path(__file__).resolve().parent
COMMITTED_STUB = TESTS.parent / "python" / "adaptopt" / "_core.pyi"
EXAMPLE = TESTS / "typing_example.py"
REGENERATE = "pybind11-stubgen adaptopt._core -o python --exit-code  (from the repository root)"

# Wrong uses of the API that mypy must reject: if the types degraded to Any (a lost py.typed or
# stub), typing_example.py would still pass, these would not.
BAD_USES = {
    "adaptopt.set_num_threads('2')": "arg-type",
    "adaptopt.set_isa(2)": "arg-type",
    "n: int = adaptopt.isa()": "assignment",
    "adaptopt._core.set_parallel_threshold('x')": "arg-type",
    "adaptopt.Adam([], lr='fast')": "arg-type",
}


def _needs(module, what):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{what} is not installed (pip install '.[test]' installs it)")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTOPT_ISA", "MYPYPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_committed_stub_matches_compiled_module(tmp_path):
    _needs("pybind11_stubgen", "pybind11-stubgen")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pybind11_stubgen",
            "adaptopt._core",
            "-o",
            str(tmp_path),
            "--exit-code",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, f"pybind11-stubgen failed:\n{out.stdout}\n{out.stderr}"
    fresh = (tmp_path / "adaptopt" / "_core.pyi").read_text()
    committed = COMMITTED_STUB.read_text()
    if fresh != committed:
        versions = ", ".join(
            f"{d} {importlib.metadata.version(d)}" for d in ("pybind11-stubgen", "numpy")
        )
        pytest.fail(
            f"{COMMITTED_STUB} is stale: it differs from the stub of the installed "
            f"{adaptopt._core.__file__} ({versions}).\nRegenerate it: {REGENERATE}\n"
            f"--- committed\n{committed}\n--- generated\n{fresh}"
        )


def test_package_ships_stub_and_marker():
    """The installed package (wheel or editable) carries _core.pyi and py.typed."""
    pkg = Path(adaptopt.__file__).resolve().parent
    assert (pkg / "py.typed").is_file(), f"no py.typed in {pkg}"
    stub = pkg / "_core.pyi"
    assert stub.is_file(), f"no _core.pyi in {pkg}"
    assert stub.read_text() == COMMITTED_STUB.read_text(), f"{stub} differs from {COMMITTED_STUB}"


def test_typing_example_runs():
    runpy.run_path(str(EXAMPLE), run_name="__main__")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    """One cache for both mypy runs: the second one reuses the analysis of numpy."""
    return tmp_path_factory.mktemp("mypy_cache")


def _mypy(cwd, cache, *files):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(cache),
            *map(str, files),
        ],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return out.returncode, out.stdout + out.stderr


def test_mypy_strict_accepts_typed_usage(tmp_path, mypy_cache):
    _needs("mypy", "mypy")
    rc, text = _mypy(tmp_path, mypy_cache, EXAMPLE)
    assert rc == 0, f"mypy --strict rejected {EXAMPLE.name}:\n{text}"


def test_mypy_rejects_wrong_usage(tmp_path, mypy_cache):
    _needs("mypy", "mypy")
    bad = tmp_path / "bad_usage.py"
    lines = ["import adaptopt", "import adaptopt._core", *BAD_USES]
    bad.write_text("\n".join(lines) + "\n")
    rc, text = _mypy(tmp_path, mypy_cache, bad)
    assert rc == 1, f"mypy exited {rc}:\n{text}"
    for lineno, (code, want) in enumerate(BAD_USES.items(), start=3):
        pattern = rf"bad_usage\.py:{lineno}: error: .*\[{want}\]"
        assert re.search(pattern, text), f"mypy did not flag {code!r} as [{want}]:\n{text}"
