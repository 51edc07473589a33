"""The benchmark harness (adaptopt.bench) on tiny sweeps: JSON schema, sane values, the skip
rules, the probe, that the configurations come from the rule specs, and that every peer does the
same update as adaptopt. No timing assertions."""

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import adaptopt
import numpy as np
import pytest
from adaptopt import _rules, bench
from adaptopt.bench import algos, budget, cli, peers, schema
from adaptopt.bench.measure import torch_version

pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = torch_version() is not None
TINY = ["--threads", "1", "--min-time", "0.005", "--small-tensors", "3x50", "--max-wait", "0",
        "--no-progress", "-q"]

TOP_KEYS = {"version", "schema", "command", "date", "wall_s", "load_avg", "other_load", "machine",
            "settings", "retries", "waited_s", "skipped", "points", "small"}
POINT_KEYS = {"algo", "variant", "name", "rule", "kwargs", "size", "dtype", "threads", "isa",
              "n_state", "bytes_per_element", "median_s", "min_s", "max_s", "steps",
              "elements_per_s", "gb_per_s", "probe_gb_per_s", "probe_median_s", "share_of_probe",
              "peak_rss_bytes", "rss_growth_bytes", "other_load", "peers"}
PEER_KEYS = {"median_s", "min_s", "max_s", "steps", "elements_per_s", "gb_per_s", "speedup",
             "peak_rss_bytes", "rss_growth_bytes", "other_load", "threads"}
SMALL_KEYS = {"mode", "tensors", "tensor_size", "algo", "variant", "name", "dtype", "threads", "isa",
              "adaptopt_us", "steps", "other_load", "peers"}


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
    return {"doc": doc, "saved": saved, "dir": out, "has_mpl": has_mpl}


def test_json_top_level(sweep):
    d = sweep["saved"]
    assert TOP_KEYS <= set(d)
    assert d["version"] == adaptopt.__version__ and d["schema"] == schema.SCHEMA == 2
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
        assert p["rule"] == {"adam": "Adam", "rmsprop": "RMSprop"}[p["algo"]] and p["kwargs"] == {}
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
        assert SMALL_KEYS <= set(s) and s["name"] == s["algo"] and s["variant"] == "plain"
        assert s["adaptopt_us"] > 0 and s["steps"] >= 3 and s["threads"] == 1
        assert s["other_load"] >= 0
        assert (s["tensors"], s["tensor_size"]) == ((3, 50) if s["mode"] == "3x50" else (1, 1))
        assert "numpy" in s["peers"]
        for peer in s["peers"].values():
            assert peer["us"] > 0 and peer["speedup"] > 0


def _fields(cls):
    return {f.name for f in dataclasses.fields(cls)}


def test_schema_dataclasses_are_the_json(sweep):
    """The dataclasses' fields are the document's keys, and a written document reads back."""
    saved = sweep["saved"]
    assert sweep["doc"] == saved  # run() returns what --json writes
    assert schema.Run.from_dict(saved).to_dict() == saved
    assert _fields(schema.Run) == TOP_KEYS == set(saved)
    assert _fields(schema.Point) == POINT_KEYS
    assert _fields(schema.PeerResult) == PEER_KEYS
    assert _fields(schema.SmallPoint) == SMALL_KEYS
    assert _fields(schema.Machine) == set(saved["machine"])
    assert _fields(schema.Settings) == set(saved["settings"])
    assert _fields(schema.PeerSkipped) == {"skipped"} and _fields(schema.Skip) == {"what", "reason"}
    assert schema.PeerSkipped("why").to_dict() == {"skipped": "why"}
    with pytest.raises(ValueError, match="schema"):
        schema.Run.from_dict({**saved, "schema": 1})
    inf = dataclasses.replace(schema.Run.from_dict(saved),
                              settings=schema.Settings(0.1, float("inf"), None, 0.0))
    assert inf.to_dict()["settings"]["peer_budget_s"] is None  # JSON has no inf


def test_plot_and_table(sweep):
    if sweep["has_mpl"]:
        png = sweep["dir"] / "r.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "make_table.py"),
                          str(sweep["dir"] / "r.json"), "--sizes", "1e3,1e4"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("| algorithm | size |") and "| rmsprop | 1e4 |" in out


def test_table_of_a_schema_1_document():
    """bench/results.json was written by schema 1 (small steps named in ``algo``)."""
    path = ROOT / "bench" / "results.json"
    if json.loads(path.read_text())["schema"] != 1:
        pytest.skip("bench/results.json is no longer a schema 1 document")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "make_table.py"), str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert "| rmsprop-momentum | 1e8 |" in out and "| rmsprop-momentum | 100x1000 |" in out


