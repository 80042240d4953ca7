"""Folding input-current norms into the synapses that feed them.

An inference-mode norm (:mod:`eventsim.norm`) is an affine map of the
current, ``k * I + c`` per channel; the synapse before it is linear, so the
two make one synapse with scaled weights and a shifted bias. This is what a
network exported to a format without norms (NIR) or run by a framework
without them computes. Kept apart from :mod:`eventsim.norm`, which the
layers import, so that neither of the two imports the other.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from eventsim.errors import LayerError
from eventsim.layers import Conv2d, Identity, Residual, Weighted
from eventsim.norm import CurrentNorm, affine


def fold_norms(network: Any) -> Any:
    """A new network with every norm folded, with its running statistics, into the synapses before it.

    For a normalised layer with ``(k, c)`` from the running statistics
    (:func:`affine`, rounded to the network's dtype), the synapse ``W, b``
    that feeds it becomes ``W' = k W`` per output channel and
    ``b' = k b + c`` (a bias is created if it had none), computed in float64
    and rounded once; in a residual block k scales both the main path's last
    synapse and the skip, and c goes to the main path's bias. An
    :class:`~eventsim.layers.Identity` skip becomes the 1 x 1
    :class:`~eventsim.layers.Conv2d` with weights ``diag(k)``. The folded
    network's inference potentials equal the original's up to rounding (bit
    for bit where every product is exact, e.g. k a power of two); its SynOps
    differ where an identity skip became a convolution. ``network`` is left
    untouched.

    Raises
    ------
    LayerError
        A normalised layer fed by no weighted synapse (a pool, an identity
        on the main path, or no synapse), which has no weights to fold into.
    """
    folded = copy.deepcopy(network)
    dtype = folded.dtype

    def fold_into(synapse: Any, k: np.ndarray, c: np.ndarray | None) -> None:
        w = synapse.weight.astype(np.float64)
        synapse.weight = (w * k.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dtype)
        if c is not None or synapse.bias is not None:
            bias = np.zeros(k.shape, np.float64) if synapse.bias is None else synapse.bias.astype(np.float64)
            synapse.bias = (k * bias + (0 if c is None else c)).astype(dtype)

    def factors(norm: CurrentNorm) -> tuple[np.ndarray, np.ndarray]:
        k, c = affine(norm.scale, norm.shift, norm.running_mean, norm.running_var, norm.eps, dtype, norm)
        return k.astype(np.float64), c.astype(np.float64)

    def weighted(synapse: Any, neuron: Any) -> Any:
        if not isinstance(synapse, Weighted) or synapse.weight is None:
            raise LayerError(neuron.norm, f"cannot be folded: the layer is fed by "
                                          f"{type(synapse).__name__ if synapse is not None else 'no synapse'}, "
                                          "not by a weighted synapse with weights")
        return synapse

    def visit(layers: list) -> None:
        for i, layer in enumerate(layers):
            if isinstance(layer, Residual):
                visit(layer.main)
                norm = layer.neuron.norm
                if norm is None:
                    continue
                k, c = factors(norm)
                fold_into(weighted(layer.main[-1], layer.neuron), k, c)
                if isinstance(layer.skip, Identity):
                    channels = k.shape[0]
                    eye = np.eye(channels).reshape(channels, channels, 1, 1).astype(dtype)
                    conv = Conv2d(channels, channels, 1, stride=layer.skip.stride, weight=eye)
                    conv.name = layer.skip.name  # a nested name ("res1.skip"), as the network gave it
                    layer.skip = conv
                fold_into(layer.skip, k, None)
                layer.neuron.norm = None
            elif getattr(layer, "norm", None) is not None:
                k, c = factors(layer.norm)
                fold_into(weighted(layers[i - 1] if i > 0 else None, layer), k, c)
                layer.norm = None

    visit(folded.layers)
    return type(folded)(folded.layers, folded.input_shape, dtype)
