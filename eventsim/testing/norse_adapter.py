"""Norse as a candidate (eventsim/testing/protocol.py).

:class:`NorseCandidate` builds, from an eventsim network, the Norse model that
computes the same thing: ``nn.Conv2d`` / ``nn.Linear`` with the same weights
and torch pooling modules, run once per step, and Norse's box neurons (no
synaptic current) with ``dt = 1``, ``v_leak = 0``, ``tau_mem_inv = 1 - lam``
and eventsim's thresholds. What Norse computes per step (Norse 1.1,
``torch/functional/lif_box.py``, ``leaky_integrator_box.py``, ``reset.py``,
``heaviside.py``; docs/conventions.md):

    LIFBoxCell:  v' = v + dt tau_mem_inv ((I + v_leak) - v)
                 z  = 1[v' - v_th > 0]
                 v  = (1 - z) v' + z v_reset        (reset_value)
                    = (1 - z) v' + z (v' - v_th)    (reset_subtract)
    LIBoxCell:   v  = v + dt tau_mem_inv ((v_leak - v) + I)      (never fires)

from v = v_leak = 0. With ``k = dt tau_mem_inv = 1 - lam`` (``1.0 - leak`` in
float64, rounded once to the dtype) this is eventsim's ``arithmetic="euler"``
form (docs/semantics.md, "Arithmetic forms"): ``a = I - R``, ``b = k a``,
``U = R + b``, the same operations in the same order (``dt * tau_mem_inv``
is ``1.0 * k``, ``I + v_leak`` is ``I + 0``), so the two agree bit for bit
for every leak, float32 and float64; an immediate reset and the strict
comparison: hard reset to ``v_reset`` (``reset_value``) or soft reset
(``reset_subtract``); Readouts are ``LIBoxCell``.

eventsim's default "product" form ``fl(fl(lam R) + fl(g I))`` with
``g = 1 - lam`` is the same map in exact arithmetic but rounds differently:
equal to Norse's when ``lam = 1/2`` and ``I - R`` is representable (both
products by 1/2 are exact), an ulp apart within a few float32 steps for
other leaks (tests/test_norse.py). The adapter therefore declines
product-form layers.

Norse returns the potential after the reset. The adapter reports eventsim's
pre-threshold U instead: Norse's own ``v'``, which its reset method receives
(:class:`_PotentialTap`). Everything else (another arithmetic form, so IF
neurons and spiking average pooling, whose ``lam = 1`` would leave no input,
``>=``, a soft reset with an infinite threshold) raises
:class:`~eventsim.testing.Unsupported` naming the layer.

Gradients are Norse's own autograd: the spike carries its surrogate
(``LIFBoxParameters(method, alpha)``, :data:`SURROGATES`) into the reset,
which is eventsim's ``bptt`` with ``detach_reset=False``.

Needs torch and Norse (docs/conventions.md says how to install Norse on a
CPU-only machine).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventsim.extras import require
from eventsim.layers import LIF, Conv2d, Layer, Linear, Readout, Residual
from eventsim.learning.surrogates import FastSigmoid, Sigmoid, Triangle
from eventsim.network import Network
from eventsim.testing.protocol import GradientRequest, Unsupported
from eventsim.testing.strategies import Features
from eventsim.testing.torch_modules import (
    RecordingModel,
    network_output,
    one_thread,
    parameter_gradients,
    synapse_module,
)

#: Leak factors: dyadic ones, Lee's exp(-1/100), and 0.9 and 2/3, whose 1 / (1 - lam) is no power of two.
LEAKS = (0.5, 0.75, 0.875, 0.9375, float(np.exp(-0.01)), 0.9, 2 / 3)
#: eventsim surrogates with a Norse threshold method (``LIFBoxParameters(method, alpha)``, Norse 1.1
#: ``functional/threshold.py``): "super" is ``1 / (|x| + 1)^2`` whatever its alpha (SuperSpike's
#: backward in Norse 1.1 does not use alpha), eventsim's ``FastSigmoid(c=1, b=1)``; "triangle" with
#: alpha = 1 is ``max(0, 1 - |x|)``, ``Triangle(width=1)``; "tanh" with alpha = 2 is
#: ``1 - tanh(2x)^2 = 4 sig(4x) (1 - sig(4x))``, ``Sigmoid(alpha=4)``.
SURROGATES = (FastSigmoid(c=1.0, b=1.0), Triangle(width=1.0), Sigmoid(alpha=4.0))
#: What the adapter reproduces: box neurons in the "euler" arithmetic form
#: (gain 1 - leak) with any leak below 1, the strict comparison, an immediate
#: hard or soft reset, float32 and float64; in the gradient Norse's
#: convention, the reset not detached.
FEATURES = Features(neurons={"lif"}, leaks=LEAKS, arithmetic={"euler"}, detach_reset="off",
                    surrogates=SURROGATES).without("spiking_avg", ">=")


def _require() -> tuple[Any, Any]:
    return require("torch", "the Norse adapter"), require("norse.torch", "the Norse adapter")


class NorseCandidate:
    """The candidate "norse": eventsim networks rebuilt from Norse's box neurons and torch modules."""

    name = "norse"
    features = FEATURES

    def build(self, network: Network) -> NorseModel:
        return NorseModel(network)


