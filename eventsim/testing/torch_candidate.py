"""The PyTorch reference candidate: eventsim's semantics as a dense, time-stepped torch model.

This module is the worked example of "a GPU implementation under test" (the
protocol of :mod:`eventsim.testing.protocol`). :class:`TorchCandidate` is the
model a GPU author would write: at every step, ``conv2d``, ``linear`` and
pooling from ``torch.nn.functional`` followed by the neuron recursion of
docs/semantics.md, "Neurons", on the CPU or on CUDA, differentiated by
autograd. On dyadic networks it gives eventsim's spikes and potentials bit for
bit, and it is the independent reference that eventsim's tests hold the
``bptt`` and ``lee2020-code`` gradient rules against.

1. ``build``: reading eventsim's layers
---------------------------------------
``TorchCandidate(device="cpu", dtype=None).build(network)`` walks
``network.layers`` once and turns every layer into a *block*, a callable on
one step's batch ``x`` of shape ``(batch, *shape)``:

============================  ==================================================
eventsim layer                torch, per step
============================  ==================================================
``Conv2d``                    ``F.conv2d(x, W, b, stride, padding)``
``Linear``                    ``F.linear(x, W, b)``
``SumPool``, ``AvgPool``      ``F.avg_pool2d(x * w, k, s, divisor_override=1)``
``MaxPool``                   ``F.max_pool2d(x, k, s)``
``Identity(stride)``          ``x[:, :, ::sh, ::sw]``
``Flatten``                   ``x.flatten(1)``
``Dropout``                   ``x * (1/(1-p)) * keep`` with a mask, else ``x``
``LIF``, ``IF``, ``Readout``  :meth:`TorchCandidate.neuron_step` on the current
``SpikingAvgPool``            the average pool feeding the layer's IF neuron
``Residual``                  main path, then ``neuron_step(last(main) + skip(x))``
``Recurrent``                 at each step, ``I[t] + connection(s[t-1])`` into its neuron
``Delay``                     ``x[t - d_i]`` per neuron, 0 before ``d_i``
a neuron layer's ``norm``     ``k * I + c`` on its current, before ``neuron_step``
a synaptic current            ``J = alpha * J + h * I``, integrated instead of I
============================  ==================================================

A weighted sum (any synapse but ``MaxPool``) directly followed by a neuron
layer (or a recurrent block) becomes that layer's input current, as eventsim
fuses the two into one stage; a neuron layer after no synapse takes its
input values as current.
Any other layer type is refused with a :class:`~eventsim.errors.LayerError` naming it.
Weights and biases, and the scale and shift of input-current norms, become
leaf tensors on the device, under the keys of
:func:`eventsim.learning.parameters.parameters` (``"conv1.weight"``,
``"res1.conv2.bias"``, ``"lif1.norm.scale"``, ...). Thresholds, leaks, reset values, input gains
and pool weights are rounded once to the model's dtype, as eventsim rounds
them, and each neuron layer becomes a :class:`TorchNeuron`.

2. ``run``: time-major records
------------------------------
``model.run(spikes)`` takes ``(T, batch, *input_shape)`` and passes it
through the blocks one layer at a time: a synapse maps all T steps at once
(steps folded into the batch), a neuron layer steps ``t = 0 .. T-1`` from
``R[0] = v_init`` (0 by default), ``s[0] = 0`` and ``J[0] = 0`` (a recurrent
block adding at each step its connection's current from the spikes of the
step before), and a delay shifts all T steps at once. Layer by layer rather
than step by step because an input-current norm in training (``train=True``) needs its layer's currents at
every step before the neurons integrate them: its mean and biased variance
per channel are taken over steps, batch and positions (``"batch_time"``) or
over batch and positions per step (``"batch"``), in float64, and
``k = a / sqrt(var + eps)``, ``c = b - mean * k`` are rounded to the model's
dtype, as eventsim rounds them (docs/semantics.md, "Input-current batch
norm"); autograd differentiates through the statistics. Without ``train``
the running statistics stand in. It reports what eventsim's event path passes from
layer to layer: each neuron layer's spikes and potentials U (under the pool's
name for a ``SpikingAvgPool``, under the neuron's own name for a residual
block, under the neuron's own name for a recurrent block), the synaptic
current J of a layer that has one, and the values of every layer that
passes values on without a neuron (a synapse not followed by neurons,
``MaxPool``, ``Dropout``, ``Delay``). Each record
stacks the steps along axis 0: ``(T, batch, *shape)`` NumPy arrays, the
layout of ``Network.run(record=("spikes", "potentials"))`` with batch and
time swapped. Dropout is off unless ``masks=`` gives keep-masks (those of an
eventsim training run, ``RunResult.masks``).

3. ``gradients``: autograd, keyed like eventsim's parameters
------------------------------------------------------------
``model.gradients(spikes, request)`` runs the same forward with autograd on
and differentiates ``L = sum(out * request.grad_output)``, ``out`` being the
readout ``U_L[T] / T`` of a network ending in a ``Readout``, else the last
layer's output summed over the steps. The spike is ``1[U > theta]`` in the
forward pass and has derivative ``sigma(U - theta)``, the request's
surrogate, in the backward pass (:meth:`TorchCandidate.spike`); the reset
uses the detached spike when ``request.detach_reset``. The conventions of
the state beyond the potential (docs/semantics.md, "bptt") follow from the
forward by autograd: a spike count has the spike's derivative, the clamp
passes no gradient where it held R at ``v_min``, the recurrent current
carries the gradient of the spikes of the step before (never detached) and
a delay shifts gradients back. The gradient of each
parameter comes back under its key, as a NumPy array in the model's dtype.
``rule="lee2020-code"`` differentiates the same forward the way Lee et
al.'s published code does (docs/semantics.md, "lee2020-code").

4. Planting a bug
-----------------
Two methods carry the semantics that implementations most often get wrong,
so that a deliberately broken candidate is one small override:
:meth:`TorchCandidate.neuron_step` (``U[t]``, ``s[t]`` and the next state
from the state, the current and the :class:`TorchNeuron`) and
:meth:`TorchCandidate.surrogate_derivative`. For example, with
``dataclasses.replace``::

    class LeakOnInput(TorchCandidate):
        def neuron_step(self, state, current, neuron, backward):
            return super().neuron_step(state, neuron.leak * current, neuron, backward)

    class FiresOnEqual(TorchCandidate):
        def neuron_step(self, state, current, neuron, backward):
            return super().neuron_step(state, current, replace(neuron, strict=False), backward)

    class ResetLate(TorchCandidate):
        def neuron_step(self, state, current, neuron, backward):
            return super().neuron_step(state, current, replace(neuron, reset_delayed=True), backward)

    class SteepSurrogate(TorchCandidate):
        def surrogate_derivative(self, surrogate, u, theta):
            return 2 * super().surrogate_derivative(surrogate, u, theta)

``eventsim.testing.conform(LeakOnInput())`` then reports the first
divergence on a shrunk network. The candidate's ``features`` tell
``conform`` what to generate: everything, ``input_gain``,
``reset_delayed`` and the state features included.

5. Exactness
------------
With dyadic weights every sum is exact in any order, so ``conv2d`` may sum
as it likes. What must match eventsim operation by operation is the rest:
the leak is ``lam * R`` with ``lam`` rounded to the dtype, then ``+ g * I``
(a delayed soft reset subtracts theta last, after ``g * I`` is added);
the synaptic current, the rest potential, the clamp and the spike count
follow the operations of docs/semantics.md, "State beyond the potential"
(:meth:`TorchNeuron.synaptic`, :meth:`TorchNeuron.charge`,
:meth:`TorchNeuron.clamp`, :meth:`TorchNeuron.count`); average pooling
multiplies every input by ``1/(kh*kw)`` and sums (``divisor_override=1``)
instead of dividing the sum; the readout divides
``U[T]`` by T. While a model computes, float32 matrix products and cuDNN
convolutions are held to full float32 precision (no TF32), a setting of
the process that is restored afterwards.

torch is imported only when a candidate is made; without it,
:class:`TorchCandidate` raises an ImportError that names the extra.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from eventsim.errors import EventsError, LayerError, OptionError, check_choice
from eventsim.extras import require
from eventsim.layers import (
    LIF, AvgPool, Conv2d, Delay, Dropout, Flatten, Identity, Layer, Linear, MaxPool, Readout, Recurrent, Residual,
    SpikingAvgPool, SumPool,
)
from eventsim.network import Network
from eventsim.testing.protocol import GradientRequest, LayerRecord

if TYPE_CHECKING:
    import torch

#: Gradient rules the candidate differentiates with (docs/semantics.md, "Gradient rules").
RULES = ("bptt", "lee2020-code")
SURROGATES = ("straight_through", "fast_sigmoid", "arctan", "sigmoid", "triangle")


def _import_torch() -> Any:
    """Import torch, or raise MissingExtraError (an ImportError) that says how to install it."""
    return require("torch", "TorchCandidate")


# ====================================================================== neurons
@dataclass(frozen=True)
class TorchNeuron:
    """A neuron layer as the torch model holds it (docs/semantics.md, "Neurons").

    The options of :class:`eventsim.layers.LIF`, with the numbers as tensors
    in the model's dtype and on its device. ``theta`` broadcasts against one
    step's current: ``(C, 1, 1)`` for maps, ``(N,)`` for flat layers (inf:
    never fires). ``kind`` is ``"spiking"`` (LIF, IF, a residual block's
    neuron), ``"pool"`` (the IF neuron of a SpikingAvgPool) or ``"readout"``.
    ``norm`` is the layer's input-current norm, or None. ``arithmetic`` is
    the layer's form and ``divisor`` its d (docs/semantics.md, "Arithmetic
    forms"; 1 where the form has none).

    The options of "State beyond the potential" are None where the layer
    leaves them at their defaults, so that their operations are left out:
    ``synapse_leak`` alpha (None: no synaptic current), ``synapse_gain`` h
    (None: h = 1, the input enters J as it is), ``v_rest`` (None: 0, the
    operations marked (rest) left out), ``v_init`` (None: R[0] = 0),
    ``v_min`` (None: no clamp) and ``spike_limit``, the M of several spikes
    per step (inf: no bound; None: one spike per step, M = 1).
    """

    name: str
    kind: str
    theta: torch.Tensor
    leak: torch.Tensor
    input_gain: torch.Tensor
    v_reset: torch.Tensor
    reset: str
    strict: bool
    reset_delayed: bool
    norm: TorchNorm | None = None
    arithmetic: str = "product"
    divisor: torch.Tensor | None = None
    synapse_leak: torch.Tensor | None = None
    synapse_gain: torch.Tensor | None = None
    v_rest: torch.Tensor | None = None
    v_init: torch.Tensor | None = None
    v_min: torch.Tensor | None = None
    spike_limit: torch.Tensor | None = None

    def synaptic(self, j: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """``J[t] = alpha * J[t-1] + h * I[t]``: ``a = alpha * J``, ``b = h * I`` (I when h = 1), ``a + b``.

        docs/semantics.md, "State beyond the potential", step 1.
        """
        b = current if self.synapse_gain is None else self.synapse_gain * current
        return self.synapse_leak * j + b

    def charge(self, r: torch.Tensor, x: torch.Tensor, leak: Callable) -> torch.Tensor:
        """U from the potential after the reset R and the integrated current X, the form's operations in order.

        docs/semantics.md, "State beyond the potential", step 2 (the table of
        "Arithmetic forms" where v_rest is None)::

            "product"          p = R - v_rest; a = lam * p; a = v_rest + a; U = a + g * X
            "euler"            U = R + k * ((v_rest - R) + X)           (X - R without rest)
            "euler-divide"     p = R - v_rest; U = R + (X - p) / d
            "subtract-divide"  p = R - v_rest; U = (R - p / d) + X

        ``leak(p, lam)`` forms the product form's ``lam * p``
        (:meth:`Backward.leak`).
        """
        rest = self.v_rest
        if self.arithmetic == "product":
            a = leak(r if rest is None else r - rest, self.leak)
            return (a if rest is None else rest + a) + self.input_gain * x
        if self.arithmetic == "euler":
            return r + self.input_gain * (x - r if rest is None else (rest - r) + x)
        p = r if rest is None else r - rest
        if self.arithmetic == "euler-divide":
            return r + (x - p) / self.divisor
        return (r - p / self.divisor) + x

    def reset_of(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``R(x, s)``: ``x * (1 - s) + v_reset * s`` (hard) or ``x - theta * s`` (soft).

        ``s`` is the spike, or the count n of several spikes per step: the
        soft reset subtracts ``n * theta``; the hard one gates with 1 where
        n > 0, a gate that carries n's gradient (docs/semantics.md, "bptt":
        ``dR/dn = v_reset - U``). The soft reset subtracts 0 where theta is
        inf: such neurons never fire, and ``inf * 0`` would be NaN.
        """
        if self.reset == "hard":
            if self.spike_limit is not None:
                s = (s != 0).to(s.dtype) + (s - s.detach())
            return x * (1 - s) + self.v_reset * s
        return x - self.theta.nan_to_num(posinf=0.0) * s

    def clamp(self, r: torch.Tensor) -> torch.Tensor:
        """``R = v_min`` where ``R < v_min`` (step 5); its gradient is 0 there, as the clamp holds R."""
        return r if self.v_min is None else r.where(~(r < self.v_min), self.v_min)

    def count(self, u: torch.Tensor, fired: torch.Tensor) -> torch.Tensor:
        """The spikes of a step: ``fired`` itself, or with several spikes per step the count n (step 3)::

            q = U / theta;   n = min(M, floor(q))   (>=)   or   min(M, max(1, ceil(q) - 1))   (>)

        where the neuron fired, 0 elsewhere. ``u`` is detached: the count's
        gradient is the spike's (:meth:`TorchCandidate.spike`).
        """
        if self.spike_limit is None:
            return fired
        q = u.detach() / self.theta
        n = q.floor() if not self.strict else (q.ceil() - 1).clamp(min=1.0)
        return n.minimum(self.spike_limit).where(fired, 0.0)


