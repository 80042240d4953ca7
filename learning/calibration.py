"""Data-dependent initialisation: thresholds or weight scales set from the input currents of a calibration batch.

A deep spiking network initialised with fan-in scaled random weights and
threshold 1 goes quiet a few layers in: every layer passes on fewer spikes
than it receives, and a layer that never fires passes on no gradient either.
Ledinauskas et al. 2020 (Sec. 2.6) keep activity alive with batch
normalisation of the input currents or, without it, with thresholds at the
maximum input current. Both functions here work layer after layer in network
order, each from the currents ``I[t]`` the layer receives on the calibration
data while the layers before it already run with their final settings
(later layers cannot change a layer's input):

- :func:`thresholds_at_max_current`: theta of each spiking layer = the
  maximum of I over samples, positions and steps (one threshold per layer);
  the same statistic that ANN-to-SNN conversion balances channel by channel
  (:mod:`eventsim.learning.conversion`).
- :func:`scale_to_unit_currents`: the synapses into each spiking layer are
  multiplied by one factor so that I has standard deviation ``std`` over
  samples, positions and steps: the scale half of a frozen input-current
  batch norm, folded into the weights (layer-sequential unit-variance
  initialisation, Mishkin and Matas 2016, applied to currents).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from eventsim.errors import LayerError, OptionError
from eventsim.events import Events
from eventsim.layers import LIF, Layer, Readout, Residual, SpikingAvgPool, Synapse, Weighted
from eventsim.network import Network


def spiking_layers(network: Network, *, pools: bool = True) -> list[tuple[str, LIF, list[Layer]]]:
    """(recorded name, neuron, synapses feeding it) of every spiking layer, in network order.

    Readouts are left out; the IF neurons of spiking average pooling too
    unless ``pools``.
    """
    out: list[tuple[str, LIF, list[Layer]]] = []

    def visit(layers: list[Layer]) -> None:
        for i, layer in enumerate(layers):
            before = [layers[i - 1]] if i > 0 and isinstance(layers[i - 1], Synapse) else []
            if isinstance(layer, Residual):
                visit(layer.main[:-1])
                out.append((layer.neuron.name, layer.neuron, [layer.main[-1], layer.skip]))
            elif isinstance(layer, SpikingAvgPool):
                if pools:
                    out.append((layer.name, layer.neuron, [layer.pool]))
            elif isinstance(layer, LIF) and not isinstance(layer, Readout):
                out.append((layer.name, layer, before))

    visit(network.layers)
    return out


def layer_by_layer(
    network: Network,
    calibration: Events,
    adjust: Callable[[str, LIF, list[Layer], np.ndarray], None],
    *,
    pools: bool = True,
) -> None:
    """For each spiking layer in order: run ``calibration``, hand its currents ``(B, T, *shape)`` to ``adjust``.

    ``adjust(name, neuron, synapses, currents)`` changes the layer (its
    threshold, the synapses' weights) before the next layer is measured.
    """
    if not isinstance(calibration, Events):
        raise OptionError(f"calibration data must be Events, got {type(calibration).__name__}")
    for name, neuron, synapses in spiking_layers(network, pools=pools):
        currents = network.run(calibration, record=("currents",)).currents[name]
        adjust(name, neuron, synapses, currents.astype(np.float64))


def thresholds_at_max_current(network: Network, calibration: Events) -> dict[str, float]:
    """Set every spiking layer's threshold to the maximum input current on ``calibration``.

    Ledinauskas et al. 2020, Sec. 2.6: "set the threshold of the neuron layer
    to the maximum value of the input current to this layer throughout the
    whole training dataset and all time steps". Spiking average pooling keeps
    its threshold ratio. A layer whose current is never positive cannot be
    given a positive threshold: :class:`LayerError` names it.

    Returns the thresholds set, by layer name.
    """
    out: dict[str, float] = {}

    def adjust(name, neuron, synapses, currents):
        top = float(currents.max())
        if not top > 0:
            raise LayerError(neuron, f"receives no positive current on the calibration data (max {top:g}); "
                             "no threshold at the maximum current exists")
        neuron.threshold = top
        out[name] = top

    layer_by_layer(network, calibration, adjust, pools=False)
    return out


def scale_to_unit_currents(network: Network, calibration: Events, *, std: float = 1.0) -> dict[str, float]:
    """Scale the weights into every spiking layer so that its input current has standard deviation ``std``.

    One factor per spiking layer (both synapses of a residual block's
    neuron get it, biases too), computed over samples, positions and steps of
    ``calibration``. Spiking average pooling is left as it is. A layer whose
    current does not vary cannot be scaled: :class:`LayerError` names it.

    Returns the factors applied, by neuron layer name.
    """
    if not (np.isfinite(std) and std > 0):
        raise OptionError(f"std must be a positive finite number, got {std!r}")
    out: dict[str, float] = {}

    def adjust(name, neuron, synapses, currents):
        spread = float(currents.std())
        if not spread > 0:
            raise LayerError(neuron, "its input current is the same everywhere on the calibration data; "
                             "it cannot be scaled to a standard deviation")
        factor = std / spread
        if not synapses:
            raise LayerError(neuron, "has no synapse right before it whose weights could be scaled")
        for syn in synapses:
            if isinstance(syn, Weighted):
                syn.weight = (syn.weight * factor).astype(network.dtype)
                if syn.bias is not None:
                    syn.bias = (syn.bias * factor).astype(network.dtype)
            else:
                raise LayerError(neuron, f"is fed by {type(syn).__name__} {syn.name!r}, which has no weights to scale")
        out[name] = factor

    layer_by_layer(network, calibration, adjust, pools=False)
    return out
