"""Where a candidate's backward pass departs from eventsim's: dL/dU per neuron layer and step.

Parameter gradients say *that* a backward pass is wrong, not where: a
weight's gradient sums the deltas of every step and every layer above it. A
candidate whose model also offers ``potential_gradients(spikes, request)``
(docs/testing.md; :mod:`eventsim.testing.protocol`), the gradient of the same
loss with respect to the pre-threshold potential U[t] of every neuron layer,
is compared with eventsim's own ``bptt`` backward (docs/semantics.md,
"bptt": ``E[t] = dL/dU[t]``) in the backward pass's causal order: from the
last step down to the first and, within a step, from the output layer down.
In that order every value depends only on values already found equal, so
the first divergence is where the defect acts: in that neuron layer's own
backward (surrogate, reset, leak) or in the layers that carry the gradient
down to it from the neuron layers above (a pooling adjoint, a transposed
convolution), which the report lists.

The tolerance is that of parameter gradients (:mod:`eventsim.testing.compare`):
``GRADIENT_RTOL`` of the layer's scale, the scale floored at ``GRADIENT_FLOOR``
of the largest entry of all layers and at ``GRADIENT_MIN_SCALE``. This is a
diagnosis of a failure already found, never a verdict of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eventsim.errors import LayerError, OptionError
from eventsim.layers import LIF, Flatten, Layer, Recurrent, Residual, SpikingAvgPool
from eventsim.learning.rules import BPTT
from eventsim.network import Network
from eventsim.testing.compare import (
    GRADIENT_FLOOR, GRADIENT_MIN_SCALE, GRADIENT_RTOL, _rounding_note, events_of, neuron_of, recorded_layers,
)
from eventsim.testing.protocol import GradientRequest


@dataclass
class _RecordingBPTT(BPTT):
    """The ``bptt`` rule, keeping every neuron layer's ``D = dL/dI = g E`` per sample.

    ``D`` is what the rule's neuron backward returns (channel-last rows, one
    per step); dividing by the input gain g gives ``E = dL/dU``.
    """

    deltas: dict = field(default_factory=dict, repr=False)

    def _neuron_backward(self, network: Network, result):
        inner = super()._neuron_backward(network, result)

        def backward(kind, name, neuron, shape, grad, frames, feedback=None):
            delta = inner(kind, name, neuron, shape, grad, frames, feedback)
            self.deltas[name, frames.sample] = (np.array(delta, np.float64), shape, float(neuron.input_gain))
            return delta

        return backward


def _c_order(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Channel-last ``(T, P*C)`` rows as ``(T, *shape)`` in C order."""
    if len(shape) == 1:
        return rows.reshape((-1,) + shape)
    c, h, w = shape
    return np.moveaxis(rows.reshape(-1, h, w, c), -1, 1)


def neuron_layers(network: Network) -> list[str]:
    """The neuron layers (those with a potential) by recorded name, in network order."""
    return [name for name, layer in recorded_layers(network).items() if neuron_of(layer) is not None]


def reference_potential_gradients(network: Network, spikes: np.ndarray,
                                  request: GradientRequest) -> dict[str, np.ndarray]:
    """eventsim's ``dL/dU[t]`` of every neuron layer under ``bptt``, ``(T, batch, *shape)`` float64.

    ``L = sum(out * request.grad_output)`` as for parameter gradients
    (:func:`eventsim.testing.compare.reference_gradients`).
    """
    rule = _RecordingBPTT(surrogate=request.surrogate, detach_reset=request.detach_reset, segment=None)  # whole-T deltas
    events = events_of(spikes)
    normed = any(getattr(layer, "norm", None) is not None for layer in network.walk())
    result = network.run(events, record=rule.records, train=normed)
    rule.gradients(network, events, result, request.grad_output)
    out = {}
    for name in neuron_layers(network):
        per_sample = []
        for b in range(spikes.shape[1]):
            delta, shape, gain = rule.deltas[name, b]
            per_sample.append(_c_order(delta, shape) / gain)
        out[name] = np.stack(per_sample, axis=1)
    return out


def backward_paths(network: Network) -> dict[str, list[str]]:
    """Per neuron layer, the layers its output passes through before the next neuron layers.

    The layers whose backward carries the gradient down to that neuron layer
    (synapses, pools, a residual block's skip), in network order; Flatten is
    left out (a reshape).
    """
    paths: dict[str, list[str]] = {}

    def through(pending: list[str], layer: Layer) -> None:
        if not isinstance(layer, Flatten):
            for name in pending:
                paths[name].append(layer.name)

    def visit(layers: list[Layer], pending: list[str]) -> list[str]:
        for layer in layers:
            if isinstance(layer, Residual):
                main = visit(layer.main[:-1], pending)
                through(main, layer.main[-1])
                through(pending, layer.skip)
                pending = [layer.neuron.name]
            elif isinstance(layer, SpikingAvgPool):
                through(pending, layer)
                pending = [layer.name]
            elif isinstance(layer, LIF):
                pending = [layer.name]
            elif isinstance(layer, Recurrent):
                pending = [layer.neuron.name]
            else:
                through(pending, layer)
                continue
            paths.setdefault(pending[0], [])
        return pending

    visit(network.layers, [])
    return paths


