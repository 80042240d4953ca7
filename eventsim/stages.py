"""Stages: the pieces a network run is made of, each turning event windows into an event window.

A stage is one step of :meth:`eventsim.Network.run`'s plan for one sample:
a synapse and the neuron layer after it (:class:`NeuronStage`), a synapse
with no neuron after it (:class:`PassStage`), max pooling, dropout, a delay,
a residual block, and a recurrent neuron layer (:class:`RecurrentStage`).
Most stages process a *window* of K steps at once, since nothing later in
the network feeds back into them; a recurrent stage steps through its
window one step at a time, since its own spikes of one step are part of its
input at the next; a delay holds the events it moves past the window's end
until the window they land in.

Each stage keeps a sample's state in the sample's :class:`Sample` record
(potentials, synaptic currents, delayed events, ...) and adds what it
counts and records there; :mod:`eventsim.network` plans the stages and
collects the records.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from math import prod
from typing import Generator

import numpy as np

from eventsim import kernels
from eventsim.errors import LayerError
from eventsim.finite import check_finite
from eventsim.layers import (
    ARITHMETIC,
    LIF,
    AvgPool,
    Conv2d,
    Delay,
    Dropout,
    Layer,
    Linear,
    MaxPool,
    Readout,
    Recurrent,
    SumPool,
    Synapse,
    Weighted,
)
from eventsim.layout import as3, to_c_order
from eventsim.norm import affine, batch_statistics

#: Default bound on a window's current buffer, in elements (32 MiB in float32).
#: Larger windows mean fewer passes through the stages' Python per sample,
#: which the threads share the GIL for, and fewer windows for the neuron
#: kernels to set up: inference of Lee's N-MNIST LeNet on 2 threads, 2^23
#: against 2^22: 12 % faster at T = 300 (the whole sample's 300 steps of its
#: widest layer in one window) and 10 % at T = 600 (2^22 against 2^20 had
#: made it 5-15 % faster at T = 100 and 300).
WINDOW_ELEMENTS = 1 << 23
#: The least a thread's current buffer holds, in elements (16 MiB in float32):
#: a run whose windows are smaller (a training run at T = 100, most networks)
#: keeps that, not a buffer as large as the window bound.
BUFFER_ELEMENTS = 1 << 22

#: log2 of the neurons per block of a window's current flags (kernels.flagged_lif_window):
#: a block is read only at the steps a synapse added a current to it. Blocks of 64 against
#: 16: 6.3 against 9.5 ms per sample in the neuron kernel (Lee's N-MNIST LeNet, T = 300),
#: the cost of each updated block outweighing the few more blocks of 16 that are skipped.
FLAG_SHIFT = 6
#: The largest share of a window's (step, block) pairs flagged for which the layer takes
#: kernels.flagged_lif_window; above it, the full update (kernels.plain_lif_window, the same bits)
#: is faster. Lee's N-MNIST LeNet (20-35 % of the pairs flagged at T = 300, 30-48 % at T = 100,
#: 40-60 % at T = 30), inference on one thread against 0.25: 3-4 % faster at T = 30 and 100,
#: 1-2 % at T = 300; shares from 0.45 to 1.0 all within 2 % of each other.
SILENT_SHARE = 0.5

Window = tuple  # (indptr, index, value) of K steps, see eventsim.kernels
#: A stage's run over one window: a generator that yields partial sums of a
#: batch statistic, receives their batch totals, and returns the output window.
StageRun = Generator[np.ndarray, np.ndarray, Window]


def is_neuron(layer: Layer) -> bool:
    """Whether ``layer`` integrates currents: a neuron layer, or a recurrent block around one."""
    return isinstance(layer, (LIF, Recurrent))


_scratch = threading.local()


def _zeroed(shape: tuple[int, int], dtype: np.dtype, least: int = BUFFER_ELEMENTS) -> np.ndarray:
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
    and window. The buffer has room for at least ``least`` elements; each
    dtype has its own (the flags of :func:`kernels.flagged_lif_window` are
    uint8, zeroed by that kernel as it reads them).
    """
    size = shape[0] * shape[1]
    buf = getattr(_scratch, dtype.char, None)  # the char, not the name: NumPy builds the name on every call
    if buf is None or buf.shape[0] < size:
        buf = np.zeros(max(size, least), dtype)
    # Taken out of the pool until released: a stage that fails midway leaves
    # the buffer dirty, and the next stage then gets a fresh one.
    setattr(_scratch, dtype.char, None)
    return buf[:size].reshape(shape)