def test_sgd_and_new_rules_are_benchmarked():
    doc = bench.run(["--sizes", "1e3", "--algos", "sgd,sgd-momentum,nadam", "--no-small", *TINY])
    by_name = {p["name"]: p for p in doc["points"]}
    assert set(by_name) == {"sgd", "sgd-momentum", "nadam"}
    assert (by_name["sgd"]["n_state"], by_name["sgd-momentum"]["n_state"], by_name["nadam"]["n_state"]) \
        == (0, 1, 2)
    assert by_name["sgd"]["bytes_per_element"] == 12 and by_name["sgd-momentum"]["kwargs"] == {"momentum": 0.9}
    for p in by_name.values():
        assert "numpy" in p["peers"]
        assert ("torch-forloop" in p["peers"]) == HAS_TORCH


def test_memory_cap_skips_points(tmp_path):
    doc = bench.run(["--sizes", "1e3,1e5", "--algos", "adagrad", "--max-memory", "100K",
                     "--no-small", "--no-torch", *TINY])
    assert [p["size"] for p in doc["points"]] == [1000]
    assert any("adagrad 1e5" in s["what"] and "limit" in s["reason"] for s in doc["skipped"])


def test_peer_time_budget_skips_slow_peers(monkeypatch):
    monkeypatch.setattr(budget, "SLOW_PEER_SIZE", 1000)
    doc = bench.run(["--sizes", "1e3,1e4", "--algos", "rmsprop", "--peer-budget", "1e-9",
                     "--no-small", "--no-torch", *TINY])
    by_size = {p["size"]: p for p in doc["points"]}
    assert "median_s" in by_size[1000]["peers"]["numpy"]
    assert "predicted" in by_size[10000]["peers"]["numpy"]["skipped"]
    assert any(s["what"].startswith("numpy rmsprop 1e4") for s in doc["skipped"])


def test_disturbed_measurements_are_repeated(monkeypatch):
    monkeypatch.setattr(budget, "BUSY", -1.0)  # every measurement looks disturbed
    monkeypatch.setattr(budget, "QUIET", float("inf"))  # and the machine is quiet at once
    monkeypatch.setattr(budget, "QUIET_WINDOW", 0.001)
    argv = ["--sizes", "1e3", "--algos", "adagrad", "--no-small", "--no-torch", *TINY]
    argv[argv.index("--max-wait") + 1] = "5"
    doc = bench.run(argv)
    # adaptopt + probe, then numpy: each measured ATTEMPTS times
    assert doc["retries"] == 2 * (budget.ATTEMPTS - 1)
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


# ---------------------------------------------------------------------------------------------
# The configurations come from the rule specs


def test_every_spec_variant_is_benchmarked():
    configs = algos.configurations()
    assert [(a.spec.name, a.variant.name) for a in configs] == [
        (s.name, v.name) for s in _rules.SPECS for v in s.variants]
    names = [a.name for a in configs]
    assert {"rmsprop", "rmsprop-momentum", "rmsprop-centered", "rmsprop-nesterov", "adagrad",
            "adadelta", "adam", "adam-amsgrad", "adamw", "sgd", "sgd-momentum", "nadam", "radam",
            "adamax"} == set(names)
    assert len(set(names)) == len(names)
    rng = np.random.default_rng(0)
    for a in configs:  # n_state is the number of state arrays adaptopt's step streams
        opt = a.make([rng.standard_normal(10)])
        opt.step([rng.standard_normal(10)])
        arrays = [v for v in opt.state[0].values() if isinstance(v, np.ndarray)]
        assert a.n_state == len(arrays), a.name
    assert cli.parse_args(["--algos", ",".join(names)]).algos == list(configs)


def test_a_new_spec_is_benchmarked_with_no_bench_edit(monkeypatch):
    new = _rules.ADAM.variant("Adamish", defaults={}, fixed={}, doc="",
                              variants=(_rules.Variant("plain"), _rules.Variant("amsgrad", {"amsgrad": True})))
    monkeypatch.setattr(_rules, "SPECS", (*_rules.SPECS, new))
    names = [a.name for a in algos.configurations()]
    assert names[-2:] == ["adamish", "adamish-amsgrad"]
    args = cli.parse_args(["--algos", "adamish-amsgrad"])
    assert [(a.spec, a.kwargs, a.n_state) for a in args.algos] == [(new, {"amsgrad": True}, 3)]
    if HAS_TORCH:
        assert "has no Adamish" in peers.TorchPeer("forloop", 2).supports(args.algos[0])
    assert peers.NumpyPeer().supports(args.algos[0]) is None


