"""The trainable parameters of a network, by name.

Keys are ``"<layer>.weight"`` and ``"<layer>.bias"`` for every
:class:`~eventsim.layers.Conv2d` and :class:`~eventsim.layers.Linear` layer
(residual blocks included: ``"res1.conv2.weight"``), in network order.
Gradient rules return gradients under the same keys and optimizers update the
arrays in place, so a training step never copies the network.
"""

from __future__ import annotations

import numpy as np

from eventsim.errors import LayerError
from eventsim.layers import Weighted
from eventsim.network import Network


def parameters(network: Network) -> dict[str, np.ndarray]:
    """The layers' own weight and bias arrays (not copies), in network order."""
    out: dict[str, np.ndarray] = {}
    for layer in network.walk():
        if isinstance(layer, Weighted):
            if layer.weight is None:
                raise LayerError(layer, "has no weight; initialise the network first")
            out[f"{layer.name}.weight"] = layer.weight
            if layer.bias is not None:
                out[f"{layer.name}.bias"] = layer.bias
    return out


def load_parameters(network: Network, values: dict[str, np.ndarray]) -> None:
    """Set every parameter of ``network`` from ``values`` (same keys, shapes, dtype).

    Raises :class:`~eventsim.errors.LayerError` naming the first missing,
    unexpected or mismatched entry; nothing is changed unless all fit.
    """
    layers = {layer.name: layer for layer in network.walk() if isinstance(layer, Weighted)}
    expected = {
        f"{name}.{what}": (layer, what)
        for name, layer in layers.items()
        for what in ("weight", "bias")
        if what == "weight" or layer.bias is not None
    }
    missing = sorted(set(expected) - set(values))
    unexpected = sorted(set(values) - set(expected))
    if missing or unexpected:
        raise LayerError(network, f"parameters do not match the network: missing {missing}, unexpected {unexpected}")
    for key, (layer, what) in expected.items():
        v = np.asarray(values[key])
        shape = layer.weight_shape if what == "weight" else (layer.out_size,)
        if v.shape != tuple(shape) or v.dtype != network.dtype:
            raise LayerError(layer, f"{what} must be {network.dtype} {tuple(shape)}, got {v.dtype} {v.shape}")
    for key, (layer, what) in expected.items():
        setattr(layer, what, values[key])
