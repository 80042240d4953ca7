"""Hypothesis strategies: dyadic and float weights, event streams, random networks.

Dyadic numbers (k / 2^m with small integers) make every sum of products exact
in float32, so the event path, the dense twin and any correct implementation
agree bit for bit whatever their summation order (docs/semantics.md,
"Numerics"). General float weights (normal, scaled by fan-in so that neurons
do fire) exercise the tolerance contract of :mod:`eventsim.testing.compare`
instead.

A :class:`Features` value says what may be generated, so that an
implementation supporting less (no residual blocks, no ``v_reset``, ...) is
tested on what it supports, and what a framework's conventions are (the
Euler form's input gain, its reset in the gradient, its surrogates). The
state beyond the potential, recurrent connections and delays
(:data:`STATE_FEATURES`) are generated only when asked for.

Networks are drawn as a list of self-contained blocks, each with its own
options and its own weight seed, so that hypothesis can delete any block of
a failing case and keep the others as they were: a shrunk failure holds
only the layers the failure needs. Generated cases print their layers and
weights; the input comes from the case's ``seed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import eventsim as es
from eventsim.errors import OptionError
from eventsim.layers import ARITHMETIC

DTYPES = st.sampled_from([np.float32, np.float64])
#: Leak factors: dyadic ones, and exp(-1/100) (Lee's tau = 100): any leak keeps
#: implementations identical because all apply it with the same elementwise product.
LEAK_VALUES = (1.0, 0.5, 0.75, 0.875, 0.9375, float(np.exp(-0.01)))
LEAKS = st.sampled_from(LEAK_VALUES)
THRESHOLD_VALUES = (0.25, 0.5, 1.0, 1.5, 2.0)
#: Input event values: unit spikes, signed spikes, and a few dyadic analog values.
VALUES = (1.0, -1.0, 0.5, 1.5, 2.0, -0.25)
#: Fractions of (sample, step, neuron) positions that carry an input event.
DENSITIES = (0.0, 0.05, 0.2, 0.5, 1.0)
#: Seeds of weight arrays and inputs: a small range, because each seed hypothesis lowers while
#: shrinking spends some of its 500 successful shrinks, which deleting blocks needs more.
SEEDS = st.integers(0, 255)

LAYER_KINDS = ("conv", "linear", "spiking_avg", "avg", "sum", "max", "residual", "dropout")
POOL_KINDS = {"spiking_avg": es.SpikingAvgPool, "avg": es.AvgPool, "sum": es.SumPool, "max": es.MaxPool}
WEIGHT_KINDS = ("dyadic", "float")
SURROGATE_KINDS = ("straight_through", "fast_sigmoid", "arctan", "sigmoid", "triangle")
#: ``detach_reset`` of gradient cases: always, never, or drawn.
DETACH_RESETS = ("on", "off", "either")
#: The options of docs/semantics.md, "State beyond the potential", "Recurrent connections" and
#: "Delays", each a switch of :class:`Features` (off by default).
STATE_FEATURES = ("synaptic", "rest", "v_init", "clamp", "multispike", "recurrent", "delay")
#: Every name :meth:`Features.without` and :meth:`Features.including` understand.
FEATURE_NAMES = LAYER_KINDS + (
    "lif", "if", "hard", "soft", "v_reset", ">", ">=", "per_channel", "leak", "bias", "readout",
    "input_gain", "euler_gain", "reset_delayed", "binary_input", "dyadic", "float", "float32", "float64",
) + SURROGATE_KINDS + ARITHMETIC + STATE_FEATURES
#: The numbers of the state options, dyadic so that every implementation of a form computes the same
#: bits (docs/semantics.md, "Numerics"); the first of each is where shrinking goes.
SYNAPSE_LEAKS = (0.5, 0.75, 0.875, 1.0, 0.0)  #: alpha
SYNAPSE_GAINS = (1.0, 0.5, 2.0)  #: h
REST_VALUES = (0.0, 0.25, -0.5, 0.5)
INIT_VALUES = (None, 0.5, -0.25, 1.0)  #: None: v_init = v_rest
V_MIN_VALUES = (None, 0.0, -0.25, -1.0)  #: None: no clamp; else at most v_rest and v_init
MAX_SPIKES = (1, 2, 3, None)  #: None: no bound
#: Delays in steps are drawn from 0 to this; generated runs have up to 12 steps, so some events are dropped.
MAX_DELAY = 4


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
    thresholds : tuple of float
        The threshold values neurons may have (each > 0, inf allowed).
    leaks : tuple of float
        The leak factors LIF layers and readouts may have (1.0 alone: no
        leak). Any value in (0, 1]: eventsim applies it as one product
        ``lam * R``; a framework that computes another form of the same
        leak (``U - U/tau``, ``U + (I - U) dt/tau``) rounds differently
        unless the leak makes both exact (docs/conventions.md).
    bias : bool
        Biases on Conv2d and Linear layers.
    readout : bool
        A non-spiking :class:`~eventsim.Readout` as the last layer.
    input_gain : bool
        Input gains drawn from 1, 0.5, 0.25 and ``1 - leak`` (off by
        default: a convention of other frameworks, docs/semantics.md "Neurons").
    euler_gain : bool
        Every LIF layer and readout gets ``input_gain = 1 - leak``: the gain
        of the forward-Euler form ``U + (I - U) dt/tau`` (Norse, SpikingJelly's
        ``decay_input``, NIR). Excludes ``input_gain``, IF neurons and the
        leak 1.0, whose gain would be 0. SpikingAvgPool's IF neuron keeps g = 1; layers in another
        arithmetic form have that form's own gain.
    reset_delayed : bool
        The neuron option of that name (off by default, as ``input_gain``).
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
    binary_input : bool
        Input values 0 and 1 only (frameworks that take spikes, not values).
    detach_reset : {"on", "off", "either"}
        The ``bptt`` reset convention gradient cases ask for: detached
        (snnTorch), not detached (Norse, whose spike carries the surrogate
        into the reset), or drawn.
    surrogates : tuple of eventsim.learning.surrogates objects, or None
        The surrogates gradient cases draw from; None: every kind with
        default and other parameters (:meth:`surrogate_set`).
    synaptic, rest, v_init, clamp, multispike : bool
        The neuron options of docs/semantics.md, "State beyond the
        potential" (off by default, as ``input_gain``): a synaptic current
        (``synapse_leak`` from ``synapse_leaks``, ``synapse_gain`` from
        ``synapse_gains``, or equal to the leak with ``gain_equals_leak``, as
        Rockpool's ``LIFTorch`` computes; LIF, IF and readouts), a rest potential
        ``v_rest`` (LIF layers and readouts), an initial potential
        ``v_init`` (LIF, IF, readouts), a lower clamp ``v_min`` and several
        spikes per step ``max_spikes`` (spiking layers). A layer drawn with
        ``reset_delayed`` takes the synaptic current only, as the layer
        requires.
    recurrent : bool
        Spiking layers may be :class:`~eventsim.Recurrent` blocks: a
        ``Linear`` n -> n on flat layers, a stride-1 ``Conv2d`` C -> C with
        "same" padding (1x1 or 3x3) on maps.
    delay : bool
        :class:`~eventsim.Delay` layers of 0 to :data:`MAX_DELAY` steps, one
        for the layer, one per channel or one per neuron: a block of their
        own on maps, and between the layers of a linear stack; and synaptic
        delays of the stack's Linear layers (one for the layer, one per
        output or one per synapse).
    """

    layers: frozenset = frozenset(LAYER_KINDS)
    neurons: frozenset = frozenset({"lif", "if"})
    resets: frozenset = frozenset({"hard", "soft"})
    v_reset: bool = True
    comparisons: frozenset = frozenset({">", ">="})
    per_channel: bool = True
    thresholds: tuple = THRESHOLD_VALUES
    leaks: tuple = LEAK_VALUES
    bias: bool = True
    readout: bool = True
    input_gain: bool = False
    euler_gain: bool = False
    reset_delayed: bool = False
    arithmetic: frozenset = frozenset({"product"})
    weights: frozenset = frozenset(WEIGHT_KINDS)
    dtypes: frozenset = field(default_factory=lambda: frozenset({np.dtype(np.float32), np.dtype(np.float64)}))
    binary_input: bool = False
    detach_reset: str = "either"
    surrogates: tuple | None = None
    synaptic: bool = False
    synapse_leaks: tuple = SYNAPSE_LEAKS
    synapse_gains: tuple = SYNAPSE_GAINS
    gain_equals_leak: bool = False
    rest: bool = False
    v_init: bool = False
    clamp: bool = False
    multispike: bool = False
    recurrent: bool = False
    delay: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("layers", LAYER_KINDS), ("neurons", ("lif", "if")), ("resets", ("hard", "soft")),
                              ("comparisons", (">", ">=")), ("weights", WEIGHT_KINDS), ("arithmetic", ARITHMETIC)):
            value = frozenset(getattr(self, name))
            unknown = sorted(value - set(allowed))
            if unknown:
                raise OptionError(f"Features.{name}: unknown {unknown}; choose from {list(allowed)}")
            object.__setattr__(self, name, value)
        try:
            dtypes = frozenset(np.dtype(d) for d in self.dtypes)
        except TypeError:
            dtypes = None
        if dtypes is None or not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
            raise OptionError(f"Features.dtypes: only float32 and float64, got {self.dtypes!r}")
        object.__setattr__(self, "dtypes", dtypes)
        leaks = _numbers("leaks", self.leaks)
        if any(not 0 < v <= 1 for v in leaks):
            raise OptionError(f"Features.leaks: every leak factor must lie in (0, 1], got {self.leaks!r}")
        object.__setattr__(self, "leaks", leaks)
        synapse_leaks = _numbers("synapse_leaks", self.synapse_leaks)
        if not synapse_leaks or any(not 0 <= v <= 1 for v in synapse_leaks):
            raise OptionError(f"Features.synapse_leaks: factors in [0, 1], at least one, got {self.synapse_leaks!r}")
        if self.gain_equals_leak and 0 in synapse_leaks:
            raise OptionError("Features.gain_equals_leak needs synapse_leaks above 0 (the gain h must be > 0)")
        object.__setattr__(self, "synapse_leaks", synapse_leaks)
        synapse_gains = _numbers("synapse_gains", self.synapse_gains)
        if not synapse_gains or any(not v > 0 for v in synapse_gains):
            raise OptionError(f"Features.synapse_gains: gains > 0, at least one, got {self.synapse_gains!r}")
        object.__setattr__(self, "synapse_gains", synapse_gains)
        thresholds = _numbers("thresholds", self.thresholds)
        if any(not v > 0 for v in thresholds):
            raise OptionError(f"Features.thresholds: every threshold must be > 0 (inf allowed), "
                              f"got {self.thresholds!r}")
        object.__setattr__(self, "thresholds", thresholds)
        for name in ("neurons", "resets", "comparisons", "weights", "dtypes", "arithmetic"):
            if not getattr(self, name):
                raise OptionError(f"Features.{name} is empty: nothing could be generated")
        if not self.layers & {"conv", "linear"}:
            raise OptionError("Features.layers needs 'conv' or 'linear': a network without weights tests nothing")
        if "residual" in self.layers and "conv" not in self.layers:
            raise OptionError("Features.layers: residual blocks are built from convolutions; add 'conv'")
        if self.detach_reset not in DETACH_RESETS:
            raise OptionError(f"Features.detach_reset must be one of {', '.join(DETACH_RESETS)}, "
                              f"got {self.detach_reset!r}")
        if self.euler_gain:
            if self.input_gain:
                raise OptionError("Features: euler_gain fixes g = 1 - leak and input_gain draws g; choose one")
            if "if" in self.neurons or 1.0 in leaks:
                raise OptionError("Features.euler_gain gives g = 1 - leak, which is 0 for IF neurons and the leak "
                                  "1.0: remove 'if' from neurons and 1.0 from leaks")
        if self.surrogates is not None:
            from eventsim.learning.surrogates import Surrogate

            surrogates = tuple(self.surrogates)
            if not surrogates or not all(isinstance(s, Surrogate) for s in surrogates):
                raise OptionError("Features.surrogates must be None or a non-empty tuple of "
                                  "eventsim.learning.surrogates objects")
            object.__setattr__(self, "surrogates", surrogates)

    @property
    def detach_values(self) -> tuple[bool, ...]:
        """The ``detach_reset`` values gradient cases may ask for."""
        return {"on": (True,), "off": (False,), "either": (False, True)}[self.detach_reset]

    def surrogate_set(self) -> tuple:
        """The surrogates gradient cases draw from: ``surrogates``, or conform's default set."""
        if self.surrogates is not None:
            return self.surrogates
        from eventsim.testing.conform import default_surrogates

        return default_surrogates()

    def without(self, *names: str) -> "Features":
        """A copy without the named features (names from :data:`FEATURE_NAMES`).

        ``Features().without("residual", "v_reset", "soft")`` describes an
        implementation with plain stacks and hard reset to 0; a surrogate
        kind (``"arctan"``) removes every surrogate of that kind.
        """
        return self._changed(names, on=False)

    def including(self, *names: str) -> "Features":
        """A copy with the named features, e.g. ``including("input_gain", "reset_delayed")``;
        a surrogate kind adds that surrogate with its default parameters."""
        return self._changed(names, on=True)

    def set(self, *assignments: str) -> "Features":
        """A copy with fields set from ``"name=value"`` text, as ``eventsim conform --set`` takes them.

        Sets are comma lists (``layers=conv,linear``, ``dtypes=float32``),
        numbers too (``leaks=0.5,0.75``, ``thresholds=1``); booleans are
        ``on``/``off`` (``euler_gain=on``); ``detach_reset`` is ``on``,
        ``off`` or ``either``; ``surrogates`` a comma list of names with
        optional parameters (``surrogates=arctan,fast_sigmoid(c=25;b=1)``).

        Raises
        ------
        OptionError
            An unknown name or a value that does not parse, in one line.
        """
        changes: dict = {}
        kinds = {f.name: f for f in fields(self)}
        for assignment in assignments:
            name, sep, text = str(assignment).partition("=")
            name = name.strip()
            if not sep or name not in kinds:
                raise OptionError(f"--set {assignment!r}: expected name=value with a name from "
                                  f"{', '.join(kinds)}")
            try:
                changes[name] = _parsed(name, getattr(self, name), text.strip())
            except (ValueError, OptionError) as exc:
                raise OptionError(f"--set {name}={text}: {exc}") from None
        try:  # all at once: euler_gain=on and neurons=lif are only valid together
            return replace(self, **changes)
        except OptionError as exc:
            raise OptionError(f"--set {' '.join(map(str, assignments))}: {exc}") from None

    def _changed(self, names, on: bool) -> "Features":
        changes: dict = {}
        for name in names:
            if name not in FEATURE_NAMES:
                raise OptionError(f"unknown feature {name!r}; choose from {', '.join(FEATURE_NAMES)}")
            group = _FEATURE_GROUPS.get(name)
            if group == "leaks":
                changes["leaks"] = LEAK_VALUES if on else (1.0,)
            elif group == "surrogates":
                changes["surrogates"] = _surrogates_changed(changes.get("surrogates", self.surrogate_set()), name, on)
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
    "float32": "dtypes", "float64": "dtypes", "leak": "leaks", **{k: "surrogates" for k in SURROGATE_KINDS},
    **{form: "arithmetic" for form in ARITHMETIC},
}
_BOOLEAN_TEXT = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False, "1": True,
                 "0": False}