def test_torch_peers_follow_torch_lacks():
    if not HAS_TORCH:
        pytest.skip("torch is not installed")
    table = algos.by_name()
    forloop, fused = peers.TorchPeer("forloop", 2), peers.TorchPeer("fused", 0)
    assert "nesterov" in forloop.supports(table["rmsprop-nesterov"])  # RMSprop.torch_lacks
    for name in ("rmsprop", "rmsprop-momentum", "rmsprop-centered", "sgd", "nadam", "adamax"):
        assert forloop.supports(table[name]) is None, name
    assert fused.supports(table["adam"]) is None
    assert "fused" in fused.supports(table["rmsprop"])


def _steps_of(peer, algo):
    """adaptopt's parameter and the peer's after the same float64 steps (8: RAdam's
    rectification starts at step 6)."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(100)
    grads = [rng.standard_normal(100) for _ in range(8)]
    ref, g = p0.copy(), np.empty(100)
    opt = algo.make([ref])
    for x in grads:
        g[:] = x
        opt.step([g])
    p = p0.copy()
    step = peer.make(algo, [p], [g])
    for x in grads:
        g[:] = x
        step()
    return p, ref


@pytest.fixture
def torch_double_scalars():
    """torch.optim keeps scalar state (NAdam's mu_product, the step) in the default dtype,
    float32, which alone moves NAdam's float64 result by ~1e-9: compare formulas in double."""
    if not HAS_TORCH:
        yield
        return
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("algo", algos.configurations(), ids=lambda a: a.name)
def test_peers_do_the_same_update(algo, torch_double_scalars):
    """The comparison is fair only if every peer computes adaptopt's update."""
    ran = []
    for peer in peers.make_peers(with_torch=True):
        if peer.supports(algo) is not None:
            continue
        p, ref = _steps_of(peer, algo)
        np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12, err_msg=peer.name)
        ran.append(peer.name)
    assert "numpy" in ran
    if HAS_TORCH and not set(algo.uses()) & algo.spec.torch_lacks:
        assert {"torch-forloop", "torch-foreach"} <= set(ran)


# ---------------------------------------------------------------------------------------------
# Command line


def test_parsers():
    assert bench.parse_sizes("1e4,1e6,5000") == [10**4, 10**6, 5000]
    assert bench.parse_memory("20G") == 20 * 2**30
    assert bench.parse_memory("512MiB") == 512 * 2**20
    assert bench.parse_memory("1000") == 1000
    for bad in ("0", "1.5", "x"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            bench.parse_sizes(bad)
    with pytest.raises(SystemExit):
        bench.parse_args(["--algos", "nosuchrule"])
    args = bench.parse_args(["--quick"])
    assert args.sizes == bench.QUICK_SIZES and len(args.threads) == 1
    assert [a.name for a in args.algos] == list(algos.QUICK)


def test_modes(monkeypatch, capsys):
    """``adaptopt-bench [MODE] ...``: the sweep is the default; a mode is one MODES entry."""
    seen = []
    monkeypatch.setitem(cli.MODES, "other", lambda argv: seen.append(argv) or 3)
    assert bench.main(["other", "--x", "1"]) == 3 and seen == [["--x", "1"]]
    for argv in (["--help"], ["sweep", "--help"]):
        with pytest.raises(SystemExit) as e:
            bench.main(argv)
        assert e.value.code == 0 and "--max-memory" in capsys.readouterr().out


def test_entry_points():
    r = subprocess.run([sys.executable, "-m", "adaptopt.bench", "--help"], capture_output=True,
                       text=True, check=True)
    assert "--max-memory" in r.stdout
    exe = shutil.which("adaptopt-bench")
    if exe is not None:
        assert "--quick" in subprocess.run([exe, "--help"], capture_output=True, text=True,
                                           check=True).stdout


def test_stats_overhead_script_takes_the_configurations():
    script = str(ROOT / "bench" / "stats_overhead.py")
    out = subprocess.run([sys.executable, script, "--size", "1e3", "--repeats", "1", "--threads", "1",
                          "--algos", "sgd,nadam"], capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["sgd", "nadam"]
    bad = subprocess.run([sys.executable, script, "--algos", "nosuchrule"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode != 0 and "adamax" in bad.stderr
