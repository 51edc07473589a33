"""The benchmark harness (adaptopt.bench) on tiny sweeps: JSON schema, sane values, the skip
rules, the probe, that the configurations come from the rule specs, and that every peer does the
same update as adaptopt. No timing assertions."""

import argparse
import dataclasses
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import adaptopt
import numpy as np
import pytest
from adaptopt import _rules, _storage, bench
from adaptopt.bench import algos, budget, cli, memory, peers, schema, targets
from adaptopt.bench import storage as stm
from adaptopt.bench.measure import torch_version

pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = torch_version() is not None
TINY = ["--threads", "1", "--min-time", "0.005", "--small-tensors", "3x50", "--max-wait", "0",
        "--no-progress", "-q"]

TOP_KEYS = {"version", "schema", "command", "date", "wall_s", "load_avg", "other_load", "machine",
            "settings", "retries", "waited_s", "skipped", "points", "small"}
POINT_KEYS = {"algo", "variant", "name", "rule", "kwargs", "size", "dtype", "storage", "state_dtype",
              "param_mode", "threads", "isa", "n_state", "traffic", "bytes_per_element", "median_s",
              "min_s", "max_s", "steps", "elements_per_s", "gb_per_s", "probe_gb_per_s",
              "probe_median_s", "share_of_probe", "peak_rss_bytes", "rss_growth_bytes", "other_load",
              "floor_size", "floor_s_per_element", "floor_gb_per_s", "bound", "limit_gb_per_s",
              "share_of_limit", "peers"}
PEER_KEYS = {"median_s", "min_s", "max_s", "steps", "elements_per_s", "gb_per_s", "speedup",
             "peak_rss_bytes", "rss_growth_bytes", "other_load", "threads"}
SMALL_KEYS = {"mode", "tensors", "tensor_size", "algo", "variant", "name", "dtype", "storage", "threads",
              "isa", "adaptopt_us", "steps", "other_load", "peers"}


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
    assert d["version"] == adaptopt.__version__ and d["schema"] == schema.SCHEMA == 3
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
        assert (p["storage"], p["state_dtype"], p["param_mode"]) == ("fp32", "float32", "round")
        assert p["floor_size"] > 0 and p["floor_s_per_element"] > 0 and p["bound"] in ("memory", "compute")
        assert p["limit_gb_per_s"] == min(p["probe_gb_per_s"], p["floor_gb_per_s"])
        assert p["share_of_limit"] == pytest.approx(p["gb_per_s"] / p["limit_gb_per_s"])
        assert 0 < p["min_s"] <= p["median_s"] <= p["max_s"]
        assert p["steps"] >= 3
        assert p["bytes_per_element"] == (3 + 2 * p["n_state"]) * 4 == sum(p["traffic"].values())
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
        schema.Run.from_dict({**saved, "schema": 2})
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
    # adaptopt + probe, the compute floor, then numpy: each measured ATTEMPTS times
    assert doc["retries"] == 3 * (budget.ATTEMPTS - 1)
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


# ---------------------------------------------------------------------------------------------
# Storage modes (issue 9): the storage axis, the traffic model per stream, the probe in the same
# widths, the compute floor, the compact-storage peers, the targets and memory modes

BF16 = _storage.BFLOAT16


def test_storage_names():
    s = stm.parse("bf16-sr-8bit")
    assert (s.name, s.param_dtype, s.param_mode, s.state_dtype) == ("bf16-sr-8bit", BF16, "stochastic", "8bit")
    assert s.kwargs == {"state_dtype": "8bit", "stochastic_rounding": True} and not s.plain
    m = stm.parse("bf16-master-bf16state")
    assert m.kwargs == {"state_dtype": "bfloat16", "master_weights": True} and m.master
    assert stm.parse("fp32").kwargs == {} and stm.parse("fp32").plain
    assert stm.parse("fp32-fp32state").name == "fp32" and stm.parse("FP16-SR").name == "fp16-sr"
    assert stm.parse("fp64").state_dtype == "float64" and stm.parse("fp64").plain
    assert stm.parse("bf16").kwargs == {} and not stm.parse("bf16").plain  # RNE, float32 state
    for bad, why in [("int8", "param dtype"), ("fp32-sr", "16-bit"), ("bf16-8bit-sr", "unexpected"),
                     ("fp64-8bit", "float64"), ("bf16-master-sr", "unexpected")]:
        with pytest.raises(ValueError, match=why):
            stm.parse(bad)
    for name in stm.EXAMPLES:
        assert stm.parse(name).name == name


