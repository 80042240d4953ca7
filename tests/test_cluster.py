"""Training and evaluation in fixed chunks, here and on a Dask cluster: the same bits whatever the split.

The tree sum (eventsim.learning.chunks) is checked against its definition
and against the chunked sum it must equal; a training step against itself
at every chunk size (no norm: the chunk size changes nothing); training on
a LocalCluster of worker processes against the same training without one,
checkpoint dataset by dataset, with dropout and input-current batch norm,
also when a worker is killed in the middle of a step; and the cluster's
failures against the one line each must give.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.errors import ClusterError, LayerError, OptionError
from eventsim.learning import BPTT, Adam, CrossEntropy, Lee2020, Lee2020Code, LeeMSE, Trainer, init_lee2020
from eventsim.learning.checkpoint import load_checkpoint
from eventsim.learning.chunks import TreeSum, check_chunk_size, chunk_bounds, tree_sum
from eventsim.learning.tally import evaluate
from eventsim.learning.trainer import train_step
from eventsim.norm import CurrentNorm

from shared_data import data_root, samples

# --------------------------------------------------------------- the tree sum


def _reference_tree(values: list) -> object:
    """The tree of the definition, built as nested tuples (who is added to whom)."""
    if len(values) == 1:
        return values[0]
    m = 1
    while m * 2 < len(values):
        m *= 2
    return (_reference_tree(values[:m]), _reference_tree(values[m:]))


@given(st.integers(1, 200))
def test_tree_sum_adds_as_the_definition_says(n):
    assert tree_sum(list(range(n)), lambda a, b: (a, b)) == _reference_tree(list(range(n)))


@given(order=st.integers(1, 70).flatmap(lambda n: st.permutations(range(n))))
def test_a_tree_sum_of_items_handed_in_any_order_is_the_definitions_tree(order):
    n = len(order)
    tree, most_held = TreeSum(n, lambda a, b: (a, b)), 0
    for i in order:
        tree.put(i, i)
        most_held = max(most_held, tree.held())
    assert tree.total() == _reference_tree(list(range(n)))
    in_order = TreeSum(n, lambda a, b: (a, b))
    for i in range(n):  # items about in order: only partial sums waiting for a sibling are held
        in_order.put(i, i)
        assert in_order.held() <= n.bit_length()
    assert in_order.total() == tree.total()


def test_a_tree_sum_from_several_threads_is_the_definitions_tree_and_wants_every_item():
    n = 37
    tree = TreeSum(n, lambda a, b: (a, b))
    workers = [threading.Thread(target=lambda r=r: [tree.put(i, i) for i in range(r, n, 4)]) for r in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert tree.total() == _reference_tree(list(range(n)))
    partial = TreeSum(3, lambda a, b: (a, b))
    partial.put(0, 0)
    partial.put(2, 2)
    with pytest.raises(OptionError, match="before every item"):
        partial.total()
    with pytest.raises(OptionError, match="no items"):
        TreeSum(0, lambda a, b: (a, b))


@settings(max_examples=60)
@given(n=st.integers(1, 70), k=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_chunk_sums_summed_again_are_the_batch_sum_bit_for_bit(n, k, seed):
    # float32 values of very different sizes: a different order of additions would show
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)).astype(np.float32)
    add = lambda a, b: np.float32(a + b)  # noqa: E731
    whole = tree_sum(list(x), add)
    chunks = [tree_sum(list(x[lo:hi]), add) for lo, hi in chunk_bounds(n, 2**k)]
    assert tree_sum(chunks, add).tobytes() == whole.tobytes()


def test_chunk_size_must_be_a_power_of_two():
    for bad in (0, 3, 6, -2, 2.0, True, "8"):
        with pytest.raises(OptionError, match="power of two"):
            check_chunk_size(bad)
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]


# ------------------------------------------------------------- local chunking


def _net(*, norm: bool, dropout: float, dtype=np.float32, seed: int = 1) -> es.Network:
    """A small convolutional network on N-MNIST's 2 x 34 x 34, with a norm and dropout where asked."""
    layers = [
        es.AvgPool(2, name="down"), es.IF(threshold=0.25, name="in"),
        es.Conv2d(2, 6, 5, stride=2, name="conv1"),
        es.LIF(tau=20.0, threshold=0.5, norm=CurrentNorm() if norm else None, name="lif1"),
        es.Dropout(dropout, name="drop1"),
        es.Flatten(name="flat"), es.Linear(6 * 7 * 7, 10, name="fc"), es.Readout(tau=20.0, name="out"),
    ]
    network = es.Network(layers, (2, 34, 34), dtype)
    init_lee2020(network, np.random.default_rng(seed))
    return network