def _overflow(owner: Layer, what: str, step: int, sample: "Sample", dtype: np.dtype) -> LayerError:
    """The error of a run that computed inf or NaN: which layer, which step, and what to do."""
    return LayerError(owner, f"{what} is not finite (inf or NaN) at step {step} of sample {sample.number}: "
                             f"the sum overflows {dtype}; make the weights or inputs smaller, "
                             "or run the network in float64")


def _check_values(owner: Layer, sample: "Sample", out: Window, dtype: np.dtype) -> None:
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


def _read_only(a: np.ndarray) -> np.ndarray:
    """A view of ``a`` that does not allow writing."""
    view = a.view()
    view.flags.writeable = False
    return view


def _released(cur: np.ndarray, cleared: bool) -> None:
    """Hand a window buffer from :func:`_zeroed` back; zero it first unless the kernel ``cleared`` it."""
    if not cleared:
        cur.fill(0)
    setattr(_scratch, cur.dtype.char, cur.base)  # NumPy keeps the owner of the memory as a view's base


# ============================================================ per-sample state
@dataclass
class NeuronState:
    """A neuron layer's state between steps, for one sample; arrays are channel-last.

    docs/semantics.md, "State beyond the potential": the potential after the
    reset R (with a delayed reset, ``V = lam * U`` and the spikes of the
    step before in ``fired``) and the synaptic current J of a layer that
    has one.
    """

    potential: np.ndarray
    synaptic: np.ndarray | None = None
    fired: np.ndarray | None = None

    def saved(self) -> "NeuronState":
        """A copy in buffers of the calling thread, valid until its next call.

        What a neuron stage keeps of the state before a window, in case the
        window overflows (:meth:`NeuronStage._first_overflow`): nothing runs
        on the thread between the copy and the window's end, so one set of
        buffers per thread serves every stage and window, without an
        allocation for each.
        """
        buffers = _scratch.__dict__.setdefault("saved", {})

        def kept(role: str, a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            buf = buffers.get(role)
            if buf is None or buf.shape[0] < a.shape[0] or buf.dtype != a.dtype:
                buf = buffers[role] = np.empty(a.shape[0], a.dtype)
            out = buf[: a.shape[0]]
            np.copyto(out, a)
            return out

        return NeuronState(kept("potential", self.potential), kept("synaptic", self.synaptic),
                           kept("fired", self.fired))


@dataclass
class Sample:
    """What one sample's run accumulates; stages read and write their own entries."""

    window_start: int = 0
    batch: int = 1
    number: int = 0  # the sample's index in the batch
    steps: int = 0  # T
    state: dict = field(default_factory=dict)  # NeuronState of each neuron layer
    pending: dict = field(default_factory=dict)  # events a Delay or a recurrent layer holds for a later window
    totals: dict = field(default_factory=dict)
    traces: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    n_events: dict = field(default_factory=dict)
    spikes: dict = field(default_factory=dict)
    potentials: dict = field(default_factory=dict)
    currents: dict = field(default_factory=dict)
    synaptic: dict = field(default_factory=dict)
    last_u: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)  # dropout keep-masks of this sample, (N,) bool
    norm_stats: dict = field(default_factory=dict)  # batch (mean, var, count) of normalised layers
    checkpoints: dict = field(default_factory=dict)  # by step, the NeuronState of each neuron layer at its start


