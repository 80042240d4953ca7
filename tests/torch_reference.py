"""PyTorch re-implementation of eventsim's forward pass, differentiated by autograd.

A test helper: an independent reference for two of eventsim's gradient rules
(docs/semantics.md, "Gradient rules"), written from the semantics and the
layer definitions only, without reading eventsim's backward code.

- ``rule="bptt"``: the recursion of "Neurons" unrolled over T steps, the
  spike a custom autograd Function whose backward is a surrogate
  ``sigma(U - theta)`` (computed here in torch from the formulas of
  :mod:`eventsim.learning.surrogates`, not by calling ``derivative``); the
  reset uses ``s.detach()`` when ``detach_reset`` is true.
- ``rule="lee2020-code"``: the mechanics of Lee et al.'s published code
  (extraction Sec. 8): ``V = V + I``; ``ex = U`` where the neuron fires, else
  0 (``F.threshold``); ``V = V - ex`` (hard reset to 0); the spike is a custom
  Function of ``ex`` whose backward passes ``grad / theta`` where the neuron
  fired (factor 1 for the neuron of a spiking average pool); a tensor hook on
  every step's spikes multiplies their gradient by
  ``NG = 1 + ln(lam) f / gamma`` (0 where gamma = 0), read at backward time
  from the finished forward; the leak is applied with a detach trick whose
  gradient is the identity.

Both forwards give exactly eventsim's values (spikes, potentials, readout):
the detach tricks are written as ``lam * v.detach() + (v - v.detach())``, an
exact ``lam * v`` in floating point.

All computation is float64 on the CPU; a float32 network is computed in
float64 (its forward then may differ in the last bits from eventsim's).

Public: :func:`torch_gradients`, :func:`torch_forward`, :func:`surrogate_sigma`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from eventsim.layers import (
    LIF, AvgPool, Conv2d, Dropout, Flatten, Identity, Linear, MaxPool, Readout, Residual,
    SpikingAvgPool, SumPool,
)
from eventsim.learning.parameters import parameters

RULES = ("bptt", "lee2020-code")
DTYPE = torch.float64


# ------------------------------------------------------------------ surrogates
def surrogate_sigma(surrogate, u: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``sigma(U - theta)`` of the surrogate (``None``: straight-through), 0 where theta = inf.

    Formulas (selected by ``surrogate.name``, parameters read from its fields):
    straight_through ``1/theta``; fast_sigmoid ``b / (1 + c|x|)^2`` with
    ``b = None`` meaning ``1/theta``; arctan ``(alpha/2) / (1 + (pi/2 alpha x)^2)``;
    sigmoid ``alpha sig(alpha x)(1 - sig(alpha x))``; triangle
    ``max(0, 1 - |x|/width) / width``.
    """
    theta = torch.broadcast_to(theta, u.shape)
    finite = torch.isfinite(theta)
    th = torch.where(finite, theta, torch.ones_like(theta))  # a dummy where theta = inf
    x = u - th
    name = "straight_through" if surrogate is None else surrogate.name
    if name == "straight_through":
        out = 1.0 / th
    elif name == "fast_sigmoid":
        height = 1.0 / th if surrogate.b is None else float(surrogate.b)
        out = height / (1.0 + float(surrogate.c) * x.abs()) ** 2
    elif name == "arctan":
        a = float(surrogate.alpha)
        out = (a / 2) / (1.0 + (math.pi / 2 * a * x) ** 2)
    elif name == "sigmoid":
        a = float(surrogate.alpha)
        sg = torch.sigmoid(a * x)
        out = a * sg * (1.0 - sg)
    elif name == "triangle":
        w = float(surrogate.width)
        out = torch.clamp(1.0 - x.abs() / w, min=0.0) / w
    else:
        raise ValueError(f"unknown surrogate {name!r}")
    out = torch.broadcast_to(out, u.shape)
    return torch.where(finite, out, torch.zeros_like(out))


class _BpttSpike(torch.autograd.Function):
    """Forward: Heaviside ``1[U > theta]`` (``>=`` if not strict); backward: ``grad * sigma(U - theta)``."""

    @staticmethod
    def forward(ctx, u, theta, strict, surrogate):
        ctx.save_for_backward(u)
        ctx.theta = theta
        ctx.surrogate = surrogate
        fired = u > theta if strict else u >= theta
        return fired.to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * surrogate_sigma(ctx.surrogate, u, ctx.theta), None, None, None


