"""``eventsim bench``: its records, its table, the missing peers, the peers' LeNets, what it measures (not how fast)."""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

from eventsim.bench import memory, suite
from eventsim.bench.peers import PEERS
from eventsim.bench.report import table, with_ratios
from eventsim.bench.suite import cases
from eventsim.bench.workloads import Case, nmnist_batch
from eventsim.cli import main
from eventsim.errors import OptionError
from eventsim.learning.runs import Job
from shared_data import data_root

REQUIRED = {"workload", "system", "T", "threads", "seconds_per_sample", "peak_rss_mb"}
HAS_PEER = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("snntorch") is not None
LENET_PEERS = ("snntorch", "norse", "spikingjelly", "sinabs", "pytorch")
SMALL = ["--steps", "2", "--batch", "2", "--repeats", "1"]


def bench(*args: str) -> str:
    """What ``eventsim bench ARGS`` prints on stdout (it must exit 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", *args, "--data", str(data_root())]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return json.loads(bench(*SMALL, "--json", "--workloads", "lenet-nmnist-train", "lenet-nmnist-infer",
                            "conv-scatter"))


@pytest.mark.slow  # the records: a bench run of every system in fresh processes (a minute); .ci/run runs it
def test_records_have_the_required_keys_and_sane_values(records):
    pairs = {(r["workload"], r["system"]) for r in records}
    assert pairs == {("lenet-nmnist-train", "eventsim-lee2020"), ("lenet-nmnist-train", "eventsim-bptt"),
                     *(("lenet-nmnist-train", p) for p in LENET_PEERS), ("lenet-nmnist-infer", "eventsim"),
                     *(("lenet-nmnist-infer", p) for p in LENET_PEERS), ("conv-scatter", "eventsim"),
                     ("add-peak", "machine")}
    for r in records:
        assert REQUIRED <= set(r), r
        assert "failed" not in r, r
        assert r["repeats"] == 1
        if "skipped" in r:  # only a peer, only without its packages
            assert r["system"] in LENET_PEERS and PEERS[r["system"]].missing_reason() is not None
            continue
        assert r["peak_rss_mb"] > 0 and r["seconds"] > 0
        per_core = r["workload"] in ("conv-scatter", "add-peak")
        assert r["threads"] == (1 if per_core else 2) and r["T"] == (None if r["workload"] == "add-peak" else 2)
        if r["workload"] == "add-peak":
            assert r["seconds_per_sample"] is None and r["adds_per_s"] > 0
        else:
            assert r["seconds_per_sample"] > 0
        applies = r["system"].startswith("eventsim") or r["workload"] == "conv-scatter"
        assert ("synops_per_s" in r) == applies, r
        if applies:
            assert r["synops_per_s"] > 0 and r["synops_per_sample"] > 0
        if r["system"] in LENET_PEERS:  # checked against eventsim before it was timed
            assert r["predictions_equal"] == 1.0 and r["readout_max_difference"] < 1e-6
            assert ("backward_note" in r) == (r["system"] == "sinabs" and r["workload"] == "lenet-nmnist-train")


@pytest.mark.slow  # the records: a bench run of every system in fresh processes (a minute); .ci/run runs it
def test_synops_are_the_exact_count_of_the_batch(records):
    """conv-scatter's SynOps against the count of in-bounds synapses per input event (5x5, padding 2,
    34x34, 20 output channels), and the training steps' forward passes against inference's."""
    by = {(r["workload"], r["system"]): r for r in records}
    events, _ = nmnist_batch(Case("conv-scatter", "eventsim", 2, 1, 2, 1, str(data_root())), Job(steps=2))
    y, x = np.divmod(events.index % (34 * 34), 34)

    def reach(v):  # output rows (or columns) within 2 of v inside 0..33
        return np.minimum(v + 2, 33) - np.maximum(v - 2, 0) + 1

    expected = int(np.sum(reach(y) * reach(x))) * 20 / 2
    assert by["conv-scatter", "eventsim"]["synops_per_sample"] == expected
    infer = by["lenet-nmnist-infer", "eventsim"]["synops_per_sample"]
    assert infer > expected  # the first conv is one of four weighted layers
    for rule in ("eventsim-lee2020", "eventsim-bptt"):
        assert by["lenet-nmnist-train", rule]["synops_per_sample"] == infer


def test_add_peak_joins_conv_scatter_and_per_core_workloads_run_once_on_one_core():
    run = cases(["conv-scatter"], [5, 7], [1, 2], batch=3, repeats=1, data=None)
    assert [(c.workload, c.steps, c.threads) for c in run] == [("add-peak", None, 1), ("conv-scatter", 5, 1),
                                                               ("conv-scatter", 7, 1)]
    run = cases(["lenet-nmnist-infer"], [5], [1, 2], batch=3, repeats=1, data=None)
    assert [(c.system, c.threads) for c in run] == [(s, n) for n in (1, 2) for s in ("eventsim", *LENET_PEERS)]
    run = cases(["lenet-nmnist-infer", "lenet-nmnist-train", "add-peak"], [5], [2], batch=3, repeats=1, data=None,
                systems=["eventsim", "eventsim-bptt"])
    assert [(c.workload, c.system) for c in run] == [("add-peak", "machine"), ("lenet-nmnist-infer", "eventsim"),
                                                     ("lenet-nmnist-train", "eventsim-bptt")]
    with pytest.raises(OptionError, match="system"):
        suite.run_bench(["lenet-nmnist-infer"], steps=[5], systems=["eventsim-bptt"], progress=None)


@pytest.mark.slow  # the records: a bench run of every system in fresh processes (a minute); .ci/run runs it
def test_the_table_prints_the_speedup_over_the_fastest_peer_of_its_own_times(records):
    if not HAS_PEER:
        pytest.skip("the speed-up needs a peer (torch and snntorch)")
    rows = [line.split() for line in table(records).splitlines()[1:] if line.startswith("lenet")]
    ms = {(cells[0], cells[1]): float(cells[4]) for cells in rows if cells[4] != "-"}
    checked = 0
    for cells in rows:
        if cells[1].startswith("eventsim"):
            best = min(ms[cells[0], p] for p in LENET_PEERS if (cells[0], p) in ms)
            printed = float(cells[8].rstrip("x"))
            # Each time is printed to 4 significant digits: the quotient is good to 2 parts in 1e3.
            assert printed == pytest.approx(best / ms[cells[0], cells[1]], rel=2e-3)
            fastest = next(p for p in LENET_PEERS if ms.get((cells[0], p)) == best)
            assert f"best peer {PEERS[fastest].title}" in " ".join(cells[9:])
            checked += 1
    assert checked == 3


def test_ratios_pair_records_of_the_same_workload_T_and_threads():
    def rec(workload, system, T, threads, seconds, rss=100.0, **more):
        return dict(workload=workload, system=system, T=T, threads=threads, seconds_per_sample=seconds,
                    peak_rss_mb=rss, **more)

    out = with_ratios([
        rec("add-peak", "machine", None, 1, None, adds_per_s=4e10),
        rec("lenet-nmnist-train", "eventsim-lee2020", 100, 2, 0.004, rss=200.0),
        rec("lenet-nmnist-train", "snntorch", 100, 2, 0.170, rss=1460.0),
        rec("lenet-nmnist-train", "eventsim-lee2020", 100, 1, 0.007),
        rec("lenet-nmnist-train", "eventsim-lee2020", 300, 2, 0.010, rss=300.0, synops_per_s=1.6e10),
        rec("conv-scatter", "eventsim", 100, 1, 0.001, synops_per_s=2e9),
        rec("lenet-nmnist-train", "norse", 100, 2, 0.100, rss=800.0),
        rec("lenet-nmnist-train", "sinabs", 100, 2, None, skipped="sinabs is not installed"),
        rec("lenet-nmnist-train", "pytorch", 100, 1, 0.050),  # another thread count: not this row's peer
    ])
    assert out[1]["speedup_over_snntorch"] == pytest.approx(42.5)
    assert out[1]["rss_over_snntorch"] == pytest.approx(200 / 1460)
    assert out[1]["speedup_over_norse"] == pytest.approx(25) and out[1]["rss_over_norse"] == pytest.approx(0.25)
    assert out[1]["best_peer"] == "norse"
    assert out[1]["speedup_over_best_peer"] == pytest.approx(25) and out[1]["rss_over_best_peer"] == pytest.approx(0.25)
    assert not any(key.endswith(("_sinabs", "_pytorch")) for key in out[1])
    assert out[1]["speedup_over_1_thread"] == pytest.approx(1.75)
    assert out[3]["best_peer"] == "pytorch" and out[3]["speedup_over_best_peer"] == pytest.approx(50 / 7)
    assert "best_peer" not in out[4] and "speedup_over_best_peer" not in out[4]  # no peer at T=300
    # growth with T against the next smaller T of the same row: 4 -> 10 ms over 100 -> 300 steps
    assert out[4]["previous_T"] == 100 and out[4]["time_exponent"] == pytest.approx(0.834, abs=1e-3)
    assert out[4]["rss_over_previous_T"] == pytest.approx(1.5)
    assert "time_exponent" not in out[1] and "time_exponent" not in out[3]  # nothing smaller in their rows
    assert out[4]["fraction_of_add_peak"] == pytest.approx(0.2)  # 16 G SynOps/s over 2 cores of 40 G adds/s
    assert out[5]["fraction_of_add_peak"] == pytest.approx(0.05)
    assert "best_peer" not in out[6]  # ratios are eventsim's


def test_repeats_are_interleaved_rounds_of_fresh_processes_keeping_the_fastest(monkeypatch):
    """Every case once per round, in the same order each round; per case the fastest round's record,
    a measured round rather than a failed one; the peers skipped once, without a process."""
    seen = []
    times = {("lenet-nmnist-infer", "eventsim"): [3.0, 1.0, 2.0], ("lenet-nmnist-infer", "pytorch"): [None, 5.0, 4.0]}

    def fake_measure(case):
        seen.append((case.system, case.repeats))
        seconds = times[case.workload, case.system][sum(1 for s, _ in seen if s == case.system) - 1]
        if seconds is None:
            return {**case.identity(), "seconds_per_sample": None, "peak_rss_mb": None, "failed": "boom"}
        return {**case.identity(), "seconds": seconds, "seconds_per_sample": seconds / case.batch, "peak_rss_mb": 1.0}

    monkeypatch.setattr(suite, "measure", fake_measure)
    installed = {name: SimpleNamespace(missing_reason=lambda reason=None if name == "pytorch" else "not here": reason)
                 for name in LENET_PEERS}
    monkeypatch.setattr(suite, "PEERS", installed)
    records = suite.run_bench(["lenet-nmnist-infer"], steps=[5], threads=[2], batch=2, repeats=3, data=str(data_root()),
                              progress=None)
    assert seen == [("eventsim", 1), ("pytorch", 1)] * 3
    by = {r["system"]: r for r in records}
    assert by["eventsim"]["seconds"] == 1.0 and by["pytorch"]["seconds"] == 4.0
    assert all(by[p]["skipped"] == "not here" for p in LENET_PEERS[:-1])
    assert {r["repeats"] for r in records} == {3}
    assert by["eventsim"]["speedup_over_best_peer"] == pytest.approx(4.0)


def test_missing_torch_is_reported_not_raised(monkeypatch, capsys):
    real_import = builtins.__import__

    def without_torch(name, *args, **kwargs):
        if name.split(".")[0] in ("torch", "snntorch"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torch)
    printed = bench(*SMALL, "--workloads", "lenet-nmnist-infer")
    rows = {tuple(line.split()[:2]): line for line in printed.splitlines()}
    assert 'skipped: torch is not installed (pip install -e ".[torch]")' in rows["lenet-nmnist-infer", "snntorch"]
    assert 'snntorch is not installed (pip install -e ".[snntorch]")' in rows["lenet-nmnist-infer", "snntorch"]
    assert 'skipped: torch is not installed (pip install -e ".[torch]")' in rows["lenet-nmnist-infer", "norse"]
    assert float(rows["lenet-nmnist-infer", "eventsim"].split()[4]) > 0
    records = json.loads(bench(*SMALL, "--json", "--workloads", "lenet-nmnist-infer"))
    skipped = [r for r in records if "skipped" in r]
    assert [r["system"] for r in skipped] == list(LENET_PEERS) and skipped[0]["seconds_per_sample"] is None
    assert "speedup_over_best_peer" not in next(r for r in records if r["system"] == "eventsim")


def test_a_missing_framework_skips_only_its_peer(monkeypatch):
    pytest.importorskip("torch")
    real_import = builtins.__import__

    def without_sinabs(name, *args, **kwargs):
        if name.split(".")[0] == "sinabs":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_sinabs)
    assert PEERS["sinabs"].missing_reason() == ("sinabs is not installed (pip install --no-deps sinabs==3.1.3 pbr "
                                                "(docs/conformance.md))")
    assert PEERS["pytorch"].missing_reason() is None


def test_epoch_data_splits_an_epoch_into_data_work_and_train_steps():
    (r,) = json.loads(bench(*SMALL, "--json", "--workloads", "nmnist-epoch-data"))
    assert r["epoch_samples"] == 1000  # the subset's training split
    parts = r["cache_load_seconds"] + r["batching_seconds"] + r["train_seconds"]
    assert r["seconds_per_sample"] * r["epoch_samples"] == pytest.approx(parts)
    assert 0 < r["data_share"] < 1 and 0 < r["data_share_first_epoch"] < 1
    assert r["data_share"] == pytest.approx((parts - r["train_seconds"]) / parts)


def test_mnist_epoch_data_splits_its_batches_into_coding_and_train_steps():
    from eventsim.bench.workloads import MNIST_BATCHES_TIMED

    (r,) = json.loads(bench(*SMALL, "--json", "--workloads", "mnist-epoch-data"))
    samples = MNIST_BATCHES_TIMED * 2
    assert r["seconds_per_sample"] * samples == pytest.approx(r["coding_seconds"] + r["train_seconds"])
    assert r["data_share"] == pytest.approx(r["coding_seconds"] / (r["coding_seconds"] + r["train_seconds"]))
    assert 0 < r["data_share"] < 1


def test_bad_settings_are_named():
    with pytest.raises(OptionError, match="steps must be a positive integer, got 0"):
        Case("lenet-nmnist-train", "eventsim-lee2020", 0, 2, 16, 3)
    with pytest.raises(OptionError, match="unknown system of conv-scatter 'snntorch'"):
        Case("conv-scatter", "snntorch", 10, 1, 16, 3)
    with pytest.raises(OptionError, match=r"cubalif-rnn-infer: density must be in \(0, 1\], got 0"):
        Case("cubalif-rnn-infer", "eventsim", 10, 1, 16, 3, density=0)
    with pytest.raises(SystemExit):  # argparse names the unknown workload and exits with status 2
        main(["bench", "--workloads", "lenet-mnist"])


@pytest.mark.skipif(not memory.STATUS.exists(), reason="peak resident memory is read from Linux /proc")
def test_the_memory_reading_sees_an_allocation_of_the_measured_part():
    before = memory.reset_peak()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    rise = memory.peak_resident_mb() - before
    del block
    assert 60 < rise < 200


@pytest.fixture(scope="module")
def tiny_lenet():
    """eventsim's LeNet on 2 real samples at T = 20, with Lee's initialisation rounded to multiples of 2^-10,
    so that every current is an exact float32 sum whatever the summation order (the exactness contract):
    a difference between eventsim and a peer is then a difference of network, or of arithmetic form."""
    from eventsim.layers import Weighted
    from eventsim.learning.zoo import build_model

    steps = 20
    events, _ = nmnist_batch(Case("lenet-nmnist-infer", "eventsim", steps, 1, 2, 1, str(data_root())),
                             Job(steps=steps))
    network = build_model("lee2020-lenet5", input="nmnist", rng=np.random.default_rng(3))
    for layer in network.walk():
        if isinstance(layer, Weighted):
            layer.weight = (np.round(layer.weight * 1024) / 1024).astype(np.float32)
    result = network.run(events, record=("counts",))
    assert result.counts["lif3"].sum() > 0  # spikes reach the last hidden layer: the comparison has teeth
    return network, events, result.output


def _peer_run(name, tiny_lenet, lenet=None):
    """The peer's LeNet on the tiny batch, checked against eventsim's readout: the check's numbers."""
    for module in PEERS[name].modules:
        pytest.importorskip(module)
    from eventsim.bench.peers.lenet import LeNet, check_readout, time_major

    network, events, output = tiny_lenet
    peer = PEERS[name]
    return check_readout(peer, peer.build(lenet or LeNet.of(network), events.batch), time_major(events), output)


