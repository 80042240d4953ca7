"""Rockpool as a candidate (eventsim/testing/protocol.py), and its rows of the conformance matrix.

:class:`RockpoolCandidate` builds, from an eventsim network, the Rockpool
network that computes the same thing: ``LinearTorch`` layers and Rockpool's
LIF neurons chained by ``nn.combinators.Sequential``, evolved over the whole
input ``(batch, T, N)`` as Rockpool users run them. What the neurons compute
per step (Rockpool 3.1.0, ``nn/modules/torch/lif_torch.py``
``LIFTorch.forward`` and ``StepPWL``; ``lif_neuron_torch.py``
``LIFNeuronTorch.forward``)::

    LIFTorch:        isyn = isyn + input[t] (+ spikes[t-1] @ w_rec)
                     vmem = alpha vmem;  isyn = beta isyn
                     vmem = vmem + isyn + noise + bias
    LIFNeuronTorch:  vmem = alpha vmem;  vmem = vmem + input[t];  vmem = vmem + noise + bias
    both:            n    = (vmem >= threshold) floor(vmem / threshold), at most max_spikes_per_dt
                     vmem = vmem - n threshold

from ``vmem = isyn = spikes = 0`` (``reset_state()``), with ``noise_std = 0``
and ``bias = 0`` here (adding them is exact; eventsim has no neuron bias,
which Rockpool adds to the potential, not to the current, at every step). With ``alpha = lam`` and
``beta = alpha_syn`` this is eventsim's LIF (docs/semantics.md, "State
beyond the potential") with ``strict=False``, ``reset="soft"``, ``g = 1``,
``max_spikes = max_spikes_per_dt`` and, for ``LIFTorch``, the synaptic
current ``synapse_leak = synapse_gain = beta``: the current takes the input
of its own step, decayed with it. ``LIFNeuronTorch`` is the neuron without a
synaptic current; ``has_rec`` is ``Recurrent(neuron, Linear(weight=w_rec.T))``
(a ``LIFTorch``: ``LIFNeuronTorch`` has no ``w_rec``). The potential is
eventsim's product form operation for operation (``fl(alpha R) + X``), and
so are the spike count and the reset (``U / theta`` once, ``U - n theta``).
The synaptic current is ``fl(beta fl(fl(J + I) + W s))`` where eventsim
computes ``fl(fl(beta J) + fl(beta fl(I + W s)))``: equal in exact
arithmetic, and bit for bit when the sums are exact and the products by
beta too (beta a power of two or 1, the synaptic leaks a generated case
has with ``synapse_gain = synapse_leak``); other leaks round differently
(``tests/test_rockpool_adapter.py``), and eventsim has no arithmetic form
for that.

The adapter reports, for every neuron layer, the count Rockpool returns,
the pre-threshold ``vmem`` its spike function receives (:class:`_Tap`; the
``vmem`` Rockpool records is after the reset) and ``LIFTorch``'s recorded
``isyn`` (eventsim's J, compared exactly). ``LIFTorch``'s decays are set
directly (``leak_mode="decays"``) or as time constants (``leak_mode="taus"``);
``LIFNeuronTorch`` takes ``tau_mem`` only. A time constant is chosen so
that Rockpool's own ``exp(-dt / tau)`` is the leak in the network's dtype;
a leak no tau near ``-dt / log(lam)`` reproduces is declined.
eventsim's ``max_spikes=None`` (no bound) becomes the largest float32,
because Rockpool clamps with ``n - (n - M) (n > M)``, which is NaN for
``M = inf``. ``v_init`` is set as the ``vmem`` state before the evolution.

Everything else is declined naming the layer: convolutions, pools,
residual blocks, delays and readouts (Rockpool 3.1.0 has no torch module
for them; a never-firing neuron, threshold inf, computes ``vmem - 0 * inf =
NaN``), a synaptic gain that is not the synaptic leak (unless
``accept_any_gain``), a recurrent block without a synaptic current or with
a bias, hard reset, ``>``, another arithmetic form or input gain, a
delayed reset, a rest potential, a clamp, an input-current norm.

float64. Rockpool computes in float32: its parameters and states are cast
by ``torch.as_tensor(x, dtype=torch.float)``, its records are ``torch.zeros``
in the default dtype, and ``StepPWL`` returns ``.float()`` counts. Even
converted with ``.double()``, a ``LIFTorch`` returns float32 spikes, and
from its second step on multiplies those by its float64 ``w_rec`` (run
without ``has_rec`` too) and raises (:func:`float64_reproducer`). For
float64 networks the adapter therefore converts the network with
``.double()``, evolves it with float64 as torch's default dtype, and gives
the neurons :func:`_count_in_dtype`: ``StepPWL``'s own forward and backward,
the count returned in the potential's dtype (counts are integers: exact in
either). float32 networks run Rockpool's ``StepPWL`` unchanged.

Gradients are Rockpool's autograd: ``StepPWL``'s surrogate is ``1 /
threshold`` where ``vmem >= threshold - learning_window``, else 0, so with
``learning_window = inf`` it is eventsim's straight-through estimator
(``StraightThrough``); the count reaches the reset undetached
(``detach_reset=False``). Rockpool's default window 0.5 has no eventsim
surrogate (a row of the matrix shows it); ``PeriodicExponential`` has no
counterpart either.

Two more things Rockpool 3.1.0 does that the adapter works around: a
module keeps its state between evolutions (``vmem[0]``, the first sample's,
for the whole next batch), so every run starts with ``reset_state()``; and
``Sequential(OrderedDict(...))`` of torch modules builds the native
``ModSequential`` (it looks for torch modules among its arguments only), so
the modules are passed as arguments. ``LIFTorch``'s docstring says it fires
on ``vmem > threshold``; its code fires on ``>=``, which the adapter follows.

Needs torch and Rockpool (``pip install --no-deps rockpool``: its torch
modules import only torch, numpy and scipy).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np

from eventsim.errors import OptionError
from eventsim.extras import require
from eventsim.layers import LIF, Layer, Linear, Readout, Recurrent
from eventsim.learning.surrogates import StraightThrough
from eventsim.network import Network
from eventsim.testing.matrix_rows import Expected, Row
from eventsim.testing.protocol import GradientRequest, LayerRecord, Unsupported
from eventsim.testing.strategies import Features
from eventsim.testing.torch_modules import RecordingModel, one_thread, parameter_gradients

#: ``StepPWL`` with ``learning_window = inf``: ``1 / threshold`` everywhere.
SURROGATES = (StraightThrough(),)
#: What the adapter reproduces: linear stacks of LIF / IF layers, with or without a synaptic current
#: (``synapse_gain = synapse_leak``), ``>=`` and the soft reset, float32 and float64; in the gradient
#: the reset not detached.
FEATURES = Features(layers={"linear"}, resets={"soft"}, comparisons={">="}, v_reset=False, readout=False,
                    synaptic=True, gain_equals_leak=True, synapse_leaks=(0.5, 1.0),
                    detach_reset="off", surrogates=SURROGATES)
#: The largest float32: eventsim's "no bound" on the spike count (Rockpool's clamp makes inf a NaN).
NO_BOUND = float(np.finfo(np.float32).max)


def _require() -> SimpleNamespace:
    """torch and the Rockpool 3.1.0 modules the adapter builds from."""
    purpose = "the Rockpool adapter"
    return SimpleNamespace(torch=require("torch", purpose), modules=require("rockpool.nn.modules", purpose),
                           Sequential=require("rockpool.nn.combinators", purpose).Sequential,
                           lif=require("rockpool.nn.modules.torch.lif_torch", purpose),
                           neuron=require("rockpool.nn.modules.torch.lif_neuron_torch", purpose))


def candidate(**options: Any) -> RockpoolCandidate:
    """The candidate of a matrix row (:mod:`eventsim.testing.matrix_rows`), configured by its options."""
    return RockpoolCandidate(**options)


class RockpoolCandidate:
    """The candidate "rockpool": eventsim networks rebuilt as Rockpool ``Sequential`` networks.

    Parameters
    ----------
    leak_mode : {"decays", "taus"}
        How ``LIFTorch`` takes its leaks: the decays ``alpha``, ``beta``
        themselves, or the time constants ``tau_mem``, ``tau_syn`` with ``dt``
        (``LIFNeuronTorch`` takes ``tau_mem`` only).
    dt : float
        The neurons' time step in seconds (Rockpool's default 1 ms).
    learning_window : float
        ``StepPWL``'s window: inf gives eventsim's straight-through surrogate.
    accept_any_gain : bool
        Build a synaptic current as ``beta = synapse_leak`` whatever its
        ``synapse_gain`` (how a CubaLIF with h = 1 is ported to Rockpool),
        instead of declining a gain other than the leak.
    plain_double : bool
        Convert a float64 network with ``.double()`` alone, as a Rockpool
        user would, without the adapter's float64 changes (module docstring).
    """

    name = "rockpool"
    features = FEATURES

    def __init__(self, *, leak_mode: str = "decays", dt: float = 1e-3, learning_window: float = np.inf,
                 accept_any_gain: bool = False, plain_double: bool = False) -> None:
        if leak_mode not in ("decays", "taus"):
            raise OptionError(f"leak_mode must be 'decays' or 'taus', got {leak_mode!r}")
        self.leak_mode, self.dt = leak_mode, float(dt)
        self.learning_window, self.accept_any_gain = float(learning_window), bool(accept_any_gain)
        self.plain_double = bool(plain_double)

    def build(self, network: Network) -> RockpoolModel:
        return RockpoolModel(self, network)


class RockpoolModel(RecordingModel):
    """A Rockpool ``Sequential`` of an eventsim network, evolved over all steps at once.

    ``stages`` maps eventsim's neuron layers and recurrent blocks to
    ``(neuron layer name, LIFTorch or LIFNeuronTorch, tap)``; ``names``
    gives each eventsim layer's name in the Sequential, under which Rockpool
    records it; ``weighted`` maps eventsim's parameter owners (Linear layers
    and recurrent connections) to their ``(W.T, bias or None)`` tensors.
    """

    def __init__(self, options: RockpoolCandidate, network: Network) -> None:
        self.rp = _require()
        self.options, self.network = options, network
        torch = self.rp.torch
        self.dtype = torch.float64 if network.dtype == np.float64 else torch.float32
        #: float64 with the adapter's changes: counts in the dtype, states and records allocated in it
        self.in_dtype = self.dtype == torch.float64 and not options.plain_double
        self.stages: dict[str, tuple[str, Any, _Tap]] = {}
        self.v_init: dict[str, float] = {}
        built = [self._module(layer) for layer in network.layers]
        # Modules as arguments: Sequential(OrderedDict(...)) of torch modules gives Rockpool's native
        # ModSequential (3.1.0 looks for torch modules among the arguments only), which has no .double().
        self.sequential = self.rp.Sequential(*built)
        if self.dtype == torch.float64:
            self.sequential = self.sequential.double()
        self.names = dict(zip((layer.name for layer in network.layers), self.sequential.modules(), strict=True))
        self.weighted: dict[str, tuple[Any, Any]] = {}
        with torch.no_grad():
            for layer, module in zip(network.layers, built, strict=True):
                self._assign(layer, module)
        self._currents: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------- building
    def _module(self, layer: Layer) -> Any:
        if isinstance(layer, Linear):
            if layer.delay is not None:
                raise Unsupported(f"{_where(layer)}: Rockpool has no synaptic delays")
            return self.rp.modules.LinearTorch((layer.in_features, layer.out_features),
                                               has_bias=layer.bias is not None)
        if isinstance(layer, Readout):
            raise Unsupported(f"{_where(layer)}: Rockpool's LIF modules always fire; with threshold inf their "
                              "reset computes vmem - 0 * inf = NaN")
        if isinstance(layer, Recurrent):
            return self._neurons(layer.neuron, layer)
        if isinstance(layer, LIF):
            return self._neurons(layer, None)
        raise Unsupported(f"{_where(layer)}: Rockpool 3.1.0 has no torch module for it (LinearTorch and neurons "
                          "only)")

    def _neurons(self, neuron: LIF, block: Recurrent | None) -> Any:
        """``LIFTorch`` (with a synaptic current) or ``LIFNeuronTorch`` (without) for ``neuron``, inside
        ``block`` when recurrent, after checking that it expresses the layer."""
        _check(neuron)
        shape = self.network.shapes[neuron.name][1]
        if not np.all(np.isfinite(neuron.thresholds(shape))):
            raise Unsupported(f"{_where(neuron)}: Rockpool's reset computes vmem - 0 * inf = NaN for an infinite "
                              "threshold")
        if block is not None and (not isinstance(block.connection, Linear) or block.connection.bias is not None):
            raise Unsupported(f"{_where(block)}: LIFTorch's w_rec is a matrix, without a bias")
        common = dict(dt=self.options.dt, learning_window=self.options.learning_window,
                      max_spikes_per_dt=NO_BOUND if neuron.max_spikes is None else float(neuron.max_spikes))
        if neuron.synapse_leak is None:
            if block is not None:
                raise Unsupported(f"{_where(block)}: LIFNeuronTorch has no w_rec, and LIFTorch's has_rec always "
                                  "comes with a synaptic current")
            module = self.rp.modules.LIFNeuronTorch((int(np.prod(shape)),), spike_generation_fn=self._spike(
                self.rp.neuron.StepPWL), **common)
        else:
            if neuron.synapse_gain != neuron.synapse_leak and not self.options.accept_any_gain:
                raise Unsupported(f"{_where(neuron)}: LIFTorch's synaptic current takes its input decayed, beta "
                                  "(isyn + input): synapse_gain must equal synapse_leak")
            module = self.rp.modules.LIFTorch((int(np.prod(shape)),), leak_mode=self.options.leak_mode,
                                              has_rec=block is not None,
                                              spike_generation_fn=self._spike(self.rp.lif.StepPWL), **common)
        tap = _Tap(module.spike_generation_fn)
        module.spike_generation_fn = tap
        self.stages[(block or neuron).name] = (neuron.name, module, tap)
        self.v_init[neuron.name] = neuron.v_init
        return module

    def _spike(self, step_pwl: Any) -> Any:
        """Rockpool's ``StepPWL``, or in float64 the same function with counts in the dtype."""
        return _count_in_dtype(step_pwl) if self.in_dtype else step_pwl

    def _assign(self, layer: Layer, module: Any) -> None:
        """Copy ``layer``'s numbers into ``module`` in the network's dtype (after ``.double()``, which would
        keep float32 roundings of float64 values given at construction)."""
        if isinstance(layer, Linear):
            _copy(module.weight, layer.weight.T)  # Rockpool computes x @ weight
            if layer.bias is not None:
                _copy(module.bias, layer.bias)
            self.weighted[layer.name] = (module.weight, module.bias)
            return
        neuron = layer.neuron if isinstance(layer, Recurrent) else layer
        _copy(module.threshold, neuron.thresholds(self.network.shapes[neuron.name][1]))
        _copy(module.bias, 0.0)
        if isinstance(module, self.rp.modules.LIFNeuronTorch):
            _copy(module.tau_mem, self._tau(neuron, neuron.leak, lambda tau: self.rp.neuron.tau_to_decay(
                self.options.dt, tau)))
        elif self.options.leak_mode == "decays":
            _copy(module.alpha, neuron.leak)
            _copy(module.beta, neuron.synapse_leak)
        else:
            decay = lambda tau: self.rp.lif.tau_to_decay(self.options.dt, tau)[0]  # noqa: E731
            _copy(module.tau_mem, self._tau(neuron, neuron.leak, decay))
            _copy(module.tau_syn, self._tau(neuron, neuron.synapse_leak, decay))
        if isinstance(layer, Recurrent):
            _copy(module.w_rec, layer.connection.weight.T)  # Rockpool adds spikes @ w_rec
            self.weighted[layer.connection.name] = (module.w_rec, None)

    def _tau(self, neuron: LIF, decay: float, decay_of: Any) -> float:
        """A time constant whose decay, as Rockpool computes it (``decay_of(tau)``: ``exp(-dt / tau)``), is
        ``decay`` rounded to the dtype: ``-dt / log(decay)`` or one of its 8 nearest neighbours in the dtype."""
        if decay in (0.0, 1.0):
            return 0.0 if decay == 0.0 else np.inf
        torch = self.rp.torch
        target = torch.tensor(decay, dtype=torch.float64).to(self.dtype)
        tau = torch.tensor(-self.options.dt / np.log(decay), dtype=torch.float64).to(self.dtype)
        tries = [tau]
        for direction in (np.inf, 0.0):
            step = tau
            for _ in range(4):
                step = torch.nextafter(step, torch.tensor(direction, dtype=self.dtype))
                tries.append(step)
        for tried in tries:
            if decay_of(tried) == target:
                return float(tried)
        raise Unsupported(f"{_where(neuron)}: no tau gives exp(-dt / tau) = {decay} in {self.network.dtype} "
                          f"with dt = {self.options.dt}")

    # -------------------------------------------------------------- running
    def _evolve(self, spikes: np.ndarray, record: bool) -> tuple[Any, dict]:
        """Rockpool's evolution of ``spikes`` (``(T, batch, N)``) from its reset state, eventsim's v_init set."""
        torch = self.rp.torch
        with _default_dtype(torch, self.dtype if self.in_dtype else torch.get_default_dtype()):
            self.sequential.reset_state()
            for neuron, module, tap in self.stages.values():
                tap.potentials = []
                if self.v_init[neuron] != 0.0:
                    module.vmem = torch.full((module.size_out,), self.v_init[neuron], dtype=self.dtype)
            x = torch.from_numpy(np.ascontiguousarray(spikes.swapaxes(0, 1))).to(self.dtype)
            out, _, recorded = self.sequential(x, record=record)
        return out, recorded

    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        """Every neuron layer's per-step counts and pre-threshold potentials; keeps the synaptic currents."""
        _, recorded = self._evolve(spikes, record=True)
        records, self._currents = {}, {}
        for layer, (neuron, _, tap) in self.stages.items():
            name = self.names[layer]
            records[neuron] = (list(recorded[f"{name}_output"].unbind(1)), tap.potentials)
            if "isyn" in recorded[name]:  # LIFTorch's (batch, T, N, 1 synapse)
                self._currents[neuron] = recorded[name]["isyn"][..., 0].swapaxes(0, 1).detach().numpy()
        return records

    def run(self, spikes: np.ndarray) -> dict[str, LayerRecord]:
        """:meth:`RecordingModel.run`, with each ``LIFTorch`` layer's synaptic current ``isyn`` (eventsim's J)."""
        records = super().run(spikes)
        for name, current in self._currents.items():
            records[name].synaptic = current
        return records

    def gradients(self, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
        """Rockpool's gradients of ``L = sum(out * request.grad_output)`` (eventsim/testing/protocol.py).

        ``out`` is the last layer's spike count summed over the steps.
        Raises :class:`~eventsim.testing.Unsupported` for ``detach_reset=True``
        (the count reaches ``vmem - n threshold`` with its surrogate) and for
        any surrogate but the straight-through estimator (``StepPWL``).
        """
        if request.detach_reset:
            raise Unsupported("Rockpool's reset vmem - n threshold takes the count with its surrogate gradient; "
                              "detach_reset=True has no counterpart")
        if not isinstance(request.surrogate, StraightThrough):
            raise Unsupported(f"surrogate {request.surrogate!r} has no Rockpool counterpart (StepPWL with "
                              "learning_window inf is straight_through)")
        with self.rp.torch.enable_grad(), one_thread():
            out, _ = self._evolve(spikes, record=False)
            grads = parameter_gradients(out.sum(dim=1), request, {
                name: _Parameters(weight, bias) for name, (weight, bias) in self.weighted.items()})
        return {key: np.ascontiguousarray(g.T) if key.endswith(".weight") else g for key, g in grads.items()}


def _check(neuron: LIF) -> None:
    """Unsupported unless ``neuron``'s options are Rockpool's: soft reset, ``>=``, the product form with gain 1
    and an immediate reset, no rest potential, clamp or norm."""
    where = _where(neuron)
    if neuron.reset != "soft":
        raise Unsupported(f"{where}: Rockpool's neurons subtract their threshold on a spike; reset='hard' has no "
                          "counterpart")
    if neuron.strict:
        raise Unsupported(f"{where}: Rockpool's neurons fire on vmem >= threshold; strict=True (>) has no "
                          "counterpart")
    if neuron.reset_delayed or neuron.arithmetic != "product" or neuron.input_gain != 1.0:
        raise Unsupported(f"{where}: Rockpool computes alpha vmem + input, the product form with gain 1 and an "
                          "immediate reset")
    if neuron.norm is not None or neuron.v_rest != 0.0 or neuron.v_min != -np.inf:
        raise Unsupported(f"{where}: Rockpool's neurons have no input-current norm, rest potential or clamp")


class _Parameters:
    """The weight and bias tensors of one eventsim parameter owner, as :func:`parameter_gradients` reads them."""

    def __init__(self, weight: Any, bias: Any) -> None:
        self.weight, self.bias = weight, bias


class _Tap:
    """``LIFTorch``'s spike function, keeping the potential it receives: vmem before the reset, eventsim's U."""

    def __init__(self, spike: Any) -> None:
        self.spike = spike
        self.potentials: list = []

    def __call__(self, vmem: Any, *args: Any) -> Any:
        self.potentials.append(vmem)
        return self.spike(vmem, *args)


def _where(layer: Layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _copy(parameter: Any, value: Any) -> None:
    """Set a Rockpool tensor in place to ``value``, rounded once from float64 to its dtype."""
    import torch

    parameter.copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)).to(parameter.dtype).expand_as(parameter))


