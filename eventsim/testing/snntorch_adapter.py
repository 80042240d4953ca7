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
:class:`~eventsim.testing.Unsupported` naming the layer.

Gradients are snnTorch's: autograd through ``Leaky``, whose reset
(``mem_reset``) is always detached, with the spike's derivative from
snnTorch's surrogate classes (:data:`SURROGATES`). One thing is changed:
snnTorch's spikes are float32 whatever the potential's dtype (``(x >
0).float()``), so in a float64 network every gradient that flows back
through a spike is rounded to float32 (relative error about 1e-7, far above
the contract's 1e-9). The adapter therefore fires in the potential's dtype
and calls the backward of snnTorch's own surrogate class
(:func:`_spike_in_dtype`): the surrogate formula and the neuron are
snnTorch's, only the dtype of the spike is not.

Needs torch and snntorch (the ``torch`` and ``snntorch`` extras, :mod:`eventsim.extras`).
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from eventsim.bench.peer import require
from eventsim.layers import LIF, Conv2d, Layer, Linear, Readout, Residual, SpikingAvgPool
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid
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

#: eventsim surrogates with an snnTorch counterpart: ``atan(alpha)``,
#: ``fast_sigmoid(slope)`` (height 1: eventsim's ``b = 1``),
#: ``straight_through_estimator()`` (derivative 1: ``FastSigmoid(c=0, b=1)``)
#: and ``sigmoid(slope)``. snnTorch's ``triangular`` is not a triangle
#: (its derivative is +theta below the threshold and -theta above), and its
#: ``sigmoid`` backward ``slope e^(-slope x) / (e^(-slope x) + 1)^2`` is
#: inf / inf = NaN once ``slope x < -709`` (float64): with its default slope 25
#: a potential 28 below the threshold, which generated cases reach; the slope 4
#: needs 177.
SURROGATES = (ArcTan(), ArcTan(alpha=5.0), FastSigmoid(c=25.0, b=1.0), FastSigmoid(c=0.0, b=1.0), Sigmoid(alpha=4.0))
#: What the adapter reproduces bit for bit (with dyadic weights), float32 and
#: float64, and differentiates as snnTorch does (the reset detached). It also
#: takes a soft reset with ``reset_delayed=True`` ("subtract"), which
#: :class:`Features` cannot single out from the immediate soft reset.
FEATURES = Features(detach_reset="on", surrogates=SURROGATES).without("soft", "v_reset", ">=").including(
    "reset_delayed")


class SnnTorchCandidate:
    """The candidate "snntorch": eventsim networks rebuilt from snnTorch modules."""

    name = "snntorch"
    features = FEATURES

    def build(self, network: Network) -> SnnTorchModel:
        return SnnTorchModel(network)


class SnnTorchModel(RecordingModel):
    """An snnTorch model of an eventsim network, run step by step.

    ``steps`` lists ``(layer name, module)`` in network order (residual
    blocks as one callable); ``module`` is an ``nn.Sequential`` of them when
    the network has no residual block, e.g. for snnTorch's ``export_to_nir``.
    ``weighted`` maps the names of Conv2d and Linear layers to their modules.
    """

    def __init__(self, network: Network) -> None:
        torch, snn = require()
        self.torch, self.snn = torch, snn
        self.network = network
        self.dtype = torch.float64 if network.dtype == np.float64 else torch.float32
        self.weighted: dict[str, Any] = {}
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
            if isinstance(layer, (Conv2d, Linear)):
                self.weighted[layer.name] = module
            return module
        if isinstance(layer, SpikingAvgPool):
            return nn.Sequential(nn.AvgPool2d(layer.kernel_size, stride=layer.stride),
                                 self._leaky(layer.neuron, shape, layer))
        if isinstance(layer, LIF):
            return self._leaky(layer, shape, layer)
        if isinstance(layer, Residual):
            return _ResidualModule(self, layer)
        raise Unsupported(f"layer {layer.name!r} ({type(layer).__name__}) has no snnTorch counterpart in this adapter")

    def _leaky(self, neuron: LIF, shape: tuple[int, ...], layer: Layer) -> Any:
        """``snn.Leaky`` with per-neuron beta and threshold tensors (what ``export_to_nir`` needs)."""
        torch = self.torch
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        if neuron.extended:
            raise Unsupported(f"{where}: this adapter builds snnTorch's Leaky, which has no "
                              f"{', '.join(neuron.extended)}")
        if neuron.input_gain != 1.0:
            raise Unsupported(f"{where}: snnTorch's Leaky adds its input unscaled; input_gain {neuron.input_gain} "
                              "is not 1")
        if isinstance(neuron, Readout):
            mechanism = "none"
        else:
            if not neuron.strict:
                raise Unsupported(f"{where}: snnTorch fires on U - theta > 0; strict=False (>=) has no counterpart")
            if neuron.reset == "hard" and neuron.v_reset != 0.0:
                raise Unsupported(f"{where}: snnTorch resets to zero; v_reset {neuron.v_reset} has no counterpart")
            if neuron.reset == "soft" and not neuron.reset_delayed:
                raise Unsupported(f"{where}: snnTorch's subtractive reset acts one step late; needs "
                                  "reset_delayed=True")
            mechanism = "zero" if neuron.reset == "hard" else "subtract"
        theta = neuron.thresholds(shape).reshape((shape[0],) + (1,) * (len(shape) - 1)) * np.ones(shape)
        return self.snn.Leaky(
            beta=torch.full(shape, neuron.leak, dtype=self.dtype), threshold=torch.tensor(theta, dtype=self.dtype),
            reset_mechanism=mechanism, init_hidden=True,
        )

    def leakies(self) -> list:
        """Every ``snn.Leaky`` of the model."""
        return [sub for _, module in self.steps for sub in module.modules() if isinstance(sub, self.snn.Leaky)]

    # -------------------------------------------------------------- running
    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        """Every reported layer's per-step output and potential tensors, from the reset state."""
        for leaky in self.leakies():
            leaky.reset_mem()
        records: dict[str, tuple[list, list | None]] = {}
        for t in range(spikes.shape[0]):
            x = self.torch.from_numpy(np.ascontiguousarray(spikes[t])).to(self.dtype)
            for name, module in self.steps:
                x = module(x).to(self.dtype)  # Leaky's own spikes are float32 whatever its input
                self._record(name, module, x, records)
        return records

    def gradients(self, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
        """snnTorch's gradients of ``L = sum(out * request.grad_output)`` (eventsim/testing/protocol.py).

        Raises :class:`~eventsim.testing.Unsupported` for ``detach_reset=False``
        (``Leaky`` always detaches its reset) and for surrogates without an
        snnTorch counterpart (:data:`SURROGATES`).
        """
        if not request.detach_reset:
            raise Unsupported("snnTorch's Leaky always detaches its reset (mem_reset); detach_reset=False has no "
                              "counterpart")
        fire = _snntorch_surrogate(self.snn, request.surrogate)
        default = [leaky.spike_grad for leaky in self.leakies()]
        for leaky in self.leakies():
            leaky.spike_grad = fire
        try:
            with self.torch.enable_grad(), one_thread():
                return parameter_gradients(network_output(self.network, self._forward(spikes)), request,
                                           self.weighted)
        finally:
            for leaky, spike_grad in zip(self.leakies(), default, strict=True):
                leaky.spike_grad = spike_grad

    def _record(self, name: str, module: Any, x: Any, records: dict) -> None:
        if isinstance(module, _ResidualModule):
            for inner, (out, mem) in module.records.items():
                _append(records, inner, out, mem)
            return
        leaky = module[-1] if isinstance(module, self.torch.nn.Sequential) else module
        _append(records, name, x, leaky.mem if isinstance(leaky, self.snn.Leaky) else None)


def _append(records: dict, name: str, out: Any, mem: Any) -> None:
    outputs, potentials = records.setdefault(name, ([], None if mem is None else []))
    outputs.append(out)
    if mem is not None:
        potentials.append(mem)


def _snntorch_surrogate(snn: Any, surrogate: Any) -> Any:
    """The spike function firing with ``surrogate``'s snnTorch counterpart, or Unsupported."""
    classes = snn.surrogate
    if isinstance(surrogate, ArcTan):
        function, attributes = classes.ATan, {"alpha": surrogate.alpha}
    elif isinstance(surrogate, FastSigmoid) and surrogate.b == 1.0:
        if surrogate.c == 0.0:
            function, attributes = classes.StraightThroughEstimator, {}
        else:
            function, attributes = classes.FastSigmoid, {"slope": surrogate.c}
    elif isinstance(surrogate, Sigmoid):
        function, attributes = classes.Sigmoid, {"slope": surrogate.alpha}
    else:
        raise Unsupported(f"surrogate {surrogate!r} has no snnTorch counterpart (atan, fast_sigmoid with height 1, "
                          "straight_through_estimator, sigmoid)")
    spike = _spike_in_dtype()
    return lambda x: spike.apply(x, function, attributes)


@lru_cache(maxsize=1)
def _spike_in_dtype() -> Any:
    """An autograd function: snnTorch's spike ``1[x > 0]`` in ``x``'s dtype, differentiated by the
    backward of an snnTorch surrogate class (which reads ``ctx.saved_tensors`` and its parameters)."""
    import torch

    class SpikeInDtype(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, function, attributes):
            ctx.save_for_backward(x)
            ctx.function, ctx.attributes = function, attributes
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            result = ctx.function.backward(SimpleNamespace(saved_tensors=(x,), **ctx.attributes), grad)
            return (result[0] if isinstance(result, tuple) else result), None, None

    return SpikeInDtype


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
            self.records[name] = (main, leaky.mem if isinstance(leaky, self.model.snn.Leaky) else None)
        out = self.neuron(main + self.skip(x)).to(self.model.dtype)
        self.records[self.neuron_name] = (out, self.neuron.mem)
        return out
