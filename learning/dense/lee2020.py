"""Dense reference of the ``lee2020`` rule: Lee et al. 2020, eqs. 22-27, one pass at T.

docs/semantics.md, "Gradient rules", "`lee2020`". The rule never looks at
individual steps in its backward pass. Every quantity is a total over the
window of T steps, per sample:

- synapses see ``x``, their input values summed over T (spike counts; signed
  counts for bipolar input; sums of dropout-scaled values after dropout),
  and collect ``dW = D x^T`` (eqs. 25-26; a correlation of the count map with
  ``D`` for a convolution);
- a spiking neuron (LIF/IF, residual neurons included) with spike count
  ``gamma`` and trace ``f = sum_k lam^(T - t_k)`` over its spike steps passes
  ``D = G * g * a'`` (eq. 24) with the pseudo-derivative of eq. 22 evaluated
  at t = T::

      a' = (1/theta) * (1 + ln(lam) * f / gamma)    if gamma > 0
      a' = 0                                        if gamma = 0

  (``-1/tau`` is written ``ln(lam)``; for IF neurons, lam = 1, this is the
  straight-through ``1/theta`` of eq. 13). a' is the derivative with respect
  to the net input, which is ``g * I`` for a layer with input gain g, hence
  the factor g; a delayed reset changes neither a' nor the trace;
- the readout treats its leak as noise: ``D = g * g_out / T`` (eq. 23);
- spiking average pooling passes ``D = G * 1[gamma > 0]`` (the authors' code,
  no ``1/theta``, no leak correction), then the pool's adjoint;
- pools, dropout and residual blocks are the shared layer-by-layer adjoints of
  :mod:`eventsim.learning.dense.layerwise`; max pooling routes by the
  summed input values (max pooling read on count maps).

Since ``D`` does not depend on t here, summing per-step weight gradients or
correlating the totals gives the same result (the extraction, Sec. 2.6).
"""

from __future__ import annotations

import numpy as np

from eventsim.errors import LayerError
from eventsim.layers import LIF, Layer, Readout, SpikingAvgPool
from eventsim.learning.dense.layerwise import (
    LayerwiseBackward, channel_thresholds, forward, output_gradient,
)

__all__ = ["lee2020_gradients", "spike_statistics", "lif_pseudo_derivative"]


def spike_statistics(s: np.ndarray, leak: float) -> tuple[np.ndarray, np.ndarray]:
    """Spike count ``gamma`` and trace ``f = sum_k lam^(T - t_k)`` of every neuron.

    docs/semantics.md, "Neurons": with 1-based spike steps ``t_k`` the trace
    weighs a spike at the last step by 1 and one at step 1 by ``lam^(T-1)``;
    with 0-based steps t the weight is ``lam^(T-1-t)``.

    Parameters
    ----------
    s : float64 array ``(B, T, *shape)``, 0/1 spikes of the forward pass
    leak : float, lam

    Returns
    -------
    gamma, f : float64 arrays ``(B, *shape)``
    """
    steps = s.shape[1]
    weights = np.asarray([leak ** (steps - 1 - t) for t in range(steps)], dtype=np.float64)
    gamma = s.sum(axis=1)
    f = np.tensordot(weights, s, axes=([0], [1]))  # sum over t of weight[t] * s[:, t]
    return gamma, f


def lif_pseudo_derivative(gamma: np.ndarray, f: np.ndarray, theta: np.ndarray | float, leak: float) -> np.ndarray:
    """``a'`` of Lee et al. 2020, eq. 22 at t = T (0 for a neuron that never fired).

    ::

        a' = (1/theta) * (1 + ln(lam) * f / gamma)    gamma > 0
           = 0                                        gamma = 0

    ``f / gamma`` is the mean of ``lam^(T - t_k)`` over the spikes, in
    ``[lam^(T-1), 1]``, so ``(1/theta)(1 + ln lam) <= a' <= 1/theta``.
    """
    fired = gamma > 0
    # The gamma = 0 entries are overwritten by 0; divide by 1 there to avoid 0/0.
    mean_decay = f / np.where(fired, gamma, 1.0)
    aprime = (1.0 / np.asarray(theta, dtype=np.float64)) * (1.0 + np.log(leak) * mean_decay)
    return np.where(fired, aprime, 0.0)


def lee2020_gradients(
    network,
    x: np.ndarray,
    grad_output: np.ndarray,
    *,
    masks: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of the loss under the ``lee2020`` rule (one backward pass on totals).

    docs/semantics.md, "Gradient rules": "What a loss hands to a rule",
    "Layer by layer" and "`lee2020`".

    Parameters
    ----------
    network : eventsim.Network
    x : array ``(B, T, *network.input_shape)`` in ``network.dtype``
        Input values at every step (spikes, signed spikes or analog values).
    grad_output : array ``(B, *output_shape)``
        ``dL/d(readout)`` if the last layer is a :class:`~eventsim.layers.Readout`,
        else ``dL/d(count)`` of the last layer's output summed over T.
    masks : dict of name -> bool ``(B, *shape)``, optional
        None: inference forward, no dropout. A dict: training forward with
        exactly these keep-masks (every Dropout with p > 0 needs one).

    Returns
    -------
    dict
        ``"<layer>.weight"`` and ``"<layer>.bias"`` of every Conv2d and Linear
        layer (residual blocks included), float64 arrays of the parameters'
        shapes, summed over samples.

    Raises
    ------
    LayerError
        For a spiking LIF layer with leak 0, where ``ln(lam)`` is infinite and
        eq. 22 has no value.
    """
    fwd = forward(network, x, masks)
    g_out = output_gradient(network, grad_output, x.shape[0])
    steps = fwd.steps
    # "Totals": every layer's input values summed over the T steps.
    totals = {name: v.sum(axis=1) for name, v in fwd.inputs.items()}

    def delta(layer: Layer, G: np.ndarray) -> np.ndarray:
        spikes = fwd.outputs[layer.name]
        if isinstance(layer, SpikingAvgPool):
            # The authors' code: the pooling unit's gradient is 1 if it fired
            # at all in the window, else 0 (extraction, Sec. 8.2).
            gamma = spikes.sum(axis=1)
            return G * (gamma > 0)
        neuron: LIF = layer
        if neuron.leak == 0.0:
            raise LayerError(layer, "the lee2020 rule needs leak > 0 (a' contains ln(leak))")
        gamma, f = spike_statistics(spikes, neuron.leak)
        theta = channel_thresholds(neuron, tuple(network.shapes[layer.name][1]))
        return G * neuron.input_gain * lif_pseudo_derivative(gamma, f, theta, neuron.leak)

    walk = LayerwiseBackward(network, totals, fwd.masks, delta, network.dtype)
    layers = list(network.layers)
    if isinstance(layers[-1], Readout):
        # Eq. 23: the output leak is treated as noise, d readout / d net = 1/T,
        # and the net input is g times the current.
        walk.sequence(layers[:-1], g_out * layers[-1].input_gain / steps)
    else:
        walk.sequence(layers, g_out)
    return walk.grads
