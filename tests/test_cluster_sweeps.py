"""Sharded conformance campaigns and parallel sweeps on a local Dask cluster of 2 worker processes.

A sharded campaign gives the report of its shards run one after another in
this process, finds a planted bug and prints a reproducer that replays it
without a cluster; a correct candidate conforms with the counts of its shards
added. The conversion sweep and the surrogate-slope tuning give the same
numbers with and without the cluster.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the cluster extra (pip install 'eventsim[cluster]') is not installed")

from eventsim.cli import main  # noqa: E402
from eventsim.learning.conversion import conversion_sweep  # noqa: E402
from eventsim.learning.gradient_flow import tune_slope  # noqa: E402
from eventsim.learning.losses import CrossEntropy  # noqa: E402
from eventsim.learning.surrogates import FastSigmoid  # noqa: E402
from eventsim.learning.zoo import build_model  # noqa: E402
from eventsim.testing import Features, conform  # noqa: E402
from eventsim.testing.conform import load_candidate  # noqa: E402
from eventsim.testing.shards import conform_shards, plan_shards  # noqa: E402
from shared_data import data_root  # noqa: E402

BROKEN = "broken_candidates:FiresOnEqual"  # fires on U >= theta where eventsim fires on U > theta
GOOD = "eventsim.testing.torch_candidate:TorchCandidate"

def dyadic_features(spec: str) -> Features:
    """The candidate's features without float weights and residual blocks (smaller cases), as --without gives."""
    return (getattr(load_candidate(spec), "features", None) or Features()).without("float", "residual")


@pytest.fixture(scope="module")
def cluster():
    from eventsim.cluster import Cluster, ClusterSpec

    with Cluster(ClusterSpec(workers=2)) as running:
        yield running


@pytest.fixture
def address(cluster, monkeypatch):
    """The scheduler of the module's cluster, for commands that join it with --cluster; no EVENTSIM_CLUSTER."""
    monkeypatch.delenv("EVENTSIM_CLUSTER", raising=False)
    return cluster.client.scheduler.address


# ---------------------------------------------------------------- shards
def test_shards_share_the_examples_and_take_the_documented_seeds():
    shards = plan_shards(103, 7, 25)
    assert [s.examples for s in shards] == [21, 21, 21, 20, 20]
    children = np.random.SeedSequence(7).spawn(5)
    assert [s.seed for s in shards] == [int(c.generate_state(1)[0]) for c in children]
    assert [s.examples for s in plan_shards(4, 0, 25)] == [4]