def _numbers(name: str, values) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise OptionError(f"Features.{name}: need numbers, got {values!r}") from None
    if not numbers:
        raise OptionError(f"Features.{name}: need at least one value, got {values!r}")
    return numbers


def _parsed(name: str, current: Any, text: str) -> Any:
    """The value of field ``name`` written as ``text`` (see :meth:`Features.set`)."""
    if name == "detach_reset":
        return text
    if isinstance(current, bool):
        if text.lower() not in _BOOLEAN_TEXT:
            raise OptionError(f"a switch is on or off, got {text!r}")
        return _BOOLEAN_TEXT[text.lower()]
    if name == "surrogates":
        return _parsed_surrogates(text)
    items = [item.strip() for item in text.split(",") if item.strip()]
    if name in ("leaks", "thresholds", "synapse_leaks", "synapse_gains"):
        return tuple(float(item) for item in items)  # a ValueError names the item
    return frozenset(items)


def _parsed_surrogates(text: str) -> tuple:
    """``arctan,fast_sigmoid(c=25;b=1)``: names with optional ``;``-separated parameters."""
    from eventsim.learning.surrogates import SURROGATES, surrogate_from_config

    out = []
    for item in re.findall(r"[^,()]+(?:\([^)]*\))?", text):
        match = re.fullmatch(r"\s*(\w+)\s*(?:\((.*)\))?\s*", item)
        if match is None:
            raise OptionError(f"cannot read the surrogate {item!r}; write name or name(param=value;...), "
                              f"names: {', '.join(SURROGATES)}")
        config: dict = {"name": match.group(1)}
        for pair in filter(None, (p.strip() for p in (match.group(2) or "").split(";"))):
            key, sep, value = pair.partition("=")
            if not sep:
                raise OptionError(f"surrogate parameter {pair!r} is not name=value")
            config[key.strip()] = float(value)
        out.append(surrogate_from_config(config))
    return tuple(out)


