"""Weight initialisation of Lee et al. 2020.

Every weight of a :class:`~eventsim.layers.Conv2d` or
:class:`~eventsim.layers.Linear` layer (those inside residual blocks and 1x1
skip convolutions included) is drawn from

    W ~ N(0, kappa / fan_in)

with ``fan_in = k*k*C_in`` for a convolution and the number of inputs for a
fully connected layer: He et al. 2015's initialisation scaled by the
"weight initialization constant" kappa of Lee et al. 2020 (Sec. 3.4 and
Table 2), 2 for plain networks and 1 for residual ones. Biases are set to 0.
"""

from __future__ import annotations

import math

import numpy as np

from eventsim.errors import OptionError
from eventsim.layers import Residual, Weighted
from eventsim.network import Network


def default_kappa(network: Network) -> float:
    """Lee et al. 2020's kappa: 1 for a network with residual blocks, 2 otherwise."""
    return 1.0 if any(isinstance(layer, Residual) for layer in network.walk()) else 2.0


def init_lee2020(network: Network, rng: np.random.Generator, *, kappa: float | None = None) -> None:
    """Draw every weight of ``network`` from N(0, kappa / fan_in) and zero its biases, in place.

    Parameters
    ----------
    network : Network
        Its Conv2d and Linear layers get new weights (also those built
        without one) in the network's dtype; layers are visited in
        ``network.walk()`` order.
    rng : numpy.random.Generator
        The only source of randomness. Draws are made in float64 and then
        rounded to the network's dtype, so float32 and float64 networks
        initialised from the same seed get the same weights up to rounding.
    kappa : float, optional
        Variance scale; default :func:`default_kappa` (2, or 1 for residual
        networks).
    """
    if not isinstance(rng, np.random.Generator):
        raise OptionError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if kappa is None:
        kappa = default_kappa(network)
    number = isinstance(kappa, (int, float, np.integer, np.floating)) and not isinstance(kappa, (bool, np.bool_))
    if not (number and math.isfinite(kappa) and kappa > 0):
        raise OptionError(f"kappa must be a finite number > 0, got {kappa!r}")
    for layer in network.walk():
        if isinstance(layer, Weighted):
            std = math.sqrt(kappa / layer.fan_in)
            layer.weight = rng.normal(0.0, std, layer.weight_shape).astype(network.dtype)
            if layer.bias is not None:
                layer.bias = np.zeros(layer.out_size, network.dtype)
