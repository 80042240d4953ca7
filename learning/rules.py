"""The gradient rules: ``lee2020``, ``lee2020-code`` and ``bptt``.

docs/semantics.md, "Gradient rules". Every rule differentiates the same forward
pass (:meth:`eventsim.Network.run`) and shares the layer-by-layer backward of
:mod:`eventsim.learning.backprop`; they differ in what the forward must record
and in the derivative of a neuron layer, ``D = dL/dI`` from ``G = dL/ds``.

Usage::

    rule = BPTT(surrogate=FastSigmoid(c=10))
    result = network.run(events, record=rule.records, train=True, rng=rng)
    value, grad_output = loss(result, labels)
    grads = rule.gradients(network, events, result, grad_output)   # {"conv1.weight": ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numba import njit

from eventsim import kernels
from eventsim.errors import EventsError, LayerError, OptionError
from eventsim.learning.configs import from_config
from eventsim.events import Events
from eventsim.layers import LIF, Delay, Linear, Readout, Recurrent, Residual
from eventsim.network import Network, RunResult
from eventsim.stages import NeuronState
from eventsim.kernels import reverse_recursion, surrogate_recursion
from eventsim.layout import as3, to_channel_last
from eventsim.learning.backprop import Backprop, Frames, channel_last_into, neuron_thresholds, scratch
from eventsim.learning.backprop import Accumulators, pooling_neurons
from eventsim.learning.parameters import _entries
from eventsim.learning.surrogates import StraightThrough, Surrogate, surrogate_from_config
from eventsim.norm import in_lockstep, normed_layers, refuse_norms


#: Steps per segment of a :class:`BPTT` backward in segments: Lee's N-MNIST
#: LeNet at T = 100 in three (34, 34, 32). Batch 16, 2 threads, the rise of
#: the peak resident set in a step at T = 100 / 300: 33 / 42 MiB, against
#: 57 / 60 MiB with segments of 50 for 1-3 % less time, and 27-37 MiB with
#: segments of 25 for 5-11 % more (each segment's forward runs twice, and
#: each run and backward has its fixed cost).
DEFAULT_SEGMENT = 34


class Rule:
    """Base class of the gradient rules.

    Attributes
    ----------
    name : str
        The rule's name in the contract and in configurations.
    records : tuple of str
        What :meth:`eventsim.Network.run` must record for :meth:`gradients`.
    normalises : bool
        Whether the rule differentiates through input-current norms
        (:mod:`eventsim.norm`); the others refuse a network that has one.
    covers_state : bool
        Whether the rule differentiates synaptic currents, recurrent
        connections, delays and the other options of docs/semantics.md,
        "State beyond the potential"; the others refuse them, naming the layer.
    """

    name: ClassVar[str] = ""
    records: ClassVar[tuple[str, ...]] = ()
    normalises: ClassVar[bool] = False
    covers_state: ClassVar[bool] = False

    def gradients(
        self, network: Network, events: Events, result: RunResult, grad_output: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Gradients of the loss with respect to every parameter of ``network``.

        Parameters
        ----------
        network : Network
            The network ``result`` was computed with, weights unchanged since.
        events : Events
            The input of that run.
        result : RunResult
            The forward run, recorded with ``record=self.records``.
        grad_output : ``(batch, *output_shape)`` array
            ``dL/d(readout)`` when the last layer is a Readout, else
            ``dL/d(spike count)`` of the last layer (docs/semantics.md,
            "What a loss hands to a rule").

        Returns
        -------
        dict
            By parameter key (:func:`eventsim.learning.parameters.parameters`),
            arrays of the parameters' shapes and dtype.
        """
        grad_output = self._check(network, events, result, grad_output)
        sample_backward = self._sample_backward(network, events, result, grad_output)
        accumulators = Accumulators.taken(network, result.batch)
        # Samples in parallel (eventsim.threads), meeting at norms for the
        # batch's sums, their gradients summed in one fixed tree
        # (eventsim.learning.chunks): the sums are the same whatever the
        # number of threads, and whatever chunks the batch was split into.
        in_lockstep([sample_backward(b, accumulators.sample(b)) for b in range(result.batch)], events.busiest_first())
        grads, finite = accumulators.summed(result.batch)
        return grads if finite else _finite(network, grads)

    def config(self) -> dict:
        """JSON-ready description; :func:`rule_from_config` inverts it."""
        return {"name": self.name}

    def forward_plan(self, network: Network, steps: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """What a forward run of ``steps`` steps must record for :meth:`gradients`, and its ``checkpoints=``
        (:meth:`eventsim.Network.run`)."""
        return self.records, ()

    # ----------------------------------------------------------------- hooks
    def _sample_backward(self, network: Network, events: Events, result: RunResult, grad_output: np.ndarray):
        """The backward pass of one sample, ``(b, acc) -> Pass``, accumulating into ``acc`` (:class:`Backprop`)."""
        neuron = self._neuron_backward(network, result)
        pool_neurons = pooling_neurons(network)

        def sample_backward(b: int, acc: dict[str, np.ndarray]):
            # The sample's own task builds its input streams: nothing of the
            # backward runs on the calling thread alone before the threads start.
            streams, rows = self._streams(events, result, b)
            frames = Frames(streams, rows, {k: m[b : b + 1] for k, m in result.masks.items()}, sample=b,
                            norm_stats=result.norm_stats)
            top = _top_rows(network, grad_output[b], rows.stop - rows.start)
            yield from Backprop(network, neuron, acc, pool_neurons).run(frames, top)

        return sample_backward

    def _needed(self, result: RunResult) -> tuple[str, ...]:
        """The records :meth:`gradients` reads from ``result``."""
        return self.records

    def _neuron_backward(self, network: Network, result: RunResult):
        raise NotImplementedError

    def _streams(self, events: Events, result: RunResult, sample: int) -> tuple[dict[str | None, Events], slice]:
        """The input events of every layer by name (None: the network's input), one frame per row,
        and the rows that are ``sample``'s frames.

        Per-step rules: the recorded spikes of the batch, a frame per step of a sample.
        """
        steps = events.steps
        return {None: events, **result.spikes}, slice(sample * steps, (sample + 1) * steps)

    def _check(self, network, events, result, grad_output) -> np.ndarray:
        if not self.normalises:
            refuse_norms(network, f"rule {self.name!r}")
        if not self.covers_state:
            refuse_state(network, f"rule {self.name!r}")
        missing = [r for r in self._needed(result) if r not in result.recorded]
        if missing:
            raise OptionError(
                f"rule {self.name!r} needs a forward run with record={self.records!r}; "
                f"this run did not record {missing}"
            )
        if result.batch != events.batch or result.steps != events.steps:
            raise OptionError(
                f"the run has batch {result.batch} and {result.steps} steps but the events have "
                f"batch {events.batch} and {events.steps} steps; pass the events the run was computed on"
            )
        grad_output = np.asarray(grad_output)
        expected = (result.batch,) + tuple(network.output_shape)
        if grad_output.shape != expected:
            raise OptionError(f"grad_output must have shape {expected} (batch, *output_shape), got {grad_output.shape}")
        if not np.all(np.isfinite(grad_output)):
            raise OptionError("grad_output is not finite")
        return grad_output.astype(network.dtype, copy=False)


def _top_rows(network: Network, grad_output: np.ndarray, rows: int) -> np.ndarray:
    """One sample's ``dL/d(output)``, channel-last, repeated in ``rows`` rows (one per frame)."""
    top = to_channel_last(grad_output, network.output_shape)
    return np.ascontiguousarray(np.broadcast_to(top, (rows, top.shape[0])))


def refuse_state(network: Network, who: str, instead: str = "use rule 'bptt'") -> None:
    """:class:`LayerError` naming the first layer beyond feed-forward single-spike LIF/IF neurons: ``who`` does not cover it.

    docs/semantics.md, "bptt": ``lee2020`` and ``lee2020-code`` differentiate
    single-spike LIF/IF neurons fed forward, whose state is the potential
    alone; so does the dense reference of the rules.
    """
    for layer in network.walk():
        what = None
        if isinstance(layer, (Recurrent, Delay)):
            what = "recurrent connections" if isinstance(layer, Recurrent) else "delays"
        elif isinstance(layer, Linear) and layer.delay is not None:
            what = "synaptic delays"
        elif isinstance(layer, LIF) and layer.extended:
            what = ", ".join(layer.extended)
        if what is not None:
            raise LayerError(layer, f"{who} does not cover {what}; {instead}")


def _finite(network: Network, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``grads``, unless one is inf or NaN: then LayerError naming its layer and parameter.

    A forward pass whose potentials stayed finite can still overflow backward
    (a weight near the dtype's maximum times a surrogate derivative); an
    optimizer step with that gradient would write inf into the weights.
    """
    owners = _entries(network, running=False)
    for key, grad in grads.items():
        if not np.isfinite(grad).all():
            owner, what, _ = owners[key]
            raise LayerError(owner, f"the gradient of its {what} is not finite (inf or NaN): the backward pass "
                                    f"overflows {network.dtype}; make the weights smaller, or run the network in float64")
    return grads


def leak_correction(gamma: np.ndarray, trace: np.ndarray, leak: float) -> np.ndarray:
    """Lee et al. 2020's ``NG = 1 + ln(lam) * f / gamma``, and 0 where gamma = 0.

    Eq. 22 times theta, evaluated at t = T: ``f = sum_k lam^(T - t_k)`` is the
    neuron's leak-weighted spike trace and gamma its spike count, so
    ``f / gamma`` is in ``[lam^(T-1), 1]`` and ``1 + ln(lam) <= NG <= 1`` for
    gamma >= 1 (``ln(lam) = -1/tau``). Arrays keep their dtype.
    """
    if not 0 < leak <= 1:
        raise OptionError(f"the leak correction uses ln(leak) and needs 0 < leak <= 1, got {leak!r}")
    fired = gamma > 0
    ratio = np.divide(trace, gamma, out=np.zeros_like(trace), where=fired)
    return np.where(fired, 1 + gamma.dtype.type(np.log(leak)) * ratio, 0).astype(gamma.dtype)


def lee2020_derivative(gamma: np.ndarray, trace: np.ndarray, theta: np.ndarray | float, leak: float) -> np.ndarray:
    """The pseudo-derivative of a hidden LIF neuron, Lee et al. 2020 eq. 22 at T::

        a' = (1/theta) * (1 + ln(lam) * f / gamma)    if gamma > 0
        a' = 0                                         if gamma = 0

    For gamma >= 1: ``(1/theta)(1 - 1/tau) <= a' <= 1/theta``; IF neurons
    (lam = 1) get the straight-through ``1/theta`` (eq. 13).
    """
    return (leak_correction(gamma, trace, leak) / np.asarray(theta, gamma.dtype)).astype(gamma.dtype)


def _check_leak(neuron: LIF) -> None:
    """LayerError unless the leak correction's ``ln(leak)`` exists: leak > 0 (a LIF's leak is at most 1)."""
    if neuron.leak <= 0:
        raise LayerError(neuron, "the leak correction uses ln(leak) and needs leak > 0")


def _neuron_ng(neuron: LIF, gamma: np.ndarray, trace: np.ndarray) -> np.ndarray:
    _check_leak(neuron)
    return leak_correction(gamma, trace, neuron.leak)


def _one_frame(values: np.ndarray, shape: tuple[int, ...]) -> Events:
    """The nonzero entries of ``(1, N)`` values in C order as one frame of events (as :meth:`Events.from_dense`)."""
    return Events(*kernels.currents_to_events(values, 1, None), batch=1, steps=1, shape=shape, check=False)


# ===================================================================== lee2020
@dataclass
class Lee2020(Rule):
    """Lee et al. 2020's aggregate rule: one backward pass at T (eqs. 22-27).

    Works on totals: the summed input of every synapse (x), the spike count
    gamma and the trace ``f = sum_k lam^(T - t_k)`` of every neuron.
    ``D = g * g_out / T`` at the readout; ``D = G * g * a'`` with
    ``a' = (1/theta)(1 + ln(lam) f / gamma)`` (0 if gamma = 0) at spiking
    layers; ``D = G * 1[gamma > 0]`` at spiking average pooling;
    ``dW = D (x) x``. g is the layer's ``input_gain``: a' is the derivative
    with respect to the net input ``g * I``. Nothing it keeps grows with T
    (:meth:`saved`).
    """

    name: ClassVar[str] = "lee2020"
    records: ClassVar[tuple[str, ...]] = ("counts", "traces")

    def saved(self, events: Events, result: RunResult) -> dict[str, np.ndarray]:
        """Everything the backward pass reads: per-neuron totals and traces, the input totals, the masks."""
        out = {"input": events.totals()}
        out.update({f"counts/{k}": v for k, v in result.counts.items()})
        out.update({f"traces/{k}": v for k, v in result.traces.items()})
        out.update({f"masks/{k}": v for k, v in result.masks.items()})
        return out

    def _streams(self, events: Events, result: RunResult, sample: int) -> tuple[dict[str | None, Events], slice]:
        """One frame of the sample: its summed input (:meth:`saved`'s ``input``) and spike counts, as events.

        Built by Numba kernels without the GIL, in the sample's own task.
        """
        rows = events.sample_rows(sample)
        total = np.zeros((1, events.size), events.dtype)
        kernels.event_totals(total, rows, events.index, events.value, events.steps)
        if not np.isfinite(total).all():
            where = np.unravel_index(int(np.argmin(np.isfinite(total[0]))), events.shape)
            raise EventsError(f"the input events of sample {sample} at position {tuple(int(i) for i in where)} sum "
                              f"to a value that is not finite: the sum over the {events.steps} steps overflows "
                              f"{events.dtype}; make the inputs smaller, or run the network in float64")
        streams = {None: _one_frame(total, events.shape)}
        for name, counts in result.counts.items():
            streams[name] = _one_frame(counts[sample].reshape(1, -1), counts.shape[1:])
        return streams, slice(0, 1)

    def _neuron_backward(self, network: Network, result: RunResult):
        dtype = network.dtype
        steps = dtype.type(result.steps)

        thresholds: dict[str, np.ndarray] = {}  # per layer, for every sample

        def backward(kind, name, neuron, shape, grad, frames):
            gain = dtype.type(neuron.input_gain)
            if kind == "readout":
                return grad * gain / steps
            b, channels = frames.sample, as3(shape)[0]
            counts = result.counts[name][b].reshape(-1)
            if kind == "pool":
                return _lee2020_delta(grad, counts, counts, counts, dtype.type(0), gain, channels, True)
            if name not in thresholds:
                _check_leak(neuron)
                thresholds[name] = neuron_thresholds(neuron, shape, dtype)
            return _lee2020_delta(grad, counts, result.traces[name][b].reshape(-1), thresholds[name],
                                  dtype.type(np.log(neuron.leak)), gain, channels, False)

        return backward


@njit(cache=True, nogil=True, error_model="numpy")
def _lee2020_delta(grad, counts, traces, theta, log_leak, gain, channels, pool):
    """``D`` of a hidden layer from ``G`` (``grad``), in one pass: :class:`Lee2020`'s neuron backward.

    Spiking layers ``D = G * (g * NG / theta)`` with
    :func:`leak_correction`'s ``NG = 1 + ln(lam) * (f / gamma)`` (0 where
    gamma = 0); spiking average pooling (``pool``) ``D = G * 1[gamma > 0]``.
    The operations of the NumPy expressions, in the dtype and in the same
    order, so the same bits, without their temporaries. NG is computed for
    every neuron and the silent ones' (0 / 0) replaced by 0 after, a select
    rather than a branch (NumPy's error model lets 0 / 0 be NaN).

    Parameters
    ----------
    grad : (K, P*C) float array, channel-last.
    counts, traces : (C*P,) float arrays in C order: gamma and f of the sample.
    theta : (P*C,) float array, channel-last: each neuron's threshold.
    log_leak, gain : floats of the dtype: ln(lam) and g.
    channels : int
        C.
    pool : bool

    Returns
    -------
    (K, P*C) array D.
    """
    out = np.empty_like(grad)
    plane = grad.shape[1] // channels
    one, zero = grad.dtype.type(1), grad.dtype.type(0)
    for k in range(grad.shape[0]):
        for c in range(channels):  # C order: counts and traces read in sequence
            for p in range(plane):
                j = p * channels + c
                gamma = counts[c * plane + p]
                fired = gamma > zero
                if pool:
                    out[k, j] = grad[k, j] * (one if fired else zero)
                else:
                    ng = one + log_leak * (traces[c * plane + p] / gamma)
                    out[k, j] = grad[k, j] * (gain * (ng if fired else zero) / theta[j])
    return out


# ================================================================ lee2020-code
@dataclass
class Lee2020Code(Rule):
    """The gradient of Lee et al.'s published code, unrolled step by step.

    Extraction Sec. 8.6, with ``D[T+1] = 0``::

        D[t] = s[t] * (g * NG / theta) * G[t] + (1 - s[t]) * D[t+1]     spiking layers
        D[t] = s[t] * G[t] + (1 - s[t]) * D[t+1]                        spiking average pooling
        D[t] = g * g_out / T                                             readout

    ``NG = 1 + ln(lam) f / gamma``, g the layer's ``input_gain``. The code
    has hard reset to 0 only, and so does this rule; with that reset
    ``reset_delayed`` changes nothing (``(1 - s) * lam * U`` either way), so
    it is accepted.
    """

    name: ClassVar[str] = "lee2020-code"
    records: ClassVar[tuple[str, ...]] = ("spikes", "counts", "traces")

    def _check(self, network, events, result, grad_output):
        for layer in network.walk():
            if isinstance(layer, LIF) and not isinstance(layer, Readout):
                if layer.reset != "hard" or layer.v_reset != 0:
                    raise LayerError(
                        layer, "rule 'lee2020-code' reproduces code with hard reset to 0 only; "
                        "use 'bptt' or 'lee2020' for other resets"
                    )
        return super()._check(network, events, result, grad_output)

    def _neuron_backward(self, network: Network, result: RunResult):
        dtype = network.dtype
        steps = result.steps

        def backward(kind, name, neuron, shape, grad, frames):
            gain = dtype.type(neuron.input_gain)
            if kind == "readout":
                return grad * gain / dtype.type(steps)
            b = frames.sample
            s = to_channel_last(result.spikes[name].sample(b).to_dense()[0], shape)
            gate = s
            if kind == "spiking":
                gamma = to_channel_last(result.counts[name][b], shape)
                ng = _neuron_ng(neuron, gamma, to_channel_last(result.traces[name][b], shape))
                gate = s * (gain * ng / neuron_thresholds(neuron, shape, dtype))
            return reverse_recursion(np.ascontiguousarray(gate, dtype), grad, 1 - s)

        return backward


# ======================================================================== bptt
@dataclass
class BPTT(Rule):
    """Backpropagation through time with a surrogate spike derivative.

    Exact reverse-mode differentiation of the recursion of docs/semantics.md,
    "Neurons", with ``ds/dU`` replaced by ``sigma(U - theta)``. Write the
    potential carried to the next step as ``V[t] = a * R(b * U[t], s[t])``,
    so that ``U[t+1] = V[t] + g * I[t+1]``: ``(a, b) = (lam, 1)`` for the
    default reset, ``(1, lam)`` for ``reset_delayed``. Per spiking neuron,
    backward from ``E[T+1] = 0``::

        gS[t] = G[t] + E[t+1] * dV/ds[t]       (no second term when detach_reset)
        E[t]  = gS[t] * sigma(U[t] - theta) + E[t+1] * dV/dU[t]
        D[t]  = g * E[t]

    the gradient with respect to the current the neuron integrates: the
    normalised ``I'`` of a layer with a norm, which
    :class:`~eventsim.learning.backprop.Backprop` then carries through the
    norm to I (docs/semantics.md, "Input-current batch norm").

        dV/dU = a * b * dR/dU,   dV/ds = a * dR/ds(b * U)

    with ``dR/dU = 1 - s, dR/ds(x) = v_reset - x`` (hard reset) or
    ``dR/dU = 1, dR/ds = -theta`` (soft reset); at the readout
    ``D[t] = g * lam^(T - t) g_out / T``. Memory O(T x neurons), or less in
    segments (below).

    With a detached reset, no clamp, no recurrent connection and a surrogate
    that names its kernel form (``Surrogate.kernel_code``), E is computed by
    :func:`eventsim.kernels.surrogate_recursion` in one sweep over the steps,
    straight from the recorded potentials, bit for bit as the NumPy path
    (sigma and the carry as ``(T, neurons)`` arrays, then
    :func:`~eventsim.kernels.reverse_recursion`) computes it for the others.

    In segments. For such layers fed forward (Conv2d, Linear without
    delays, pooling, Flatten, Dropout, LIF/IF neurons, SpikingAvgPool and a
    Readout, with none of the options of "State beyond the potential" and
    no norm), the forward run of :meth:`forward_plan` keeps the neuron
    states at the start of every ``segment`` steps alone; the
    backward then takes the segments from the last to the first, running
    the forward again from the segment's states to record its potentials
    (the same kernels in the same order: the same bits) and carrying E from
    one segment into the one before. Memory O(segment x neurons + events)
    instead of O(T x neurons); E is the same; the weight gradients are
    summed over the steps in another order (segment by segment, from the
    last), so they differ from the one sweep's by rounding, and equal it
    where one segment covers all T.

    Parameters
    ----------
    surrogate : Surrogate
        sigma; straight-through ``1/theta`` by default.
    detach_reset : bool
        Treat the reset as a constant (default, as snnTorch, SpikingJelly and Norse).
    segment : int or None
        Steps per segment of the backward (above); None: one sweep over the
        recorded potentials of all T steps.
    """

    surrogate: Surrogate = field(default_factory=StraightThrough)
    detach_reset: bool = True
    segment: int | None = DEFAULT_SEGMENT
    name: ClassVar[str] = "bptt"
    records: ClassVar[tuple[str, ...]] = ("spikes", "potentials")
    normalises: ClassVar[bool] = True
    covers_state: ClassVar[bool] = True
    #: False: every layer takes the NumPy path (the tests compare the two paths).
    _fused: ClassVar[bool] = True

    def __post_init__(self):
        if not isinstance(self.surrogate, Surrogate):
            raise OptionError(f"bptt: surrogate must be a Surrogate (eventsim.learning.surrogates), got {self.surrogate!r}")
        if not isinstance(self.detach_reset, (bool, np.bool_)):
            raise OptionError(f"bptt: detach_reset must be True or False, got {self.detach_reset!r}")
        if self.segment is not None and (isinstance(self.segment, (bool, np.bool_)) or
                                         not isinstance(self.segment, (int, np.integer)) or self.segment < 1):
            raise OptionError(f"bptt: segment must be a number of steps >= 1 or None, got {self.segment!r}")

    def config(self) -> dict:
        return {"name": self.name, "surrogate": self.surrogate.config(), "detach_reset": bool(self.detach_reset),
                "segment": None if self.segment is None else int(self.segment)}

    def forward_plan(self, network: Network, steps: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """A checkpoint every ``segment`` steps and no record where the network is run in segments (class
        docstring: the segments' runs record what their backward reads), else the spikes and potentials of
        every step: so also where one segment would cover all T, whose backward is the one sweep's."""
        if self.segment is None or self.segment >= steps or not self._segmentable(network):
            return self.records, ()
        return (), tuple(range(0, steps, int(self.segment)))

    def _segmentable(self, network: Network) -> bool:
        """Whether the backward can run in segments: layers fed forward, E from :func:`surrogate_recursion` alone."""
        if not (self._fused and self.detach_reset and self.surrogate.kernel_code is not None) or normed_layers(network):
            return False
        for layer in network.walk():
            if isinstance(layer, (Recurrent, Delay, Residual)) or (isinstance(layer, Linear) and layer.delay is not None):
                return False
            if isinstance(layer, LIF) and layer.extended:
                return False
        return True

    def _in_segments(self, result: RunResult) -> bool:
        """Whether ``result`` is a forward run of :meth:`forward_plan` in segments: checkpoints, no potentials."""
        return bool(result.states) and "potentials" not in result.recorded

    def _needed(self, result: RunResult) -> tuple[str, ...]:
        return () if self._in_segments(result) else self.records

    def _sample_backward(self, network: Network, events: Events, result: RunResult, grad_output: np.ndarray):
        if not self._in_segments(result):
            return super()._sample_backward(network, events, result, grad_output)
        if not self._segmentable(network) or 0 not in result.states:
            raise OptionError("bptt in segments covers layers fed forward without the options of 'State beyond "
                              "the potential', with a checkpoint at step 0; record the potentials instead")
        pool_neurons = pooling_neurons(network)
        steps = result.steps
        starts = sorted(result.states)
        bounds = list(zip(starts, starts[1:] + [steps]))

        def sample_backward(b: int, acc: dict[str, np.ndarray]):
            sample = events.sample(b)
            masks = {k: m[b : b + 1] for k, m in result.masks.items()}
            later: dict[str, np.ndarray] = {}  # E of each layer at the first step of the segment after
            for t0, t1 in reversed(bounds):
                initial = {name: NeuronState(*(None if a is None else a[b : b + 1]
                                                for a in (st.potential, st.synaptic, st.fired)))
                           for name, st in result.states[t0].items()}
                part_events = sample.step_range(t0, t1)
                part = network.run(part_events, record=self.records, train=True, masks=masks, initial=initial)
                neuron = self._neuron_backward(network, part, _Segment(t0, steps, later))
                streams, rows = self._streams(part_events, part, 0)
                top = _top_rows(network, grad_output[b], t1 - t0)
                yield from Backprop(network, neuron, acc, pool_neurons).run(Frames(streams, rows, masks, sample=0), top)

        return sample_backward

    def _fuses(self, neuron: LIF) -> bool:
        """Whether :func:`surrogate_recursion` computes the neuron's E (a feed-forward layer; class docstring)."""
        return self._fused and self.detach_reset and neuron.v_min == -np.inf and self.surrogate.kernel_code is not None

    def _neuron_backward(self, network: Network, result: RunResult, segment: "_Segment | None" = None):
        """The neuron backward over the steps of ``result``: all T, or the ``segment`` whose potentials it recorded."""
        dtype = network.dtype
        steps = result.steps
        start, total = (0, steps) if segment is None else (segment.start, segment.total)
        # As Backprop's buffers: a sample waiting at a norm must keep its E.
        reuse = not normed_layers(network)

        def backward(kind, name, neuron, shape, grad, frames, feedback=None):
            lam = dtype.type(neuron.leak)
            gain = dtype.type(neuron.input_gain)
            if kind == "readout":  # lam^(T-1-t) for the absolute steps t of the frames
                powers = (np.float64(neuron.leak) ** np.arange(total - 1 - start, total - 1 - start - steps, -1)
                          ).astype(dtype)
                if neuron.synapse_leak is None:
                    return grad * (gain * powers / dtype.type(total))[:, None]
                return _synaptic_backward(neuron, grad * (powers / dtype.type(total))[:, None], gain, dtype)
            theta = neuron_thresholds(neuron, shape, dtype)
            # V = outer * R(inner * U, s): the leak is outside the reset by
            # default and inside it when the reset is delayed.
            outer, inner = (dtype.type(1), lam) if neuron.reset_delayed else (lam, dtype.type(1))
            if feedback is None and self._fuses(neuron):
                e = scratch(network, f"{name}/dL/dU", grad.shape, dtype) if reuse else np.empty(grad.shape, dtype)
                # Network.run holds the record channel-last: no copy.
                potentials = to_channel_last(np.asarray(result.potentials[name][frames.sample], dtype), shape)
                surrogate_recursion(e, potentials, theta, np.ascontiguousarray(grad),
                                    neuron.strict, neuron.reset == "soft", outer * inner,
                                    self.surrogate.kernel_code, *self.surrogate.kernel_parameters(),
                                    None if segment is None else segment.later.get(name))
                if segment is not None:  # E before the gain: the carry into the segment before
                    segment.later[name] = e[0].copy()
                return _synaptic_backward(neuron, e, gain, dtype)
            u = channel_last_into(scratch(network, f"{name}/potentials", grad.shape, dtype),
                                  result.potentials[name][frames.sample], shape)
            s = scratch(network, f"{name}/spikes", grad.shape, np.dtype(bool))
            (np.greater if neuron.strict else np.greater_equal)(u, theta, out=s)
            held = _clamped(neuron, u, s, theta, dtype)
            if not self.detach_reset:
                if neuron.reset == "soft":
                    d_r_ds = np.broadcast_to(-theta, u.shape)
                else:
                    d_r_ds = dtype.type(neuron.v_reset) - inner * u
            # u's buffer (learning.backprop.scratch) serves for U - theta and
            # then for the carry: fewer megabyte arrays for the page faults.
            sigma = self.surrogate.derivative(np.subtract(u, theta, out=u), theta)
            # carry = outer * (inner * dR/dU [+ dR/ds * sigma]), dR/dU = 1 - s
            # (hard reset) or 1 (soft); with a detached reset, outer * inner
            # is taken as one scalar, so the carry takes a single pass.
            scale = outer * inner if self.detach_reset else inner
            carry = u
            if neuron.reset == "soft":
                carry.fill(scale)
            else:
                np.multiply(np.logical_not(s, out=s), scale, out=carry)
            if not self.detach_reset:
                # sigma = 0 where theta is infinite: keep -inf * 0 out of the sum.
                carry += np.multiply(d_r_ds, sigma, out=np.zeros_like(u), where=sigma != 0)
                carry *= outer
            if held is not None:  # the clamp holds R at v_min: nothing flows back through it
                carry[held] = 0
            if feedback is None:
                e = reverse_recursion(sigma, np.ascontiguousarray(grad), carry)
                return _synaptic_backward(neuron, e, gain, dtype)
            return _recurrent_backward(neuron, sigma, grad, carry, gain, dtype, feedback)

        return backward


@dataclass
class _Segment:
    """Where the steps of a :class:`BPTT` backward in segments lie: the first step, the sample's T, and
    ``later``, the E of each neuron layer at the first step of the segment after (updated as it goes)."""

    start: int
    total: int
    later: dict[str, np.ndarray]


def _clamped(neuron: LIF, u: np.ndarray, s: np.ndarray, theta: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """Where the clamp set R to v_min (``R < v_min`` after the reset), from the recorded U; None without a clamp.

    The reset is recomputed with the forward's operations (docs/semantics.md,
    "State beyond the potential", steps 3-5), so the mask is the forward's.
    """
    if neuron.v_min == -np.inf:
        return None
    if neuron.reset == "hard":
        after = np.where(s, dtype.type(neuron.v_reset), u)
    else:
        n = np.ones_like(u)
        if neuron.max_spikes != 1:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                q = u / theta
                count = np.maximum(np.ceil(q) - 1, 1) if neuron.strict else np.floor(q)
            limit = np.inf if neuron.max_spikes is None else neuron.max_spikes
            n = np.minimum(count, dtype.type(limit))
        with np.errstate(invalid="ignore"):  # 0 * inf of a neuron that never fires, not selected
            after = np.where(s, u - n * theta, u)
    return after < dtype.type(neuron.v_min)


def _synaptic_backward(neuron: LIF, e: np.ndarray, gain, dtype: np.dtype) -> np.ndarray:
    """``D = dL/dI`` from ``E_U = dL/dU`` (docs/semantics.md, "bptt").

    ``D = g * E_U`` without a synaptic current; with one, ``E_J[t] = g *
    E_U[t] + alpha * E_J[t+1]`` and ``D = h * E_J``.
    """
    if neuron.synapse_leak is None:
        if gain != 1:
            e *= gain
        return e
    alpha, h = dtype.type(neuron.synapse_leak), dtype.type(neuron.synapse_gain)
    e_j = reverse_recursion(np.full_like(e, gain), np.ascontiguousarray(e), np.full_like(e, alpha))
    if h != 1:
        e_j *= h
    return e_j


def _recurrent_backward(neuron: LIF, sigma: np.ndarray, grad: np.ndarray, carry: np.ndarray, gain, dtype: np.dtype,
                        feedback) -> np.ndarray:
    """The neuron backward of a recurrent layer, one step at a time from the last.

    As :func:`~eventsim.kernels.reverse_recursion` followed by
    :func:`_synaptic_backward`, with ``feedback(D[t+1])`` added to the
    gradient of the spikes of step t (docs/semantics.md, "bptt").
    """
    steps, n = grad.shape
    delta = np.empty_like(grad)
    e_u, e_j = np.zeros(n, dtype), np.zeros(n, dtype)
    synaptic = neuron.synapse_leak is not None
    alpha = dtype.type(neuron.synapse_leak or 0.0)
    h = dtype.type(neuron.synapse_gain)
    for t in range(steps - 1, -1, -1):
        g_s = grad[t] if t == steps - 1 else grad[t] + feedback(delta[t + 1 : t + 2])[0]
        e_u = sigma[t] * g_s + carry[t] * e_u
        if synaptic:
            e_j = gain * e_u + alpha * e_j
            delta[t] = h * e_j
        else:
            delta[t] = gain * e_u
    return delta


RULES: dict[str, type[Rule]] = {cls.name: cls for cls in (Lee2020, Lee2020Code, BPTT)}


def rule_from_config(config: dict | str) -> Rule:
    """Build a rule from its name (``"lee2020"``, ``"lee2020-code"``, ``"bptt"``) or :meth:`Rule.config`."""
    if isinstance(config, dict) and "surrogate" in config:
        config = {**config, "surrogate": surrogate_from_config(config["surrogate"])}
    return from_config("gradient rule", RULES, config)
