"""A network of layers run event by event over T steps.

:class:`Network` holds a sequence of layers (residual blocks included), checks
that their shapes fit, names every layer, and runs a batch of input
:class:`~eventsim.events.Events` through them.

How a run proceeds. Layers are grouped into *stages*, each turning one event
stream into another: a synapse and the neuron layer after it form one stage
(the synapse scatters events into currents, the neurons integrate and fire);
a synapse with no neuron after it passes its currents on as events; max
pooling and dropout map events to events; a residual block runs its main path
and then merges the last synapse of that path and the skip into its neuron.
Because no layer feeds back into an earlier one, each stage can process a
*window* of K steps before the next stage starts; the result is the same as
stepping all layers together, and the memory held for the streams is bounded
by the window, not by T. State is reset for every sample.

What a run records (:class:`RunResult`): always the readout, SynOps and
pooling ops per layer and events emitted per layer; on request (``record=``)
summed outputs (spike counts), leak-weighted traces, full spike rasters and
potentials. Counts and traces take memory independent of T.

Input-current batch norms (:mod:`eventsim.norm`) in a training run need the
currents of the whole batch over all T steps before their neurons update: such
a run takes one window of T steps, and each sample runs as a generator that
meets the others at every normalised layer to sum the batch statistics
(:func:`eventsim.norm.in_lockstep`). Every other run has no meeting point.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from math import prod
from typing import Generator, Iterable, Sequence

import numpy as np

from eventsim import kernels
from eventsim.errors import EventsError, LayerError, OptionError, check_choice
from eventsim.events import FLOAT_DTYPES, Events
from eventsim.layout import as3, to_c_order
from eventsim.norm import NormStatistics, affine, batch_statistics, in_lockstep
from eventsim.layers import (
    ARITHMETIC,
    LIF,
    AvgPool,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Layer,
    Linear,
    MaxPool,
    Readout,
    Recurrent,
    Residual,
    SpikingAvgPool,
    SumPool,
    Synapse,
    Weighted,
)
from eventsim.finite import check_finite

RECORDS = ("counts", "traces", "spikes", "potentials", "currents")
#: The records that keep a value per neuron and step, O(T x neurons).
PER_STEP_RECORDS = ("potentials", "currents")
#: Default bound on a window's current buffer, in elements (4 MiB in float32).
WINDOW_ELEMENTS = 1 << 20

Window = tuple  # (indptr, index, value) of K steps, see eventsim.kernels
#: A stage's run over one window: a generator that yields partial sums of a
#: batch statistic, receives their batch totals, and returns the output window.
StageRun = Generator[np.ndarray, np.ndarray, Window]


def _is_neuron(layer: Layer) -> bool:
    return isinstance(layer, LIF)


_scratch = threading.local()


def _zeroed(shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """A zeroed window buffer, reused by the calling thread from one window to the next.

    One stage's buffer is done with before the next stage starts (what
    leaves a stage is copied out: events, records, the readout), so one
    buffer per thread serves them all. Reusing it spares a fresh allocation
    of up to ``WINDOW_ELEMENTS`` per stage and window, whose page faults
    would also serialise the threads.

    The buffer is all zero whenever no stage holds it: a stage leaves it as
    it found it (:func:`_released`), mostly for free, since the neuron kernel
    writes zeros where it read the currents (``lif_window(clear=True)``).
    That spares a pass over up to ``WINDOW_ELEMENTS`` of memory per stage
    and window.
    """
    size = shape[0] * shape[1]
    buf = getattr(_scratch, dtype.name, None)
    if buf is None or buf.shape[0] < size:
        buf = np.zeros(max(size, WINDOW_ELEMENTS), dtype)
    # Taken out of the pool until released: a stage that fails midway leaves
    # the buffer dirty, and the next stage then gets a fresh one.
    setattr(_scratch, dtype.name, None)
    return buf[:size].reshape(shape)


def _overflow(owner: Layer, what: str, step: int, sample: "_Sample", dtype: np.dtype) -> LayerError:
    """The error of a run that computed inf or NaN: which layer, which step, and what to do."""
    return LayerError(owner, f"{what} is not finite (inf or NaN) at step {step} of sample {sample.number}: "
                             f"the sum overflows {dtype}; make the weights or inputs smaller, "
                             "or run the network in float64")


def _check_values(owner: Layer, sample: "_Sample", out: Window, dtype: np.dtype) -> None:
    """Raise :func:`_overflow` at the first step of a window whose emitted values are not finite.

    One vectorised pass over the events a stage emitted: for the stages
    whose values are not spikes (currents passed on, dropout-scaled values).
    """
    indptr, _, value = out
    finite = np.isfinite(value)
    if not finite.all():
        first = int(np.argmin(finite))
        step = sample.window_start + int(np.searchsorted(indptr, first, side="right")) - 1
        raise _overflow(owner, "an output value", step, sample, dtype)


def _released(cur: np.ndarray, cleared: bool) -> None:
    """Hand a window buffer from :func:`_zeroed` back; zero it first unless the kernel ``cleared`` it."""
    if not cleared:
        cur.fill(0)
    setattr(_scratch, cur.dtype.name, cur.base)  # NumPy keeps the owner of the memory as a view's base


# ============================================================ per-sample state
@dataclass
class _Sample:
    """What one sample's run accumulates; stages read and write their own entries."""

    window_start: int = 0
    batch: int = 1
    number: int = 0  # the sample's index in the batch
    v: dict = field(default_factory=dict)
    fired: dict = field(default_factory=dict)  # previous step's spikes of neurons with a delayed reset
    totals: dict = field(default_factory=dict)
    traces: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    n_events: dict = field(default_factory=dict)
    spikes: dict = field(default_factory=dict)
    potentials: dict = field(default_factory=dict)
    currents: dict = field(default_factory=dict)
    last_u: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)  # dropout keep-masks of this sample, (N,) bool
    norm_stats: dict = field(default_factory=dict)  # batch (mean, var, count) of normalised layers


