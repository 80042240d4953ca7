"""The LeNet in SpikingJelly 2.0: multi-step neurons (``step_mode="m"``) on its fused CPU operator.

The way a SpikingJelly user writes a convolutional SNN for speed: an
``nn.Sequential`` over the whole ``(T, B, ...)`` sequence, the stateless
layers in ``layer.SeqToANNContainer`` (one call over the T*B images) and
the neurons in multi-step mode, reset with ``functional.reset_net`` before
each batch. What the neurons compute (SpikingJelly 2.0.0,
``_ops/lif/reference.py``, ``_ops/if_/reference.py``,
``activation_based/neuron/lif.py`` ``NonSpikingLIFNode``)::

    LIFNode(tau, decay_input=False, v_reset=0)   H = V - V / tau + X;   S = 1[H >= v_threshold];   V = (1 - S) H
    IFNode(v_reset=0)                            H = V + X;             S = 1[H >= v_threshold];   V = (1 - S) H
    NonSpikingLIFNode(tau, decode="last_mem")    V = V + (X - V) / tau   (returns V[T])

With ``tau = 1 / (1 - lam)``, LIFNode is eventsim's LIF in the
"subtract-divide" form (docs/semantics.md, "Arithmetic forms"); every node
fires on ``>=``, so the thresholds are the next float32 above eventsim's
(:func:`~eventsim.bench.peers.lenet.strict_threshold`); the readout scales its input
by 1 / tau, so the weights feeding it are eventsim's times tau.

Implementations. SpikingJelly 2.0 has no ``backend`` argument. In
multi-step mode with float32 state and a built-in surrogate (here its
default, ``surrogate.Sigmoid()``), ``functional.lif_multi_step`` and
``if_multi_step`` call registered torch operators (``torch.ops.sj_lif``,
``sj_if``) whose CPU kernels are the torch reference loop forward and a
hand-written loop backward (``_ops/lif/cpu.py`` ``_backward_impl``): one
autograd node per layer for all T steps, instead of a graph of per-step
operations. That is its fastest CPU path; the CUDA kernels (native CUDA,
Triton; CuPy is gone in 2.0) run only on GPUs. A Python surrogate, float64
or single-step mode fall back to the per-step reference under autograd.

Needs torch and spikingjelly (``pip install --no-deps spikingjelly==2.0.0 loguru``, docs/conformance.md).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from eventsim.bench.peers.lenet import LeNet, Peer, strict_threshold, torch_layers


def lenet(net: LeNet, batch: int) -> Any:
    """The SpikingJelly module: ``forward(x)``, ``x`` of shape ``(T, B, 2, 34, 34)``, returns U_L[T] ``(B, 10)``."""
    import torch
    from spikingjelly.activation_based import functional, layer, neuron

    tau, tau_out = 1.0 / (1.0 - net.leak), 1.0 / (1.0 - net.readout_leak)
    layers = torch_layers(
        net,
        lif=lambda: neuron.LIFNode(tau=tau, decay_input=False, v_threshold=strict_threshold(net.threshold),
                                   v_reset=0.0, step_mode="m"),
        pool_neuron=lambda: neuron.IFNode(v_threshold=strict_threshold(net.pool_threshold), v_reset=0.0,
                                          step_mode="m"),
        readout=lambda: neuron.NonSpikingLIFNode(tau=tau_out, decode="last_mem"),
        readout_gain=1.0 / tau_out,
        stateless=layer.SeqToANNContainer,
    )

    class SpikingJellyLeNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch.nn.Sequential(OrderedDict(layers))

        def forward(self, x: Any) -> Any:
            functional.reset_net(self.model)
            return self.model(x)

    return SpikingJellyLeNet()


PEER = Peer("spikingjelly", "SpikingJelly", ("torch", "spikingjelly"), lenet)