# ==================================================================== stages
class SynapseOp:
    """A synapse resolved for the kernels: scatter layout, dtype, geometry."""

    def __init__(self, layer: Synapse | None, in_shape, out_shape, dtype: np.dtype, name: str | None = None) -> None:
        self.layer = layer
        self.name = name or (None if layer is None else layer.name)
        self.in3 = as3(in_shape)
        self.out3 = as3(out_shape)
        self.bias = layer.bias if isinstance(layer, Weighted) else None
        self.delay = None  # synaptic delays (Linear), transposed
        self.reach = 0  # the longest delay: how many steps past a window its currents may land
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
            if layer.bias is not None and not np.isfinite(layer.bias).all():  # the weights: in _layout
                check_finite(layer, "bias", layer.bias)
        self._weight = None
        self._building = threading.Lock()
        if isinstance(layer, Linear) and layer.delay is not None:  # transposed like the weights
            self.delay = np.ascontiguousarray(layer.delay.T)
            self.reach = int(self.delay.max())
        elif isinstance(layer, (AvgPool, SumPool)):
            self._weight = dtype.type(layer.window_weight)
            self.window = layer.kernel_size
        elif not isinstance(layer, Weighted):  # Identity, or the identity currents of a neuron layer after no synapse
            self._weight = dtype.type(1)
            self.window = (1, 1)

    @property
    def weight(self) -> np.ndarray | np.floating:
        """What the scatter kernel multiplies by: the weights in its layout (conv ``(C, kh, kw, O)``,
        linear ``(Ni, No)``), or a pooling window's weight.

        The layout of a layer's weights is built, and the weights checked
        finite, by the first sample of a run that needs them, not by the
        calling thread before the samples start: with several threads, the
        others go on with their samples' earlier layers meanwhile (fc1 of
        Lee's LeNet: a 2.6 MB transposed copy, about 0.7 ms).
        """
        if self._weight is None:
            with self._building:  # built once: the other samples wait for it
                if self._weight is None:
                    self._weight = self._layout()
        return self._weight

    def _layout(self) -> np.ndarray:
        weight, layer = self.layer.weight, self.layer
        if not np.isfinite(weight).all():  # the quick test; check_finite then names the entry
            check_finite(layer, "weight", weight)
        if isinstance(layer, Conv2d):
            return np.ascontiguousarray(weight.transpose(1, 2, 3, 0))
        return np.ascontiguousarray(weight.T)

    @property
    def marks_blocks(self) -> bool:
        """Whether :meth:`scatter` flags every block of neurons it adds a current to.

        Not with a bias (every neuron receives it) or synaptic delays (the
        currents land in later windows' rows).
        """
        return self.bias is None and self.reach == 0

    def scatter(self, cur: np.ndarray, x: Window, steps: int | None = None, limit: int = 0,
                flags: np.ndarray | None = None) -> int:
        """Add this synapse's currents for a window of ``steps`` steps of events into ``cur``.

        ``cur`` has a row per step of the window and, for a synapse with
        delays, ``reach`` more rows for the currents that land in later
        windows; ``limit`` is the number of steps left before T (rows from
        there on are dropped). The bias goes into the window's own rows.
        ``flags`` (only where :attr:`marks_blocks`) receives the blocks of
        ``2^FLAG_SHIFT`` neurons reached at each step.
        """
        indptr, index, value = x
        layer = self.layer
        if self.bias is not None:
            kernels.add_bias(cur[: cur.shape[0] if steps is None else steps], self.bias)
        in_hw, out_hw = self.in3[1:], self.out3[1:]
        if isinstance(layer, Conv2d):
            return kernels.conv_scatter(cur, indptr, index, value, self.weight, in_hw, out_hw, layer.stride,
                                        layer.padding, flags, FLAG_SHIFT)
        if isinstance(layer, Linear):
            return kernels.linear_scatter(cur, indptr, index, value, self.weight, self.delay, limit, flags, FLAG_SHIFT)
        stride = (1, 1) if layer is None else layer.stride
        return kernels.pool_scatter(cur, indptr, index, value, self.weight, self.in3[0], in_hw, out_hw, self.window,
                                    stride, flags, FLAG_SHIFT)


    def stepwise(self, potential: np.ndarray, x: Window, row: np.ndarray, flags: np.ndarray,
                 neuron: tuple) -> tuple:
        """:meth:`scatter` and the update of the neurons it feeds, a step at a time (:mod:`eventsim.kernels.stepwise`).

        Only where :attr:`marks_blocks`; ``row`` and ``flags`` are zeroed
        one-row buffers, zero again on return; ``neuron`` is ``(theta, leak,
        soft, v_reset, strict, counts, traces, gain)``. Returns
        ``(indptr, index, value, overflow, skipped, ops)``.
        """
        # Read-only views: Numba types a read-only array apart from a writable
        # one, and the network's input events are read-only while those a
        # layer emits are not; one type spares the kernel a compilation.
        indptr, index, value = (_read_only(a) for a in x)
        layer = self.layer
        in_hw, out_hw = self.in3[1:], self.out3[1:]
        if isinstance(layer, Conv2d):
            return kernels.conv_lif_window(potential, indptr, index, value, self.weight, in_hw, out_hw, layer.stride,
                                           layer.padding, row, flags, FLAG_SHIFT, *neuron)
        if isinstance(layer, Linear):
            return kernels.linear_lif_window(potential, indptr, index, value, self.weight, row, flags, FLAG_SHIFT,
                                             *neuron)
        stride = (1, 1) if layer is None else layer.stride
        return kernels.pool_lif_window(potential, indptr, index, value, self.weight, self.in3[0], in_hw, out_hw,
                                       self.window, stride, row, flags, FLAG_SHIFT, *neuron)


