"""The benchmark harness (adaptopt.bench) on tiny sweeps: JSON schema, sane values, the skip
rules, the probe, and that every peer does the same update as adaptopt. No timing assertions."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import adaptopt
import numpy as np
import pytest
from adaptopt import bench
from adaptopt._bench_algos import ALGOS, make_peers, torch_version

pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = torch_version() is not None
TINY = ["--threads", "1", "--min-time", "0.005", "--small-tensors", "3x50", "--max-wait", "0",
        "--no-progress", "-q"]

POINT_KEYS = {"algo", "variant", "name", "size", "dtype", "threads", "isa", "n_state",
              "bytes_per_element", "median_s", "min_s", "max_s", "steps", "elements_per_s",
              "gb_per_s", "probe_gb_per_s", "probe_median_s", "share_of_probe", "peak_rss_bytes",
              "rss_growth_bytes", "other_load", "peers"}
PEER_KEYS = {"median_s", "min_s", "max_s", "steps", "elements_per_s", "gb_per_s", "speedup",
             "peak_rss_bytes", "rss_growth_bytes", "other_load", "threads"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One tiny sweep (torch peers included when torch is installed), written to JSON and PNG."""
    isa, threads = adaptopt.isa(), adaptopt.get_num_threads()
    out = tmp_path_factory.mktemp("bench")
    argv = ["--sizes", "1e3,1e4", "--algos", "rmsprop,adam", *TINY, "--json", str(out / "r.json")]
    has_mpl = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        has_mpl = False
    if has_mpl:
        argv += ["--plot", str(out / "r.png")]
    doc = bench.run(argv)
    assert (adaptopt.isa(), adaptopt.get_num_threads()) == (isa, threads)  # restored
    with open(out / "r.json") as f:
        saved = json.load(f)
    return dict(doc=doc, saved=saved, dir=out, has_mpl=has_mpl)


def test_json_top_level(sweep):
    d = sweep["saved"]
    assert {"version", "schema", "command", "date", "wall_s", "load_avg", "other_load", "machine",
            "settings", "retries", "waited_s", "skipped", "points", "small"} <= set(d)
    assert d["version"] == adaptopt.__version__
    assert d["command"][0] == "adaptopt-bench" and "--sizes" in d["command"]
    m = d["machine"]
    assert {"cpu_model", "cores", "memory_bytes", "isa", "available_isas", "numpy",
            "torch"} <= set(m)
    assert m["cores"] >= 1 and m["memory_bytes"] > 0 and m["isa"] in m["available_isas"]
    assert m["numpy"] == np.__version__
    assert (m["torch"] is not None) == HAS_TORCH


def test_points(sweep):
    points = sweep["saved"]["points"]
    assert sorted((p["name"], p["size"]) for p in points) == [
        ("adam", 1000), ("adam", 10000), ("rmsprop", 1000), ("rmsprop", 10000)]
    for p in points:
        assert POINT_KEYS <= set(p), POINT_KEYS - set(p)
        assert p["dtype"] == "float32" and p["threads"] == 1 and p["isa"] == adaptopt.isa()
        assert 0 < p["min_s"] <= p["median_s"] <= p["max_s"]
        assert p["steps"] >= 3
        assert p["bytes_per_element"] == (3 + 2 * p["n_state"]) * 4
        traffic = p["bytes_per_element"] * p["size"]
        assert p["gb_per_s"] == pytest.approx(traffic / p["median_s"] / 1e9)
        assert p["share_of_probe"] > 0 and p["probe_gb_per_s"] > 0
        assert p["peak_rss_bytes"] > 0 and p["rss_growth_bytes"] >= 0 and p["other_load"] >= 0
        expected = {"numpy"} | ({"torch-forloop", "torch-foreach"} if HAS_TORCH else set())
        if HAS_TORCH and p["algo"] == "adam":
            expected.add("torch-fused")
        assert set(p["peers"]) == expected
        for name, peer in p["peers"].items():
            assert PEER_KEYS <= set(peer), (name, PEER_KEYS - set(peer))
            assert peer["median_s"] > 0 and peer["speedup"] > 0
            assert peer["speedup"] == pytest.approx(peer["median_s"] / p["median_s"])
            assert peer["threads"] == 1


def test_small(sweep):
    small = sweep["saved"]["small"]
    assert sorted((s["algo"], s["mode"]) for s in small) == [
        ("adam", "1"), ("adam", "3x50"), ("rmsprop", "1"), ("rmsprop", "3x50")]
    for s in small:
        assert s["adaptopt_us"] > 0 and s["steps"] >= 3 and s["threads"] == 1
        assert s["other_load"] >= 0
        assert (s["tensors"], s["tensor_size"]) == ((3, 50) if s["mode"] == "3x50" else (1, 1))
        assert "numpy" in s["peers"]
        for peer in s["peers"].values():
            assert peer["us"] > 0 and peer["speedup"] > 0


