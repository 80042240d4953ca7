"""Norse as a candidate (eventsim/testing/protocol.py), and its rows of the conformance matrix.

:class:`NorseCandidate` builds, from an eventsim network, the Norse model that
computes the same thing: ``nn.Conv2d`` / ``nn.Linear`` with the same weights
and torch pooling modules, run once per step, and Norse's neurons with
``dt = 1``, ``tau_mem_inv = 1 - lam``, ``v_leak = v_rest`` and eventsim's
thresholds. What Norse computes per step (Norse 1.1,
``torch/functional/lif_box.py``, ``leaky_integrator_box.py``, ``lif.py``,
``leaky_integrator.py``, ``reset.py``, ``heaviside.py``; docs/conventions.md)::

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

A layer with a synaptic current (``synapse_leak`` alpha, ``synapse_gain``
1) is Norse's ``LIFCell`` (a Readout: ``LICell``), with ``tau_syn_inv = 1 -
alpha``, and a :class:`~eventsim.Recurrent` block on a flat layer is
``LIFRecurrentCell`` (``input_weights`` the identity, the synapse before
the block staying a torch module; ``recurrent_weights`` the connection's,
``autapses=True`` so that its diagonal stays; ``tau_syn_inv = 1`` without a
synaptic current, which leaves the step's input alone)::

    LIFCell:           j  = i + I;                 v' = v + dt tau_mem_inv ((v_leak - v) + j)
    LIFRecurrentCell:  j  = (i + W_in x) + W_rec z[t-1];   v' as LIFCell
                       i  = j + (-dt tau_syn_inv j);   z = 1[v' - v_th > 0];   v = (1 - z) v' + z v_reset

eventsim's synaptic current ``J = alpha J + I`` with the potential in the
"euler" form with its rest potential, ``U = R + k ((v_rest - R) + J)``: the
same operations for the potential; the current decays as ``j + (-k_syn j)``
where eventsim computes ``alpha j``, the same number whenever ``k_syn j`` is
exact (``k_syn`` a power of two, as for every synapse leak the strategies
draw), an ulp apart elsewhere (tests/test_norse.py); the recurrent current
is added last, where eventsim adds it to the input first, the same while
the sums are exact. Norse's ``LIFCell`` and ``LIFRecurrentCell`` reset to
``v_reset`` (``LIFParameters`` has no reset method); ``LIFRecurrentCell``
detaches its reset (``z.detach()``) and the feed-forward cells do not.

Norse returns the potential after the reset. The adapter reports eventsim's
pre-threshold U instead: Norse's own ``v'``, which the box neurons' reset
method receives (:class:`_PotentialTap`), and which the other cells compute
when their threshold is infinite (:class:`_NorseNeurons` runs a copy of the
cell with ``v_th = inf`` on the same state).

eventsim's default "product" form ``fl(fl(lam R) + fl(g I))`` with
``g = 1 - lam`` is the same map in exact arithmetic but rounds differently:
equal to Norse's when ``lam = 1/2`` and ``I - R`` is representable (both
products by 1/2 are exact), an ulp apart within a few float32 steps for
other leaks (tests/test_norse.py). The adapter therefore declines
product-form layers. Everything else (another arithmetic form, so IF
neurons and spiking average pooling, whose ``lam = 1`` would leave no input,
``>=``, a soft reset with an infinite threshold or with a synaptic current
or recurrence, a rest potential of a box neuron, which computes ``(I +
v_leak) - v``, a synaptic gain, an initial potential other than the rest
potential, a clamp, several spikes per step, a recurrent connection that is
a convolution or has a bias, delays) raises
:class:`~eventsim.testing.Unsupported` naming the layer.

Gradients are Norse's own autograd: the spike carries its surrogate
(``method``, ``alpha`` of the parameters, :data:`SURROGATES`) into the
reset, which is eventsim's ``bptt`` with ``detach_reset=False``, except in
``LIFRecurrentCell`` (``detach_reset=True``); a network with both has no
single convention and its gradients are declined.

Needs torch and Norse (docs/conventions.md says how to install Norse on a
CPU-only machine).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from eventsim.extras import require
from eventsim.layers import LIF, Layer, Linear, Readout, Recurrent, Residual
from eventsim.learning.surrogates import FastSigmoid, Sigmoid, Triangle
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

#: Leak factors: dyadic ones, Lee's exp(-1/100), and 0.9 and 2/3, whose 1 / (1 - lam) is no power of two.
LEAKS = (0.5, 0.75, 0.875, 0.9375, float(np.exp(-0.01)), 0.9, 2 / 3)
#: eventsim surrogates with a Norse threshold method (``LIFBoxParameters(method, alpha)``, Norse 1.1
#: ``functional/threshold.py``): "super" is ``1 / (|x| + 1)^2`` whatever its alpha (SuperSpike's
#: backward in Norse 1.1 does not use alpha), eventsim's ``FastSigmoid(c=1, b=1)``; "triangle" with
#: alpha = 1 is ``max(0, 1 - |x|)``, ``Triangle(width=1)``; "tanh" with alpha = 2 is
#: ``1 - tanh(2x)^2 = 4 sig(4x) (1 - sig(4x))``, ``Sigmoid(alpha=4)``.
SURROGATES = (FastSigmoid(c=1.0, b=1.0), Triangle(width=1.0), Sigmoid(alpha=4.0))
#: What the default candidate reproduces: box neurons in the "euler" arithmetic form
#: (gain 1 - leak) with any leak below 1, the strict comparison, an immediate
#: hard or soft reset, float32 and float64; in the gradient Norse's
#: convention, the reset not detached.
FEATURES = Features(neurons={"lif"}, leaks=LEAKS, arithmetic={"euler"}, detach_reset="off",
                    surrogates=SURROGATES).without("spiking_avg", ">=")

#: What NIR's nodes and Norse's from_nir carry (eventsim/testing/nir_route.py): LIF (LIFBoxCell) in the
#: "euler" form, whose r is 1, IF (IAFCell); hard reset to 0, no readout (it has no LI case); float32 (its
#: tensors are). Its CubaLIF rounds its current in the Euler form, which dyadic cases show only after many
#: steps, too rarely for a row (nir_route._norse_importer).
_NIR = Features(neurons={"lif", "if"}, leaks=LEAKS, arithmetic={"euler"}, readout=False, comparisons={">"},
                resets={"hard"}, v_reset=False)

#: The Norse rows of the conformance matrix (eventsim/testing/matrix_rows.py): the box neurons; LIF and
#: LI cells with their synaptic current and rest potential (hard reset, as LIFCell has no other); recurrent
#: cells, whose reset is detached; the NIR route.
MATRIX_ROWS = (
    Row("LIFBox, LIBox", FEATURES),
    Row("LIF, LI (synaptic current, rest potential)", FEATURES.without("soft").including("synaptic", "rest")),
    Row("LIFRecurrent", FEATURES.without("soft").including("recurrent", "synaptic", "rest").set(
        "detach_reset=on")),
    *(Row(f"NIR route (from_nir): {name}", features, {"route": "nir"}, expected=expected, gradients=False)
      for name, features, expected in (
          ("LIFBox, IAF; Linear", _NIR.set("layers=linear"), None),
          ("LIFBox, IAF; Conv2d, SumPool2d", _NIR.set("layers=conv,sum"), None),
          ("a node with two inputs (residual)", _NIR.set("layers=conv,residual"), Expected(
              "defect", "Norse 1.1's from_nir runs its graph with nirtorch 2.6's GraphExecutor, which calls a node "
              "with one argument per incoming edge, node(x1, x2), where NIR sums them: a neuron fed by two nodes "
              "takes the second input as its state (nirtorch/graph_executor.py _apply_module).",
              reproducer="eventsim.testing.nir_route:reproduce_norse_two_inputs")),
          ("Flatten", _NIR.set("layers=conv,linear"), Expected(
              "defect", "Norse 1.1's from_nir builds NIR's Flatten(start_dim, end_dim), whose dimensions leave out "
              "the batch, as torch.nn.Flatten(start_dim, end_dim), whose dimensions count it: the batch is "
              "flattened too (utils/import_nir.py _import_norse_module).",
              reproducer="eventsim.testing.nir_route:reproduce_norse_flatten")),
          ("LIF's r and v_reset", _NIR.set("layers=linear", "arithmetic=product").including("v_reset"), Expected(
              "defect", "Norse 1.1's from_nir builds a NIR LIF as LIFBoxCell(tau_mem_inv=1/tau, v_th, v_leak): its "
              "r is dropped (with a logged warning), so the input is scaled by dt/tau instead of dt r/tau, and its "
              "v_reset is dropped, so the neuron resets to 0 (utils/import_nir.py _import_norse_module).",
              reproducer="eventsim.testing.nir_route:reproduce_norse_lif_r_and_v_reset")))),
)


def _require() -> tuple[Any, Any]:
    return require("torch", "the Norse adapter"), require("norse.torch", "the Norse adapter")


class NorseCandidate:
    """The candidate "norse": eventsim networks rebuilt from Norse's neurons and torch modules."""

    name = "norse"
    features = FEATURES

    def build(self, network: Network) -> NorseModel:
        return NorseModel(network)