# ==================================================================== stages
class _Op:
    """A synapse resolved for the kernels: scatter layout, dtype, geometry."""

    def __init__(self, layer: Synapse | None, in_shape, out_shape, dtype: np.dtype, name: str | None = None) -> None:
        self.layer = layer
        self.name = name or (None if layer is None else layer.name)
        self.in3 = as3(in_shape)
        self.out3 = as3(out_shape)
        self.bias = layer.bias if isinstance(layer, Weighted) else None
        self.counter = "pool_ops"
        if isinstance(layer, Weighted):
            self.counter = "synops"
            if layer.weight is None:
                raise LayerError(layer, "has no weight; set layer.weight (or initialise the network) before running")
            for what, arr in (("weight", layer.weight), ("bias", layer.bias)):
                if arr is None:
                    continue
                if arr.dtype != dtype:
                    raise LayerError(layer, f"holds a {arr.dtype} {what} but the network runs in {dtype}")
                if not np.isfinite(arr).all():  # the quick test; check_finite then names the entry
                    check_finite(layer, what, arr)
        if isinstance(layer, Conv2d):
            self.weight = np.ascontiguousarray(layer.weight.transpose(1, 2, 3, 0))
        elif isinstance(layer, Linear):
            self.weight = np.ascontiguousarray(layer.weight.T)
        elif isinstance(layer, (AvgPool, SumPool)):
            self.weight = dtype.type(layer.window_weight)
            self.window = layer.kernel_size
        else:  # Identity, or the identity currents of a neuron layer after no synapse
            self.weight = dtype.type(1)
            self.window = (1, 1)

    def scatter(self, cur: np.ndarray, x: Window) -> int:
        """Add this synapse's currents for a window of events into ``cur``."""
        indptr, index, value = x
        layer = self.layer
        if self.bias is not None:
            kernels.add_bias(cur, self.bias)
        in_hw, out_hw = self.in3[1:], self.out3[1:]
        if isinstance(layer, Conv2d):
            return kernels.conv_scatter(cur, indptr, index, value, self.weight, in_hw, out_hw, layer.stride, layer.padding)
        if isinstance(layer, Linear):
            return kernels.linear_scatter(cur, indptr, index, value, self.weight)
        stride = (1, 1) if layer is None else layer.stride
        return kernels.pool_scatter(cur, indptr, index, value, self.weight, self.in3[0], in_hw, out_hw, self.window, stride)


class _Stage:
    """Turns input event windows into an output event window for one sample."""

    name: str  # the layer whose output this stage produces
    owner: Layer  # the layer an error of this stage names
    shape: tuple[int, ...]  # output shape
    channel_last = False  # layout of the per-neuron arrays the stage keeps

    def counted_ops(self) -> list[tuple[str, str]]:
        """(layer name, "synops" or "pool_ops") of the operations this stage counts."""
        return []

    def start(self, sample: _Sample, record: frozenset) -> None:
        sample.totals[self.name] = np.zeros(prod(self.shape), self.dtype)
        sample.n_events[self.name] = 0
        if "spikes" in record:
            sample.spikes[self.name] = []

    def run(self, sample: _Sample, *xs: Window) -> StageRun:
        """The output window for the input windows ``xs`` (a generator: see :data:`StageRun`)."""
        yield from ()  # no batch statistic to meet on
        return self.apply(sample, *xs)

    def apply(self, sample: _Sample, *xs: Window) -> Window:
        raise NotImplementedError

    def _emitted(self, sample: _Sample, out: Window) -> Window:
        sample.n_events[self.name] += out[1].shape[0]
        if self.name in sample.spikes:
            sample.spikes[self.name].append(out)
        return out

    @staticmethod
    def _count(sample: _Sample, name: str | None, n: int) -> None:
        if name is not None:
            sample.ops[name] = sample.ops.get(name, 0) + int(n)


