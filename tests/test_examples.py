"""Smoke tests: every script in examples/ runs at its --tiny size and writes its plots."""

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


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_tiny_run(script, tmp_path):
    needs, pngs = EXAMPLES[script]
    for module in needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"examples/{script} needs {module}, which is not installed")
    cmd = [sys.executable, str(EXAMPLES_DIR / script), "--tiny", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, f"examples/{script} failed:\n{proc.stdout}\n{proc.stderr}"
    for name in pngs:
        path = tmp_path / name
        assert path.is_file(), f"examples/{script} did not write {name}:\n{proc.stdout}"
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
        assert path.stat().st_size > 10_000, f"{name} is suspiciously small"
