"""Lee's N-MNIST LeNet5 written the way a snnTorch user writes it (the ``snntorch`` peer, :mod:`eventsim.bench.peers`).

snnTorch 1.0 on PyTorch CPU, ``snn.Leaky`` neurons stepped by hand over the
time axis and trained by backpropagation through time (BPTT). With the
defaults it is the network eventsim runs as ``lee2020-lenet5``:

    conv 5x5 2->20 pad 2 -> LIF -> spiking avg pool 2 -> conv 5x5 20->50 pad 2
    -> LIF -> spiking avg pool 2 -> fc 3200->200 -> LIF -> fc 200->10 -> readout

- LIF: ``Leaky(beta, threshold=1, reset_mechanism="zero")``, which with
  snnTorch's ``reset_delay=True`` computes U[t] = beta (1 - s[t-1]) U[t-1] + I[t],
  s[t] = 1[U[t] > theta]: eventsim's hard reset to 0 (docs/conventions.md);
- spiking average pooling (Lee et al. 2020): ``avg_pool2d`` (weights 1/4)
  feeding an IF neuron, ``Leaky(beta=1, threshold=0.75)``, hard reset;
- readout: ``Leaky(beta, threshold=inf, reset_mechanism="none")``, never
  fires; the network returns U_L[T] next to the output spikes.

Needs torch and snntorch (the ``torch`` and ``snntorch`` extras, :mod:`eventsim.extras`).
"""

from __future__ import annotations

import math
from typing import Any

from eventsim.bench.peers.snntorch import PEER
from eventsim.errors import MissingExtraError


def missing_reason() -> str | None:
    """Why snnTorch models cannot run here (torch or snntorch not installed, and how to install them), or None."""
    return PEER.missing_reason()


def require() -> tuple[Any, Any]:
    """``(torch, snntorch)``, or MissingExtraError naming what to install."""
    reason = missing_reason()
    if reason is not None:
        raise MissingExtraError(f"snnTorch models need torch and snntorch: {reason}")
    import snntorch
    import torch

    return torch, snntorch


def snntorch_lenet(
    *,
    beta: float = math.exp(-1 / 100),
    spike_grad: Any = None,
    reset_mechanism: str = "zero",
    pool_threshold: float | None = 0.75,
    readout: bool = True,
    bias: bool = False,
) -> Any:
    """Lee's N-MNIST LeNet5 as a ``torch.nn.Module`` of ``snn.Leaky`` neurons.

    Parameters
    ----------
    beta : float
        Leak per step of every LIF neuron, exp(-1/tau); tau = 100 steps (Lee et al. 2020).
    spike_grad : callable, optional
        A ``snntorch.surrogate`` function; snnTorch's default (arctan) when None.
    reset_mechanism : {"zero", "subtract"}
        Reset of the LIF and pooling neurons.
    pool_threshold : float or None
        Threshold of the IF neuron after each 2x2 average pooling (Lee: 0.75);
        None pools linearly, without a neuron.
    readout : bool
        The last layer is a readout that never fires (Lee), or a spiking LIF layer.
    bias : bool
        Bias in the convolutions and fully connected layers (Lee: none).

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` with ``x`` of shape ``(T, B, 2, 34, 34)`` returns the
        last layer's spikes ``(T, B, 10)`` and its potential at T, ``(B, 10)``.
    """
    torch, snn = require()
    fn = torch.nn.functional

    def leaky(leak: float, threshold: float, reset: str) -> Any:
        return snn.Leaky(beta=leak, threshold=threshold, spike_grad=spike_grad, reset_mechanism=reset)

    class LeNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(2, 20, 5, padding=2, bias=bias)
            self.conv2 = torch.nn.Conv2d(20, 50, 5, padding=2, bias=bias)
            self.fc1 = torch.nn.Linear(50 * 8 * 8, 200, bias=bias)
            self.fc2 = torch.nn.Linear(200, 10, bias=bias)
            self.lif1, self.lif2, self.lif3 = (leaky(beta, 1.0, reset_mechanism) for _ in range(3))
            self.pool1, self.pool2 = (None if pool_threshold is None else leaky(1.0, pool_threshold, reset_mechanism)
                                      for _ in range(2))
            self.out = leaky(beta, math.inf, "none") if readout else leaky(beta, 1.0, reset_mechanism)

        def forward(self, x: Any) -> tuple[Any, Any]:
            neurons = [n for n in (self.lif1, self.pool1, self.lif2, self.pool2, self.lif3, self.out) if n is not None]
            mem = {id(n): n.init_leaky() for n in neurons}

            def fire(neuron: Any, current: Any) -> Any:
                if neuron is None:
                    return current
                s, mem[id(neuron)] = neuron(current, mem[id(neuron)])
                return s

            spikes = []
            for t in range(x.shape[0]):
                s = fire(self.lif1, self.conv1(x[t]))
                s = fire(self.pool1, fn.avg_pool2d(s, 2))
                s = fire(self.lif2, self.conv2(s))
                s = fire(self.pool2, fn.avg_pool2d(s, 2))
                s = fire(self.lif3, self.fc1(s.flatten(1)))
                spikes.append(fire(self.out, self.fc2(s)))
            return torch.stack(spikes), mem[id(self.out)]

    return LeNet()