class NorseModel(RecordingModel):
    """A Norse model of an eventsim network, run step by step.

    ``steps`` lists ``(layer name, callable)`` in network order: torch modules
    for synapses, :class:`_NorseNeurons` for neuron layers (a synapse that
    feeds one stays a step of its own), :class:`_ResidualBlock` for residual
    blocks.
    """

    def __init__(self, network: Network) -> None:
        self.torch, self.norse = _require()
        self.network = network
        self.dtype = self.torch.float64 if network.dtype == np.float64 else self.torch.float32
        self.weighted: dict[str, Any] = {}
        self.steps = [(layer.name, self._module(layer)) for layer in network.layers]
        self.neurons = [neuron for _, step in self.steps for neuron in _neurons_in(step)]

    # ------------------------------------------------------------- building
    def _module(self, layer: Layer) -> Any:
        module = synapse_module(layer, self.dtype)
        if module is not None:
            if isinstance(layer, (Conv2d, Linear)):
                self.weighted[layer.name] = module
            return module
        if isinstance(layer, LIF):
            return _NorseNeurons(self, layer)
        if isinstance(layer, Residual):
            return _ResidualBlock(self, layer)
        raise Unsupported(f"{_where(layer)}: has no Norse counterpart in this adapter")

    def tensor(self, value: Any) -> Any:
        """``value`` as a tensor in the model's dtype."""
        return self.torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype)

    # -------------------------------------------------------------- running
    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        """Every reported layer's per-step output and potential tensors, from Norse's initial state."""
        for neuron in self.neurons:
            neuron.reset()
        records: dict[str, tuple[list, list | None]] = {}
        for t in range(spikes.shape[0]):
            x = self.torch.from_numpy(np.ascontiguousarray(spikes[t])).to(self.dtype)
            for name, step in self.steps:
                x = step(x)
                if not _neurons_in(step):
                    records.setdefault(name, ([], None))[0].append(x)
        for neuron in self.neurons:
            records[neuron.name] = (neuron.spikes, neuron.potentials)
        return records

    def gradients(self, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
        """Norse's gradients of ``L = sum(out * request.grad_output)`` (eventsim/testing/protocol.py).

        Raises :class:`~eventsim.testing.Unsupported` for ``detach_reset=True``
        (Norse's reset takes the spike with its surrogate gradient) and for
        surrogates without a Norse threshold method (:data:`SURROGATES`).
        """
        if request.detach_reset:
            raise Unsupported("Norse's reset takes the spike with its surrogate gradient; detach_reset=True has "
                              "no counterpart")
        method = _norse_method(request.surrogate)
        for neuron in self.neurons:
            neuron.fire_with(*method)
        with self.torch.enable_grad(), one_thread():
            return parameter_gradients(network_output(self.network, self._forward(spikes)), request, self.weighted)


def _where(layer: Layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _norse_method(surrogate: Any) -> tuple[str, float]:
    """Norse's ``(method, alpha)`` for an eventsim surrogate (:data:`SURROGATES`), or Unsupported."""
    if isinstance(surrogate, FastSigmoid) and surrogate.c == 1.0 and surrogate.b == 1.0:
        return "super", 100.0  # Norse's default alpha, which its SuperSpike backward does not use
    if isinstance(surrogate, Triangle) and surrogate.width == 1.0:
        return "triangle", 1.0
    if isinstance(surrogate, Sigmoid) and surrogate.alpha == 4.0:
        return "tanh", 2.0
    raise Unsupported(f"surrogate {surrogate!r} has no Norse threshold method (super = fast_sigmoid(c=1, b=1), "
                      "triangle = triangle(width=1), tanh(2) = sigmoid(alpha=4))")


class _PotentialTap:
    """A Norse reset method that keeps the potential it is given: v' before the reset, eventsim's U."""

    def __init__(self, reset: Any) -> None:
        self.reset = reset
        self.before: Any = None

    def __call__(self, z: Any, v: Any, v_reset: Any, v_th: Any) -> Any:
        self.before = v
        return self.reset(z, v, v_reset, v_th)


class _NorseNeurons:
    """One neuron layer as a Norse cell with its state; keeps the spikes and the potentials U of each step."""

    def __init__(self, model: NorseModel, neuron: LIF) -> None:
        if neuron.extended:
            raise Unsupported(f"{_where(neuron)}: this adapter builds Norse's box neurons (LIFBoxCell, LIBoxCell), "
                              f"which have no {', '.join(neuron.extended)}")
        if neuron.arithmetic != "euler":  # also every IF neuron: with leak 1 the Euler form takes no input
            raise Unsupported(f"{_where(neuron)}: Norse computes v + dt/tau (I - v), eventsim's arithmetic='euler'; "
                              f"arithmetic={neuron.arithmetic!r} (leak {neuron.leak}) rounds differently")
        gain = 1.0 - neuron.leak  # k, rounded once to the dtype by model.tensor, as eventsim rounds it
        self.name = neuron.name
        self.reset()
        fn = model.norse
        shape = model.network.shapes[neuron.name][1]
        if isinstance(neuron, Readout):
            self.tap = self.parameters = None
            self.cell = fn.LIBoxCell(fn.LIBoxParameters(tau_mem_inv=model.tensor(gain), v_leak=model.tensor(0.0)),
                                     dt=1.0)
            return
        if not neuron.strict:
            raise Unsupported(f"{_where(neuron)}: Norse fires on v - v_th > 0; strict=False (>=) has no counterpart")
        theta = neuron.thresholds(shape)
        if neuron.reset == "soft" and not np.all(np.isfinite(theta)):
            raise Unsupported(f"{_where(neuron)}: Norse's subtractive reset computes 0 * (v - inf) = NaN for an "
                              "infinite threshold")
        self.tap = _PotentialTap(fn.reset_value if neuron.reset == "hard" else fn.reset_subtract)
        self.parameters = fn.LIFBoxParameters(
            tau_mem_inv=model.tensor(gain), v_leak=model.tensor(0.0),
            v_th=model.tensor(theta.reshape((shape[0],) + (1,) * (len(shape) - 1))),
            v_reset=model.tensor(neuron.v_reset), reset_method=self.tap,
        )
        self.cell = fn.LIFBoxCell(self.parameters, dt=1.0)
        self.box_cell = fn.LIFBoxCell

    def fire_with(self, method: str, alpha: float) -> None:
        """Rebuild the cell with Norse's threshold ``method`` and its ``alpha`` (the surrogate gradient)."""
        if self.tap is not None:
            self.cell = self.box_cell(self.parameters._replace(method=method, alpha=alpha), dt=1.0)

    def reset(self) -> None:
        """Back to Norse's initial state (``v = v_leak = 0``) with empty records."""
        self.state: Any = None
        self.spikes: list = []
        self.potentials: list = []

    def __call__(self, current: Any) -> Any:
        out, self.state = self.cell(current, self.state)
        if self.tap is None:  # a leaky integrator: its output is U, and it never fires
            self.potentials.append(out)
            out = out.new_zeros(out.shape)
        else:
            self.potentials.append(self.tap.before)
        self.spikes.append(out)
        return out


class _ResidualBlock:
    """A residual block: main path and skip currents summed into one neuron layer."""

    def __init__(self, model: NorseModel, block: Residual) -> None:
        self.main = [(layer.name, model._module(layer)) for layer in block.main]
        self.skip = model._module(block.skip)
        self.neuron = _NorseNeurons(model, block.neuron)

    def __call__(self, x: Any) -> Any:
        main = x
        for _, module in self.main:
            main = module(main)
        return self.neuron(main + self.skip(x))


def _neurons_in(step: Any) -> list[_NorseNeurons]:
    """The neuron layers of one step, in network order."""
    if isinstance(step, _NorseNeurons):
        return [step]
    if isinstance(step, _ResidualBlock):
        return [n for _, module in step.main for n in _neurons_in(module)] + [step.neuron]
    return []
