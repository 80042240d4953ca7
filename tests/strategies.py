"""Hypothesis strategies: dyadic arrays, event streams, random networks.

Dyadic numbers (k / 2^m with small integers) make every sum of products exact
in float32, so the event path and the dense twin must agree bit for bit
whatever their summation order (docs/semantics.md, "Numerics"). Generated cases
carry the seed their arrays come from, so a shrunk failure prints a case that
can be rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

import eventsim as es

DTYPES = st.sampled_from([np.float32, np.float64])
#: Leak factors: dyadic ones, and exp(-1/100) (Lee's tau = 100): any leak keeps
#: the two paths identical because both apply it in the same elementwise order.
LEAKS = st.sampled_from([1.0, 0.5, 0.75, 0.875, 0.9375, float(np.exp(-0.01))])
THRESHOLDS = st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0])
#: Input event values: unit spikes, signed spikes, and a few dyadic analog values.
VALUES = (1.0, -1.0, 0.5, 1.5, 2.0, -0.25)


def dyadic(rng: np.random.Generator, shape, dtype, scale: int = 8, high: int = 8) -> np.ndarray:
    """Integers in [-high, high] divided by ``scale`` (a power of two)."""
    return (rng.integers(-high, high + 1, size=shape) / scale).astype(dtype)


def random_events(rng, batch, steps, shape, density, dtype, values=VALUES) -> es.Events:
    """Events at each (sample, step, neuron) with probability ``density``."""
    dense = np.zeros((batch, steps) + tuple(shape), dtype)
    on = rng.random(dense.shape) < density
    dense[on] = rng.choice(np.asarray(values, dtype), size=int(on.sum()))
    return es.Events.from_dense(dense)


@st.composite
def neurons(draw, channels: int, hard_zero: bool = False) -> es.LIF:
    """A random spiking neuron layer: LIF or IF, any reset (only hard to 0 if asked), strict or not."""
    per_channel = draw(st.booleans())
    if per_channel:
        theta = np.array([draw(THRESHOLDS) for _ in range(channels)])
    else:
        theta = draw(THRESHOLDS)
    reset = "hard" if hard_zero else draw(st.sampled_from(["hard", "soft"]))
    v_reset = draw(st.sampled_from([0.0, -0.5, 0.25])) if reset == "hard" and not hard_zero else 0.0
    strict = draw(st.booleans())
    leak = draw(LEAKS)
    if leak == 1.0 and draw(st.booleans()):
        return es.IF(theta, reset=reset, v_reset=v_reset, strict=strict)
    return es.LIF(theta, leak=leak, reset=reset, v_reset=v_reset, strict=strict)


@dataclass
class NetCase:
    """A generated network and input, printable and rebuildable from ``seed``."""

    seed: int
    dtype: type
    input_shape: tuple
    layers: list
    batch: int
    steps: int
    density: float
    network: es.Network = field(repr=False, default=None)
    events: es.Events = field(repr=False, default=None)


def _conv(draw, rng, c, h, w, dtype, **fixed):
    k = fixed.get("k", draw(st.integers(1, min(3, h, w))))
    stride = fixed.get("stride", draw(st.integers(1, 2)))
    pad = fixed.get("pad", draw(st.integers(0, k // 2 + (k > 1))))
    out = fixed.get("out", draw(st.integers(1, 4)))
    bias = dyadic(rng, (out,), dtype) if draw(st.integers(0, 4)) == 0 else None
    layer = es.Conv2d(c, out, k, stride=stride, padding=pad, weight=dyadic(rng, (out, c, k, k), dtype), bias=bias)
    return layer, layer.output_shape((c, h, w))


def _linear_stack(draw, rng, n_in, dtype, layers: list, hard_zero: bool) -> None:
    """1 or 2 Linear layers, each followed by neurons (and maybe dropout); a readout or spikes at the end."""
    depth = draw(st.integers(1, 2))
    for i in range(depth):
        n_out = draw(st.integers(1, 6))
        bias = dyadic(rng, (n_out,), dtype) if draw(st.integers(0, 4)) == 0 else None
        layers.append(es.Linear(n_in, n_out, weight=dyadic(rng, (n_out, n_in), dtype), bias=bias))
        last = i == depth - 1
        if last and draw(st.booleans()):
            layers.append(es.Readout(leak=draw(LEAKS)))
        else:
            layers.append(draw(neurons(n_out, hard_zero)))
            if not last and draw(st.booleans()):
                layers.append(es.Dropout(draw(st.sampled_from([0.2, 0.5]))))
        n_in = n_out


@st.composite
def net_cases(draw, max_blocks: int = 4, dtypes=DTYPES, hard_zero: bool = False) -> NetCase:
    """Random networks: stacks of conv / pooling / dropout / residual / neuron layers on
    (C, H, W) input with an optional linear head, or linear stacks on flat input.
    ``hard_zero`` restricts the spiking neurons to hard reset to 0."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(dtypes)
    layers: list = []
    if draw(st.integers(0, 4)) == 0:
        input_shape = (draw(st.integers(1, 20)),)
        if draw(st.booleans()):
            layers.append(draw(neurons(input_shape[0], hard_zero)))
        _linear_stack(draw, rng, input_shape[0], dtype, layers, hard_zero)
    else:
        input_shape = (draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
        shape = _map_blocks(draw, rng, input_shape, dtype, max_blocks, layers, hard_zero)
        if draw(st.booleans()):
            layers.append(es.Flatten())
            _linear_stack(draw, rng, int(np.prod(shape)), dtype, layers, hard_zero)
    batch = draw(st.integers(1, 3))
    steps = draw(st.integers(1, 12))
    density = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]))
    case = NetCase(seed, dtype, input_shape, layers, batch, steps, density)
    case.network = es.Network(layers, input_shape, dtype=dtype)
    case.events = random_events(rng, batch, steps, input_shape, density, dtype)
    return case