class _NeuronStage(_Stage):
    """Synapses (one, or two merging in a residual block) feeding a neuron layer, through its norm if any."""

    channel_last = True

    def __init__(self, ops: list[_Op], neuron: LIF, name: str, shape, dtype: np.dtype, train: bool = False,
                 owner: Layer | None = None) -> None:
        self.ops, self.name, self.shape, self.dtype = ops, name, tuple(shape), dtype
        self.norm = neuron.norm
        self.batch_norm = self.norm is not None and train  # statistics of the batch, else the running ones
        if self.norm is not None:
            for what in ("scale", "shift", "running_mean", "running_var"):
                arr = getattr(self.norm, what)
                if not np.isfinite(arr).all():  # an optimizer step may have diverged since the setter checked
                    check_finite(self.norm, what, arr)
            if not self.batch_norm:
                self.affine = affine(self.norm.scale, self.norm.shift, self.norm.running_mean,
                                     self.norm.running_var, self.norm.eps, dtype, self.norm)
        self.owner = owner or neuron
        constants = neuron.constants(as3(shape), dtype, self.owner)
        self.theta, self.leak, self.v_reset = constants.theta, constants.leak, constants.v_reset
        self.gain = constants.gain
        self.form, self.divisor = ARITHMETIC.index(constants.arithmetic), constants.divisor
        self.soft = neuron.reset == "soft"
        self.strict = neuron.strict
        self.delayed = neuron.reset_delayed
        self.readout = isinstance(neuron, Readout)

    def counted_ops(self) -> list[tuple[str, str]]:
        return [(op.name, op.counter) for op in self.ops if op.name is not None]

    def start(self, sample: _Sample, record: frozenset) -> None:
        super().start(sample, record)
        n = prod(self.shape)
        sample.v[self.name] = np.zeros(n, self.dtype)
        sample.traces[self.name] = np.zeros(n, self.dtype)
        if self.delayed:
            sample.fired[self.name] = np.zeros(n, np.bool_)

    def run(self, sample: _Sample, *xs: Window) -> StageRun:
        steps = xs[0][0].shape[0] - 1
        cur = _zeroed((steps, prod(self.shape)), self.dtype)
        for op, x in zip(self.ops, xs):
            self._count(sample, op.name, op.scatter(cur, x))
        t0 = sample.window_start
        if self.name in sample.currents:  # the raw I, before the norm and before lif_window turns it into U
            sample.currents[self.name][t0 : t0 + steps] = to_c_order(cur, self.shape).reshape(steps, -1)
        if self.norm is not None:
            yield from self._normalise(sample, cur)
        # The potentials are read back only when recorded or read out.
        keep = self.readout or self.name in sample.potentials
        v, fired = sample.v[self.name], sample.fired.get(self.name)
        before = (v.copy(), None if fired is None else fired.copy())  # where an overflow's step is looked for
        indptr, index, overflow = kernels.lif_window(
            v, cur, self.theta, self.leak, self.soft, self.v_reset, self.strict,
            sample.totals[self.name], sample.traces[self.name], self.gain, fired, not keep, self.form, self.divisor,
        )
        if overflow:  # the buffer stays out of the pool, dirty (see _zeroed)
            step = t0 + self._first_overflow(sample, xs, *before)
            raise _overflow(self.owner, "a potential", step, sample, self.dtype)
        if self.name in sample.potentials:
            sample.potentials[self.name][t0 : t0 + steps] = to_c_order(cur, self.shape).reshape(steps, -1)
        if self.readout:
            sample.last_u[self.name] = cur[-1].copy()
        _released(cur, cleared=not keep)
        return self._emitted(sample, (indptr, index, np.ones(index.shape[0], self.dtype)))

    def _normalise(self, sample: _Sample, cur: np.ndarray) -> Generator[np.ndarray, np.ndarray, None]:
        """``I' = k * I + c`` in place (eventsim.norm), with the batch's statistics in a training run.

        A training run has one window of all T steps, so ``cur`` holds every
        step of the sample.
        """
        steps, channels = cur.shape[0], self.norm.channels
        if self.batch_norm:
            count = sample.batch * cur.shape[1] // channels * (1 if self.norm.stats == "batch" else steps)
            mean, var = yield from batch_statistics(cur, self.norm, count)
            sample.norm_stats[self.name] = (mean, var, count)
        self._apply_norm(sample, cur)

    def _apply_norm(self, sample: _Sample, cur: np.ndarray) -> None:
        """``I' = k * I + c`` in place, with the batch's statistics once :meth:`_normalise` has met the batch."""
        if self.batch_norm:
            mean, var, _ = sample.norm_stats[self.name]
            k, c = affine(self.norm.scale, self.norm.shift, mean, var, self.norm.eps, self.dtype, self.norm)
        else:
            k, c = self.affine
        per_position = cur.reshape(cur.shape[0], -1, self.norm.channels)
        if k.ndim == 2:  # one (k, c) per step
            k, c = k[:, None, :], c[:, None, :]
        np.multiply(per_position, k, out=per_position)
        np.add(per_position, c, out=per_position)

    def _first_overflow(self, sample: _Sample, xs: tuple[Window, ...], v: np.ndarray, fired: np.ndarray | None) -> int:
        """The first step of a window at which lif_window found a potential inf or NaN.

        The kernel tells only that the window overflowed; the window runs
        again from the state ``(v, fired)`` before it, in a buffer of its own
        that keeps every step's potentials, and the first step with one that
        is not finite is the answer. Only a run about to fail pays for this.
        """
        cur = np.zeros((xs[0][0].shape[0] - 1, prod(self.shape)), self.dtype)
        for op, x in zip(self.ops, xs):
            op.scatter(cur, x)
        if self.norm is not None:
            self._apply_norm(sample, cur)
        counts, traces = np.zeros_like(v), np.zeros_like(v)  # not the sample's: the run fails anyway
        kernels.lif_window(v, cur, self.theta, self.leak, self.soft, self.v_reset, self.strict,
                           counts, traces, self.gain, fired, False, self.form, self.divisor)
        return int(np.argmin(np.isfinite(cur).all(axis=1)))