@pytest.mark.parametrize("name", LENET_PEERS)
def test_every_peer_runs_eventsim_s_lenet(name, tiny_lenet):
    """Same weights, same input: the peer's readout U_L[T]/T is eventsim's, and so is every prediction.
    snnTorch, sinabs and PyTorch compute eventsim's own float32 operations ("product" form, exact sums):
    their U_L[T] is eventsim's, and U_L[T]/T differs only by eventsim's rounding of the quotient to float32
    (half an ulp). Norse and SpikingJelly compute other forms, with weights scaled by their input factor:
    a few ulps per step."""
    found = _peer_run(name, tiny_lenet)
    assert found["predictions_equal"] == 1.0
    bound = 2.0**-24 if name in ("snntorch", "sinabs", "pytorch") else 1e-6
    assert found["readout_max_difference"] <= bound * np.abs(tiny_lenet[2]).max()


@pytest.mark.parametrize("name", LENET_PEERS)
def test_the_readout_check_rejects_another_network(name, tiny_lenet):
    """Each peer built with another leak (0.9 for every LIF layer) fails the check that precedes its timing."""
    from dataclasses import replace

    from eventsim.bench.peers.lenet import LeNet, PeerMismatch

    with pytest.raises(PeerMismatch, match="LeNet is not eventsim's: its readout"):
        _peer_run(name, tiny_lenet, replace(LeNet.of(tiny_lenet[0]), leak=0.9))