def _batch(count: int, steps: int = 12):
    data = samples(count, steps)
    return es.Events.concat([e for e, _ in data]), np.array([label for _, label in data])


@pytest.mark.parametrize("rule", [Lee2020(), BPTT()], ids=lambda r: r.name)
def test_a_step_without_norm_gives_the_same_weights_at_every_chunk_size(rule):
    events, labels = _batch(13)  # not a multiple of any chunk size: the last chunk is short
    weights = []
    for chunk in (1, 2, 4, 8, 16):
        network = _net(norm=False, dropout=0.3)
        train_step(network, rule, LeeMSE(), Adam(lr=1e-2), events, labels, lr=1e-2,
                   rng=np.random.default_rng(5), chunk_size=chunk)
        weights.append(es.learning.parameters(network))
    for other in weights[1:]:
        for key, value in weights[0].items():
            assert other[key].tobytes() == value.tobytes(), key
    # the step moved the weights: the comparison is not between untouched initial values
    assert not np.array_equal(weights[0]["fc.weight"], es.learning.parameters(_net(norm=False, dropout=0.3))["fc.weight"])


@pytest.mark.parametrize("rule", [BPTT(), Lee2020Code()], ids=lambda r: r.name)
@pytest.mark.parametrize("threads", [1, 2])
def test_a_chunk_one_sample_at_a_time_is_the_chunk_run_at_once(rule, threads):
    """A per-step rule runs a chunk's samples one per task (their T x neurons records one at a time):
    the gradients, losses and predictions are those of the chunk run through the network at once."""
    from eventsim.learning.steps import chunk_result, one_sample_at_a_time

    events, labels = _batch(5)
    network, loss = _net(norm=False, dropout=0.3), LeeMSE()
    masks = network.dropout_masks(5, np.random.default_rng(2))
    assert one_sample_at_a_time(network, rule)
    result = network.run(events, record=rule.records, train=True, masks=masks)
    losses, grad_output = loss.sample_losses(network, result, labels, batch=8)
    whole = rule.gradients(network, events, result, grad_output)
    es.set_threads(threads)
    try:
        chunk = chunk_result(network, rule, loss, events, labels, batch=8, masks=masks)
    finally:
        es.set_threads(None)
    for key, value in whole.items():
        assert chunk.grads[key].tobytes() == value.tobytes(), key
    assert chunk.losses.tobytes() == losses.tobytes()
    assert chunk.correct == int(np.sum(loss.predictions(network, result) == labels))
    assert not one_sample_at_a_time(_net(norm=True, dropout=0.0), rule)  # a norm ties the samples together


def test_a_chunk_is_the_batch_of_its_norm():
    """With a norm, chunk c of a step is a run of c's samples alone (same masks, loss over the whole B)."""
    events, labels = _batch(8)
    rule, loss = BPTT(), CrossEntropy()
    from eventsim.learning.steps import chunk_result, local_chunks

    step = local_chunks(_net(norm=True, dropout=0.0), rule, loss, events, labels, {}, 4)
    first, second = (chunk_result(_net(norm=True, dropout=0.0), rule, loss, events.samples(lo, lo + 4),
                                  labels[lo:lo + 4], batch=8, masks={}) for lo in (0, 4))
    for key, value in step.grads.items():
        assert value.tobytes() == (first.grads[key] + second.grads[key]).tobytes(), key
    assert step.losses.tobytes() == np.concatenate([first.losses, second.losses]).tobytes()
    assert [m["lif1"][0].tobytes() for m in step.moments] == [c.moments[0]["lif1"][0].tobytes()
                                                            for c in (first, second)]
    # the norm's statistics really differ between the chunks (each took its own)
    assert not np.array_equal(step.moments[0]["lif1"][0], step.moments[1]["lif1"][0])


# ----------------------------------------------------------------- a cluster


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed", reason="needs the cluster extra (dask[distributed])")
    from eventsim.cluster import Cluster, ClusterSpec

    with Cluster(ClusterSpec(workers=2), threads=1) as c:
        yield c


def _checkpoint(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _history_without_times(path: Path) -> list:
    import json

    return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "samples_per_s")}
            for line in path.read_text().splitlines()]


