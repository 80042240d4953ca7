"""Backward through the layers of a network, shared by every gradient rule.

docs/semantics.md, "Gradient rules", "Layer by layer". A backward pass works on
*frames*: a frame is one step of one sample for the per-step rules (``bptt``,
``lee2020-code``) and the totals of one sample over all T steps for
``lee2020``. The input of every layer in every frame is an event stream the
forward pass recorded (spikes per step, or summed counts), so weight gradients
are computed event by event, the transpose of the forward scatter.

Gradients travel backward as dense ``(K, P*C)`` channel-last arrays, one row
per frame, the layout of the forward kernels' current buffers. Each layer
turns the gradient with respect to its output into the gradient with respect
to its input; neuron layers delegate to the rule (``NeuronBackward``), which is
the only thing the rules differ in.

A neuron layer with an input-current norm (:mod:`eventsim.norm`) turns the
rule's ``D = dL/dI'`` into ``dL/dI`` through the batch statistics, which needs
batch-wide sums of D in the middle of every sample's backward: a backward
pass is therefore a generator that yields its partial sums there and receives
the batch totals (:func:`eventsim.norm.in_lockstep`).
"""

from __future__ import annotations

import threading
import weakref
from math import prod
from dataclasses import dataclass, field
from typing import Callable, Generator, Hashable, Protocol

import numpy as np

