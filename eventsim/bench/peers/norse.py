"""The LeNet in Norse 1.1: its box neurons stepped by hand in a ``SequentialState``.

The way a Norse user writes a convolutional SNN: ``norse.torch.SequentialState``
of torch layers and Norse cells, called once per time step with the state
it returned the step before. What the cells compute (Norse 1.1,
``torch/functional/lif_box.py``, ``iaf.py``, ``leaky_integrator_box.py``;
``heaviside.py``: ``z = 1[x > 0]``):

    LIFBoxCell(tau_mem_inv = k, dt = 1):  v' = v + k ((I + 0) - v);  z = 1[v' - theta > 0];  v = (1 - z) v'
    IAFCell(v_th = 0.75):                 v' = v + I;                  z = 1[v' - 0.75 > 0];   v = (1 - z) v'
    LIBoxCell(tau_mem_inv = k, dt = 1):   v  = v + k ((0 - v) + I)                          (never fires)

With ``k = 1 - lam`` that is eventsim's LIF in the "euler" arithmetic form
with input gain k (docs/semantics.md, "Arithmetic forms"), so the weights
feeding a LIF cell or the readout are eventsim's divided by k
(:func:`~eventsim.bench.peers.lenet.torch_layers`); the pooling's
IF neurons take eventsim's 1/4-weighted sums as they are. Gradients: Norse's
own, the SuperSpike surrogate (``method="super"``, the default) through the
spike and its reset.

Needs torch and Norse (``pip install --no-deps norse nirtorch``, docs/conventions.md).
"""

from __future__ import annotations

from typing import Any

from eventsim.bench.peers.lenet import LeNet, Peer, torch_layers


def lenet(net: LeNet, batch: int) -> Any:
    """The Norse module: ``forward(x)``, ``x`` of shape ``(T, B, 2, 34, 34)``, returns U_L[T] ``(B, 10)``."""
    import torch
    from norse.torch import IAFCell, LIBoxCell, LIFBoxCell, SequentialState
    from norse.torch.functional.iaf import IAFParameters
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters
    from norse.torch.functional.lif_box import LIFBoxParameters

    k, k_out = 1.0 - net.leak, 1.0 - net.readout_leak
    layers = torch_layers(
        net,
        lif=lambda: LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(k), v_th=torch.tensor(net.threshold)),
                               dt=1.0),
        pool_neuron=lambda: IAFCell(IAFParameters(v_th=torch.tensor(net.pool_threshold))),
        readout=lambda: LIBoxCell(LIBoxParameters(tau_mem_inv=torch.tensor(k_out)), dt=1.0),
        lif_gain=k,
        readout_gain=k_out,
    )

    class NorseLeNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = SequentialState(*(module for _, module in layers))

        def forward(self, x: Any) -> Any:
            state = None
            for x_t in x:
                out, state = self.model(x_t, state)
            return out

    return NorseLeNet()


PEER = Peer("norse", "Norse", ("torch", "norse"), lenet)
