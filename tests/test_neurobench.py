"""NeuroBench's Benchmark on eventsim's N-MNIST LeNet: its hooks measure eventsim's own streams.

The wrapper (eventsim.bench.neurobench) shows NeuroBench's hooks what every
weighted layer received and every spiking layer emitted in eventsim's run.
NeuroBench then counts on its own: its accuracy must be eventsim's, its
effective synaptic operations eventsim's exact SynOps (every weight nonzero,
binary input; sums small enough to be exact in float32), its activation
sparsity the share of silent (neuron, step) pairs of eventsim's spiking
layers, and its dense count T times the in-bounds taps of the weighted
layers, counted here by brute force. Where the two counts part (a weight
that is exactly 0, input values other than 0 and 1), NeuroBench's count
follows its own rule, written out here.
"""

from __future__ import annotations

import numpy as np
import pytest

import eventsim as es
from eventsim.errors import LayerError
from eventsim.learning import LeeMSE, SpikeCountMSE, evaluate
from eventsim.learning.zoo import build_model
from eventsim.testing.strategies import random_events
from shared_data import samples

torch = pytest.importorskip("torch", reason='torch is not installed (pip install -e ".[neurobench]")')
pytest.importorskip("neurobench", reason='neurobench is not installed (pip install -e ".[neurobench]")')

from neurobench.benchmarks import Benchmark  # noqa: E402  (after the skips: neurobench is optional)
from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount  # noqa: E402
from neurobench.metrics.workload import (  # noqa: E402
    ActivationSparsity, ActivationSparsityByLayer, ClassificationAccuracy, SynapticOperations,
)

from eventsim.bench.neurobench import neurobench_model  # noqa: E402

STEPS = 30
SPIKING = ("lif1", "pool1", "lif2", "pool2", "lif3")  # the readout never fires
WORKLOAD = [ClassificationAccuracy, ActivationSparsity, ActivationSparsityByLayer, SynapticOperations]


@pytest.fixture(scope="module")
def data() -> list:
    """Four test recordings of the N-MNIST subset, binned into 30 binary steps; seeded events without the data."""
    try:
        return samples(4, STEPS, split="test")
    except pytest.skip.Exception:
        rng = np.random.default_rng(0)
        return [(random_events(rng, 1, STEPS, (2, 34, 34), 0.08, np.float32, values=(1.0,)), i) for i in range(4)]


def lenet() -> es.Network:
    return build_model("lee2020-lenet5", input="nmnist", rng=np.random.default_rng(0))


def benchmark(network: es.Network, data: list, *, scale: float = 1.0) -> dict:
    """NeuroBench's results on ``data`` (input values times ``scale``), in batches of 2."""
    dense = scale * np.concatenate([events.to_dense() for events, _ in data])
    labels = torch.tensor([label for _, label in data])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(dense), labels),
                                         batch_size=2)
    static = [Footprint, ParameterCount, ConnectionSparsity]
    return Benchmark(neurobench_model(network), loader, [], [], [static, WORKLOAD]).run(quiet=True)


def in_bounds_taps(network: es.Network) -> int:
    """Synapses of the weighted layers summed over their output positions, padded taps left out, by brute force."""
    total = 0
    for layer in network.walk():
        if isinstance(layer, es.Conv2d):
            (_, *sizes), _ = network.shapes[layer.name]
            per_axis = []
            for n, k, s, p in zip(sizes, layer.kernel_size, layer.stride, layer.padding):
                outputs = (n + 2 * p - k) // s + 1
                per_axis.append(sum(1 for o in range(outputs) for j in range(k) if 0 <= o * s + j - p < n))
            total += layer.out_channels * layer.in_channels * per_axis[0] * per_axis[1]
        elif isinstance(layer, es.Linear):
            total += layer.in_features * layer.out_features
    return total