@dataclass(frozen=True)
class TorchNorm:
    """An input-current norm as the torch model holds it: ``scale`` and ``shift`` are leaves.

    ``running_mean`` and ``running_var`` are float64 constants; ``stats`` is
    "batch_time" or "batch" (:class:`eventsim.norm.CurrentNorm`).
    """

    stats: str
    eps: float
    scale: torch.Tensor
    shift: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __call__(self, current: torch.Tensor, train: bool) -> torch.Tensor:
        """``k * I + c`` for currents ``(T, batch, C, ...)``, with batch or running statistics."""
        channel = (-1,) + (1,) * (current.dim() - 3)  # C broadcast against the positions
        wide = current.double()
        if train:  # (C,), or (T, C) per step
            dims = (() if self.stats == "batch" else (0,)) + (1,) + tuple(range(3, current.dim()))
            mean, var = wide.mean(dim=dims), wide.var(dim=dims, unbiased=False)
        else:
            mean, var = self.running_mean, self.running_var
        k = self.scale.double() / (var + self.eps).sqrt()
        c = self.shift.double() - mean * k
        shape = (k.shape[0], 1) + channel if k.dim() == 2 else channel  # (T, 1, C, ...) per step
        k, c = k.to(current.dtype).reshape(shape), c.to(current.dtype).reshape(shape)
        return k * current + c