@pytest.mark.slow  # about 40 s of worker processes; .ci/run runs it
def test_a_sharded_campaign_finds_a_planted_bug_and_its_reproducer_replays_it_on_one_machine(address, capsys):
    pytest.importorskip("torch")
    args = ["conform", "--candidate", BROKEN, "--examples", "30", "--no-gradients", "--without", "float", "residual"]
    assert main([*args, "--cluster", address]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT CONFORM" in out and "split into 2 shards" in out
    # The same campaign in this process, shard after shard, gives the same report.
    here = conform_shards(BROKEN, features=dyadic_features(BROKEN), examples=30, gradients=False)
    assert str(here) in out
    reproducer = re.search(r"reproduce: (eventsim conform .*)", out).group(1)
    assert reproducer.startswith(f"eventsim conform --candidate {BROKEN} --replay ")
    assert main(shlex.split(reproducer)[1:]) == 1  # no --cluster, no EVENTSIM_CLUSTER: one machine
    assert "output differs" in capsys.readouterr().out
    token = reproducer.split("--replay ")[1]
    assert main(["conform", "--candidate", GOOD, "--replay", token]) == 0  # the case fails for the planted bug


def test_a_hypothesis_database_is_refused_with_a_cluster_before_one_starts(tmp_path, capsys):
    pytest.importorskip("torch")
    args = ["conform", "--candidate", GOOD, "--database", str(tmp_path / "db"), "--cluster", "local:2"]
    assert main(args) == 2
    assert "--database" in capsys.readouterr().err and not (tmp_path / "db").exists()


def test_a_correct_candidate_conforms_with_the_counts_of_its_shards_added(cluster):
    pytest.importorskip("torch")
    features = dyadic_features(GOOD).including("float")
    report = conform_shards(GOOD, features=features, examples=4, seed=3, shard_examples=2, cluster=cluster)
    assert report.ok and report.shards == 2
    alone = [conform(load_candidate(GOOD), features=features, examples=s.examples, seed=s.seed)
             for s in plan_shards(4, 3, 2)]
    for i, kind in enumerate(report.kinds):
        parts = [r.kinds[i] for r in alone]
        assert kind.skipped == parts[0].skipped
        assert kind.passed == sum(p.passed for p in parts)
        assert kind.not_comparable == sum(p.not_comparable for p in parts)
        assert kind.declined == sum((p.declined for p in parts), Counter())
    assert report.compared == sum(r.compared for r in alone) > 0


# ---------------------------------------------------------------- sweeps
@pytest.mark.parametrize("mode", ["direct", "rate"])
def test_the_conversion_sweep_gives_the_same_rows_on_the_cluster(cluster, mode):
    rng = np.random.default_rng(0)
    network = build_model("ngu2022-mnist", input="mnist", rng=rng)
    calibration, test = rng.random((6, 1, 28, 28), np.float32), rng.random((12, 1, 28, 28), np.float32)
    labels = rng.integers(0, 10, 12)
    options = dict(steps=[4, 2], alphas=[1.0, 0.5], mode=mode, batch_size=5)
    here = conversion_sweep(network, calibration, test, labels, **options)
    bar = io.StringIO()
    there = conversion_sweep(network, calibration, test, labels, **options, cluster=cluster, progress=bar)
    assert there == here and [(r["steps"], r["alpha"]) for r in here] == [(4, 1.0), (4, 0.5), (2, 1.0), (2, 0.5)]
    assert len({r["synops_per_sample"] for r in here}) == 4  # four different points, not one repeated
    assert "workers=2" in bar.getvalue() and "48/48" in bar.getvalue()


def test_eventsim_convert_with_a_cluster_writes_the_same_sweep(address, tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    args = ["--epochs", "1", "--train-limit", "100", "--test-limit", "30", "--calibration-samples", "20",
            "--steps", "4", "2", "--alpha", "1", "0.5"]
    assert main(["convert", "--out", str(tmp_path / "here"), *args]) == 0
    (tmp_path / "there").mkdir()
    shutil.copy(tmp_path / "here" / "ann.h5", tmp_path / "there" / "ann.h5")  # the same ANN, not trained again
    assert main(["convert", "--out", str(tmp_path / "there"), *args, "--cluster", address]) == 0
    here, there = (json.loads(Path(tmp_path / d / "conversion.json").read_text()) for d in ("here", "there"))
    assert there["sweep"] == here["sweep"] and len(here["sweep"]) == 4


class CountingRounds:
    """A cluster that counts the rounds of tasks sent through it."""

    def __init__(self, cluster):
        self.cluster, self.rounds = cluster, 0

    def map(self, *args, **options):
        self.rounds += 1
        return self.cluster.map(*args, **options)

    def __getattr__(self, name):
        return getattr(self.cluster, name)


def deep_network(seed: int, depth: int = 8, width: int = 24, inputs: int = 12, batch: int = 8):
    from eventsim import IF, Linear, Network, Readout
    from eventsim.encoders import direct
    from eventsim.learning.calibration import scale_to_unit_currents
    from eventsim.learning.init import init_lee2020

    rng = np.random.default_rng(seed)
    layers = [Linear(inputs, width)]
    for _ in range(depth - 2):
        layers += [IF(1.0), Linear(width, width)]
    network = Network([*layers, IF(1.0), Linear(width, 10), Readout()], (inputs,))
    init_lee2020(network, rng, kappa=2.0)
    events = direct(rng.random((batch, inputs)), 6)
    scale_to_unit_currents(network, events)
    return network, events, rng.integers(0, 10, batch)


@pytest.mark.parametrize("bracket", [(1.0, 100.0), (0.01, 0.1)])  # the second widens before it bisects
def test_slope_tuning_on_the_cluster_is_the_same_tuning_in_fewer_rounds(cluster, bracket):
    network, events, labels = deep_network(1)
    options = dict(loss=CrossEntropy(), surrogate=FastSigmoid(b=1.0), bracket=bracket, tolerance=0.05)
    here = tune_slope(network, events, labels, **options)
    counting = CountingRounds(cluster)
    there = tune_slope(network, events, labels, **options, cluster=counting)
    assert there == here and here.converged
    assert counting.rounds < len(here.history)
