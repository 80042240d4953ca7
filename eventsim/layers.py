"""Layers: parameters and options, no computation.

A layer says what it is (weights, geometry, neuron options) and which output
shape it produces for a given input shape. The event-driven path
(:mod:`eventsim.network`, :mod:`eventsim.kernels`) and the dense twin
(:mod:`eventsim.dense`) both read these objects and compute independently.

Shapes are per sample and exclude batch and time: ``(C, H, W)`` for maps,
``(N,)`` for vectors. Weights use the usual layouts, ``(out, in, kh, kw)`` for
:class:`Conv2d` and ``(out, in)`` for :class:`Linear`, in float32 or float64.

Layer kinds
-----------
- synapses, which turn input events into input currents of the next neuron
  layer: :class:`Conv2d`, :class:`Linear`, :class:`AvgPool`, :class:`SumPool`,
  :class:`Identity`; and :class:`MaxPool`, which is not a weighted sum;
- neurons, which integrate currents and emit spikes: :class:`LIF`, :class:`IF`,
  :class:`Readout` (never fires), :class:`SpikingAvgPool` (a fixed average
  pool feeding an IF neuron, Lee et al. 2020);
- :class:`Dropout`, :class:`Flatten` and the :class:`Residual` block.

A synapse followed by a neuron layer feeds it currents; a synapse that is not
followed by a neuron layer passes its currents on as events (their nonzero
entries), which is how linear average pooling and sum pooling behave. A
neuron layer that follows no synapse takes the incoming event values as its
currents.
"""

from __future__ import annotations

from math import exp, prod
from typing import NamedTuple, Sequence

import numpy as np

from eventsim.errors import LayerError, check_choice
from eventsim.events import FLOAT_DTYPES
from eventsim.finite import check_finite, in_dtype
from eventsim.norm import CurrentNorm