def candidate(*, route: str = "native") -> Any:
    """The candidate of a row of :data:`MATRIX_ROWS` (eventsim/testing/matrix_rows.py).

    ``route="native"``: :class:`NorseCandidate`; ``"nir"``: eventsim's NIR
    export read by Norse's ``from_nir`` (:mod:`eventsim.testing.nir_route`).
    """
    if route == "native":
        return NorseCandidate()
    from eventsim.testing import nir_route

    return nir_route.candidate("norse", direction={"nir": "import"}[route])


class NorseModel(RecordingModel):
    """A Norse model of an eventsim network, run step by step.

    ``steps`` lists ``(layer name, callable)`` in network order: torch modules
    for synapses, :class:`_NorseNeurons` for neuron layers and recurrent
    blocks (a synapse that feeds one stays a step of its own),
    :class:`_ResidualBlock` for residual blocks.
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
        module = synapse_module(layer, self.dtype, self.weighted)
        if module is not None:
            return module
        if isinstance(layer, LIF):
            return _NorseNeurons(self, layer)
        if isinstance(layer, Recurrent):
            return _NorseNeurons(self, layer.neuron, layer)
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

        Raises :class:`~eventsim.testing.Unsupported` for a reset convention
        the network's cells do not share (the feed-forward cells' reset takes
        the spike with its surrogate gradient, ``LIFRecurrentCell`` detaches
        it) and for surrogates without a Norse threshold method (:data:`SURROGATES`).
        """
        conventions = {neuron.detached for neuron in self.neurons if neuron.detached is not None}
        if len(conventions) > 1:
            raise Unsupported("Norse's LIFRecurrentCell detaches its reset and its feed-forward cells do not: a "
                              "network with both has no single detach_reset")
        if conventions and conventions != {request.detach_reset}:
            why = ("LIFRecurrentCell detaches its reset" if request.detach_reset is False else
                   "Norse's feed-forward cells reset with the spike and its surrogate gradient")
            raise Unsupported(f"{why}; detach_reset={request.detach_reset} has no counterpart")
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
    """One neuron layer (or recurrent block) as a Norse cell with its state; keeps the spikes and the
    potentials U of each step.

    ``make(parameters)`` builds the cell; ``detached`` is whether its reset is
    detached in the gradient (None for a leaky integrator, which never
    resets). U comes from the box neurons' reset method (``tap``), or from
    ``probe``, the same cell with ``v_th = inf``, which never fires and so
    returns ``v'`` as its potential.
    """

    def __init__(self, model: NorseModel, neuron: LIF, block: Recurrent | None = None) -> None:
        where = _where(block or neuron)
        self.name = neuron.name
        self.reset()
        self.tap = self.probe = None
        beyond = [what for what in neuron.extended if what not in ("a synaptic current", "a rest potential")]
        if beyond:
            raise Unsupported(f"{where}: {', '.join(beyond)}: Norse's neurons start at v_leak, fire one spike at "
                              "most and have no lower bound")
        if neuron.arithmetic != "euler":  # also every IF neuron: with leak 1 the Euler form takes no input
            raise Unsupported(f"{where}: Norse computes v + dt/tau (I - v), eventsim's arithmetic='euler'; "
                              f"arithmetic={neuron.arithmetic!r} (leak {neuron.leak}) rounds differently")
        synaptic = neuron.synapse_leak is not None
        if synaptic and neuron.synapse_gain != 1.0:
            raise Unsupported(f"{where}: Norse's cells add the input to the current unscaled; synapse_gain "
                              f"{neuron.synapse_gain} is not 1")
        fn = model.norse
        k, rest = model.tensor(1.0 - neuron.leak), model.tensor(neuron.v_rest)
        # 1 - alpha; without a synaptic current 1, which empties the current within the step
        k_syn = model.tensor(1.0 - neuron.synapse_leak if synaptic else 1.0)
        if isinstance(neuron, Readout):
            self.detached = None
            if synaptic:
                self.parameters = fn.LIParameters(tau_syn_inv=k_syn, tau_mem_inv=k, v_leak=rest)
                self.make: Callable = lambda p: fn.LICell(p, dt=1.0)
            else:
                self.parameters = fn.LIBoxParameters(tau_mem_inv=k, v_leak=rest)
                self.make = lambda p: fn.LIBoxCell(p, dt=1.0)
            self.cell = self.make(self.parameters)
            return
        if not neuron.strict:
            raise Unsupported(f"{where}: Norse fires on v - v_th > 0; strict=False (>=) has no counterpart")
        shape = model.network.shapes[neuron.name][1]
        theta = model.tensor(neuron.thresholds(shape).reshape((shape[0],) + (1,) * (len(shape) - 1)))
        v_reset = model.tensor(neuron.v_reset)
        if block is None and not synaptic:
            self._box(model, neuron, where, theta, k, v_reset)
            return
        if neuron.reset == "soft":
            raise Unsupported(f"{where}: Norse's {'LIFRecurrentCell' if block else 'LIFCell'} resets to v_reset; "
                              "LIFParameters has no reset method, so no soft reset")
        self.parameters = fn.LIFParameters(tau_syn_inv=k_syn, tau_mem_inv=k, v_leak=rest, v_th=theta, v_reset=v_reset)
        if block is None:
            self.detached = False
            self.make = lambda p: fn.LIFCell(p, dt=1.0)
        else:
            self.detached = True
            self.make = self._recurrent_cell(model, block, where)
        self.cell = self.make(self.parameters)
        self.probe = self.make(self.parameters._replace(v_th=model.tensor(np.inf)))

    def _box(self, model: NorseModel, neuron: LIF, where: str, theta: Any, k: Any, v_reset: Any) -> None:
        """A ``LIFBoxCell``, its reset method tapped for U."""
        fn = model.norse
        if neuron.v_rest != 0.0:
            raise Unsupported(f"{where}: Norse's LIFBoxCell computes (I + v_leak) - v, which rounds unlike "
                              "eventsim's (v_rest - R) + I; a rest potential needs Norse's LIFCell (a synaptic "
                              "current)")
        if neuron.reset == "soft" and not bool(model.torch.isfinite(theta).all()):
            raise Unsupported(f"{where}: Norse's subtractive reset computes 0 * (v - inf) = NaN for an "
                              "infinite threshold")
        self.detached = False
        self.tap = _PotentialTap(fn.reset_value if neuron.reset == "hard" else fn.reset_subtract)
        self.parameters = fn.LIFBoxParameters(tau_mem_inv=k, v_leak=model.tensor(0.0), v_th=theta, v_reset=v_reset,
                                              reset_method=self.tap)
        self.make = lambda p: fn.LIFBoxCell(p, dt=1.0)
        self.cell = self.make(self.parameters)

    @staticmethod
    def _recurrent_cell(model: NorseModel, block: Recurrent, where: str) -> Callable:
        """What builds the block's ``LIFRecurrentCell``: identity input weights (the synapse before the block
        stays a torch module), the connection's weights as its recurrent weights, self-connections kept."""
        connection = block.connection
        if not isinstance(connection, Linear):
            raise Unsupported(f"{where}: Norse's LIFRecurrentCell is dense; a convolution as the recurrent "
                              "connection has no counterpart")
        if connection.bias is not None:
            raise Unsupported(f"{where}: Norse's LIFRecurrentCell has no recurrent bias")
        recurrent = synapse_module(connection, model.dtype)
        model.weighted[connection.name] = recurrent
        n = connection.in_features
        eye = model.torch.eye(n, dtype=model.dtype)
        return lambda p: model.norse.LIFRecurrentCell(n, n, p, input_weights=eye, recurrent_weights=recurrent.weight,
                                                      autapses=True, dt=1.0)

    def fire_with(self, method: str, alpha: float) -> None:
        """Rebuild the cell with Norse's threshold ``method`` and its ``alpha`` (the surrogate gradient)."""
        if self.detached is not None:
            self.cell = self.make(self.parameters._replace(method=method, alpha=alpha))

    def reset(self) -> None:
        """Back to Norse's initial state (``v = v_leak``, no current) with empty records."""
        self.state: Any = None
        self.spikes: list = []
        self.potentials: list = []

    def __call__(self, current: Any) -> Any:
        out, state = self.cell(current, self.state)
        if self.detached is None:  # a leaky integrator: its output is U, and it never fires
            self.potentials.append(out)
            out = out.new_zeros(out.shape)
        elif self.tap is not None:
            self.potentials.append(self.tap.before)
        else:
            self.potentials.append(self.probe(current, self.state)[1].v)
        self.state = state
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
