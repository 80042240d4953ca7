"""SpikingJelly 2.0 as a candidate (eventsim/testing/protocol.py), and its rows of the conformance matrix.

:func:`candidate` builds, from an eventsim network, the SpikingJelly model
that computes the same thing: ``nn.Conv2d`` / ``nn.Linear`` with the same
weights and torch pooling modules (inside SpikingJelly's
``layer.SeqToANNContainer`` in multi-step mode), and SpikingJelly's neurons.
What they compute (SpikingJelly 2.0.0: ``_ops/if_/reference.py``,
``_ops/lif/reference.py``, ``_ops/plif/reference.py`` and ``_ops/reset.py``;
``activation_based/neuron/base_node.py``; ``activation_based/surrogate.py``),
with r the node's ``v_reset``, read as 0 in the charge when it is None::

    IFNode                                 H = V + X
    LIFNode(tau, decay_input=True)         H = V + (X - (V - r)) / tau
    LIFNode(tau, decay_input=False)        H = V - (V - r) / tau + X
    ParametricLIFNode(init_tau, True)      H = V + (X - (V - r)) * sigmoid(w),  w = -log(init_tau - 1)
    S = 1[H - v_threshold >= 0]
    V = S r + (1 - S) H  (v_reset=r)       V = H - S v_threshold  (v_reset=None)
    V before the first step: r (0 for v_reset=None)

    NonSpikingLIFNode(tau)                 V = V + (X - V) / tau,  from V = 0
    NonSpikingIFNode                       V = V + X,              from V = 0

In eventsim's terms (docs/semantics.md, "Arithmetic forms" and "State
beyond the potential"), with ``tau = 1.0 / (1.0 - leak)`` as a Python float:
``LIFNode(decay_input=True)`` is ``arithmetic="euler-divide"``,
``decay_input=False`` is ``"subtract-divide"``, ``ParametricLIFNode`` with
``decay_input=True`` is ``"euler"`` with k = sigmoid(w) (which is ``1 -
leak`` to the last bit for some leaks only: :data:`PLIF_LEAKS`; with
``decay_input=False`` it computes ``V - (V - r) k + X``, no eventsim form),
``IFNode`` is an IF layer (``R + I``, one addition), the non-spiking nodes
are Readouts in ``"euler-divide"`` or with leak 1. Every node fires on
``>=``: ``strict=False``. SpikingJelly's ``v_reset=r`` is at once the hard
reset's value, the potential the neuron leaks towards and the one it starts
from: eventsim's ``reset="hard", v_reset=r, v_rest=r`` (``v_init`` defaults
to ``v_rest``; IFNode, which has no rest, ``v_init=r``); ``v_reset=None`` is
``reset="soft"`` at rest 0. The adapter builds a node only where the layer
says all of that; :func:`candidate` (``reset_value_only=True``) hands
SpikingJelly the reset value alone instead, as a port of ``LIF(v_reset=r)``
would, and shows the convention as a divergence. Anything else
(per-channel thresholds, ``>``, the product form of a leak below 1, a
synaptic current, a clamp, several spikes, recurrent blocks, delays,
``SpikingAvgPool``) raises :class:`~eventsim.testing.Unsupported` naming the
layer.

Potentials: a SpikingJelly node keeps V, the potential after the reset
(``node.v``; ``node.v_seq`` in multi-step mode with ``store_v_seq=True``),
which is eventsim's pre-threshold U wherever the neuron did not fire. Where
it fired, the adapter reports H as the node's own step function
(``functional.if_step``, ``lif_step``, ``plif_step``) computes it from the
state the node held before the step with a threshold it cannot reach, so
that the function returns H as its next state.

Gradients are SpikingJelly's autograd, with the request's ``detach_reset``
set on every node and the surrogate's SpikingJelly counterpart
(:data:`SURROGATES`); its float64 runs go through the torch reference
(``functional.lif_multi_step`` takes its fused operator for float32 state
only). The rows of ``ParametricLIFNode`` compare its forward pass: its w
is a parameter of SpikingJelly's with no eventsim counterpart, whose
gradient nothing compares.

Implementations. SpikingJelly 2.0 has no ``backend`` argument and no CuPy
kernels: on CPU it runs its torch reference; on CUDA
``_ops/selection.py`` picks native CUDA kernels (``"cuda"``, built from
source with ``SJ_BUILD_NATIVE_CUDA=1``), then Triton (``"triton"``), then
the torch reference (``"torch"``), unless ``SJ_<NEURON>_CUDA_IMPLEMENTATION``
names one when its operators are imported. ``implementation`` asks the
selection of the IF, LIF and PLIF operators for one of them and checks, with
``functional.neuron_implementation``, that it is the one running; the
kernels keep float32 state, so float64 cases of ``"cuda"`` and ``"triton"``
are declined.

Needs torch and spikingjelly (installed with ``pip install --no-deps
spikingjelly`` next to the CPU torch, plus ``loguru``, which it imports).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np

from eventsim.errors import OptionError
from eventsim.extras import require
from eventsim.layers import LIF, Layer, Readout, Residual
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, Triangle
from eventsim.network import Network
from eventsim.testing.matrix_rows import Expected, Row
from eventsim.testing.protocol import GradientRequest, Unsupported
from eventsim.testing.strategies import Features
from eventsim.testing.torch_modules import (
    RecordingModel,
    ResidualStep,
    network_output,
    one_thread,
    parameter_gradients,
    synapse_module,
)

#: Leak factors: 1 (IF layers), dyadic ones, Lee's exp(-1/100), and 0.9 and 2/3, whose 1 / (1 - lam) rounds.
LEAKS = (1.0, 0.5, 0.75, 0.875, 0.9375, float(np.exp(-0.01)), 0.9, 2 / 3)
#: Leaks for which ParametricLIFNode(init_tau = 1 / (1 - leak)) has sigmoid(w) = 1 - leak exactly, float32
#: and float64 (torch 2 on CPU); 0.875 and exp(-0.01) miss it by an ulp.
PLIF_LEAKS = (1.0, 0.5, 0.75, 0.9375, 0.9, 2 / 3)
#: eventsim surrogates with a SpikingJelly counterpart (``activation_based/surrogate.py``): ``Sigmoid(alpha)``,
#: ``ATan(alpha)``, ``PiecewiseQuadratic(alpha)`` = ``max(0, alpha - alpha^2 |x|)``, a triangle of width
#: 1 / alpha; ``SoftSign(alpha)`` = ``alpha / (2 (1 + alpha |x|)^2)``, a fast sigmoid with c = alpha,
#: b = alpha / 2; ``SuperSpike(alpha)`` = ``alpha / (1 + |x|)^2``, c = 1, b = alpha.
SURROGATES = (Sigmoid(alpha=4.0), ArcTan(alpha=2.0), ArcTan(alpha=5.0), Triangle(width=1.0), Triangle(width=0.5),
              FastSigmoid(c=2.0, b=1.0), FastSigmoid(c=1.0, b=1.0))
#: What the adapter reproduces: IFNode and LIFNode (both divide forms) with one threshold per layer, >=,
#: a hard reset to 0 or a soft reset, float32 and float64; gradients with the reset detached or not.
FEATURES = Features(per_channel=False, comparisons={">="}, v_reset=False, leaks=LEAKS,
                    arithmetic={"euler-divide", "subtract-divide"}, surrogates=SURROGATES).without("spiking_avg")
IMPLEMENTATIONS = ("torch", "triton", "cuda")
STEP_MODES = ("s", "m")
#: The SpikingJelly operator packages whose CUDA implementation ``implementation`` selects.
_OPERATORS = {"if": "spikingjelly._ops.if_", "lif": "spikingjelly._ops.lif", "plif": "spikingjelly._ops.plif"}
_PLIF_FEATURES = replace(FEATURES, arithmetic={"euler"}, leaks=PLIF_LEAKS, readout=False)
#: One neuron option at a time: LIF layers of flat stacks, hard reset, no readout.
_ONE_OPTION = replace(FEATURES, layers={"linear"}, neurons={"lif"}, resets={"hard"}, readout=False, leaks=LEAKS[1:])
#: SpikingJelly's CUDA kernels hold float32 state.
_CUDA_KERNEL_FEATURES = replace(FEATURES, arithmetic={"euler-divide", "subtract-divide", "euler"}, dtypes={np.float32})
#: The conformance matrix's rows (eventsim/testing/matrix_rows.py). Rows about one neuron option generate flat
#: stacks of Linear layers, whose first neuron layer already shows the option.
MATRIX_ROWS = (
    Row("IFNode, v_reset=0.0 or None", replace(FEATURES, neurons={"if"}, leaks=(1.0,), arithmetic={"product"})),
    Row("LIFNode(decay_input=True), IFNode", replace(FEATURES, arithmetic={"euler-divide"})),
    Row("LIFNode(decay_input=False), IFNode", replace(FEATURES, arithmetic={"subtract-divide"}, readout=False)),
    Row("IFNode, LIFNode, step_mode='m'", FEATURES, {"step_mode": "m"}),
    Row("ParametricLIFNode(decay_input=True), forward", _PLIF_FEATURES, gradients=False),
    Row("ParametricLIFNode(decay_input=True), step_mode='m', forward", _PLIF_FEATURES, {"step_mode": "m"},
        gradients=False),
    Row("LIFNode(v_reset=r): rest and initial potential r, v_rest=r",
        replace(_ONE_OPTION, v_reset=True, rest=True, weights={"dyadic"})),
    Row("LIFNode(v_reset=r) for eventsim's LIF(v_reset=r)", replace(_ONE_OPTION, v_reset=True),
        {"reset_value_only": True},
        Expected("convention",
                 "SpikingJelly 2.0.0's v_reset is the hard reset's value, the potential LIFNode leaks towards and "
                 "the one every node starts from (_ops/lif/reference.py, charge: v - (v - v_reset) / tau; "
                 "neuron/base_node.py, BaseNode.__init__: register_memory('v', v_reset)); eventsim's LIF(v_reset=r) "
                 "rests and starts at 0, so the two differ from the first step.",
                 "LIF(theta, leak, arithmetic='euler-divide' or 'subtract-divide', reset='hard', v_reset=r, "
                 "v_rest=r, strict=False) (v_init defaults to v_rest; IF: v_init=r)")),
    Row("LIFNode(decay_input=False) for eventsim's LIF in the product form",
        replace(_ONE_OPTION, resets={"hard", "soft"}, arithmetic={"product"}, leaks=(0.9, 2 / 3, float(np.exp(-0.01)))),
        {"product_as_lif_node": True},
        Expected("rounding",
                 "LIFNode(tau, decay_input=False) computes v - v / tau + x (_ops/lif/reference.py, charge), "
                 "eventsim's default form lam v + x: the same map for tau = 1 / (1 - lam), but an ulp apart where "
                 "1 / tau is no power of two, so dyadic cases differ bit for bit (float cases stay within the "
                 "product form's rounding bound).",
                 "LIF(theta, leak=lam, arithmetic='subtract-divide', strict=False); decay_input=True: "
                 "arithmetic='euler-divide'")),
    Row("IFNode, LIFNode, ParametricLIFNode on CUDA, triton kernels", _CUDA_KERNEL_FEATURES,
        {"step_mode": "m", "device": "cuda", "implementation": "triton"}, gradients=False, device="cuda"),
    Row("IFNode, LIFNode, ParametricLIFNode on CUDA, native CUDA kernels", _CUDA_KERNEL_FEATURES,
        {"step_mode": "m", "device": "cuda", "implementation": "cuda"}, gradients=False, device="cuda"),
    Row("IFNode, LIFNode on CUDA, torch reference", FEATURES,
        {"step_mode": "m", "device": "cuda", "implementation": "torch"}, device="cuda"),
)


def _require() -> tuple[Any, SimpleNamespace]:
    """torch, and SpikingJelly's ``activation_based`` modules the adapter uses."""
    torch = require("torch", "the SpikingJelly adapter")
    modules = ("neuron", "layer", "surrogate", "functional")
    return torch, SimpleNamespace(**{name: require(f"spikingjelly.activation_based.{name}", "the SpikingJelly adapter")
                                     for name in modules})


