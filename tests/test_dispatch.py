"""ISA detection, forcing and refusal."""

import os
import subprocess
import sys

import adaptopt
import pytest

ALL_ISAS = ("scalar", "avx2", "avx512")
AVAILABLE = list(adaptopt.available_isas())
UNAVAILABLE = [name for name in ALL_ISAS if name not in AVAILABLE]

# Forces a kernel call, so a lazily failing ISA choice also shows up.
USE = (
    "import adaptopt, numpy as np; p = np.ones(4, np.float32); "
    "adaptopt.Adam([p]).step([np.ones(4, np.float32)]); print(adaptopt.isa())"
)


def _python(code, isa=None):
    env = {k: v for k, v in os.environ.items() if k != "ADAPTOPT_ISA"}
    if isa is not None:
        env["ADAPTOPT_ISA"] = isa
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_available_isas():
    assert AVAILABLE[0] == "scalar"
    assert all(isinstance(name, str) for name in AVAILABLE)
    assert AVAILABLE == [name for name in ALL_ISAS if name in AVAILABLE], (
        "order: scalar, avx2, avx512"
    )
    assert len(set(AVAILABLE)) == len(AVAILABLE)


def test_current_isa_is_available():
    assert adaptopt.isa() in AVAILABLE


def test_default_is_best_available():
    out = _python("import adaptopt; print(adaptopt.isa())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == AVAILABLE[-1]


@pytest.mark.parametrize("name", AVAILABLE)
def test_env_forces_isa(name):
    out = _python(USE, isa=name)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == name


def test_env_unknown_isa_fails():
    out = _python(USE, isa="bogus")
    assert out.returncode != 0, out.stdout
    assert "bogus" in out.stderr


@pytest.mark.skipif(not UNAVAILABLE, reason="this CPU supports every ISA")
@pytest.mark.parametrize("name", UNAVAILABLE)
def test_env_unsupported_isa_refused(name):
    out = _python(USE, isa=name)
    assert out.returncode != 0, f"{name} was not refused: {out.stdout}"
    assert name in out.stderr


@pytest.mark.parametrize("name", AVAILABLE)
def test_set_isa(name):
    adaptopt.set_isa(name)
    assert adaptopt.isa() == name


def test_set_isa_unknown():
    before = adaptopt.isa()
    with pytest.raises(ValueError, match="bogus"):
        adaptopt.set_isa("bogus")
    assert adaptopt.isa() == before


@pytest.mark.skipif(not UNAVAILABLE, reason="this CPU supports every ISA")
@pytest.mark.parametrize("name", UNAVAILABLE)
def test_set_isa_unsupported(name):
    before = adaptopt.isa()
    with pytest.raises(RuntimeError):
        adaptopt.set_isa(name)
    assert adaptopt.isa() == before


def test_version():
    assert isinstance(adaptopt.__version__, str) and adaptopt.__version__
