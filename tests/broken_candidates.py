"""Deliberately broken candidates: TorchCandidate with one planted defect each.

Each is a defect that real implementations make; the conformance suite must
catch every one and name a position where the defect acts. Each class also
offers ``acts_at(divergence, reference, network)``: whether the named
position is one where its defect changes the result, judged from eventsim's
own records there (tests/test_conformance.py).
"""

from __future__ import annotations

from dataclasses import replace

from eventsim.layers import SpikingAvgPool
from eventsim.testing.torch_candidate import TorchCandidate


def neuron_named(network, name):
    """The neuron options of the layer ``name`` (the pool's IF neuron for a SpikingAvgPool)."""
    layer = next(layer for layer in network.walk() if layer.name == name)
    return layer.neuron if isinstance(layer, SpikingAvgPool) else layer


def spiked_before(divergence, reference, lag: int = 1) -> bool:
    """Whether eventsim's neuron at the divergence spiked ``lag`` steps before it."""
    t = divergence.step - 1 - lag
    if t < 0:
        return False
    return bool(reference[divergence.layer].outputs[(t, divergence.sample, *divergence.neuron)])


class FiresOnEqual(TorchCandidate):
    """``U >= theta`` where eventsim fires on ``U > theta``."""

    def neuron_step(self, state, current, neuron, backward):
        return super().neuron_step(state, current, replace(neuron, strict=False), backward)

    @staticmethod
    def acts_at(d, reference, network) -> bool:
        return d.kind == "output" and d.reference_potential == d.threshold and neuron_named(network, d.layer).strict


class ResetOneStepLate(TorchCandidate):
    """The reset at step t uses the spike of step t-2 instead of t-1."""

    def neuron_step(self, state, current, neuron, backward):
        u_prev, s_prev, *older = state
        s_late = older[0] if older else s_prev * 0
        u, s, _ = super().neuron_step((u_prev, s_late), current, neuron, backward)
        return u, s, (u, s, s_prev)

    @staticmethod
    def acts_at(d, reference, network) -> bool:
        return d.kind == "potential" and (spiked_before(d, reference, 1) or spiked_before(d, reference, 2))


class LeakOnInput(TorchCandidate):
    """``U[t] = lam * (R + I[t])``: the leak applied to the input as well."""

    def neuron_step(self, state, current, neuron, backward):
        return super().neuron_step(state, neuron.leak * current, neuron, backward)

    @staticmethod
    def acts_at(d, reference, network) -> bool:
        return d.kind == "potential" and neuron_named(network, d.layer).leak < 1


class ResetNotLeaked(TorchCandidate):
    """The reset applied after the leak: ``lam * U - theta`` (soft), ``v_reset`` unleaked (hard)."""

    def neuron_step(self, state, current, neuron, backward):
        return super().neuron_step(state, current, replace(neuron, reset_delayed=not neuron.reset_delayed), backward)

    @staticmethod
    def acts_at(d, reference, network) -> bool:
        n = neuron_named(network, d.layer)
        return (d.kind == "potential" and spiked_before(d, reference) and n.leak < 1
                and (n.reset == "soft" or n.v_reset != 0))


class ResetToZero(TorchCandidate):
    """Hard reset to 0 whatever ``v_reset`` says."""

    def neuron_step(self, state, current, neuron, backward):
        return super().neuron_step(state, current, replace(neuron, v_reset=neuron.v_reset * 0), backward)

    @staticmethod
    def acts_at(d, reference, network) -> bool:
        n = neuron_named(network, d.layer)
        return d.kind == "potential" and spiked_before(d, reference) and n.reset == "hard" and n.v_reset != 0


class SteeperSurrogate(TorchCandidate):
    """The surrogate evaluated at ``2 (U - theta)``: a bump twice as steep as asked."""

    def surrogate_derivative(self, surrogate, u, theta):
        return super().surrogate_derivative(surrogate, theta + 2 * (u - theta), theta)