@pytest.mark.parametrize("name, slots, traffic", [
    ("fp32", 2, {"p": 8, "g": 4, "s0": 8, "s1": 8}),  # Adam: 28, as the plain model says
    ("fp64", 1, {"p": 16, "g": 8, "s0": 16}),
    ("bf16-sr-8bit", 2, {"p": 4, "g": 2, "s0": 2, "s0.absmax": 8 / 256, "s1": 2, "s1.absmax": 8 / 256}),
    ("bf16-8bit", 1, {"p": 4, "g": 2, "s0": 2, "s0.absmax": 8 / 256}),
    ("bf16-master-bf16state", 2, {"master": 8, "p": 2, "g": 2, "s0": 4, "s1": 4}),
    ("bf16-master", 2, {"master": 8, "p": 2, "g": 2, "s0": 8, "s1": 8}),
    ("fp16-sr", 0, {"p": 4, "g": 2}),
    ("fp32-8bit", 3, {"p": 8, "g": 4, **{k: v for i in range(3) for k, v in
                                         ((f"s{i}", 2), (f"s{i}.absmax", 8 / 256))}}),
])
def test_traffic_model_per_stream(name, slots, traffic):
    st = stm.parse(name)
    assert st.traffic(slots) == traffic
    assert st.bytes_per_element(slots) == pytest.approx(sum(traffic.values()))
    if st.plain:
        from adaptopt.bench.measure import traffic_bytes

        assert st.bytes_per_element(slots) == traffic_bytes(slots, st.param_dtype.itemsize)


def test_adam_bf16_sr_8bit_moves_about_10_bytes():
    """DESIGN.md: Adam with bf16 params/grads and 8-bit state moves 10 bytes instead of 28 (plus
    the absmax: 2 x 8 bytes per 256 elements); footprint about 6 bytes per parameter."""
    st = stm.parse("bf16-sr-8bit")
    assert st.bytes_per_element(2) == 10 + 16 / 256
    assert st.footprint(2) == 6 + 8 / 256


@pytest.mark.parametrize("name", ["fp32", "bf16-sr-8bit", "bf16-8bit", "bf16-master-bf16state",
                                  "fp16-master", "fp32-8bit", "bf16-bf16state"])
@pytest.mark.parametrize("n_state", [0, 1, 3])
def test_probe_streams_the_storage_widths_without_changing_values(name, n_state):
    """The probe takes the point's buffers in their storage (8-bit slots as (codes, absmax),
    bfloat16 arrays, the float32 master) and leaves every value as it was."""
    st = stm.parse(name)
    n = 1000
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(st.param_dtype)
    g = rng.standard_normal(n).astype(st.param_dtype)
    if st.state_dtype == "8bit":
        states = [_storage.quantize(rng.standard_normal(n).astype(np.float32), unsigned=False)
                  for _ in range(n_state)]
    else:
        sd = BF16 if st.state_dtype == "bfloat16" else np.dtype(np.float32)
        states = [rng.standard_normal(n).astype(sd) for _ in range(n_state)]
    master = p.astype(np.float32) + 1e-3 if st.master else None
    # with a master, p is written as the master rounded (p is not read): it is left out here
    first = [g] if st.master else [p, g]
    before = [x.copy() for x in [*first, *(b for s in states for b in (s if isinstance(s, tuple) else (s,)))]]
    m0 = None if master is None else master.copy()
    probe = bench.BandwidthProbe(n, n_state, p=p, g=g, states=states, storage=st, master=master)
    for _ in range(2):
        probe.run()
    first = [g] if st.master else [p, g]
    after = [*first, *(b for s in states for b in (s if isinstance(s, tuple) else (s,)))]
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))
    if master is not None:
        np.testing.assert_array_equal(master, m0)
        np.testing.assert_array_equal(p.view(np.uint16), master.astype(st.param_dtype).view(np.uint16))
    assert probe.bytes_per_pass == pytest.approx(st.bytes_per_element(n_state) * n)
    own = bench.BandwidthProbe(n, n_state, storage=st)  # buffers made in the storage's widths
    own.run()
    if n_state and st.state_dtype == "8bit":
        assert isinstance(own.states[0], tuple) and own.states[0][0].dtype == np.uint8
    assert own.p.dtype == st.param_dtype and (own.master is not None) == st.master


