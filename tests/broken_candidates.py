"""Deliberately broken candidates: TorchCandidate with one planted defect each.

Each is a defect that real implementations make; the conformance suite must
catch every one and name a position where the defect acts. Each forward
defect offers ``acts_at(divergence, reference, network)`` and each backward
defect ``acts_at_backward(divergence, failure, reference)``: whether the named
position is one where its defect changes the result, judged from eventsim's
own records there (tests/test_conformance.py).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from eventsim.layers import AvgPool, SpikingAvgPool, SumPool
from eventsim.testing.torch_candidate import TorchCandidate, TorchModel


def neuron_named(network, name):
    """The neuron options of the layer ``name`` (the pool's IF neuron for a SpikingAvgPool)."""
    layer = next(layer for layer in network.walk() if layer.name == name)
    return layer.neuron if isinstance(layer, SpikingAvgPool) else layer


def layer_named(network, name):
    return next(layer for layer in network.walk() if layer.name == name)


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

    @staticmethod
    def acts_at_backward(d, failure, reference) -> bool:
        """Where sigma(2x) differs from sigma(x): a spiking layer's neuron with U != theta."""
        neuron = neuron_named(failure.case.network, d.layer)
        u = reference[d.layer].potentials[(d.step - 1, d.sample, *d.neuron)]
        theta = neuron.thresholds(reference[d.layer].outputs.shape[2:])[d.neuron[0]]
        return d.layer_type != "Readout" and u != theta


class _ZeroWindowModel(TorchModel):
    """Linear pools whose backward is 0 where the window's forward sum is 0."""

    def _synapse(self, layer):
        pooled = super()._synapse(layer)
        if not isinstance(layer, (SumPool, AvgPool)):
            return pooled

        def dropping(x):
            out = pooled(x)
            return out.where(out != 0, out.detach())  # same values; no gradient through zero windows

        return dropping


class PoolDropsZeroWindows(TorchCandidate):
    """A pooling adjoint that drops windows whose sum is 0, as sinabs' ``SumPool2d`` (``LPPool2d`` with
    p = 1: ``sign(x) relu(|x|)`` has derivative 0 at 0) does."""

    def build(self, network):
        return _ZeroWindowModel(self, network)

    @staticmethod
    def acts_at_backward(d, failure, reference) -> bool:
        """The neuron layer below a linear pool, at a neuron of a window with no input at that step."""
        network = failure.case.network
        pools = [layer_named(network, name) for name in d.path]
        pools = [p for p in pools if isinstance(p, (SumPool, AvgPool, SpikingAvgPool))]
        if not pools:
            return False
        pool = pools[0]
        if layer_named(network, d.path[0]) is not pool:
            return True  # another layer between: the window sums are not the neuron's own spikes
        spikes = reference[d.layer].outputs[d.step - 1, d.sample]  # (C, H, W)
        c, y, x = d.neuron
        (kh, kw), (sh, sw) = pool.kernel_size, pool.stride
        rows = [oy for oy in range(0, (spikes.shape[1] - kh) // sh + 1) if oy * sh <= y < oy * sh + kh]
        cols = [ox for ox in range(0, (spikes.shape[2] - kw) // sw + 1) if ox * sw <= x < ox * sw + kw]
        return any(np.all(spikes[c, oy * sh: oy * sh + kh, ox * sw: ox * sw + kw] == 0) for oy in rows for ox in cols)


class ResetNotDetached(TorchCandidate):
    """The reset differentiated although the request says ``detach_reset=True``."""

    def neuron_step(self, state, current, neuron, backward):
        return super().neuron_step(state, current, neuron, replace(backward, detach_reset=False))

    @staticmethod
    def acts_at_backward(d, failure, reference) -> bool:
        """A spiking layer before the last step: U[t+1] depends on s[t] through the reset."""
        return failure.gradient_request.detach_reset and d.layer_type != "Readout" and d.step < d.steps