def test_benchmark_measures_eventsim_run(data):
    network = lenet()
    results = benchmark(network, data)
    batch = es.Events.concat([events for events, _ in data])
    run = network.run(batch, record=("counts",))

    assert results["ClassificationAccuracy"] == pytest.approx(evaluate(network, data, LeeMSE())["accuracy"])
    predicted = neurobench_model(network)(torch.from_numpy(np.concatenate([e.to_dense() for e, _ in data])))
    assert np.array_equal(predicted.numpy(), LeeMSE().predictions(network, run))
    synops = results["SynapticOperations"]
    print(f"eventsim SynOps per sample {run.total_synops().mean():,.1f} "
          f"({', '.join(f'{k} {v.mean():,.1f}' for k, v in run.synops.items())}); NeuroBench {synops}")
    assert synops["Effective_ACs"] == run.total_synops().mean()
    assert synops["Effective_MACs"] == 0
    # Dense: all inputs and weights 1 at every step, in-bounds taps only; summed in float32, hence approx.
    assert synops["Dense"] == pytest.approx(STEPS * in_bounds_taps(network), rel=1e-6)
    assert STEPS * in_bounds_taps(network) < STEPS * sum(network.ann_macs().values())  # eventsim's MACs count padding

    neurons = {name: int(np.prod(network.shapes[name][1])) for name in SPIKING}
    spikes = {name: int(run.events[name].sum()) for name in SPIKING}
    slots = {name: neurons[name] * STEPS * len(data) for name in SPIKING}
    assert sum(spikes.values()) > 0
    assert results["ActivationSparsity"] == pytest.approx(1 - sum(spikes.values()) / sum(slots.values()))
    assert results["ActivationSparsityByLayer"] == pytest.approx({n: 1 - spikes[n] / slots[n] for n in SPIKING})

    # Lee et al.'s LeNet5 on N-MNIST has 668,000 weights (learning/zoo.py, from the thesis extraction).
    assert results["ParameterCount"] == 668_000
    assert results["Footprint"] == 4 * 668_000
    assert results["ConnectionSparsity"] == 0


def test_a_zero_weight_is_no_operation_for_neurobench_and_one_for_eventsim(data):
    network = lenet()
    conv2 = network.layers[3]
    conv2.weight = np.concatenate([np.zeros_like(conv2.weight[:25]), conv2.weight[25:]])  # 25 of 50 channels
    results = benchmark(network, data)
    run = network.run(es.Events.concat([events for events, _ in data]))
    # every input event of conv2 reaches as many in-bounds taps in each output channel: half are now zero weights
    expected = run.total_synops().mean() - run.synops["conv2"].mean() / 2
    assert results["SynapticOperations"]["Effective_ACs"] == expected
    assert results["ConnectionSparsity"] == pytest.approx(conv2.weight.size / 2 / 668_000, abs=1e-3)


def test_input_values_other_than_one_are_counted_as_macs(data):
    network = lenet()
    results = benchmark(network, data, scale=2.0)  # events of value 2, e.g. two events in one count bin
    run = network.run(es.Events.from_dense(2 * np.concatenate([events.to_dense() for events, _ in data])))
    synops = results["SynapticOperations"]
    assert synops["Effective_MACs"] == run.synops["conv1"].mean()  # NeuroBench: not spikes, so multiplications
    assert synops["Effective_ACs"] == run.total_synops().mean() - run.synops["conv1"].mean()


def test_a_spiking_last_layer_predicts_by_its_spike_counts():
    # Output neuron k listens to the 14 inputs 14k..14k+13 only; sample b has events there for k = b % 5.
    weight = np.zeros((5, 72), np.float32)
    for k in range(5):
        weight[k, 14 * k : 14 * k + 14] = 0.5
    network = es.Network([es.Flatten(), es.Linear(72, 5, weight=weight), es.LIF(1.0, tau=5.0)], (2, 6, 6))
    dense = np.zeros((10, 12, 72), np.float32)
    for b in range(10):
        dense[b, ::2, 14 * (b % 5) : 14 * (b % 5) + 14] = 1.0
    batch = es.Events.from_dense(dense.reshape(10, 12, 2, 6, 6))
    predicted = neurobench_model(network)(torch.from_numpy(batch.to_dense()))
    assert predicted.dtype == torch.int64
    assert predicted.tolist() == [b % 5 for b in range(10)]
    run = network.run(batch, record=("counts",))
    assert np.array_equal(predicted.numpy(), SpikeCountMSE(on_count=5.0).predictions(network, run))


@pytest.mark.parametrize("unsupported,layers", [
    ("res1", lambda: [es.Residual([es.Conv2d(2, 2, 3, padding=1)], es.LIF(1.0, tau=5.0)), es.Flatten()]),
    ("rec1", lambda: [es.Flatten(), es.Linear(72, 72), es.Recurrent(es.LIF(1.0, tau=5.0), es.Linear(72, 72))]),
    ("delay1", lambda: [es.Delay(2), es.Flatten()]),
    ("fc1", lambda: [es.Flatten(), es.Linear(72, 72, delay=1), es.LIF(1.0, tau=5.0)]),
], ids=["residual", "recurrent", "delay", "delayed-synapses"])
def test_layers_without_one_input_stream_are_named(unsupported, layers):
    network = es.Network(layers() + [es.Linear(72, 3, name="out"), es.Readout(tau=5.0)], (2, 6, 6))
    with pytest.raises(LayerError, match=f"'{unsupported}'.*no such stream"):
        neurobench_model(network)


def test_a_network_without_weights_is_named():
    network = es.Network([es.Flatten(), es.Linear(72, 3), es.Readout(tau=5.0)], (2, 6, 6))
    with pytest.raises(LayerError, match="'fc1'.*no weight"):
        neurobench_model(network)