def test_probe_rejects_buffers_of_another_storage():
    st = stm.parse("bf16-8bit")
    p, g = np.zeros(300, BF16), np.zeros(300, BF16)
    with pytest.raises((ValueError, TypeError)):
        bench.BandwidthProbe(300, 1, p=p, g=g, states=[np.zeros(300, np.float32)], storage=st)
    with pytest.raises((ValueError, TypeError)):  # the absmax of the wrong number of blocks
        bench.BandwidthProbe(300, 1, p=p, g=g, states=[(np.zeros(300, np.uint8), np.zeros(1, np.float32))],
                             storage=st)


def test_probe_states_of_an_optimizer():
    """The sweep gives the probe the optimizer's own buffers: slots in order, 8-bit as pairs."""
    algo = algos.by_name()["adam"]
    p = np.ones(600, BF16)
    opt = algo.make([p], state_dtype="8bit", master_weights=True)
    opt.step([np.ones(600, BF16)])
    states, master = stm.probe_states(algo.spec, opt.state[0])
    assert [type(s) for s in states] == [tuple, tuple] and master is opt.state[0]["master"]
    assert states[0][0] is opt.state[0]["exp_avg"] and states[1][1] is opt.state[0]["exp_avg_sq_absmax"]
    probe = bench.BandwidthProbe(600, 2, p=p, g=np.ones(600, BF16), states=states,
                                 storage=stm.parse("bf16-master-8bit"), master=master)
    probe.run()


@pytest.fixture(scope="module")
def storage_sweep():
    argv = ["--sizes", "1e3", "--algos", "adam,rmsprop", "--storage",
            "fp32,bf16-sr-8bit,bf16-master-bf16state", *TINY]
    return bench.run(argv)


def test_sweep_over_storages(storage_sweep):
    doc = storage_sweep
    assert schema.Run.from_dict(doc).to_dict() == doc
    got = {(p["name"], p["storage"]): p for p in doc["points"]}
    assert set(got) == {(a, s) for a in ("adam", "rmsprop")
                        for s in ("fp32", "bf16-sr-8bit", "bf16-master-bf16state")}
    for (name, st_name), p in got.items():
        st = stm.parse(st_name)
        assert POINT_KEYS == set(p)
        assert p["dtype"] == str(st.param_dtype) and p["state_dtype"] == st.state_dtype
        assert p["traffic"] == st.traffic(p["n_state"])
        assert p["bytes_per_element"] == pytest.approx(sum(p["traffic"].values()))
        assert p["gb_per_s"] == pytest.approx(p["bytes_per_element"] * p["size"] / p["median_s"] / 1e9)
        assert p["floor_gb_per_s"] == pytest.approx(p["bytes_per_element"] / p["floor_s_per_element"] / 1e9)
        assert p["floor_size"] % 256 == 0 and p["floor_size"] * st.footprint(p["n_state"]) <= 1 << 20
        peers_here = set(p["peers"])
        if st.plain:
            assert "numpy" in peers_here and not peers_here & {"torch-fused-fp32", "bnb-8bit"}
        else:
            assert "numpy" not in peers_here and "torch-forloop" not in peers_here
            if HAS_TORCH and name == "adam":
                assert {"torch-fused-fp32", "torch-fused-bf16"} <= peers_here
                assert ("bnb-8bit" in peers_here) == (st.state_dtype == "8bit")
    assert {s["storage"] for s in doc["small"]} == {"fp32", "bf16-sr-8bit", "bf16-master-bf16state"}
    assert got["adam", "bf16-sr-8bit"]["n_state"] == 2 and got["rmsprop", "bf16-sr-8bit"]["n_state"] == 1


