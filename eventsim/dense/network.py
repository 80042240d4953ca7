"""Dense, time-stepped reference run of a whole network.

Every layer is a function of its input array at the step, with the batch axis
first; neuron layers carry their state (:class:`~eventsim.dense.neurons.NeuronState`:
the potential after the reset, the synaptic current, the spikes) from step to
step, a recurrent block reads its neuron's spikes of the step before, a
delay keeps the inputs it has seen and a Linear with synaptic delays those of
its last max(d) + 1 steps. This is the straightforward reading of
docs/semantics.md ("Neurons", "Recurrent connections", "Delays") and of the
layer docstrings in :mod:`eventsim.layers`, written without events so that the
event-driven :class:`eventsim.network.Network` can be tested against it.

Input-current batch norms (docs/semantics.md, "Input-current batch norm") in
a training run need a layer's currents at every step before its neurons can
update, which a step-by-step walk does not have. The reference takes the
plain way round: it walks the whole run once per normalised layer, in network
order, each time with the statistics found so far, and takes the next layer's
statistics from the currents that walk recorded (NumPy means over axes); a
last walk then runs with all of them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from eventsim.dense.conv import conv2d
from eventsim.dense.dropout import apply_dropout, draw_dropout_mask
from eventsim.dense.linear import delayed_linear, linear
from eventsim.dense.neurons import NeuronState, initial_state, neuron_step
from eventsim.dense.pooling import avg_pool, max_pool, subsample, sum_pool
from eventsim.errors import LayerError
from eventsim.finite import in_dtype
from eventsim.layers import (
    LIF, AvgPool, Conv2d, Delay, Dropout, Flatten, Identity, Layer, Linear, MaxPool, NeuronConstants, Readout,
    Recurrent, Residual, SpikingAvgPool, SumPool,
)


class NetworkLike(Protocol):
    """What :func:`run_dense` reads from a network (duck-typed, no import of the event path)."""

    layers: Sequence[Layer]  #: every layer, nested ones too, carries a unique ``.name``
    input_shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class DenseRun:
    """Everything a dense run records; arrays are ``(B, T, *shape)`` unless said otherwise.

    Attributes
    ----------
    outputs : dict
        Per layer name (nested layers too): the layer's output at every step,
        spikes for neurons as their count n (0/1 unless ``max_spikes`` allows
        more) in the dtype, currents for synapses, masked values for dropout,
        the delayed values of a :class:`~eventsim.layers.Delay`. A
        :class:`~eventsim.layers.Residual` or
        :class:`~eventsim.layers.Recurrent` block's output is its neuron's
        spikes; a recurrent connection's output at step t is the current it
        adds then, ``W_rec n[t-1] + b_rec`` (just ``b_rec`` at the first step).
    potentials : dict
        Per neuron layer: ``U`` at every step. The neuron of a
        :class:`~eventsim.layers.SpikingAvgPool` is stored under the pooling
        layer's name, that of a Residual or Recurrent block under the neuron's
        own name.
    synaptic : dict
        Per neuron layer with a synaptic current: ``J`` at every step
        (docs/semantics.md, "State beyond the potential").
    readout : array of shape ``(B, *shape)`` or None
        ``U[T] / T`` of the last layer when it is a
        :class:`~eventsim.layers.Readout` (docs/semantics.md, "Neurons"; Lee et
        al. 2020, eq. 6), else None.
    masks : dict
        Keep-masks used by the Dropout layers, ``(B, *shape)`` bool.
    norm_stats : dict
        Per neuron layer with a norm, in a training run: ``(mean, var)`` of
        its input current (biased variance, float64), ``(C,)`` or ``(T, C)``.
    """

    outputs: dict[str, np.ndarray]
    potentials: dict[str, np.ndarray]
    readout: np.ndarray | None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    norm_stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    synaptic: dict[str, np.ndarray] = field(default_factory=dict)


def run_dense(
    network: NetworkLike,
    x: np.ndarray,
    *,
    train: bool = False,
    rng: np.random.Generator | None = None,
    masks: dict[str, np.ndarray] | None = None,
) -> DenseRun:
    """Run ``network`` on dense input, step by step, layer by layer.

    For t = 0..T-1 each layer maps its input at step t to its output at
    step t: synapses (:class:`~eventsim.layers.Conv2d`,
    :class:`~eventsim.layers.Linear`, the pools, :class:`~eventsim.layers.Identity`)
    compute currents with the dense twins; neuron layers apply
    :func:`~eventsim.dense.neurons.neuron_step` to their input as ``I[t]``,
    in the layer's arithmetic form and with its state options
    (docs/semantics.md, "Arithmetic forms", "State beyond the potential"),
    from ``R[0] = v_init`` and ``J[0] = 0``; a Residual block feeds
    ``main_last(main(x)) + skip(x)`` to its neuron (Lee et al. 2020,
    Sec. 2.2.2); a Recurrent block feeds ``x + connection(n[t-1])`` with
    ``n[0] = 0`` ("Recurrent connections"); a Delay gives
    ``out[t, i] = in[t - d_i, i]`` for ``t >= d_i`` and 0 before, a Linear
    with synaptic delays ``I[t, o] = sum_i W[o, i] s[t - d[o, i], i] (+ b[o])``
    with ``s = 0`` before step 0 and the bias not delayed ("Delays").

    A neuron layer with a norm integrates ``k * I + c`` per channel,
    ``k = a / sqrt(var + eps)``, ``c = b - mean * k`` (float64, rounded to the
    dtype), with the batch's statistics in training (see the module
    docstring) and the running ones otherwise.

    Dropout (docs/semantics.md, "Dropout"): in training, one keep-mask per Dropout
    layer, taken from ``masks`` by layer name, or else drawn with
    :func:`~eventsim.dense.dropout.draw_dropout_mask` from ``rng`` before the
    first step, in network order (depth-first), and held for all steps. Off
    (the identity) when ``train`` is False.

    Parameters
    ----------
    network : object with ``layers``, ``input_shape`` and ``dtype``
    x : array, shape ``(B, T, *input_shape)``, dtype ``network.dtype``
        Input values at every step (spikes, signed spikes or currents).
    train : bool
        Apply dropout; normalise currents with the batch's statistics.
    rng : numpy Generator, optional
        Draws the dropout masks that ``masks`` does not give.
    masks : dict of name -> bool array ``(B, *shape)``, optional
        Dropout keep-masks to use instead of drawing.

    Returns
    -------
    DenseRun
    """
    dtype = np.dtype(network.dtype)
    input_shape = tuple(int(n) for n in network.input_shape)
    _check_input(x, input_shape, dtype)
    batch, steps = x.shape[:2]

    plan = DensePlan(dtype)
    plan.add(network.layers, input_shape)
    keep = plan.dropout_masks(batch, rng, masks) if train else {}

    norms = {name: neuron.norm for name, (neuron, _) in plan.neurons.items() if neuron.norm is not None}
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if train:
        for name, norm in norms.items():
            walk = _walk(network, plan, keep, x, {n: _affine(norms[n], *stats[n], dtype) for n in stats})
            stats[name] = _batch_moments(np.stack(walk.currents[name], axis=1), norm.stats)
    else:
        stats = {name: (norm.running_mean, norm.running_var) for name, norm in norms.items()}
    walk = _walk(network, plan, keep, x, {n: _affine(norms[n], *stats[n], dtype) for n in stats})

    outputs = {name: np.stack(seq, axis=1) for name, seq in walk.outputs.items()}
    potentials = {name: np.stack(seq, axis=1) for name, seq in walk.potentials.items()}
    synaptic = {name: np.stack(seq, axis=1) for name, seq in walk.synaptic.items()}
    last = network.layers[-1] if network.layers else None
    readout = potentials[last.name][:, -1] / dtype.type(steps) if isinstance(last, Readout) else None
    return DenseRun(outputs=outputs, potentials=potentials, readout=readout, masks=keep,
                    norm_stats=stats if train else {}, synaptic=synaptic)


def _walk(network: NetworkLike, plan: "DensePlan", keep: dict, x: np.ndarray, affines: dict) -> "DenseWalk":
    """One walk over all steps; neuron layers with a norm not in ``affines`` take the raw currents."""
    walk = DenseWalk(plan, keep, x.shape[0], affines)
    # An overflow is found after every layer (DenseWalk.layer) and raised as
    # a LayerError naming it; NumPy's warning would only repeat it.
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(x.shape[1]):
            walk.step = t
            walk.sequence(network.layers, x[:, t])
    return walk


def _batch_moments(currents: np.ndarray, stats: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance per channel of ``(B, T, C, ...)`` (or ``(B, T, N)``) currents, float64.

    "batch_time": over batch, steps and positions, ``(C,)``; "batch": over
    batch and positions at every step, ``(T, C)``.
    """
    positions = tuple(range(3, currents.ndim))
    axes = (0,) + positions if stats == "batch" else (0, 1) + positions
    values = currents.astype(np.float64)
    return values.mean(axis=axes), values.var(axis=axes)


