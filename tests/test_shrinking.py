"""A failure is shrunk to the layers it needs.

Generated networks are lists of self-contained blocks, each with its own
weight seed (eventsim/testing/strategies.py), so hypothesis can delete a
block without changing the others. A defect planted in one layer kind must
therefore shrink, whatever the seed, to a case holding that layer and little
else. Before blocks were drawn this way (weights
from one generator for the whole network), shrunk cases kept unneeded
layers: ['IF', 'IF', 'IF', 'SumPool'], ['IF', 'Linear', 'IF', 'Linear', 'Readout'].
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import eventsim as es  # noqa: E402
from eventsim.testing import conform  # noqa: E402
from eventsim.testing.strategies import Features  # noqa: E402
from eventsim.testing.torch_candidate import TorchCandidate, TorchModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import broken_candidates as broken  # noqa: E402

DYADIC = Features().without("float")
#: Map networks with two pooling kinds, neurons and convolutions to delete around the defect.
MAPS = Features(layers={"conv", "sum", "max"}).without("float")
SEEDS = range(4)


class SumPoolAsAverage(TorchCandidate):
    """Sum pooling computed as average pooling: every input times 1/k^2 instead of 1."""

    name = "sum-pool-as-average"

    def build(self, network):
        return _SumPoolAsAverageModel(self, network)


class _SumPoolAsAverageModel(TorchModel):
    def _synapse(self, layer):
        if isinstance(layer, es.SumPool):
            layer = es.AvgPool(layer.kernel_size, stride=layer.stride)
        return super()._synapse(layer)


def _shrunk(candidate, seed: int, features: Features = DYADIC, examples: int = 15) -> list:
    report = conform(candidate, features=features, examples=examples, gradients=False, seed=seed)
    failure = report.kinds[0].failure
    assert failure is not None, str(report)
    return [layer for layer in failure.case.network.walk() if not isinstance(layer, (es.Flatten, es.Residual))]


def _weighted(layers) -> int:
    return sum(isinstance(layer, (es.Conv2d, es.Linear)) for layer in layers)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_sum_pool_defect_shrinks_to_the_pool_alone(seed):
    """Sum pooling on the raw input shows the defect wherever a window sums to nonzero: nothing else is needed."""
    layers = _shrunk(SumPoolAsAverage(), seed, MAPS, examples=50)
    assert [type(layer).__name__ for layer in layers] == ["SumPool"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("defect", [broken.ResetToZero, broken.LeakOnInput])
def test_a_neuron_defect_shrinks_to_few_layers(defect, seed):
    """The defect acts in one neuron layer; a second may feed it spikes (through at most two
    weighted layers, a residual block's), nothing more."""
    layers = _shrunk(defect(), seed)
    kinds = [type(layer).__name__ for layer in layers]
    neurons = [layer for layer in layers if isinstance(layer, (es.LIF, es.SpikingAvgPool))]
    assert _weighted(layers) <= 2 and len(neurons) <= 2 and len(layers) <= 4, kinds
