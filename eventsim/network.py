"""A network of layers run event by event over T steps.

:class:`Network` holds a sequence of layers (residual blocks included), checks
that their shapes fit, names every layer, and runs a batch of input
:class:`~eventsim.events.Events` through them.

How a run proceeds. Layers are grouped into *stages* (:mod:`eventsim.stages`),
each turning one event stream into another: a synapse and the neuron layer
after it form one stage (the synapse scatters events into currents, the
neurons integrate and fire); a synapse with no neuron after it passes its
currents on as events; max pooling, dropout and delays map events to events;
a residual block runs its main path and then merges the last synapse of that
path and the skip into its neuron; a recurrent block feeds its neurons' spikes
back into their input one step later. Because no layer feeds back into an
earlier one, each stage can process a *window* of K steps before the next
stage starts (a recurrent stage steps through its window, a delay holds
events for later windows); the result is the same as stepping all layers
together, and the memory held for the streams is bounded by the window, not
by T. State is reset for every sample.

What a run records (:class:`RunResult`): always the readout, SynOps and
pooling ops per layer and events emitted per layer; on request (``record=``)
summed outputs (spike counts), leak-weighted traces, full spike rasters,
potentials, input currents and synaptic currents. Counts and traces take memory independent of T.

Input-current batch norms (:mod:`eventsim.norm`) in a training run need the
currents of the whole batch over all T steps before their neurons update: such
a run takes one window of T steps, and each sample runs as a generator that
meets the others at every normalised layer to sum the batch statistics
(:func:`eventsim.norm.in_lockstep`). Every other run has no meeting point.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod
from typing import Generator, Iterable, Iterator, Sequence

import numpy as np

from eventsim.errors import EventsError, LayerError, OptionError, check_choice
from eventsim.events import FLOAT_DTYPES, Events
from eventsim.layers import (
    Delay,
    Dropout,
    Flatten,
    Identity,
    Layer,
    MaxPool,
    Readout,
    Recurrent,
    Residual,
    SpikingAvgPool,
    Synapse,
    Weighted,
)
from eventsim.layout import as3, to_c_order
from eventsim.norm import NormStatistics, in_lockstep
from eventsim.stages import (
    WINDOW_ELEMENTS,
    DelayStage,
    DropoutStage,
    MaxPoolStage,
    NeuronStage,
    NeuronState,
    PassStage,
    RecurrentStage,
    ResidualStage,
    Sample,
    Stage,
    SynapseOp,
    Window,
    in_c_order,
    is_neuron,
    leaves,
)

#: Held while a frozen network's plan is built (Network.frozen).
_planning = threading.Lock()

RECORDS = ("counts", "traces", "spikes", "potentials", "currents", "synaptic")
#: The records that keep a value per neuron and step, O(T x neurons).
PER_STEP_RECORDS = ("potentials", "currents", "synaptic")
# =================================================================== results
@dataclass
class RunResult:
    """What :meth:`Network.run` recorded for a batch.

    Every dict is keyed by layer name. Per-sample arrays have the batch as
    their first axis and neuron arrays are in C order of the layer's shape.
    The per-step records (potentials, synaptic, currents) are views of
    arrays held channel-last, ``(batch, T, H, W, C)`` in memory, as the
    kernels compute them: indexing gives the values of the C-order shape;
    :func:`eventsim.layout.to_channel_last` gives the memory back without a
    copy.

    Attributes
    ----------
    output : ``(batch, *shape)`` array or None
        The readout ``U_L[T] / T`` when the network ends in a :class:`Readout`.
    synops : dict of (batch,) int64
        Exact synaptic operations per weighted layer (Conv2d, Linear, skip
        convolutions): each input event counts the in-bounds synapses it reaches.
    pool_ops : dict of (batch,) int64
        Operations of pooling layers and identity skips: (event, window) pairs.
    events : dict of (batch,) int64
        Events each layer emitted (spikes, for spiking layers).
    counts : dict of ``(batch, *shape)``
        Summed output event values: the spike count gamma for spiking layers,
        the dropout-scaled count after a Dropout. Recorded with "counts".
    traces : dict of ``(batch, *shape)``
        ``f = sum_k lam^(T - t_k)`` over each neuron's spike steps t_k (Lee et
        al. 2020, eq. 17); spiking layers only. Recorded with "traces".
    spikes : dict of Events
        Every event each layer emitted. Recorded with "spikes".
    potentials : dict of ``(batch, T, *shape)``
        The pre-threshold potential U at every step; neuron layers only.
        Recorded with "potentials".
    synaptic : dict of ``(batch, T, *shape)``
        The synaptic current J at every step, of the neuron layers that have
        one (docs/semantics.md, "State beyond the potential"). Recorded with
        "synaptic".
    currents : dict of ``(batch, T, *shape)``
        The input current I at every step (bias included), before the
        layer's norm and ``input_gain`` apply; neuron layers only. Recorded
        with "currents".
    masks : dict of ``(batch, *shape)`` bool
        The dropout masks used (training runs only).
    states : dict of dict of NeuronState
        By step t of ``checkpoints=``, by neuron layer name, the state the
        layer starts step t from (:class:`eventsim.stages.NeuronState`,
        arrays ``(batch, N)`` channel-last), as ``initial=`` takes it.
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
    synaptic: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    states: dict[int, dict[str, NeuronState]] = field(default_factory=dict)
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
        self._plans: dict[bool, list[Stage]] | None = None  # set by frozen()
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

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Promise that the network does not change within the block, so that its runs share one plan.

        A run plans its stages first: each layer's constants rounded to the
        run's dtype and checked, the weights laid out as the scatter kernels
        read them (fc1 of Lee's LeNet: a 2.6 MB transposed copy) and checked
        finite. Within the block the runs of any thread take the plan the
        first one built (one per setting of ``train``): a training step runs
        its forward and backward within it, and ``bptt`` in segments runs
        the network again for every segment of every sample. Nested blocks
        share the outermost one's plans. Changing a layer, weight or
        parameter within the block (in place or by assigning a new array)
        leaves the runs computing with the old one.
        """
        if self._plans is not None:
            yield
            return
        self._plans = {}
        try:
            yield
        finally:
            self._plans = None

    def _stages(self, train: bool) -> list[Stage]:
        """The plan of a run: the frozen network's (:meth:`frozen`), built once, or a new one."""
        plans = self._plans
        if plans is None:
            return self._plan(self.layers, train)
        with _planning:  # the first sample builds it; the others wait for it
            if train not in plans:
                plans[train] = self._plan(self.layers, train)
            return plans[train]

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
    def _plan(self, layers: list[Layer], train: bool) -> list[Stage]:
        dtype = self.dtype
        stages: list[Stage] = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            in_shape, out_shape = self.shapes[layer.name]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, Flatten):
                pass  # flat indices are C order already: nothing to do on events
            elif isinstance(layer, MaxPool):
                stages.append(MaxPoolStage(layer, in_shape, out_shape, dtype))
            elif isinstance(layer, Synapse) and nxt is not None and is_neuron(nxt):
                op = SynapseOp(layer, in_shape, out_shape, dtype)
                stages.append(self._neuron_stage([op], nxt, out_shape, train))
                i += 1
            elif isinstance(layer, Synapse):
                stages.append(PassStage(SynapseOp(layer, in_shape, out_shape, dtype), out_shape, dtype))
            elif is_neuron(layer):
                op = SynapseOp(None, in_shape, out_shape, dtype)
                stages.append(self._neuron_stage([op], layer, out_shape, train))
            elif isinstance(layer, Delay):
                stages.append(DelayStage(layer, out_shape, dtype))
            elif isinstance(layer, SpikingAvgPool):
                op = SynapseOp(layer.pool, in_shape, out_shape, dtype, name=layer.name)
                stages.append(NeuronStage([op], layer.neuron, layer.name, out_shape, dtype, owner=layer))
            elif isinstance(layer, Dropout):
                stages.append(DropoutStage(layer, out_shape, dtype))
            elif isinstance(layer, Residual):
                last = layer.main[-1]
                last_in, last_out = self.shapes[last.name]
                ops = [SynapseOp(last, last_in, last_out, dtype), SynapseOp(layer.skip, *self.shapes[layer.skip.name], dtype)]
                merge = NeuronStage(ops, layer.neuron, layer.neuron.name, last_out, dtype, train)
                stages.append(ResidualStage(self._plan(layer.main[:-1], train), merge))
            else:
                raise LayerError(layer, "is not a layer type the network can run")
            i += 1
        return stages

    def _neuron_stage(self, ops: list[SynapseOp], layer: Layer, shape: tuple[int, ...], train: bool) -> NeuronStage:
        """The stage of a neuron layer (or a recurrent block) fed by ``ops``."""
        if isinstance(layer, Recurrent):
            return RecurrentStage(ops, layer, shape, self.dtype, train)
        return NeuronStage(ops, layer, layer.name, shape, self.dtype, train)

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
        initial: dict[str, NeuronState] | None = None,
        checkpoints: Iterable[int] = (),
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
        initial : dict, optional
            The state every neuron layer starts from, by layer name, as
            ``RunResult.states`` hands it back: to continue an earlier run
            from one of its checkpoints, given the input from that step on.
            Steps count from 0 in this run (the readout divides by this
            run's steps; counts and traces cover this run's steps). Only for
            networks whose state is their neurons' (no Delay, no recurrent
            block, no synaptic delays).
        checkpoints : iterable of int
            Steps ``0 <= t < T`` at whose start the state of every neuron
            layer is handed back (``RunResult.states[t]``). The potentials
            and spikes are those of a run without checkpoints.
        """
        record = frozenset(record)
        for r in record:
            check_choice("record", r, RECORDS)
        self._check_input(events)
        steps, batch = events.steps, events.batch
        stages = self._stages(train)
        keep = self._dropout_masks(stages, batch, train, rng, masks)
        batch_norms = [s.name for s in leaves(stages) if isinstance(s, NeuronStage) and s.batch_norm]
        if batch_norms:
            window = steps  # the batch statistics need every step of the currents at once
        elif window is None:
            largest = max(prod(shape) for _, shape in self.shapes.values())
            window = max(1, min(steps, WINDOW_ELEMENTS // largest))
        elif int(window) < 1:
            raise OptionError(f"window must be >= 1 step, got {window!r}")
        window = int(window)
        checkpoints = self._checkpoints(stages, checkpoints, steps)
        initial = self._initial(stages, initial, batch)

        # The T-sized records are allocated once; each sample fills its slice,
        # in the stages' channel-last order (a plain copy of each window):
        # the result shows them in C order of the shape (a view, no copy).
        # The potentials' rows start as zeros: a neuron stage scatters its
        # currents into them and integrates them there (NeuronStage.run).
        per_step = {
            what: {
                s.name: (np.zeros if what == "potentials" else np.empty)((batch, steps, prod(s.shape)), self.dtype)
                for s in leaves(stages) if isinstance(s, NeuronStage) and (what != "synaptic" or s.synaptic)
            }
            for what in PER_STEP_RECORDS if what in record
        }
        # The backward pass through a norm reads the raw currents of its layer.
        norm_currents = {name: per_step.get("currents", {}).get(name) for name in batch_norms}
        for name, arr in norm_currents.items():
            if arr is None:
                norm_currents[name] = np.empty((batch, steps, prod(self.shapes[name][1])), self.dtype)
        # So are the per-neuron records, filled in C order by each sample's
        # own task: the layout change runs in parallel, not after the batch.
        per_neuron = {
            key: {
                s.name: np.empty((batch,) + s.shape, self.dtype)
                for s in leaves(stages) if key == "totals" or isinstance(s, NeuronStage)
            }
            for key, what in (("totals", "counts"), ("traces", "traces")) if what in record
        }
        # Samples are independent but for the batch statistics of norms: they
        # run in parallel (eventsim.threads), meeting where a norm needs the
        # batch's sums, and every per-sample result lands in its own slot.
        # The threads take the samples with the most input events first.
        samples = in_lockstep(
            [self._run_sample(stages, events, b, record, window, per_step, per_neuron, keep, norm_currents,
                              initial, checkpoints)
             for b in range(batch)],
            events.busiest_first(),
        )
        result = self._collect(stages, samples, record, keep, steps)
        for name, currents in norm_currents.items():
            mean, var, count = samples[0].norm_stats[name]
            stats = next(s.norm.stats for s in leaves(stages) if s.name == name)
            result.norm_stats[name] = NormStatistics(stats, mean, var, count,
                                                     to_c_order(currents, self.shapes[name][1]))
        for what, arrays in per_step.items():
            setattr(result, what, {name: to_c_order(arr, self.shapes[name][1]) for name, arr in arrays.items()})
        result.counts = per_neuron.get("totals", {})
        result.traces = per_neuron.get("traces", {})
        result.states = {t: {name: _stacked([smp.checkpoints[t][name] for smp in samples])
                             for name in samples[0].checkpoints[t]} for t in checkpoints}
        return result

    def _checkpoints(self, stages: list[Stage], checkpoints: Iterable[int], steps: int) -> list[int]:
        """The steps of ``checkpoints=``, sorted, checked inside ``[0, T)`` and for a network whose state is its neurons'."""
        chosen = sorted({int(t) for t in checkpoints})
        if chosen and not 0 <= chosen[0] <= chosen[-1] < steps:
            raise OptionError(f"checkpoints must be steps in [0, {steps}), got {chosen[0]} to {chosen[-1]}")
        if chosen:
            self._state_is_neurons(stages, "checkpoints")
        return chosen

    def _initial(self, stages: list[Stage], initial: dict[str, NeuronState] | None, batch: int) -> dict | None:
        """``initial=`` checked against the neuron layers: a state of the right shapes for each, and no other."""
        if initial is None:
            return None
        self._state_is_neurons(stages, "initial")
        neurons = {s.name: s for s in leaves(stages) if isinstance(s, NeuronStage)}
        if set(initial) != set(neurons):
            raise OptionError(f"initial must give the state of every neuron layer {sorted(neurons)}, "
                              f"got {sorted(initial)}")
        for name, state in initial.items():
            stage, n = neurons[name], prod(neurons[name].shape)
            for what, dtype, needed in (("potential", self.dtype, True), ("synaptic", self.dtype, stage.synaptic),
                                        ("fired", np.dtype(bool), stage.delayed)):
                a = getattr(state, what, None) if isinstance(state, NeuronState) else None
                if needed and (a is None or a.shape != (batch, n) or a.dtype != dtype):
                    raise OptionError(f"initial[{name!r}].{what} must be a {dtype} array of shape {(batch, n)} "
                                      "(RunResult.states of a run with the same batch)")
        return initial

    @staticmethod
    def _state_is_neurons(stages: list[Stage], option: str) -> None:
        """OptionError for ``option`` where a stage keeps state beyond its neurons (held events or currents)."""
        for stage in leaves(stages):
            if isinstance(stage, (DelayStage, RecurrentStage)) or any(
                    op.reach for op in getattr(stage, "ops", ())):
                raise OptionError(f"{option} covers networks whose state is their neurons' potentials; "
                                  f"{stage.name} also holds events or currents for later steps")

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

    def dropout_masks(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The dropout keep masks a training run of ``batch`` samples draws from ``rng``, by layer name.

        Exactly the draws of :meth:`run` (for each Dropout layer in network
        order, ``keep = rng.random((batch, neurons)) >= p``). Drawn once for
        a batch, their rows can go with the chunks of the batch to separate
        runs (``masks=``), which then see what one run of the batch would.
        """
        return self._dropout_masks(self._plan(self.layers, True), batch, True, rng, None)

    @staticmethod
    def _dropout_masks(stages, batch, train, rng, masks) -> dict[str, np.ndarray]:
        if masks and not train:
            raise OptionError("dropout masks apply to training runs only (train=True); dropout is off at inference")
        masks = masks or {}
        dropouts = [s for s in leaves(stages) if isinstance(s, DropoutStage)]
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
                    norm_currents, initial=None, checkpoints=()) -> Generator[np.ndarray, np.ndarray, Sample]:
        steps = events.steps
        sample = Sample(batch=events.batch, number=b, steps=steps)
        for what, arrays in per_step.items():
            setattr(sample, what, {name: arr[b] for name, arr in arrays.items()})
        sample.currents.update({name: arr[b] for name, arr in norm_currents.items()})
        sample.keep = {name: mask[b].reshape(-1) for name, mask in keep.items()}
        for stage in stages:
            stage.start(sample, record)
        for name, state in (initial or {}).items():
            sample.state[name] = _copied(state, b)
        rows = events.sample_rows(b)
        # A window ends at every checkpoint, whose state is then copied.
        starts = sorted(set(range(0, steps, window)) | set(checkpoints))
        for t0, t1 in zip(starts, starts[1:] + [steps]):
            if t0 in checkpoints:
                sample.checkpoints[t0] = {name: _copied(state) for name, state in sample.state.items()}
            sample.window_start = t0
            x = (rows[t0 : t1 + 1], events.index, events.value)
            for stage in stages:
                x = yield from stage.run(sample, x)
        for key, arrays in per_neuron.items():
            for stage in leaves(stages):
                if stage.name in arrays:
                    values = getattr(sample, key)[stage.name]
                    # Spike counts and traces are at most T; summed values passed on may overflow.
                    if not np.isfinite(values).all():
                        raise LayerError(stage.owner, f"the summed output values (counts) of sample {b} are not "
                                                      f"finite: their sum over the {steps} steps overflows "
                                                      f"{self.dtype}; make the weights or inputs smaller, "
                                                      "or run the network in float64")
                    arrays[stage.name][b] = in_c_order(values, stage)
        return sample

    def _collect(self, stages, samples: list[Sample], record, keep, steps) -> RunResult:
        result = RunResult(
            batch=len(samples), steps=steps, output=None, synops={}, pool_ops={}, events={}, masks=keep, recorded=record
        )
        for stage in leaves(stages):
            name = stage.name
            for op_name, counter in stage.counted_ops():
                getattr(result, counter)[op_name] = np.array([smp.ops.get(op_name, 0) for smp in samples], np.int64)
            result.events[name] = np.array([smp.n_events[name] for smp in samples], np.int64)
            if "spikes" in record:
                result.spikes[name] = _join_windows([smp.spikes[name] for smp in samples], steps, stage.shape, stage.dtype)
            if isinstance(stage, NeuronStage) and stage.readout:
                last_u = in_c_order(np.stack([smp.last_u[name] for smp in samples]), stage)
                result.output = last_u / stage.dtype.type(steps)
        return result

def _copied(state: NeuronState, row: int | None = None) -> NeuronState:
    """A copy of ``state``, or of its row ``row`` (of a batch's state)."""
    return NeuronState(*(None if a is None else (a if row is None else a[row]).copy()
                         for a in (state.potential, state.synaptic, state.fired)))


def _stacked(states: list[NeuronState]) -> NeuronState:
    """The states of the samples of a batch as one state of ``(batch, N)`` arrays."""
    return NeuronState(*(None if getattr(states[0], what) is None else np.stack([getattr(s, what) for s in states])
                         for what in ("potential", "synaptic", "fired")))


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
