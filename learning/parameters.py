"""The trainable parameters of a network, and its running statistics, by name.

Keys are ``"<layer>.weight"`` and ``"<layer>.bias"`` for every
:class:`~eventsim.layers.Conv2d` and :class:`~eventsim.layers.Linear` layer
(residual blocks included: ``"res1.conv2.weight"``), and
``"<layer>.norm.scale"`` and ``"<layer>.norm.shift"`` for every neuron layer
with an input-current norm (:mod:`eventsim.norm`), in network order.
Gradient rules return gradients under the same keys and optimizers update the
arrays in place, so a training step never copies the network.

The running statistics of the norms (``"<layer>.norm.running_mean"``,
``"<layer>.norm.running_var"``) are not trained by gradients: they are
:func:`statistics`, kept apart so that no optimizer touches them, and stored
in checkpoints beside the parameters.
"""

from __future__ import annotations

import numpy as np

from eventsim.errors import LayerError
from eventsim.layers import Weighted
from eventsim.network import Network
from eventsim.norm import RUNNING, TRAINABLE


def _entries(network: Network, running: bool) -> dict[str, tuple[object, str, tuple[int, ...]]]:
    """``{key: (owner, attribute, shape)}`` of the parameters (or the running statistics), in network order."""
    out: dict[str, tuple[object, str, tuple[int, ...]]] = {}
    for layer in network.walk():
        if isinstance(layer, Weighted) and not running:
            out[f"{layer.name}.weight"] = (layer, "weight", tuple(layer.weight_shape))
            if layer.bias is not None:
                out[f"{layer.name}.bias"] = (layer, "bias", (layer.out_size,))
        norm = getattr(layer, "norm", None)
        if norm is not None:
            for what in RUNNING if running else TRAINABLE:
                out[f"{layer.name}.norm.{what}"] = (norm, what, (norm.channels,))
    return out


def parameters(network: Network) -> dict[str, np.ndarray]:
    """The layers' own weight, bias and norm scale and shift arrays (not copies), in network order."""
    out: dict[str, np.ndarray] = {}
    for key, (owner, what, _) in _entries(network, running=False).items():
        value = getattr(owner, what)
        if value is None:
            raise LayerError(owner, "has no weight; initialise the network first")
        out[key] = value
    return out


def statistics(network: Network) -> dict[str, np.ndarray]:
    """The running means and variances of the network's norms (the arrays, not copies); empty without norms."""
    return {key: getattr(owner, what) for key, (owner, what, _) in _entries(network, running=True).items()}


def _load(network: Network, values: dict[str, np.ndarray], running: bool) -> None:
    expected = _entries(network, running)
    missing = sorted(set(expected) - set(values))
    unexpected = sorted(set(values) - set(expected))
    if missing or unexpected:
        what = "running statistics" if running else "parameters"
        raise LayerError(network, f"{what} do not match the network: missing {missing}, unexpected {unexpected}")
    for key, (owner, what, shape) in expected.items():
        v = np.asarray(values[key])
        if v.shape != shape or v.dtype != network.dtype:
            raise LayerError(owner, f"{what} must be {network.dtype} {shape}, got {v.dtype} {v.shape}")
    for key, (owner, what, _) in expected.items():
        setattr(owner, what, values[key])


def load_parameters(network: Network, values: dict[str, np.ndarray]) -> None:
    """Set every parameter of ``network`` from ``values`` (same keys, shapes, dtype).

    Raises :class:`~eventsim.errors.LayerError` naming the first missing,
    unexpected or mismatched entry; nothing is changed unless all fit.
    """
    _load(network, values, running=False)


def load_statistics(network: Network, values: dict[str, np.ndarray]) -> None:
    """Set the running statistics of every norm of ``network`` from ``values`` (keys of :func:`statistics`).

    A network without norms takes an empty dict (what a checkpoint written
    before norms existed holds). Raises :class:`~eventsim.errors.LayerError`
    as :func:`load_parameters` does; nothing is changed unless all fit.
    """
    _load(network, values, running=True)