class _PassStage(_Stage):
    """A synapse with no neuron after it: its currents leave as events."""

    channel_last = True

    def __init__(self, op: _Op, shape, dtype: np.dtype) -> None:
        self.op, self.name, self.shape, self.dtype = op, op.name, tuple(shape), dtype
        self.owner = op.layer

    def counted_ops(self) -> list[tuple[str, str]]:
        return [(self.op.name, self.op.counter)]

    def apply(self, sample: _Sample, x: Window) -> Window:
        cur = _zeroed((x[0].shape[0] - 1, prod(self.shape)), self.dtype)
        self._count(sample, self.op.name, self.op.scatter(cur, x))
        out = kernels.currents_to_events(cur, self.op.out3[0], sample.totals[self.name])
        _released(cur, cleared=False)
        _check_values(self.owner, sample, out, self.dtype)
        return self._emitted(sample, out)


class _MaxPoolStage(_Stage):
    """Max pooling on events: window maxima per step, passed on as events."""

    def __init__(self, layer: MaxPool, in_shape, shape, dtype: np.dtype) -> None:
        self.layer, self.name, self.shape, self.dtype = layer, layer.name, tuple(shape), dtype
        self.owner = layer
        self.in3, self.out3 = as3(in_shape), as3(shape)

    def counted_ops(self) -> list[tuple[str, str]]:
        return [(self.name, "pool_ops")]

    def apply(self, sample: _Sample, x: Window) -> Window:
        indptr, index, value, ops = kernels.maxpool_events(
            *x, self.in3[0], self.in3[1:], self.out3[1:], self.layer.kernel_size, self.layer.stride
        )
        self._count(sample, self.name, ops)
        np.add.at(sample.totals[self.name], index, value)
        return self._emitted(sample, (indptr, index, value))


class _DropoutStage(_Stage):
    """Dropout with the sample's keep-mask; the identity when the run has no mask."""

    def __init__(self, layer: Dropout, shape, dtype: np.dtype) -> None:
        self.layer, self.name, self.shape, self.dtype = layer, layer.name, tuple(shape), dtype
        self.owner = layer
        self.scale = dtype.type(layer.scale)

    def apply(self, sample: _Sample, x: Window) -> Window:
        keep = sample.keep.get(self.name)
        if keep is None:
            indptr, index, value = x
            out = (indptr - indptr[0], index[indptr[0] : indptr[-1]], value[indptr[0] : indptr[-1]])
        else:
            out = kernels.dropout_events(*x, keep, self.scale)
            _check_values(self.owner, sample, out, self.dtype)
        np.add.at(sample.totals[self.name], out[1], out[2])
        return self._emitted(sample, out)


class _ResidualStage(_Stage):
    """A residual block: the main path's stages, then the merge into one neuron layer."""

    def __init__(self, main: list[_Stage], merge: _NeuronStage) -> None:
        self.main, self.merge = main, merge
        self.name, self.shape, self.dtype = merge.name, merge.shape, merge.dtype

    def start(self, sample: _Sample, record: frozenset) -> None:
        for stage in self.main:
            stage.start(sample, record)
        self.merge.start(sample, record)

    def run(self, sample: _Sample, x: Window) -> StageRun:
        main = x
        for stage in self.main:
            main = yield from stage.run(sample, main)
        return (yield from self.merge.run(sample, main, x))