class Stage:
    """Turns input event windows into an output event window for one sample."""

    name: str  # the layer whose output this stage produces
    owner: Layer  # the layer an error of this stage names
    shape: tuple[int, ...]  # output shape
    channel_last = False  # layout of the per-neuron arrays the stage keeps

    def counted_ops(self) -> list[tuple[str, str]]:
        """(layer name, "synops" or "pool_ops") of the operations this stage counts."""
        return []

    def start(self, sample: Sample, record: frozenset) -> None:
        sample.totals[self.name] = np.zeros(prod(self.shape), self.dtype)
        sample.n_events[self.name] = 0
        if "spikes" in record:
            sample.spikes[self.name] = []

    def currents(self, sample: Sample, ops: list[SynapseOp], xs: tuple[Window, ...], steps: int,
                 buffer: np.ndarray | None = None, held: np.ndarray | None = None,
                 flags: np.ndarray | None = None) -> np.ndarray:
        """The currents ``ops`` scatter for a window, with those that earlier windows' delays ``held`` for it.

        Returns a ``(steps + reach, N)`` buffer (from :func:`_zeroed` unless
        ``buffer`` is given): the window's rows, then the currents that
        synaptic delays carry into later windows (:meth:`hold` keeps them).
        ``flags``, given where every op :attr:`~SynapseOp.marks_blocks`,
        receives the blocks of neurons the window's currents reach.
        """
        reach = max(op.reach for op in ops)
        buf = _zeroed((steps + reach, prod(self.shape)), self.dtype) if buffer is None else buffer
        if held is not None:
            buf[:reach] += held
        limit = sample.steps - sample.window_start
        for op, x in zip(ops, xs):
            self._count(sample, op.name, op.scatter(buf, x, steps, limit, flags))
        return buf

    def hold(self, sample: Sample, buf: np.ndarray, steps: int) -> None:
        """Keep the rows of ``buf`` past the window for the next window, and zero them (see :func:`_zeroed`)."""
        if buf.shape[0] > steps:
            sample.pending[(self.name, "currents")] = buf[steps:].copy()
            buf[steps:] = 0

    def run(self, sample: Sample, *xs: Window) -> StageRun:
        """The output window for the input windows ``xs`` (a generator: see :data:`StageRun`)."""
        yield from ()  # no batch statistic to meet on
        return self.apply(sample, *xs)

    def apply(self, sample: Sample, *xs: Window) -> Window:
        raise NotImplementedError

    def _emitted(self, sample: Sample, out: Window) -> Window:
        sample.n_events[self.name] += out[1].shape[0]
        if self.name in sample.spikes:
            sample.spikes[self.name].append(out)
        return out

    @staticmethod
    def _count(sample: Sample, name: str | None, n: int) -> None:
        if name is not None:
            sample.ops[name] = sample.ops.get(name, 0) + int(n)