from eventsim import kernels
from eventsim.errors import LayerError
from eventsim.events import Events
from eventsim.layers import (
    LIF,
    AvgPool,
    Conv2d,
    Delay,
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
from eventsim.layout import as3, to_channel_last
from eventsim.learning.chunks import tree_sum_rows
from eventsim.network import Network
from eventsim.norm import NormStatistics, channel_sums, normed_layers
from eventsim.threads import ordered_map

#: A backward pass: yields partial sums of batch statistics, receives their batch totals.
Pass = Generator[np.ndarray, np.ndarray, "np.ndarray | None"]


_buffers = threading.local()


def scratch(owner: Network, key: Hashable, shape: tuple[int, ...], dtype: np.dtype, *, zeroed: bool = False) -> np.ndarray:
    """A buffer of the calling thread, reused by the backward of one sample after another.

    The per-step rules move ``(T, neurons)`` arrays from layer to layer,
    megabytes each; fresh ones would fault their pages in again for every
    sample, and the page faults and unmappings of two threads serialise them
    (bptt on Lee's N-MNIST LeNet at T = 100: 2 threads no faster than 1
    without this, 1.8x with it). ``key`` names the array's role in one
    sample's backward (layer and purpose), so two arrays alive at once never
    share a buffer (a layer's id, where layers inside a composite have no
    name); a sample's arrays are done with when its backward returns
    (what survives, the parameter gradients, lives elsewhere). A thread keeps
    the buffers of one ``owner`` network at a time; a smaller array of a
    role is the start of its larger buffer (the shorter segment of a
    backward in segments does not replace it). The contents are undefined
    unless ``zeroed``.
    """
    pool = _buffers.__dict__.setdefault("pool", {})
    if pool.get("owner") != id(owner):  # another network's buffers would only take memory
        pool.clear()
        pool["owner"] = id(owner)
    buf, size = pool.get(key), prod(shape)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = pool[key] = np.empty(size, dtype)
    buf = buf[:size].reshape(shape)
    if zeroed:
        buf.fill(0)
    return buf


#: Accumulators no backward call holds, by network, kept for the next calls.
_spares: "weakref.WeakKeyDictionary[Network, list[Accumulators]]" = weakref.WeakKeyDictionary()

#: Elements of one range of :meth:`Accumulators.summed` (256 KiB of float32).
SUM_RANGE = 1 << 16


def accumulator_shapes(network: Network) -> dict[str, tuple[int, ...]]:
    """The layout of each parameter's gradient accumulator, by parameter key, in network order.

    The weights as the weight-gradient kernels read them, the parameter's
    first axis last: conv ``(C, kh, kw, O)``, linear ``(Ni, No)``; biases and
    norm scales and shifts as they are.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in network.walk():
        if isinstance(layer, Conv2d):
            o, c, kh, kw = layer.weight_shape
            shapes[f"{layer.name}.weight"] = (c, kh, kw, o)
        elif isinstance(layer, Linear):
            o, i = layer.weight_shape
            shapes[f"{layer.name}.weight"] = (i, o)
        if isinstance(layer, Weighted) and layer.bias is not None:
            shapes[f"{layer.name}.bias"] = (layer.out_size,)
        if getattr(layer, "norm", None) is not None:
            for what in ("scale", "shift"):
                shapes[f"{layer.name}.norm.{what}"] = (layer.norm.channels,)
    return shapes


class Accumulators:
    """The parameter-gradient accumulators of the samples of one backward call, and their sum.

    One zeroed array per parameter, ``(samples, *layout)``
    (:func:`accumulator_shapes`): sample b accumulates into its own row b,
    so the samples run in parallel. :meth:`taken` reuses what the network's
    earlier calls left (fresh megabyte arrays for every sample would fault
    their pages in again, and zeroing them cold costs more than their sum);
    :meth:`summed` gives them back, zero again.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype: np.dtype, samples: int) -> None:
        self.arrays = {key: np.zeros((samples,) + shape, dtype) for key, shape in shapes.items()}
        self._home: list[Accumulators] = []

    @classmethod
    def taken(cls, network: Network, samples: int) -> "Accumulators":
        """Zeroed accumulators for ``samples`` samples of ``network``: spares of an earlier call, else new ones.

        Spares of other shapes (the network's layers were changed) or for
        fewer samples are dropped.
        """
        shapes, spares = accumulator_shapes(network), _spares.setdefault(network, [])
        found = None
        while spares and found is None:
            try:
                spare = spares.pop()
            except IndexError:  # another call took the last one
                break
            if spare.arrays.keys() == shapes.keys() and all(
                    a.shape[0] >= samples and a.shape[1:] == shapes[k] and a.dtype == network.dtype
                    for k, a in spare.arrays.items()):
                found = spare
        found = found or cls(shapes, network.dtype, samples)
        found._home = spares
        return found

    def sample(self, b: int) -> dict[str, np.ndarray]:
        """Sample ``b``'s accumulators by parameter key (views, zero until it adds to them)."""
        return {key: a[b] for key, a in self.arrays.items()}

    def summed(self, samples: int) -> tuple[dict[str, np.ndarray], bool]:
        """The first ``samples`` samples' gradients summed over them, in the parameters' own layouts and dtype,
        and whether they are all finite.

        The sum is the fixed tree of :func:`eventsim.learning.chunks.tree_sum`
        over the samples in their order, for each element
        (:func:`~eventsim.learning.chunks.tree_sum_rows`). The elements are
        split into row ranges that the threads sum in parallel
        (:func:`eventsim.threads.ordered_map`), each range small enough for
        its partial sums to stay in cache and zeroed right after it is read;
        every element meets the same additions in the same tree whatever the
        ranges and the threads. The accumulators then go back to be reused.
        """
        parts, out, pieces = {}, {}, []
        for key, a in self.arrays.items():
            cols = a.shape[-1]  # the parameter's first axis, last in the accumulator
            parts[key] = a.reshape(a.shape[0], -1, cols)
            out[key] = np.empty((cols,) + a.shape[1:-1], a.dtype)
            rows = max(1, SUM_RANGE // cols)
            pieces += [(key, lo, min(lo + rows, parts[key].shape[1])) for lo in range(0, parts[key].shape[1], rows)]

        def sum_range(piece: tuple[str, int, int]) -> bool:
            key, lo, hi = piece
            return tree_sum_rows(parts[key], samples, out[key].reshape(out[key].shape[0], -1), lo, hi, True)

        finite = all(ordered_map(sum_range, pieces))
        self._home.append(self)
        return out, finite


def channel_last_into(out: np.ndarray, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(K, *shape)`` in C order written into ``out``, ``(K, P*C)`` channel-last; returns ``out``.

    :func:`eventsim.layout.to_channel_last` into a given buffer.
    """
    c, h, w = as3(shape)
    np.copyto(out.reshape(-1, h * w, c), np.moveaxis(a.reshape(-1, c, h * w), -2, -1))
    return out


def neuron_thresholds(neuron: LIF, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The neuron's thresholds per neuron, channel-last, in the run's dtype (as the forward compares)."""
    c, h, w = as3(shape)
    return np.tile(neuron.thresholds((c, h, w)).astype(dtype), h * w)


def pooling_neurons(network: Network) -> dict[str, LIF]:
    """The IF neuron of every spiking average pooling layer, by the layer's name.

    Built once for the samples of a batch: :attr:`SpikingAvgPool.neuron`
    builds a new one, with all of its checks, on every access.
    """
    return {layer.name: layer.neuron for layer in network.walk() if isinstance(layer, SpikingAvgPool)}


class NeuronBackward(Protocol):
    """What a rule supplies: ``D = dL/dI`` of a neuron layer from ``G = dL/d(output)``.

    ``kind`` is "readout", "spiking" or "pool" (the IF neuron of a
    SpikingAvgPool); ``name`` is the name the forward recorded the layer
    under; arrays are channel-last ``(K, N)``; ``frames`` says which sample
    the chunk is. ``feedback``, given for a recurrent layer, maps one step's
    ``D[t]`` (a ``(1, N)`` row) to the gradient it sends back to the
    layer's spikes of step t-1 (docs/semantics.md, "bptt").
    """

    def __call__(
        self, kind: str, name: str, neuron: LIF, shape: tuple[int, ...], grad: np.ndarray, frames: "Frames",
        feedback: "Callable[[np.ndarray], np.ndarray] | None" = None,
    ) -> np.ndarray: ...


@dataclass
class Frames:
    """The input side of one backward chunk.

    streams : dict
        Recorded output events of layers by name (``None``: the network input),
        with one row per frame; ``rows`` selects the chunk's rows.
    masks : dict
        Dropout keep masks of the chunk, ``(K or 1, *shape)`` bool, by layer name.
    sample : int or None
        The sample whose frames the chunk holds (its steps for the per-step
        rules, its totals for ``lee2020``).
    norm_stats : dict
        The forward run's ``RunResult.norm_stats`` (batch statistics and raw
        currents of the layers with a norm).
    """

    streams: dict[str | None, Events]
    rows: slice
    masks: dict[str, np.ndarray]
    sample: int | None = None
    norm_stats: dict[str, NormStatistics] = field(default_factory=dict)

    def events(self, name: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ev = self.streams[name]
        return ev.indptr[self.rows.start : self.rows.stop + 1], ev.index, ev.value


class Backprop:
    """Runs one backward chunk through a network and accumulates parameter gradients.

    Parameters
    ----------
    network : Network
    neuron : NeuronBackward
        The rule's neuron derivative.
    acc : dict
        The chunk's zeroed gradient accumulators by parameter key, in the
        layouts of :func:`accumulator_shapes` (:meth:`Accumulators.sample`).
    pool_neurons : dict, optional
        :func:`pooling_neurons` of the network, shared by the samples of a
        batch; by default built here.
    """

    def __init__(self, network: Network, neuron: NeuronBackward, acc: dict[str, np.ndarray],
                 pool_neurons: dict[str, LIF] | None = None) -> None:
        self.network = network
        self.neuron = neuron
        self._acc = acc
        self._pool_neurons = pooling_neurons(network) if pool_neurons is None else pool_neurons
        self.dtype = network.dtype
        # A sample waiting at a norm's meeting point still holds its arrays,
        # which the next sample on the same thread must not overwrite.
        self._reuse = not normed_layers(network)

    # ------------------------------------------------------------------ driver
    def run(self, frames: Frames, top: np.ndarray) -> Generator[np.ndarray, np.ndarray, None]:
        """Back-propagate ``top`` (dL/d(output of the last layer), channel-last, one row per frame).

        A generator (see the module docstring); a network without norms never yields.
        """
        self._frames = frames
        yield from self._sequence(self.network.layers, None, top, need_input=False)

    # --------------------------------------------------------------- the walk
    def _streams_out(self, layers: list[Layer], source: str | None) -> list[str | None]:
        """Name of the recorded stream each layer's output is (None where not recorded)."""
        out: list[str | None] = []
        for i, layer in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, Flatten):
                out.append(source)
            elif isinstance(layer, Synapse) and not isinstance(layer, MaxPool) and isinstance(nxt, (LIF, Recurrent)):
                out.append(None)  # its currents go straight into the neuron layer
            elif isinstance(layer, (Residual, Recurrent)):
                out.append(layer.neuron.name)
            else:
                out.append(layer.name)
            source = out[-1]
        return out

    def _sequence(self, layers: list[Layer], source: str | None, grad: np.ndarray, need_input: bool) -> Pass:
        outs = self._streams_out(layers, source)
        for i in range(len(layers) - 1, -1, -1):
            layer_source = outs[i - 1] if i > 0 else source
            grad = yield from self._layer(layers[i], layer_source, grad, need_input or i > 0)
        return grad

    def _buffer(self, key: Hashable, shape: tuple[int, ...], *, zeroed: bool = False) -> np.ndarray:
        """:func:`scratch`, or a fresh array where samples meet at norms (``self._reuse`` False)."""
        if self._reuse:
            return scratch(self.network, key, shape, self.dtype, zeroed=zeroed)
        return np.zeros(shape, self.dtype)

    def _layer(self, layer: Layer, source: str | None, grad: np.ndarray, need_input: bool) -> Pass:
        in_shape, out_shape = self.network.shapes[layer.name]
        if isinstance(layer, Residual):
            delta = self.neuron("spiking", layer.neuron.name, layer.neuron, out_shape, grad, self._frames)
            delta = yield from self._norm(layer.neuron, out_shape, delta)
            skip = self._synapse(layer.skip, source, delta, need_input)
            main = yield from self._sequence(layer.main, source, delta, need_input)
            return None if not need_input else main + skip
        if isinstance(layer, Recurrent):
            return self._recurrent(layer, out_shape, grad)
        if isinstance(layer, Delay):
            return self._delay(layer, out_shape, grad)
        if isinstance(layer, LIF):
            kind = "readout" if isinstance(layer, Readout) else "spiking"
            delta = self.neuron(kind, layer.name, layer, out_shape, grad, self._frames)
            return (yield from self._norm(layer, out_shape, delta))
        if isinstance(layer, SpikingAvgPool):
            delta = self.neuron("pool", layer.name, self._pool_neurons[layer.name], out_shape, grad, self._frames)
            return self._synapse(layer.pool, source, delta, need_input, shapes=(in_shape, out_shape))
        if isinstance(layer, MaxPool):
            if not need_input:
                return None
            c, h, w = in_shape
            out = self._buffer((id(layer), "input grad"), (grad.shape[0], c * h * w), zeroed=True)
            kernels.maxpool_route(
                out, grad, *self._frames.events(source), c, (h, w), out_shape[1:], layer.kernel_size, layer.stride
            )
            return out
        if isinstance(layer, Synapse):
            return self._synapse(layer, source, grad, need_input)
        if isinstance(layer, Dropout):
            keep = self._frames.masks.get(layer.name)
            if keep is None:
                return grad
            return grad * (to_channel_last(keep, out_shape) * self.dtype.type(layer.scale))
        if isinstance(layer, Flatten):
            if len(in_shape) == 1:
                return grad
            c, h, w = in_shape
            return np.ascontiguousarray(grad.reshape(-1, c, h * w).transpose(0, 2, 1)).reshape(-1, h * w * c)
        raise TypeError(f"no backward pass for {type(layer).__name__}")

    def _norm(self, neuron: LIF, shape: tuple[int, ...], delta: np.ndarray) -> Pass:
        """``dL/dI`` from ``D = dL/dI'`` through the neuron's norm (the identity without one).

        docs/semantics.md, "Input-current batch norm": with
        ``x^ = (I - mean) / sigma``, ``sigma = sqrt(var + eps)``, and sums and
        means per channel over the axes of the statistics (batch x time x
        positions, or batch x positions at each step)::

            dL/da = sum(D x^)     dL/db = sum(D)
            dL/dI = (a / sigma) * (D - mean(D) - x^ * mean(D x^))

        the backward of batch normalisation (Ioffe and Szegedy 2015, Sec. 3).
        The sample adds its own share of the two sums to the gradients of a
        and b and meets the others for the batch's sums (float64).
        """
        if neuron.norm is None:
            return delta
        norm, stat = neuron.norm, self._frames.norm_stats.get(neuron.name)
        if stat is None:
            raise LayerError(norm, "the backward pass through a norm needs the batch statistics of a training run "
                                   "(network.run(..., train=True))")
        channels, steps = norm.channels, delta.shape[0]
        per_step = stat.stats == "batch"
        current = to_channel_last(stat.currents[self._frames.sample], shape).reshape(steps, -1, channels)
        mean, sigma = stat.mean, np.sqrt(stat.var + norm.eps)
        if per_step:
            mean, sigma = mean[:, None, :], sigma[:, None, :]
        xhat = (current - mean) / sigma
        d = delta.reshape(steps, -1, channels).astype(np.float64)
        sums = np.stack([channel_sums(a.reshape(steps, -1), channels, per_step) for a in (d, d * xhat)])
        for what, share in (("shift", sums[0]), ("scale", sums[1])):
            self._acc[f"{neuron.name}.norm.{what}"] += (share.sum(axis=0) if per_step else share).astype(self.dtype)
        totals = yield sums
        mean_d, mean_dx = totals[0] / stat.count, totals[1] / stat.count
        if per_step:
            mean_d, mean_dx = mean_d[:, None, :], mean_dx[:, None, :]
        grad = (norm.scale.astype(np.float64) / sigma) * (d - mean_d - xhat * mean_dx)
        return grad.astype(self.dtype).reshape(delta.shape)

    def _recurrent(self, block: Recurrent, shape: tuple[int, ...], grad: np.ndarray) -> np.ndarray:
        """``dL/dI_in`` of a recurrent block, and the gradients of its connection.

        docs/semantics.md, "bptt": the rule runs the neuron backward step by
        step, adding to the gradient of the spikes of step t what ``D[t+1]``
        sends back through the connection. The connection's input at step t
        is the spikes of step t-1, so its weights meet ``D[t+1]`` with the
        spikes of step t; its bias, added at every step, meets every ``D[t]``.
        """
        connection, name = block.connection, block.neuron.name
        shapes = (shape, shape)
        delta = self.neuron("spiking", name, block.neuron, shape, grad, self._frames,
                            lambda row: self._adjoint(connection, row, shapes, key="feedback"))
        self._bias_grad(connection, delta, shape)
        following = self._buffer((id(block), "next step"), delta.shape, zeroed=True)
        following[:-1] = delta[1:]
        self._weight_grad(connection, name, following, shapes)
        return delta

    def _delay(self, layer: Delay, shape: tuple[int, ...], grad: np.ndarray) -> np.ndarray:
        """``dL/din[t] = dL/dout[t + d]``, 0 where ``t + d >= T`` (docs/semantics.md, "Delays")."""
        steps = grad.shape[0]
        d = to_channel_last(layer.per_neuron(shape).reshape(shape), shape)
        source = np.arange(steps)[:, None] + d[None, :]
        out = np.take_along_axis(grad, np.minimum(source, steps - 1), axis=0)
        out[source >= steps] = 0
        return out

    def _synapse(self, layer: Synapse, source: str | None, delta: np.ndarray, need_input: bool,
                 shapes: tuple | None = None) -> np.ndarray | None:
        """Weight gradients from the input events; the input gradient (the adjoint) if needed."""
        shapes = shapes or self.network.shapes[layer.name]
        self._bias_grad(layer, delta, shapes[1])
        self._weight_grad(layer, source, delta, shapes)
        return self._adjoint(layer, delta, shapes) if need_input else None

    def _bias_grad(self, layer: Synapse, delta: np.ndarray, out_shape: tuple[int, ...]) -> None:
        if isinstance(layer, Weighted) and layer.bias is not None:
            self._acc[f"{layer.name}.bias"] += delta.reshape(-1, as3(out_shape)[0]).sum(axis=0)

    def _weight_grad(self, layer: Synapse, source: str | None, delta: np.ndarray, shapes: tuple) -> None:
        """``dL/dW`` from the events of ``source``, one frame per row of ``delta``."""
        (_, h, w), (_, ho, wo) = as3(shapes[0]), as3(shapes[1])
        if isinstance(layer, Conv2d):
            kernels.conv_weight_grad(
                self._acc[f"{layer.name}.weight"], *self._frames.events(source), delta,
                (h, w), (ho, wo), layer.stride, layer.padding,
            )
        elif isinstance(layer, Linear):
            delay_t = None if layer.delay is None else np.ascontiguousarray(layer.delay.T)
            kernels.linear_weight_grad(self._acc[f"{layer.name}.weight"], *self._frames.events(source), delta, delay_t)

    def _adjoint(self, layer: Synapse, delta: np.ndarray, shapes: tuple, key: str = "input grad") -> np.ndarray:
        """The gradient with respect to the synapse's input: its transpose applied to ``delta``."""
        (ci, h, w), (_, ho, wo) = as3(shapes[0]), as3(shapes[1])
        out = self._buffer((id(layer), key), (delta.shape[0], h * w * ci), zeroed=True)
        if isinstance(layer, Conv2d):
            kernels.conv_transpose(out, delta, np.ascontiguousarray(layer.weight), (h, w), (ho, wo),
                                   layer.stride, layer.padding)
        elif isinstance(layer, Linear):
            kernels.linear_transpose(out, delta, layer.weight, layer.delay)
        else:
            if isinstance(layer, (AvgPool, SumPool)):
                weight, kernel = self.dtype.type(layer.window_weight), layer.kernel_size
            elif isinstance(layer, Identity):
                weight, kernel = self.dtype.type(1), (1, 1)
            else:
                raise TypeError(f"no backward pass for {type(layer).__name__}")
            kernels.pool_transpose(out, delta, weight, ci, (h, w), (ho, wo), kernel, layer.stride)
        return out
