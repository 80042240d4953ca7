"""The per-step records of a run agree with the neuron recursion they come from.

For every neuron layer, the recorded currents I and potentials U must satisfy
docs/semantics.md, "Neurons": ``U[t] = lam * R(U[t-1], s[t-1]) + I[t]`` with
``U[0] = 0`` and the reset R of the layer, on random networks.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given

import eventsim as es
from eventsim.testing.strategies import net_cases


def _neurons(network):
    for layer in network.walk():
        if isinstance(layer, es.Residual):
            continue
        if isinstance(layer, es.LIF):
            yield layer.name, layer
        elif isinstance(layer, es.SpikingAvgPool):
            yield layer.name, layer.neuron


@given(case=net_cases())
def test_currents_and_potentials_follow_the_recursion(case):
    result = case.network.run(case.events, record=("currents", "potentials"))
    assert result.currents.keys() == result.potentials.keys()
    for name, neuron in _neurons(case.network):
        u, i = result.potentials[name].astype(np.float64), result.currents[name].astype(np.float64)
        shape = case.network.shapes[name][1]
        theta = neuron.thresholds(shape if len(shape) == 3 else (shape[0], 1, 1)).reshape((-1,) + (1,) * (len(shape) - 1))
        theta = np.broadcast_to(theta.astype(case.dtype).astype(np.float64), shape)
        fired = (u > theta) if neuron.strict else (u >= theta)
        if neuron.reset == "soft":
            r = u - np.where(fired, theta, 0)
        else:
            r = np.where(fired, neuron.v_reset, u)
        expected = np.concatenate([np.zeros_like(u[:, :1]), neuron.leak * r[:, :-1]], axis=1) + i
        tol = 1e-5 if case.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(u, expected, rtol=tol, atol=tol * (1 + np.abs(u).max()), err_msg=name)
