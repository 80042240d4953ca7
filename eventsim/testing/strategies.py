"""Hypothesis strategies: dyadic and float weights, event streams, random networks.

Dyadic numbers (k / 2^m with small integers) make every sum of products exact
in float32, so the event path, the dense twin and any correct implementation
agree bit for bit whatever their summation order (docs/semantics.md,
"Numerics"). General float weights (normal, scaled by fan-in so that neurons
do fire) exercise the tolerance contract of :mod:`eventsim.testing.compare`
instead.

A :class:`Features` value says what may be generated, so that an
implementation supporting less (no residual blocks, no ``v_reset``, ...) is
tested on what it supports. Generated cases carry the seed their arrays come
from and print their layers, so a shrunk failure names a case that can be
rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
from hypothesis import strategies as st

import eventsim as es
from eventsim.errors import OptionError
from eventsim.layers import ARITHMETIC

DTYPES = st.sampled_from([np.float32, np.float64])
#: Leak factors: dyadic ones, and exp(-1/100) (Lee's tau = 100): any leak keeps
#: implementations identical because all apply it with the same elementwise product.
LEAK_VALUES = (1.0, 0.5, 0.75, 0.875, 0.9375, float(np.exp(-0.01)))
LEAKS = st.sampled_from(LEAK_VALUES)
THRESHOLDS = st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0])
#: Input event values: unit spikes, signed spikes, and a few dyadic analog values.
VALUES = (1.0, -1.0, 0.5, 1.5, 2.0, -0.25)
#: Fractions of (sample, step, neuron) positions that carry an input event.
DENSITIES = (0.0, 0.05, 0.2, 0.5, 1.0)

LAYER_KINDS = ("conv", "linear", "spiking_avg", "avg", "sum", "max", "residual", "dropout")
POOL_KINDS = {"spiking_avg": es.SpikingAvgPool, "avg": es.AvgPool, "sum": es.SumPool, "max": es.MaxPool}
WEIGHT_KINDS = ("dyadic", "float")
#: Every name :meth:`Features.without` and :meth:`Features.including` understand.
FEATURE_NAMES = LAYER_KINDS + (
    "lif", "if", "hard", "soft", "v_reset", ">", ">=", "per_channel", "leak", "bias", "readout",
    "input_gain", "reset_delayed", "dyadic", "float", "float32", "float64",
) + ARITHMETIC


@dataclass(frozen=True)
class Features:
    """What a candidate supports, hence what the strategies may generate.

    Attributes
    ----------
    layers : frozenset of str
        Layer kinds: ``conv``, ``linear``, the pooling kinds ``spiking_avg``,
        ``avg``, ``sum``, ``max``, ``residual`` blocks and ``dropout``.
    neurons : frozenset of {"lif", "if"}
    resets : frozenset of {"hard", "soft"}
    v_reset : bool
        Hard reset to values other than 0.
    comparisons : frozenset of {">", ">="}
        Strict thresholds, ``>=`` thresholds.
    per_channel : bool
        One threshold per channel (per neuron of a flat layer).
    leaks : tuple of float
        The leak factors LIF layers and readouts may have (1.0 alone: no leak).
    bias : bool
        Biases on Conv2d and Linear layers.
    readout : bool
        A non-spiking :class:`~eventsim.Readout` as the last layer.
    input_gain, reset_delayed : bool
        The neuron options of the same names (off by default: conventions
        of other frameworks, docs/semantics.md "Neurons").
    arithmetic : frozenset of {"product", "euler", "euler-divide", "subtract-divide"}
        The arithmetic forms LIF layers and readouts with a leak below 1 may
        compute (docs/semantics.md, "Arithmetic forms"; "product" alone by
        default). A layer drawn with another form has that form's gain and
        no delayed reset.
    weights : frozenset of {"dyadic", "float"}
        Weight kinds: dyadic (exact, compared bit for bit) and general floats
        (compared under the tolerance contract).
    dtypes : frozenset of numpy dtypes
        float32 and/or float64.
    """

    layers: frozenset = frozenset(LAYER_KINDS)
    neurons: frozenset = frozenset({"lif", "if"})
    resets: frozenset = frozenset({"hard", "soft"})
    v_reset: bool = True
    comparisons: frozenset = frozenset({">", ">="})
    per_channel: bool = True
    leaks: tuple = LEAK_VALUES
    bias: bool = True
    readout: bool = True
    input_gain: bool = False
    reset_delayed: bool = False
    arithmetic: frozenset = frozenset({"product"})
    weights: frozenset = frozenset(WEIGHT_KINDS)
    dtypes: frozenset = field(default_factory=lambda: frozenset({np.dtype(np.float32), np.dtype(np.float64)}))

    def __post_init__(self) -> None:
        for name, allowed in (("layers", LAYER_KINDS), ("neurons", ("lif", "if")), ("resets", ("hard", "soft")),
                              ("comparisons", (">", ">=")), ("weights", WEIGHT_KINDS), ("arithmetic", ARITHMETIC)):
            value = frozenset(getattr(self, name))
            unknown = sorted(value - set(allowed))
            if unknown:
                raise OptionError(f"Features.{name}: unknown {unknown}; choose from {list(allowed)}")
            object.__setattr__(self, name, value)
        dtypes = frozenset(np.dtype(d) for d in self.dtypes)
        if not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
            raise OptionError(f"Features.dtypes: only float32 and float64, got {sorted(map(str, dtypes))}")
        object.__setattr__(self, "dtypes", dtypes)
        leaks = tuple(float(v) for v in self.leaks)
        if not leaks or any(not 0 < v <= 1 for v in leaks):
            raise OptionError(f"Features.leaks: need at least one leak factor in (0, 1], got {self.leaks!r}")
        object.__setattr__(self, "leaks", leaks)
        for name in ("neurons", "resets", "comparisons", "weights", "dtypes", "arithmetic"):
            if not getattr(self, name):
                raise OptionError(f"Features.{name} is empty: nothing could be generated")
        if not self.layers & {"conv", "linear"}:
            raise OptionError("Features.layers needs 'conv' or 'linear': a network without weights tests nothing")
        if "residual" in self.layers and "conv" not in self.layers:
            raise OptionError("Features.layers: residual blocks are built from convolutions; add 'conv'")

    def without(self, *names: str) -> "Features":
        """A copy without the named features (names from :data:`FEATURE_NAMES`).

        ``Features().without("residual", "v_reset", "soft")`` describes an
        implementation with plain stacks and hard reset to 0.
        """
        return self._changed(names, on=False)

    def including(self, *names: str) -> "Features":
        """A copy with the named features, e.g. ``including("input_gain", "reset_delayed")``."""
        return self._changed(names, on=True)

    def _changed(self, names, on: bool) -> "Features":
        changes: dict = {}
        for name in names:
            if name not in FEATURE_NAMES:
                raise OptionError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")
            group = _FEATURE_GROUPS.get(name)
            if group == "leaks":
                changes["leaks"] = LEAK_VALUES if on else (1.0,)
            elif group is None:
                changes[name] = on
            else:
                value = name if group != "dtypes" else np.dtype(name)
                current = changes.get(group, getattr(self, group))
                changes[group] = current | {value} if on else current - {value}
        return replace(self, **changes)

    def describe(self) -> str:
        """One line per field that differs from the default."""
        default = Features()
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                shown = sorted(map(str, value)) if isinstance(value, frozenset) else value
                parts.append(f"{f.name}={shown}")
        return ", ".join(parts) or "all defaults"


_FEATURE_GROUPS = {
    **{k: "layers" for k in LAYER_KINDS}, "lif": "neurons", "if": "neurons", "hard": "resets", "soft": "resets",
    ">": "comparisons", ">=": "comparisons", "dyadic": "weights", "float": "weights",
    "float32": "dtypes", "float64": "dtypes", "leak": "leaks", **{form: "arithmetic" for form in ARITHMETIC},
}
ALL = Features()


# ================================================================== arrays
def dyadic(rng: np.random.Generator, shape, dtype, scale: int = 8, high: int = 8) -> np.ndarray:
    """Integers in [-high, high] divided by ``scale`` (a power of two)."""
    return (rng.integers(-high, high + 1, size=shape) / scale).astype(dtype)


def float_weights(rng: np.random.Generator, shape, dtype, fan_in: int) -> np.ndarray:
    """``N(0, (1.5 / sqrt(fan_in))^2)``: He-like scaling, a little larger so that neurons fire.

    With unit input spikes at density d a neuron's current has a standard
    deviation of about ``1.5 sqrt(d)``, comparable to the generated thresholds.
    """
    return rng.normal(0.0, 1.5 / np.sqrt(fan_in), size=shape).astype(dtype)


def weights(rng: np.random.Generator, shape, dtype, kind: str, fan_in: int) -> np.ndarray:
    """Weights of the given kind: ``"dyadic"`` (:func:`dyadic`) or ``"float"`` (:func:`float_weights`)."""
    if kind == "dyadic":
        return dyadic(rng, shape, dtype)
    return float_weights(rng, shape, dtype, fan_in)


def random_events(rng, batch, steps, shape, density, dtype, values=VALUES) -> es.Events:
    """Events at each (sample, step, neuron) with probability ``density``, values drawn from ``values``."""
    dense = np.zeros((batch, steps) + tuple(shape), dtype)
    on = rng.random(dense.shape) < density
    dense[on] = rng.choice(np.asarray(values, dtype), size=int(on.sum()))
    return es.Events.from_dense(dense)


# ================================================================== layers
@st.composite
def neurons(draw, channels: int, features: Features = ALL) -> es.LIF:
    """A random spiking neuron layer within ``features``: LIF or IF, reset, comparison, options."""
    if features.per_channel and draw(st.booleans()):
        theta = np.array([draw(THRESHOLDS) for _ in range(channels)])
    else:
        theta = draw(THRESHOLDS)
    reset = draw(st.sampled_from(sorted(features.resets)))
    v_reset = draw(st.sampled_from([0.0, -0.5, 0.25])) if reset == "hard" and features.v_reset else 0.0
    strict = draw(st.sampled_from(sorted(features.comparisons))) == ">"
    options = dict(reset=reset, v_reset=v_reset, strict=strict)
    kind = draw(st.sampled_from(sorted(features.neurons)))
    leak = 1.0 if kind == "if" else draw(st.sampled_from(features.leaks))
    if features.input_gain:
        gains = [1.0, 0.5, 0.25] + ([1.0 - leak] if leak < 1 else [])
        options["input_gain"] = draw(st.sampled_from(gains))
    if features.reset_delayed:
        options["reset_delayed"] = draw(st.booleans())
    if kind == "if":
        return es.IF(theta, **options)
    form = _form(draw, features, leak)
    if form != "product":  # the form fixes the gain and resets at once
        options.update(arithmetic=form, reset_delayed=False)
        options.pop("input_gain", None)
    return es.LIF(theta, leak=leak, **options)


def _form(draw, features: Features, leak: float) -> str:
    """An arithmetic form within ``features`` for a layer with ``leak``: "product" when the leak is 1."""
    forms = sorted(features.arithmetic) if leak < 1 else []
    return draw(st.sampled_from(forms)) if forms else "product"


@dataclass
class NetCase:
    """A generated network and input, printable and rebuildable from ``seed``.

    ``spikes`` is the input as the candidate protocol takes it, dense and
    time-major ``(T, batch, *input_shape)``.
    """

    seed: int
    dtype: type
    input_shape: tuple
    layers: list
    batch: int
    steps: int
    density: float
    weights: str = "dyadic"
    network: es.Network = field(repr=False, default=None)
    events: es.Events = field(repr=False, default=None)

    @property
    def spikes(self) -> np.ndarray:
        return np.ascontiguousarray(self.events.to_dense().swapaxes(0, 1))

    def describe(self, max_entries: int = 16) -> str:
        """Every layer with its options and shapes (weights too when they have at most
        ``max_entries`` entries), and what rebuilds the input."""
        lines = [f"Network(input_shape={self.input_shape}, dtype={np.dtype(self.dtype).name}):"]
        for layer in self.network.walk():
            ins, outs = self.network.shapes[layer.name]
            shown = type(layer).__name__ if isinstance(layer, es.Residual) else repr(layer)
            lines.append(f"  {'  ' * layer.name.count('.')}{shown} {ins} -> {outs}")
            for what in ("weight", "bias"):
                arr = getattr(layer, what, None)
                if arr is not None and arr.size <= max_entries:
                    lines.append(f"  {'  ' * layer.name.count('.')}  {what} = {arr.ravel().tolist()}")
        lines.append(f"seed={self.seed} weights={self.weights} T={self.steps} batch={self.batch} "
                     f"density={self.density}")
        return "\n".join(lines)


class _Draw:
    """What every builder needs: hypothesis' draw, the seeded generator, the case's settings."""

    def __init__(self, draw, rng, dtype, kind: str, features: Features) -> None:
        self.draw, self.rng, self.dtype, self.kind, self.features = draw, rng, dtype, kind, features

    def has(self, layer_kind: str) -> bool:
        return layer_kind in self.features.layers

    def neurons(self, channels: int) -> es.LIF:
        return self.draw(neurons(channels, self.features))

    def bias(self, n: int):
        if not self.features.bias or self.draw(st.integers(0, 4)) != 0:
            return None
        return dyadic(self.rng, (n,), self.dtype) if self.kind == "dyadic" else self.rng.normal(
            0.0, 0.25, size=n).astype(self.dtype)

    def weights(self, shape, fan_in: int) -> np.ndarray:
        return weights(self.rng, shape, self.dtype, self.kind, fan_in)

    def conv(self, c, h, w, **fixed):
        draw = self.draw
        k = fixed.get("k", draw(st.integers(1, min(3, h, w))))
        stride = fixed.get("stride", draw(st.integers(1, 2)))
        pad = fixed.get("pad", draw(st.integers(0, k // 2 + (k > 1))))
        out = fixed.get("out", draw(st.integers(1, 4)))
        layer = es.Conv2d(c, out, k, stride=stride, padding=pad, weight=self.weights((out, c, k, k), c * k * k),
                          bias=self.bias(out))
        return layer, layer.output_shape((c, h, w))

    def dropout(self, ps) -> list:
        if self.has("dropout") and self.draw(st.booleans()):
            return [es.Dropout(self.draw(st.sampled_from(ps)))]
        return []


def _linear_stack(d: _Draw, n_in: int, layers: list) -> None:
    """1 or 2 Linear layers, each followed by neurons (and maybe dropout); a readout or spikes at the end."""
    depth = d.draw(st.integers(1, 2))
    for i in range(depth):
        n_out = d.draw(st.integers(1, 6))
        layers.append(es.Linear(n_in, n_out, weight=d.weights((n_out, n_in), n_in), bias=d.bias(n_out)))
        last = i == depth - 1
        if last and d.features.readout and d.draw(st.booleans()):
            leak = d.draw(st.sampled_from(d.features.leaks))
            layers.append(es.Readout(leak=leak, arithmetic=_form(d.draw, d.features, leak)))
        else:
            layers.append(d.neurons(n_out))
            if not last:
                layers += d.dropout([0.2, 0.5])
        n_in = n_out


def _start(draw, features: Features | None, hard_zero: bool, dtypes, weights: str):
    features = ALL if features is None else features
    if hard_zero:
        features = features.without("soft", "v_reset")
    if weights not in features.weights:
        raise OptionError(f"weights {weights!r} are not among the features' weight kinds {sorted(features.weights)}")
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from(sorted(features.dtypes, key=str)) if dtypes is None else dtypes)
    return seed, _Draw(draw, np.random.default_rng(seed), dtype, weights, features)


def _finish(d: _Draw, seed: int, input_shape, layers, steps, densities) -> NetCase:
    batch = d.draw(st.integers(1, 3))
    steps = d.draw(steps)
    density = d.draw(st.sampled_from(densities))
    case = NetCase(seed, d.dtype, input_shape, layers, batch, steps, density, weights=d.kind)
    case.network = es.Network(layers, input_shape, dtype=d.dtype)
    case.events = random_events(d.rng, batch, steps, input_shape, density, d.dtype)
    return case


@st.composite
def net_cases(draw, max_blocks: int = 4, dtypes=None, hard_zero: bool = False, *, features: Features | None = None,
              weights: str = "dyadic", densities=DENSITIES) -> NetCase:
    """Random networks within ``features`` (all by default): stacks of conv / pooling /
    dropout / residual / neuron layers on (C, H, W) input with an optional linear head,
    or linear stacks on flat input.

    ``dtypes`` (a strategy) overrides ``features.dtypes``; ``hard_zero`` restricts
    spiking neurons to hard reset to 0; ``weights`` is ``"dyadic"`` or ``"float"``;
    the input density is drawn from ``densities``.
    """
    seed, d = _start(draw, features, hard_zero, dtypes, weights)
    layers: list = []
    flat = d.has("linear") and (not d.has("conv") or draw(st.integers(0, 4)) == 0)
    if flat:
        input_shape = (draw(st.integers(1, 20)),)
        if draw(st.booleans()):
            layers.append(d.neurons(input_shape[0]))
        _linear_stack(d, input_shape[0], layers)
    else:
        input_shape = (draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
        shape = _map_blocks(d, input_shape, max_blocks, layers)
        if d.has("linear") and draw(st.booleans()):
            layers.append(es.Flatten())
            _linear_stack(d, int(np.prod(shape)), layers)
    return _finish(d, seed, input_shape, layers, st.integers(1, 12), densities)


def _map_blocks(d: _Draw, shape, max_blocks: int, layers: list) -> tuple:
    """Append 1..max_blocks random blocks on (C, H, W) maps; return the final shape."""
    draw = d.draw
    pools = sorted(k for k in POOL_KINDS if d.has(k))
    kinds = ["neuron"] + ["conv", "conv", "pass"] * d.has("conv") + ["pool"] * bool(pools)
    kinds += ["dropout"] * d.has("dropout") + ["residual"] * d.has("residual")
    for _ in range(draw(st.integers(1, max_blocks))):
        c, h, w = shape
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            layer, shape = d.conv(c, h, w)
            layers += [layer, d.neurons(shape[0])]
        elif kind == "pass":
            layer, shape = d.conv(c, h, w)
            layers.append(layer)
        elif kind == "neuron":
            layers.append(d.neurons(c))
        elif kind == "dropout":
            layers.append(es.Dropout(draw(st.sampled_from([0.0, 0.2, 0.5, 0.75]))))
        elif kind == "pool" and min(h, w) >= 2:
            k = draw(st.sampled_from([1, 2]))
            stride = draw(st.sampled_from([None, 1]))
            layer = POOL_KINDS[draw(st.sampled_from(pools))](k, stride=stride)
            layers.append(layer)
            shape = layer.output_shape(shape)
        elif kind == "residual":
            mid = draw(st.integers(1, 4))
            stride = draw(st.integers(1, 2))
            conv1, _ = d.conv(c, h, w, k=3, pad=1, stride=1, out=mid)
            out = c if draw(st.booleans()) else draw(st.integers(1, 4))
            conv2, main_shape = d.conv(mid, h, w, k=3, pad=1, stride=stride, out=out)
            if out == c and draw(st.booleans()):
                skip = es.Identity(stride)
            else:
                skip = es.Conv2d(c, out, 1, stride=stride, weight=d.weights((out, c, 1, 1), c))
            main = [conv1, d.neurons(mid)] + d.dropout([0.2, 0.5])
            layers.append(es.Residual(main + [conv2], d.neurons(out), skip=skip))
            shape = main_shape
    return shape


@st.composite
def deep_cases(draw, dtypes=None, hard_zero: bool = False, *, features: Features | None = None,
               weights: str = "dyadic") -> NetCase:
    """Networks where the pooling or residual stage sits between weighted layers, so that
    a wrong backward step there changes some weight gradient: conv -> neurons -> (pool
    or residual block) -> (dropout) -> flatten -> linear stack, on dense input.
    Needs ``conv`` and ``linear`` in the features and a pooling kind or ``residual``."""
    seed, d = _start(draw, features, hard_zero, dtypes, weights)
    middles = sorted(k for k in (*POOL_KINDS, "residual") if d.has(k))
    if not (d.has("conv") and d.has("linear") and middles):
        raise OptionError("deep_cases needs 'conv', 'linear' and a pooling kind or 'residual' in the features")
    c_in, size = draw(st.integers(1, 2)), draw(st.integers(4, 7))
    conv, shape = d.conv(c_in, size, size, k=3, pad=1, stride=1)
    layers = [conv, d.neurons(shape[0])]
    middle = draw(st.sampled_from(middles))
    c = shape[0]
    if middle == "residual":
        conv1, _ = d.conv(c, size, size, k=3, pad=1, stride=1)
        conv2, shape = d.conv(conv1.out_channels, size, size, k=3, pad=1, stride=draw(st.integers(1, 2)), out=c)
        if draw(st.booleans()):
            skip = es.Identity(conv2.stride)
        else:
            skip = es.Conv2d(c, c, 1, stride=conv2.stride, weight=d.weights((c, c, 1, 1), c))
        main = [conv1, d.neurons(conv1.out_channels), conv2]
        layers.append(es.Residual(main, d.neurons(c), skip=skip))
    else:
        layer = POOL_KINDS[middle](2, stride=draw(st.sampled_from([None, 1])))
        layers.append(layer)
        shape = layer.output_shape(shape)
        if middle in ("avg", "sum"):
            layers.append(d.neurons(c))
    layers += d.dropout([0.2, 0.5])
    layers.append(es.Flatten())
    _linear_stack(d, int(np.prod(shape)), layers)
    return _finish(d, seed, (c_in, size, size), layers, st.integers(2, 10), (0.2, 0.5, 0.8))