@dataclass(frozen=True)
class Backward:
    """How a forward pass is differentiated.

    ``rule``: ``"bptt"`` (the spike's derivative is ``surrogate``, an
    :mod:`eventsim.learning.surrogates` object, and the reset is detached when
    ``detach_reset``) or ``"lee2020-code"`` (the mechanics of Lee et al.'s
    published code: straight-through ``1/theta`` where the neuron fired, the
    reset always detached, the leak with the gradient of the identity).
    """

    rule: str = "bptt"
    surrogate: Any = None
    detach_reset: bool = True

    def leak(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """``lam * x``; under ``lee2020-code`` its gradient is 1.

        Lee et al.'s code leaks with a detach trick; ``lam * x.detach() + (x - x.detach())``
        is exactly ``lam * x`` in floating point, so the forward stays eventsim's.
        """
        if self.rule == "lee2020-code":
            return lam * x.detach() + (x - x.detach())
        return lam * x


# ==================================================================== candidate
class TorchCandidate:
    """eventsim's forward pass in PyTorch, a candidate of :mod:`eventsim.testing.protocol`.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"`` (default) or ``"cuda"`` (``"cuda:1"``, ...).
    dtype : None, float32 or float64 (NumPy or torch dtype, or its name)
        None: the network's own dtype.
    rule : {"bptt", "lee2020-code"}
        What :meth:`TorchModel.gradients` differentiates with (see :class:`Backward`).

    Raises
    ------
    ImportError
        torch is not installed.
    OptionError
        An unknown rule, device or dtype, or a CUDA device without CUDA.
    """

    def __init__(self, device: Any = "cpu", dtype: Any = None, rule: str = "bptt") -> None:
        torch = _import_torch()
        check_choice("rule", rule, RULES)
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise OptionError(f"unknown torch device {device!r}: {exc}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise OptionError(f"device {device!r} asked for, but torch sees no CUDA device")
        self.dtype = None if dtype is None else _float_dtype(torch, dtype)
        self.rule = rule
        self.name = f"torch-{self.device}" + ("" if rule == "bptt" else f"-{rule}")

    @property
    def features(self) -> Any:
        """What the candidate supports, for :func:`eventsim.testing.conform` to generate within.

        Every layer and neuron option, ``input_gain``, ``reset_delayed`` and
        the state options, recurrent blocks and delays
        (:data:`~eventsim.testing.strategies.STATE_FEATURES`) included; under
        ``lee2020-code`` single-spike neurons with hard reset to 0 only, in
        feed-forward networks without delays. (Needs hypothesis.)
        """
        from eventsim.testing.strategies import STATE_FEATURES, Features

        if self.rule == "lee2020-code":
            return Features().including("input_gain", "reset_delayed").without("soft", "v_reset")
        return Features().including("input_gain", "reset_delayed", *STATE_FEATURES)

    def build(self, network: Network) -> TorchModel:
        """The torch model of ``network`` (section 1 of the module docstring)."""
        return TorchModel(self, network)

    def neuron_step(
        self, state: tuple[torch.Tensor, torch.Tensor], current: torch.Tensor, neuron: TorchNeuron,
        backward: Backward,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step of a neuron layer: ``(U[t], s[t], next state)`` from ``state = (U[t-1], s[t-1])``.

        ``current`` is what the potential integrates: the input current I[t]
        (after the layer's norm and its recurrent current), or the synaptic
        current J[t] of a layer that has one (:meth:`TorchNeuron.synaptic`).
        docs/semantics.md, "Neurons" (Lee et al. 2020, Sec. 2.1, written on U),
        with the input gain g::

            U[t] = lam * R(U[t-1], s[t-1]) + g * I[t]
            R(U, s) = U * (1 - s) + v_reset * s        hard reset
                    = U - theta * s                    soft reset
            s[t] = 1[U[t] > theta]                     (>= when not strict)

        and with ``reset_delayed`` (the reset acts one step later, after the
        leak, as in snnTorch's ``Leaky``), evaluated left to right::

            U[t] = lam * U[t-1] + g * I[t] - theta * s[t-1]                     soft
            U[t] = (1 - s[t-1]) * lam * U[t-1] + s[t-1] * v_reset + g * I[t]    hard

        An immediate reset computes, in the order of docs/semantics.md,
        "State beyond the potential", the reset R of the previous step's
        spikes (or counts), its clamp at ``v_min``, then U from R in the
        layer's form, the rest potential included
        (:meth:`TorchNeuron.charge`); the spikes are then counted
        (:meth:`TorchNeuron.count`). The initial state ``(v_init, 0)`` makes
        R[0] = v_init. The reset reads the detached spike when
        ``backward.detach_reset``.
        """
        u_prev, s_prev = state
        s = s_prev.detach() if backward.detach_reset else s_prev
        if not neuron.reset_delayed:
            r = neuron.clamp(neuron.reset_of(u_prev, s))
            if neuron.arithmetic != "product" and backward.rule == "lee2020-code":
                u = neuron.charge(r.detach(), current, backward.leak) + (r - r.detach())  # the leak's gradient is 1
            else:
                u = neuron.charge(r, current, backward.leak)
        elif neuron.reset == "hard":
            u = neuron.reset_of(backward.leak(u_prev, neuron.leak), s) + neuron.input_gain * current
        else:  # theta is subtracted last: the order of the sum decides the rounding
            u = neuron.reset_of(backward.leak(u_prev, neuron.leak) + neuron.input_gain * current, s)
        fired = u > neuron.theta if neuron.strict else u >= neuron.theta
        spikes = self.spike(u, neuron.count(u, fired), neuron, backward)
        return u, spikes, (u, spikes)

    def spike(self, u: torch.Tensor, fired: torch.Tensor, neuron: TorchNeuron, backward: Backward) -> torch.Tensor:
        """``fired`` (bool, or the counts n) as values whose derivative with respect to ``u`` is the rule's slope.

        A count is differentiated as one spike (docs/semantics.md, "bptt":
        ``dn/dU := sigma(U - theta)``).

        ``s + (u - u.detach()) * slope`` is ``s`` exactly in the forward pass
        and has gradient ``slope`` in the backward pass (slope detached).
        ``bptt``: ``slope = sigma(U - theta)`` (:meth:`surrogate_derivative`).
        ``lee2020-code``: ``1/theta`` where the neuron fired for LIF/IF layers,
        1 for the pooling neuron, 0 where it did not fire (the code's gated,
        straight-through spike; docs/semantics.md, "lee2020-code").
        """
        s = fired.to(u.dtype)
        if not u.requires_grad:
            return s
        if backward.rule == "lee2020-code":
            slope = s / neuron.theta if neuron.kind == "spiking" else s
        else:
            slope = self.surrogate_derivative(backward.surrogate, u.detach(), neuron.theta)
        return s + (u - u.detach()) * slope

    def surrogate_derivative(self, surrogate: Any, u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``sigma(U - theta)`` of an :mod:`eventsim.learning.surrogates` object, 0 where theta is inf.

        Written from the formulas of docs/semantics.md, "bptt" (selected by
        ``surrogate.name``, parameters read from its fields), with
        ``x = U - theta``: straight_through ``1/theta``; fast_sigmoid
        ``b / (1 + c|x|)^2``, ``b = None`` meaning ``1/theta`` (Syed et al.
        2021, eq. 12); arctan ``(alpha/2) / (1 + (pi/2 alpha x)^2)``; sigmoid
        ``alpha sig(alpha x) (1 - sig(alpha x))``; triangle
        ``max(0, 1 - |x|/width) / width``. Returns the shape of ``u``.
        """
        torch = _import_torch()
        name = getattr(surrogate, "name", None)
        check_choice("surrogate", name, SURROGATES)
        finite = torch.isfinite(theta)
        th = torch.where(finite, theta, 1.0)  # any finite stand-in: the result is zeroed there
        x = u - th
        if name == "straight_through":
            sigma = 1 / th
        elif name == "fast_sigmoid":
            height = 1 / th if surrogate.b is None else float(surrogate.b)
            sigma = height / (1 + float(surrogate.c) * x.abs()) ** 2
        elif name == "arctan":
            alpha = float(surrogate.alpha)
            sigma = (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)
        elif name == "sigmoid":
            alpha = float(surrogate.alpha)
            sig = torch.sigmoid(alpha * x)
            sigma = alpha * sig * (1 - sig)
        else:
            width = float(surrogate.width)
            sigma = torch.clamp(1 - x.abs() / width, min=0.0) / width
        return torch.broadcast_to(torch.where(finite, sigma, 0.0), u.shape)


# ======================================================================= blocks
def _every_step(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """A per-step map applied to ``(T, batch, ...)`` values at once, the steps folded into the batch.

    A map that reads other steps (``over_time``, a synapse with delays) is given the steps as they are.
    """
    if getattr(fn, "over_time", False):
        return fn(x)
    out = fn(x.flatten(0, 1))
    return out.reshape(x.shape[:2] + out.shape[1:])


class _DelayedLinear:
    """``I[t, o] = sum_i W[o, i] x[t - d[o, i], i] (+ b[o])`` on ``(T, batch, in)`` values (docs/semantics.md,
    "Delays"): one product per distinct delay, with the synapses of that delay, on the input shifted by it."""

    over_time = True

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, delay: torch.Tensor) -> None:
        self.weight, self.bias, self.delay = weight, bias, delay

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        torch = _import_torch()
        steps = x.shape[0]
        out = torch.zeros(x.shape[:2] + (self.weight.shape[0],), dtype=x.dtype, device=x.device)
        for d in torch.unique(self.delay).tolist():
            if d >= steps:
                continue  # lands at or after T: dropped
            weight = self.weight * (self.delay == d)
            out[d:] = out[d:] + torch.nn.functional.linear(x[: steps - d], weight)
        return out if self.bias is None else out + self.bias


class _Map:
    """A block that maps a layer's values to the next layer's values (a synapse, MaxPool, Flatten)."""

    def __init__(self, name: str | None, fn: Callable) -> None:
        self.name, self.fn = name, fn  # name None: not reported (Flatten)

    def __call__(self, x: torch.Tensor, run: _Run) -> torch.Tensor:
        return _every_step(self.fn, x)


class _Dropout:
    """Dropout with the run's keep-mask (docs/semantics.md, "Dropout"); the identity without one."""

    def __init__(self, name: str, scale: torch.Tensor) -> None:
        self.name, self.scale = name, scale

    def __call__(self, x: torch.Tensor, run: _Run) -> torch.Tensor:
        keep = run.masks.get(self.name)
        return x if keep is None else x * self.scale * keep


class _Neurons:
    """A neuron layer, fed by the synapse before it (or by its input values when there is none), and by
    its own spikes through ``connection`` when it is a recurrent block."""

    def __init__(self, neuron: TorchNeuron, synapse: Callable | None, connection: Callable | None = None) -> None:
        self.name, self.neuron, self.synapse, self.connection = neuron.name, neuron, synapse, connection

    def __call__(self, x: torch.Tensor, run: _Run) -> torch.Tensor:
        return run.neurons(self.neuron, x if self.synapse is None else _every_step(self.synapse, x), self.connection)


class _Delay:
    """Every neuron's values shifted later by its delay; what would land at a step >= T is dropped."""

    def __init__(self, name: str, steps: torch.Tensor) -> None:
        self.name, self.steps = name, steps  # steps: (neurons,) in C order

    def __call__(self, x: torch.Tensor, run: _Run) -> torch.Tensor:
        torch = _import_torch()
        flat = x.flatten(2)  # (T, batch, neurons)
        source = torch.arange(x.shape[0], device=x.device)[:, None] - self.steps  # (T, neurons): t - d_i
        shifted = flat.gather(0, source.clamp(min=0)[:, None, :].expand(flat.shape))
        return shifted.where(source[:, None, :] >= 0, 0.0).reshape(x.shape)


class _Residual:
    """Lee et al. 2020, Sec. 2.2.2: the main path's last synapse and the skip feed one neuron layer."""

    def __init__(self, main: list, last: Callable, skip: Callable, neuron: TorchNeuron) -> None:
        self.name, self.main, self.last, self.skip, self.neuron = neuron.name, main, last, skip, neuron

    def __call__(self, x: torch.Tensor, run: _Run) -> torch.Tensor:
        return run.neurons(self.neuron, _every_step(self.last, run.sequence(self.main, x)) + _every_step(self.skip, x))


def _pool_sum(x: torch.Tensor, weight: torch.Tensor, kernel_size: tuple, stride: tuple) -> torch.Tensor:
    # Every input times the window weight, then the window sum: the products eventsim forms per event.
    return _import_torch().nn.functional.avg_pool2d(x * weight, kernel_size, stride, divisor_override=1)


def _subsample(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    return x[:, :, :: stride[0], :: stride[1]]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


# ============================================================= one forward pass
class _Run:
    """The state of one forward pass: records ``(T, batch, ...)`` by layer, dropout masks, norm mode."""

    def __init__(self, candidate: TorchCandidate, backward: Backward, masks: dict, train: bool) -> None:
        self.candidate, self.backward, self.masks, self.train = candidate, backward, masks, train
        self.outputs: dict[str, torch.Tensor] = {}
        self.potentials: dict[str, torch.Tensor] = {}
        self.synaptic: dict[str, torch.Tensor] = {}  # J of layers with a synaptic current
        self.steps: dict[str, list] = {}  # each step's U tensor, what potential_gradients differentiates by
        self.leaks: dict[str, float] = {}  # spiking layers whose spike gradient gets Lee's NG factor
        self.ng: dict[str, torch.Tensor] = {}

    def sequence(self, blocks: list, x: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            x = block(x, self)
            if block.name is not None:
                self.outputs[block.name] = x
        return x

    def neurons(self, neuron: TorchNeuron, current: torch.Tensor, connection: Callable | None = None) -> torch.Tensor:
        """The spikes ``(T, batch, ...)`` of a neuron layer from its currents, from R[0] = v_init, s[0] = 0.

        Per step (docs/semantics.md, "State beyond the potential" and
        "Recurrent connections"): the current ``I[t]`` (after the norm), plus
        ``connection(s[t-1])`` for a recurrent block, feeds the synaptic
        current J of a layer that has one, and the neuron integrates J (else I).
        """
        if neuron.norm is not None:
            current = neuron.norm(current, self.train)
        zero = current.new_zeros(current.shape[1:])
        start = zero if neuron.v_init is None else zero + neuron.v_init
        state, potentials, spikes, synaptic = (start, zero), [], [], []
        for step in current:
            if connection is not None:
                step = step + connection(spikes[-1] if spikes else zero)
            if neuron.synapse_leak is not None:
                step = neuron.synaptic(synaptic[-1] if synaptic else zero, step)
                synaptic.append(step)
            u, s, state = self.candidate.neuron_step(state, step, neuron, self.backward)
            if self.backward.rule == "lee2020-code" and neuron.kind == "spiking" and s.requires_grad:
                # The code's hook: every step's spike gradient times NG, known only once the run is over.
                self.leaks[neuron.name] = float(neuron.leak)
                s.register_hook(lambda grad, name=neuron.name: grad * self.ng[name])
            potentials.append(u)
            spikes.append(s)
        torch = _import_torch()
        self.steps[neuron.name] = potentials
        self.potentials[neuron.name] = torch.stack(potentials)
        if synaptic:
            self.synaptic[neuron.name] = torch.stack(synaptic)
        return torch.stack(spikes)

    def finish(self) -> None:
        """Lee's ``NG = 1 + ln(lam) f / gamma`` (0 where gamma = 0) from the finished forward.

        gamma is the spike count and ``f = sum_k lam^(T - t_k)`` the trace,
        accumulated as ``f[t] = lam f[t-1] + s[t]`` (docs/semantics.md, "lee2020").
        """
        for name, lam in self.leaks.items():
            spikes = list(self.outputs[name].detach())
            gamma = sum(spikes[1:], spikes[0])
            trace = spikes[0]
            for s in spikes[1:]:
                trace = lam * trace + s
            log_lam = math.log(lam) if lam > 0 else -math.inf
            fired = gamma > 0
            ratio = trace / gamma.clamp(min=1)
            self.ng[name] = (1 + log_lam * ratio).where(fired, 0.0)


# ======================================================================== model
class TorchModel:
    """A network built by :class:`TorchCandidate` (see the module docstring).

    Attributes
    ----------
    parameters : dict of str -> torch.Tensor
        The weights and biases as leaf tensors, by key (``"conv1.weight"``).
    dtype : numpy dtype
        What the model computes in.
    """

    def __init__(self, candidate: TorchCandidate, network: Network) -> None:
        if not isinstance(network, Network):
            raise TypeError(f"TorchCandidate.build needs an eventsim Network, got {type(network).__name__}")
        self.candidate = candidate
        self.network = network
        self.device = candidate.device
        self.dtype = np.dtype(network.dtype if candidate.dtype is None else candidate.dtype)
        self.parameters: dict[str, torch.Tensor] = {}
        self._dropouts: dict[str, Dropout] = {}
        self.blocks = self._blocks(network.layers)
        last = network.layers[-1]
        self._readout = last.name if isinstance(last, Readout) else None
        self._last = last

    # --------------------------------------------------------------- build
    def _blocks(self, layers: Sequence[Layer]) -> list:
        blocks: list = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            after = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, (LIF, Recurrent)):
                blocks.append(self._neurons(layer, None))
            elif isinstance(layer, Delay):
                blocks.append(self._delay(layer))
            elif isinstance(layer, SpikingAvgPool):
                blocks.append(_Neurons(self._neuron(layer.neuron, layer.name, pool=True), self._synapse(layer.pool)))
            elif isinstance(layer, Residual):
                main = self._blocks(layer.main[:-1])
                last, skip = self._synapse(layer.main[-1]), self._synapse(layer.skip)
                blocks.append(_Residual(main, last, skip, self._neuron(layer.neuron, layer.neuron.name)))
            elif isinstance(layer, Dropout):
                self._dropouts[layer.name] = layer
                blocks.append(_Dropout(layer.name, self._constant(layer.scale)))
            elif isinstance(layer, Flatten):
                blocks.append(_Map(None, _flatten))
            elif isinstance(after, (LIF, Recurrent)) and not isinstance(layer, MaxPool):
                # A weighted sum and its neurons are one block, as in eventsim (max pooling is not a sum).
                blocks.append(self._neurons(after, self._synapse(layer)))
                i += 1
            else:
                blocks.append(_Map(layer.name, self._synapse(layer)))
            i += 1
        return blocks

    def _neurons(self, layer: LIF | Recurrent, synapse: Callable | None) -> _Neurons:
        """A neuron layer fed by ``synapse`` (or by its input values); a recurrent block's neurons also by
        their own spikes of the step before, through its connection (docs/semantics.md, "Recurrent connections")."""
        if isinstance(layer, LIF):
            return _Neurons(self._neuron(layer, layer.name), synapse)
        self._refuse_under_lee(layer, "a recurrent connection")
        return _Neurons(self._neuron(layer.neuron, layer.neuron.name), synapse, self._synapse(layer.connection))

    def _delay(self, layer: Delay) -> _Delay:
        """``out[t, i] = in[t - d_i, i]``, 0 before d_i (docs/semantics.md, "Delays")."""
        self._refuse_under_lee(layer, "a delay")
        torch = _import_torch()
        steps = layer.per_neuron(self.network.shapes[layer.name][0])
        return _Delay(layer.name, torch.tensor(steps, device=self.device))

    def _refuse_under_lee(self, layer: Layer, what: str) -> None:
        if self.candidate.rule == "lee2020-code":
            raise LayerError(layer, f"the lee2020-code rule derives its backward from the spike counts and traces "
                                    f"of single-spike LIF/IF neurons; it does not cover {what} "
                                    "(docs/semantics.md, 'bptt')")

    def _synapse(self, layer: Layer) -> Callable:
        F = _import_torch().nn.functional
        if isinstance(layer, (Conv2d, Linear)):
            weight, bias = self._parameter(layer, "weight"), self._parameter(layer, "bias")
            if isinstance(layer, Linear):
                if layer.delay is not None:
                    self._refuse_under_lee(layer, "synaptic delays")
                    return _DelayedLinear(weight, bias, _import_torch().tensor(layer.delay, device=self.device))
                return partial(F.linear, weight=weight, bias=bias)
            return partial(F.conv2d, weight=weight, bias=bias, stride=layer.stride, padding=layer.padding)
        if isinstance(layer, (SumPool, AvgPool)):
            weight = self._constant(layer.window_weight)
            return partial(_pool_sum, weight=weight, kernel_size=layer.kernel_size, stride=layer.stride)
        if isinstance(layer, MaxPool):
            return partial(F.max_pool2d, kernel_size=layer.kernel_size, stride=layer.stride)
        if isinstance(layer, Identity):
            return _identity if layer.stride == (1, 1) else partial(_subsample, stride=layer.stride)
        raise LayerError(layer, "TorchCandidate does not know this layer type")

    def _parameter(self, layer: Conv2d | Linear, what: str) -> torch.Tensor | None:
        value = getattr(layer, what)
        if value is None:
            if what == "weight":
                raise LayerError(layer, "has no weight; set layer.weight (or initialise the network) first")
            return None
        torch = _import_torch()
        leaf = torch.tensor(value.astype(self.dtype), device=self.device, requires_grad=True)
        self.parameters[f"{layer.name}.{what}"] = leaf
        return leaf

    def _constant(self, value: float | np.ndarray) -> torch.Tensor:
        """A number of the model, rounded once from float64 to the dtype (as eventsim rounds it)."""
        torch = _import_torch()
        return torch.tensor(np.asarray(value, dtype=np.float64).astype(self.dtype), device=self.device)

    def _neuron(self, layer: LIF, name: str, *, pool: bool = False) -> TorchNeuron:
        shape = self.network.shapes[name][1]
        kind = "pool" if pool else "readout" if isinstance(layer, Readout) else "spiking"
        if self.candidate.rule == "lee2020-code" and (layer.reset != "hard" or layer.v_reset != 0.0):
            # The code's gate 1 - s[t] is the gradient of this reset alone (docs/semantics.md, "lee2020-code").
            raise LayerError(
                layer, f"the lee2020-code rule needs hard reset to 0; this layer has reset={layer.reset!r}, "
                f"v_reset={layer.v_reset!r}"
            )
        if layer.extended:
            self._refuse_under_lee(layer, ", ".join(layer.extended))
        theta = self._constant(layer.thresholds(shape))
        return TorchNeuron(
            name=name,
            kind=kind,
            theta=theta.reshape((-1, 1, 1) if len(shape) == 3 else (-1,)),
            leak=self._constant(layer.leak),
            input_gain=self._constant(layer.input_gain),
            v_reset=self._constant(layer.v_reset),
            reset=layer.reset,
            strict=layer.strict,
            reset_delayed=layer.reset_delayed,
            norm=None if pool or layer.norm is None else self._norm(layer, name),
            arithmetic=layer.arithmetic,
            # d in float64, then rounded once (docs/semantics.md, "Arithmetic forms")
            divisor=self._constant(1.0 / (1.0 - layer.leak)) if layer.arithmetic.endswith("-divide") else None,
            synapse_leak=None if layer.synapse_leak is None else self._constant(layer.synapse_leak),
            synapse_gain=None if layer.synapse_gain == 1.0 else self._constant(layer.synapse_gain),
            v_rest=None if layer.v_rest == 0.0 else self._constant(layer.v_rest),
            v_init=None if layer.v_init == 0.0 else self._constant(layer.v_init),
            v_min=None if layer.v_min == -np.inf else self._constant(layer.v_min),
            spike_limit=None if layer.max_spikes == 1 else self._constant(
                np.inf if layer.max_spikes is None else layer.max_spikes),
        )

    def _norm(self, layer: LIF, name: str) -> TorchNorm:
        torch = _import_torch()
        norm = layer.norm
        leaves = {}
        for what in ("scale", "shift"):
            leaves[what] = torch.tensor(getattr(norm, what).astype(self.dtype), device=self.device, requires_grad=True)
            self.parameters[f"{name}.norm.{what}"] = leaves[what]
        running = {what: torch.tensor(getattr(norm, what).astype(np.float64), device=self.device)
                   for what in ("running_mean", "running_var")}
        return TorchNorm(stats=norm.stats, eps=norm.eps, **leaves, **running)

    # ----------------------------------------------------------------- run
    def run(self, spikes: np.ndarray, *, masks: dict[str, np.ndarray] | None = None,
            train: bool = False) -> dict[str, LayerRecord]:
        """Every reported layer's record, ``(T, batch, *shape)`` arrays (section 2 of the module docstring).

        ``spikes``: ``(T, batch, *input_shape)``, values convertible to the
        model's dtype without loss. ``masks``: dropout keep-masks by layer
        name, bool ``(batch, *shape)``; without them dropout is off.
        ``train``: input-current norms take the batch's statistics.
        """
        torch = _import_torch()
        with torch.no_grad(), _full_float32(torch):
            run, _ = self._forward(spikes, masks, Backward(self.candidate.rule), train)
        return {
            name: LayerRecord(_numpy(seq), _numpy(run.potentials[name]) if name in run.potentials else None,
                              _numpy(run.synaptic[name]) if name in run.synaptic else None)
            for name, seq in run.outputs.items()
        }

    def gradients(
        self, spikes: np.ndarray, request: GradientRequest, *, masks: dict[str, np.ndarray] | None = None,
        train: bool = False,
    ) -> dict[str, np.ndarray]:
        """Gradients of ``L = sum(out * request.grad_output)`` for every parameter, by autograd.

        ``out``: the readout ``U_L[T] / T`` when the network ends in a
        Readout, else the last layer's output summed over the T steps. Under
        ``rule="bptt"`` the spike's derivative is ``request.surrogate`` and the
        reset is detached when ``request.detach_reset``; under
        ``"lee2020-code"`` both are ignored (see :class:`Backward`). Arrays in
        the model's dtype, under the keys of ``parameters``. ``train``: as in
        :meth:`run`, through the batch statistics of the norms.
        """
        torch = _import_torch()
        keys = list(self.parameters)
        with torch.enable_grad(), _full_float32(torch):
            _, loss = self._loss(spikes, request, masks, train)
            leaves = [self.parameters[k] for k in keys]
            grads = torch.autograd.grad(loss, leaves, allow_unused=True) if loss.requires_grad else [None] * len(keys)
        return {
            key: np.zeros(self.parameters[key].shape, self.dtype) if grad is None else grad.detach().cpu().numpy()
            for key, grad in zip(keys, grads, strict=True)
        }

    def potential_gradients(self, spikes: np.ndarray, request: GradientRequest) -> dict[str, np.ndarray]:
        """``dL/dU[t]`` of every neuron layer, ``(T, batch, *shape)``, by autograd (the same loss as :meth:`gradients`).

        What :mod:`eventsim.testing.backward` compares step by step to say
        where a wrong backward pass acts. The input is made a leaf that
        requires grad, so that a neuron layer no parameter feeds is in the graph.
        """
        torch = _import_torch()
        with torch.enable_grad(), _full_float32(torch):
            run, loss = self._loss(spikes, request, None, False, input_grad=True)
            names = list(run.steps)
            flat = [u for name in names for u in run.steps[name]]
            grads = iter(torch.autograd.grad(loss, flat, allow_unused=True))
        out = {}
        for name in names:
            per_step = [next(grads) for _ in run.steps[name]]
            out[name] = np.stack([np.zeros(u.shape, self.dtype) if g is None else _numpy(g)
                                  for g, u in zip(per_step, run.steps[name], strict=True)])
        return out

    def _loss(self, spikes: np.ndarray, request: GradientRequest, masks: dict | None, train: bool, *,
              input_grad: bool = False) -> tuple[_Run, torch.Tensor]:
        """The forward run with autograd on, and ``L = sum(out * request.grad_output)``."""
        torch = _import_torch()
        if self.candidate.rule == "bptt":
            backward = Backward("bptt", request.surrogate, bool(request.detach_reset))
        else:
            backward = Backward(self.candidate.rule)
        run, out = self._forward(spikes, masks, backward, train, input_grad=input_grad)
        g = np.asarray(request.grad_output)
        if g.shape != tuple(out.shape):
            raise LayerError(
                self._last, f"grad_output must have the shape of the network output {tuple(out.shape)}, "
                f"got {g.shape}"
            )
        return run, (out * torch.as_tensor(g.astype(self.dtype), device=self.device)).sum()

    def _forward(self, spikes: np.ndarray, masks: dict | None, backward: Backward,
                 train: bool, input_grad: bool = False) -> tuple[_Run, torch.Tensor]:
        """Run the blocks layer by layer over T; returns the run's records and the differentiable network output."""
        x = self._input(spikes).requires_grad_(input_grad)
        run = _Run(self.candidate, backward, self._masks(masks, x.shape[1]), train)
        last = run.sequence(self.blocks, x)
        run.finish()
        if self._readout is not None:
            out = run.potentials[self._readout][-1] / x.shape[0]
        else:
            out = last.sum(dim=0)
        return run, out

    def _input(self, spikes: np.ndarray) -> torch.Tensor:
        torch = _import_torch()
        x = np.asarray(spikes)
        want = self.network.input_shape
        if x.ndim != 2 + len(want) or x.shape[2:] != want or min(x.shape[:2]) < 1:
            raise EventsError(f"TorchModel input must have shape (steps, batch, *{want}), got {x.shape}")
        if x.dtype.kind not in "biuf":
            raise EventsError(f"TorchModel input must hold numbers, got dtype {x.dtype}")
        bad = np.argwhere(~np.isfinite(x))
        if bad.size:
            where = tuple(int(i) for i in bad[0])
            raise EventsError(f"TorchModel input is not finite at index {where} (step, sample, *position)")
        cast = x.astype(self.dtype)
        if not np.array_equal(cast, x):
            raise EventsError(f"TorchModel input is {x.dtype} and would lose values as {self.dtype}; convert it first")
        return torch.from_numpy(np.ascontiguousarray(cast)).to(self.device)

    def _masks(self, masks: dict | None, batch: int) -> dict:
        torch = _import_torch()
        masks = masks or {}
        unknown = sorted(set(masks) - set(self._dropouts))
        if unknown:
            raise OptionError(f"masks given for layers that are not Dropout layers of this network: {unknown}")
        out = {}
        for name, keep in masks.items():
            layer = self._dropouts[name]
            shape = (batch,) + self.network.shapes[name][1]
            keep = np.asarray(keep)
            if keep.dtype != np.bool_ or keep.shape != shape:
                raise LayerError(layer, f"mask must be a bool array of shape {shape}, got {keep.dtype} {keep.shape}")
            out[name] = torch.from_numpy(keep.copy()).to(self.device)
        return out


# ====================================================================== helpers
def _float_dtype(torch, dtype: Any) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    try:
        out = np.dtype(dtype)
    except TypeError:
        out = None
    if out not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise OptionError(f"dtype must be None, float32 or float64, got {dtype!r}")
    return out


def _numpy(values: torch.Tensor) -> np.ndarray:
    """A ``(T, batch, ...)`` record as a NumPy array on the host."""
    return values.detach().cpu().numpy()


@contextmanager
def _full_float32(torch) -> Iterator[None]:
    """Full float32 precision for matrix products and cuDNN convolutions while a model computes.

    CUDA may round float32 operands to TF32 (10 mantissa bits) in ``linear``
    and ``conv2d``, and a process may have asked for lower precision on the
    CPU too; a reference must not, so both are switched off and restored.
    """
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True, allow_tf32=False
        ):
            yield
    finally:
        torch.set_float32_matmul_precision(precision)