class _LeeSpike(torch.autograd.Function):
    """Lee et al.'s code: the spike as a function of ``ex``.

    Forward: the spike mask of the gate (``ex > 0`` in the code; the mask is
    passed in so that ``>=`` thresholds need no special case). Backward:
    ``grad * scale`` where the neuron fired, 0 elsewhere (``SpikingNN.backward``
    and the straight-through ``out/Vth`` trick), ``scale = 1/theta`` for
    LIF/IF layers and 1 for pooling neurons.
    """

    @staticmethod
    def forward(ctx, ex, fired, scale):
        ctx.save_for_backward(fired)
        ctx.scale = scale
        return fired.to(ex.dtype)

    @staticmethod
    def backward(ctx, grad):
        (fired,) = ctx.saved_tensors
        return torch.where(fired, grad * ctx.scale, torch.zeros_like(grad)), None, None


def _leak_identity_grad(v: torch.Tensor, lam: float) -> torch.Tensor:
    """Forward ``lam * v`` exactly, backward the identity (the code's detach trick)."""
    return lam * v.detach() + (v - v.detach())


# --------------------------------------------------------------------- forward
@dataclass
class TorchRun:
    """What :func:`torch_forward` records; arrays ``(B, T, *shape)`` as in :class:`eventsim.dense.DenseRun`."""

    outputs: dict[str, np.ndarray]
    potentials: dict[str, np.ndarray]
    readout: np.ndarray | None
    out: torch.Tensor  #: readout, or the last layer's output summed over T (differentiable)
    params: dict[str, torch.Tensor]  #: leaf tensors, keys of ``parameters(network)``
    spikes: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)
    ng: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