def _surrogates_changed(current: tuple, kind: str, on: bool) -> tuple:
    if not on:
        return tuple(s for s in current if s.name != kind)
    from eventsim.learning.surrogates import SURROGATES

    return current if any(s.name == kind for s in current) else current + (SURROGATES[kind](),)


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


# ================================================================== cases
@dataclass
class NetCase:
    """A generated network and input, printable; the input is rebuilt from ``seed``.

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


# ================================================================== block specifications
# Each block is drawn as a self-contained specification, before the shape it
# will act on is known: its options and a seed for each of its arrays. Built
# in order, a block adapts to its input shape (a kernel no larger than the
# map); deleting one leaves the others' options and weights as they were,
# which is what lets hypothesis delete every block a failure does not need.
@dataclass(frozen=True)
class _SynapseSpec:
    """A Conv2d (or the size of a Linear layer) and the seeds of its weights and bias (None: no bias)."""

    size: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    weight_seed: int = 0
    bias_seed: int | None = None
    #: synaptic delays of a Linear (feature "delay"): their form ("layer", "output", "synapse") and seed
    delay: tuple[str, int] | None = None


@st.composite
def _synapse_spec(draw, features: Features, sizes=st.integers(1, 4), kernel=st.integers(1, 3),
                  stride=st.integers(1, 2), padding=st.integers(0, 2)) -> _SynapseSpec:
    size, k, s, pad = draw(sizes), draw(kernel), draw(stride), draw(padding)
    bias = draw(st.one_of(st.none(), SEEDS)) if features.bias else None
    delay = None
    if features.delay:
        delay = draw(st.one_of(st.none(), st.tuples(st.sampled_from(["layer", "output", "synapse"]), SEEDS)))
    return _SynapseSpec(size, k, s, pad, draw(SEEDS), bias, delay)


@dataclass(frozen=True)
class _StateSpec:
    """The options of docs/semantics.md, "State beyond the potential"; the defaults leave them out."""

    synapse_leak: float | None = None
    synapse_gain: float = 1.0
    v_rest: float = 0.0
    v_init: float | None = None
    v_min: float | None = None
    max_spikes: int | None = 1

    def options(self) -> dict:
        """The keyword arguments of LIF, IF or Readout that differ from their defaults."""
        options: dict = {}
        if self.synapse_leak is not None:
            options["synapse_leak"] = self.synapse_leak
            if self.synapse_gain != 1.0:
                options["synapse_gain"] = self.synapse_gain
        if self.v_rest != 0.0:
            options["v_rest"] = self.v_rest
        if self.v_init is not None:
            options["v_init"] = self.v_init
        if self.v_min is not None:
            options["v_min"] = self.v_min
        if self.max_spikes != 1:
            options["max_spikes"] = self.max_spikes
        return options


def _state(draw, features: Features, *, rest: bool, spiking: bool, delayed: bool) -> _StateSpec:
    """State options within ``features``; draws nothing for a switch that is off.

    ``rest``: the layer takes a rest potential (LIF, Readout; not IF).
    ``spiking``: it takes the clamp and several spikes (not a Readout).
    ``delayed``: it resets one step late, which combines with the synaptic
    current only (docs/semantics.md, "State beyond the potential").
    """
    if features.gain_equals_leak:  # h = alpha: the input decays with the current in the same step
        pairs = st.sampled_from(features.synapse_leaks).map(lambda alpha: (alpha, alpha))
    else:
        pairs = st.tuples(st.sampled_from(features.synapse_leaks), st.sampled_from(features.synapse_gains))
    synapse = draw(st.one_of(st.none(), pairs)) if features.synaptic else None
    synapse_leak, synapse_gain = synapse if synapse is not None else (None, 1.0)
    if delayed:
        return _StateSpec(synapse_leak, synapse_gain)
    v_rest = draw(st.sampled_from(REST_VALUES)) if features.rest and rest else 0.0
    v_init = draw(st.sampled_from(INIT_VALUES)) if features.v_init else None
    v_min = draw(st.sampled_from(V_MIN_VALUES)) if features.clamp and spiking else None
    if v_min is not None:  # v_min <= v_init, whose default is v_rest
        v_min = min(v_min, v_rest if v_init is None else v_init)
    max_spikes = draw(st.sampled_from(MAX_SPIKES)) if features.multispike and spiking else 1
    return _StateSpec(synapse_leak, synapse_gain, v_rest, v_init, v_min, max_spikes)


@dataclass(frozen=True)
class _DelaySpec:
    """A Delay: ``steps`` for the layer (``per`` "layer"), or drawn from 0 to ``steps`` per channel or per
    neuron from ``seed``."""

    per: str = "layer"
    steps: int = 0
    seed: int = 0

    def build(self, shape: tuple) -> es.Delay:
        if self.per == "layer":
            return es.Delay(self.steps)
        size = shape[:1] if self.per == "channel" else shape
        return es.Delay(np.random.default_rng(self.seed).integers(0, self.steps + 1, size=size))


def _delay_spec() -> Any:
    return st.builds(_DelaySpec, st.sampled_from(["layer", "channel", "neuron"]), st.integers(0, MAX_DELAY), SEEDS)


@dataclass(frozen=True)
class _NeuronSpec:
    """A spiking neuron layer's options; per-channel thresholds cycle through ``thresholds``.

    ``recurrent``: the weights of the connection of a :class:`~eventsim.Recurrent`
    block around the layer, or None (:meth:`_Builder.neurons` builds both).
    """

    kind: str
    thresholds: tuple
    per_channel: bool
    reset: str
    v_reset: float
    strict: bool
    leak: float
    gain: float | None  # None: the Euler gain 1 - leak
    delayed: bool | None  # None: the option is not generated
    arithmetic: str = "product"
    state: _StateSpec = _StateSpec()
    recurrent: _SynapseSpec | None = None

    def build(self, channels: int) -> es.LIF:
        theta = np.resize(np.array(self.thresholds), channels) if self.per_channel else self.thresholds[0]
        options = dict(reset=self.reset, v_reset=self.v_reset, strict=self.strict, **self.state.options())
        if self.delayed is not None:
            options["reset_delayed"] = self.delayed
        if self.kind == "if":  # euler_gain excludes IF neurons, so gain is a number here
            return es.IF(theta, input_gain=self.gain, **options)
        if self.arithmetic != "product":  # the form fixes the gain and resets at once
            return es.LIF(theta, leak=self.leak, arithmetic=self.arithmetic, **{**options, "reset_delayed": False})
        gain = 1.0 - self.leak if self.gain is None else self.gain
        return es.LIF(theta, leak=self.leak, input_gain=gain, **options)


@st.composite
def _neuron_spec(draw, features: Features, recurrent: bool = False) -> _NeuronSpec:
    """A spiking layer within ``features``; ``recurrent``: it may be drawn as a recurrent block."""
    per_channel = features.per_channel and draw(st.booleans())
    thresholds = tuple(draw(st.lists(st.sampled_from(features.thresholds), min_size=1,
                                     max_size=4 if per_channel else 1)))
    reset = draw(st.sampled_from(sorted(features.resets)))
    v_reset = draw(st.sampled_from([0.0, -0.5, 0.25])) if reset == "hard" and features.v_reset else 0.0
    strict = draw(st.sampled_from(sorted(features.comparisons))) == ">"
    kind = draw(st.sampled_from(sorted(features.neurons)))
    leak = 1.0 if kind == "if" else draw(st.sampled_from(features.leaks))
    if features.euler_gain:
        gain = None
    elif features.input_gain:
        gain = draw(st.sampled_from([1.0, 0.5, 0.25] + ([1.0 - leak] if leak < 1 else [])))
    else:
        gain = 1.0
    delayed = draw(st.booleans()) if features.reset_delayed else None
    form = _form(draw, features, leak)
    state = _state(draw, features, rest=kind == "lif", spiking=True, delayed=bool(delayed) and form == "product")
    connection = draw(st.one_of(st.none(), _synapse_spec(features))) if recurrent and features.recurrent else None
    return _NeuronSpec(kind, thresholds, per_channel, reset, v_reset, strict, leak, gain, delayed, form, state,
                       connection)


def _form(draw, features: Features, leak: float) -> str:
    """An arithmetic form within ``features`` for a layer with ``leak``: "product" when the leak is 1."""
    forms = sorted(features.arithmetic) if leak < 1 else []
    return draw(st.sampled_from(forms)) if forms else "product"


class _Builder:
    """Turns specifications into layers in one dtype and weight kind."""

    def __init__(self, dtype, kind: str, features: Features) -> None:
        self.dtype, self.kind, self.features = dtype, kind, features

    def array(self, seed: int, shape, fan_in: int) -> np.ndarray:
        return weights(np.random.default_rng(seed), shape, self.dtype, self.kind, fan_in)

    def bias(self, seed: int | None, n: int) -> np.ndarray | None:
        if seed is None:
            return None
        rng = np.random.default_rng(seed)
        return dyadic(rng, (n,), self.dtype) if self.kind == "dyadic" else rng.normal(0.0, 0.25, n).astype(self.dtype)

    def conv(self, spec: _SynapseSpec, c: int, h: int, w: int, **fixed) -> tuple[es.Conv2d, tuple]:
        """A convolution on (c, h, w): the kernel no larger than the map, padding at most k // 2 + 1."""
        k = fixed.get("k", min(spec.kernel, h, w))
        pad = fixed.get("pad", min(spec.padding, k // 2 + (k > 1)))
        stride = fixed.get("stride", spec.stride)
        out = fixed.get("out", spec.size)
        layer = es.Conv2d(c, out, k, stride=stride, padding=pad, weight=self.array(spec.weight_seed, (out, c, k, k),
                                                                                   c * k * k),
                          bias=self.bias(spec.bias_seed, out))
        return layer, layer.output_shape((c, h, w))

    def linear(self, spec: _SynapseSpec, n_in: int) -> es.Linear:
        delay = None
        if spec.delay is not None:  # one delay for the layer, one per output, or one per synapse
            per, seed = spec.delay
            shape = {"layer": (), "output": (spec.size,), "synapse": (spec.size, n_in)}[per]
            delay = np.random.default_rng(seed).integers(0, MAX_DELAY + 1, size=shape)
        return es.Linear(n_in, spec.size, weight=self.array(spec.weight_seed, (spec.size, n_in), n_in),
                         bias=self.bias(spec.bias_seed, spec.size), delay=delay)

    def neurons(self, spec: _NeuronSpec, shape: tuple) -> es.LIF | es.Recurrent:
        """The layer of ``spec`` on ``shape``, inside a Recurrent block when it has a connection: a
        Linear n -> n on flat layers, a stride-1 Conv2d C -> C with "same" padding on maps."""
        neuron = spec.build(shape[0])
        rec = spec.recurrent
        if rec is None:
            return neuron
        if len(shape) == 1:
            n = shape[0]
            connection = es.Linear(n, n, weight=self.array(rec.weight_seed, (n, n), n),
                                   bias=self.bias(rec.bias_seed, n))
        else:
            c, k = shape[0], 1 if rec.kernel == 1 else 3
            connection = es.Conv2d(c, c, k, padding=k // 2, weight=self.array(rec.weight_seed, (c, c, k, k), c * k * k),
                                   bias=self.bias(rec.bias_seed, c))
        return es.Recurrent(neuron, connection)

    def readout(self, spec: tuple) -> es.Readout:
        leak, form, state = spec
        if form != "product":
            return es.Readout(leak=leak, arithmetic=form, **state.options())
        return es.Readout(leak=leak, input_gain=1.0 - leak if self.features.euler_gain else 1.0, **state.options())

    def head(self, n_in: int, head: tuple, readout: tuple | None) -> list:
        """Linear layers, each followed by neurons (and maybe dropout and a delay), or by the readout at
        the end."""
        layers: list = []
        for i, (synapse, neuron, p, delay) in enumerate(head):
            layers.append(self.linear(synapse, n_in))
            if i == len(head) - 1 and readout is not None:
                layers.append(self.readout(readout))
            else:
                layers.append(self.neurons(neuron, (synapse.size,)))
                if p is not None and i < len(head) - 1:
                    layers.append(es.Dropout(p))
                if delay is not None and i < len(head) - 1:
                    layers.append(delay.build((synapse.size,)))
            n_in = synapse.size
        return layers

    def maps(self, shape: tuple, blocks: tuple) -> tuple[list, tuple]:
        """Map blocks on (C, H, W) in order; a pool on a map smaller than 2 x 2 is left out."""
        layers: list = []
        for kind, spec in blocks:
            c, h, w = shape
            if kind == "conv":
                synapse, neuron = spec
                layer, shape = self.conv(synapse, c, h, w)
                layers += [layer, self.neurons(neuron, shape)]
            elif kind == "pass":
                layer, shape = self.conv(spec, c, h, w)
                layers.append(layer)
            elif kind == "neuron":
                layers.append(self.neurons(spec, shape))
            elif kind == "dropout":
                layers.append(es.Dropout(spec))
            elif kind == "delay":
                layers.append(spec.build(shape))
            elif kind == "pool" and min(h, w) >= 2:
                pool, k, stride = spec
                layer = POOL_KINDS[pool](k, stride=stride)
                layers.append(layer)
                shape = layer.output_shape(shape)
            elif kind == "residual":
                block, shape = self.residual(spec, shape)
                layers.append(block)
        return layers, shape

    def residual(self, spec: tuple, shape: tuple) -> tuple[es.Residual, tuple]:
        (first, inner, second, out_neuron, stride, skip_kind, skip_seed, p) = spec
        c, h, w = shape
        conv1, _ = self.conv(first, c, h, w, k=3, pad=1, stride=1)
        out = second.size if skip_kind == "conv_resize" else c
        conv2, main_shape = self.conv(second, conv1.out_channels, h, w, k=3, pad=1, stride=stride, out=out)
        if skip_kind == "identity":
            skip = es.Identity(stride)
        else:
            skip = es.Conv2d(c, out, 1, stride=stride, weight=self.array(skip_seed, (out, c, 1, 1), c))
        main = [conv1, inner.build(conv1.out_channels)] + ([es.Dropout(p)] if p is not None else [])
        return es.Residual(main + [conv2], out_neuron.build(out), skip=skip), main_shape


def _dropout_p(features: Features, ps) -> Any:
    """A dropout probability, or None (no dropout layer); None is what shrinking keeps."""
    return st.one_of(st.none(), st.sampled_from(ps)) if "dropout" in features.layers else st.none()


def _head(features: Features) -> Any:
    """One or two (linear, neurons, dropout, delay) items; the second is a ``one_of`` whose first branch
    is None, so that hypothesis deletes it by trying that branch."""
    delay = st.one_of(st.none(), _delay_spec()) if features.delay else st.none()
    item = st.tuples(_synapse_spec(features, sizes=st.integers(1, 6)), _neuron_spec(features, recurrent=True),
                     _dropout_p(features, [0.2, 0.5]), delay)
    return st.tuples(item, st.one_of(st.none(), item)).map(lambda pair: tuple(x for x in pair if x is not None))


@st.composite
def _readout_spec(draw, features: Features) -> tuple:
    """The readout's leak, arithmetic form and state options (docs/semantics.md: a Readout takes the
    synaptic current, the rest potential and the initial potential)."""
    leak = draw(st.sampled_from(features.leaks))
    form = _form(draw, features, leak)
    return leak, form, _state(draw, features, rest=True, spiking=False, delayed=False)


def _readout(features: Features) -> Any:
    """The readout's leak and arithmetic form, or None (spiking neurons at the end): the readout is the
    larger choice."""
    return st.one_of(st.none(), _readout_spec(features)) if features.readout else st.none()


@st.composite
def _map_block(draw, features: Features) -> tuple:
    """One block on (C, H, W) maps: nothing, neurons, conv + neurons, conv alone, a pool, dropout, a
    residual block or a delay; the neurons may be a recurrent block.

    "none" comes first: hypothesis shrinks a block by replacing it with its simplest form (the
    first kind), so an unneeded block becomes no layer at all rather than a neuron layer.
    """
    pools = sorted(k for k in POOL_KINDS if k in features.layers)
    kinds = ["none", "neuron"] + ["conv", "pass"] * ("conv" in features.layers) + ["pool"] * bool(pools)
    kinds += ["dropout"] * ("dropout" in features.layers) + ["residual"] * ("residual" in features.layers)
    kinds += ["delay"] * features.delay
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return kind, None
    if kind == "neuron":
        return kind, draw(_neuron_spec(features, recurrent=True))
    if kind == "conv":
        return kind, (draw(_synapse_spec(features)), draw(_neuron_spec(features, recurrent=True)))
    if kind == "delay":
        return kind, draw(_delay_spec())
    if kind == "pass":
        return kind, draw(_synapse_spec(features))
    if kind == "dropout":
        return kind, draw(st.sampled_from([0.0, 0.2, 0.5, 0.75]))
    if kind == "pool":
        return kind, (draw(st.sampled_from(pools)), draw(st.sampled_from([1, 2])), draw(st.sampled_from([None, 1])))
    return kind, draw(_residual_spec(features))


@st.composite
def _residual_spec(draw, features: Features, skips=("identity", "conv", "conv_resize")) -> tuple:
    """A residual block: conv 3x3 -> neurons (-> dropout) -> conv 3x3 (+ skip) -> neurons.

    The skip is the (strided) identity, a 1x1 convolution, or a 1x1
    convolution to another channel count ("conv_resize"); the identity comes
    first, so that shrinking removes the skip's weights.
    """
    first = draw(_synapse_spec(features))
    inner = draw(_neuron_spec(features))
    p = draw(_dropout_p(features, [0.2, 0.5]))
    second = draw(_synapse_spec(features))
    out_neuron = draw(_neuron_spec(features))
    return first, inner, second, out_neuron, draw(st.integers(1, 2)), draw(st.sampled_from(skips)), draw(SEEDS), p


def _start(features: Features | None, hard_zero: bool, weights: str) -> Features:
    features = ALL if features is None else features
    if hard_zero:
        features = features.without("soft", "v_reset")
    if weights not in features.weights:
        raise OptionError(f"weights {weights!r} are not among the features' weight kinds {sorted(features.weights)}")
    return features


def _case(draw, features: Features, dtypes, weights: str, build: Callable, input_shape, steps,
          densities) -> NetCase:
    """Draw dtype, input and sizes around ``build(builder) -> layers`` and assemble the case."""
    dtype = draw(st.sampled_from(sorted(features.dtypes, key=str)) if dtypes is None else dtypes)
    layers = build(_Builder(dtype, weights, features))
    seed = draw(SEEDS)
    batch = draw(st.integers(1, 3))
    steps = draw(steps)
    density = draw(st.sampled_from(densities))
    case = NetCase(seed, dtype, input_shape, layers, batch, steps, density, weights=weights)
    case.network = es.Network(layers, input_shape, dtype=dtype)
    values = (1.0,) if features.binary_input else VALUES
    case.events = random_events(np.random.default_rng(seed), batch, steps, input_shape, density, dtype, values)
    return case


@st.composite
def net_cases(draw, max_blocks: int = 4, dtypes=None, hard_zero: bool = False, *, features: Features | None = None,
              weights: str = "dyadic", densities=DENSITIES, max_steps: int = 12) -> NetCase:
    """Random networks within ``features`` (all by default): a list of blocks (conv /
    pooling / dropout / residual / neuron layers) on (C, H, W) input with an optional
    linear head, or a linear stack on flat input.

    ``dtypes`` (a strategy) overrides ``features.dtypes``; ``hard_zero`` restricts
    spiking neurons to hard reset to 0; ``weights`` is ``"dyadic"`` or ``"float"``;
    the input density is drawn from ``densities``, T from 1 to ``max_steps``.
    """
    features = _start(features, hard_zero, weights)
    flat = "linear" in features.layers and ("conv" not in features.layers or draw(st.integers(0, 4)) == 0)
    if flat:
        n = draw(st.integers(1, 20))
        lead = draw(st.one_of(st.none(), _neuron_spec(features, recurrent=True)))
        head, readout = draw(_head(features)), draw(_readout(features))

        def build(b: _Builder) -> list:
            return ([b.neurons(lead, (n,))] if lead is not None else []) + b.head(n, head, readout)

        input_shape = (n,)
    else:
        input_shape = (draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
        blocks = draw(st.lists(_map_block(features), min_size=1, max_size=max_blocks))
        head = draw(_head(features)) if "linear" in features.layers and draw(st.booleans()) else ()
        readout = draw(_readout(features)) if head else None
        assume(head or any(kind != "none" for kind, _ in blocks))  # a network has at least one layer

        def build(b: _Builder) -> list:
            layers, shape = b.maps(input_shape, tuple(blocks))
            if head:
                layers += [es.Flatten()] + b.head(int(np.prod(shape)), head, readout)
            return layers

    return _case(draw, features, dtypes, weights, build, input_shape, st.integers(1, max_steps), densities)


@st.composite
def deep_cases(draw, dtypes=None, hard_zero: bool = False, *, features: Features | None = None,
               weights: str = "dyadic") -> NetCase:
    """Networks where the pooling or residual stage sits between weighted layers, so that
    a wrong backward step there changes some weight gradient: conv -> neurons -> (pool
    or residual block) -> (dropout) -> flatten -> linear stack, on dense input.
    Needs ``conv`` and ``linear`` in the features and a pooling kind or ``residual``."""
    features = _start(features, hard_zero, weights)
    middles = sorted(k for k in (*POOL_KINDS, "residual") if k in features.layers)
    if not ({"conv", "linear"} <= features.layers and middles):
        raise OptionError("deep_cases needs 'conv', 'linear' and a pooling kind or 'residual' in the features")
    c_in, size = draw(st.integers(1, 2)), draw(st.integers(4, 7))
    first, neuron = draw(_synapse_spec(features)), draw(_neuron_spec(features))
    middle = draw(st.sampled_from(middles))
    if middle == "residual":
        middle_spec = draw(_residual_spec(features, skips=("identity", "conv")))  # the channels stay
    else:
        middle_spec = (middle, 2, draw(st.sampled_from([None, 1])))
        after = draw(_neuron_spec(features)) if middle in ("avg", "sum") else None
    p = draw(_dropout_p(features, [0.2, 0.5]))
    head, readout = draw(_head(features)), draw(_readout(features))

    def build(b: _Builder) -> list:
        conv, shape = b.conv(first, c_in, size, size, k=3, pad=1, stride=1)
        layers = [conv, b.neurons(neuron, shape)]
        if middle == "residual":
            block, shape = b.residual(middle_spec, shape)
            layers.append(block)
        else:
            more, shape = b.maps(shape, (("pool", middle_spec),))
            layers += more + ([b.neurons(after, shape)] if after is not None else [])
        layers += [es.Dropout(p)] if p is not None else []
        return layers + [es.Flatten()] + b.head(int(np.prod(shape)), head, readout)

    return _case(draw, features, dtypes, weights, build, (c_in, size, size), st.integers(2, 10), (0.2, 0.5, 0.8))
