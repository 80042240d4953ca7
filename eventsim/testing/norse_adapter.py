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

from v = v_leak = 0. With ``dt tau_mem_inv = 1 - lam`` this is eventsim's
``U[t] = lam R(U[t-1], s[t-1]) + g I[t]`` with ``g = 1 - lam`` (the leak
applied to the input), an immediate reset and the strict comparison: hard
reset to ``v_reset`` (``reset_value``) or soft reset (``reset_subtract``);
Readouts are ``LIBoxCell``. The two agree in exact arithmetic; Norse rounds
``I - v``, its product with ``1 - lam`` and the sum, eventsim ``lam R``,
``g I`` and the sum, so the floating-point results are equal whenever every
intermediate value is exact (dyadic weights, inputs and leaks, and few enough
steps that the potentials' bits fit the dtype's mantissa; docs/semantics.md, "Numerics").

Norse returns the potential after the reset. The adapter reports eventsim's
pre-threshold U instead: Norse's own ``v'``, which its reset method receives
(:class:`_PotentialTap`). Everything else (``input_gain != 1 - leak``, IF
neurons and spiking average pooling, whose ``lam = 1`` would leave no input,
``>=``, ``reset_delayed``, a soft reset with an infinite threshold) raises
:class:`~eventsim.errors.LayerError` naming the layer.

Needs torch and Norse (docs/conventions.md says how to install Norse on a
CPU-only machine).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventsim.errors import LayerError
from eventsim.extras import require
from eventsim.layers import LIF, Layer, Readout, Residual
from eventsim.network import Network
from eventsim.testing.protocol import LayerRecord
from eventsim.testing.strategies import Features
from eventsim.testing.torch_modules import synapse_module

#: Leak factors whose ``1 - lam`` is dyadic, so that the input gain is exact.
LEAKS = (0.5, 0.75, 0.875)
#: What the adapter reproduces once every generated neuron gets
#: ``input_gain = 1 - leak`` (which :class:`Features` cannot ask for; see
#: :func:`with_euler_gain`). Bit for bit in float64 with dyadic weights: in
#: float32 a potential leaked by 0.875 outgrows the mantissa within a few
#: steps and the two roundings of the same sum differ.
FEATURES = Features(leaks=LEAKS, dtypes=(np.float64,)).without("if", "spiking_avg", ">=")


def _require() -> tuple[Any, Any]:
    return require("torch", "the Norse adapter"), require("norse.torch", "the Norse adapter")


def with_euler_gain(network: Network) -> Network:
    """Set ``input_gain = 1 - leak`` on every neuron layer of ``network`` (in place) and return it.

    The forward-Euler gain of docs/semantics.md, "Neurons", the one Norse's
    box neurons apply. IF layers (``leak = 1``) would get gain 0, which
    eventsim refuses: they are left as they are (and the adapter refuses them).
    """
    for layer in network.walk():
        if isinstance(layer, LIF) and layer.leak < 1.0:
            layer.input_gain = 1.0 - layer.leak
    return network


class NorseCandidate:
    """The candidate "norse": eventsim networks rebuilt from Norse's box neurons and torch modules."""

    name = "norse"
    features = FEATURES

    def build(self, network: Network) -> NorseModel:
        return NorseModel(network)


class NorseModel:
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
        self.steps = [(layer.name, self._module(layer)) for layer in network.layers]

    # ------------------------------------------------------------- building
    def _module(self, layer: Layer) -> Any:
        module = synapse_module(layer, self.dtype)
        if module is not None:
            return module
        if isinstance(layer, LIF):
            return _NorseNeurons(self, layer)
        if isinstance(layer, Residual):
            return _ResidualBlock(self, layer)
        raise LayerError(layer, "has no Norse counterpart in this adapter")

    def tensor(self, value: Any) -> Any:
        """``value`` as a tensor in the model's dtype."""
        return self.torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype)

    # -------------------------------------------------------------- running
    def run(self, spikes: np.ndarray) -> dict[str, LayerRecord]:
        torch = self.torch
        neurons = [neuron for _, step in self.steps for neuron in _neurons_in(step)]
        for neuron in neurons:
            neuron.reset()
        outputs: dict[str, list] = {}
        with torch.no_grad():
            for t in range(spikes.shape[0]):
                x = torch.from_numpy(np.ascontiguousarray(spikes[t])).to(self.dtype)
                for name, step in self.steps:
                    x = step(x)
                    if not _neurons_in(step):
                        outputs.setdefault(name, []).append(x.numpy().copy())
        records = {name: LayerRecord(np.stack(values)) for name, values in outputs.items()}
        for neuron in neurons:
            records[neuron.name] = LayerRecord(np.stack(neuron.spikes), np.stack(neuron.potentials))
        return records


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
        gain = 1.0 - neuron.leak
        if neuron.input_gain != gain:
            raise LayerError(neuron, f"Norse's box neurons scale the input by dt/tau = 1 - leak = {gain}; "
                                     f"input_gain {neuron.input_gain} differs")
        if neuron.reset_delayed:
            raise LayerError(neuron, "Norse resets at once; reset_delayed=True has no counterpart")
        self.name = neuron.name
        self.reset()
        fn = model.norse
        shape = model.network.shapes[neuron.name][1]
        if isinstance(neuron, Readout):
            self.tap = None
            self.cell = fn.LIBoxCell(fn.LIBoxParameters(tau_mem_inv=model.tensor(gain), v_leak=model.tensor(0.0)),
                                     dt=1.0)
            return
        if not neuron.strict:
            raise LayerError(neuron, "Norse fires on v - v_th > 0; strict=False (>=) has no counterpart")
        theta = neuron.thresholds(shape)
        if neuron.reset == "soft" and not np.all(np.isfinite(theta)):
            raise LayerError(neuron, "Norse's subtractive reset computes 0 * (v - inf) = NaN for an infinite threshold")
        self.tap = _PotentialTap(fn.reset_value if neuron.reset == "hard" else fn.reset_subtract)
        parameters = fn.LIFBoxParameters(
            tau_mem_inv=model.tensor(gain), v_leak=model.tensor(0.0),
            v_th=model.tensor(theta.reshape((shape[0],) + (1,) * (len(shape) - 1))),
            v_reset=model.tensor(neuron.v_reset), reset_method=self.tap,
        )
        self.cell = fn.LIFBoxCell(parameters, dt=1.0)

    def reset(self) -> None:
        """Back to Norse's initial state (``v = v_leak = 0``) with empty records."""
        self.state: Any = None
        self.spikes: list = []
        self.potentials: list = []

    def __call__(self, current: Any) -> Any:
        out, self.state = self.cell(current, self.state)
        if self.tap is None:  # a leaky integrator: its output is U, and it never fires
            self.potentials.append(out.numpy().copy())
            out = out.new_zeros(out.shape)
        else:
            self.potentials.append(self.tap.before.numpy().copy())
        self.spikes.append(out.numpy().copy())
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