@dataclass(frozen=True)
class BackwardDivergence:
    """The first ``dL/dU`` entry, in backward causal order, where the candidate departs from eventsim.

    ``step`` counts from 1; ``neuron`` indexes the layer's shape; ``path``
    lists the layers that carry the gradient down to this layer from the
    neuron layers above (:func:`backward_paths`), whose ``dL/dU`` agree.
    """

    layer: str
    layer_type: str
    step: int
    steps: int
    sample: int
    neuron: tuple
    reference: float
    candidate: float
    scale: float
    path: tuple = ()

    def __str__(self) -> str:
        carried = (f"or in what carries the gradient down to it: {', '.join(self.path)}" if self.path
                   else "(it is the output layer: nothing carries the gradient to it)")
        return "\n".join([
            f"backward: dL/dU first diverges (steps from the last down, layers from the output down) at layer "
            f"{self.layer!r} ({self.layer_type}), step {self.step} of {self.steps}, sample {self.sample}, "
            f"neuron {self.neuron}",
            f"  dL/dU: eventsim {self.reference!r}, candidate {self.candidate!r}"
            f"{_rounding_note(self.reference, self.candidate)} (error {abs(self.candidate - self.reference):.3g}, "
            f"scale {self.scale:.3g})",
            f"  every later step and every layer above agree: the defect acts in the backward of {self.layer!r} "
            f"itself (surrogate, reset, leak) {carried}",
        ])


def _checked(network: Network, reference: dict[str, np.ndarray], candidate) -> dict[str, np.ndarray]:
    if not isinstance(candidate, dict):
        raise OptionError(f"a model's potential_gradients() must return a dict of arrays by neuron layer name, "
                          f"got {type(candidate).__name__}")
    layers = recorded_layers(network)
    out = {}
    for name, ref in reference.items():
        got = candidate.get(name)
        if not isinstance(got, np.ndarray) or got.shape != ref.shape:
            described = f"shape {got.shape}" if isinstance(got, np.ndarray) else type(got).__name__
            raise LayerError(layers[name], f"the candidate's potential_gradients() must give an array of shape "
                                           f"(T, batch, *shape) = {ref.shape} for it, got {described}")
        if not np.all(np.isfinite(got)):
            raise LayerError(layers[name], "the candidate's dL/dU is not finite")
        out[name] = got.astype(np.float64)
    return out


def compare_potential_gradients(network: Network, reference: dict[str, np.ndarray],
                                candidate: dict) -> BackwardDivergence | None:
    """The first divergence of the candidate's ``dL/dU`` in backward causal order (module docstring), or None.

    Raises :class:`~eventsim.errors.LayerError` naming the layer for a
    missing record, a wrong shape or a value that is not finite.
    """
    candidate = _checked(network, reference, candidate)
    overall = max((float(np.abs(r).max()) for r in reference.values() if r.size), default=0.0)
    failed = {}
    scales = {}
    for name, ref in reference.items():
        scales[name] = max(float(np.abs(ref).max()) if ref.size else 0.0, GRADIENT_FLOOR * overall,
                           GRADIENT_MIN_SCALE)
        failed[name] = np.abs(candidate[name] - ref) > GRADIENT_RTOL * scales[name]
    layers = recorded_layers(network)
    paths = backward_paths(network)
    names = list(reference)[::-1]
    steps = next(iter(reference.values())).shape[0] if reference else 0
    for t in range(steps - 1, -1, -1):
        for name in names:
            where = np.argwhere(failed[name][t])
            if where.size:
                b, *neuron = (int(i) for i in where[0])
                at = (t, b, *neuron)
                return BackwardDivergence(name, type(layers[name]).__name__, t + 1, steps, b, tuple(neuron),
                                          float(reference[name][at]), float(candidate[name][at]), scales[name],
                                          tuple(paths.get(name, ())))
    return None


def locate(network: Network, spikes: np.ndarray, request: GradientRequest, model) -> BackwardDivergence | str:
    """The backward divergence of ``model`` on one case, or a line saying why it cannot be located.

    Used on a case whose parameter gradients already diverge: it asks the
    model for ``potential_gradients`` and compares them with eventsim's.
    """
    method = getattr(model, "potential_gradients", None)
    if not callable(method):
        return ("backward: not located by step (the candidate's model has no potential_gradients(); "
                "see docs/testing.md)")
    synaptic = next((layer for layer in network.walk() if isinstance(layer, LIF) and layer.synapse_leak is not None),
                    None)
    if synaptic is not None:  # D = h E_J there: dL/dU is not D / g, and the rule does not keep it
        return (f"backward: not located by step (layer {synaptic.name!r} has a synaptic current, whose dL/dU the "
                "locator does not recover)")
    reference = reference_potential_gradients(network, spikes, request)
    try:
        found = compare_potential_gradients(network, reference, method(spikes, request))
    except Exception as exc:  # a diagnosis must not hide the failure it diagnoses
        return f"backward: not located: the candidate's potential_gradients() failed: {type(exc).__name__}: {exc}"
    if found is None:
        return ("backward: every dL/dU agrees with eventsim's: the deltas are right and the parameter gradient "
                "itself is computed wrongly from them (the weight-gradient correlation or the bias sum)")
    return found
