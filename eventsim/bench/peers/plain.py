"""The LeNet in plain PyTorch: a loop over ``torch.unbind(x)``, the neurons written out, no SNN framework.

The reference for what the frameworks add or cost: torch layers with
eventsim's weights, and per step, for each neuron layer (docs/semantics.md, "Neurons")::

    U = lam U + I;   s = 1[U > theta];   U = U (1 - s)        (LIF: lam = leak; pooling IF: lam = 1)
    U = lam U + I                                              (readout, never fires)

from U = 0. The spike's gradient is the fast sigmoid ``1 / (1 + SLOPE |U -
theta|)^2`` (snnTorch's ``fast_sigmoid`` with its default slope); the reset
multiplies by the spike detached, as snnTorch's does.

Needs torch (the ``torch`` extra).
"""

from __future__ import annotations

from typing import Any

from eventsim.bench.peers.lenet import LeNet, Peer, torch_layers

#: Slope of the fast-sigmoid surrogate.
SLOPE = 25.0


def lenet(net: LeNet, batch: int) -> Any:
    """The module: ``forward(x)``, ``x`` of shape ``(T, B, 2, 34, 34)``, returns U_L[T] ``(B, 10)``."""
    import torch

    class Spike(torch.autograd.Function):
        """1[v > 0], with the fast sigmoid's derivative as its gradient."""

        @staticmethod
        def forward(ctx: Any, v: Any) -> Any:
            ctx.save_for_backward(v)
            return (v > 0).to(v.dtype)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (v,) = ctx.saved_tensors
            return grad / (1.0 + SLOPE * v.abs()) ** 2

    class Neuron(torch.nn.Module):
        """``(current, U before) -> (output, U after)``: spikes, or the potential where theta is None."""

        def __init__(self, leak: float, threshold: float | None) -> None:
            super().__init__()
            self.leak, self.threshold = leak, threshold

        def forward(self, current: Any, u: Any) -> tuple[Any, Any]:
            u = current if u is None else self.leak * u + current
            if self.threshold is None:
                return u, u
            s = Spike.apply(u - self.threshold)
            return s, u * (1.0 - s.detach())

    layers = torch_layers(net, lif=lambda: Neuron(net.leak, net.threshold),
                          pool_neuron=lambda: Neuron(1.0, net.pool_threshold),
                          readout=lambda: Neuron(net.readout_leak, None))

    class PlainLeNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleDict(layers)

        def forward(self, x: Any) -> Any:
            state: dict[str, Any] = {}
            for out in torch.unbind(x):
                for name, module in self.layers.items():
                    if isinstance(module, Neuron):
                        out, state[name] = module(out, state.get(name))
                    else:
                        out = module(out)
            return out

    return PlainLeNet()


PEER = Peer("pytorch", "PyTorch", ("torch",), lenet)