def _train(tmp: Path, name: str, rule, *, norm: bool, cluster=None, kill=None) -> Path:
    data = samples(24, 12)
    trainer = Trainer(_net(norm=norm, dropout=0.25), rule=rule, loss=CrossEntropy(), optimizer=Adam(lr=5e-3),
                      batch_size=12, epochs=2, seed=3, chunk_size=4, checkpoint=tmp / f"{name}.h5",
                      log=tmp / f"{name}.jsonl", progress=None, cluster=cluster)
    if kill is not None:
        kill(trainer)
    trainer.fit(data, eval_data=data[:8])
    return tmp


def _assert_same_run(tmp: Path, a: str, b: str) -> None:
    first, second = _checkpoint(tmp / f"{a}.h5"), _checkpoint(tmp / f"{b}.h5")
    assert sorted(first) == sorted(second)
    for key, value in first.items():
        assert np.asarray(second[key]).tobytes() == np.asarray(value).tobytes(), key
    assert _history_without_times(tmp / f"{a}.jsonl") == _history_without_times(tmp / f"{b}.jsonl")


@pytest.mark.parametrize("rule,norm", [(Lee2020(), False), (BPTT(), True)], ids=["lee2020-dropout",
                                                                               "bptt-dropout-norm"])
def test_training_on_two_workers_writes_the_checkpoint_of_one_process(tmp_path, cluster, rule, norm):
    data_root()
    _train(tmp_path, "here", rule, norm=norm)
    _train(tmp_path, "cluster", rule, norm=norm, cluster=cluster)
    _assert_same_run(tmp_path, "here", "cluster")
    # the run trained: the weights moved from their initial values
    assert not np.array_equal(load_checkpoint(tmp_path / "here.h5").params["fc.weight"],
                              es.learning.parameters(_net(norm=norm, dropout=0.25))["fc.weight"])


def test_a_task_leaves_the_shared_network_as_it_was_sent():
    """Dask may send a worker's copy of a shared input to another worker while a task is using it (a worker that
    lost its replica, or one started after a kill): the tasks must not change it, or the copy sent is half
    changed (a plan being built while it is pickled) and the task waiting for it never runs."""
    import pickle

    from eventsim.learning.steps import local_chunks, remote_chunks

    network = _net(norm=True, dropout=0.25)
    sent = pickle.dumps(network)
    params = {k: v + np.float32(0.5) for k, v in es.learning.parameters(network).items()}
    masks = network.dropout_masks(4, np.random.default_rng(0))
    remote_chunks(network, params, samples(4, 12), np.arange(4), masks, BPTT(), CrossEntropy(), 4, 2)
    assert pickle.dumps(network) == sent
    again = remote_chunks(network, params, samples(4, 12), np.arange(4), masks, BPTT(), CrossEntropy(), 4, 2)
    # what a task computes is that of the network with the parameters it was sent
    loaded = _net(norm=True, dropout=0.25)
    es.learning.load_parameters(loaded, params)
    events, labels = _batch(4)
    here = local_chunks(loaded, BPTT(), CrossEntropy(), events, labels, masks, 2, batch=4)
    assert sorted(again.grads) == sorted(here.grads)
    for key, grad in here.grads.items():
        assert again.grads[key].tobytes() == grad.tobytes(), key


