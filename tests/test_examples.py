"""Smoke tests: every script in examples/ runs at its --tiny size and writes its plots (and the
MLP and RNN their --storage comparisons, whose tables mark every storage's outcome)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

# script -> (modules it needs besides numpy and adaptopt, PNG files it writes)
EXAMPLES = {
    "mlp_digits.py": (("matplotlib", "sklearn"), ("mlp_digits.png",)),
    "rnn_adding.py": (("matplotlib",), ("rnn_adding.png",)),
    "trajectories.py": (("matplotlib",), ("trajectories_quadratic.png",
                                          "trajectories_rosenbrock.png",
                                          "trajectories_effective_lr.png")),
}


# the compact-storage comparisons (issue 9): script -> PNG its --storage run writes
STORAGE_RUNS = {"mlp_digits.py": "mlp_digits_storage.png", "rnn_adding.py": "rnn_adding_storage.png"}
RUNS = [(script, ()) for script in sorted(EXAMPLES)] + \
    [(script, ("--storage",)) for script in sorted(STORAGE_RUNS)]


@pytest.mark.parametrize("script, extra", RUNS, ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_example_tiny_run(script, extra, tmp_path):
    needs, pngs = EXAMPLES[script]
    if extra:
        pngs = (STORAGE_RUNS[script],)
    for module in needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"examples/{script} needs {module}, which is not installed")
    cmd = [sys.executable, str(EXAMPLES_DIR / script), "--tiny", "--out", str(tmp_path), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, f"examples/{script} failed:\n{proc.stdout}\n{proc.stderr}"
    for name in pngs:
        path = tmp_path / name
        assert path.is_file(), f"examples/{script} did not write {name}:\n{proc.stdout}"
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert path.stat().st_size > 10_000, f"{name} is suspiciously small"


@pytest.mark.parametrize("script", sorted(STORAGE_RUNS))
def test_storage_comparison_reports_every_storage(script, tmp_path):
    if importlib.util.find_spec("matplotlib") is None or (
            script == "mlp_digits.py" and importlib.util.find_spec("sklearn") is None):
        pytest.skip("needs matplotlib (and scikit-learn for the MLP)")
    cmd = [sys.executable, str(EXAMPLES_DIR / script), "--tiny", "--storage", "--out", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         check=True).stdout
    for storage in ("fp32", "fp32 params, 8-bit state", "bf16 params + SR",
                    "bf16 params + SR, 8-bit state", "bf16 params, round-to-nearest"):
        assert f" {storage} " in out, (storage, out)
    assert "Adam" in out and "RMSProp" in out