# =================================================================== results
@dataclass
class RunResult:
    """What :meth:`Network.run` recorded for a batch.

    Every dict is keyed by layer name. Per-sample arrays have the batch as
    their first axis and neuron arrays are in C order of the layer's shape.

    Attributes
    ----------
    output : (batch, *shape) array or None
        The readout ``U_L[T] / T`` when the network ends in a :class:`Readout`.
    synops : dict of (batch,) int64
        Exact synaptic operations per weighted layer (Conv2d, Linear, skip
        convolutions): each input event counts the in-bounds synapses it reaches.
    pool_ops : dict of (batch,) int64
        Operations of pooling layers and identity skips: (event, window) pairs.
    events : dict of (batch,) int64
        Events each layer emitted (spikes, for spiking layers).
    counts : dict of (batch, *shape)
        Summed output event values: the spike count gamma for spiking layers,
        the dropout-scaled count after a Dropout. Recorded with "counts".
    traces : dict of (batch, *shape)
        ``f = sum_k lam^(T - t_k)`` over each neuron's spike steps t_k (Lee et
        al. 2020, eq. 17); spiking layers only. Recorded with "traces".
    spikes : dict of Events
        Every event each layer emitted. Recorded with "spikes".
    potentials : dict of (batch, T, *shape)
        The pre-threshold potential U at every step; neuron layers only.
        Recorded with "potentials".
    currents : dict of (batch, T, *shape)
        The input current I at every step (bias included), before the
        layer's norm and ``input_gain`` apply; neuron layers only. Recorded
        with "currents".
    masks : dict of (batch, *shape) bool
        The dropout masks used (training runs only).
    norm_stats : dict of eventsim.norm.NormStatistics
        The batch statistics of every layer with an input-current norm, with
        its raw currents (training runs only; docs/semantics.md,
        "Input-current batch norm").
    recorded : frozenset of str
        What the run was asked to record.
    """

    batch: int
    steps: int
    output: np.ndarray | None
    synops: dict[str, np.ndarray]
    pool_ops: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    spikes: dict[str, Events] = field(default_factory=dict)
    potentials: dict[str, np.ndarray] = field(default_factory=dict)
    currents: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    norm_stats: dict[str, NormStatistics] = field(default_factory=dict)
    recorded: frozenset = frozenset()

    def total_synops(self) -> np.ndarray:
        """SynOps per sample summed over layers, shape ``(batch,)``."""
        return sum(self.synops.values(), np.zeros(self.batch, np.int64))


