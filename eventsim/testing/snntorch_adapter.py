"""snnTorch as a candidate (eventsim/testing/protocol.py), and its rows of the conformance matrix.

:class:`SnnTorchCandidate` builds, from an eventsim network, the snnTorch
model that computes the same thing: ``nn.Conv2d`` / ``nn.Linear`` with the
same weights, ``nn.AvgPool2d`` / ``nn.MaxPool2d``, sum pooling as
``avg_pool2d(divisor_override=1)``, and snnTorch 1.0's neurons with
``beta = lam``, eventsim's thresholds and ``init_hidden=True``:

- a LIF layer: ``snn.Leaky``; with a synaptic current (``synapse_leak``
  alpha, ``synapse_gain`` 1): ``snn.Synaptic(alpha=alpha)``;
- a :class:`~eventsim.Recurrent` block: ``snn.RLeaky`` / ``snn.RSynaptic``
  with ``all_to_all=True``, its ``recurrent`` module the block's connection
  (an ``nn.Linear``, or the "same" ``nn.Conv2d`` of snnTorch's
  ``conv2d_channels`` form);
- a Readout: the same with ``reset_mechanism="none"`` and theta = inf.

What they compute (``_neurons/leaky.py``, ``synaptic.py``, ``rleaky.py``,
``rsynaptic.py``, ``neurons.py``; docs/conventions.md), with ``reset[t] =
s[t-1]`` (``mem_reset`` of the previous potential, detached), ``X[t]`` the
input (``syn[t] = alpha syn[t-1] + I[t]`` for the synaptic neurons, the
recurrent ``W s[t-1] + b`` added last for the recurrent ones) and
snnTorch's default ``reset_delay=True``::

    "subtract":  U[t] = beta U[t-1] + X[t] - theta reset[t]
    "zero":      U[t] = beta (1 - reset[t]) U[t-1] + X[t]          (Leaky)
                 U[t] = (1 - reset[t]) (beta U[t-1] + X[t])        (Synaptic, RLeaky, RSynaptic)
    s[t] = 1[U[t] - theta > 0],  U[0] = 0

"subtract" is eventsim's soft reset with ``reset_delayed=True``; Leaky's
"zero" is eventsim's hard reset to 0 (delayed or not: the same when
``v_reset = 0``). The other three neurons' "zero" discards the whole new
potential, the step's input included: no eventsim reset does
(:data:`MATRIX_ROWS` shows it). The recurrent neurons add ``W s`` after
``beta U + I``; eventsim adds it to the input first, which rounds
differently once the state needs all its bits.

``candidate(reset_delay=False)`` builds every neuron with
``reset_delay=False``, snnTorch's immediate reset: ``U - (s - reset)
theta`` or ``U - (s - reset) U`` right after the spike, where ``reset``
(the spike the reported, already reset potential would give) is meant to
avoid a double reset. For "zero" that is eventsim's hard reset with the
spike carrying its surrogate into it (``detach_reset=False``). For
"subtract" it is not a reset eventsim has, nor one snnTorch means: a
potential still above theta after its reset does not fire at the next step
and is given theta back, for ever (:func:`reproduce_subtract_without_reset_delay`).
The adapter reports the pre-threshold U (the potential snnTorch's ``fire``
receives, :class:`_FireTap`), whichever reset.

Everything else (``>=``, an input gain, a synaptic gain, ``v_reset != 0``,
an immediate soft reset under ``reset_delay=True``, a rest potential, an
initial potential, a clamp, several spikes per step, delays, which snnTorch
1.0 has none of) raises :class:`~eventsim.testing.Unsupported` naming the
layer.

Gradients are snnTorch's: autograd through its neurons, whose
``mem_reset`` is always detached (under ``reset_delay=False`` the spike
itself carries the reset), with the spike's derivative from snnTorch's
surrogate classes (:data:`SURROGATES`). One thing is changed: snnTorch's
spikes are float32 whatever the potential's dtype (``(x > 0).float()``),
so in a float64 network every gradient that flows back through a spike is
rounded to float32 (relative error about 1e-7, far above the contract's
1e-9), and a float64 recurrent connection cannot take them at all. The
adapter therefore fires in the potential's dtype and calls the backward of
snnTorch's own surrogate class (:func:`_spike_in_dtype`), ``atan(alpha=2)``
(snnTorch's default) outside gradient requests: the surrogate formula and
the neuron are snnTorch's, only the dtype of the spike is not.

Needs torch and snntorch (the ``torch`` and ``snntorch`` extras, :mod:`eventsim.extras`).
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from eventsim.bench.peer import require
from eventsim.layers import LIF, Conv2d, Delay, Layer, Linear, Readout, Recurrent, Residual, SpikingAvgPool
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid
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
#: What the default candidate reproduces bit for bit (with dyadic weights),
#: float32 and float64, and differentiates as snnTorch does (the reset
#: detached): ``Leaky`` with ``reset_mechanism="zero"``. It also takes a soft
#: reset with ``reset_delayed=True`` ("subtract"), which :class:`Features`
#: cannot single out from the immediate soft reset, and the synaptic and
#: recurrent neurons of :data:`MATRIX_ROWS`.
FEATURES = Features(detach_reset="on", surrogates=SURROGATES).without("soft", "v_reset", ">=").including(
    "reset_delayed")

#: Neurons with reset_mechanism="zero" (eventsim's hard reset to 0) and "subtract" (soft, reset_delayed=True).
_ZERO = FEATURES
_SUBTRACT = FEATURES.including("soft").without("hard")
#: Leaks that keep the sums of a recurrent layer exact over the generated steps (dyadic weights and
#: inputs; a halving adds one bit per step), so that where snnTorch adds the recurrent current does not
#: show (the module docstring; tests/test_snntorch.py shows it with the leak 3/4 in float32).
_EXACT_SUMS = "leaks=0.5,1"
#: The generated leaks below 1.
_LEAKY = "leaks=0.5,0.75,0.875,0.9375,0.9900498337491681"
#: What NIR's nodes and snnTorch's import_from_nir carry (eventsim/testing/nir_route.py): LIF neurons
#: (its IF case asserts r == 1, which no graph for its dt = 1e-4 has) with one threshold per layer, the
#: input unscaled, hard reset, no readout (it has no LI case); float32 (its weights are).
_NIR = Features(neurons={"lif"}, per_channel=False, readout=False, comparisons={">"}, resets={"hard"},
                v_reset=False).set(_LEAKY)
#: What export_to_nir has no case for: sum and max pooling, residual blocks (not an nn.Sequential), and
#: Leaky(beta=1), which it writes as a LIF with tau = dt / 0 = inf, a graph no reader can run.
_NOT_EXPORTED = ("sum", "max", "residual", "if", "spiking_avg")
_ZERO_DISCARDS_INPUT = Expected(
    "convention",
    "snnTorch 1.0's Synaptic, RLeaky and RSynaptic with reset_mechanism='zero' set the potential after a spike to "
    "(1 - reset) (beta U + X): the step's input is discarded with the old potential (synaptic.py _base_zero, "
    "rleaky.py and rsynaptic.py _base_zero), where Leaky and eventsim's hard reset zero the old potential only "
    "and add the input. No eventsim reset discards the input.")

#: The snnTorch rows of the conformance matrix (eventsim/testing/matrix_rows.py); the NIR routes' rows run
#: :mod:`eventsim.testing.nir_route`'s candidates (``candidate(route=...)``).
MATRIX_ROWS = (
    Row("Leaky, reset zero", _ZERO),
    Row("Leaky, reset subtract", _SUBTRACT),
    Row("Synaptic, reset subtract", _SUBTRACT.including("synaptic")),
    Row("Synaptic, reset zero", _ZERO.including("synaptic"), expected=_ZERO_DISCARDS_INPUT),
    Row("RLeaky, RSynaptic, reset subtract (leaks 1/2, 1)",
        _SUBTRACT.including("recurrent", "synaptic").set(_EXACT_SUMS)),
    Row("RLeaky, reset zero (leaks 1/2, 1)", _ZERO.including("recurrent").set(_EXACT_SUMS),
        expected=_ZERO_DISCARDS_INPUT),
    Row("RSynaptic, reset zero (leaks 1/2, 1)", _ZERO.including("recurrent", "synaptic").set(_EXACT_SUMS),
        expected=_ZERO_DISCARDS_INPUT),
    Row("Leaky, reset zero, reset_delay=False", _ZERO.set("detach_reset=off"), {"reset_delay": False}),
    Row("Leaky, reset subtract, reset_delay=False", _SUBTRACT.without("reset_delayed").set("detach_reset=off"),
        {"reset_delay": False},
        expected=Expected("defect", "snnTorch 1.0's Leaky(reset_mechanism='subtract', reset_delay=False) subtracts "
                          "(spike - reset) theta right after the spike, reset being the spike of the already reset "
                          "potential: a neuron still above theta after its reset does not fire at the next step, "
                          "and is given theta back whenever it does not fire, so it stays above its threshold "
                          "without ever firing again (leaky.py forward, _base_sub).",
                          reproducer="eventsim.testing.snntorch_adapter:reproduce_subtract_without_reset_delay")),
    *(Row(f"NIR route (import_from_nir): {name}", features, {"route": "nir"}, expected=expected, gradients=False)
      for name, features, expected in (
          ("LIF, CubaLIF; Linear", _NIR.set("layers=linear").including("synaptic"), None),
          ("LIF; Conv2d, AvgPool2d, residual", _NIR.set("layers=conv,avg,residual"), None),
          ("Flatten", _NIR.set("layers=conv,linear"), Expected(
              "defect", "snnTorch 1.0's import_from_nir builds NIR's Flatten(start_dim, end_dim), whose dimensions "
              "leave out the batch, as torch.nn.Flatten(start_dim, end_dim), whose dimensions count it: the batch "
              "is flattened too (import_nir.py _nir_to_snntorch_module; its own export_to_nir writes start_dim - 1).",
              reproducer="eventsim.testing.nir_route:reproduce_snntorch_flatten")),
          ("recurrent loops", _NIR.set("layers=linear", "leaks=0.5").including("recurrent"), Expected(
              "defect", "snnTorch 1.0's import_from_nir wraps a loop lif <-> w_rec into a subgraph input -> w_rec "
              "-> lif -> w_rec (import_nir.py _create_rnn_subgraph) and, having no NIRGraph case in its node map, "
              "lets nirtorch 2.6 run it as a generic graph instead of building RLeaky / RSynaptic: the neuron "
              "integrates W (I + s[t-1]) + b, the input fed through the recurrent weights; its own RLeaky does not "
              "survive export_to_nir and import_from_nir, and a graph with two loops fails to import.",
              reproducer="eventsim.testing.nir_route:reproduce_snntorch_recurrent_loops")),
          ("LIF's v_reset", _NIR.set("layers=linear").including("v_reset"), Expected(
              "defect", "snnTorch 1.0's import_from_nir builds every LIF node as Leaky(reset_mechanism='zero') and "
              "drops its v_reset: a neuron that should reset to v_reset != 0 resets to 0 (import_nir.py).",
              reproducer="eventsim.testing.nir_route:reproduce_snntorch_v_reset")))),
    Row("NIR route (export_to_nir): Leaky, reset zero", _ZERO.without(*_NOT_EXPORTED).set(_LEAKY),
        {"route": "export"}, gradients=False),
    Row("NIR route (export_to_nir): Leaky, reset subtract", _SUBTRACT.without(*_NOT_EXPORTED).set(_LEAKY),
        {"route": "export"}, gradients=False, expected=Expected(
            "defect", "snnTorch 1.0's export_to_nir writes every Leaky as a NIR LIF with v_reset = 0 whatever its "
            "reset_mechanism (export_nir.py _extract_snntorch_module): the default 'subtract' neurons, eventsim's "
            "reset='soft', reset_delayed=True, come back as a hard reset, in eventsim and in snnTorch's own "
            "import_from_nir alike.", flags="reset='soft', reset_delayed=True on the imported layers",
            reproducer="eventsim.testing.nir_route:reproduce_snntorch_export_subtract")),
)


class SnnTorchCandidate:
    """The candidate "snntorch": eventsim networks rebuilt from snnTorch modules.

    ``reset_delay``: the option of that name of every snnTorch neuron
    (snnTorch's default True: the reset acts at the next step).
    """

    name = "snntorch"
    features = FEATURES

    def __init__(self, reset_delay: bool = True) -> None:
        self.reset_delay = bool(reset_delay)

    def build(self, network: Network) -> SnnTorchModel:
        return SnnTorchModel(network, reset_delay=self.reset_delay)


def candidate(*, reset_delay: bool = True, route: str = "native") -> Any:
    """The candidate of a row of :data:`MATRIX_ROWS` (eventsim/testing/matrix_rows.py).

    ``route="native"``: :class:`SnnTorchCandidate` with ``reset_delay``;
    ``"nir"``: eventsim's NIR export read by snnTorch's ``import_from_nir``;
    ``"export"``: snnTorch's ``export_to_nir`` read by eventsim
    (:mod:`eventsim.testing.nir_route`).
    """
    if route == "native":
        return SnnTorchCandidate(reset_delay=reset_delay)
    from eventsim.testing import nir_route

    return nir_route.candidate("snntorch", direction={"nir": "import", "export": "export"}[route])


class SnnTorchModel(RecordingModel):
    """An snnTorch model of an eventsim network, run step by step.

    ``steps`` lists ``(layer name, module)`` in network order (residual
    blocks as one callable; a recurrent block under its neuron's name); ``module`` is an ``nn.Sequential`` of them when
    the network has no residual block, e.g. for snnTorch's ``export_to_nir``.
    ``weighted`` maps the names of Conv2d and Linear layers (recurrent
    connections included) to their modules.
    """

    def __init__(self, network: Network, reset_delay: bool = True) -> None:
        torch, snn = require()
        self.torch, self.snn = torch, snn
        self.network = network
        self.reset_delay = reset_delay
        self.dtype = torch.float64 if network.dtype == np.float64 else torch.float32
        self.fire = _snntorch_surrogate(snn, ArcTan())  # snnTorch's default spike_grad, atan(alpha=2)
        self.weighted: dict[str, Any] = {}
        # a recurrent block reports under its neuron's name
        self.steps = [(layer.neuron.name if isinstance(layer, Recurrent) else layer.name, self._module(layer))
                      for layer in network.layers]
        self.module = None
        if not any(isinstance(layer, Residual) for layer in network.layers):
            self.module = torch.nn.Sequential(*(m for _, m in self.steps))

    # ------------------------------------------------------------- building
    def _module(self, layer: Layer) -> Any:
        nn = self.torch.nn
        shape = self.network.shapes[layer.name][1]
        module = synapse_module(layer, self.dtype, self.weighted)
        if module is not None:
            return module
        if isinstance(layer, SpikingAvgPool):
            return nn.Sequential(nn.AvgPool2d(layer.kernel_size, stride=layer.stride),
                                 self.neuron(layer.neuron, shape, layer))
        if isinstance(layer, LIF):
            return self.neuron(layer, shape, layer)
        if isinstance(layer, Recurrent):
            return self.neuron(layer.neuron, shape, layer, layer.connection)
        if isinstance(layer, Residual):
            return _ResidualModule(self, layer)
        if isinstance(layer, Delay):
            raise Unsupported(f"layer {layer.name!r} (Delay): snnTorch 1.0 has no delays (no delay module, no "
                              "synaptic delays)")
        raise Unsupported(f"layer {layer.name!r} ({type(layer).__name__}) has no snnTorch counterpart in this adapter")

    def neuron(self, neuron: LIF, shape: tuple[int, ...], layer: Layer,
               connection: Linear | Conv2d | None = None) -> Any:
        """The snnTorch neuron of ``neuron`` (``Leaky``, ``Synaptic``, or ``RLeaky`` / ``RSynaptic`` around
        ``connection``), with per-neuron beta, alpha and threshold tensors (what ``export_to_nir`` needs)."""
        torch, snn = self.torch, self.snn
        mechanism = self._mechanism(neuron, f"layer {layer.name!r} ({type(layer).__name__})")
        theta = neuron.thresholds(shape).reshape((shape[0],) + (1,) * (len(shape) - 1)) * np.ones(shape)
        options = dict(beta=torch.full(shape, neuron.leak, dtype=self.dtype),
                       threshold=torch.tensor(theta, dtype=self.dtype), spike_grad=self.fire,
                       reset_mechanism=mechanism, init_hidden=True, reset_delay=self.reset_delay)
        synaptic = neuron.synapse_leak is not None
        if synaptic:
            options["alpha"] = torch.full(shape, neuron.synapse_leak, dtype=self.dtype)
        if connection is None:
            module = (snn.Synaptic if synaptic else snn.Leaky)(**options)
        else:
            if isinstance(connection, Linear):
                options["linear_features"] = shape[0]
            else:
                options.update(conv2d_channels=shape[0], kernel_size=connection.kernel_size)
            module = (snn.RSynaptic if synaptic else snn.RLeaky)(all_to_all=True, **options)
            module.recurrent = synapse_module(connection, self.dtype)
            self.weighted[connection.name] = module.recurrent
        module.fire = _FireTap(module.fire)
        return module

    def _mechanism(self, neuron: LIF, where: str) -> str:
        """snnTorch's ``reset_mechanism`` for ``neuron``, or Unsupported."""
        beyond = [what for what in neuron.extended if what != "a synaptic current"]
        if beyond:
            raise Unsupported(f"{where}: {', '.join(beyond)}: snnTorch's neurons have no such option")
        if neuron.input_gain != 1.0:
            raise Unsupported(f"{where}: snnTorch adds its input unscaled; input_gain {neuron.input_gain} is not 1")
        if neuron.synapse_leak is not None and neuron.synapse_gain != 1.0:
            raise Unsupported(f"{where}: snnTorch's Synaptic adds its input to the current unscaled; synapse_gain "
                              f"{neuron.synapse_gain} is not 1")
        if isinstance(neuron, Readout):
            return "none"
        if not neuron.strict:
            raise Unsupported(f"{where}: snnTorch fires on U - theta > 0; strict=False (>=) has no counterpart")
        if neuron.reset == "hard":
            if neuron.v_reset != 0.0:
                raise Unsupported(f"{where}: snnTorch resets to zero; v_reset {neuron.v_reset} has no counterpart")
            return "zero"
        if neuron.reset_delayed != self.reset_delay:
            raise Unsupported(f"{where}: snnTorch's subtractive reset with reset_delay={self.reset_delay} needs "
                              f"reset_delayed={self.reset_delay}")
        return "subtract"

    def neurons(self) -> list:
        """Every snnTorch neuron of the model."""
        return [sub for _, module in self.steps for sub in module.modules() if isinstance(sub, self.snn.SpikingNeuron)]

    # -------------------------------------------------------------- running
    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        """Every reported layer's per-step output and potential tensors, from the reset state."""
        for neuron in self.neurons():
            neuron.reset_mem()
        records: dict[str, tuple[list, list | None]] = {}
        for t in range(spikes.shape[0]):
            x = self.torch.from_numpy(np.ascontiguousarray(spikes[t])).to(self.dtype)
            for name, module in self.steps:
                x = module(x).to(self.dtype)  # snnTorch's own spike functions fire float32 whatever their input
                self._record(name, module, x, records)
        return records

    def gradients(self, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
        """snnTorch's gradients of ``L = sum(out * request.grad_output)`` (eventsim/testing/protocol.py).

        Raises :class:`~eventsim.testing.Unsupported` for a reset convention
        the neurons do not have (detached with ``reset_delay=True``, carried
        by the spike with ``reset_delay=False``) and for surrogates without an
        snnTorch counterpart (:data:`SURROGATES`).
        """
        if request.detach_reset != self.reset_delay:
            raise Unsupported(f"snnTorch's neurons with reset_delay={self.reset_delay} "
                              f"{'detach their reset (mem_reset)' if self.reset_delay else 'reset with the spike'}; "
                              f"detach_reset={request.detach_reset} has no counterpart")
        fire = _snntorch_surrogate(self.snn, request.surrogate)
        for neuron in self.neurons():
            neuron.spike_grad = fire
        try:
            with self.torch.enable_grad(), one_thread():
                return parameter_gradients(network_output(self.network, self._forward(spikes)), request,
                                           self.weighted)
        finally:
            for neuron in self.neurons():
                neuron.spike_grad = self.fire

    def _record(self, name: str, module: Any, x: Any, records: dict) -> None:
        if isinstance(module, _ResidualModule):
            for inner, (out, mem) in module.records.items():
                _append(records, inner, out, mem)
            return
        neuron = module[-1] if isinstance(module, self.torch.nn.Sequential) else module
        _append(records, name, x, neuron.fire.potential if isinstance(neuron, self.snn.SpikingNeuron) else None)


def _append(records: dict, name: str, out: Any, mem: Any) -> None:
    outputs, potentials = records.setdefault(name, ([], None if mem is None else []))
    outputs.append(out)
    if mem is not None:
        potentials.append(mem)


class _FireTap:
    """An snnTorch neuron's ``fire(mem)`` that keeps the potential it is given: U before any reset."""

    def __init__(self, fire: Any) -> None:
        self.fire = fire
        self.potential: Any = None

    def __call__(self, mem: Any) -> Any:
        self.potential = mem
        return self.fire(mem)


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
    """A residual block: main path and skip currents summed into one neuron; records its inner layers."""

    def __init__(self, model: SnnTorchModel, block: Residual) -> None:
        self.model = model
        self.main = [(layer.name, model._module(layer)) for layer in block.main]
        self.skip = model._module(block.skip)
        self.neuron_name = block.neuron.name
        self.neuron = model.neuron(block.neuron, model.network.shapes[block.neuron.name][1], block.neuron)
        self.records: dict[str, tuple] = {}

    def modules(self) -> list:
        """Every torch module inside the block, as ``nn.Module.modules`` lists them."""
        return [m for _, module in self.main for m in module.modules()] + [self.skip, self.neuron]

    def __call__(self, x: Any) -> Any:
        self.records = {}
        main = x
        spiking = self.model.snn.SpikingNeuron
        for name, module in self.main:
            main = module(main)
            neuron = module[-1] if isinstance(module, self.model.torch.nn.Sequential) else module
            self.records[name] = (main, neuron.fire.potential if isinstance(neuron, spiking) else None)
        out = self.neuron(main + self.skip(x))
        self.records[self.neuron_name] = (out, self.neuron.fire.potential)
        return out


def reproduce_subtract_without_reset_delay() -> list[str]:
    """snnTorch alone: ``Leaky(beta=1, threshold=1, reset_mechanism="subtract", reset_delay=False)`` fed
    2.5 once then nothing holds 1.5 > theta for ever without firing; ``reset_delay=True`` fires once more
    and settles at 0.5, as a soft reset does."""
    torch, snn = require()
    lines = []
    for delay in (True, False):
        leaky = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract", reset_delay=delay)
        mem = torch.zeros(1)
        steps = []
        for current in (2.5, 0.0, 0.0, 0.0):
            spk, mem = leaky(torch.tensor([current]), mem)
            steps.append(f"(spike {spk.item():g}, mem {mem.item():g})")
        lines.append(f"reset_delay={delay}, inputs 2.5, 0, 0, 0: " + " ".join(steps))
    return lines
