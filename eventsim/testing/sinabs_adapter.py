"""sinabs as a candidate (eventsim/testing/protocol.py), and its rows of the conformance matrix.

:class:`SinabsCandidate` builds, from an eventsim network, the sinabs model
that computes the same thing: ``nn.Conv2d`` / ``nn.Linear`` with the same
weights, sinabs's ``SumPool2d`` for sum pooling, torch's other pools, and
sinabs's ``IAF`` / ``LIF`` neurons (their ``Squeeze`` variants on the
``(batch * time, ...)`` layout sinabs's converted networks use, or the
plain layers on ``(batch, time, ...)`` with synapses in ``Repeat``), and
``ExpLeak`` for a Readout. What one step of those neurons computes (sinabs
3.1.3, ``layers/functional/lif.py`` ``lif_forward_single``,
``activation/spike_generation.py``, ``activation/reset_mechanism.py``):

    v = alpha_mem v + I              norm_input=False (IAF: alpha_mem = 1)
    v = alpha_mem v + (1 - alpha_mem) I    norm_input=True (LIF's default)
    n = 1[v - theta >= 0]                          SingleSpike
    n = (v > 0) trunc(v / theta)                   MultiSpike (the default)
    n = min(M, (v > 0) trunc(v / theta))           MaxSpike(M)
    v = v - n theta                                MembraneSubtract (the default)
    v = v (n == 0) + r                             MembraneReset(r)
    v = relu(v - min_v_mem) + min_v_mem            min_v_mem, after the reset

from v = 0. That is eventsim's product form with ``strict=False``,
``max_spikes`` 1 / None / M, a soft reset or a hard reset to 0, and
``v_min``: the same operations in the same order, so bit for bit on
dyadic cases (``relu(v - m) + m`` is v wherever ``v - m`` is exact). The
leak is sinabs's ``alpha_mem`` itself (``train_alphas=True``), set to
eventsim's leak in the run's dtype; a gain of ``1 - leak`` is
``norm_input=True`` where eventsim's gain equals ``1 - alpha_mem`` in the
dtype. The potential reported is the one the reset function receives (U
before the reset). Everything else (``>``, another gain or arithmetic
form, a delayed reset, a rest or initial potential, a synaptic current,
recurrent blocks, delays, spiking average pooling, whose neuron is strict)
raises :class:`~eventsim.testing.Unsupported` naming the layer.

Gradients are sinabs's autograd through its neurons, with its
``Heaviside(window=inf)`` surrogate, ``1[v >= theta - inf] / theta =
1/theta``: eventsim's ``straight_through`` (sinabs's other surrogates,
Gaussian, SingleExponential, PeriodicExponential, have no eventsim
counterpart). ``MembraneSubtract`` differentiates its reset (the spikes
carry the surrogate into ``v - n theta``); ``MembraneReset`` does not
(``(spikes == 0).float()`` has no gradient). The adapter declines the
other request for each, unless told to answer it anyway
(``decline_reset_gradients=False``, the matrix row that shows it).

sinabs's spike functions return ``.float()``, float32 whatever the
potential's dtype: in a float64 network every gradient through a spike is
rounded to float32. By default the adapter calls sinabs's own forward and
backward of the spike function and only returns the spikes in the
potential's dtype (:func:`_spikes_in_dtype`); ``float32_spikes=True`` keeps
sinabs's float32 spikes (and casts them for the next layer, without which
a float64 sinabs network does not run).

:data:`MATRIX_ROWS` lists the rows of sinabs in the conformance matrix
(eventsim/testing/matrix_rows.py) and the divergences it is known for;
:mod:`eventsim.testing.sinabs_reproducers` shows its defects with sinabs
alone. Needs torch and sinabs: ``pip install --no-deps sinabs pbr`` (sinabs
3.1.3 requires nir<=1.0.4 and samna, the Speck hardware library, which this
adapter never imports; ``import sinabs`` needs pbr, numpy, torch, nir and
nirtorch).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from eventsim.errors import OptionError
from eventsim.extras import require
from eventsim.layers import IF, LIF, Layer, Readout, Residual, SumPool
from eventsim.learning.surrogates import StraightThrough
from eventsim.network import Network
from eventsim.testing.matrix_rows import Expected, Row
from eventsim.testing.protocol import GradientRequest, Unsupported
from eventsim.testing.strategies import Features
from eventsim.testing.torch_modules import (
    RecordingModel,
    network_output,
    one_thread,
    parameter_gradients,
    synapse_module,
)

_VERSION = "sinabs 3.1.3"
#: Leaks whose products keep potentials well inside the mantissa over the generated runs (up to 12 steps):
#: sinabs's clamp relu(v - m) + m is then exact.
_SHORT_LEAKS = (1.0, 0.5)
#: sinabs as the adapter builds it: ``>=``, hard reset to 0 only, its one surrogate; no spiking average
#: pooling (its neuron is strict).
_SINABS = Features(comparisons={">="}, v_reset=False, surrogates=(StraightThrough(),), multispike=True
                   ).without("spiking_avg")
#: What the adapter reproduces bit for bit (dyadic), float32 and float64, and differentiates as sinabs does:
#: every spike function, either reset (each with its own reset gradient; the other request is declined).
#: Sum pooling and the clamp are left to their rows: their gradients are not eventsim's.
FEATURES = _SINABS.without("sum")


def _require() -> tuple[Any, Any, Any]:
    """``(torch, sinabs.layers, sinabs.activation)``."""
    return tuple(require(module, "the sinabs adapter") for module in ("torch", "sinabs.layers", "sinabs.activation"))


class SinabsCandidate:
    """The candidate "sinabs": eventsim networks rebuilt from sinabs's neurons and torch modules.

    Parameters
    ----------
    squeeze : bool
        ``IAFSqueeze`` / ``LIFSqueeze`` / ``ExpLeakSqueeze`` on ``(batch * time, ...)``
        (default), or ``IAF`` / ``LIF`` / ``ExpLeak`` on ``(batch, time, ...)`` with
        every synapse in ``sinabs.layers.Repeat``.
    spike_fn : {None, "MultiSpike"}
        None: each layer's spike function from its ``max_spikes`` (1:
        ``SingleSpike``, None: ``MultiSpike``, M: ``MaxSpike(M)``);
        "MultiSpike": sinabs's default on every layer.
    min_v_mem : float, optional
        None: each layer's clamp from its ``v_min``; a number: that
        ``min_v_mem`` on every spiking layer.
    float32_spikes : bool
        Keep sinabs's float32 spikes (see the module docstring).
    decline_reset_gradients : bool
        Decline gradient requests whose ``detach_reset`` is not sinabs's
        (detached for MembraneReset, differentiated for MembraneSubtract);
        False: answer them with sinabs's own.
    """

    name = "sinabs"
    features = FEATURES

    def __init__(self, *, squeeze: bool = True, spike_fn: str | None = None, min_v_mem: float | None = None,
                 float32_spikes: bool = False, decline_reset_gradients: bool = True) -> None:
        if spike_fn not in (None, "MultiSpike"):
            raise OptionError(f"spike_fn must be None or 'MultiSpike', got {spike_fn!r}")
        self.squeeze = bool(squeeze)
        self.spike_fn = spike_fn
        self.min_v_mem = min_v_mem
        self.float32_spikes = bool(float32_spikes)
        self.decline_reset_gradients = bool(decline_reset_gradients)

    def build(self, network: Network) -> SinabsModel:
        return SinabsModel(self, network)


def candidate(**options: Any) -> SinabsCandidate:
    """The sinabs candidate configured by a matrix row's ``options`` (:class:`SinabsCandidate`)."""
    return SinabsCandidate(**options)