def _map_blocks(draw, rng, shape, dtype, max_blocks, layers: list, hard_zero: bool) -> tuple:
    """Append 1..max_blocks random blocks on (C, H, W) maps; return the final shape."""
    for _ in range(draw(st.integers(1, max_blocks))):
        c, h, w = shape
        kind = draw(st.sampled_from(["conv", "conv", "pool", "dropout", "residual", "neuron", "pass"]))
        if kind == "conv":
            layer, shape = _conv(draw, rng, c, h, w, dtype)
            layers += [layer, draw(neurons(shape[0], hard_zero))]
        elif kind == "pass":
            layer, shape = _conv(draw, rng, c, h, w, dtype)
            layers.append(layer)
        elif kind == "neuron":
            layers.append(draw(neurons(c, hard_zero)))
        elif kind == "dropout":
            layers.append(es.Dropout(draw(st.sampled_from([0.0, 0.2, 0.5, 0.75]))))
        elif kind == "pool" and min(h, w) >= 2:
            k = draw(st.sampled_from([1, 2]))
            stride = draw(st.sampled_from([None, 1]))
            pool = draw(st.sampled_from([es.SpikingAvgPool, es.AvgPool, es.SumPool, es.MaxPool]))
            layer = pool(k, stride=stride)
            layers.append(layer)
            shape = layer.output_shape(shape)
        elif kind == "residual":
            mid = draw(st.integers(1, 4))
            stride = draw(st.integers(1, 2))
            conv1, _ = _conv(draw, rng, c, h, w, dtype, k=3, pad=1, stride=1, out=mid)
            out = c if draw(st.booleans()) else draw(st.integers(1, 4))
            conv2, main_shape = _conv(draw, rng, mid, h, w, dtype, k=3, pad=1, stride=stride, out=out)
            if out == c and draw(st.booleans()):
                skip = es.Identity(stride)
            else:
                skip = es.Conv2d(c, out, 1, stride=stride, weight=dyadic(rng, (out, c, 1, 1), dtype))
            main = [conv1, draw(neurons(mid, hard_zero))]
            if draw(st.booleans()):
                main.append(es.Dropout(draw(st.sampled_from([0.2, 0.5]))))
            layers.append(es.Residual(main + [conv2], draw(neurons(out, hard_zero)), skip=skip))
            shape = main_shape
    return shape


@st.composite
def deep_cases(draw, dtypes=DTYPES, hard_zero: bool = False) -> NetCase:
    """Networks where the pooling or residual stage sits between weighted layers, so that
    a wrong backward step there changes some weight gradient: conv -> neurons -> (pool
    or residual block) -> (dropout) -> flatten -> linear stack, on dense input."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(dtypes)
    c_in, size = draw(st.integers(1, 2)), draw(st.integers(4, 7))
    conv, shape = _conv(draw, rng, c_in, size, size, dtype, k=3, pad=1, stride=1)
    layers = [conv, draw(neurons(shape[0], hard_zero))]
    middle = draw(st.sampled_from(["spiking_avg", "avg", "sum", "max", "residual"]))
    c = shape[0]
    if middle == "residual":
        conv1, _ = _conv(draw, rng, c, size, size, dtype, k=3, pad=1, stride=1)
        conv2, shape = _conv(draw, rng, conv1.out_channels, size, size, dtype, k=3, pad=1,
                             stride=draw(st.integers(1, 2)), out=c)
        if draw(st.booleans()):
            skip = es.Identity(conv2.stride)
        else:
            skip = es.Conv2d(c, c, 1, stride=conv2.stride, weight=dyadic(rng, (c, c, 1, 1), dtype))
        main = [conv1, draw(neurons(conv1.out_channels, hard_zero)), conv2]
        layers.append(es.Residual(main, draw(neurons(c, hard_zero)), skip=skip))
    else:
        pool = {"spiking_avg": es.SpikingAvgPool, "avg": es.AvgPool, "sum": es.SumPool, "max": es.MaxPool}[middle]
        layer = pool(2, stride=draw(st.sampled_from([None, 1])))
        layers.append(layer)
        shape = layer.output_shape(shape)
        if middle in ("avg", "sum"):
            layers.append(draw(neurons(c, hard_zero)))
    if draw(st.booleans()):
        layers.append(es.Dropout(draw(st.sampled_from([0.2, 0.5]))))
    layers.append(es.Flatten())
    _linear_stack(draw, rng, int(np.prod(shape)), dtype, layers, hard_zero)
    batch, steps = draw(st.integers(1, 3)), draw(st.integers(2, 10))
    density = draw(st.sampled_from([0.2, 0.5, 0.8]))
    case = NetCase(seed, dtype, (c_in, size, size), layers, batch, steps, density)
    case.network = es.Network(layers, case.input_shape, dtype=dtype)
    case.events = random_events(rng, batch, steps, case.input_shape, density, dtype)
    return case
