"""eventsim's synapse layers as standard torch modules, for framework adapters.

Frameworks (snnTorch, Norse) bring their own neurons but compute synapses
with plain ``torch.nn`` modules; :func:`synapse_module` builds those from an
eventsim layer, weights copied, in the adapter's dtype. Average pooling is
``nn.AvgPool2d``, which divides the window sum by k^2: with dyadic values
and power-of-two windows that is exactly eventsim's sum of inputs times 1/k^2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventsim.layers import AvgPool, Conv2d, Dropout, Flatten, Identity, Layer, Linear, MaxPool, SumPool


def synapse_module(layer: Layer, dtype: Any) -> Any | None:
    """The ``torch.nn`` module computing ``layer``'s step, or None if ``layer`` is not a synapse.

    Conv2d and Linear (bias included), AvgPool, SumPool (``divisor_override=1``),
    Identity (strided subsampling), MaxPool, Dropout (the identity: adapters
    run inference) and Flatten. ``dtype`` is a torch dtype.
    """
    import torch

    nn = torch.nn
    if isinstance(layer, (Conv2d, Linear)):
        if isinstance(layer, Conv2d):
            module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                               padding=layer.padding, bias=layer.bias is not None, dtype=dtype)
        else:
            module = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=dtype)
        # Created in the target dtype: built in float32 and converted, float64 weights would be rounded.
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.asarray(layer.weight)))
            if layer.bias is not None:
                module.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
        return module
    if isinstance(layer, AvgPool):
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride)
    if isinstance(layer, SumPool):
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride, divisor_override=1)
    if isinstance(layer, Identity):
        return nn.AvgPool2d(1, stride=layer.stride)
    if isinstance(layer, MaxPool):
        return nn.MaxPool2d(layer.kernel_size, stride=layer.stride)
    if isinstance(layer, Dropout):
        return nn.Identity()
    if isinstance(layer, Flatten):
        return nn.Flatten()
    return None