@contextmanager
def _default_dtype(torch: Any, dtype: Any) -> Iterator[None]:
    """torch's default dtype set to ``dtype`` while Rockpool allocates its states and records."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(default)


@lru_cache(maxsize=None)
def _count_in_dtype(step_pwl: Any) -> Any:
    """An autograd function: Rockpool's ``StepPWL`` (``step_pwl``, one per neuron module), forward and
    backward, with the spike count returned in the potential's dtype instead of float32 (``.float()``), so
    that a float64 network stays float64."""
    import torch

    class CountInDtype(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, threshold, window, max_spikes_per_dt):
            return step_pwl.forward(ctx, x, threshold, window, max_spikes_per_dt).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            return step_pwl.backward(ctx, grad)

    return CountInDtype


# ==================================================================== defects
def float64_reproducer() -> list[str]:
    """Rockpool alone: a ``LIFTorch`` converted with ``.double()`` does not evolve in float64.

    Over one step it returns float32 spikes (``StepPWL``'s ``.float()``,
    records allocated by ``torch.zeros`` in the default dtype); over two it
    raises, because the second step multiplies the float32 spikes by the
    float64 ``w_rec`` (``F.linear(spikes, self.w_rec.T)``, run even without
    ``has_rec``). Prints what it runs and what it gets; returns the lines.
    """
    rp = _require()
    torch = rp.torch
    lines = []
    for steps in (1, 2):
        lines.append(f"LIFTorch((2,), leak_mode='decays', alpha=0.5, beta=0.5).double()"
                     f"(torch.ones((1, {steps}, 2), dtype=torch.float64))")
        lif = rp.modules.LIFTorch((2,), leak_mode="decays", alpha=0.5, beta=0.5).double()
        try:
            out, _, _ = lif(torch.ones((1, steps, 2), dtype=torch.float64))
            lines.append(f"-> spikes of dtype {out.dtype}")
        except RuntimeError as exc:
            lines.append(f"-> RuntimeError: {exc}")
    for line in lines:
        print(line)
    return lines


# ==================================================================== the matrix
_SOURCE = "Rockpool 3.1.0, nn/modules/torch/lif_torch.py"

MATRIX_ROWS = (
    Row("LIFTorch (alpha, beta) / LIFNeuronTorch, LinearTorch, Sequential", FEATURES),
    Row("LIFTorch (tau_mem, tau_syn) / LIFNeuronTorch (tau_mem), dt", FEATURES, {"leak_mode": "taus", "dt": 1e-3}),
    Row("LIFTorch / LIFNeuronTorch, max_spikes_per_dt", FEATURES.including("multispike")),
    # Without biases: LIFTorch's w_rec has none, and a drawn one would decline half the recurrent blocks.
    Row("LIFTorch, has_rec (w_rec)", FEATURES.including("recurrent").without("bias")),
    Row("LIFTorch / LIFNeuronTorch, initial vmem", FEATURES.including("v_init")),
    Row("Rockpool synaptic state: isyn = beta (isyn + input)", FEATURES.set("gain_equals_leak=off"),
        {"accept_any_gain": True},
        Expected("convention",
                 f"LIFTorch adds the input to its synaptic current, then decays the sum in the same step: the "
                 f"input enters scaled by beta (the synaptic gain is the synaptic leak), so a CubaLIF with gain "
                 f"1 (NIR, snnTorch, Norse) ported with its tau_syn alone takes beta times its input ({_SOURCE}, "
                 f"LIFTorch.forward). The input reaches vmem in its own step and the current starts at 0, as "
                 f"in eventsim",
                 flags="LIF(theta, leak=alpha, synapse_leak=beta, synapse_gain=beta, reset='soft', "
                       "strict=False)")),
    Row("LIFTorch synaptic current with beta 3/4, 7/8: beta (isyn + input)",
        FEATURES.set("synapse_leaks=0.75,0.875"), gradients=False,
        expected=Expected("rounding",
                          f"LIFTorch rounds beta (isyn + input) once where eventsim's product form rounds beta isyn "
                          f"and beta input apart ({_SOURCE}, LIFTorch.forward); they differ once a product needs "
                          f"more bits than the dtype holds (with beta 1/2 or 1 they never do). eventsim has no "
                          f"arithmetic form for it", flags="")),
    Row("LIFTorch / LIFNeuronTorch, StepPWL learning_window 0.5 (default)", FEATURES, {"learning_window": 0.5},
        Expected("convention",
                 f"StepPWL's surrogate is 1 / threshold where vmem >= threshold - learning_window and 0 below "
                 f"({_SOURCE}, StepPWL.backward); eventsim's straight-through estimator has no window",
                 flags="")),
    Row("LIFTorch / LIFNeuronTorch .double(), float64", FEATURES, {"plain_double": True},
        Expected("defect",
                 f"converted with .double(), LIFTorch and LIFNeuronTorch return float32 spikes (StepPWL's "
                 f".float(), records allocated in the default dtype), and LIFTorch raises a dtype error from its "
                 f"second step on, multiplying them by its float64 w_rec ({_SOURCE}, LIFTorch.forward)",
                 reproducer="eventsim.testing.rockpool_adapter:float64_reproducer")),
)