class _Forward:
    def __init__(self, network, rule, surrogate, detach_reset, masks, batch):
        self.rule = rule
        self.surrogate = surrogate
        self.detach_reset = detach_reset
        self.masks = {} if masks is None else dict(masks)
        self.batch = batch
        self.params = {
            key: torch.tensor(np.asarray(arr, dtype=np.float64), dtype=DTYPE, requires_grad=True)
            for key, arr in parameters(network).items()
        }
        self.state: dict[str, torch.Tensor] = {}  # neuron name -> R (bptt) or leaked V (lee2020-code)
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.potentials: dict[str, list[torch.Tensor]] = {}
        self.spikes: dict[str, list[torch.Tensor]] = {}  # LIF/IF layers that get NG (lee2020-code)
        self.leaks: dict[str, float] = {}
        self.ng: dict[str, torch.Tensor] = {}  # filled after the forward; read by the hooks

    def sequence(self, layers, x):
        for layer in layers:
            x = self.layer(layer, x)
        return x

    def layer(self, layer, x):
        if isinstance(layer, Residual):
            main = self.sequence(layer.main[:-1], x)
            current = self.layer(layer.main[-1], main) + self.layer(layer.skip, x)
            out = self.layer(layer.neuron, current)
        elif isinstance(layer, SpikingAvgPool):
            out = self.neuron(layer.name, layer.neuron, _avg_pool(x, layer.kernel_size, layer.stride), pool=True)
        elif isinstance(layer, LIF):
            out = self.neuron(layer.name, layer, x, pool=False)
        elif isinstance(layer, Dropout):
            out = self.dropout(layer, x)
        elif isinstance(layer, Flatten):
            out = x.reshape(self.batch, -1)
        else:
            out = self.synapse(layer, x)
        self.outputs.setdefault(layer.name, []).append(out)
        return out

    def synapse(self, layer, x):
        if isinstance(layer, Conv2d):
            out = F.conv2d(x, self.params[f"{layer.name}.weight"], None, stride=layer.stride, padding=layer.padding)
            bias = self.params.get(f"{layer.name}.bias")
            return out if bias is None else out + bias[:, None, None]
        if isinstance(layer, Linear):
            out = x @ self.params[f"{layer.name}.weight"].T
            bias = self.params.get(f"{layer.name}.bias")
            return out if bias is None else out + bias
        if isinstance(layer, AvgPool):
            return _avg_pool(x, layer.kernel_size, layer.stride)
        if isinstance(layer, SumPool):
            return _sum_pool(x, layer.kernel_size, layer.stride)
        if isinstance(layer, MaxPool):
            return F.max_pool2d(x, layer.kernel_size, layer.stride)
        if isinstance(layer, Identity):
            sh, sw = layer.stride
            return x if (sh, sw) == (1, 1) else x[:, :, ::sh, ::sw]
        raise TypeError(f"torch reference: unknown layer type {type(layer).__name__} ({layer.name})")

    def dropout(self, layer, x):
        keep = self.masks.get(layer.name)
        if keep is None:
            return x
        keep = np.asarray(keep)
        if keep.dtype != np.bool_ or keep.shape != tuple(x.shape):
            raise ValueError(f"mask of {layer.name} must be bool {tuple(x.shape)}, got {keep.dtype} {keep.shape}")
        return torch.where(torch.from_numpy(keep.copy()), x * layer.scale, torch.zeros_like(x))

    def neuron(self, name, neuron, current, *, pool):
        theta = _thresholds(neuron, tuple(current.shape[1:]))
        lam = float(neuron.leak)
        if self.rule == "bptt":
            u, s = self._bptt_step(name, neuron, theta, lam, current)
        else:
            u, s = self._lee_step(name, neuron, theta, lam, current, pool=pool)
        self.potentials.setdefault(name, []).append(u)
        return s

    def _bptt_step(self, name, neuron, theta, lam, current):
        r = self.state.get(name)
        if r is None:  # U[0] = 0
            r = torch.zeros_like(current)
        u = lam * r + current
        s = _BpttSpike.apply(u, theta, neuron.strict, self.surrogate)
        sr = s.detach() if self.detach_reset else s
        if neuron.reset == "hard":
            r = u * (1.0 - sr) + neuron.v_reset * sr
        else:
            theta_f = torch.where(torch.isfinite(theta), theta, torch.zeros_like(theta))
            r = u - theta_f * sr
        self.state[name] = r
        return u, s

    def _lee_step(self, name, neuron, theta, lam, current, *, pool):
        v = self.state.get(name)
        if v is None:
            v = torch.zeros_like(current)
        u = v + current  # integrate
        fired = u > theta if neuron.strict else u >= theta
        ex = torch.where(fired, u, torch.zeros_like(u))  # F.threshold(V, Vth, 0)
        if pool or isinstance(neuron, Readout):
            scale = 1.0  # pooling neuron: no 1/theta; a readout never fires
        else:
            scale = 1.0 / theta
        s = _LeeSpike.apply(ex, fired, scale)
        self.state[name] = _leak_identity_grad(u - ex, lam)  # reset to 0, then the leak
        if not pool and not isinstance(neuron, Readout):
            self.spikes.setdefault(name, []).append(s.detach())
            self.leaks[name] = lam
            if s.requires_grad:
                s.register_hook(lambda g, name=name: g * self.ng[name])
        return u, s

    def finish_ng(self):
        """``NG = 1 + ln(lam) f / gamma`` (0 where gamma = 0) from the finished forward."""
        for name, seq in self.spikes.items():
            lam = self.leaks[name]
            gamma = torch.zeros_like(seq[0])
            f = torch.zeros_like(seq[0])
            for s in seq:
                gamma = gamma + s
                f = lam * f + s
            log_lam = math.log(lam) if lam > 0 else -math.inf
            fired = gamma > 0
            ratio = torch.where(fired, f / torch.where(fired, gamma, torch.ones_like(gamma)), torch.zeros_like(f))
            ng = 1.0 + log_lam * ratio if log_lam != 0 else torch.ones_like(ratio)
            self.ng[name] = torch.where(fired, ng, torch.zeros_like(ng))


def _thresholds(neuron, shape):
    th = torch.tensor(neuron.thresholds(shape), dtype=DTYPE)
    return th.reshape((-1,) + (1,) * (len(shape) - 1))


def _windows(x, kernel, stride):
    (kh, kw), (sh, sw) = kernel, stride
    return x.unfold(2, kh, sh).unfold(3, kw, sw)  # (B, C, Ho, Wo, kh, kw), trailing rows dropped


def _sum_pool(x, kernel, stride):
    return _windows(x, kernel, stride).sum(dim=(-2, -1))