@pytest.mark.parametrize("name", ["spikingjelly", "sinabs"])
def test_the_readout_check_sees_a_threshold_compared_with_greater_or_equal(name, tiny_lenet, monkeypatch):
    """SpikingJelly and sinabs fire on U >= theta. Given eventsim's thresholds as they are, their neurons
    also fire where U equals theta (a pooling neuron on three spikes in a 2x2 window: 0.75), where eventsim's
    do not: the check sees it."""
    import importlib

    from eventsim.bench.peers.lenet import PeerMismatch

    monkeypatch.setattr(importlib.import_module(f"eventsim.bench.peers.{name}"), "strict_threshold", float)
    with pytest.raises(PeerMismatch):
        _peer_run(name, tiny_lenet)


def test_the_recurrent_cubalif_workloads_run_both_systems_and_print_their_ratios():
    """At a tiny size, without a data folder: both systems run the forward and the forward+backward
    on the same problem, snnTorch's spikes and gradients match eventsim's, and the table prints
    snnTorch's time over eventsim's and the memory of both, snnTorch being the best (the only) peer."""
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "--workloads", "cubalif-rnn-infer", "cubalif-rnn-train", "--steps", "40",
                     "--batch", "2", "--repeats", "1", "--density", "0.05", "--json"]) == 0
    records = json.loads(out.getvalue())
    by = {(r["workload"], r["system"]): r for r in records}
    assert set(by) == {("cubalif-rnn-infer", "eventsim"), ("cubalif-rnn-infer", "snntorch"),
                       ("cubalif-rnn-train", "eventsim-bptt"), ("cubalif-rnn-train", "snntorch")}
    for r in records:
        assert "failed" not in r and "skipped" not in r, r
        assert r["T"] == 40 and r["density"] == 0.05 and r["seconds_per_sample"] > 0 and r["peak_rss_mb"] > 0
    printed = {tuple(line.split()[:2]): line for line in table(records).splitlines()[1:]}
    for workload, system in (("cubalif-rnn-infer", "eventsim"), ("cubalif-rnn-train", "eventsim-bptt")):
        mine, theirs = by[workload, system], by[workload, "snntorch"]
        assert mine["hidden_rate"] > 0.001  # the hidden layer fires: the spike counts compared are not all zero
        assert mine["input_density"] == pytest.approx(0.05, rel=0.1)
        speedup = theirs["seconds_per_sample"] / mine["seconds_per_sample"]
        assert mine["speedup_over_snntorch"] == pytest.approx(speedup)
        assert mine["rss_over_snntorch"] == pytest.approx(mine["peak_rss_mb"] / theirs["peak_rss_mb"])
        assert f"{speedup:.4g}x" in printed[workload, system].split()
        assert mine["best_peer"] == "snntorch" and mine["speedup_over_best_peer"] == pytest.approx(speedup)
        memory = f"peak memory {mine['rss_over_snntorch']:.3g}x snnTorch's"
        assert f"best peer snnTorch, {memory}" in printed[workload, system]
        for dtype in ("", "_float64"):
            assert theirs["spike_counts_equal" + dtype] == 1.0 and theirs["readout_max_difference" + dtype] < 1e-5
        note = printed[workload, "snntorch"].split("vs eventsim (counts equal, readout")[1]
        assert "): 100 %, " in note and "(float32); 100 %, " in note and note.endswith("(float64)")
    trained = by["cubalif-rnn-train", "snntorch"]
    assert trained["gradient_max_relative_difference"] < 1e-4
    assert trained["gradient_max_relative_difference_float64"] < 1e-6
    assert "gradient_max_relative_difference" not in by["cubalif-rnn-infer", "snntorch"]


def test_the_agreement_of_the_recurrent_workload_sees_a_different_reset(monkeypatch):
    """eventsim's hidden layer resetting at once instead of at the next step (not snnTorch's RSynaptic):
    the agreement the bench prints must show it."""
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    from eventsim.bench import recurrent

    delayed = recurrent.eventsim_network

    def at_once(weights, dtype):
        network = delayed(weights, dtype)
        next(layer for layer in network.walk() if layer.name == recurrent.HIDDEN_LAYER).reset_delayed = False
        return network

    task = recurrent.problem(2, 60, 0.05)
    assert recurrent.agreement(task, gradients=False)["spike_counts_equal"] == 1.0
    monkeypatch.setattr(recurrent, "eventsim_network", at_once)
    found = recurrent.agreement(task, gradients=True)
    for dtype in ("", "_float64"):
        assert found["spike_counts_equal" + dtype] < 0.99 and found["gradient_max_relative_difference" + dtype] > 1e-3
