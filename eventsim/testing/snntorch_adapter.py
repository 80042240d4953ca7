"""snnTorch as a candidate (eventsim/testing/protocol.py).

:class:`SnnTorchCandidate` builds, from an eventsim network, the snnTorch
model that computes the same thing: ``nn.Conv2d`` / ``nn.Linear`` with the
same weights, ``nn.AvgPool2d`` / ``nn.MaxPool2d``, sum pooling as
``avg_pool2d(divisor_override=1)``, and ``snn.Leaky`` neurons with
``beta = lam`` and eventsim's thresholds. What snnTorch's ``Leaky`` computes
(snnTorch 1.0, ``_neurons/leaky.py``; docs/conventions.md):

    reset_mechanism="zero",     reset_delay=True:  U[t] = beta (1 - s[t-1]) U[t-1] + I[t]
    reset_mechanism="subtract", reset_delay=True:  U[t] = beta U[t-1] + I[t] - theta s[t-1]
    s[t] = 1[U[t] - theta > 0],  U[0] = 0, mem reported before any reset

The first is eventsim's default hard reset to 0 (also with
``reset_delayed=True``, which is the same thing when v_reset = 0); the
second is eventsim's soft reset with ``reset_delayed=True``. Readouts are
``Leaky(reset_mechanism="none")`` with theta = inf. Everything else (``>=``,
an input gain, ``v_reset != 0``, an immediate soft reset) raises
:class:`~eventsim.errors.LayerError` naming the layer.

Needs torch and snntorch (the ``torch`` and ``snntorch`` extras, :mod:`eventsim.extras`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventsim.errors import LayerError
from eventsim.layers import LIF, Layer, Readout, Residual, SpikingAvgPool
from eventsim.bench.peer import require
from eventsim.network import Network
from eventsim.testing.protocol import LayerRecord
from eventsim.testing.strategies import Features
from eventsim.testing.torch_modules import synapse_module

#: What the adapter reproduces bit for bit (with dyadic weights). It also
#: takes a soft reset with ``reset_delayed=True`` ("subtract"), which
#: :class:`Features` cannot single out from the immediate soft reset.
FEATURES = Features().without("soft", "v_reset", ">=").including("reset_delayed")


class SnnTorchCandidate:
    """The candidate "snntorch": eventsim networks rebuilt from snnTorch modules."""

    name = "snntorch"
    features = FEATURES

    def build(self, network: Network) -> SnnTorchModel:
        return SnnTorchModel(network)


class SnnTorchModel:
    """An snnTorch model of an eventsim network, run step by step.

    ``steps`` lists ``(layer name, module)`` in network order (residual
    blocks as one callable); ``module`` is an ``nn.Sequential`` of them when
    the network has no residual block, e.g. for snnTorch's ``export_to_nir``.
    """

    def __init__(self, network: Network) -> None:
        torch, snn = require()
        self.torch, self.snn = torch, snn
        self.network = network
        self.dtype = torch.float64 if network.dtype == np.float64 else torch.float32
        self.steps = [(layer.name, self._module(layer)) for layer in network.layers]
        self.module = None
        if not any(isinstance(layer, Residual) for layer in network.layers):
            self.module = torch.nn.Sequential(*(m for _, m in self.steps))

    # ------------------------------------------------------------- building
    def _module(self, layer: Layer) -> Any:
        nn = self.torch.nn
        shape = self.network.shapes[layer.name][1]
        module = synapse_module(layer, self.dtype)
        if module is not None:
            return module
        if isinstance(layer, SpikingAvgPool):
            return nn.Sequential(nn.AvgPool2d(layer.kernel_size, stride=layer.stride),
                                 self._leaky(layer.neuron, shape, layer))
        if isinstance(layer, LIF):
            return self._leaky(layer, shape, layer)
        if isinstance(layer, Residual):
            return _ResidualModule(self, layer)
        raise LayerError(layer, "has no snnTorch counterpart in this adapter")

    def _leaky(self, neuron: LIF, shape: tuple[int, ...], layer: Layer) -> Any:
        """``snn.Leaky`` with per-neuron beta and threshold tensors (what ``export_to_nir`` needs)."""
        torch = self.torch
        if neuron.input_gain != 1.0:
            raise LayerError(layer, f"snnTorch's Leaky adds its input unscaled; input_gain {neuron.input_gain} is not 1")
        if isinstance(neuron, Readout):
            mechanism = "none"
        else:
            if not neuron.strict:
                raise LayerError(layer, "snnTorch fires on U - theta > 0; strict=False (>=) has no counterpart")
            if neuron.reset == "hard" and neuron.v_reset != 0.0:
                raise LayerError(layer, f"snnTorch resets to zero; v_reset {neuron.v_reset} has no counterpart")
            if neuron.reset == "soft" and not neuron.reset_delayed:
                raise LayerError(layer, "snnTorch's subtractive reset acts one step late; use reset_delayed=True")
            mechanism = "zero" if neuron.reset == "hard" else "subtract"
        theta = neuron.thresholds(shape).reshape((shape[0],) + (1,) * (len(shape) - 1)) * np.ones(shape)
        return self.snn.Leaky(
            beta=torch.full(shape, neuron.leak, dtype=self.dtype), threshold=torch.tensor(theta, dtype=self.dtype),
            reset_mechanism=mechanism, init_hidden=True,
        )

    # -------------------------------------------------------------- running
    def reset(self) -> None:
        """Set every Leaky's membrane to the reset state (zeros at the next step)."""
        for _, module in self.steps:
            for sub in module.modules():
                if isinstance(sub, self.snn.Leaky):
                    sub.reset_mem()

    def run(self, spikes: np.ndarray) -> dict[str, LayerRecord]:
        torch = self.torch
        self.reset()
        outputs: dict[str, list] = {}
        potentials: dict[str, list] = {}
        with torch.no_grad():
            for t in range(spikes.shape[0]):
                x = torch.from_numpy(np.ascontiguousarray(spikes[t])).to(self.dtype)
                for name, module in self.steps:
                    x = module(x).to(self.dtype)  # Leaky's spikes are float32 whatever its input
                    self._record(name, module, x, outputs, potentials)
        return {
            name: LayerRecord(np.stack(values), np.stack(potentials[name]) if name in potentials else None)
            for name, values in outputs.items()
        }

    def _record(self, name: str, module: Any, x: Any, outputs: dict, potentials: dict) -> None:
        if isinstance(module, _ResidualModule):
            for inner, value in module.records.items():
                outputs.setdefault(inner, []).append(value[0])
                if value[1] is not None:
                    potentials.setdefault(inner, []).append(value[1])
            return
        outputs.setdefault(name, []).append(x.numpy().copy())
        leaky = module[-1] if isinstance(module, self.torch.nn.Sequential) else module
        if isinstance(leaky, self.snn.Leaky):
            potentials.setdefault(name, []).append(leaky.mem.numpy().copy())