def candidate(**options: Any) -> SpikingJellyCandidate:
    """The SpikingJelly candidate a matrix row's ``options`` configure (:class:`SpikingJellyCandidate`)."""
    return SpikingJellyCandidate(**options)


class SpikingJellyCandidate:
    """The candidate "spikingjelly": eventsim networks rebuilt from SpikingJelly's neurons and torch modules.

    Parameters
    ----------
    step_mode : {"s", "m"}
        SpikingJelly's step mode: the network run one step at a time, or
        each layer on the whole sequence.
    device : str
        "cpu" or "cuda".
    implementation : {"torch", "triton", "cuda"}
        On CUDA, the implementation SpikingJelly's IF, LIF and PLIF operators
        use; on CPU only "torch" (its reference) exists.
    reset_value_only : bool
        Build ``v_reset=r`` from eventsim's reset value alone, whatever the
        layer's rest and initial potential (which SpikingJelly then sets to r).
    product_as_lif_node : bool
        Build a LIF layer in eventsim's product form, ``lam R + g I``, as the
        LIFNode of the same map in exact arithmetic (``tau = 1 / (1 - lam)``;
        ``decay_input=False`` for g = 1, True for g = 1 - lam), which rounds
        differently; else such layers are declined.
    """

    features = FEATURES

    def __init__(self, step_mode: str = "s", device: str = "cpu", implementation: str = "torch",
                 reset_value_only: bool = False, product_as_lif_node: bool = False) -> None:
        torch, _ = _require()
        if step_mode not in STEP_MODES:
            raise OptionError(f"step_mode must be one of {STEP_MODES}, got {step_mode!r}")
        if implementation not in IMPLEMENTATIONS:
            raise OptionError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise OptionError(f"device must be cpu or cuda, got {device!r}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise OptionError(f"device {device!r} asked for, but torch sees no CUDA device")
        if self.device.type == "cpu" and implementation != "torch":
            raise OptionError(f"SpikingJelly runs its torch reference on the CPU; implementation {implementation!r} "
                              "needs device='cuda'")
        self.step_mode, self.implementation = step_mode, implementation
        self.reset_value_only, self.product_as_lif_node = bool(reset_value_only), bool(product_as_lif_node)
        if self.device.type == "cuda":
            _select_implementation(implementation, self.device)
        self.name = "spikingjelly-" + "-".join([step_mode, str(self.device)] + [implementation] * (
            self.device.type == "cuda"))

    def build(self, network: Network) -> SpikingJellyModel:
        if self.device.type == "cuda":
            if self.implementation != "torch" and network.dtype == np.float64:
                raise Unsupported(f"SpikingJelly's {self.implementation} kernels keep float32 state; float64 runs "
                                  "its torch reference only")
            _select_implementation(self.implementation, self.device)  # another candidate may have asked for another
        return SpikingJellyModel(network, self)


def _select_implementation(implementation: str, device: Any) -> None:
    """Ask SpikingJelly's IF, LIF and PLIF operators for ``implementation`` on CUDA, and check they run it.

    SpikingJelly 2.0 reads ``SJ_<NEURON>_CUDA_IMPLEMENTATION`` once, when an
    operator package is imported (``_ops/selection.py``, ``_CudaSelection``),
    and keeps what it selected per device: the request is set on the same
    selection object, its choices forgotten, so that one process can run each
    implementation in turn.
    """
    import importlib

    from spikingjelly.activation_based.functional import neuron_implementation

    for kind, package in _OPERATORS.items():
        selection = importlib.import_module(package)._selection
        if selection._requested != implementation:
            selection._requested = implementation
            selection._selections.clear()
            selection._compiled_selections.clear()
        try:
            running = neuron_implementation(kind, device)["implementation"]
        except RuntimeError as exc:  # SpikingJelly found no such implementation on this machine
            raise OptionError(f"SpikingJelly's {kind} operator cannot run {implementation!r} on {device}: {exc}") \
                from None
        if running != implementation:
            raise OptionError(f"SpikingJelly's {kind} operator runs {running!r} on {device}, not {implementation!r}")


class SpikingJellyModel(RecordingModel):
    """A SpikingJelly model of an eventsim network.

    ``steps`` lists ``(layer name, callable)`` in network order: torch
    modules for synapses (wrapped in ``SeqToANNContainer`` in multi-step
    mode), :class:`_Neurons` and :class:`_Readout` for neuron layers,
    residual blocks as one :class:`~eventsim.testing.torch_modules.ResidualStep`.
    In single-step mode each step takes ``(batch, ...)``, in multi-step mode
    ``(T, batch, ...)``.
    """

    def __init__(self, network: Network, options: SpikingJellyCandidate) -> None:
        self.torch, self.sj = _require()
        self.network, self.options = network, options
        self.multi_step = options.step_mode == "m"
        self.dtype = self.torch.float64 if network.dtype == np.float64 else self.torch.float32
        self.weighted: dict[str, Any] = {}
        self.steps = [(layer.name, self._module(layer)) for layer in network.layers]
        self.neurons = [neuron for _, step in self.steps for neuron in _neurons_in(step)]

    # ------------------------------------------------------------- building
    def _module(self, layer: Layer) -> Any:
        module = synapse_module(layer, self.dtype, self.weighted)
        if module is not None:
            module = module.to(self.options.device)
            return self.sj.layer.SeqToANNContainer(module) if self.multi_step else module
        if isinstance(layer, Readout):
            return _Readout(self, layer)
        if isinstance(layer, LIF):
            return _Neurons(self, layer)
        if isinstance(layer, Residual):
            return ResidualStep([self._module(inner) for inner in layer.main], self._module(layer.skip),
                                _Neurons(self, layer.neuron))
        raise Unsupported(f"{_where(layer)}: has no SpikingJelly counterpart in this adapter")

    def tensor(self, value: Any) -> Any:
        """``value`` as a tensor in the model's dtype, on its device."""
        return self.torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype,
                                    device=self.options.device)

    # -------------------------------------------------------------- running
    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        """Every reported layer's per-step output and potential tensors, from SpikingJelly's initial state."""
        for neuron in self.neurons:
            neuron.reset()
        records: dict[str, tuple[list, list | None]] = {}
        inputs = self.tensor(spikes)
        for x in [inputs] if self.multi_step else inputs:  # the whole sequence, or one step at a time
            for name, step in self.steps:
                x = step(x)
                if not _neurons_in(step):
                    records.setdefault(name, ([], None))[0].extend(x if self.multi_step else [x])
        for neuron in self.neurons:
            records[neuron.name] = neuron.records()
        return records

    def gradients(self, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
        """SpikingJelly's gradients of ``L = sum(out * request.grad_output)`` (eventsim/testing/protocol.py).

        Every node takes the request's ``detach_reset`` and the surrogate's
        SpikingJelly counterpart; a surrogate without one (:data:`SURROGATES`)
        raises :class:`~eventsim.testing.Unsupported`.
        """
        surrogate = _spikingjelly_surrogate(self.sj.surrogate, request.surrogate)
        for neuron in self.neurons:
            neuron.differentiate_with(surrogate, request.detach_reset)
        with self.torch.enable_grad(), one_thread():
            return parameter_gradients(network_output(self.network, self._forward(spikes)), request, self.weighted)


def _where(layer: Layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _spikingjelly_surrogate(surrogates: Any, surrogate: Any) -> Any:
    """The SpikingJelly surrogate computing ``surrogate``'s derivative (:data:`SURROGATES`), or Unsupported."""
    if isinstance(surrogate, Sigmoid):
        return surrogates.Sigmoid(alpha=surrogate.alpha)
    if isinstance(surrogate, ArcTan):
        return surrogates.ATan(alpha=surrogate.alpha)
    if isinstance(surrogate, Triangle):
        return surrogates.PiecewiseQuadratic(alpha=1.0 / surrogate.width)
    if isinstance(surrogate, FastSigmoid) and surrogate.b is not None:
        if surrogate.c == 1.0:
            return surrogates.SuperSpike(alpha=surrogate.b)
        if surrogate.c > 0 and surrogate.b == surrogate.c / 2:
            return surrogates.SoftSign(alpha=surrogate.c)
    raise Unsupported(f"surrogate {surrogate!r} has no SpikingJelly counterpart (Sigmoid, ATan, PiecewiseQuadratic "
                      "= triangle, SoftSign = fast_sigmoid(c, b=c/2), SuperSpike = fast_sigmoid(c=1))")


@contextmanager
def _default_dtype(torch: Any, dtype: Any) -> Iterator[None]:
    """torch's default dtype set to ``dtype`` while a node is built: ParametricLIFNode makes w with it."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(default)


class _Neurons:
    """One spiking layer as a SpikingJelly node; keeps the spikes and the potentials U of each step."""

    def __init__(self, model: SpikingJellyModel, layer: LIF) -> None:
        torch, self.sj = model.torch, model.sj
        self.name, self.multi_step, self.model = layer.name, model.multi_step, model
        where = _where(layer)
        dtype = np.dtype(model.network.dtype)
        theta = layer.thresholds(model.network.shapes[layer.name][1])
        _check_neuron(layer, where, theta)
        self.kind, self.decay_input = _node_kind(layer, where, model.options.product_as_lif_node)
        v_reset = float(dtype.type(layer.v_reset)) if layer.reset == "hard" else None
        if not model.options.reset_value_only:
            _check_rest(layer, where, self.kind, 0.0 if v_reset is None else v_reset)
        common = dict(v_threshold=float(dtype.type(theta[0])), v_reset=v_reset, step_mode=model.options.step_mode,
                      store_v_seq=self.multi_step)
        neuron = self.sj.neuron
        tau = 1.0 / (1.0 - layer.leak) if self.kind != "if" else None
        if self.kind == "if":
            self.node = neuron.IFNode(**common)
        elif self.kind == "lif":
            self.node = neuron.LIFNode(tau=tau, decay_input=self.decay_input, **common)
        else:
            with _default_dtype(torch, model.dtype):  # w = -log(init_tau - 1) in the network's dtype
                self.node = neuron.ParametricLIFNode(init_tau=tau, decay_input=True, **common)
        self.node.to(device=model.options.device, dtype=model.dtype)
        if self.kind == "plif":
            with torch.no_grad():
                exact = self.node.w.sigmoid().item() == model.tensor(1.0 - layer.leak).item()
            if not exact:
                raise Unsupported(f"{where}: ParametricLIFNode's sigmoid(w), w = -log(init_tau - 1), is not 1 - leak "
                                  f"to the last bit in {dtype.name}")
        self.reset()

    def differentiate_with(self, surrogate: Any, detach_reset: bool) -> None:
        """Set the surrogate and ``detach_reset`` of the node."""
        self.node.surrogate_function, self.node.detach_reset = surrogate, bool(detach_reset)

    def reset(self) -> None:
        """Back to SpikingJelly's initial state with empty records."""
        self.node.reset()
        self.spikes: list = []
        self.potentials: list = []

    def records(self) -> tuple[list, list]:
        return self.spikes, self.potentials

    def __call__(self, x: Any) -> Any:
        torch = self.model.torch
        sequence = x if self.multi_step else x.unsqueeze(0)
        start = self.node.v  # a float until the first step
        before = start if isinstance(start, torch.Tensor) else torch.full_like(sequence[0], start)
        out = self.node(x)
        fired = out if self.multi_step else out.unsqueeze(0)
        after = self.node.v_seq if self.multi_step else self.node.v.unsqueeze(0)
        previous = torch.cat([before.unsqueeze(0), after[:-1]])
        with torch.no_grad():
            charged = self._charge(sequence, previous.detach())
        self.spikes.extend(fired)
        self.potentials.extend(torch.where(fired != 0, charged, after))
        return out

    def _charge(self, x: Any, v: Any) -> Any:
        """H of the node's own step function from the states ``v``, with a threshold it cannot reach."""
        functional, node = self.sj.functional, self.node
        unreachable = float(self.model.torch.finfo(self.model.dtype).max)
        common = (unreachable, node.v_reset, node.surrogate_function, False)
        if self.kind == "if":
            return functional.if_step(x, v, *common)[1]
        if self.kind == "lif":
            return functional.lif_step(x, v, node.tau, self.decay_input, *common)[1]
        return functional.plif_step(x, v, node.w, True, *common)[1]


def _check_neuron(layer: LIF, where: str, theta: np.ndarray) -> None:
    """Unsupported unless SpikingJelly's spiking nodes have ``layer``'s comparison, threshold and options."""
    if layer.strict:
        raise Unsupported(f"{where}: SpikingJelly fires on v >= v_threshold; strict=True (>) has no counterpart")
    if np.any(theta != theta[0]):
        raise Unsupported(f"{where}: SpikingJelly's v_threshold is one float per layer; per-channel thresholds have "
                          "no counterpart")
    if not np.isfinite(theta[0]):
        raise Unsupported(f"{where}: SpikingJelly's operators need a finite v_threshold")
    others = [option for option in layer.extended if option not in ("a rest potential", "an initial potential")]
    if others or layer.norm is not None or layer.reset_delayed:
        options = others + ["an input-current norm"] * (layer.norm is not None) + ["reset_delayed"] * (
            layer.reset_delayed)
        raise Unsupported(f"{where}: SpikingJelly's IFNode, LIFNode and ParametricLIFNode do not take "
                          f"{', '.join(options)}")


def _check_rest(layer: LIF, where: str, kind: str, start: float) -> None:
    """Unsupported unless ``layer`` rests at ``start`` (IFNode: at 0, it has no rest) and starts there:
    ``start`` is SpikingJelly's v_reset, 0 when None."""
    rest = 0.0 if kind == "if" else start
    if layer.v_rest != rest or layer.v_init != start:
        raise Unsupported(f"{where}: SpikingJelly's v_reset is also the rest and the initial potential (IFNode: the "
                          "initial one); needs v_rest = v_init = v_reset (hard reset) or 0 (soft)")


def _node_kind(layer: LIF, where: str, product_as_lif_node: bool) -> tuple[str, bool]:
    """``("if" | "lif" | "plif", decay_input)``: the SpikingJelly node computing ``layer``'s form."""
    if layer.arithmetic == "product" and layer.leak == 1.0 and layer.input_gain == 1.0:
        return "if", False
    if layer.arithmetic == "euler-divide":
        return "lif", True
    if layer.arithmetic == "subtract-divide":
        return "lif", False
    if layer.arithmetic == "euler":
        return "plif", True
    if product_as_lif_node and layer.leak < 1.0 and layer.input_gain in (1.0, 1.0 - layer.leak):
        return "lif", layer.input_gain != 1.0
    raise Unsupported(f"{where}: SpikingJelly's IFNode adds its input unscaled and LIFNode computes v + (x - v) / "
                      f"tau or v - v / tau + x (arithmetic 'euler-divide', 'subtract-divide'); "
                      f"arithmetic={layer.arithmetic!r} has no node that rounds as it does")


class _Readout:
    """A Readout as SpikingJelly's NonSpikingLIFNode or NonSpikingIFNode, run on its whole input sequence.

    SpikingJelly's non-spiking nodes take ``(T, batch, ...)`` and return V at
    every step, from V = 0 (``NonSpikingBaseNode.forward``); in single-step
    mode the readout, the network's last layer, collects its inputs and runs
    once they are all there.
    """

    def __init__(self, model: SpikingJellyModel, layer: Readout) -> None:
        self.name, self.model = layer.name, model
        where = _where(layer)
        if layer.extended or layer.norm is not None:
            raise Unsupported(f"{where}: SpikingJelly's non-spiking nodes do not take "
                              f"{', '.join(layer.extended) or 'an input-current norm'}")
        neuron = model.sj.neuron
        if layer.arithmetic == "product" and layer.leak == 1.0 and layer.input_gain == 1.0:
            self.node = neuron.NonSpikingIFNode()
        elif layer.arithmetic == "euler-divide":
            self.node = neuron.NonSpikingLIFNode(tau=1.0 / (1.0 - layer.leak))
        else:
            raise Unsupported(f"{where}: SpikingJelly's non-spiking nodes compute v + x and v + (x - v) / tau; "
                              f"arithmetic={layer.arithmetic!r} with a leak below 1 has no counterpart")
        self.reset()

    def differentiate_with(self, surrogate: Any, detach_reset: bool) -> None:
        """Nothing to set: the node never fires."""

    def reset(self) -> None:
        self.inputs: list = []

    def records(self) -> tuple[list, list]:
        potentials = self.node(self.model.torch.cat(self.inputs))
        return [v.new_zeros(v.shape) for v in potentials], potentials

    def __call__(self, x: Any) -> Any:
        self.inputs.append(x if self.model.multi_step else x.unsqueeze(0))
        return x.new_zeros(x.shape)


def _neurons_in(step: Any) -> list:
    """The neuron layers of one step, in network order."""
    if isinstance(step, (_Neurons, _Readout)):
        return [step]
    if isinstance(step, ResidualStep):
        return [n for inner in step.main for n in _neurons_in(inner)] + [step.neuron]
    return []
