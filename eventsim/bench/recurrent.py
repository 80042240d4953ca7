"""The recurrent CubaLIF network of ``eventsim bench``, the same in eventsim and in snnTorch.

A spoken-digit-sized recurrent network (the shape of the Spiking Heidelberg
Digits task: 700 input channels, 20 classes)::

    fc 700->256 -> recurrent CubaLIF (fc 256->256 from its own spikes of the step before)
    -> fc 256->20 -> readout

- eventsim: ``Linear``, ``Recurrent(LIF(synapse_leak=alpha, reset="soft",
  reset_delayed=True), Linear)``, ``Linear``, ``Readout`` (docs/semantics.md,
  "State beyond the potential" and "Recurrent connections");
- snnTorch 1.0: ``nn.Linear``, ``snn.RSynaptic(alpha, beta, all_to_all=True,
  linear_features=256)`` (reset by subtraction, delayed: snnTorch's
  defaults), ``nn.Linear``, ``snn.Leaky(beta, threshold=inf,
  reset_mechanism="none")``, stepped by hand over the time axis.

Both compute ``J[t] = alpha J[t-1] + I[t] + W_rec s[t-1]``,
``U[t] = beta U[t-1] + J[t] - theta s[t-1]``, ``s[t] = 1[U[t] > theta]``
(docs/conventions.md, snnTorch rows). No layer has a bias: snnTorch's
recurrent ``nn.Linear`` has one, which is set to zero and frozen.

The problem is drawn from one seed: weights uniform in
``+-WEIGHT_SCALE / sqrt(fan_in)`` (half of PyTorch's default bound, which
keeps the hidden layer at a few percent of neurons per step instead of
letting the recurrence run away), Bernoulli input spikes of a given density
(spoken-digit recordings binned to 100-1000 steps hold 1-5 % of the 700
channels per step), random labels. Both run in float32, as timed; the agreement check also runs
both in float64, where a different order of summation far more rarely moves
a potential across the threshold. The loss is Lee's MSE on the readout
``U[T] / T`` (:class:`~eventsim.learning.losses.LeeMSE`); the gradients are
eventsim's ``bptt`` and snnTorch's autograd with the same fast-sigmoid
surrogate ``1 / (1 + SLOPE |U - theta|)^2`` (snnTorch's ``fast_sigmoid``
with its default slope).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from eventsim.bench import peer
from eventsim.events import Events
from eventsim.layers import LIF, Linear, Readout, Recurrent
from eventsim.learning.losses import LeeMSE, one_hot
from eventsim.learning.rules import BPTT
from eventsim.learning.surrogates import FastSigmoid
from eventsim.network import Network

INPUTS, HIDDEN, OUTPUTS = 700, 256, 20
#: Per-step decay of the synaptic current (tau_syn = 5 steps) and of the potential (tau_mem = 20 steps),
#: rounded to float32: snnTorch stores them as float32 tensors whatever the dtype it runs in.
ALPHA, BETA = float(np.float32(math.exp(-1 / 5))), float(np.float32(math.exp(-1 / 20)))
THRESHOLD = 1.0
WEIGHT_SCALE = 0.5
#: snnTorch's ``surrogate.fast_sigmoid`` default slope; eventsim's ``FastSigmoid(c=SLOPE)`` is the same function.
SLOPE = 25.0
SEED = 0
#: The hidden layer's name in eventsim (the neuron inside ``rec1``) and the snnTorch module's layer of each weight.
HIDDEN_LAYER = "rec1.lif1"
SNNTORCH_WEIGHTS = {"fc1": "fc1", "rec1.fc1": "rec1.recurrent", "fc2": "fc2"}


@dataclass(frozen=True)
class Problem:
    """Weights (eventsim layer name -> (out, in) float32), input spikes ``(batch, steps, INPUTS)`` bool, labels."""

    weights: dict[str, np.ndarray]
    spikes: np.ndarray
    labels: np.ndarray

    @property
    def steps(self) -> int:
        return self.spikes.shape[1]

    def events(self, dtype: type = np.float32) -> Events:
        """The input as eventsim events, unit spikes."""
        return Events.from_dense(self.spikes.astype(dtype))

    def targets(self, dtype: type = np.float32) -> np.ndarray:
        """The one-hot labels, ``(batch, OUTPUTS)``."""
        return one_hot(self.labels, OUTPUTS, dtype)


def problem(batch: int, steps: int, density: float, seed: int = SEED) -> Problem:
    """The weights, input and labels both systems run, drawn from ``seed``."""
    rng = np.random.default_rng(seed)

    def uniform(fan_out: int, fan_in: int) -> np.ndarray:
        bound = WEIGHT_SCALE / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)

    weights = {"fc1": uniform(HIDDEN, INPUTS), "rec1.fc1": uniform(HIDDEN, HIDDEN), "fc2": uniform(OUTPUTS, HIDDEN)}
    spikes = rng.random((batch, steps, INPUTS)) < density
    return Problem(weights, spikes, rng.integers(0, OUTPUTS, batch))


def eventsim_network(weights: dict[str, np.ndarray], dtype: type = np.float32) -> Network:
    """The network in eventsim with ``weights``, run in ``dtype``."""
    w = {name: value.astype(dtype) for name, value in weights.items()}
    neuron = LIF(THRESHOLD, leak=BETA, reset="soft", reset_delayed=True, synapse_leak=ALPHA)
    return Network([
        Linear(INPUTS, HIDDEN, weight=w["fc1"]),
        Recurrent(neuron, Linear(HIDDEN, HIDDEN, weight=w["rec1.fc1"])),
        Linear(HIDDEN, OUTPUTS, weight=w["fc2"]),
        Readout(leak=BETA),
    ], input_shape=(INPUTS,), dtype=dtype)


def bptt() -> BPTT:
    """eventsim's gradient rule for the network: bptt with snnTorch's fast sigmoid."""
    return BPTT(surrogate=FastSigmoid(c=SLOPE))


def eventsim_gradients(network: Network, events: Events, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Forward with bptt's records, Lee's MSE, bptt's gradients (keyed ``"fc1.weight"``, ...)."""
    rule, loss = bptt(), LeeMSE()
    result = network.run(events, record=rule.records)
    _, grad_output = loss(network, result, labels)
    return rule.gradients(network, events, result, grad_output)


