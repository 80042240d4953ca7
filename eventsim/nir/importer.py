"""NIR graph -> eventsim network (docs/nir.md).

Each node becomes the eventsim layer that computes the same values under
NIR's semantics and forward Euler of step ``dt`` (:mod:`eventsim.nir.euler`),
named after the node (:mod:`eventsim.nir.neurons` reads the neuron nodes,
:mod:`eventsim.nir.delays` the Delay nodes). A recurrent loop ``neuron ->
w_rec -> neuron`` becomes a :class:`~eventsim.layers.Recurrent` block
(:mod:`eventsim.nir.structure`), a nested subgraph its inner nodes
(:mod:`eventsim.nir.subgraphs`). The options eventsim writes into a node's
metadata (:mod:`eventsim.nir.options`) are honoured, so that a network
eventsim wrote comes back the same; without them a node means what NIR says
it means (hard reset to ``v_reset``, firing on ``v > v_threshold``, the
reset at once, starting at rest). Whatever eventsim cannot compute exactly
raises :class:`~eventsim.errors.NIRError` naming the node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from eventsim.errors import LayerError, NIRError, OptionError
from eventsim.events import FLOAT_DTYPES
from eventsim.layers import (
    IF,
    LIF,
    AvgPool,
    Conv2d,
    Delay,
    Dropout,
    Flatten,
    Identity,
    Layer,
    Linear,
    Readout,
    Recurrent,
    Residual,
    SpikingAvgPool,
    SumPool,
)
from eventsim.limits import check_size
from eventsim.network import Network
from eventsim.nir import fields
from eventsim.nir.delays import delay_steps
from eventsim.nir.extra import require_nir
from eventsim.nir.fields import Field
from eventsim.nir.neurons import LAYERS, NeuronOptions, NeuronReader
from eventsim.nir.options import decode
from eventsim.nir.structure import Fork, Structure
from eventsim.nir.subgraphs import flatten

#: NIR node types with no eventsim counterpart, and why.
UNSUPPORTED = {
    "Threshold": "eventsim has no stateless threshold layer",
    "Conv1d": "eventsim convolves 2-D maps only",
}


@dataclass
class Imported:
    """A network read from a NIR graph, with the layer behind each node.

    ``node_layers[name]`` is the layer that computes node ``name``'s output
    (the pool of a SpikingAvgPool for its AvgPool2d node); the Input and
    Output nodes have none. ``structure`` holds the graph's edges in order.
    """

    network: Network
    node_layers: dict[str, Layer]
    structure: Structure


def from_nir(graph_or_path: Any, *, dt: float = 1.0, dtype: object = np.float32) -> Network:
    """The eventsim network of a NIR graph, or of a NIR file given by its path.

    Parameters
    ----------
    graph_or_path : nir.NIRGraph, str or path-like
    dt : float
        Step length: LIF and LI nodes get lam = 1 - dt/tau and input gain
        g = dt r / tau, IF and I nodes lam = 1 and g = dt r; CubaLIF and
        CubaLI nodes also the synaptic leak 1 - dt/tau_syn and gain
        dt w_in / tau_syn (forward Euler, docs/nir.md); a Delay node
        delay / dt steps. snnTorch's ``export_to_nir`` writes its graphs for
        ``dt = 1e-4``.
    dtype : float32 (default) or float64
        The network's dtype; weights are converted to it.

    Raises
    ------
    NIRError
        A node, edge or parameter eventsim cannot run exactly, naming the node;
        a file that is not a NIR graph, naming the file.
    """
    return import_graph(graph_or_path, dt=dt, dtype=dtype).network


def import_graph(graph_or_path: Any, *, dt: float = 1.0, dtype: object = np.float32) -> Imported:
    """:func:`from_nir` with the layer behind every node (what ``eventsim run`` needs)."""
    nir = require_nir()
    if not (np.isfinite(dt) and dt > 0):
        raise NIRError(f"dt must be a positive finite step length, got {dt!r}")
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise NIRError(f"dtype must be float32 or float64, got {dtype}")
    if not isinstance(graph_or_path, (str, os.PathLike)):
        return _import(nir, graph_or_path, float(dt), dtype)
    from eventsim.nir.files import in_file, read_graph

    graph = read_graph(graph_or_path)
    try:
        return _import(nir, graph, float(dt), dtype)
    except NIRError as exc:
        raise in_file(graph_or_path, exc) from None


def _import(nir: Any, graph: Any, dt: float, dtype: np.dtype) -> Imported:
    structure = Structure(nir, flatten(nir, graph))
    reader = _Reader(structure, dt, dtype)
    input_shape = reader.input_shape()
    layers, _ = reader.layers(structure.sequence(), input_shape)
    try:
        network = Network(layers, input_shape, dtype=dtype)
    except LayerError as exc:
        name = getattr(exc.layer, "name", None)
        raise NIRError(exc.problem, node=name, kind=type(exc.layer).__name__) from None
    reader.check_output(network.output_shape)
    _check_sizes(network)
    return Imported(network, reader.node_layers, structure)


def _check_sizes(network: Network) -> None:
    """Refuse a graph whose layers' outputs are too large to hold, before a run allocates them.

    A few bytes of shapes, strides and padding declare the layer sizes: one
    sample of every layer's output, per step, must fit the allocation limit.
    """
    for name, (_, out) in network.shapes.items():
        nbytes = int(np.prod(out, dtype=object)) * network.dtype.itemsize
        check_size(nbytes, f"NIR node {name!r}: one step of one sample of its output {tuple(out)}", NIRError)


def _field(name: str, node: Any, field: str) -> Any:
    if not hasattr(node, field):
        raise NIRError(f"has no field {field!r}", node=name, kind=type(node).__name__)
    return getattr(node, field)


def _where(name: str, node: Any, field: str) -> Field:
    return Field(name, type(node).__name__, field)


def _array(name: str, node: Any, field: str, dtype: object = np.float64) -> np.ndarray:
    return fields.numbers(_field(name, node, field), _where(name, node, field), dtype,
                          allow_inf=field == "v_threshold")  # an infinite threshold: a neuron that never fires


def _pair(name: str, node: Any, field: str, low: int = 0) -> tuple[int, int]:
    return fields.pair(_field(name, node, field), _where(name, node, field), low=low)


def _int(name: str, node: Any, field: str, low: int = -fields.LARGEST_INT) -> int:
    return fields.integer(_field(name, node, field), _where(name, node, field), low=low)


def _declared_shape(name: str, node: Any, key: str) -> tuple[int, ...] | None:
    """The shape node ``name`` declares as its ``key`` ("input" or "output") type, or None."""
    types = getattr(node, f"{key}_type", None)
    declared = types.get(key) if isinstance(types, dict) else None
    if declared is None:
        return None
    return fields.shape(declared, _where(name, node, f"{key}_type"))


class _Reader:
    """Turns the nodes of a checked graph into layers, tracking shapes."""

    def __init__(self, structure: Structure, dt: float, dtype: np.dtype) -> None:
        self.structure, self.dt, self.dtype = structure, dt, dtype
        self.node_layers: dict[str, Layer] = {}

    def error(self, name: str, problem: str) -> NIRError:
        return NIRError(problem, node=name, kind=self.structure.kind(name))

    def input_shape(self) -> tuple[int, ...]:
        name = self.structure.input
        shape = _declared_shape(name, self.structure.nodes[name], "input")
        if shape is None:
            raise self.error(name, "declares no input shape")
        if len(shape) not in (1, 3):
            raise self.error(name, f"eventsim takes (C, H, W) or (N,) samples, the graph's input shape is {shape}")
        return shape

    def check_output(self, shape: tuple[int, ...]) -> None:
        self._declared(self.structure.output, "output", shape)

    def _declared(self, name: str, key: str, shape: tuple[int, ...]) -> None:
        """Compare a node's declared type (where it has one) with the shape eventsim computes."""
        declared = _declared_shape(name, self.structure.nodes[name], key)
        if declared is not None and declared != tuple(shape):
            raise self.error(name, f"declares {key} shape {declared} but receives {tuple(shape)}")

    # ------------------------------------------------------------ sequences
    def layers(self, items: list[str | Fork], shape: tuple[int, ...]) -> tuple[list[Layer], tuple[int, ...]]:
        """The layers of ``items`` fed with ``shape``, and their output shape."""
        layers: list[Layer] = []
        in_shapes: list[tuple[int, ...]] = []
        i = 0
        while i < len(items):
            if isinstance(items[i], Fork):
                layer, out = self.residual(items[i], items[i + 1], shape)
                i += 2
            else:
                name = items[i]
                layer = self.node(name, shape, layers)
                i += 1
                if isinstance(layer, SpikingAvgPool):  # it takes in the AvgPool2d node before it
                    layers.pop()
                    shape = in_shapes.pop()
                out = self.shape_after(layer, shape)
                if name in self.structure.loops:
                    layer = self.recurrent(name, layer, out)
            layers.append(layer)
            in_shapes.append(shape)
            shape = out
        return layers, shape

    def shape_after(self, layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
        try:
            out = tuple(layer.output_shape(shape))
        except LayerError as exc:
            raise self.error(layer.name, exc.problem) from None
        self._declared(layer.name, "output", out)
        return out

    def recurrent(self, name: str, neuron: Layer, shape: tuple[int, ...]) -> Recurrent:
        """The recurrent block of neuron node ``name`` (output ``shape``) and its loop's connection node.

        NIR sums the connection's output into the neuron's input; eventsim's
        block adds it one step later (docs/semantics.md, "Recurrent
        connections"), the discrete form of the loop. The block is named by
        eventsim's metadata, else by the prefix the two node names share
        (snnTorch's ``lif1.lif`` and ``lif1.w_rec`` make ``lif1``).
        """
        loop = self.structure.loops[name]
        connection = self.node(loop, shape, [])
        back = self.shape_after(connection, shape)
        if back != tuple(shape):
            raise self.error(loop, f"carries the spikes of {name!r} (shape {tuple(shape)}) back as shape {back}; a "
                             "recurrent connection must give the neurons' shape back")
        try:
            block = Recurrent(neuron, connection)
        except LayerError as exc:
            raise self.error(name, f"closes a recurrent loop through {loop!r}: {exc.problem}") from None
        block.name = decode(name, self.structure.nodes[name]).get("block", self.block_name(name, loop))
        return block

    def block_name(self, neuron: str, connection: str) -> str | None:
        """The dotted prefix both node names share, unless a node has that name; None lets the network name it."""
        prefix = neuron.rpartition(".")[0]
        if prefix and prefix == connection.rpartition(".")[0] and prefix not in self.structure.nodes:
            return prefix
        return None

    def residual(self, fork: Fork, merge: str, shape: tuple[int, ...]) -> tuple[Residual, tuple[int, ...]]:
        if merge in self.structure.loops:
            raise self.error(merge, f"closes a residual block and a recurrent loop (through "
                             f"{self.structure.loops[merge]!r}); eventsim's recurrent block has one input")
        options = decode(merge, self.structure.nodes[merge])
        first, second = fork.branches
        if "skip" in options:
            wanted = [options["skip"]] if options["skip"] else []
            if wanted not in (first, second):
                raise self.error(merge, f"its metadata names the skip {options['skip']!r}, which is neither branch")
            skip_is_second = wanted == second
        else:  # the shorter branch; NIR sums the two inputs, so either choice computes the same
            skip_is_second = len(second) <= len(first)
        main_nodes, skip_nodes = (first, second) if skip_is_second else (second, first)
        if not main_nodes or len(skip_nodes) > 1:
            raise self.error(merge, f"closes two paths from {fork.source!r} that are not a residual block (a main "
                             "path and a skip of at most one node)")
        main, main_shape = self.layers(list(main_nodes), shape)
        skip: Layer = Identity()
        if skip_nodes:
            skip = self.node(skip_nodes[0], shape, [])
            if isinstance(skip, (SumPool, AvgPool)) and skip.kernel_size == (1, 1) and len(set(skip.stride)) == 1:
                skip_name, skip = skip.name, Identity(skip.stride[0])  # a 1 x 1 pool passes its input on, strided
                skip.name = skip_name
                self.node_layers[skip_name] = skip
            self.shape_after(skip, shape)
        neuron = self.node(merge, main_shape, main)
        if not isinstance(neuron, LIF) or isinstance(neuron, Readout):
            raise self.error(merge, "closes a residual block, so it must be a spiking LIF or IF neuron")
        try:
            block = Residual(main, neuron, skip=skip)
        except LayerError as exc:
            raise self.error(merge, f"cannot close a residual block: {exc.problem}") from None
        block.name = options.get("block")
        return block, self.shape_after(neuron, main_shape)

    # ----------------------------------------------------------------- nodes
    def node(self, name: str, shape: tuple[int, ...], before: list[Layer]) -> Layer:
        """The layer of node ``name`` whose input has ``shape``; ``before``: the layers already read."""
        node = self.structure.nodes[name]
        kind = type(node).__name__
        if kind in UNSUPPORTED:
            raise self.error(name, f"is not supported: {UNSUPPORTED[kind]}")
        self._declared(name, "input", shape)
        options = decode(name, node)
        read = {
            "Conv2d": self.conv, "Linear": self.linear, "Affine": self.linear, "SumPool2d": self.pool,
            "AvgPool2d": self.pool, "Flatten": self.flatten, "Scale": self.scale, "Delay": self.delay,
            **{neuron: self.neuron for neuron in LAYERS},
        }.get(kind)
        if read is None:
            raise self.error(name, f"node type {kind} has no eventsim layer")
        try:
            layer = read(name, node, shape, options, before)
        except LayerError as exc:
            raise self.error(name, exc.problem) from None
        except OptionError as exc:  # an option eventsim's metadata gave the layer
            raise self.error(name, str(exc)) from None
        layer.name = name  # NIR names may hold '.', e.g. a residual block's "res1.conv1"
        self.node_layers[name] = layer
        if isinstance(layer, SpikingAvgPool):
            self.node_layers[self.structure.preds[name][0]] = layer.pool
        return layer

    def conv(self, name, node, shape, options, before) -> Conv2d:
        weight = _array(name, node, "weight", self.dtype)
        if weight.ndim != 4:
            raise self.error(name, f"weight must be (out, in, kh, kw), got shape {weight.shape}")
        if len(shape) != 3 or shape[0] != weight.shape[1]:
            raise self.error(name, f"expects {weight.shape[1]} input channels (C, H, W), receives shape {shape}")
        if _int(name, node, "groups", low=1) != 1:
            raise self.error(name, "grouped convolutions are not supported (groups must be 1)")
        if _pair(name, node, "dilation", low=1) != (1, 1):
            raise self.error(name, "dilated convolutions are not supported (dilation must be 1)")
        kh, kw = weight.shape[2:]
        stride = _pair(name, node, "stride", low=1)
        padding = _field(name, node, "padding")
        if isinstance(padding, (bytes, str)):
            padding = fields.text(padding, _where(name, node, "padding"))
            if padding == "valid":
                padding = (0, 0)
            elif padding == "same" and stride == (1, 1) and kh % 2 == 1 and kw % 2 == 1:
                padding = (kh // 2, kw // 2)
            else:
                raise self.error(name, f"padding {padding!r} is supported as 'valid', or 'same' with stride 1 and "
                                 "odd kernels")
        else:
            padding = _pair(name, node, "padding")
        bias = _array(name, node, "bias", self.dtype).reshape(-1)
        if bias.shape != (weight.shape[0],):
            raise self.error(name, f"bias must have {weight.shape[0]} entries, got shape {bias.shape}")
        keep_bias = options.get("bias", bool(np.any(bias != 0)))
        return Conv2d(weight.shape[1], weight.shape[0], (kh, kw), stride=stride, padding=padding, weight=weight,
                      bias=bias if keep_bias else None)

    def linear(self, name, node, shape, options, before) -> Linear:
        weight = _array(name, node, "weight", self.dtype)
        if weight.ndim != 2:
            raise self.error(name, f"weight must be (out, in), got shape {weight.shape}")
        if shape != (weight.shape[1],):
            raise self.error(name, f"expects a flat input of {weight.shape[1]} features, receives shape {shape}")
        bias = None
        if type(node).__name__ == "Affine":
            bias = _array(name, node, "bias", self.dtype).reshape(-1)
            if bias.shape != (weight.shape[0],):
                raise self.error(name, f"bias must have {weight.shape[0]} entries, got shape {bias.shape}")
        return Linear(weight.shape[1], weight.shape[0], weight=weight, bias=bias)

    def pool(self, name, node, shape, options, before) -> Layer:
        if _pair(name, node, "padding") != (0, 0):
            raise self.error(name, "padded pooling is not supported (padding must be 0)")
        kernel, stride = _pair(name, node, "kernel_size", low=1), _pair(name, node, "stride", low=1)
        if options.get("layer") == "Identity":
            if kernel != (1, 1) or stride[0] != stride[1]:
                raise self.error(name, "an Identity skip is a 1 x 1 sum pool with equal strides")
            return Identity(stride[0])
        return (AvgPool if type(node).__name__ == "AvgPool2d" else SumPool)(kernel, stride=stride)

    def flatten(self, name, node, shape, options, before) -> Flatten:
        start, end = _int(name, node, "start_dim"), _int(name, node, "end_dim")
        if start % len(shape) != 0 or end % len(shape) != len(shape) - 1:
            raise self.error(name, f"flattens dims {start}..{end} of a {shape} sample; eventsim flattens whole "
                             "samples (start_dim 0, end_dim -1)")
        return Flatten()

    def scale(self, name, node, shape, options, before) -> Dropout:
        scale = _array(name, node, "scale")
        if np.any(scale != 1):
            raise self.error(name, "eventsim has no scaling layer; only an all-ones Scale (dropout at inference, "
                             "as eventsim writes it) is read")
        return Dropout(float(options.get("p", 0.0)))

    def neuron(self, name, node, shape, options, before) -> Layer:
        read = NeuronReader(name, node, shape, options, self.dt, self.dtype).options()
        if read.layer == "Readout":
            return Readout(leak=read.leak, input_gain=read.input_gain, arithmetic=read.arithmetic, **read.state)
        if read.layer == "SpikingAvgPool":
            return self.spiking_pool(name, read, options, before)
        if read.layer == "IF":
            if "v_rest" in read.state:
                raise self.error(name, "metadata names an IF layer, which has no rest potential, but gives one")
            return IF(read.threshold, v_reset=read.v_reset, input_gain=read.input_gain, **read.flags, **read.state)
        return LIF(read.threshold, leak=read.leak, v_reset=read.v_reset, input_gain=read.input_gain,
                   arithmetic=read.arithmetic, **read.flags, **read.state)

    def spiking_pool(self, name: str, read: NeuronOptions, options: dict, before: list[Layer]) -> SpikingAvgPool:
        pool = before[-1] if before else None
        source = self.structure.preds[name][0]
        if not isinstance(pool, AvgPool) or pool.name != source:
            raise self.error(name, "metadata names a SpikingAvgPool, but the node is not fed by an AvgPool2d node")
        if "threshold_ratio" not in options:
            raise self.error(name, "metadata names a SpikingAvgPool but gives no threshold_ratio")
        layer = SpikingAvgPool(pool.kernel_size, stride=pool.stride, threshold_ratio=options["threshold_ratio"])
        expected = layer.neuron
        if (read.leak, read.input_gain, read.v_reset) != (1.0, 1.0, 0.0) or read.state \
                or read.flags != {"reset": "hard", "strict": True, "reset_delayed": False} \
                or not np.all(read.threshold == expected.threshold):
            raise self.error(name, "metadata names a SpikingAvgPool, but the neuron is not its IF neuron "
                             f"(threshold {expected.threshold}, strict, hard reset to 0)")
        return layer

    def delay(self, name, node, shape, options, before) -> Delay:
        seconds = _array(name, node, "delay")
        try:
            seconds = np.broadcast_to(seconds, shape)
        except ValueError:
            raise self.error(name, f"field 'delay' has shape {seconds.shape}, which does not fit the node's input "
                             f"shape {shape}") from None
        return Delay(delay_steps(name, seconds, self.dt, options.get("delay_form")))