def _affine(norm, mean: np.ndarray, var: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``k = a / sqrt(var + eps)`` and ``c = b - mean * k``, in float64, then in ``dtype`` (which must hold them)."""
    k = norm.scale.astype(np.float64) / np.sqrt(np.asarray(var, np.float64) + norm.eps)
    c = norm.shift.astype(np.float64) - np.asarray(mean, np.float64) * k
    return in_dtype(norm, "factor k", k, dtype), in_dtype(norm, "offset c", c, dtype)


def _check_input(x: np.ndarray, input_shape: tuple[int, ...], dtype: np.dtype) -> None:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"run_dense input must be a numpy array, got {type(x).__name__}")
    if x.dtype != dtype:
        raise ValueError(f"run_dense input is {x.dtype} but the network computes in {dtype}")
    if x.ndim != 2 + len(input_shape) or x.shape[2:] != input_shape or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"run_dense input must have shape (batch, steps, *{input_shape}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        b, t, *where = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"run_dense input is not finite at sample {b}, step {t}, position {tuple(where)}")


class DensePlan:
    """What is fixed for the whole run: shapes, weights and neuron constants in the run's dtype.

    Built by one walk over the layers before the first step, which also
    checks that the shapes fit (each layer's ``output_shape`` raises
    :class:`~eventsim.errors.LayerError` otherwise) and that every parameter
    is still finite once rounded to the run's dtype (:mod:`eventsim.finite`).
    """

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.params: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # synapse -> (weight, bias)
        self.neurons: dict[str, tuple[LIF, NeuronConstants]] = {}  # neuron name -> (options, constants)
        self.dropouts: list[tuple[Dropout, tuple[int, ...]]] = []  # network order
        self.delays: dict[str, np.ndarray] = {}  # delay name -> steps per neuron, C order
        self.synapse_delays: dict[str, np.ndarray] = {}  # delayed Linear name -> steps per synapse (out, in)
        self._names: set[str] = set()

    def add(self, layers: Sequence[Layer], shape: tuple[int, ...]) -> tuple[int, ...]:
        """Record ``layers`` fed with per-sample ``shape``; return their output shape."""
        for layer in layers:
            self._name(layer)
            if isinstance(layer, Residual):
                shape = self._residual(layer, shape)
            elif isinstance(layer, Recurrent):
                shape = self._recurrent(layer, shape)
            elif isinstance(layer, Delay):
                self.delays[layer.name] = layer.per_neuron(shape)
            elif isinstance(layer, SpikingAvgPool):
                shape = layer.output_shape(shape)
                self._neuron(layer.name, layer.neuron, shape, owner=layer)
            elif isinstance(layer, LIF):
                shape = layer.output_shape(shape)
                self._neuron(layer.name, layer, shape)
            elif isinstance(layer, Dropout):
                self.dropouts.append((layer, shape))
            elif isinstance(layer, (Conv2d, Linear)):
                if layer.weight is None:
                    raise LayerError(layer, "has no weight")
                bias = None if layer.bias is None else in_dtype(layer, "bias", layer.bias, self.dtype)
                self.params[layer.name] = (in_dtype(layer, "weight", layer.weight, self.dtype), bias)
                if isinstance(layer, Linear) and layer.delay is not None:
                    self.synapse_delays[layer.name] = layer.delay
                shape = layer.output_shape(shape)
            elif isinstance(layer, (AvgPool, SumPool, MaxPool, Identity, Flatten)):
                shape = layer.output_shape(shape)
            else:
                raise LayerError(layer, "the dense reference does not know this layer type")
        return shape

    def _residual(self, block: Residual, shape: tuple[int, ...]) -> tuple[int, ...]:
        main = self.add(block.main, shape)
        skip = self.add([block.skip], shape)
        if main != skip:
            raise LayerError(block, f"main path gives currents of shape {main} but the skip path {skip}")
        return self.add([block.neuron], main)

    def _recurrent(self, block: Recurrent, shape: tuple[int, ...]) -> tuple[int, ...]:
        out = block.output_shape(shape)  # the connection must map the neurons' shape to itself
        self.add([block.connection], out)
        return self.add([block.neuron], shape)

    def _neuron(self, name: str, neuron: LIF, shape: tuple[int, ...], owner: Layer | None = None) -> None:
        # The options are float64; round once to the run's dtype.
        self.neurons[name] = (neuron, neuron.constants(shape, self.dtype, owner))

    def _name(self, layer: Layer) -> None:
        name = layer.name
        if not isinstance(name, str) or not name:
            raise LayerError(layer, "has no name; the network assigns names before a run")
        if name in self._names:
            raise LayerError(layer, f"name {name!r} is used by more than one layer")
        self._names.add(name)

    def dropout_masks(
        self, batch: int, rng: np.random.Generator | None, given: dict[str, np.ndarray] | None
    ) -> dict[str, np.ndarray]:
        """Keep-masks for training: given ones by name, the others drawn in network order."""
        given = {} if given is None else dict(given)
        known = {layer.name for layer, _ in self.dropouts}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"masks given for {unknown}, which are not Dropout layers of this network")
        keep: dict[str, np.ndarray] = {}
        for layer, shape in self.dropouts:
            if layer.name in given:
                mask = np.asarray(given[layer.name])
                if mask.dtype != np.bool_ or mask.shape != (batch,) + shape:
                    raise LayerError(
                        layer, f"mask must be a bool array of shape {(batch,) + shape}, got {mask.dtype} {mask.shape}"
                    )
                keep[layer.name] = mask
            elif layer.p > 0:
                if rng is None:
                    raise LayerError(layer, f"training with p={layer.p} needs rng= (or its mask in masks=)")
                keep[layer.name] = draw_dropout_mask(rng, batch, shape, layer.p)
        return keep


class DenseWalk:
    """One pass over the layers per step, keeping neuron state and the records.

    Public so that a walk computing something else per layer (the rounding
    bounds of eventsim.testing.compare) can override single layer steps.
    """

    def __init__(self, plan: DensePlan, keep: dict[str, np.ndarray], batch: int,
                 affines: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.plan = plan
        self.keep = keep
        self.batch = batch
        self.affines = affines or {}  # neuron name -> (k, c) of its norm, per channel (and step)
        self.step = 0
        self.currents: dict[str, list[np.ndarray]] = defaultdict(list)  # raw currents of normalised layers
        self.state: dict[str, NeuronState] = {}  # neuron name -> state after the last step
        self.outputs: dict[str, list[np.ndarray]] = defaultdict(list)
        self.potentials: dict[str, list[np.ndarray]] = defaultdict(list)
        self.synaptic: dict[str, list[np.ndarray]] = defaultdict(list)
        self.seen: dict[str, list[np.ndarray]] = defaultdict(list)  # delay name -> its inputs so far
        self.held: dict[str, list[np.ndarray]] = defaultdict(list)  # delayed Linear -> its last max(d) + 1 inputs

    def sequence(self, layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
        for layer in layers:
            x = self.layer(layer, x)
        return x

    def layer(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        if isinstance(layer, Residual):
            # Both paths read the block input; their currents meet in one neuron.
            main = self.sequence(layer.main[:-1], x)
            current = self.layer(layer.main[-1], main) + self.layer(layer.skip, x)
            out = self.layer(layer.neuron, current)
        elif isinstance(layer, Recurrent):
            out = self.layer(layer.neuron, x + self.layer(layer.connection, self.previous_spikes(layer.neuron, x)))
        elif isinstance(layer, Delay):
            out = self.delay(layer, x)
        elif isinstance(layer, SpikingAvgPool):
            out = self.neuron(layer.name, avg_pool(x, layer.kernel_size, layer.stride))
        elif isinstance(layer, LIF):
            out = self.neuron(layer.name, x)
        elif isinstance(layer, Dropout):
            mask = self.keep.get(layer.name)
            out = x if mask is None else apply_dropout(x, mask, layer.scale)
        elif isinstance(layer, Flatten):
            out = x.reshape(self.batch, -1)
        else:
            out = self.synapse(layer, x)
        # A sum that overflowed the dtype: a neuron's potential, a current, a dropout-scaled value.
        if isinstance(layer, (LIF, SpikingAvgPool)):
            what, values = "a potential", self.potentials[layer.name][-1]
        else:
            what, values = "an output value", out
        if not np.isfinite(values).all():
            raise _overflow(layer, what, self.step, values)
        self.outputs[layer.name].append(out)
        return out

    def previous_spikes(self, neuron: LIF, like: np.ndarray) -> np.ndarray:
        """``n[t-1]`` of ``neuron``, as recorded at the step before; zeros like ``like`` at the first step."""
        recorded = self.outputs[neuron.name]
        return recorded[self.step - 1] if self.step > 0 else np.zeros_like(like)

    def delay(self, layer: Delay, x: np.ndarray) -> np.ndarray:
        """``out[t, i] = in[t - d_i, i]`` where ``t >= d_i``, else 0 (docs/semantics.md, "Delays")."""
        seen = self.seen[layer.name]
        seen.append(x.reshape(self.batch, -1))
        steps = self.plan.delays[layer.name]
        out = np.zeros_like(seen[-1])
        for d in np.unique(steps[steps <= self.step]):
            those = steps == d
            out[:, those] = seen[self.step - d][:, those]
        return out.reshape(x.shape)

    def recent_inputs(self, name: str, x: np.ndarray, reach: int) -> np.ndarray:
        """The inputs of layer ``name`` over its last ``reach + 1`` steps (from step 0 before that), ``(B, h, N)``.

        ``x`` is its input at this step. What is older than ``reach`` steps
        can no longer arrive anywhere, so it is let go.
        """
        held = self.held[name]
        held.append(x)
        del held[:-(reach + 1)]
        return np.stack(held, axis=1)

    def synapse(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        if isinstance(layer, Conv2d):
            weight, bias = self.plan.params[layer.name]
            return conv2d(x, weight, bias, stride=layer.stride, padding=layer.padding)
        if isinstance(layer, Linear):
            weight, bias = self.plan.params[layer.name]
            delay = self.plan.synapse_delays.get(layer.name)
            if delay is None:
                return linear(x, weight, bias)
            return delayed_linear(self.recent_inputs(layer.name, x, int(delay.max())), weight, delay, bias)
        if isinstance(layer, AvgPool):
            return avg_pool(x, layer.kernel_size, layer.stride)
        if isinstance(layer, SumPool):
            return sum_pool(x, layer.kernel_size, layer.stride)
        if isinstance(layer, MaxPool):
            return max_pool(x, layer.kernel_size, layer.stride)
        if isinstance(layer, Identity):
            return subsample(x, layer.stride)
        raise LayerError(layer, "the dense reference does not know this layer type")

    def neuron(self, name: str, current: np.ndarray) -> np.ndarray:
        """``I[t] -> n[t]`` for the neuron layer ``name``, from R[0] = v_init, J[0] = 0, n[0] = 0."""
        neuron, constants = self.plan.neurons[name]
        if neuron.norm is not None:
            self.currents[name].append(current)
            if name in self.affines:
                k, c = self.affines[name]
                if k.ndim == 2:  # per step
                    k, c = k[self.step], c[self.step]
                channel = (-1,) + (1,) * (current.ndim - 2)
                current = k.reshape(channel) * current + c.reshape(channel)
        state = self.state.get(name)
        if state is None:
            state = initial_state(current.shape, self.plan.dtype, v_init=neuron.v_init,
                                  synaptic=neuron.synapse_leak is not None)
        # The layer's float64 options, not the rounded constants: the forms
        # other than "product" derive k and d from the leak in float64 before
        # rounding (docs/semantics.md, "Arithmetic forms"); neuron_step rounds
        # each constant once, as the plan's constants are rounded.
        state, u = neuron_step(
            state, current, threshold=constants.theta, leak=neuron.leak,
            reset=neuron.reset, v_reset=constants.v_reset, strict=neuron.strict,
            input_gain=neuron.input_gain, reset_delayed=neuron.reset_delayed, arithmetic=neuron.arithmetic,
            synapse_leak=neuron.synapse_leak, synapse_gain=neuron.synapse_gain, v_rest=neuron.v_rest,
            v_min=neuron.v_min, max_spikes=neuron.max_spikes,
        )
        self.state[name] = state
        self.potentials[name].append(u)
        if state.synaptic is not None:
            self.synaptic[name].append(state.synaptic)
        return state.spikes


def _overflow(layer: Layer, what: str, step: int, values: np.ndarray) -> LayerError:
    """The error of a step that computed inf or NaN, naming the layer, the step and the first sample."""
    sample = int(np.argwhere(~np.isfinite(values))[0, 0])
    return LayerError(layer, f"{what} is not finite (inf or NaN) at step {step} of sample {sample}: the sum "
                             f"overflows {values.dtype}; make the weights or inputs smaller, or run the network in float64")
