"""Every gradient rule learns: 64 real N-MNIST samples to 100 % training accuracy.

A small convolutional network (conv 5x5 stride 2 -> LIF -> spiking average
pooling -> linear -> readout) on the N-MNIST subset of ../shared/data, 20
steps over the first 300 ms, Lee's MSE loss, Adam. Accuracy is measured
after training with the final weights on the same 64 samples.
"""

from __future__ import annotations

import numpy as np
import pytest

import eventsim as es
from eventsim.learning.init import init_lee2020
from eventsim.learning.losses import LeeMSE
from eventsim.learning.optimizers import Adam
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code
from eventsim.learning.surrogates import FastSigmoid
from eventsim.learning.trainer import Trainer, evaluate
from shared_data import samples

STEPS = 20


@pytest.fixture(scope="module")
def data():
    return samples(64, STEPS)


def small_conv_net(seed: int) -> es.Network:
    layers = [
        es.Conv2d(2, 8, 5, stride=2, padding=2),
        es.LIF(1.0, tau=20.0),
        es.SpikingAvgPool(2),
        es.Flatten(),
        es.Linear(8 * 8 * 8, 10),
        es.Readout(tau=20.0),
    ]
    net = es.Network(layers, (2, 34, 34))
    init_lee2020(net, np.random.default_rng(seed))
    return net


@pytest.mark.parametrize(
    "rule", [Lee2020(), Lee2020Code(), BPTT(surrogate=FastSigmoid(c=5.0))], ids=lambda r: r.name
)
def test_rule_fits_64_nmnist_samples(rule, data):
    net = small_conv_net(seed=0)
    before = evaluate(net, data, LeeMSE())
    trainer = Trainer(net, rule=rule, loss=LeeMSE(), optimizer=Adam(1e-2), batch_size=16, epochs=40, progress=None)
    history = trainer.fit(data)
    after = evaluate(net, data, LeeMSE())
    assert before["accuracy"] < 0.5  # the task is not solved by the initial weights
    assert after["accuracy"] == 1.0, (before, after, history[-1])
    assert after["loss"] < 0.5 * before["loss"]
