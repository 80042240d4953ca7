"""The LeNet in sinabs 3.1: ``LIFSqueeze`` / ``IAFSqueeze`` layers in an ``nn.Sequential``.

The way a sinabs user writes a convolutional SNN: one ``nn.Sequential`` of
torch layers and sinabs' "squeeze" layers, fed the batch and time axes
flattened into one, ``(B*T, C, H, W)``, so that every convolution runs once
over all B*T images; each spiking layer unflattens them and steps through
time itself; ``sinabs.utils.reset_states`` before each batch. What the
layers compute (sinabs 3.1.3, ``layers/functional/lif.py``
``lif_forward_single``; ``activation/spike_generation.py`` ``SingleSpike``;
``activation/reset_mechanism.py`` ``MembraneReset``)::

    LIFSqueeze(tau_mem, norm_input=False)   v = alpha v + I, alpha = exp(-1 / tau_mem);  s = 1[v - theta >= 0];
                                            v = v (s == 0)
    IAFSqueeze                              v = v + I;  the same spike and reset
    LIFSqueeze(spike_fn=None)               v = alpha v + I, returned as the output (never fires)

That is eventsim's LIF in its own "product" form, with tau_mem = -1 / ln(lam);
``SingleSpike`` fires on ``>=``, so the thresholds are the next float32
above eventsim's (:func:`~eventsim.bench.peers.lenet.strict_threshold`).
Gradients: sinabs' own, its default ``SingleExponential`` surrogate; the
reset multiplies by ``(s == 0)``, which carries no gradient.

Its backward grows as T^2 (:data:`BACKWARD_NOTE`): ``lif_forward`` (sinabs
3.1.3, ``layers/functional/lif.py``; ``IAF`` runs the same function) takes
step t of its input as ``input_data[:, step]``, an indexing of the whole
``(B, T, ...)`` tensor that requires the gradient. Autograd's backward of
each index (``SelectBackward``) builds a zero tensor of the whole input and
writes the step's gradient into it, and the T of them are summed: T times
the input's size per layer, T^2 per sequence. Measured on one
``LIFSqueeze`` of 4 x 23,120 neurons, one thread: 5.5 ms per step of
backward at T = 25, 40 ms at T = 100, 86 ms at T = 200, while
``torch.unbind`` over the same tensor backpropagates in 0.35 ms per step.
The peer is timed as users run it, with that cost.

Needs torch and sinabs (``pip install --no-deps sinabs==3.1.3 pbr``, docs/conformance.md).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from eventsim.bench.peers.lenet import LeNet, Peer, strict_threshold, torch_layers

BACKWARD_NOTE = ("backward O(T^2): sinabs 3.1.3 layers/functional/lif.py lif_forward indexes its input per step "
                 "(input_data[:, step]); each index's backward writes into a zero tensor of the whole sequence")


def lenet(net: LeNet, batch: int) -> Any:
    """The sinabs module: ``forward(x)``, ``x`` of shape ``(B*T, 2, 34, 34)`` (sample-major), returns U_L[T]."""
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MembraneReset, SingleSpike
    from sinabs.utils import reset_states

    def spiking(layer: Any, threshold: float, **options: Any) -> Any:
        return layer(spike_threshold=torch.tensor(strict_threshold(threshold)), spike_fn=SingleSpike,
                     reset_fn=MembraneReset(), batch_size=batch, **options)

    layers = torch_layers(
        net,
        lif=lambda: spiking(sl.LIFSqueeze, net.threshold, tau_mem=-1.0 / math.log(net.leak), norm_input=False),
        pool_neuron=lambda: spiking(sl.IAFSqueeze, net.pool_threshold),
        readout=lambda: sl.LIFSqueeze(tau_mem=-1.0 / math.log(net.readout_leak), spike_fn=None, norm_input=False,
                                      batch_size=batch),
    )

    class SinabsLeNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch.nn.Sequential(OrderedDict(layers))

        def forward(self, x: Any) -> Any:
            reset_states(self.model)
            return self.model(x).unflatten(0, (batch, -1))[:, -1]  # the readout's potential at the last step

    return SinabsLeNet()


def sample_major(x: Any) -> Any:
    """The time-major input ``(T, B, ...)`` as sinabs takes it: ``(B*T, ...)``, each sample's steps together."""
    return x.transpose(0, 1).flatten(0, 1).contiguous()


PEER = Peer("sinabs", "sinabs", ("torch", "sinabs"), lenet, layout=sample_major, backward_note=BACKWARD_NOTE)
