"""Compare a candidate's records with eventsim's, and the tolerance contract.

The reference side is eventsim itself: :meth:`eventsim.Network.run` on the
same input (forward) and the ``bptt`` rule of :mod:`eventsim.learning.rules`
(gradients). A comparison returns a structured result whose ``str()`` reads
as a report: the *first* divergence in causal order (step by step; within a
step, layers in network order; then sample, then neuron in C order), with
both potentials, the threshold and the distance to it.

The tolerance contract (docs/testing.md, "The tolerance contract"):

- Dyadic cases (``exact=True``): spikes, potentials and every other reported
  value equal eventsim's exactly, for an implementation of the same
  arithmetic form of the neuron step (docs/semantics.md, "Numerics").
- Float cases: an output v that both sides compute as a sum of terms is
  within ``2 * gamma_d * A`` of eventsim's, where ``A`` is the sum of the
  absolute values of all the terms that built v, ``d`` the largest number of
  roundings any term went through, and ``gamma_d = d u / (1 - d u)`` with u
  the unit roundoff of the dtype (Higham, *Accuracy and Stability of
  Numerical Algorithms*, 2nd ed., Lemma 3.1 and Sec. 4.2: any summation order
  of n terms errs by at most ``gamma_{n-1} sum |x_i|``). A potential U is
  within ``2 * E_U``, a running error bound over the neuron's steps in its
  arithmetic form (:func:`potential_errors`): each form rounds its own way
  (the Euler forms relative to ``|R|``, not ``lam |R|``), and the exact
  step damps earlier errors by lam. Every product and quotient adds
  Higham's underflow term. Each side is within half the bound of the exact
  value, hence the factor 2. A spike may differ only where eventsim's
  ``|U - theta|`` is within the bound of U; from there on that sample is
  *not comparable* (everything downstream changes) rather than failing.
- Gradients (float64 only): every gradient array within a relative error of
  ``GRADIENT_RTOL`` of its scale, on cases without a spike flip. The scale is
  the array's largest entry, but at least ``GRADIENT_FLOOR`` times the largest
  entry of all the network's gradients, and at least ``GRADIENT_MIN_SCALE``:
  an array whose true value is 0 (a bias behind silent neurons) comes out of
  both sides as rounding noise, of order eps times the gradients around it
  or, when the whole network's gradient cancels to 0, times the terms that
  cancelled; no bound relative to its own entries can accept that.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any, NamedTuple

import numpy as np

from eventsim.dense.network import DensePlan, DenseWalk
from eventsim.errors import LayerError, OptionError
from eventsim.events import Events
from eventsim.layers import (
    LIF, AvgPool, Conv2d, Delay, Dropout, Identity, Layer, Linear, MaxPool, NeuronConstants, Recurrent, Residual,
    SpikingAvgPool, SumPool,
)
from eventsim.network import Network
from eventsim.testing.protocol import GradientRequest, LayerRecord

#: Largest error of a float64 gradient array, relative to its scale (module docstring).
#: 1e-9 is about 10^7 unit roundoffs: room for ~10^4 rounded terms per entry and
#: a cancellation ratio (sum of ``|terms|`` over the largest entry) up to 10^3.
GRADIENT_RTOL = 1e-9
#: An array's gradient scale is at least this fraction of the network's largest
#: gradient entry, so rounding noise below 1e-13 of that entry (~450 unit
#: roundoffs) is never an error, while a wrong gradient in a layer whose
#: gradients are 10^4 times smaller than the largest still is.
GRADIENT_FLOOR = 1e-4
#: The smallest gradient scale: absolute errors below 1e-13 (GRADIENT_RTOL times
#: this, ~450 unit roundoffs of 1) never count. Generated cases build their
#: gradients from terms of order one (unit or dyadic inputs, weights and
#: thresholds of order one, surrogates up to 1/theta, grad_output ~ N(0, 1)),
#: so a sum of them that cancels to 0 leaves noise far below that.
GRADIENT_MIN_SCALE = 1e-4


# ============================================================== reference
def recorded_layers(network: Network) -> dict[str, Layer]:
    """The layers eventsim records, by name, in network order (causal order within a step).

    Every layer that emits its own stream: neuron layers (LIF, IF, Readout,
    SpikingAvgPool, the neuron of a residual or a recurrent block), synapses
    not followed by a neuron layer, max pooling, dropout and delays. A synapse
    that feeds a neuron layer (or a recurrent block), the skip path of a
    residual block and the connection of a recurrent block are parts of that
    neuron's stage; Flatten is a reshape.
    """
    out: dict[str, Layer] = {}

    def visit(layers: list[Layer]) -> None:
        for i, layer in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, (Residual, Recurrent)):
                if isinstance(layer, Residual):
                    visit(layer.main[:-1])
                out[layer.neuron.name] = layer.neuron
            elif isinstance(layer, (LIF, SpikingAvgPool, MaxPool, Dropout, Delay)):
                out[layer.name] = layer
            elif isinstance(layer, (Conv2d, Linear, AvgPool, SumPool, Identity)) and not isinstance(
                    nxt, (LIF, Recurrent)):
                out[layer.name] = layer

    visit(network.layers)
    return out


def neuron_of(layer: Layer) -> LIF | None:
    """The neuron options of a recorded layer (the pool's IF neuron for SpikingAvgPool), else None."""
    if isinstance(layer, SpikingAvgPool):
        return layer.neuron
    return layer if isinstance(layer, LIF) else None


def events_of(spikes: np.ndarray) -> Events:
    """The protocol's time-major ``(T, batch, *shape)`` input as eventsim Events."""
    return Events.from_dense(np.ascontiguousarray(np.swapaxes(spikes, 0, 1)))


def has_synaptic_current(network: Network) -> bool:
    """Whether a neuron layer of ``network`` has a synaptic current (docs/semantics.md, "State beyond the
    potential")."""
    return any(getattr(layer, "synapse_leak", None) is not None for layer in network.walk())


def reference_records(network: Network, spikes: np.ndarray) -> dict[str, LayerRecord]:
    """eventsim's records of a run on ``spikes`` ``(T, batch, *input_shape)``, in the protocol's layout.

    Layers with a synaptic current also carry it (the run's ``synaptic``
    record), which is asked for only when the network has such a layer.
    """
    synaptic = has_synaptic_current(network)
    result = network.run(events_of(spikes), record=("spikes", "potentials") + (("synaptic",) if synaptic else ()))
    currents = result.synaptic if synaptic else {}
    out = {}
    for name in recorded_layers(network):
        u, j = result.potentials.get(name), currents.get(name)
        out[name] = LayerRecord(
            outputs=np.swapaxes(result.spikes[name].to_dense(), 0, 1),
            potentials=None if u is None else np.swapaxes(u, 0, 1),
            synaptic=None if j is None else np.swapaxes(j, 0, 1),
        )
    return out


def reference_gradients(network: Network, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
    """eventsim's ``bptt`` gradients of ``sum(out * request.grad_output)``."""
    from eventsim.learning.rules import BPTT

    rule = BPTT(surrogate=request.surrogate, detach_reset=request.detach_reset)
    events = events_of(spikes)
    # Input-current norms differentiate their batch statistics: a training run.
    normed = any(getattr(layer, "norm", None) is not None for layer in network.walk())
    result = network.run(events, record=rule.records, train=normed)
    return rule.gradients(network, events, result, request.grad_output)


# ================================================================ bounds
def unit_roundoff(dtype) -> float:
    """u = eps / 2: the largest relative error of one rounding to nearest."""
    return float(np.finfo(dtype).eps) / 2


def gamma(depth: int, dtype) -> float:
    """``gamma_d = d u / (1 - d u)`` (Higham, Lemma 3.1)."""
    du = depth * unit_roundoff(dtype)
    return du / (1 - du)


def smallest_normal(dtype) -> float:
    """lambda, the smallest positive normal number of ``dtype``.

    A product or quotient whose result lies below it (gradual underflow)
    errs by up to ``u * lambda`` (half the smallest subnormal) absolutely,
    however small its operands (Higham, Sec. 2.1, eq. 2.8); sums and
    differences are exact there. The bound counts each product as a term of
    magnitude lambda: ``gamma_d * lambda >= (1 + gamma_d) * u * lambda``
    for d >= 1, so the term covers the error wherever it is carried.
    """
    return float(np.finfo(dtype).tiny)


#: The bounds are evaluated in float64, which rounds them too. Each is a sum of
#: products of nonnegative numbers built with far fewer than 2^30 roundings, so
#: the computed value is at least the exact one times (1 - 2^-23); this factor
#: makes it an upper bound of the derived one again.
EVALUATION_MARGIN = 1 + 2**-20


class StepRounding(NamedTuple):
    """One neuron step of an arithmetic form, as the float bound sees it (docs/semantics.md, "Numerics").

    In exact arithmetic every form computes ``U = lam * R + gain * I``, with
    its constants as rounded to the dtype (lam = 1 - k for the Euler forms,
    1 - 1/d for the divide forms). Its float operations move U from that by
    at most ``gamma_roundings * (r_weight |R| + i_weight |I|)``, plus
    ``u * lambda`` for each of its ``products`` (multiplications and
    divisions) that underflows. The Euler forms round ``R + k (I - R)``: their
    error is relative to ``|R|``, not to ``lam |R|``.
    """

    lam: float
    gain: float
    r_weight: float
    i_weight: float
    roundings: int
    products: int


def step_rounding(neuron: LIF, constants: NeuronConstants) -> StepRounding:
    """The :class:`StepRounding` of ``neuron``'s form, from its ``constants`` (rounded to the run's dtype)."""
    form = neuron.arithmetic
    if form == "product":  # lam * R and g * I rounded, then their sum: two roundings per term
        lam, gain = float(constants.leak), float(constants.gain)
        return StepRounding(lam, gain, lam, gain, roundings=2, products=2)
    # The Euler forms' gain is k itself; the divide forms' k is 1/d. k <= 1, so lam >= 0.
    k = float(constants.gain) if form == "euler" else 1.0 / float(constants.divisor)
    if form == "subtract-divide":  # R / d, R - R / d, + I
        return StepRounding(1.0 - k, 1.0, 1.0, 1.0, roundings=3, products=1)
    return StepRounding(1.0 - k, k, 1.0 + k, k, roundings=3, products=1)  # I - R, its scaling, R + that


def rounding_depths(network: Network) -> dict[str, int]:
    """Per recorded layer, the largest number of roundings a term of its value went through.

    Of its output for synapses, pools and dropout; of its input current for
    neuron layers (their potentials are bounded step by step,
    :func:`potential_errors`; their spikes, given the same potentials, carry
    no error). A weighted sum of n terms costs at most n + 1 roundings (the
    products, n - 1 additions, the bias); an average pool of k x k inputs
    k^2 + 1; max pooling, identities and dropout at inference none; the two
    paths of a residual block one more for their sum.
    """
    depths: dict[str, int] = {}
    recorded = recorded_layers(network)

    def synapse(layer: Layer, d: int) -> int:
        if isinstance(layer, (Conv2d, Linear)):
            return d + layer.fan_in + 2
        if isinstance(layer, (AvgPool, SumPool)):
            return d + prod(layer.kernel_size) + 1
        return d

    def neuron(name: str, current: int) -> int:
        depths[name] = current
        return 0

    def visit(layers: list[Layer], d: int) -> int:
        for layer in layers:
            if isinstance(layer, Residual):
                main = synapse(layer.main[-1], visit(layer.main[:-1], d))
                d = neuron(layer.neuron.name, max(main, synapse(layer.skip, d)) + 1)
            elif isinstance(layer, SpikingAvgPool):
                d = neuron(layer.name, synapse(layer.pool, d))
            elif isinstance(layer, LIF):
                d = neuron(layer.name, d)
            else:
                d = synapse(layer, d)
                if layer.name in recorded:
                    depths[layer.name] = d
        return d

    visit(network.layers, 0)
    return depths


class _MagnitudeWalk(DenseWalk):
    """The dense walk on magnitudes: ``|W|`` on ``|x|``; neurons emit eventsim's spikes.

    Every product a synapse or pool rounds adds ``lambda`` (the underflow
    term, :func:`smallest_normal`): ``fan_in * lambda`` joins the bias of a
    weighted layer, ``k^2 * lambda`` the output of a k x k average pool.
    ``potentials[name]`` collects each neuron layer's current magnitude
    ``A_I[t]`` instead of a potential.
    """

    def __init__(self, plan: DensePlan, batch: int, spikes: dict[str, np.ndarray], pools: dict[str, float]) -> None:
        super().__init__(plan, {}, batch)
        self.spikes = spikes
        self.pools = pools  # average pool (or spiking one) name -> k^2 lambda

    def synapse(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        return super().synapse(layer, x) + self.pools.get(layer.name, 0.0)

    def neuron(self, name: str, current: np.ndarray) -> np.ndarray:
        self.potentials[name].append(current + self.pools.get(name, 0.0))
        return self.spikes[name][self.step]


def magnitudes(network: Network, spikes: np.ndarray, reference: dict[str, LayerRecord]) -> dict[str, np.ndarray]:
    """Per recorded layer, ``A``: the sum of the absolute values of the terms that built its value.

    ``(T, batch, *shape)`` float64: of its output for synapses, pools and
    dropout; of its input current ``A_I`` for neuron layers. ``|W|`` is
    applied to the input magnitudes (``+ |b|``), given eventsim's spikes as
    the inputs of every synapse after a neuron layer (spikes carry no
    error). Each rounded product adds ``lambda``, so that ``gamma_d * A``
    bounds the error underflow included (:func:`smallest_normal`).
    """
    dtype = np.float64
    tiny = smallest_normal(network.dtype)
    plan = DensePlan(np.dtype(dtype))
    plan.add(network.layers, network.input_shape)
    plan.params = {k: (np.abs(w), (0.0 if b is None else np.abs(b)) + np.full(w.shape[0], tiny * prod(w.shape[1:])))
                   for k, (w, b) in plan.params.items()}
    pools = {layer.name: tiny * prod(layer.kernel_size) for layer in network.walk()
             if isinstance(layer, (AvgPool, SpikingAvgPool))}
    spike_maps = {name: rec.outputs.astype(dtype) for name, rec in reference.items() if rec.potentials is not None}
    walk = _MagnitudeWalk(plan, spikes.shape[1], spike_maps, pools)
    x = np.abs(spikes.astype(dtype))
    for t in range(spikes.shape[0]):
        walk.step = t
        walk.sequence(network.layers, x[t])
    return {name: np.stack(walk.potentials[name] if neuron_of(layer) is not None else walk.outputs[name])
            for name, layer in recorded_layers(network).items()}


def potential_errors(neuron: LIF, current: np.ndarray, current_error: np.ndarray, spikes: np.ndarray,
                     dtype) -> np.ndarray:
    """How far one implementation's potentials U may lie from the exact ones, ``(T, batch, *shape)`` float64.

    A running error bound (Higham, Sec. 3.3) over the neuron's steps, in
    its arithmetic form. ``current`` is ``A_I`` (:func:`magnitudes`),
    ``current_error`` the bound of the current's error, ``spikes`` eventsim's
    (a sample is compared only up to its first flip, so both sides reset at
    the same steps). With ``A`` bounding ``|U|`` and ``E`` its error, the
    exact step ``U = lam R + g I`` carries the earlier errors and the form's
    own rounding (:class:`StepRounding`) adds to them::

        A_U[t] = lam A_R + g A_I[t]
        E_U[t] = lam E_R + g E_I[t] + gamma_rho (w_R (A_R + E_R) + w_I (A_I + E_I) + p lambda)

    where R is U[t-1] after the reset: ``A_R = |v_reset|``, ``E_R = 0`` at a
    hard reset; ``A_R = A_U + theta`` and ``E_R = E_U + u (A_U + E_U + theta)``
    at a soft one (``U - theta`` is one rounding). The error does not grow
    with T as a depth would: the exact step damps it by lam. With
    ``reset_delayed`` (product form) the hard reset replaces ``lam U`` by
    ``v_reset`` and the soft reset is one more rounding after the sum.
    """
    dtype = np.dtype(dtype)
    shape = current.shape[2:]
    constants = neuron.constants(shape, dtype)
    step = step_rounding(neuron, constants)
    u, tiny, rho = unit_roundoff(dtype), smallest_normal(dtype), gamma(step.roundings, dtype)
    theta = _thresholds(neuron, shape, dtype).astype(np.float64)
    theta = np.where(np.isfinite(theta), theta, 0.0)  # an infinite threshold never resets
    v_reset, soft = abs(float(constants.v_reset)), neuron.reset == "soft"
    a = e = np.zeros(current.shape[1:])  # U[0] = 0, exact
    fired = np.zeros(current.shape[1:], bool)
    errors = np.empty_like(current)
    for t in range(current.shape[0]):
        a_i, e_i = current[t], current_error[t]
        if neuron.reset_delayed:
            a, e = _delayed_step(step, a, e, a_i, e_i, fired, theta if soft else None, v_reset, u, rho, tiny)
        else:
            if soft:
                a_r, e_r = a + theta * fired, e + u * (a + e + theta) * fired
            else:
                a_r, e_r = np.where(fired, v_reset, a), np.where(fired, 0.0, e)
            local = step.r_weight * (a_r + e_r) + step.i_weight * (a_i + e_i) + step.products * tiny
            a, e = step.lam * a_r + step.gain * a_i, step.lam * e_r + step.gain * e_i + rho * local
        errors[t] = e
        fired = spikes[t] != 0
    return errors


def _delayed_step(step: StepRounding, a, e, a_i, e_i, fired, theta, v_reset: float, u: float, rho: float,
                  tiny: float):
    """``(A_U, E_U)`` of one product-form step with the reset of the previous spike applied after the leak.

    Soft (``theta`` given): ``fl(fl(lam U + g I) - theta)``; hard:
    ``fl(v_reset + g I)`` where the neuron fired, ``fl(lam U + g I)`` elsewhere.
    """
    lam, g = step.lam, step.gain
    inputs = g * (a_i + e_i) + 2 * tiny
    if theta is None:
        carried = np.where(fired, v_reset, lam * (a + e))
        a_v, e_v = np.where(fired, v_reset, lam * a), np.where(fired, 0.0, lam * e)
        return a_v + g * a_i, e_v + g * e_i + rho * (carried + inputs)
    a_sum, e_sum = lam * a + g * a_i, lam * e + g * e_i + rho * (lam * (a + e) + inputs)
    return a_sum + theta * fired, e_sum + u * (a_sum + e_sum + theta) * fired


def _thresholds(neuron: LIF, shape: tuple[int, ...], dtype) -> np.ndarray:
    """theta rounded to ``dtype``, broadcastable against ``(T, batch, *shape)``."""
    theta = neuron.thresholds(shape).astype(dtype)
    return theta.reshape((-1,) + (1,) * (len(shape) - 1))


def _beyond_the_bound(layer: Layer) -> str:
    """What of ``layer`` :func:`potential_errors` does not model ("" if nothing): its state options,
    a recurrent connection (its current depends on its own spikes), a delay."""
    if isinstance(layer, Recurrent):
        return "a recurrent connection"
    if isinstance(layer, Delay):
        return "a delay"
    return ", ".join(layer.extended) if isinstance(layer, LIF) else ""


def forward_bounds(network: Network, spikes: np.ndarray, reference: dict[str, LayerRecord]) -> dict[str, np.ndarray]:
    """Per recorded layer, the largest permitted difference of its potential (neuron layers) or of its output
    (other layers), ``(T, batch, *shape)``: twice one side's error bound, as both sides err.

    Outputs: ``2 gamma_d A``. Potentials: ``2 E_U`` (:func:`potential_errors`)
    from the current's ``E_I = gamma_d A_I``. A network with an input-current
    norm is refused: the bound does not model the norm's ``k I + c``.
    """
    normed = next((layer for layer in network.walk() if getattr(layer, "norm", None) is not None), None)
    if normed is not None:
        raise LayerError(normed, "has an input-current norm, which the float rounding bound does not cover: fold it "
                                 "(eventsim.folding.fold_norms) or compare a dyadic case exactly")
    for layer in network.walk():
        uncovered = _beyond_the_bound(layer)
        if uncovered:
            raise LayerError(layer, f"has {uncovered}, which the float rounding bound does not cover "
                                    "(docs/semantics.md, 'State beyond the potential'): compare a dyadic case exactly")
    depths = rounding_depths(network)
    layers = recorded_layers(network)
    bounds = {}
    for name, a in magnitudes(network, spikes, reference).items():
        error = gamma(depths[name], network.dtype) * a
        neuron = neuron_of(layers[name])
        if neuron is not None:
            error = potential_errors(neuron, a, error, reference[name].outputs, network.dtype)
        bounds[name] = 2 * EVALUATION_MARGIN * error
    return bounds


# ============================================================ results
def float32_rounding(reference: float, candidate: float) -> bool:
    """Whether ``candidate`` differs from ``reference`` by being exactly its float32 rounding.

    The signature of a float64 case computed (somewhere) in float32: weights
    created in float32 and converted, spikes kept as float32, a float32
    constant. A report says so, because the cure is a dtype, not the algebra.
    """
    return candidate != reference and float(np.float32(reference)) == candidate


def _rounding_note(reference: float, candidate: float) -> str:
    return " (the candidate's value is exactly eventsim's rounded to float32)" if float32_rounding(
        reference, candidate) else ""


@dataclass(frozen=True)
class Divergence:
    """Where a candidate first departs from eventsim (or, for ``kind="flip"``, may).

    ``kind``: ``"synaptic"`` (the synaptic current J differs), ``"potential"``
    (U beyond the bound), ``"output"`` (an output
    beyond the bound, or a spike that differs where U is not near theta) or
    ``"flip"`` (a spike that differs where eventsim's ``|U - theta|`` is within
    the bound: permitted; the sample is not comparable from there on).
    ``step`` counts from 1 as in docs/semantics.md; ``neuron`` indexes the
    layer's shape. Potential fields are None for layers without a potential,
    synaptic ones where the candidate reported no synaptic current.
    """

    kind: str
    layer: str
    layer_type: str
    step: int
    steps: int
    sample: int
    neuron: tuple
    reference_output: float
    candidate_output: float
    reference_potential: float | None = None
    candidate_potential: float | None = None
    threshold: float | None = None
    bound: float = 0.0
    reference_synaptic: float | None = None
    candidate_synaptic: float | None = None

    @property
    def distance(self) -> float | None:
        """eventsim's ``U - theta`` at the position."""
        if self.reference_potential is None:
            return None
        return self.reference_potential - self.threshold

    def __str__(self) -> str:
        what = {"synaptic": "synaptic current differs", "potential": "potential differs", "output": "output differs",
                "flip": "spike flip within the tolerance (not comparable from here)"}[self.kind]
        lines = [f"{what}: layer {self.layer!r} ({self.layer_type}), step {self.step} of {self.steps}, "
                 f"sample {self.sample}, neuron {self.neuron}"]
        if self.reference_synaptic is not None:
            lines.append(f"  synaptic current J: eventsim {self.reference_synaptic!r}, candidate "
                         f"{self.candidate_synaptic!r}" + _rounding_note(self.reference_synaptic,
                                                                          self.candidate_synaptic))
        if self.reference_potential is not None:
            diff = self.candidate_potential - self.reference_potential
            lines.append(f"  potential U: eventsim {self.reference_potential!r}, candidate {self.candidate_potential!r} "
                         f"(difference {diff:.3g}, bound {self.bound:.3g})"
                         + _rounding_note(self.reference_potential, self.candidate_potential))
            lines.append(f"  threshold {self.threshold!r}; eventsim U - theta = {self.distance!r}")
        elif self.kind != "flip":
            lines.append(f"  bound {self.bound:.3g}")
        lines.append(f"  output: eventsim {self.reference_output!r}, candidate {self.candidate_output!r}"
                     + _rounding_note(self.reference_output, self.candidate_output))
        return "\n".join(lines)


@dataclass(frozen=True)
class ForwardComparison:
    """The result of :func:`compare_forward`.

    ``divergence`` is the first failure (None when the candidate conforms);
    ``flips`` holds the first permitted flip of every sample that has one
    (float cases only); ``layers`` the layers compared, in causal order.
    """

    exact: bool
    layers: tuple
    divergence: Divergence | None
    flips: tuple = ()

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def __str__(self) -> str:
        mode = "exact (dyadic case)" if self.exact else "within the rounding bound (float case)"
        head = f"forward, {mode}, layers {', '.join(self.layers)}: "
        if self.divergence is not None:
            return head + "DIVERGES\n" + str(self.divergence)
        if self.flips:
            return head + "conforms up to permitted flips\n" + "\n".join(str(f) for f in self.flips)
        return head + "conforms"


@dataclass(frozen=True)
class GradientDivergence:
    """The gradient entry with the largest error, relative to the scale of its array (``largest``)."""

    key: str
    index: tuple
    reference: float
    candidate: float
    largest: float
    error: float

    def __str__(self) -> str:
        return (f"parameter {self.key!r}, index {self.index}: eventsim {self.reference!r}, candidate "
                f"{self.candidate!r}{_rounding_note(self.reference, self.candidate)}; error {self.error:.3g} "
                f"of the gradient scale ({self.largest:.3g})")


@dataclass(frozen=True)
class GradientComparison:
    """The result of :func:`compare_gradients`; ``worst`` is None for a network without parameters.

    ``errors`` holds every parameter's largest error in network order, so that
    a report can walk them from the output backwards: the first layer (from
    the output) whose gradient diverges is the highest place the defect can
    be, as every layer above it received correct gradients. ``backward`` is
    the finer location, per neuron layer and step, when the candidate's model
    offers ``potential_gradients`` (:mod:`eventsim.testing.backward`): a
    :class:`~eventsim.testing.backward.BackwardDivergence`, or a line saying
    why there is none.
    """

    rtol: float
    worst: GradientDivergence | None
    errors: tuple = ()
    backward: Any = None

    @property
    def ok(self) -> bool:
        return self.worst is None or self.worst.error <= self.rtol

    @property
    def first_layer(self) -> str | None:
        """The first layer, walking from the output backwards, whose parameter gradient diverges."""
        for error in reversed(self.errors):
            if error.error > self.rtol:
                return parameter_layer(error.key)
        return None

    def __str__(self) -> str:
        verdict = "conform" if self.ok else "DIVERGE"
        if self.worst is None:
            return "gradients: no parameters"
        lines = [f"gradients {verdict} (tolerance {self.rtol:.0e} of the gradient scale); largest error at",
                 f"  {self.worst}"]
        if not self.ok:
            walk = ", ".join(f"{e.key} {'DIVERGES' if e.error > self.rtol else 'conforms'}"
                             for e in reversed(self.errors))
            lines.append(f"by parameter, from the output backwards: {walk}")
            lines.append(f"  first diverging layer from the output: {self.first_layer!r} (every parameter above it "
                         "conforms)")
        if self.backward is not None:
            lines.append(str(self.backward))
        return "\n".join(lines)


# =========================================================== validation
def _check_array(layer: Layer, what: str, arr, shape: tuple, dtypes: tuple) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise LayerError(layer, f"the candidate's {what} must be a numpy array, got {type(arr).__name__}")
    if arr.shape != shape:
        raise LayerError(layer, f"the candidate's {what} have shape {arr.shape}, expected (T, batch, *shape) = {shape}")
    if arr.dtype not in dtypes:
        raise LayerError(layer, f"the candidate's {what} are {arr.dtype}, expected {' or '.join(map(str, dtypes))}")
    if arr.dtype != np.bool_ and not np.all(np.isfinite(arr)):
        t, b, *where = (int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise LayerError(layer, f"the candidate's {what} are not finite at step {t + 1}, sample {b}, "
                                f"neuron {tuple(where)} (value {arr[(t, b, *where)]})")
    return arr


def check_records(network: Network, reference: dict[str, LayerRecord], records: dict) -> list[str]:
    """Validate a candidate's records; return the names to compare, in causal order.

    Every neuron layer must be reported with outputs and potentials, and
    may be with its synaptic current; other layers eventsim records are
    compared when reported. Raises
    :class:`~eventsim.errors.LayerError` naming the layer for a missing
    record, a wrong shape or dtype, or a value that is not finite.
    """
    if not isinstance(records, dict):
        raise OptionError(f"a model's run() must return a dict of LayerRecord by layer name, got {type(records).__name__}")
    layers = {layer.name: layer for layer in network.walk()}
    unknown = sorted(set(records) - set(layers))
    if unknown:
        raise LayerError(network, f"the candidate reports layers the network does not have: {unknown}")
    dtype = network.dtype
    names = []
    for name, layer in recorded_layers(network).items():
        ref = reference[name]
        rec = records.get(name)
        if rec is None:
            if ref.potentials is not None:
                raise LayerError(layer, "is a neuron layer but the candidate reported no record for it")
            continue
        if not isinstance(rec, LayerRecord):
            raise LayerError(layer, f"the candidate's record must be a LayerRecord, got {type(rec).__name__}")
        _check_array(layer, "outputs", rec.outputs, ref.outputs.shape, (dtype, np.dtype(np.bool_)))
        if ref.potentials is not None:
            if rec.potentials is None:
                raise LayerError(layer, "is a neuron layer but the candidate reported no potentials for it")
            _check_array(layer, "potentials", rec.potentials, ref.potentials.shape, (dtype,))
        if rec.synaptic is not None:
            if ref.synaptic is None:
                raise LayerError(layer, "has no synaptic current, but the candidate reported one for it")
            _check_array(layer, "synaptic currents", rec.synaptic, ref.synaptic.shape, (dtype,))
        names.append(name)
    return names


# =========================================================== comparison
def compare_forward(
    network: Network,
    spikes: np.ndarray,
    records: dict[str, LayerRecord],
    *,
    exact: bool,
    reference: dict[str, LayerRecord] | None = None,
) -> ForwardComparison:
    """Compare a candidate's forward records with eventsim's on one input.

    Parameters
    ----------
    network : Network
        The case's network (what the candidate built its model from).
    spikes : array ``(T, batch, *input_shape)``
        The input the candidate ran on.
    records : dict of LayerRecord
        What the candidate's ``Model.run(spikes)`` returned.
    exact : bool
        Demand equality (dyadic cases) instead of the rounding bound.
    reference : dict of LayerRecord, optional
        eventsim's records (:func:`reference_records`), when already computed.
    """
    reference = reference_records(network, spikes) if reference is None else reference
    names = check_records(network, reference, records)
    layers = recorded_layers(network)
    steps, batch = spikes.shape[:2]
    if exact:
        bounds = {name: np.zeros(reference[name].outputs.shape) for name in names}
    else:
        bounds = forward_bounds(network, spikes, reference)
    verdicts = {name: _verdicts(layers[name], reference[name], records[name], bounds[name], exact, network.dtype)
                for name in names}
    flipped: dict[int, Divergence] = {}
    for t in range(steps):
        for name in names:
            failed, flip = verdicts[name]
            for b in range(batch):
                if b in flipped:
                    continue
                for mask, kind in ((failed[t, b], None), (flip[t, b], "flip")):
                    where = np.argwhere(mask)
                    if where.size:
                        found = _divergence(kind, name, layers[name], (t, b, *where[0]), reference[name],
                                            records[name], bounds[name], network.dtype)
                        if kind is None:
                            return ForwardComparison(exact, tuple(names), found, tuple(flipped.values()))
                        flipped[b] = found
                        break
    return ForwardComparison(exact, tuple(names), None, tuple(flipped[b] for b in sorted(flipped)))


def _verdicts(layer, ref: LayerRecord, rec: LayerRecord, bound, exact: bool, dtype):
    """``(failed, flip)`` boolean masks ``(T, batch, *shape)`` of one layer."""
    out_ref = ref.outputs.astype(np.float64)
    out_rec = rec.outputs.astype(np.float64)
    neuron = neuron_of(layer)
    if neuron is None:
        return np.abs(out_rec - out_ref) > bound, np.zeros(out_ref.shape, bool)
    u_ref = ref.potentials.astype(np.float64)
    potential_off = np.abs(rec.potentials.astype(np.float64) - u_ref) > bound
    spike_off = out_rec != out_ref
    theta = _thresholds(neuron, u_ref.shape[2:], dtype).astype(np.float64)
    with np.errstate(invalid="ignore"):
        near = np.abs(u_ref - theta) <= bound
    flip = spike_off & ~potential_off & near & (not exact)
    return potential_off | _synaptic_off(ref, rec) | (spike_off & ~flip), flip


def _synaptic_off(ref: LayerRecord, rec: LayerRecord) -> np.ndarray | bool:
    """Where a reported synaptic current differs from eventsim's: compared exactly (dyadic cases only, as the
    float bound refuses layers with one)."""
    return False if rec.synaptic is None else rec.synaptic != ref.synaptic


def _divergence(kind, name, layer, pos, ref: LayerRecord, rec: LayerRecord, bound, dtype) -> Divergence:
    t, b, *where = (int(i) for i in pos)
    neuron = neuron_of(layer)
    at = (t, b, *where)
    fields = dict(layer=name, layer_type=type(layer).__name__, step=t + 1, steps=ref.outputs.shape[0], sample=b,
                  neuron=tuple(where), reference_output=float(ref.outputs[at]),
                  candidate_output=float(rec.outputs[at]), bound=float(bound[at]))
    if neuron is not None:
        u_ref, u_rec = float(ref.potentials[at]), float(rec.potentials[at])
        theta = float(_thresholds(neuron, ref.outputs.shape[2:], dtype)[(where[0],) + (0,) * (len(where) - 1)])
        fields.update(reference_potential=u_ref, candidate_potential=u_rec, threshold=theta)
        if rec.synaptic is not None:
            fields.update(reference_synaptic=float(ref.synaptic[at]), candidate_synaptic=float(rec.synaptic[at]))
        if kind is None and rec.synaptic is not None and rec.synaptic[at] != ref.synaptic[at]:
            kind = "synaptic"  # J comes before U in the step
        elif kind is None:
            kind = "potential" if abs(u_rec - u_ref) > bound[at] else "output"
    kind = kind or "output"
    return Divergence(kind=kind, **fields)


def gradient_errors(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> list[GradientDivergence]:
    """For each parameter, its largest error relative to its scale (module docstring, "Gradients").

    The scale of an array is ``max(largest |entry|, GRADIENT_FLOOR * largest
    |entry| of all arrays, GRADIENT_MIN_SCALE)``, from ``reference``.
    """
    overall = max((float(np.abs(r).max()) for r in reference.values() if r.size), default=0.0)
    errors = []
    for key, ref in reference.items():
        if not ref.size:
            continue
        diff = np.abs(np.asarray(candidate[key], np.float64) - ref)
        largest = max(float(np.abs(ref).max()), GRADIENT_FLOOR * overall, GRADIENT_MIN_SCALE)
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        peak = float(diff[index])
        error = peak / largest
        errors.append(GradientDivergence(key, index, float(ref[index]), float(candidate[key][index]), largest, error))
    return errors


def parameter_layer(key: str) -> str:
    """The layer a parameter key belongs to: ``"conv1.weight"`` -> conv1, ``"lif1.norm.scale"`` -> lif1."""
    return key.split(".norm.")[0] if ".norm." in key else key.rsplit(".", 1)[0]


def compare_gradients(
    network: Network, reference: dict[str, np.ndarray], candidate: dict, *, rtol: float | None = None
) -> GradientComparison:
    """Compare a candidate's gradients with eventsim's (:func:`reference_gradients`).

    Every parameter key must be present with the parameter's shape and the
    network's dtype, and finite; the result names the entry with the largest
    error relative to its scale (:func:`gradient_errors`). float64 networks only:
    float32 gradients have no sound fixed relative bound (docs/testing.md).
    """
    if network.dtype != np.float64 and rtol is None:
        raise OptionError("gradients are compared on float64 networks only (docs/testing.md, 'The tolerance "
                          "contract'); pass rtol= to compare anyway")
    rtol = GRADIENT_RTOL if rtol is None else float(rtol)
    if not isinstance(candidate, dict):
        raise OptionError(f"a model's gradients() must return a dict by parameter key, got {type(candidate).__name__}")
    missing, unexpected = sorted(set(reference) - set(candidate)), sorted(set(candidate) - set(reference))
    if missing or unexpected:
        raise LayerError(network, f"the candidate's gradients miss {missing} and have unexpected keys {unexpected}")
    layers = {layer.name: layer for layer in network.walk()}
    for key, ref in reference.items():
        layer = layers[parameter_layer(key)]
        got = candidate[key]
        if not isinstance(got, np.ndarray) or got.shape != ref.shape or got.dtype != ref.dtype:
            described = f"{got.dtype} {got.shape}" if isinstance(got, np.ndarray) else type(got).__name__
            raise LayerError(layer, f"the candidate's gradient {key!r} must be a {ref.dtype} array of shape "
                                    f"{ref.shape}, got {described}")
        if not np.all(np.isfinite(got)):
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
            raise LayerError(layer, f"the candidate's gradient {key!r} is not finite at index {where}")
    errors = gradient_errors(reference, candidate)
    worst = max(errors, key=lambda d: d.error, default=None)
    return GradientComparison(rtol, worst, tuple(errors))