def snntorch_network(weights: dict[str, np.ndarray], dtype: type = np.float32) -> Any:
    """The network as a ``torch.nn.Module`` of snnTorch neurons with ``weights``, in ``dtype``.

    ``forward(x)`` with ``x`` of shape ``(T, B, INPUTS)`` returns the
    readout's potential U[T], ``(B, OUTPUTS)``, and the hidden layer's spike
    counts, ``(B, HIDDEN)`` (outside the graph).
    """
    torch, snn = peer.require()
    spike_grad = snn.surrogate.fast_sigmoid(slope=SLOPE)

    class RecurrentCubaLIF(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(INPUTS, HIDDEN, bias=False)
            self.rec1 = snn.RSynaptic(ALPHA, BETA, threshold=THRESHOLD, spike_grad=spike_grad, all_to_all=True,
                                      linear_features=HIDDEN)
            self.fc2 = torch.nn.Linear(HIDDEN, OUTPUTS, bias=False)
            self.out = snn.Leaky(BETA, threshold=math.inf, reset_mechanism="none")

        def forward(self, x: Any) -> tuple[Any, Any]:
            spk, syn, mem = self.rec1.reset_mem()
            potential = self.out.reset_mem()
            counts = torch.zeros(x.shape[1], HIDDEN, dtype=x.dtype)
            for t in range(x.shape[0]):
                spk, syn, mem = self.rec1(self.fc1(x[t]), spk, syn, mem)
                spk = spk.to(x.dtype)  # snnTorch's spikes are float32 whatever the input; no copy in float32
                counts += spk.detach()
                _, potential = self.out(self.fc2(spk), potential)
            return potential, counts

    module = RecurrentCubaLIF().to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        for name, path in SNNTORCH_WEIGHTS.items():
            module.get_submodule(path).weight.copy_(torch.from_numpy(weights[name]))
        module.rec1.recurrent.bias.zero_()
    module.rec1.recurrent.bias.requires_grad_(False)
    return module


def snntorch_input(spikes: np.ndarray, dtype: type = np.float32) -> Any:
    """The input as snnTorch steps through it: ``(T, B, INPUTS)``."""
    torch, _ = peer.require()
    return torch.from_numpy(np.ascontiguousarray(spikes.swapaxes(0, 1), dtype=dtype))


def snntorch_step(module: Any, x: Any, targets: Any) -> Callable[[], None]:
    """One forward and backward through ``module``: Lee's MSE on ``U[T] / T``, autograd's gradients."""
    steps = x.shape[0]

    def step() -> None:
        module.zero_grad(set_to_none=True)
        potential, _ = module(x)
        error = potential / steps - targets
        (0.5 * (error**2).sum(1).mean()).backward()

    return step


def _relative_difference(mine: np.ndarray, theirs: np.ndarray) -> float:
    scale = float(np.max(np.abs(theirs)))
    return float(np.max(np.abs(mine - theirs))) / scale if scale > 0 else float(np.max(np.abs(mine)))


def _distance(task: Problem, dtype: type, gradients: bool) -> dict[str, float]:
    torch, _ = peer.require()
    network, events = eventsim_network(task.weights, dtype), task.events(dtype)
    result = network.run(events, record=("counts",))
    module, x = snntorch_network(task.weights, dtype), snntorch_input(task.spikes, dtype)
    with torch.no_grad():
        potential, counts = module(x)
    out = {
        "spike_counts_equal": float(np.mean(result.counts[HIDDEN_LAYER] == counts.numpy())),
        "readout_max_difference": float(np.max(np.abs(result.output - potential.numpy() / task.steps))),
    }
    if gradients:
        mine = eventsim_gradients(network, events, task.labels)
        module = snntorch_network(task.weights, dtype)  # snnTorch keeps the last run's state dtype: start afresh
        snntorch_step(module, x, torch.from_numpy(task.targets(dtype)))()
        out["gradient_max_relative_difference"] = max(
            _relative_difference(mine[f"{name}.weight"], module.get_submodule(path).weight.grad.numpy())
            for name, path in SNNTORCH_WEIGHTS.items())
    return out


def agreement(task: Problem, *, gradients: bool) -> dict[str, float]:
    """How far snnTorch's results on ``task`` are from eventsim's, in float32 (as timed) and in float64.

    Returns ``spike_counts_equal`` (the fraction of (sample, hidden neuron)
    spike counts over T that are equal), ``readout_max_difference`` (the
    largest difference of the readouts ``U[T] / T``) and, with
    ``gradients``, ``gradient_max_relative_difference`` (over the three
    weights, the largest difference of a gradient entry over the largest
    snnTorch entry of that weight); the float64 values carry the suffix
    ``_float64``. The two systems sum the currents in different orders, so
    in float32 a potential that rounds to either side of the threshold can
    fire in one and not the other, and the recurrence carries the
    difference on; in float64 such ties are far rarer.
    """
    out = _distance(task, np.float32, gradients)
    return {**out, **{f"{name}_float64": value for name, value in _distance(task, np.float64, gradients).items()}}