def test_plot_and_table(sweep):
    if sweep["has_mpl"]:
        png = sweep["dir"] / "r.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "make_table.py"),
                          str(sweep["dir"] / "r.json"), "--sizes", "1e3,1e4"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("| algorithm | size |") and "| rmsprop | 1e4 |" in out


def test_memory_cap_skips_points(tmp_path):
    doc = bench.run(["--sizes", "1e3,1e5", "--algos", "adagrad", "--max-memory", "100K",
                     "--no-small", "--no-torch", *TINY])
    assert [p["size"] for p in doc["points"]] == [1000]
    assert any("adagrad 1e5" in s["what"] and "limit" in s["reason"] for s in doc["skipped"])


def test_peer_time_budget_skips_slow_peers(monkeypatch):
    monkeypatch.setattr(bench, "SLOW_PEER_SIZE", 1000)
    doc = bench.run(["--sizes", "1e3,1e4", "--algos", "rmsprop", "--peer-budget", "1e-9",
                     "--no-small", "--no-torch", *TINY])
    by_size = {p["size"]: p for p in doc["points"]}
    assert "median_s" in by_size[1000]["peers"]["numpy"]
    assert "predicted" in by_size[10000]["peers"]["numpy"]["skipped"]
    assert any(s["what"].startswith("numpy rmsprop 1e4") for s in doc["skipped"])


def test_disturbed_measurements_are_repeated(monkeypatch):
    monkeypatch.setattr(bench, "BUSY", -1.0)  # every measurement looks disturbed
    monkeypatch.setattr(bench, "QUIET", float("inf"))  # and the machine is quiet at once
    monkeypatch.setattr(bench, "QUIET_WINDOW", 0.001)
    argv = ["--sizes", "1e3", "--algos", "adagrad", "--no-small", "--no-torch", *TINY]
    argv[argv.index("--max-wait") + 1] = "5"
    doc = bench.run(argv)
    # adaptopt + probe, then numpy: each measured ATTEMPTS times
    assert doc["retries"] == 2 * (bench.ATTEMPTS - 1)
    assert [p["size"] for p in doc["points"]] == [1000]


@pytest.mark.parametrize("n_state", [0, 1, 2, 3])
def test_probe_streams_without_changing_values(n_state):
    p = np.linspace(-1, 1, 1001, dtype=np.float64)
    g = np.full_like(p, 3.0)
    probe = bench.BandwidthProbe(p.size, n_state, p.dtype, p, g)
    before = p.copy()
    probe.run()
    np.testing.assert_array_equal(p, before)
    assert probe.bytes_per_pass == (3 + 2 * n_state) * 8 * 1001
    with pytest.raises(ValueError):
        bench.BandwidthProbe(10, 4)
    with pytest.raises(ValueError, match="states"):
        bench.BandwidthProbe(p.size, 2, p.dtype, p, g, states=[np.zeros_like(p)])


@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: a.name)
def test_peers_do_the_same_update(algo):
    """The comparison is fair only if every peer computes adaptopt's update."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(100)
    grads = [rng.standard_normal(100) for _ in range(4)]
    ref, g = p0.copy(), np.empty(100)
    opt = algo.make([ref])
    for x in grads:
        g[:] = x
        opt.step([g])
    for peer in make_peers(with_torch=True):
        if peer.supports(algo) is not None:
            continue
        p = p0.copy()
        step = peer.make(algo, [p], [g])
        for x in grads:
            g[:] = x
            step()
        np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12, err_msg=peer.name)


def test_parsers():
    assert bench.parse_sizes("1e4,1e6,5000") == [10**4, 10**6, 5000]
    assert bench.parse_memory("20G") == 20 * 2**30
    assert bench.parse_memory("512MiB") == 512 * 2**20
    assert bench.parse_memory("1000") == 1000
    for bad in ("0", "1.5", "x"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            bench.parse_sizes(bad)
    with pytest.raises(SystemExit):
        bench.parse_args(["--algos", "sgd"])
    args = bench.parse_args(["--quick"])
    assert args.sizes == bench.QUICK_SIZES and len(args.threads) == 1


def test_entry_points():
    r = subprocess.run([sys.executable, "-m", "adaptopt.bench", "--help"], capture_output=True,
                       text=True, check=True)
    assert "--max-memory" in r.stdout
    exe = shutil.which("adaptopt-bench")
    if exe is not None:
        assert "--quick" in subprocess.run([exe, "--help"], capture_output=True, text=True,
                                           check=True).stdout
