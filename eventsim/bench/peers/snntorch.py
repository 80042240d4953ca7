"""The LeNet in snnTorch 1.0: :func:`eventsim.bench.peer.snntorch_lenet` with the network's neurons and weights.

``snn.Leaky`` neurons stepped by hand over the time axis (the module and its
equations: :mod:`eventsim.bench.peer`). Gradients: snnTorch's own, the
``fast_sigmoid`` surrogate (slope 25), the reset detached (snnTorch's default).

Needs torch and snntorch (the ``torch`` and ``snntorch`` extras).
"""

from __future__ import annotations

from typing import Any

from eventsim.bench.peers.lenet import LeNet, Peer, load_weights


def lenet(net: LeNet, batch: int) -> Any:
    """The snnTorch module: ``forward(x)``, ``x`` of shape ``(T, B, 2, 34, 34)``, returns the output spikes
    and U_L[T]."""
    import snntorch

    from eventsim.bench.peer import snntorch_lenet  # imported here: that module imports this one

    module = snntorch_lenet(beta=net.leak, spike_grad=snntorch.surrogate.fast_sigmoid(),
                            pool_threshold=net.pool_threshold)
    load_weights(module, net.network)
    return module


PEER = Peer("snntorch", "snnTorch", ("torch", "snntorch"), lenet, readout=lambda module, x: module(x)[1])