class SinabsModel(RecordingModel):
    """A sinabs model of an eventsim network, run over all steps at once.

    ``steps`` lists ``(layer name, module)`` in network order (a residual
    block as one :class:`_ResidualBlock`); ``neurons`` the sinabs neuron
    layers with their potential taps; ``weighted`` maps the names of Conv2d
    and Linear layers to their modules.
    """

    def __init__(self, candidate: SinabsCandidate, network: Network) -> None:
        self.torch, self.layers, self.activation = _require()
        self.candidate = candidate
        self.network = network
        self.dtype = self.torch.float64 if network.dtype == np.float64 else self.torch.float32
        self.weighted: dict[str, Any] = {}
        self.neurons: list[_Neurons] = []
        self.steps = [(layer.name, self._module(layer)) for layer in network.layers]

    # ------------------------------------------------------------- building
    def _module(self, layer: Layer) -> Any:
        if isinstance(layer, LIF):
            neurons = _Neurons(self, layer)
            self.neurons.append(neurons)
            return neurons
        if isinstance(layer, Residual):
            return _ResidualBlock(self, layer)
        if isinstance(layer, SumPool):
            module = self.layers.SumPool2d(layer.kernel_size, stride=layer.stride)
        else:
            module = synapse_module(layer, self.dtype, self.weighted)
        if module is None:
            raise Unsupported(f"{_where(layer)}: this adapter builds sinabs's IAF / LIF / ExpLeak neurons, SumPool2d "
                              "and torch's synapses and pools, none of which computes this layer")
        return module if self.candidate.squeeze else self.layers.Repeat(module)

    # -------------------------------------------------------------- running
    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        """Every reported layer's per-step outputs and potentials, from sinabs's initial state v = 0."""
        batch = spikes.shape[1]
        for neurons in self.neurons:
            neurons.start(batch)
        x = self.torch.from_numpy(np.ascontiguousarray(np.swapaxes(spikes, 0, 1))).to(self.dtype)
        if self.candidate.squeeze:
            x = x.flatten(0, 1)
        records: dict[str, tuple[list, list | None]] = {}
        for name, module in self.steps:
            x = module(x)
            if not isinstance(module, (_Neurons, _ResidualBlock)):
                records[name] = (self.per_step(x, name, batch), None)
        for neurons in self.neurons:
            records[neurons.name] = neurons.records(batch)
        return records

    def per_step(self, x: Any, name: str, batch: int) -> list:
        """``x`` in either layout as a list of ``(batch, *shape)`` tensors, one per step."""
        shape = self.network.shapes[name][1]
        return list(x.reshape((batch, -1) + tuple(shape)).transpose(0, 1).unbind(0))

    def gradients(self, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
        """sinabs's gradients of ``L = sum(out * request.grad_output)`` (eventsim/testing/protocol.py).

        Raises :class:`~eventsim.testing.Unsupported` for a surrogate other
        than ``straight_through`` and, with ``decline_reset_gradients``, for
        a ``detach_reset`` that is not the reset's own in sinabs.
        """
        if not isinstance(request.surrogate, StraightThrough):
            raise Unsupported(f"surrogate {request.surrogate!r} has no sinabs counterpart (Heaviside(window=inf) "
                              "= straight_through)")
        if self.candidate.decline_reset_gradients:
            for neurons in self.neurons:
                neurons.check_reset_gradient(request.detach_reset)
        with self.torch.enable_grad(), one_thread():
            return parameter_gradients(network_output(self.network, self._forward(spikes)), request, self.weighted)


def _where(layer: Layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


class _Neurons:
    """One eventsim neuron layer as a sinabs layer, with a tap on its reset that keeps U.

    Called on the model's layout, it returns the spikes in the model's dtype
    (sinabs's own may be float32, which no float64 synapse after it takes).
    """

    def __init__(self, model: SinabsModel, neuron: LIF) -> None:
        self.model, self.neuron, self.name = model, neuron, neuron.name
        where = _where(neuron)
        unsupported = [what for what in neuron.extended if what not in ("a lower clamp v_min",
                                                                         "several spikes per step")]
        if unsupported:
            raise Unsupported(f"{where}: sinabs's IAF / LIF / ExpLeak start from v = 0 and integrate their input "
                              f"directly; this adapter has no {', '.join(unsupported)}")
        if neuron.arithmetic != "product":
            raise Unsupported(f"{where}: sinabs computes alpha_mem v + g I (the product form); "
                              f"arithmetic={neuron.arithmetic!r} rounds differently")
        if neuron.reset_delayed:
            raise Unsupported(f"{where}: sinabs resets in the step of the spike; reset_delayed has no counterpart")
        shape = model.network.shapes[neuron.name][1]
        c = neuron.constants(shape, np.dtype(model.network.dtype))
        squeeze = {"batch_size": 1} if model.candidate.squeeze else {}  # the batch is set by each run (start)
        self.tap: _PotentialTap | None = None
        if isinstance(neuron, Readout):
            cls = model.layers.ExpLeakSqueeze if squeeze else model.layers.ExpLeak
            self.layer = cls(tau_mem=1.0, train_alphas=True, norm_input=self._norm_input(c), **squeeze)
        elif isinstance(neuron, IF):
            cls = model.layers.IAFSqueeze if squeeze else model.layers.IAF
            if c.gain != 1:
                raise Unsupported(f"{where}: sinabs's IAF adds its input unscaled; input_gain {neuron.input_gain} "
                                  "is not 1")
            self.layer = cls(**self._spiking(c, shape), **squeeze)
        else:
            cls = model.layers.LIFSqueeze if squeeze else model.layers.LIF
            self.layer = cls(tau_mem=1.0, train_alphas=True, norm_input=self._norm_input(c),
                             **self._spiking(c, shape), **squeeze)
        if not isinstance(neuron, IF):
            # train_alphas=True: sinabs's parameter is alpha_mem itself (exp(-1/tau) of tau = 1 until set here):
            # eventsim's leak in the run's dtype, which the exp of a float32 tau would round again.
            self.layer.alpha_mem = model.torch.nn.Parameter(model.torch.tensor(c.leak), requires_grad=False)
        self.outputs: Any = None

    def _spiking(self, c: Any, shape: tuple) -> dict:
        """The options of sinabs's IAF / LIF for a spiking layer with constants ``c`` (:meth:`LIF.constants`)."""
        neuron, model, where = self.neuron, self.model, _where(self.neuron)
        if neuron.strict:
            raise Unsupported(f"{where}: sinabs fires on v - theta >= 0 (trunc(v / theta) >= 1); strict=True (>) "
                              "has no counterpart")
        theta = c.theta.reshape((-1,) + (1,) * (len(shape) - 1))  # per channel, broadcast over a map
        if neuron.reset == "soft" and not np.all(np.isfinite(theta)):
            raise Unsupported(f"{where}: sinabs's MembraneSubtract computes v - 0 * inf = NaN for an infinite "
                              "threshold")
        reset = model.activation.MembraneSubtract() if neuron.reset == "soft" else model.activation.MembraneReset(
            reset_value=float(c.v_reset))
        self.tap = _PotentialTap(reset)
        v_min = model.candidate.min_v_mem
        if v_min is None and np.isfinite(c.v_min):
            v_min = c.v_min
        return dict(spike_threshold=model.torch.tensor(theta), spike_fn=self._spike_fn(), reset_fn=self.tap,
                    surrogate_grad_fn=model.activation.Heaviside(window=np.inf),
                    min_v_mem=None if v_min is None else model.torch.tensor(v_min, dtype=model.dtype))

    def _norm_input(self, c: Any) -> bool:
        """sinabs's ``norm_input`` for eventsim's gain: False for g = 1, True for g = 1 - alpha_mem in the dtype
        (sinabs computes ``(1 - alpha_mem) * i``)."""
        if c.gain == 1:
            return False
        if c.leak < 1 and c.gain == type(c.leak)(1) - c.leak:
            return True
        raise Unsupported(f"{_where(self.neuron)}: sinabs scales its input by 1 or by 1 - alpha_mem (norm_input); "
                          f"input_gain {self.neuron.input_gain} is neither (in the run's dtype)")

    def _spike_fn(self) -> Any:
        """The spike function of the layer's max_spikes (or the candidate's), in the potential's dtype unless
        the candidate keeps sinabs's float32 spikes. ``MaxSpike(M)`` is sinabs's wrapper of
        ``MaxSpikeInner.apply(v, M, ...)``, which is called here the same way."""
        activation = self.model.activation
        limit = "MultiSpike" if self.model.candidate.spike_fn == "MultiSpike" else self.neuron.max_spikes
        if limit == 1:
            function, leading = activation.SingleSpike, ()
        elif limit in (None, "MultiSpike"):
            function, leading = activation.MultiSpike, ()
        else:
            function, leading = activation.spike_generation.MaxSpikeInner, (int(limit),)
        return _SpikeFunction(function, leading, not self.model.candidate.float32_spikes)

    def check_reset_gradient(self, detach_reset: bool) -> None:
        """Unsupported unless ``detach_reset`` is what sinabs's reset of this layer does in the gradient."""
        if self.tap is None:
            return
        if self.neuron.reset == "soft" and detach_reset:
            raise Unsupported(f"{_where(self.neuron)}: sinabs's MembraneSubtract differentiates its reset (v - n "
                              "theta, n carrying the surrogate); detach_reset=True has no counterpart")
        if self.neuron.reset == "hard" and not detach_reset:
            raise Unsupported(f"{_where(self.neuron)}: sinabs's MembraneReset detaches its reset ((spikes == 0)"
                              ".float() has no gradient); detach_reset=False has no counterpart")

    def start(self, batch: int) -> None:
        """Back to sinabs's initial state v = 0 for ``batch`` samples, with empty records."""
        shape = tuple(self.model.network.shapes[self.name][1])
        if self.model.candidate.squeeze:
            self.layer.batch_size = batch
        self.layer.init_state_with_shape((batch,) + shape)
        if self.tap is not None:
            self.tap.potentials = []

    def __call__(self, x: Any) -> Any:
        self.outputs = self.layer(x).to(self.model.dtype)
        return self.outputs

    def records(self, batch: int) -> tuple[list, list]:
        """``(outputs, potentials)``, one tensor per step; a Readout's output is its potential and it emits 0."""
        outputs = self.model.per_step(self.outputs, self.name, batch)
        if self.tap is None:
            return [v.new_zeros(v.shape) for v in outputs], outputs
        return outputs, self.tap.potentials


class _PotentialTap:
    """A sinabs reset function that keeps the potential it is given: v_mem before the reset, eventsim's U."""

    def __init__(self, reset: Any) -> None:
        self.reset = reset
        self.potentials: list = []

    def __call__(self, spikes: Any, state: dict, spike_threshold: Any) -> dict:
        self.potentials.append(state["v_mem"])
        return self.reset(spikes, state, spike_threshold)


@dataclass(frozen=True)
class _SpikeFunction:
    """A sinabs spike function (``SingleSpike``, ``MultiSpike`` or ``MaxSpikeInner`` with ``leading =
    (M,)``), called as sinabs calls ``spike_fn``; ``in_dtype``: its spikes in the potential's dtype."""

    function: Any
    leading: tuple
    in_dtype: bool
    required_states: ClassVar[list] = ["v_mem"]

    def apply(self, v_mem: Any, spike_threshold: Any, surrogate_grad_fn: Any) -> Any:
        if self.in_dtype:
            return _spikes_in_dtype().apply(v_mem, self.function, self.leading, spike_threshold, surrogate_grad_fn)
        return self.function.apply(v_mem, *self.leading, spike_threshold, surrogate_grad_fn)


@lru_cache(maxsize=1)
def _spikes_in_dtype() -> Any:
    """An autograd function: a sinabs spike function's own forward, its spikes in ``v_mem``'s dtype, and its
    own backward (``BackwardClass.backward``: the gradient times ``surrogate_grad_fn(v_mem, theta)``)."""
    import torch
    from sinabs.activation.spike_generation import BackwardClass

    class SpikesInDtype(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v_mem, function, leading, spike_threshold, surrogate_grad_fn):
            return function.forward(ctx, v_mem, *leading, spike_threshold, surrogate_grad_fn).to(v_mem.dtype)

        @staticmethod
        def backward(ctx, grad):
            return BackwardClass.backward(ctx, grad)[0], None, None, None, None

    return SpikesInDtype


class _ResidualBlock:
    """A residual block: main path and skip currents summed into one sinabs neuron layer."""

    def __init__(self, model: SinabsModel, block: Residual) -> None:
        self.model = model
        self.main = [(layer.name, model._module(layer)) for layer in block.main]
        self.skip = model._module(block.skip)
        self.neurons = model._module(block.neuron)

    def __call__(self, x: Any) -> Any:
        main = x
        for _, module in self.main:
            main = module(main)
        return self.neurons(main + self.skip(x))


# ===================================================================== the matrix
#: Leaks below 1 that float32 represents: eventsim's gain, 1 - leak rounded once to the dtype, is then sinabs's
#: 1 - alpha_mem (exp(-1/100), say, gives two different float32 gains, and the adapter declines it there).
_FLOAT32_LEAKS = (0.5, 0.75, 0.875, 0.9375)
#: One layer of IF neurons after a Linear: enough to show a neuron's convention in a few cases.
_ONE_LAYER = Features(layers={"linear"}, neurons={"if"}, comparisons={">="}, v_reset=False, readout=False,
                      surrogates=(StraightThrough(),))

MATRIX_ROWS = (
    Row("IAFSqueeze / LIFSqueeze, MembraneSubtract; SingleSpike, MaxSpike(M), MultiSpike",
        replace(FEATURES.without("hard"), detach_reset="off")),
    Row("IAFSqueeze / LIFSqueeze, MembraneReset(0)", replace(FEATURES.without("soft"), detach_reset="on")),
    Row("IAF / LIF on (batch, time), synapses in Repeat", replace(FEATURES.without("hard"), detach_reset="off"),
        {"squeeze": False}),
    Row("LIF(norm_input=True)", replace(FEATURES.without("hard", "if"), euler_gain=True, leaks=_FLOAT32_LEAKS,
                                        detach_reset="off")),
    Row("min_v_mem", replace(_SINABS.without("sum"), clamp=True, leaks=_SHORT_LEAKS), gradients=False),
    Row("SumPool2d", _SINABS.without("avg", "max", "residual"), gradients=False),
    Row("MembraneReset(r), r != 0", replace(_ONE_LAYER.without("soft"), v_reset=True), gradients=False,
        expected=Expected(
            "defect", f"MembraneReset.__call__ ({_VERSION}, activation/reset_mechanism.py) computes v (spikes == 0) "
                      "+ r: it adds r to every neuron at every step, spiking or not, so a neuron without input "
                      "drifts by r per step; a reset to r is v (spikes == 0) + r (spikes != 0).",
            reproducer="eventsim.testing.sinabs_reproducers:membrane_reset_drift")),
    Row("MultiSpike (sinabs's default) for eventsim's one spike per step", _ONE_LAYER.without("hard"),
        {"spike_fn": "MultiSpike"}, gradients=False,
        expected=Expected(
            "convention", f"sinabs's IAF and LIF default to spike_fn=MultiSpike ({_VERSION}, "
                          "activation/spike_generation.py): (v > 0) trunc(v / theta) spikes in one step, and "
                          "MembraneSubtract removes them all.",
            flags="IF / LIF(..., max_spikes=None, strict=False); MaxSpike(M): max_spikes=M")),
    Row("min_v_mem for eventsim's unclamped neuron", _ONE_LAYER.without("hard"), {"min_v_mem": -0.25},
        gradients=False,
        expected=Expected(
            "convention", f"min_v_mem ({_VERSION}, layers/functional/lif.py, lif_forward_single) clamps v after "
                          "the spike and its reset.",
            flags="IF / LIF(..., v_min=min_v_mem)")),
    Row("min_v_mem with potentials that fill the mantissa", replace(
        _ONE_LAYER.without("hard"), neurons={"lif"}, clamp=True, leaks=(0.9375, float(np.exp(-0.01)))),
        gradients=False,
        expected=Expected(
            "rounding", f"lif_forward_single ({_VERSION}, layers/functional/lif.py) clamps as relu(v - min_v_mem) + "
                        "min_v_mem, which rounds v wherever v - min_v_mem is not exact (a float32 v of 2^-30 "
                        "with min_v_mem -1 becomes 0); eventsim's clamp max(R, v_min) leaves v as it is.")),
    Row("min_v_mem in the gradient", replace(_SINABS.without("sum", "max", "residual", "soft", "bias", "float"),
                                             clamp=True, leaks=_SHORT_LEAKS, detach_reset="on"),
        expected=Expected(
            "convention", f"the clamp relu(v - min_v_mem) + min_v_mem ({_VERSION}, lif_forward_single) passes no "
                          "gradient where v equals min_v_mem (torch's relu'(0) = 0, e.g. a neuron without input at "
                          "min_v_mem = 0); eventsim's clamp stops it only where it held v (v < v_min).")),
    Row("MembraneReset / MembraneSubtract in the gradient", replace(FEATURES, detach_reset="either"),
        {"decline_reset_gradients": False},
        expected=Expected(
            "convention", f"sinabs's MembraneReset ({_VERSION}, activation/reset_mechanism.py) detaches its reset "
                          "((spikes == 0).float() has no gradient) and MembraneSubtract differentiates it (v - "
                          "spikes theta, the spikes carrying the surrogate), whatever the training asks for.",
            flags="bptt detach_reset=True for MembraneReset layers, detach_reset=False for MembraneSubtract")),
    Row("float32 spikes in a float64 network", replace(FEATURES.without("hard"), detach_reset="off"),
        {"float32_spikes": True},
        expected=Expected(
            "rounding", f"MultiSpike, MaxSpike and SingleSpike ({_VERSION}, activation/spike_generation.py) return "
                        ".float() spikes, float32 whatever the potential's dtype: in a float64 network every "
                        "gradient through a spike is rounded to float32 (and the next float64 synapse needs a cast "
                        "to run at all).")),
    Row("SumPool2d in the gradient", replace(_SINABS.without("avg", "max", "residual", "hard"), detach_reset="off"),
        expected=Expected(
            "defect", f"SumPool2d ({_VERSION}, layers/pool2d.py) is torch.nn.LPPool2d with p = 1, whose "
                      "sign(s) relu(|s|) of the window sum s has derivative 0 at s = 0: the gradient of a window "
                      "without input is 0 where the derivative of a sum is 1, so silent neurons behind the pool "
                      "get no gradient. torch documents the rule for LPPool2d (a p-norm, not differentiable at 0); "
                      "for p = 1 the layer is linear and its gradient should not depend on its input.",
            reproducer="eventsim.testing.sinabs_reproducers:sum_pool_zero_window_gradient")),
)
