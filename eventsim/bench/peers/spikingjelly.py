"""The LeNet in SpikingJelly 2.0: multi-step neurons (``step_mode="m"``), its fastest CPU path.

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

Implementations. SpikingJelly 2.0 has no ``backend`` argument and no CuPy
kernels; on CPU it has one implementation, the torch reference
(``functional.neuron_implementation("lif", cpu)`` says
``torch-reference``). In multi-step mode with float32 state and a built-in
surrogate (here its default, ``surrogate.Sigmoid()``), ``LIFNode`` and
``IFNode`` call registered operators (``torch.ops.sj_lif.forward``,
``sj_if``), but their CPU autograd kernel is the reference loop itself
(``_ops/dispatch.py`` ``_register_dispatch``: ``library.impl("forward",
cpu_forward, "AutogradCPU")``), so autograd records every step's
operations as the single-step mode would; the hand-written loop backward
of ``_ops/lif/cpu.py`` (``_backward_impl``) is not on that path. What the
multi-step mode gains on CPU is the stateless layers: each convolution,
pooling and fully connected layer runs once over all T*B images. The
native CUDA and Triton kernels run on GPUs only.

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