class _ResidualModule:
    """A residual block: main path and skip currents summed into one Leaky; records its inner layers."""

    def __init__(self, model: SnnTorchModel, block: Residual) -> None:
        self.model = model
        self.main = [(layer.name, model._module(layer)) for layer in block.main]
        self.skip = model._module(block.skip)
        self.neuron_name = block.neuron.name
        self.neuron = model._leaky(block.neuron, model.network.shapes[block.neuron.name][1], block.neuron)
        self.records: dict[str, tuple] = {}

    def modules(self) -> list:
        """Every torch module inside the block, as ``nn.Module.modules`` lists them."""
        return [m for _, module in self.main for m in module.modules()] + [self.skip, self.neuron]

    def __call__(self, x: Any) -> Any:
        self.records = {}
        main = x
        for name, module in self.main:
            main = module(main).to(self.model.dtype)
            leaky = module[-1] if isinstance(module, self.model.torch.nn.Sequential) else module
            mem = leaky.mem.numpy().copy() if isinstance(leaky, self.model.snn.Leaky) else None
            self.records[name] = (main.numpy().copy(), mem)
        out = self.neuron(main + self.skip(x)).to(self.model.dtype)
        self.records[self.neuron_name] = (out.numpy().copy(), self.neuron.mem.numpy().copy())
        return out