def _pair(layer: "Layer", what: str, v: int | Sequence[int], minimum: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or not all(isinstance(p, (int, np.integer)) for p in pair):
        raise LayerError(layer, f"{what} must be an int or a pair of ints, got {v!r}")
    if any(p < minimum for p in pair):
        raise LayerError(layer, f"{what} must be >= {minimum}, got {v!r}")
    return int(pair[0]), int(pair[1])


def _map_shape(layer: "Layer", input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise LayerError(layer, f"needs a (C, H, W) input, got shape {input_shape}")
    return input_shape  # type: ignore[return-value]


def _is_number(x: object) -> bool:
    return not isinstance(x, (bool, np.bool_)) and isinstance(x, (int, float, np.integer, np.floating))


def whole_steps(layer: "Layer", what: str, steps: object) -> np.ndarray:
    """``steps`` as an int64 array of delays: whole numbers of steps, >= 0, below 2**31, at least one."""
    arr = np.asarray(steps)
    whole = np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    if arr.dtype == np.bool_ or not whole:
        raise LayerError(layer, f"{what} must be whole numbers of steps, got {steps!r}")
    if arr.size == 0 or np.any(arr < 0):
        raise LayerError(layer, f"{what} must be >= 0 (one value, or an array of them), got {steps!r}")
    if np.any(arr > np.iinfo(np.int32).max):
        raise LayerError(layer, f"{what} must be below 2**31, got a maximum of {arr.max()!r}")
    return arr.astype(np.int64)


def _check_weight(layer: "Layer", what: str, w: object, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(w, np.ndarray):
        raise LayerError(layer, f"{what} must be a numpy array of shape {shape}, got {type(w).__name__}")
    if w.dtype not in FLOAT_DTYPES:
        raise LayerError(layer, f"{what} must be float32 or float64, got {w.dtype}")
    if w.shape != shape:
        raise LayerError(layer, f"{what} must have shape {shape}, got {w.shape}")
    check_finite(layer, what, w)
    return np.array(w, copy=True)


class Layer:
    """Base class: a name and the output shape for an input shape."""

    kind = "layer"  #: prefix of automatic names ("conv1", "lif2", ...)

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise LayerError(self, f"name must be a non-empty string without '.', got {name!r}")
        self.name = name

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({opts})"

    def _options(self) -> dict:
        return {"name": self.name}


# --------------------------------------------------------------------- synapses
class Synapse(Layer):
    """A layer that turns input events into currents by a weighted sum."""

    def ann_macs(self, input_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates of the same layer in a dense ANN (0 if unweighted)."""
        return 0


class Weighted(Synapse):
    """A synapse with trainable weights and an optional bias per output.

    Subclasses define ``weight_shape``, ``fan_in`` and ``out_size`` (the
    number of outputs a bias entry applies to).
    """

    weight_shape: tuple[int, ...]
    out_size: int

    def _set_parameters(self, weight: np.ndarray | None, bias: np.ndarray | None) -> None:
        self._weight: np.ndarray | None = None
        self._bias: np.ndarray | None = None
        if weight is not None:
            self.weight = weight
        if bias is not None:
            self.bias = bias

    @property
    def weight(self) -> np.ndarray | None:
        """Weights, shape ``weight_shape``, float32 or float64 (None until set)."""
        return self._weight

    @weight.setter
    def weight(self, w: np.ndarray) -> None:
        self._weight = _check_weight(self, "weight", w, self.weight_shape)

    @property
    def bias(self) -> np.ndarray | None:
        """Optional constant input current per output channel, shape ``(out_size,)``."""
        return self._bias

    @bias.setter
    def bias(self, b: np.ndarray | None) -> None:
        self._bias = None if b is None else _check_weight(self, "bias", b, (self.out_size,))


class Conv2d(Weighted):
    """2-D convolution (cross-correlation, as in PyTorch), no groups.

    ``I[o, y, x] = sum_{c, i, j} W[o, c, i, j] * s[c, y*sy + i - py, x*sx + j - px] (+ b[o])``
    with zero padding. The event path adds ``value * W[:, c, i, j]`` for each
    input event at ``(c, y', x')`` to every output position it reaches.
    """

    kind = "conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if in_channels < 1 or out_channels < 1:
            raise LayerError(self, f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(self, "kernel_size", kernel_size, 1)
        self.stride = _pair(self, "stride", stride, 1)
        self.padding = _pair(self, "padding", padding, 0)
        self._set_parameters(weight, bias)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """``(out_channels, in_channels, kh, kw)``."""
        return (self.out_channels, self.in_channels) + self.kernel_size

    @property
    def out_size(self) -> int:
        return self.out_channels

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = _map_shape(self, input_shape)
        if c != self.in_channels:
            raise LayerError(self, f"expects {self.in_channels} input channels, got {c} (input shape {input_shape})")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise LayerError(self, f"kernel {self.kernel_size} does not fit input {input_shape} with padding {self.padding}")
        return (self.out_channels, ho, wo)

    def ann_macs(self, input_shape: tuple[int, ...]) -> int:
        return prod(self.output_shape(input_shape)) * self.fan_in

    def _options(self) -> dict:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
            "bias": self._bias is not None, "name": self.name,
        }


class Linear(Weighted):
    """Fully connected layer: ``I[o] = sum_i W[o, i] * s[i] (+ b[o])``.

    With synaptic delays (docs/semantics.md, "Delays"),
    ``I[t, o] = sum_i W[o, i] * s[t - d[o, i], i] (+ b[o])``: ``delay`` is one
    whole number of steps for the layer, one per output ``(out,)`` or one
    per synapse ``(out, in)``. Currents that would land at or after T are
    dropped.
    """

    kind = "fc"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        delay: int | np.ndarray | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if in_features < 1 or out_features < 1:
            raise LayerError(self, f"features must be >= 1, got in={in_features}, out={out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self._set_parameters(weight, bias)
        self.delay = delay

    @property
    def delay(self) -> np.ndarray | None:
        """The synaptic delays in steps, ``(out, in)`` int64; None when every delay is 0."""
        return self._delay

    @delay.setter
    def delay(self, delay: int | np.ndarray | None) -> None:
        if delay is None:
            self._delay = None
            return
        arr = whole_steps(self, "delay", delay)
        shape = (self.out_features, self.in_features)
        if arr.ndim == 1 and arr.shape[0] == self.out_features:
            arr = arr[:, None]
        elif arr.ndim not in (0, 2) or (arr.ndim == 2 and arr.shape != shape):
            raise LayerError(self, f"delay must be one value, one per output ({self.out_features},) or one per "
                                   f"synapse {shape}, got shape {arr.shape}")
        full = np.ascontiguousarray(np.broadcast_to(arr, shape))
        self._delay = full if full.any() else None

    @property
    def weight_shape(self) -> tuple[int, int]:
        """``(out_features, in_features)``."""
        return (self.out_features, self.in_features)

    @property
    def out_size(self) -> int:
        return self.out_features

    @property
    def fan_in(self) -> int:
        return self.in_features

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int]:
        if len(input_shape) != 1:
            raise LayerError(self, f"needs a flat (N,) input, got shape {input_shape}; put a Flatten() before it")
        if input_shape[0] != self.in_features:
            raise LayerError(self, f"expects {self.in_features} input features, got {input_shape[0]}")
        return (self.out_features,)

    def ann_macs(self, input_shape: tuple[int, ...]) -> int:
        self.output_shape(input_shape)
        return self.in_features * self.out_features

    def _options(self) -> dict:
        options = {"in_features": self.in_features, "out_features": self.out_features,
                   "bias": self._bias is not None, "name": self.name}
        if self._delay is not None:  # only when set: a checkpoint's configuration holds this repr
            options["delay"] = self._delay.tolist()
        return options


class _Pool(Synapse):
    """Shared geometry of the pooling layers: a kh x kw window, no padding.

    Output size is ``(H - kh) // sh + 1`` (trailing rows/columns that do not
    fill a window are dropped, as in PyTorch and NIR).
    """

    kind = "pool"

    def __init__(
        self,
        kernel_size: int | Sequence[int] = 2,
        *,
        stride: int | Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.kernel_size = _pair(self, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair(self, "stride", stride, 1)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = _map_shape(self, input_shape)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h < kh or w < kw:
            raise LayerError(self, f"window {self.kernel_size} is larger than the input {input_shape}")
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    def _options(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "name": self.name}


class SumPool(_Pool):
    """Sum pooling: ``I[c, y, x] = sum_{i, j} s[c, y*sy + i, x*sx + j]`` (NIR SumPool2d)."""

    @property
    def window_weight(self) -> float:
        """The fixed weight of every window position."""
        return 1.0


class AvgPool(_Pool):
    """Linear average pooling: sum pooling with every weight ``1 / (kh*kw)``.

    The weight is rounded once to the network dtype and every input is
    multiplied by it (rather than dividing the sum), so the event path and the
    dense twin perform the same products. With kh*kw a power of two the weight
    is exact.
    """

    @property
    def window_weight(self) -> float:
        return 1.0 / (self.kernel_size[0] * self.kernel_size[1])


class Identity(Synapse):
    """Identity connection, optionally strided: ``I[c, y, x] = s[c, y*stride, x*stride]``.

    With ``stride=1`` it is the identity skip of a residual block; with
    ``stride=2`` it is the parameter-free stride-2 identity skip of Lee et al.'s
    ResNet11 code (an average pool of kernel 1 and stride 2).
    """

    kind = "skip"

    def __init__(self, stride: int = 1, *, name: str | None = None) -> None:
        super().__init__(name)
        self.stride = _pair(self, "stride", stride, 1)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.stride == (1, 1):
            return tuple(input_shape)
        c, h, w = _map_shape(self, input_shape)
        sh, sw = self.stride
        return (c, (h - 1) // sh + 1, (w - 1) // sw + 1)

    def _options(self) -> dict:
        return {"stride": self.stride, "name": self.name}


class MaxPool(_Pool):
    """Max pooling on spikes: the maximum over the window of the step's values.

    Positions without an event count as 0, so for unit spikes the output is 1
    exactly when some input in the window spiked at that step (an OR): what a
    max pool computes on a 0/1 tensor (docs/semantics.md, "Synapses and pooling"). Not a weighted sum, so it
    cannot share a neuron's input with another synapse (e.g. in a residual
    merge).
    """


# ---------------------------------------------------------------------- neurons
RESETS = ("hard", "soft")
#: The arithmetic forms of the neuron step (docs/semantics.md, "Arithmetic forms"):
#: the same recursion in exact arithmetic, computed with other float operations.
ARITHMETIC = ("product", "euler", "euler-divide", "subtract-divide")


def form_gain(arithmetic: str, leak: float) -> float | None:
    """The input gain an arithmetic form implies for ``leak``; None for "product", which takes any.

    The Euler forms scale ``I - R`` by ``k = 1 - leak`` (or divide it by
    ``d = 1 / (1 - leak)``), so their gain is ``1 - leak``; "subtract-divide"
    adds the input unscaled.
    """
    if arithmetic == "product":
        return None
    return 1.0 if arithmetic == "subtract-divide" else 1.0 - leak


class NeuronConstants(NamedTuple):
    """A neuron layer's options as a run computes with them, rounded once to its dtype."""

    theta: np.ndarray  #: (C,), one threshold per channel; inf: never fires
    leak: np.floating
    v_reset: np.floating
    gain: np.floating  #: g; for "euler" also k, the factor of ``I - R``
    arithmetic: str = "product"
    #: d of the divide forms, ``1 / (1 - leak)`` in float64 then rounded; 1 for the others
    divisor: np.floating | float = 1.0
    #: alpha, the synaptic current's factor; None: no synaptic current
    synapse_leak: np.floating | None = None
    synapse_gain: np.floating | float = 1.0  #: h
    v_rest: np.floating | float = 0.0
    v_init: np.floating | float = 0.0  #: R[0]
    v_min: np.floating | float = -np.inf  #: the lower clamp of R; -inf: none
    max_spikes: np.floating | float = 1.0  #: M as a float of the dtype; inf: no bound


class LIF(Layer):
    """Leaky integrate-and-fire neurons on the pre-threshold potential U.

    docs/semantics.md, "Neurons" (Lee et al. 2020, Sec. 2.1 and Algorithm 1, written
    on U)::

        U[t] = lam * R(U[t-1], s[t-1]) + g * I[t]      U[0] = 0
        s[t] = 1[U[t] > theta]     (">=" when strict=False)
        R    = U * (1 - s) + v_reset * s                (reset="hard")
             = U - theta * s                            (reset="soft")

    With ``reset_delayed`` the reset acts after the leak (left to right)::

        U[t] = lam * U[t-1] + g * I[t] - theta * s[t-1]                   (reset="soft")
        U[t] = (1 - s[t-1]) * lam * U[t-1] + s[t-1] * v_reset + g * I[t]  (reset="hard")

    ``arithmetic`` chooses the float operations of the step, from R = R(U[t-1],
    s[t-1]) (docs/semantics.md, "Arithmetic forms"); all equal in exact
    arithmetic, they round differently, and each is some framework's::

        "product"           U = lam * R + g * I           (eventsim, snnTorch)
        "euler"             U = R + k * (I - R)           (Norse; k = 1 - lam)
        "euler-divide"      U = R + (I - R) / d           (SpikingJelly decay_input; d = 1 / (1 - lam))
        "subtract-divide"   U = (R - R / d) + I           (SpikingJelly without decay_input)

    Parameters
    ----------
    threshold : float or 1-D array
        theta > 0: one value for the layer, or one per channel (per neuron for
        a flat layer). ``np.inf`` gives neurons that never fire.
    leak : float, optional
        Per-step factor lam in [0, 1]. Give either ``leak`` or ``tau``.
    tau : float, optional
        Time constant in steps; lam = exp(-1/tau).
    reset : {"hard", "soft"}
        Hard reset to ``v_reset`` (default 0), or soft reset (subtract theta).
    v_reset : float
        Reset value of the hard reset.
    strict : bool
        Fire on ``U > theta`` (default, Lee et al.) or on ``U >= theta``.
    input_gain : float, optional
        g > 0, finite: the factor of the input current (default 1).
        ``g = 1 - lam`` is the forward-Euler discretisation of a
        continuous-time neuron (Norse, SpikingJelly's ``decay_input``, NIR's
        LIF). The forms other than "product" fix it (``1 - leak``, or 1 for
        "subtract-divide"): leave it out, or give exactly that value.
    reset_delayed : bool
        Apply the reset of a spike at step t at step t+1, after the leak
        (snnTorch's ``Leaky``), instead of before it. "product" only.
    arithmetic : {"product", "euler", "euler-divide", "subtract-divide"}
        The float operations of the step (above); the forms other than
        "product" need ``leak < 1``. Read-only once the layer is built.
    norm : CurrentNorm, optional
        Batch normalisation of the input current: the neurons integrate
        ``I' = k * I + c`` instead of I (:mod:`eventsim.norm`; Ledinauskas
        et al. 2020, Sec. 2.6). None (default): no norm.
    synapse_leak, synapse_tau : float, optional
        A synaptic current (current-based LIF, NIR ``CubaLIF``):
        ``J[t] = alpha * J[t-1] + h * I[t]`` and the potential integrates J
        instead of I (docs/semantics.md, "State beyond the potential").
        alpha in [0, 1], or a time constant in steps, alpha = exp(-1/tau).
        Neither (default): no synaptic current.
    synapse_gain : float
        h > 0, the factor of the input in J (default 1); needs a synaptic current.
    v_rest : float
        The rest potential the neuron leaks towards (default 0; NIR's
        ``v_leak``, SpikingJelly's ``v_reset``).
    v_init : float, optional
        The potential before the first step, R[0] (default ``v_rest``).
    v_min : float
        Lower clamp of the potential after the reset (default -inf: none;
        sinabs's ``min_v_mem``).
    max_spikes : int or None
        Spikes a neuron may emit in one step (default 1); None: no bound.
        A cap the run's dtype cannot hold exactly (past 2^24 in float32) is refused.
        Above 1 the neuron emits one event valued with its count.
    """

    kind = "lif"

    def __init__(
        self,
        threshold: float | np.ndarray = 1.0,
        *,
        leak: float | None = None,
        tau: float | None = None,
        reset: str = "hard",
        v_reset: float = 0.0,
        strict: bool = True,
        input_gain: float | None = None,
        reset_delayed: bool = False,
        arithmetic: str = "product",
        norm: CurrentNorm | None = None,
        synapse_leak: float | None = None,
        synapse_tau: float | None = None,
        synapse_gain: float | None = None,
        v_rest: float = 0.0,
        v_init: float | None = None,
        v_min: float = -np.inf,
        max_spikes: int | None = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if arithmetic not in ARITHMETIC:
            raise LayerError(self, f"unknown arithmetic {arithmetic!r}; choose one of "
                                   + ", ".join(repr(a) for a in ARITHMETIC))
        # Set first: the setters of leak, input_gain and reset_delayed check against it.
        self._arithmetic = arithmetic
        if (leak is None) == (tau is None):
            raise LayerError(self, "give exactly one of leak= (per-step factor) or tau= (time constant in steps)")
        if tau is not None:
            if not np.isfinite(tau) or tau <= 0:
                raise LayerError(self, f"tau must be a positive finite number of steps, got {tau!r}")
            leak = exp(-1.0 / tau)
        check_choice("reset", reset, RESETS)
        if not isinstance(strict, (bool, np.bool_)):
            raise LayerError(self, f"strict must be True or False, got {strict!r}")
        if not np.isfinite(v_reset):
            raise LayerError(self, f"v_reset must be finite, got {v_reset!r}")
        if reset == "soft" and v_reset != 0.0:
            raise LayerError(self, "v_reset applies to the hard reset only")
        self.leak = leak
        self.reset = reset
        self.v_reset = float(v_reset)
        self.strict = bool(strict)
        self.threshold = threshold
        implied = form_gain(arithmetic, self.leak)
        self.input_gain = input_gain if input_gain is not None else 1.0 if implied is None else implied
        self._set_state_options(synapse_leak, synapse_tau, synapse_gain, v_rest, v_init, v_min, max_spikes)
        self.reset_delayed = reset_delayed
        self.norm = norm

    def _set_state_options(self, synapse_leak, synapse_tau, synapse_gain, v_rest, v_init, v_min,
                           max_spikes) -> None:
        """Check and set the options of docs/semantics.md, "State beyond the potential"."""
        if synapse_leak is not None and synapse_tau is not None:
            raise LayerError(self, "give at most one of synapse_leak= (per-step factor) or synapse_tau= "
                                   "(time constant in steps)")
        if synapse_tau is not None:
            if not _is_number(synapse_tau) or not np.isfinite(synapse_tau) or synapse_tau <= 0:
                raise LayerError(self, f"synapse_tau must be a positive finite number of steps, got {synapse_tau!r}")
            synapse_leak = exp(-1.0 / synapse_tau)
        if synapse_leak is not None and (not _is_number(synapse_leak) or not 0.0 <= synapse_leak <= 1.0):
            raise LayerError(self, f"synapse_leak must be in [0, 1], got {synapse_leak!r}")
        self.synapse_leak = None if synapse_leak is None else float(synapse_leak)
        if synapse_gain is not None and synapse_leak is None:
            raise LayerError(self, "synapse_gain needs a synaptic current: give synapse_leak= or synapse_tau= too")
        gain = 1.0 if synapse_gain is None else synapse_gain
        if not _is_number(gain) or not (np.isfinite(gain) and gain > 0):
            raise LayerError(self, f"synapse_gain must be positive and finite, got {synapse_gain!r}")
        self.synapse_gain = float(gain)
        for what, value in (("v_rest", v_rest), ("v_init", v_init)):
            if value is not None and (not _is_number(value) or not np.isfinite(value)):
                raise LayerError(self, f"{what} must be a finite number, got {value!r}")
        if not _is_number(v_min) or np.isnan(v_min) or v_min == np.inf:
            raise LayerError(self, f"v_min must be a number or -inf, got {v_min!r}")
        self.v_rest, self.v_min = float(v_rest), float(v_min)
        self.v_init = self.v_rest if v_init is None else float(v_init)
        if self.v_init < self.v_min:
            raise LayerError(self, f"v_init {self.v_init!r} is below v_min {self.v_min!r}")
        if max_spikes is not None and (isinstance(max_spikes, (bool, np.bool_))
                                       or not isinstance(max_spikes, (int, np.integer)) or max_spikes < 1):
            raise LayerError(self, f"max_spikes must be an int >= 1 or None (no bound), got {max_spikes!r}")
        self.max_spikes = None if max_spikes is None else int(max_spikes)

    @property
    def extended(self) -> list[str]:
        """The options of "State beyond the potential" this layer sets away from their defaults."""
        out = []
        if self.synapse_leak is not None:
            out.append("a synaptic current")
        if self.v_rest != 0.0:
            out.append("a rest potential")
        if self.v_init != self.v_rest:
            out.append("an initial potential")
        if self.v_min != -np.inf:
            out.append("a lower clamp v_min")
        if self.max_spikes != 1:
            out.append("several spikes per step")
        return out

    @property
    def arithmetic(self) -> str:
        """The float operations of the step: "product", "euler", "euler-divide" or "subtract-divide".

        Fixed when the layer is built: another form is another layer
        (docs/semantics.md, "Arithmetic forms").
        """
        return self._arithmetic

    @property
    def norm(self) -> CurrentNorm | None:
        """The batch normalisation of the input current, or None."""
        return self._norm

    @norm.setter
    def norm(self, norm: CurrentNorm | None) -> None:
        if norm is not None and not isinstance(norm, CurrentNorm):
            raise LayerError(self, f"norm must be a CurrentNorm or None, got {norm!r}")
        self._norm = norm

    @property
    def leak(self) -> float:
        """lam, the per-step factor of the potential, in [0, 1]."""
        return self._leak

    @leak.setter
    def leak(self, leak: float) -> None:
        # A property, so that a leak set after construction is checked too:
        # lam > 1 makes every potential grow without bound.
        if isinstance(leak, (bool, np.bool_)) or not isinstance(leak, (int, float, np.integer, np.floating)):
            raise LayerError(self, f"leak must be a number, got {leak!r}")
        if not 0.0 <= leak <= 1.0:
            raise LayerError(self, f"leak must be in [0, 1], got {leak!r}")
        if leak == 1.0 and self.arithmetic != "product":
            raise LayerError(self, f"arithmetic={self.arithmetic!r} needs a leak below 1 (with leak 1 it would "
                                   "take no input); use arithmetic='product' for IF neurons")
        self._leak = float(leak)

    @property
    def input_gain(self) -> float:
        """g, the factor of the input current: ``U[t] = lam * R + g * I[t]``.

        The forms other than "product" imply it (:func:`form_gain`), so it
        follows the leak.
        """
        implied = form_gain(self.arithmetic, self.leak)
        return self._input_gain if implied is None else implied

    @input_gain.setter
    def input_gain(self, gain: float) -> None:
        if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, (int, float, np.integer, np.floating)):
            raise LayerError(self, f"input_gain must be a number, got {gain!r}")
        if not (np.isfinite(gain) and gain > 0):
            raise LayerError(self, f"input_gain must be positive and finite, got {gain!r}")
        implied = form_gain(self.arithmetic, self.leak)
        if implied is not None and gain != implied:
            raise LayerError(self, f"arithmetic={self.arithmetic!r} has the input gain {implied!r} "
                                   f"({'1' if self.arithmetic == 'subtract-divide' else '1 - leak'}); "
                                   f"input_gain {gain!r} differs: leave input_gain out")
        self._input_gain = float(gain)

    @property
    def reset_delayed(self) -> bool:
        """Whether the reset of a spike acts one step later, after the leak."""
        return self._reset_delayed

    @reset_delayed.setter
    def reset_delayed(self, delayed: bool) -> None:
        if not isinstance(delayed, (bool, np.bool_)):
            raise LayerError(self, f"reset_delayed must be True or False, got {delayed!r}")
        if delayed and self.arithmetic != "product":
            raise LayerError(self, f"reset_delayed=True is the convention of the product form; "
                                   f"arithmetic={self.arithmetic!r} resets at once")
        if delayed:
            clash = [what for what in self.extended if what != "a synaptic current"]
            if clash:
                raise LayerError(self, f"reset_delayed=True does not combine with {', '.join(clash)} "
                                       "(docs/semantics.md, 'State beyond the potential')")
        self._reset_delayed = bool(delayed)

    @property
    def threshold(self) -> float | np.ndarray:
        return self._threshold

    @threshold.setter
    def threshold(self, theta: float | np.ndarray) -> None:
        arr = np.asarray(theta, dtype=np.float64)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.size == 0):
            raise LayerError(self, f"threshold must be a number or a 1-D array, got shape {arr.shape}")
        if np.any(np.isnan(arr)) or np.any(arr <= 0):
            raise LayerError(self, f"threshold must be positive (np.inf allowed), got {theta!r}")
        self._threshold = float(arr) if arr.ndim == 0 else arr.copy()

    def thresholds(self, shape: tuple[int, ...]) -> np.ndarray:
        """One threshold per channel (``shape[0]``), float64."""
        channels = shape[0]
        th = np.asarray(self._threshold, dtype=np.float64)
        if th.ndim == 1 and th.shape[0] != channels:
            raise LayerError(self, f"has {th.shape[0]} thresholds but its input has {channels} channels")
        return np.broadcast_to(th, (channels,)).copy()

    def constants(self, shape: tuple[int, ...], dtype: np.dtype, owner: Layer | None = None) -> NeuronConstants:
        """Thresholds per channel, leak, v_reset and input gain rounded to ``dtype``, the run's dtype.

        Checked after the rounding (:func:`eventsim.finite.in_dtype`): a
        threshold or gain that is finite and positive in float64 may be inf or
        0 in float32, and the run would compute with that. A threshold given
        as ``np.inf`` stays inf. ``owner`` is the layer named in the error (a
        :class:`SpikingAvgPool` for its pooling neuron); by default this one.
        """
        owner = self if owner is None else owner
        # The options of "State beyond the potential" are plain attributes: one set after construction
        # is checked here, where it takes effect (a NaN rest potential would otherwise run).
        self._set_state_options(self.synapse_leak, None, None if self.synapse_leak is None else self.synapse_gain,
                                self.v_rest, self.v_init, self.v_min, self.max_spikes)
        divide = self.arithmetic.endswith("-divide")
        alpha = self.synapse_leak
        return NeuronConstants(
            synapse_leak=None if alpha is None else in_dtype(owner, "synapse_leak", alpha, dtype)[()],
            synapse_gain=in_dtype(owner, "synapse_gain", self.synapse_gain, dtype, positive=True)[()],
            v_rest=in_dtype(owner, "v_rest", self.v_rest, dtype)[()],
            v_init=in_dtype(owner, "v_init", self.v_init, dtype)[()],
            v_min=in_dtype(owner, "v_min", self.v_min, dtype)[()],
            max_spikes=self._spike_cap(owner, dtype),
            theta=in_dtype(owner, "threshold", self.thresholds(shape), dtype, positive=True),
            leak=in_dtype(owner, "leak", self.leak, dtype)[()],
            v_reset=in_dtype(owner, "v_reset", self.v_reset, dtype)[()],
            gain=in_dtype(owner, "input_gain", self.input_gain, dtype, positive=True)[()],
            arithmetic=self.arithmetic,
            # d in float64, then rounded once: what a framework given tau = 1 / (1 - leak) divides by.
            divisor=in_dtype(owner, "the divisor 1 / (1 - leak)", 1.0 / (1.0 - self.leak) if divide else 1.0,
                             dtype, positive=True)[()],
        )

    def _spike_cap(self, owner: Layer, dtype: np.dtype) -> np.floating:
        """M as a float of ``dtype`` (inf: no bound); refused where the dtype cannot hold it exactly.

        Above 2^24 float32 rounds an integer to its neighbours, some upwards:
        the neurons would fire more spikes in a step than the cap allows.
        """
        dtype = np.dtype(dtype)
        if self.max_spikes is None:
            return dtype.type(np.inf)
        with np.errstate(over="ignore"):  # a cap past the dtype's range is refused below
            try:
                cap = dtype.type(self.max_spikes)
            except OverflowError:  # past float64's range: Python refuses the conversion itself
                cap = dtype.type(np.inf)
        if not np.isfinite(cap) or int(cap) != self.max_spikes:
            raise LayerError(owner, f"max_spikes {self.max_spikes} is {cap.item()!r} in {dtype}; the network "
                                    f"computes in {dtype}, so give a cap that it holds exactly (integers up to "
                                    f"2^24 in float32, 2^53 in float64)")
        return cap

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.thresholds(input_shape)
        return tuple(input_shape)

    def _options(self) -> dict:
        options = {"threshold": self._threshold, "leak": self.leak, "reset": self.reset,
                   "v_reset": self.v_reset, "strict": self.strict, "input_gain": self.input_gain,
                   "reset_delayed": self.reset_delayed, "name": self.name}
        # Only when set, so that the repr of a layer without a norm, which a
        # checkpoint's configuration holds, stays what it was before norms
        # (and before arithmetic forms).
        if self.arithmetic != "product":
            options["arithmetic"] = self.arithmetic
        if self.norm is not None:
            options["norm"] = self.norm
        return {**options, **self._state_options()}

    def _state_options(self) -> dict:
        """The options of "State beyond the potential" that differ from their defaults."""
        options = {}
        if self.synapse_leak is not None:
            options["synapse_leak"] = self.synapse_leak
            if self.synapse_gain != 1.0:
                options["synapse_gain"] = self.synapse_gain
        for what, default in (("v_rest", 0.0), ("v_init", self.v_rest), ("v_min", -np.inf), ("max_spikes", 1)):
            if getattr(self, what) != default:
                options[what] = getattr(self, what)
        return options


class IF(LIF):
    """Integrate-and-fire neurons: :class:`LIF` with ``leak=1``."""

    kind = "if"

    def __init__(
        self,
        threshold: float | np.ndarray = 1.0,
        *,
        reset: str = "hard",
        v_reset: float = 0.0,
        strict: bool = True,
        input_gain: float = 1.0,
        reset_delayed: bool = False,
        norm: CurrentNorm | None = None,
        synapse_leak: float | None = None,
        synapse_tau: float | None = None,
        synapse_gain: float | None = None,
        v_init: float | None = None,
        v_min: float = -np.inf,
        max_spikes: int | None = 1,
        name: str | None = None,
    ) -> None:
        # No v_rest: with no leak there is nothing to leak towards.
        super().__init__(threshold, leak=1.0, reset=reset, v_reset=v_reset, strict=strict,
                         input_gain=input_gain, reset_delayed=reset_delayed, norm=norm,
                         synapse_leak=synapse_leak, synapse_tau=synapse_tau, synapse_gain=synapse_gain,
                         v_init=v_init, v_min=v_min, max_spikes=max_spikes, name=name)


class Readout(LIF):
    """Non-spiking output layer: theta = inf, the readout is ``U[T] / T``.

    docs/semantics.md, "Neurons" (Lee et al. 2020, eq. 6). In the U convention
    ``U[T] = sum_t lam^(T - t) g I[t]``. Must be the last layer of a network.
    It never fires, so it has no reset to delay.
    """

    kind = "readout"

    def __init__(
        self, *, leak: float | None = None, tau: float | None = None, input_gain: float | None = None,
        arithmetic: str = "product", synapse_leak: float | None = None, synapse_tau: float | None = None,
        synapse_gain: float | None = None, v_rest: float = 0.0, v_init: float | None = None,
        name: str | None = None
    ) -> None:
        if leak is None and tau is None:
            leak = 1.0
        super().__init__(np.inf, leak=leak, tau=tau, input_gain=input_gain, arithmetic=arithmetic,
                         synapse_leak=synapse_leak, synapse_tau=synapse_tau, synapse_gain=synapse_gain,
                         v_rest=v_rest, v_init=v_init, name=name)

    @LIF.reset_delayed.setter
    def reset_delayed(self, delayed: bool) -> None:
        if not isinstance(delayed, (bool, np.bool_)) or delayed:
            raise LayerError(self, f"a Readout never fires, so reset_delayed must stay False, got {delayed!r}")
        self._reset_delayed = False

    @LIF.norm.setter
    def norm(self, norm: CurrentNorm | None) -> None:
        if norm is not None:
            raise LayerError(self, "a Readout takes no input-current norm (only spiking LIF/IF layers do)")
        self._norm = None

    def _options(self) -> dict:
        options = {"leak": self.leak, "input_gain": self.input_gain, "name": self.name}
        if self.arithmetic != "product":
            options["arithmetic"] = self.arithmetic
        return {**options, **self._state_options()}


class SpikingAvgPool(Layer):
    """Spiking average pooling (Lee et al. 2020, Sec. 2.2.1).

    A fixed kh x kw window (stride = window by default) with every weight
    ``1 / (kh*kw)`` feeds an IF neuron (no leak) with threshold
    ``threshold_ratio`` times the total window weight (0.75 by default),
    strict ``>``, hard reset to 0. Three simultaneous unit spikes into a 2x2
    window give 0.75, which does not fire; a fourth does.
    """

    kind = "pool"

    def __init__(
        self,
        kernel_size: int | Sequence[int] = 2,
        *,
        stride: int | Sequence[int] | None = None,
        threshold_ratio: float = 0.75,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.pool = AvgPool(kernel_size, stride=stride)
        if not (np.isfinite(threshold_ratio) and threshold_ratio > 0):
            raise LayerError(self, f"threshold_ratio must be positive and finite, got {threshold_ratio!r}")
        self.threshold_ratio = float(threshold_ratio)

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self.pool.kernel_size

    @property
    def stride(self) -> tuple[int, int]:
        return self.pool.stride

    @property
    def neuron(self) -> IF:
        """The pooling neuron: IF, threshold = ratio x total window weight, hard reset, strict."""
        kh, kw = self.kernel_size
        return IF(self.threshold_ratio * kh * kw * self.pool.window_weight, reset="hard", strict=True)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        try:
            return self.pool.output_shape(input_shape)
        except LayerError as exc:
            raise LayerError(self, exc.problem) from None

    def _options(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride,
                "threshold_ratio": self.threshold_ratio, "name": self.name}


# ------------------------------------------------------------------------ other
class Dropout(Layer):
    """Dropout on the spikes of the preceding layer, one mask per forward pass.

    docs/semantics.md, "Dropout" (Lee et al. 2020, Algorithm 1 and published code): in
    training, a mask ``m[b, n] = 1[u >= p]`` with ``u = rng.random((batch,
    neurons))`` is drawn once per run and held for all steps; a kept event's
    value is multiplied by ``1/(1-p)``, a dropped event disappears. Off at
    inference.
    """

    kind = "drop"

    def __init__(self, p: float, *, name: str | None = None) -> None:
        super().__init__(name)
        if not (0.0 <= p < 1.0):
            raise LayerError(self, f"p must be in [0, 1), got {p!r}")
        self.p = float(p)

    @property
    def scale(self) -> float:
        """Value factor of kept events, ``1/(1-p)``."""
        return 1.0 / (1.0 - self.p)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def _options(self) -> dict:
        return {"p": self.p, "name": self.name}


class Flatten(Layer):
    """``(C, H, W) -> (C*H*W,)``; flat indices are unchanged (C order)."""

    kind = "flatten"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int]:
        return (prod(input_shape),)


class Residual(Layer):
    """Residual block: a main path and a skip path merge into one neuron layer.

    Lee et al. 2020, Sec. 2.2.2: ``I_merge[t] = main_last(x_main[t]) + skip(x[t])``
    where ``main`` is a list of layers whose last one is a weighted synapse
    (usually a :class:`Conv2d`), ``skip`` is an :class:`Identity` (default,
    optionally strided) or a :class:`Conv2d` (e.g. 1x1), and both currents
    feed ``neuron`` in the same step.
    """

    kind = "res"

    def __init__(
        self,
        main: Sequence[Layer],
        neuron: LIF,
        *,
        skip: Synapse | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.main = list(main)
        if not self.main:
            raise LayerError(self, "main path is empty")
        if not isinstance(self.main[-1], (Conv2d, Linear, AvgPool, SumPool, Identity)):
            raise LayerError(
                self, f"main path must end in a weighted synapse (Conv2d, Linear, AvgPool, SumPool, Identity), "
                f"ends in {type(self.main[-1]).__name__}"
            )
        self.skip = Identity() if skip is None else skip
        if not isinstance(self.skip, (Identity, Conv2d)):
            raise LayerError(self, f"skip must be Identity or Conv2d, got {type(self.skip).__name__}")
        if not isinstance(neuron, LIF) or isinstance(neuron, Readout):
            raise LayerError(self, f"neuron must be a spiking LIF/IF layer, got {type(neuron).__name__}")
        self.neuron = neuron

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError("Residual shapes are resolved by the network, layer by layer")

    def _options(self) -> dict:
        return {"main": self.main, "skip": self.skip, "neuron": self.neuron, "name": self.name}


class Recurrent(Layer):
    """A neuron layer whose spikes of the step before feed back into its input.

    docs/semantics.md, "Recurrent connections"::

        I[t] = I_in[t] + W_rec s[t-1] (+ b_rec)        s[0] = 0

    ``I_in`` is the current of the synapse before the block in the network
    (or the incoming event values when no synapse precedes it), and
    ``connection`` computes ``W_rec s`` from the layer's own spikes: a
    :class:`Linear` (flat layers) or a :class:`Conv2d` whose output shape is
    its input shape. NIR's cycle ``lif -> w_rec -> lif``; snnTorch's
    ``RLeaky`` / ``RSynaptic``.

    The block is named like a layer (``rec1``); its connection and neuron
    get names inside it (``rec1.fc1``, ``rec1.lif1``), and the block's
    spikes are recorded under the neuron's name.
    """

    kind = "rec"

    def __init__(self, neuron: LIF, connection: Linear | Conv2d, *, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(neuron, LIF) or isinstance(neuron, Readout):
            raise LayerError(self, f"neuron must be a spiking LIF/IF layer, got {type(neuron).__name__}")
        if not isinstance(connection, (Linear, Conv2d)):
            raise LayerError(self, f"connection must be a Linear or Conv2d, got {type(connection).__name__}")
        if neuron.norm is not None:
            raise LayerError(self, "a recurrent neuron layer takes no input-current norm: the batch statistics "
                                   "of all steps cannot be formed before the steps that feed them are run")
        if isinstance(connection, Linear) and connection.delay is not None:
            raise LayerError(self, "the recurrent connection takes no synaptic delays: its spikes return one "
                                   "step later, as in NIR's cycle")
        self.neuron = neuron
        self.connection = connection

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = self.neuron.output_shape(input_shape)
        back = self.connection.output_shape(out)
        if tuple(back) != tuple(out):
            raise LayerError(self, f"the connection maps the neurons' shape {out} to {tuple(back)}; "
                                   "it must give the same shape back")
        return out

    def _options(self) -> dict:
        return {"neuron": self.neuron, "connection": self.connection, "name": self.name}


class Delay(Layer):
    """Events arrive a whole number of steps later: ``out[t, i] = in[t - d_i, i]``.

    docs/semantics.md, "Delays". ``steps`` is one delay d >= 0 for the layer,
    one per channel (an array of C), or one per neuron (an array of the
    input's shape). Events moved to a step >= T are dropped. NIR's ``Delay``.
    """

    kind = "delay"

    def __init__(self, steps: int | np.ndarray, *, name: str | None = None) -> None:
        super().__init__(name)
        arr = whole_steps(self, "steps", steps)
        self.steps = int(arr) if arr.ndim == 0 else arr

    def per_neuron(self, shape: tuple[int, ...]) -> np.ndarray:
        """The delay of every neuron of ``shape``, int64 in C order."""
        arr = np.asarray(self.steps, np.int64)
        if arr.ndim == 0:
            return np.full(prod(shape), int(arr), np.int64)
        if arr.shape == tuple(shape):
            return arr.reshape(-1).copy()
        if arr.ndim == 1 and arr.shape[0] == shape[0]:
            return np.repeat(arr, prod(shape[1:]))
        raise LayerError(self, f"has delays of shape {arr.shape}; its input of shape {tuple(shape)} takes one "
                               f"value, one per channel ({shape[0]},) or one per neuron {tuple(shape)}")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.per_neuron(input_shape)
        return tuple(input_shape)

    def _options(self) -> dict:
        steps = self.steps if isinstance(self.steps, int) else self.steps.tolist()
        return {"steps": steps, "name": self.name}