def test_missing_bitsandbytes_is_a_recorded_skip(monkeypatch):
    if not HAS_TORCH:
        pytest.skip("torch is not installed")
    monkeypatch.setattr(peers, "bnb_status", lambda: (None, "bitsandbytes is not installed (test)"))
    doc = bench.run(["--sizes", "1e3", "--algos", "adam", "--storage", "bf16-sr-8bit", "--no-small",
                     "--peers", "bnb-8bit,torch-fused-fp32", *TINY])
    (p,) = doc["points"]
    assert p["peers"]["bnb-8bit"] == {"skipped": "bitsandbytes is not installed (test)"}
    assert "speedup" in p["peers"]["torch-fused-fp32"]
    assert any(s["what"].startswith("bnb-8bit adam") and "not installed" in s["reason"] for s in doc["skipped"])


def test_storage_command_line():
    args = cli.parse_args(["--storage", "fp32,bf16-sr-8bit,fp32"])
    assert [s.name for s in args.storages] == ["fp32", "bf16-sr-8bit"]
    assert [s.name for s in cli.parse_args(["--dtype", "float32,float64"]).storages] == ["fp32", "fp64"]
    assert [s.name for s in cli.parse_args([]).storages] == ["fp32"]
    for bad in (["--storage", "bf16-xyz"], ["--storage", "fp32", "--dtype", "float64"], ["--peers", "nope"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)
    assert "bf16-sr-8bit" in cli.build_parser().format_help()


STORAGE_CASES = [("adam", "bf16-sr-8bit"), ("adam", "bf16-8bit"), ("adam", "fp32-8bit"),
                 ("adamw", "bf16-sr-8bit"), ("adam", "bf16-master-bf16state"), ("adam", "bf16-sr"),
                 ("rmsprop", "bf16-8bit"), ("adagrad", "bf16-master"), ("sgd-momentum", "bf16-sr")]


def _storage_steps(algo, st, peer=None, steps=8):
    """(params after ``steps`` steps from the same start and gradients: the float32 reference
    adaptopt, and adaptopt at the storage or the peer), as float64. The gradients have a
    consistent sign per element, so that every rule moves every element by about lr per step."""
    rng = np.random.default_rng(0)
    n = 4096
    p0 = (rng.standard_normal(n) * 0.05).astype(st.param_dtype)
    c = rng.standard_normal(n)
    gs = [(c + 0.5 * rng.standard_normal(n)).astype(st.param_dtype) for _ in range(steps)]
    ref, g32 = p0.astype(np.float32), np.empty(n, np.float32)
    opt = algo.make([ref])
    for x in gs:
        g32[:] = x
        opt.step([g32])
    p, g = p0.copy(), np.empty(n, st.param_dtype)
    if peer is None:
        opt = algo.make([p], **st.kwargs)
        step = functools.partial(opt.step, [g])
    else:
        step = peer.make(algo, [p], [g], st)
    for x in gs:
        g[:] = x
        for copy in getattr(step, "grads", ()):  # torch-fused-fp32 steps float32 copies
            copy[:] = x
        step()
    if hasattr(step, "tensors"):
        p = step.tensors[0].numpy()
    f64 = np.float64
    return p0.astype(f64), ref.astype(f64), p.astype(f64)


@pytest.mark.parametrize("algo_name, st_name", STORAGE_CASES)
def test_peers_do_the_same_update_at_compact_storages(algo_name, st_name):
    """At a compact storage, adaptopt and every peer that runs there compute the float32 update
    up to their storage's rounding: the difference from the float32 reference stays a small
    fraction of the update (8-bit codes: 3 mantissa bits; bfloat16: 8), and far below it."""
    algo, st = algos.by_name()[algo_name], stm.parse(st_name)
    p0, ref, ours = _storage_steps(algo, st)
    moved = np.abs(ref - p0)
    scale = moved.mean()
    assert scale > 0
    ran = {"adaptopt": ours}
    for peer in peers.make_peers(with_torch=True):
        if peer.supports(algo, st) is None and getattr(peer, "unavailable", lambda: None)() is None:
            ran[peer.name] = _storage_steps(algo, st, peer)[2]
    for name, p in ran.items():
        err = np.abs(p - ref)
        assert np.all(np.isfinite(p)), name
        assert err.mean() <= 0.08 * scale, (name, err.mean() / scale)
        assert np.quantile(err, 0.99) <= 0.5 * scale, (name, np.quantile(err, 0.99) / scale)
    if HAS_TORCH and algo.spec.name in ("Adam", "AdamW", "Adagrad"):
        assert "torch-fused-fp32" in ran
        assert ("torch-fused-bf16" in ran) == (st.param_dtype == BF16)
        if st.state_dtype == "8bit" and algo.spec.name != "Adagrad" and peers.bnb_status()[1] is None:
            assert "bnb-8bit" in ran


def test_a_wrong_update_fails_the_compact_comparison():
    """The tolerance above separates the update from a different one: Adam with lr x 1.5."""
    algo, st = algos.by_name()["adam"], stm.parse("bf16-sr-8bit")
    p0, ref, _ = _storage_steps(algo, st)
    wrong = dataclasses.replace(algo, variant=_rules.Variant("plain", {"lr": 1.5e-3}))
    _, _, other = _storage_steps(wrong, st)
    assert np.abs(other - ref).mean() > 0.08 * np.abs(ref - p0).mean()


def test_targets_mode_tiny(tmp_path):
    out = tmp_path / "t.json"
    argv = ["--size", "2e4", "--rounds", "2", "--min-time", "0.005", "--max-wait", "0", "--threads", "1",
            "--json", str(out), "-q"]
    doc = targets.run(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(doc))
    assert doc["command"] == ["adaptopt-bench", "targets", *argv]
    assert len(doc["rounds"]) == 2
    for points in doc["rounds"]:
        assert [(p["algo"], p["storage"]) for p in points if True] and \
            {(p["algo"], p["storage"]) for p in points} == set(targets.PLAN)
    assert [(p["algo"], p["storage"]) for p in doc["rounds"][1]] == list(targets.PLAN[::-1])
    names = [t["target"] for t in doc["targets"]]
    assert len(names) == len(targets.TARGETS) and all(t["goal"] > 0 for t in doc["targets"])
    for t in doc["targets"]:
        assert len(t["rounds"]) == 2
        if t["median"] is not None:
            assert t["met"] == (t["median"] >= t["goal"])
    r0 = {(p["algo"], p["storage"]): p for p in doc["rounds"][0]}
    faster = next(t for t in doc["targets"] if t["target"].startswith("rmsprop bf16-8bit"))
    assert faster["rounds"][0] == pytest.approx(r0["rmsprop", "fp32"]["median_s"] / r0["rmsprop", "bf16-8bit"]["median_s"])
    if HAS_TORCH:
        vs_fp32 = doc["targets"][0]
        assert vs_fp32["rounds"][0] == r0["adam", "bf16-sr-8bit"]["peers"]["torch-fused-fp32"]["speedup"]
    for f in doc["last_round"].values():
        assert f["bound"] in ("memory", "compute")


def test_memory_mode_tiny(tmp_path):
    out = tmp_path / "m.json"
    doc = memory.run(["--params", "3e5", "--steps", "2", "--json", str(out), "-q"])
    assert json.loads(out.read_text())["params"] == 300000
    assert (doc["algo"], doc["storage"]) == ("adam", "bf16-sr-8bit")
    assert doc["array_bytes"] == 4 * 300000
    assert doc["state_bytes"] == 2 * (300000 + 4 * -(-300000 // 256))
    assert doc["model_bytes_per_param"] == pytest.approx(6 + 8 / 256)
    assert doc["peak_rss_bytes"] >= doc["rss_before_bytes"] > 0 and len(doc["step_s"]) == 2


def test_chunked_fill_makes_no_wide_temporary():
    a = memory.chunked(10**5 + 7, BF16, seed=1, scale=1.0)
    assert a.dtype == BF16 and a.size == 10**5 + 7 and np.isfinite(a.astype(np.float32)).all()


def test_storage_tables_script(storage_sweep, tmp_path):
    sweep_json = tmp_path / "s.json"
    sweep_json.write_text(json.dumps(storage_sweep))
    tdoc = targets.run(["--size", "1e4", "--rounds", "1", "--min-time", "0.005", "--max-wait", "0",
                        "--threads", "1", "--no-bnb", "-q", "--json", str(tmp_path / "t.json")])
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "make_storage_table.py"), "--targets",
                          str(tmp_path / "t.json"), "--sweep", str(sweep_json)],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("| target | goal |") and "| adam | bf16-sr-8bit | 1 |" in out
    assert len([line for line in out.splitlines() if line.startswith("| adam |")]) == 3
    assert any(t["rounds"] == [None] for t in tdoc["targets"] if "bitsandbytes" in t["target"])