def _killer(cluster, killed: list):
    """Kill (SIGKILL, by pid) a worker process as soon as it is computing a chunk of the second step."""

    def start(trainer):
        def watch():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if trainer.step >= 1:
                    busy = [w for w, keys in cluster.client.processing().items() if keys]
                    if busy:
                        pid = cluster.client.run(os.getpid, workers=[busy[0]])[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        killed.append((trainer.step, pid))
                        return
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()

    return start


def test_a_worker_killed_in_the_middle_of_a_step_changes_nothing(tmp_path, cluster):
    data_root()
    killed: list = []
    _train(tmp_path, "here", BPTT(), norm=True)
    _train(tmp_path, "cluster", BPTT(), norm=True, cluster=cluster, kill=_killer(cluster, killed))
    assert killed, "no worker was killed: the test did not test anything"
    step, pid = killed[0]
    assert step < 4  # in the middle of the run (4 steps), not after it
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # that process is gone
    _assert_same_run(tmp_path, "here", "cluster")


def test_inputs_lost_with_a_worker_are_sent_again_and_the_step_is_the_same(tmp_path, cluster, monkeypatch):
    """Tasks the scheduler drops because a worker holding their shared inputs left (Dask cancels them) come back
    as LostInputs; a training step then sends its inputs again and computes the step again: the same run."""
    import distributed
    from concurrent.futures import CancelledError

    from eventsim.cluster import LostInputs

    real_wait, dropped, shared_again = distributed.wait, [], []

    def wait_dropping_once(*args, **kwargs):  # the first wait of the run finds its tasks cancelled
        if not dropped:
            dropped.append(True)
            raise CancelledError("already forgotten")
        return real_wait(*args, **kwargs)

    real_share = type(cluster).share

    def share(self, value, *, keep=False, again=False):
        shared_again.append(again)
        return real_share(self, value, keep=keep, again=again)

    _train(tmp_path, "here", BPTT(), norm=True)
    monkeypatch.setattr(distributed, "wait", wait_dropping_once)
    monkeypatch.setattr(type(cluster), "share", share)
    _train(tmp_path, "cluster", BPTT(), norm=True, cluster=cluster)
    assert dropped and True in shared_again  # the data went out again, not only the step's weights
    _assert_same_run(tmp_path, "here", "cluster")
    monkeypatch.setattr(distributed, "wait", lambda *a, **k: (_ for _ in ()).throw(CancelledError("gone")))
    with pytest.raises(LostInputs, match="worker that left"):
        cluster.map(abs, [(-1,)], what="the task")


def test_a_local_cluster_keeps_the_copy_of_a_shared_value_on_every_worker(cluster):
    """Dask's active memory manager would drop the copies but one, and each task elsewhere fetch them again."""
    cluster.client.wait_for_workers(2, timeout=60)
    handle = cluster.share(np.arange(1000))
    assert not cluster.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.extensions["amm"].running)
    assert len(cluster.client.who_has([handle])[handle.key]) == 2


def test_evaluation_on_a_cluster_is_the_evaluation_here(cluster):
    data = samples(20, 12)
    network = _net(norm=False, dropout=0.0)
    here = evaluate(network, data, CrossEntropy(), batch_size=8)
    there = evaluate(network, data, CrossEntropy(), batch_size=8, cluster=cluster)
    assert here == there


def _raise_layer_error(value):
    raise LayerError(type("Conv2d", (), {"name": "conv9"})(), f"bad value {value}")


def test_an_eventsim_error_on_a_worker_comes_back_as_itself(cluster):
    with pytest.raises(LayerError, match=r"layer 'conv9' \(Conv2d\): bad value 3"):
        cluster.map(_raise_layer_error, [(3,)])


def _die(_):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_task_that_kills_every_worker_it_runs_on_is_one_line(cluster):
    with pytest.raises(ClusterError, match=r"chunk 0 killed every worker it ran on .*cannot be finished"):
        cluster.map(_die, [(0,)], what="chunk")
    cluster.client.wait_for_workers(2, timeout=60)  # the nannies restart them: the cluster serves again
    assert cluster.map(abs, [(-2,), (3,)]) == [2, 3]


def test_workers_with_other_versions_are_refused(cluster, monkeypatch):
    from eventsim.cluster import versions

    here = versions()
    monkeypatch.setattr(cluster.client, "run", lambda fn: {"tcp://10.0.0.9:4000": {**here, "numba": "0.0.1"}})
    with pytest.raises(ClusterError, match=r"worker tcp://10.0.0.9:4000 runs numba 0\.0\.1 \(here .*same versions"):
        cluster._check_versions()


def test_a_run_left_without_workers_stops_with_one_line_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="needs the cluster extra (dask[distributed])")
    from distributed import LocalCluster

    from eventsim.cluster import Cluster, ClusterSpec

    data = samples(24, 12)

    def trainer(name: str, epochs: int, cluster=None) -> Trainer:
        return Trainer(_net(norm=True, dropout=0.25), rule=BPTT(), loss=CrossEntropy(), optimizer=Adam(lr=5e-3),
                       batch_size=12, epochs=epochs, seed=3, chunk_size=4, checkpoint=tmp_path / f"{name}.h5",
                       log=tmp_path / f"{name}.jsonl", progress=None, cluster=cluster)

    trainer("whole", 2).fit(data)
    trainer("cut", 1).fit(data)
    monkeypatch.setenv("EVENTSIM_CLUSTER_WAIT", "1")
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty:
        with Cluster(ClusterSpec(address=empty.scheduler_address)) as cluster:
            stranded = trainer("cut", 2, cluster)
            stranded.resume()
            with pytest.raises(ClusterError, match=r"no worker has been connected .* for 1 s.*--resume"):
                stranded.fit(data)
    resumed = trainer("cut", 2)  # on no cluster at all
    resumed.resume()
    resumed.fit(data)
    _assert_same_run(tmp_path, "whole", "cut")