def _avg_pool(x, kernel, stride):
    # Every input times 1/(kh*kw), then the window sum (docs/semantics.md, "Synapses and pooling").
    return _windows(x * (1.0 / (kernel[0] * kernel[1])), kernel, stride).sum(dim=(-2, -1))


def _lee_neurons(layers):
    for layer in layers:
        if isinstance(layer, Residual):
            yield from _lee_neurons(layer.main)
            yield layer.neuron
        elif isinstance(layer, LIF):
            yield layer


def torch_forward(network, x, *, rule="bptt", surrogate=None, detach_reset=True, masks=None) -> TorchRun:
    """Run ``network`` on dense input ``x`` ``(B, T, *input_shape)`` in float64 torch.

    Records what :func:`eventsim.dense.run_dense` records (outputs per layer
    name, potentials per neuron layer, readout), and keeps the differentiable
    network output ``out`` and the parameter leaves. ``masks``: dropout
    keep-masks by layer name, bool ``(B, *shape)``; a Dropout layer without a
    mask is the identity (``masks=None``: no dropout).
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")
    if rule == "lee2020-code":
        for neuron in _lee_neurons(network.layers):
            if neuron.reset != "hard" or neuron.v_reset != 0.0:
                raise ValueError(
                    f"lee2020-code needs hard reset to 0; {neuron.name} has reset={neuron.reset!r}, "
                    f"v_reset={neuron.v_reset!r}"
                )
    x = np.asarray(x)
    input_shape = tuple(int(n) for n in network.input_shape)
    if x.ndim != 2 + len(input_shape) or tuple(x.shape[2:]) != input_shape:
        raise ValueError(f"input must have shape (batch, steps, *{input_shape}), got {x.shape}")
    batch, steps = x.shape[:2]
    xt = torch.tensor(x.astype(np.float64), dtype=DTYPE)

    fwd = _Forward(network, rule, surrogate, detach_reset, masks, batch)
    for t in range(steps):
        fwd.sequence(network.layers, xt[:, t])
    if rule == "lee2020-code":
        fwd.finish_ng()

    last = network.layers[-1]
    if isinstance(last, Readout):
        out = fwd.potentials[last.name][-1] / float(steps)
        readout = out.detach().numpy().copy()
    else:
        out = torch.stack(fwd.outputs[last.name], dim=0).sum(dim=0)
        readout = None
    stack = lambda seq: torch.stack(seq, dim=1).detach().numpy().copy()  # noqa: E731
    return TorchRun(
        outputs={k: stack(v) for k, v in fwd.outputs.items()},
        potentials={k: stack(v) for k, v in fwd.potentials.items()},
        readout=readout, out=out, params=fwd.params, spikes=fwd.spikes, ng=fwd.ng,
    )


def torch_gradients(
    network, x, grad_output, *, rule, surrogate=None, detach_reset=True, masks=None
) -> dict[str, np.ndarray]:
    """Gradients of ``L = sum(out * grad_output)`` w.r.t. every parameter, by autograd.

    ``out`` is the readout ``U[T]/T`` when the last layer is a Readout, else
    the last layer's output summed over the T steps (the spike count).
    ``rule`` is ``"bptt"`` (``surrogate``: an :mod:`eventsim.learning.surrogates`
    object, ``None`` meaning straight-through; ``detach_reset``) or
    ``"lee2020-code"`` (``surrogate`` and ``detach_reset`` are ignored; soft
    reset or ``v_reset != 0`` raise ValueError). Returns float64 arrays under
    the keys of :func:`eventsim.learning.parameters.parameters`.
    """
    run = torch_forward(network, x, rule=rule, surrogate=surrogate, detach_reset=detach_reset, masks=masks)
    g = torch.tensor(np.asarray(grad_output, dtype=np.float64), dtype=DTYPE)
    if tuple(g.shape) != tuple(run.out.shape):
        raise ValueError(f"grad_output must have shape {tuple(run.out.shape)}, got {tuple(g.shape)}")
    if run.out.requires_grad:
        (run.out * g).sum().backward()
    return {
        key: (np.zeros(p.shape) if p.grad is None else p.grad.detach().numpy().copy())
        for key, p in run.params.items()
    }