# =================================================================== network
class Network:
    """A sequence of layers (residual blocks included) run on events.

    Parameters
    ----------
    layers : sequence of Layer
        In order. Layers without a name get one (``conv1``, ``lif1``,
        ``pool1``, ...; inside a residual block ``res1.conv1``, ...).
    input_shape : tuple of int
        Shape of one input sample, ``(C, H, W)`` or ``(N,)``.
    dtype : float32 (default) or float64
        The dtype of every weight, current and potential; input events must
        have it too.

    Raises
    ------
    LayerError
        A shape mismatch between layers, a misplaced Readout, a layer object
        used twice, or duplicate names; the message names the layer.
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int], dtype: object = np.float32) -> None:
        self.layers = list(layers)
        if not self.layers:
            raise LayerError(self, "has no layers")
        self.input_shape = tuple(int(s) for s in input_shape)
        if len(self.input_shape) not in (1, 3) or any(s < 1 for s in self.input_shape):
            raise LayerError(self, f"input_shape must be (C, H, W) or (N,) with positive sizes, got {input_shape!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in FLOAT_DTYPES:
            raise LayerError(self, f"dtype must be float32 or float64, got {self.dtype}")
        self.name = "network"
        self._name_layers()
        #: (input shape, output shape) of every layer, by name.
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.output_shape = self._infer(self.layers, self.input_shape, top=True)

    # ----------------------------------------------------------- structure
    def _name_layers(self) -> None:
        seen_objects: set[int] = set()
        taken = {layer.name for layer in self.walk() if layer.name}
        given = [layer.name for layer in self.walk() if layer.name]
        dup = {n for n in given if given.count(n) > 1}
        if dup:
            raise LayerError(self, f"duplicate layer names {sorted(dup)}")

        def assign(layers: list[Layer], prefix: str) -> None:
            counters: dict[str, int] = {}
            for layer in layers:
                if id(layer) in seen_objects:
                    raise LayerError(layer, "the same layer object appears twice; create a new layer instead")
                seen_objects.add(id(layer))
                if layer.name is None:
                    n = counters.get(layer.kind, 0)
                    while True:
                        n += 1
                        candidate = f"{prefix}{layer.kind}{n}"
                        if candidate not in taken:
                            break
                    counters[layer.kind] = n
                    layer.name = candidate
                    taken.add(candidate)
                if isinstance(layer, Residual):
                    inner = layer.main + [layer.skip, layer.neuron]
                    if layer.skip.name is None and isinstance(layer.skip, Identity):
                        layer.skip.name = f"{layer.name}.skip"
                        taken.add(layer.skip.name)
                    assign(inner, f"{layer.name}.")
                elif isinstance(layer, Recurrent):
                    assign([layer.connection, layer.neuron], f"{layer.name}.")

        assign(self.layers, "")

    def walk(self) -> Iterable[Layer]:
        """Every layer, depth first (a residual block, then its main path, skip, neuron; a
        recurrent block, then its connection and neuron)."""

        def rec(layers):
            for layer in layers:
                yield layer
                if isinstance(layer, Residual):
                    yield from rec(layer.main + [layer.skip, layer.neuron])
                elif isinstance(layer, Recurrent):
                    yield from rec([layer.connection, layer.neuron])

        return rec(self.layers)

    def _infer(self, layers: list[Layer], shape: tuple[int, ...], top: bool) -> tuple[int, ...]:
        for i, layer in enumerate(layers):
            if isinstance(layer, Readout) and not (top and i == len(layers) - 1):
                raise LayerError(layer, "a Readout must be the last layer of the network")
            if isinstance(layer, Residual):
                main_out = self._infer(layer.main, shape, top=False)
                skip_out = self._infer([layer.skip], shape, top=False)
                if main_out != skip_out:
                    raise LayerError(
                        layer, f"main path gives shape {main_out} but the skip gives {skip_out}; they must match"
                    )
                out = self._infer([layer.neuron], main_out, top=False)
            elif isinstance(layer, Recurrent):
                out = layer.output_shape(shape)
                self.shapes[layer.neuron.name] = (shape, tuple(out))
                self.shapes[layer.connection.name] = (tuple(out), tuple(out))
            else:
                out = layer.output_shape(shape)
            if getattr(layer, "norm", None) is not None:
                layer.norm.bind(layer, as3(out)[0], self.dtype)
            self.shapes[layer.name] = (shape, tuple(out))
            shape = tuple(out)
        return shape

    def __repr__(self) -> str:
        lines = [f"Network(input_shape={self.input_shape}, dtype={self.dtype.name}) ["]
        for layer in self.walk():
            depth = layer.name.count(".")
            ins, outs = self.shapes[layer.name]
            lines.append(f"  {'  ' * depth}{layer.name}: {type(layer).__name__} {ins} -> {outs}")
        return "\n".join(lines + ["]"])

    # ------------------------------------------------------------- counting
    def ann_macs(self) -> dict[str, int]:
        """Multiply-accumulates per weighted layer of the same network run as a dense ANN.

        One MAC per synapse per output position, padded taps included; pooling
        and identity skips cost none.
        """
        return {
            layer.name: layer.ann_macs(self.shapes[layer.name][0])
            for layer in self.walk()
            if isinstance(layer, Weighted)
        }

    # ------------------------------------------------------------------ plan
    def _plan(self, layers: list[Layer], train: bool) -> list[_Stage]:
        dtype = self.dtype
        stages: list[_Stage] = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            in_shape, out_shape = self.shapes[layer.name]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, Flatten):
                pass  # flat indices are C order already: nothing to do on events
            elif isinstance(layer, MaxPool):
                stages.append(_MaxPoolStage(layer, in_shape, out_shape, dtype))
            elif isinstance(layer, Synapse) and nxt is not None and _is_neuron(nxt):
                op = _Op(layer, in_shape, out_shape, dtype)
                stages.append(_NeuronStage([op], nxt, nxt.name, out_shape, dtype, train))
                i += 1
            elif isinstance(layer, Synapse):
                stages.append(_PassStage(_Op(layer, in_shape, out_shape, dtype), out_shape, dtype))
            elif _is_neuron(layer):
                op = _Op(None, in_shape, out_shape, dtype)
                stages.append(_NeuronStage([op], layer, layer.name, out_shape, dtype, train))
            elif isinstance(layer, SpikingAvgPool):
                op = _Op(layer.pool, in_shape, out_shape, dtype, name=layer.name)
                stages.append(_NeuronStage([op], layer.neuron, layer.name, out_shape, dtype, owner=layer))
            elif isinstance(layer, Dropout):
                stages.append(_DropoutStage(layer, out_shape, dtype))
            elif isinstance(layer, Residual):
                last = layer.main[-1]
                last_in, last_out = self.shapes[last.name]
                ops = [_Op(last, last_in, last_out, dtype), _Op(layer.skip, *self.shapes[layer.skip.name], dtype)]
                merge = _NeuronStage(ops, layer.neuron, layer.neuron.name, last_out, dtype, train)
                stages.append(_ResidualStage(self._plan(layer.main[:-1], train), merge))
            else:
                raise LayerError(layer, "is not a layer type the network can run")
            i += 1
        return stages

    # ------------------------------------------------------------------- run
    def run(
        self,
        events: Events,
        *,
        record: Iterable[str] = (),
        train: bool = False,
        rng: np.random.Generator | None = None,
        masks: dict[str, np.ndarray] | None = None,
        window: int | None = None,
    ) -> RunResult:
        """Run a batch of input events through the network.

        Parameters
        ----------
        events : Events
            Input of shape ``input_shape`` and the network's dtype.
        record : iterable of {"counts", "traces", "spikes", "potentials", "currents"}
            What to keep beyond the readout and the operation counts.
        train : bool
            Apply dropout (off at inference), and normalise input currents
            with the batch's statistics instead of the running ones (a
            training run with a norm takes one window of all steps).
        rng : numpy Generator
            Draws the dropout masks of a training run: for each Dropout layer in
            network order, ``keep = rng.random((batch, neurons)) >= p``.
        masks : dict, optional
            Dropout keep masks by layer name, ``(batch, *shape)`` bool, used
            instead of drawing in a training run (to replay a run or feed
            another implementation the same masks).
        window : int, optional
            Steps each stage processes at once; by default as many as keep a
            current buffer within ``WINDOW_ELEMENTS`` elements. Results do not
            depend on it.
        """
        record = frozenset(record)
        for r in record:
            check_choice("record", r, RECORDS)
        self._check_input(events)
        steps, batch = events.steps, events.batch
        stages = self._plan(self.layers, train)
        keep = self._dropout_masks(stages, batch, train, rng, masks)
        batch_norms = [s.name for s in _leaves(stages) if isinstance(s, _NeuronStage) and s.batch_norm]
        if batch_norms:
            window = steps  # the batch statistics need every step of the currents at once
        elif window is None:
            largest = max(prod(shape) for _, shape in self.shapes.values())
            window = max(1, min(steps, WINDOW_ELEMENTS // largest))
        elif int(window) < 1:
            raise OptionError(f"window must be >= 1 step, got {window!r}")
        window = int(window)

        # The T-sized records are allocated once; each sample fills its slice.
        per_step = {
            what: {
                s.name: np.empty((batch, steps) + s.shape, self.dtype)
                for s in _leaves(stages) if isinstance(s, _NeuronStage)
            }
            for what in PER_STEP_RECORDS if what in record
        }
        # The backward pass through a norm reads the raw currents of its layer.
        norm_currents = {name: per_step.get("currents", {}).get(name) for name in batch_norms}
        for name, arr in norm_currents.items():
            if arr is None:
                norm_currents[name] = np.empty((batch, steps) + self.shapes[name][1], self.dtype)
        # So are the per-neuron records, filled in C order by each sample's
        # own task: the layout change runs in parallel, not after the batch.
        per_neuron = {
            key: {
                s.name: np.empty((batch,) + s.shape, self.dtype)
                for s in _leaves(stages) if key == "totals" or isinstance(s, _NeuronStage)
            }
            for key, what in (("totals", "counts"), ("traces", "traces")) if what in record
        }
        # Samples are independent but for the batch statistics of norms: they
        # run in parallel (eventsim.threads), meeting where a norm needs the
        # batch's sums, and every per-sample result lands in its own slot.
        samples = in_lockstep(
            self._run_sample(stages, events, b, record, window, per_step, per_neuron, keep, norm_currents)
            for b in range(batch)
        )
        result = self._collect(stages, samples, record, keep, steps)
        for name, currents in norm_currents.items():
            mean, var, count = samples[0].norm_stats[name]
            stats = next(s.norm.stats for s in _leaves(stages) if s.name == name)
            result.norm_stats[name] = NormStatistics(stats, mean, var, count, currents)
        for what, arrays in per_step.items():
            setattr(result, what, arrays)
        result.counts = per_neuron.get("totals", {})
        result.traces = per_neuron.get("traces", {})
        return result

    def _check_input(self, events: Events) -> None:
        if not isinstance(events, Events):
            raise EventsError(f"network input must be an Events container, got {type(events).__name__}")
        if events.shape != self.input_shape:
            raise EventsError(f"input events have shape {events.shape} but the network expects {self.input_shape}")
        if events.dtype != self.dtype:
            raise EventsError(
                f"input events are {events.dtype} but the network runs in {self.dtype}; "
                f"convert with events.astype(np.{self.dtype.name})"
            )

    @staticmethod
    def _dropout_masks(stages, batch, train, rng, masks) -> dict[str, np.ndarray]:
        if masks and not train:
            raise OptionError("dropout masks apply to training runs only (train=True); dropout is off at inference")
        masks = masks or {}
        dropouts = [s for s in _leaves(stages) if isinstance(s, _DropoutStage)]
        unknown = sorted(set(masks) - {s.name for s in dropouts})
        if unknown:
            raise OptionError(f"masks given for layers that are not Dropout layers of this network: {unknown}")
        used = {}
        for stage in dropouts:
            layer = stage.layer
            shape = (batch,) + stage.shape
            if layer.name in masks:
                m = np.asarray(masks[layer.name])
                if m.dtype != np.bool_ or m.shape != shape:
                    raise LayerError(layer, f"mask must be a bool array of shape {shape}, got {m.dtype} {m.shape}")
            elif train and layer.p > 0:
                if not isinstance(rng, np.random.Generator):
                    raise LayerError(layer, "a training run with dropout needs rng=np.random.default_rng(seed)")
                m = (rng.random((batch, prod(stage.shape))) >= layer.p).reshape(shape)
            else:
                continue
            used[layer.name] = m
        return used

    def _run_sample(self, stages, events: Events, b: int, record, window: int, per_step, per_neuron, keep,
                    norm_currents) -> Generator[np.ndarray, np.ndarray, _Sample]:
        steps = events.steps
        sample = _Sample(batch=events.batch, number=b)
        for what, arrays in per_step.items():
            setattr(sample, what, {name: arr[b].reshape(steps, -1) for name, arr in arrays.items()})
        sample.currents.update({name: arr[b].reshape(steps, -1) for name, arr in norm_currents.items()})
        sample.keep = {name: mask[b].reshape(-1) for name, mask in keep.items()}
        for stage in stages:
            stage.start(sample, record)
        rows = events.sample_rows(b)
        for t0 in range(0, steps, window):
            t1 = min(steps, t0 + window)
            sample.window_start = t0
            x = (rows[t0 : t1 + 1], events.index, events.value)
            for stage in stages:
                x = yield from stage.run(sample, x)
        for key, arrays in per_neuron.items():
            for stage in _leaves(stages):
                if stage.name in arrays:
                    values = getattr(sample, key)[stage.name]
                    # Spike counts and traces are at most T; summed values passed on may overflow.
                    if not np.isfinite(values).all():
                        raise LayerError(stage.owner, f"the summed output values (counts) of sample {b} are not "
                                                      f"finite: their sum over the {steps} steps overflows "
                                                      f"{self.dtype}; make the weights or inputs smaller, "
                                                      "or run the network in float64")
                    arrays[stage.name][b] = _in_c_order(values, stage)
        return sample

    def _collect(self, stages, samples: list[_Sample], record, keep, steps) -> RunResult:
        result = RunResult(
            batch=len(samples), steps=steps, output=None, synops={}, pool_ops={}, events={}, masks=keep, recorded=record
        )
        for stage in _leaves(stages):
            name = stage.name
            for op_name, counter in stage.counted_ops():
                getattr(result, counter)[op_name] = np.array([smp.ops.get(op_name, 0) for smp in samples], np.int64)
            result.events[name] = np.array([smp.n_events[name] for smp in samples], np.int64)
            if "spikes" in record:
                result.spikes[name] = _join_windows([smp.spikes[name] for smp in samples], steps, stage.shape, stage.dtype)
            if isinstance(stage, _NeuronStage) and stage.readout:
                last_u = _in_c_order(np.stack([smp.last_u[name] for smp in samples]), stage)
                result.output = last_u / stage.dtype.type(steps)
        return result


def _leaves(stages: list[_Stage]) -> list[_Stage]:
    """Stages in run order with residual blocks opened up."""
    out: list[_Stage] = []
    for stage in stages:
        if isinstance(stage, _ResidualStage):
            out.extend(_leaves(stage.main))
            out.append(stage.merge)
        else:
            out.append(stage)
    return out


def _in_c_order(arr: np.ndarray, stage: _Stage) -> np.ndarray:
    """A stage's per-neuron array (leading axes kept) with the neurons in C order of its shape."""
    if stage.channel_last:
        return to_c_order(arr, stage.shape)
    return arr.reshape(arr.shape[:-1] + stage.shape)


def _join_windows(per_sample: list[list[Window]], steps: int, shape, dtype) -> Events:
    """Concatenate the windows of every sample into one Events container."""
    indptr = [np.zeros(1, np.int64)]
    index, value = [], []
    offset = 0
    for windows in per_sample:
        for ptr, idx, val in windows:
            indptr.append(ptr[1:] - ptr[0] + offset)
            index.append(idx)
            value.append(val)
            offset += idx.shape[0]
    return Events(
        np.concatenate(indptr),
        np.concatenate(index) if index else np.zeros(0, np.int64),
        np.concatenate(value) if value else np.zeros(0, dtype),
        batch=len(per_sample), steps=steps, shape=shape, check=False,
    )
