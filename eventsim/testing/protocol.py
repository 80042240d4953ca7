"""The candidate protocol: the smallest interface an implementation under test offers.

An implementation (a PyTorch model on CPU or GPU, a framework adapter, a
kernel library) becomes a *candidate* by offering two things:

``Candidate.build(network) -> Model``
    Build its own model from an eventsim :class:`~eventsim.Network`. The
    network is the description: its layers (:mod:`eventsim.layers`) are small
    typed objects with their weights as NumPy arrays and every option of
    docs/semantics.md spelled out, and :meth:`Network.walk` yields them in
    order with their names (``conv1``, ``lif1``, ``res1.lif2``, ...).
    ``network.shapes[name]`` gives each layer's ``(input_shape, output_shape)``.

``Model.run(spikes) -> {layer name: LayerRecord}``
    Run the model on ``spikes``, a dense array ``(T, batch, *input_shape)`` of
    per-step input values (time-major, as the ``eventsim run`` file interface
    and most GPU code), in inference mode (dropout off), from the reset state
    U[0] = 0 (or the layer's ``v_init``). Report, for every neuron layer (LIF,
    IF, SpikingAvgPool, Readout, the final neuron of each residual block and
    the neuron of each recurrent block), its output values and its
    pre-threshold potential U at every step, each ``(T, batch, *shape)``, and
    optionally its synaptic current. Other layers (a Delay, a synapse that
    feeds no neuron) may be reported too; they are compared when present.

A candidate that cannot express a case (an option its framework lacks, a
layer kind it has no module for) raises :class:`Unsupported` from ``build``
or ``run``: the case is *declined*, counted with its reason, never reported
as a divergence.

``Model.gradients(spikes, request) -> {parameter key: array}`` (optional)
    The gradients of ``L = sum(out * request.grad_output)`` for every
    parameter, keyed ``"conv1.weight"``, ``"fc2.bias"``, ... (the keys of
    :func:`eventsim.learning.parameters.parameters`), where ``out`` is the
    readout ``U_L[T] / T`` of a network ending in a Readout, else the last
    layer's output summed over the T steps. The gradient is eventsim's
    ``bptt`` rule: exact backpropagation through the recursion of
    docs/semantics.md with dS/dU replaced by ``request.surrogate`` and the
    reset path detached when ``request.detach_reset``. A model without this
    method is compared on the forward pass only. It may raise
    :class:`Unsupported` too (a surrogate or reset gradient the framework
    does not have).

``Model.potential_gradients(spikes, request) -> {layer name: array}`` (optional)
    For every neuron layer (the names ``run`` reports with potentials),
    ``dL/dU[t]``, the gradient of the same loss with respect to the
    pre-threshold potential at every step, ``(T, batch, *shape)`` (in
    PyTorch: the gradient with respect to each step's U tensor, the input
    made to require grad). Only used to locate a gradient failure already
    found: the report then names the first layer and step, in the backward
    pass's order, where the candidate departs from eventsim
    (:mod:`eventsim.testing.backward`). Without it a gradient failure is
    located by parameter only.

docs/testing.md works through a complete candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from eventsim.network import Network


class Unsupported(Exception):
    """Raised by a candidate for a case it cannot express; the message is the reason.

    Declined cases are counted per reason in the conformance report, apart
    from conforming and failing ones: declining says "my framework has no
    such option", a divergence says "my framework computes it differently".
    """


@dataclass
class LayerRecord:
    """What a model reports for one layer, every array ``(T, batch, *shape)``.

    ``outputs``: the values the layer passes on at each step (0/1 spikes for
    spiking layers; the spike count n with several spikes per step).
    ``potentials``: the pre-threshold potential U at each step (neuron layers;
    ``None`` for layers without a potential). ``synaptic``: the synaptic
    current J at each step, optional, for a neuron layer that has one
    (docs/semantics.md, "State beyond the potential"); compared when given.
    """

    outputs: np.ndarray
    potentials: np.ndarray | None = None
    synaptic: np.ndarray | None = None


@dataclass(frozen=True)
class GradientRequest:
    """What a model differentiates: ``L = sum(out * grad_output)`` under ``bptt``.

    ``grad_output`` has the shape of ``out``, ``(batch, *output_shape)``;
    ``surrogate`` is an :mod:`eventsim.learning.surrogates` object whose
    ``name`` and fields give sigma(U - theta); ``detach_reset`` stops the
    gradient through the reset term.
    """

    grad_output: np.ndarray = field(repr=False)
    surrogate: Any
    detach_reset: bool = True


@runtime_checkable
class Model(Protocol):
    """A built candidate model (see the module docstring)."""

    def run(self, spikes: np.ndarray) -> dict[str, LayerRecord]: ...


@runtime_checkable
class Candidate(Protocol):
    """An implementation under test (see the module docstring)."""

    name: str

    def build(self, network: Network) -> Model: ...
