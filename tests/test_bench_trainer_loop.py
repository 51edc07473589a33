"""The trainer-loop benchmark (adaptopt-bench trainer-loop) runs end to end and reports
every ratio; no timing assertions (the ratios are what the tool is for, not what tests check)."""

import json

import adaptopt
import pytest
from adaptopt.bench import trainer as _bench_trainer


def test_trainer_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "trainer.json"
    threads = adaptopt.get_num_threads()
    assert _bench_trainer.main(["--rounds", "1", "--iters", "1", "--small-iters", "2",
                                "--no-torch", "--json", str(out)]) == 0
    assert adaptopt.get_num_threads() == threads  # restored
    res = json.loads(out.read_text())
    for key in ("host_ratio", "host_ratio_one_thread", "iteration_ratio"):
        assert res["numpy"][key] > 0
    assert res["numpy"]["parameters"] == 4 * (512 * 512 + 512)
    assert res["torch"] == {"skipped": "--no-torch"}
    assert [(s["tensors"], s["size"]) for s in res["small"]] == [(100, 1000), (10, 100_000)]
    assert all(s["small_ratio"] > 0 and s["small_ratio_one_thread"] > 0 for s in res["small"])
    assert len(res["load_avg"]["start"]) == 3 and len(res["load_avg"]["end"]) == 3
    text = capsys.readouterr().out
    assert "fwd+bwd with step / without" in text and "load average" in text


def test_trainer_benchmark_torch_host(tmp_path):
    pytest.importorskip("torch")
    res = _bench_trainer.run(["--rounds", "1", "--iters", "1", "--parts", "torch"])
    assert res["torch"]["parameters"] == 4 * (512 * 512 + 512)
    assert res["torch"]["iteration_ratio"] > 0


def test_trainer_benchmark_rejects_unknown_parts():
    with pytest.raises(SystemExit):
        _bench_trainer.run(["--parts", "numpy,gpu"])