@pytest.mark.parametrize("spec,message", [("local:0", "positive number"), ("locals", "must be local"),
                                          ("host:8786", "must be local")])
def test_a_bad_cluster_spec_is_one_line(spec, message):
    from eventsim.cluster import ClusterSpec

    with pytest.raises(OptionError, match=message):
        ClusterSpec.parse(spec)


def test_the_environment_names_the_default_cluster(monkeypatch):
    from eventsim.cluster import ClusterSpec, cluster_spec

    monkeypatch.setenv("EVENTSIM_CLUSTER", "local:3")
    assert cluster_spec(None) == ClusterSpec(workers=3)
    assert cluster_spec("tcp://h:1") == ClusterSpec(address="tcp://h:1")
    monkeypatch.setenv("EVENTSIM_CLUSTER", "none")
    assert cluster_spec(None) is None
    monkeypatch.setenv("EVENTSIM_CLUSTER", "lokal")
    with pytest.raises(OptionError, match="environment variable EVENTSIM_CLUSTER"):
        cluster_spec(None)


def test_eventsim_train_with_cluster_writes_the_run_folder_of_one_process(tmp_path, monkeypatch):
    """The command itself: `eventsim train nmnist --cluster local:2` and the same command without it."""
    pytest.importorskip("distributed", reason="needs the cluster extra (dask[distributed])")
    from eventsim.cli import main

    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    monkeypatch.setenv("EVENTSIM_THREADS", "1")
    common = ["train", "nmnist", "--train-limit", "32", "--test-limit", "16", "--epochs", "1", "--steps", "10",
              "--batch-size", "16", "--chunk-size", "4"]
    assert main(common + ["--out", str(tmp_path / "here")]) == 0
    assert main(common + ["--out", str(tmp_path / "cluster"), "--cluster", "local:2"]) == 0
    here, there = (_checkpoint(tmp_path / run / "checkpoint.h5") for run in ("here", "cluster"))
    assert sorted(here) == sorted(there)
    for key, value in here.items():
        assert np.asarray(there[key]).tobytes() == np.asarray(value).tobytes(), key
    assert _history_without_times(tmp_path / "here" / "metrics.jsonl") == \
        _history_without_times(tmp_path / "cluster" / "metrics.jsonl")


def test_the_scaling_model_against_its_closed_forms():
    from eventsim.bench.cluster import model_inputs, predicted_efficiency

    free = {"t_s": 0.01, "chunk_size": 8, "update": 0.0, "per_gradient": 0.0, "fixed": 0.0, "per_byte": 0.0,
            "parameter_bytes": 4_000_000}
    assert predicted_efficiency(free, 4, 256) == pytest.approx(1.0)
    # 3 chunks on 2 workers: one worker does 2 of them while the other does 1
    assert predicted_efficiency(free, 2, 24) == pytest.approx(3 / 4)
    # a fixed 0.1 s per step against 64 samples of 0.01 s on 4 workers: 0.16 / (0.16 + 0.1)
    assert predicted_efficiency({**free, "fixed": 0.1}, 4, 64) == pytest.approx(0.16 / 0.26)
    # traffic: the weights to 4 workers and 4 gradients back, 1 ns a byte
    assert predicted_efficiency({**free, "per_byte": 1e-9}, 4, 64) == pytest.approx(0.16 / (0.16 + 8 * 4e6 * 1e-9))
    records = [{"workload": "cluster-train", "system": s, "T": 30, "step_seconds": 1.0, "overhead_seconds": o,
                "bytes_per_step": b, "apply_seconds": a, "chunk_seconds_per_sample": 0.02, "parameter_bytes": 10,
                "chunk_size": 8} for s, o, b, a in (("local:1", 0.05, 1_000_000, 0.002),
                                                     ("local:2", 0.07, 3_000_000, 0.003))]
    costs = model_inputs(records)
    assert costs["per_byte"] == pytest.approx(0.02 / 2_000_000)
    assert costs["fixed"] == pytest.approx(0.05 - 0.01)
    assert costs["per_gradient"] == pytest.approx(0.001)