class NeuronStage(Stage):
    """Synapses (one, or two merging in a residual block) feeding a neuron layer, through its norm if any."""

    channel_last = True
    #: Whether the spike counts and traces are left out (None) in a run that does not record them.
    counts_optional = True

    def __init__(self, ops: list[SynapseOp], neuron: LIF, name: str, shape, dtype: np.dtype, train: bool = False,
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
        # The options of "State beyond the potential"; None where a default
        # leaves the kernel's loop as it was without them.
        self.synaptic = constants.synapse_leak is not None
        # All of the dtype, so that a layer without a synapse compiles no kernel of its own.
        self.syn_leak, self.syn_gain = dtype.type(constants.synapse_leak or 0.0), constants.synapse_gain
        self.v_init = constants.v_init
        self.v_rest = None if constants.v_rest == 0 else constants.v_rest
        self.v_min = None if constants.v_min == -np.inf else constants.v_min
        self.max_spikes = None if constants.max_spikes == 1 else constants.max_spikes
        self.plain = (constants.arithmetic == "product" and not self.synaptic and self.v_rest is None
                      and self.v_min is None and self.max_spikes is None)
        # As kernels.lif_window takes them: None for all three, or each a number (NaN where left out), so
        # that a kernel is compiled for two ways of giving them, not eight.
        options = (self.v_rest, self.v_min, self.max_spikes)
        self.options = options if options == (None, None, None) else tuple(
            dtype.type(np.nan if x is None else x) for x in options)
        # Whether the neurons without current in a step may be only leaked,
        # later (kernels.flagged_lif_window): the plain loop with the
        # immediate reset (a delayed reset acts without input), a leak in
        # [0, 1] and a finite gain (so that they cannot fire), and currents
        # that come only from scatters that flag the blocks they reach (not
        # a bias or a norm's shift, which reach every neuron).
        self.skips_silent = (self.plain and not self.delayed and self.norm is None and 0 <= self.leak <= 1
                             and bool(np.isfinite(self.gain)) and all(op.marks_blocks for op in ops))

    def counted_ops(self) -> list[tuple[str, str]]:
        return [(op.name, op.counter) for op in self.ops if op.name is not None]

    def start(self, sample: Sample, record: frozenset) -> None:
        super().start(sample, record)
        n = prod(self.shape)
        # R[0] = v_init; with a delayed reset (which has no initial potential) V[0] = lam * 0 = 0.
        sample.state[self.name] = NeuronState(
            potential=np.full(n, self.v_init, self.dtype),
            synaptic=np.zeros(n, self.dtype) if self.synaptic else None,
            fired=np.zeros(n, np.bool_) if self.delayed else None,
        )
        # What a run does not record is not kept (None): the neuron kernels then leave it out.
        sample.traces[self.name] = np.zeros(n, self.dtype) if self._keeps("traces", record) else None
        if not self._keeps("counts", record):
            sample.totals[self.name] = None

    def _keeps(self, what: str, record: frozenset) -> bool:
        return what in record or not self.counts_optional

    def integrate(self, state: NeuronState, cur: np.ndarray, counts: np.ndarray, traces: np.ndarray, clear: bool,
                  synaptic: np.ndarray | None = None, flags: np.ndarray | None = None) -> tuple:
        """:func:`eventsim.kernels.lif_window` with this layer's constants on ``cur``; updates ``state``.

        ``synaptic``, a ``cur``-shaped buffer, receives J at every step.
        With the ``flags`` of the blocks that received a current (only where
        :attr:`skips_silent`, and with ``clear``), the others are not read
        (:func:`eventsim.kernels.flagged_lif_window`); the flags are zeroed.
        """
        if flags is not None:
            return kernels.flagged_lif_window(state.potential, cur, flags, FLAG_SHIFT, self.theta, self.leak,
                                              self.soft, self.v_reset, self.strict, counts, traces, self.gain)[:4]
        if self.plain:  # the loop that vectorises (kernels.plain_lif_window)
            return kernels.plain_lif_window(state.potential, cur, self.theta, self.leak, self.soft, self.v_reset,
                                            self.strict, counts, traces, self.gain, state.fired, clear)
        return kernels.lif_window(
            state.potential, cur, self.theta, self.leak, self.soft, self.v_reset, self.strict, counts, traces,
            self.gain, state.fired, clear, self.form, self.divisor, state.synaptic, self.syn_leak, self.syn_gain,
            synaptic, *self.options,
        )

    def _record(self, records: dict, t0: int, values: np.ndarray) -> None:
        """Copy a window of channel-last values into this layer's (T, neurons) channel-last record."""
        records[self.name][t0 : t0 + values.shape[0]] = values

    def run(self, sample: Sample, *xs: Window) -> StageRun:
        steps = xs[0][0].shape[0] - 1
        # The potentials are read back only when recorded or read out.
        keep = self.readout or self.name in sample.potentials
        if self.skips_silent and not keep and len(self.ops) == 1 and self.name not in sample.currents:
            return self._stepwise(sample, xs[0])
        flags = None
        if self.skips_silent and not keep:
            blocks = (prod(self.shape) + (1 << FLAG_SHIFT) - 1) >> FLAG_SHIFT
            flags = _zeroed((steps, blocks), np.dtype(np.uint8),
                            BUFFER_ELEMENTS >> FLAG_SHIFT)
        held = sample.pending.get((self.name, "currents"))
        t0 = sample.window_start
        # Recorded potentials: the window is integrated in its own rows of the
        # record, zeros until then (Network.run allocates it so), instead of
        # in a buffer of the pool copied out and zeroed again. Not with
        # synaptic delays, whose currents run past the window's rows.
        record = sample.potentials.get(self.name)
        into = record[t0 : t0 + steps] if record is not None and not any(op.reach for op in self.ops) else None
        buf = self.currents(sample, self.ops, xs, steps, buffer=into, held=held, flags=flags)
        if flags is not None and kernels.count_flags(flags) > SILENT_SHARE * flags.size:
            flags.fill(0)  # too few silent blocks to gain from skipping them: the full update
            _released(flags, cleared=True)
            flags = None
        self.hold(sample, buf, steps)
        cur = buf[:steps]
        if self.name in sample.currents:  # the raw I, before the norm and before lif_window turns it into U
            self._record(sample.currents, t0, cur)
        if self.norm is not None:
            yield from self._normalise(sample, cur)
        state = sample.state[self.name]
        before = state.saved()  # where an overflow's step is looked for
        synaptic = np.empty_like(cur) if self.name in sample.synaptic else None
        indptr, index, value, overflow = self.integrate(
            state, cur, sample.totals[self.name], sample.traces[self.name], not keep, synaptic, flags)
        if flags is not None:  # zeroed by the kernel, even when the window overflowed
            _released(flags, cleared=True)
        if overflow:  # the buffer stays out of the pool, dirty (see _zeroed)
            step = t0 + self._first_overflow(sample, xs, before, held)
            raise _overflow(self.owner, "a potential", step, sample, self.dtype)
        if record is not None and into is None:
            self._record(sample.potentials, t0, cur)
        if synaptic is not None:
            self._record(sample.synaptic, t0, synaptic)
        if self.readout:
            sample.last_u[self.name] = cur[-1].copy()
        if into is None:
            _released(cur, cleared=not keep)
        return self._emitted(sample, (indptr, index, value))

    def _stepwise(self, sample: Sample, x: Window) -> Window:
        """The window of a layer fed by one synapse, whose currents are neither recorded nor kept, a step at a time.

        The same numbers as the currents scattered for the whole window and
        then integrated with its silent blocks skipped (:mod:`eventsim.kernels.stepwise`),
        in a one-row buffer that stays in the cache.
        """
        op, state = self.ops[0], sample.state[self.name]
        n = prod(self.shape)
        blocks = (n + (1 << FLAG_SHIFT) - 1) >> FLAG_SHIFT
        row = _zeroed((1, n), self.dtype)
        flags = _zeroed((1, blocks), np.dtype(np.uint8), BUFFER_ELEMENTS >> FLAG_SHIFT)
        before = state.saved()  # where an overflow's step is looked for
        neuron = (self.theta, self.leak, self.soft, self.v_reset, self.strict, sample.totals[self.name],
                  sample.traces[self.name], self.gain)
        indptr, index, value, overflow, _, ops = op.stepwise(state.potential, x, row, flags, neuron)
        self._count(sample, op.name, ops)
        _released(flags, cleared=True)
        if overflow:  # the row stays out of the pool, dirty (see _zeroed)
            step = sample.window_start + self._first_overflow(sample, (x,), before, None)
            raise _overflow(self.owner, "a potential", step, sample, self.dtype)
        _released(row, cleared=True)
        return self._emitted(sample, (indptr, index, value))

    def _normalise(self, sample: Sample, cur: np.ndarray) -> Generator[np.ndarray, np.ndarray, None]:
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

    def _apply_norm(self, sample: Sample, cur: np.ndarray) -> None:
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

    def _first_overflow(self, sample: Sample, xs: tuple[Window, ...], state: NeuronState,
                        held: np.ndarray | None) -> int:
        """The first step of a window at which lif_window found a potential inf or NaN.

        The kernel tells only that the window overflowed; the window runs
        again from the ``state`` before it, in a buffer of its own that keeps
        every step's potentials, and the first step with one (or a synaptic
        current) that is not finite is the answer. Only a run about to fail
        pays for this.
        """
        steps = xs[0][0].shape[0] - 1
        reach = max(op.reach for op in self.ops)
        cur = self.currents(sample, self.ops, xs, steps, np.zeros((steps + reach, prod(self.shape)), self.dtype),
                            held)[:steps]
        if self.norm is not None:
            self._apply_norm(sample, cur)
        counts = np.zeros_like(state.potential)  # not the sample's: the run fails anyway
        synaptic = np.zeros_like(cur)
        self.integrate(state, cur, counts, counts.copy(), False, synaptic)
        return int(np.argmin((np.isfinite(cur) & np.isfinite(synaptic)).all(axis=1)))


class PassStage(Stage):
    """A synapse with no neuron after it: its currents leave as events."""

    channel_last = True

    def __init__(self, op: SynapseOp, shape, dtype: np.dtype) -> None:
        self.op, self.name, self.shape, self.dtype = op, op.name, tuple(shape), dtype
        self.owner = op.layer

    def counted_ops(self) -> list[tuple[str, str]]:
        return [(self.op.name, self.op.counter)]

    def apply(self, sample: Sample, x: Window) -> Window:
        steps = x[0].shape[0] - 1
        buf = self.currents(sample, [self.op], (x,), steps, held=sample.pending.get((self.name, "currents")))
        self.hold(sample, buf, steps)
        cur = buf[:steps]
        out = kernels.currents_to_events(cur, self.op.out3[0], sample.totals[self.name])
        _released(cur, cleared=False)
        _check_values(self.owner, sample, out, self.dtype)
        return self._emitted(sample, out)


class MaxPoolStage(Stage):
    """Max pooling on events: window maxima per step, passed on as events."""

    def __init__(self, layer: MaxPool, in_shape, shape, dtype: np.dtype) -> None:
        self.layer, self.name, self.shape, self.dtype = layer, layer.name, tuple(shape), dtype
        self.owner = layer
        self.in3, self.out3 = as3(in_shape), as3(shape)

    def counted_ops(self) -> list[tuple[str, str]]:
        return [(self.name, "pool_ops")]

    def apply(self, sample: Sample, x: Window) -> Window:
        indptr, index, value, ops = kernels.maxpool_events(
            *x, self.in3[0], self.in3[1:], self.out3[1:], self.layer.kernel_size, self.layer.stride
        )
        self._count(sample, self.name, ops)
        np.add.at(sample.totals[self.name], index, value)
        return self._emitted(sample, (indptr, index, value))


class DropoutStage(Stage):
    """Dropout with the sample's keep-mask; the identity when the run has no mask."""

    def __init__(self, layer: Dropout, shape, dtype: np.dtype) -> None:
        self.layer, self.name, self.shape, self.dtype = layer, layer.name, tuple(shape), dtype
        self.owner = layer
        self.scale = dtype.type(layer.scale)

    def apply(self, sample: Sample, x: Window) -> Window:
        keep = sample.keep.get(self.name)
        if keep is None:
            indptr, index, value = x
            out = (indptr - indptr[0], index[indptr[0] : indptr[-1]], value[indptr[0] : indptr[-1]])
        else:
            out = kernels.dropout_events(*x, keep, self.scale)
            _check_values(self.owner, sample, out, self.dtype)
        np.add.at(sample.totals[self.name], out[1], out[2])
        return self._emitted(sample, out)


class ResidualStage(Stage):
    """A residual block: the main path's stages, then the merge into one neuron layer."""

    def __init__(self, main: list[Stage], merge: NeuronStage) -> None:
        self.main, self.merge = main, merge
        self.name, self.shape, self.dtype = merge.name, merge.shape, merge.dtype

    def start(self, sample: Sample, record: frozenset) -> None:
        for stage in self.main:
            stage.start(sample, record)
        self.merge.start(sample, record)

    def run(self, sample: Sample, x: Window) -> StageRun:
        main = x
        for stage in self.main:
            main = yield from stage.run(sample, main)
        return (yield from self.merge.run(sample, main, x))


class RecurrentStage(NeuronStage):
    """A neuron layer whose spikes of step t-1 feed its input at step t (docs/semantics.md, "Recurrent connections").

    The feed-forward currents of a whole window are scattered at once; then
    :func:`eventsim.kernels.recurrent_window` steps the window one step at a
    time: the connection scatters the spikes of the step before (only the
    neurons that fired) into the step's row, and the neurons integrate that
    row. The spikes of a window's last step wait in ``Sample.pending`` for
    the next window.
    """

    counts_optional = False  # kernels.recurrent_window keeps them

    def __init__(self, ops: list[SynapseOp], block: Recurrent, shape, dtype: np.dtype, train: bool = False) -> None:
        super().__init__(ops, block.neuron, block.neuron.name, shape, dtype, train)
        self.connection = SynapseOp(block.connection, shape, shape, dtype)
        # The connection as kernels.recurrent_window takes it: a convolution's (weight, bias, hw, stride,
        # padding), no bias an empty one; a linear connection is a 1 x 1 convolution on a 1 x 1 map.
        weight, layer = self.connection.weight, block.connection
        bias = np.zeros(0, dtype) if layer.bias is None else layer.bias
        if isinstance(layer, Linear):
            self.feedback = (weight.reshape(weight.shape[0], 1, 1, weight.shape[1]), bias, (1, 1), (1, 1), (0, 0))
        else:
            self.feedback = (weight, bias, self.connection.out3[1:], layer.stride, layer.padding)

    def counted_ops(self) -> list[tuple[str, str]]:
        return super().counted_ops() + [(self.connection.name, self.connection.counter)]

    def start(self, sample: Sample, record: frozenset) -> None:
        super().start(sample, record)
        sample.pending[self.name] = (np.zeros(0, np.int64), np.zeros(0, self.dtype))  # s[0] = 0

    def run(self, sample: Sample, *xs: Window) -> StageRun:
        yield from ()  # a recurrent layer has no norm, so no batch statistic to meet on
        steps = xs[0][0].shape[0] - 1
        buf = self.currents(sample, self.ops, xs, steps, held=sample.pending.get((self.name, "currents")))
        self.hold(sample, buf, steps)
        cur = buf[:steps]
        t0 = sample.window_start
        keep = self.name in sample.potentials
        state = sample.state[self.name]
        synaptic = np.empty_like(cur) if self.name in sample.synaptic else None
        # Not recorded: no rows (kernels.recurrent_window).
        currents = np.empty_like(cur) if self.name in sample.currents else cur[:0]
        index, value = sample.pending[self.name]
        indptr, indices, values, synops, overflow_step, index, value = kernels.recurrent_window(
            state.potential, cur, self.theta, self.leak, self.soft, self.v_reset, self.strict,
            sample.totals[self.name], sample.traces[self.name], self.gain, state.fired, not keep, self.form,
            self.divisor, state.synaptic, self.syn_leak, self.syn_gain, synaptic, *self.options, *self.feedback, index,
            value, currents)
        self._count(sample, self.connection.name, synops)
        if overflow_step >= 0:  # the buffer stays out of the pool, dirty (see _zeroed)
            raise _overflow(self.owner, "a potential", t0 + overflow_step, sample, self.dtype)
        sample.pending[self.name] = (index, value)
        if self.name in sample.currents:  # I[t] with the recurrent current, as the neurons integrated it
            self._record(sample.currents, t0, currents)
        if keep:
            self._record(sample.potentials, t0, cur)
        if synaptic is not None:
            self._record(sample.synaptic, t0, synaptic)
        _released(cur, cleared=not keep)
        return self._emitted(sample, (indptr, indices, values))


class DelayStage(Stage):
    """Events leave ``d`` steps after they arrive (docs/semantics.md, "Delays").

    An event of step t lands in step t + d of its neuron: in this window,
    a later one (held in ``Sample.pending`` until then), or past T (dropped).
    Within a step, events keep the order of the steps they arrived in.
    """

    def __init__(self, layer: Delay, shape, dtype: np.dtype) -> None:
        self.layer, self.name, self.shape, self.dtype = layer, layer.name, tuple(shape), dtype
        self.owner = layer
        self.delay = layer.per_neuron(self.shape)

    def start(self, sample: Sample, record: frozenset) -> None:
        super().start(sample, record)
        sample.pending[self.name] = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, self.dtype))

    def apply(self, sample: Sample, x: Window) -> Window:
        indptr, index, value = x
        steps, t0 = indptr.shape[0] - 1, sample.window_start
        lo, hi = indptr[0], indptr[-1]
        arrived = t0 + np.repeat(np.arange(steps, dtype=np.int64), np.diff(indptr))
        held_step, held_index, held_value = sample.pending[self.name]
        # Held events first: they arrived in earlier windows.
        step = np.concatenate([held_step, arrived + self.delay[index[lo:hi]]])
        idx = np.concatenate([held_index, index[lo:hi]])
        val = np.concatenate([held_value, value[lo:hi]])
        now = step < t0 + steps
        later = ~now & (step < sample.steps)
        sample.pending[self.name] = (step[later], idx[later], val[later])
        order = np.argsort(step[now], kind="stable")
        out_step, out_index, out_value = step[now][order] - t0, idx[now][order], val[now][order]
        out_ptr = np.zeros(steps + 1, np.int64)
        np.cumsum(np.bincount(out_step, minlength=steps), out=out_ptr[1:])
        np.add.at(sample.totals[self.name], out_index, out_value)
        return self._emitted(sample, (out_ptr, out_index, out_value))


def leaves(stages: list[Stage]) -> list[Stage]:
    """Stages in run order with residual blocks opened up."""
    out: list[Stage] = []
    for stage in stages:
        if isinstance(stage, ResidualStage):
            out.extend(leaves(stage.main))
            out.append(stage.merge)
        else:
            out.append(stage)
    return out


def in_c_order(arr: np.ndarray, stage: Stage) -> np.ndarray:
    """A stage's per-neuron array (leading axes kept) with the neurons in C order of its shape."""
    if stage.channel_last:
        return to_c_order(arr, stage.shape)
    return arr.reshape(arr.shape[:-1] + stage.shape)
