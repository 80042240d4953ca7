"""Dense reference of the ``bptt`` rule: backpropagation through time with a surrogate.

docs/semantics.md, "Gradient rules", "`bptt`". The forward pass is the
neuron recursion of "Neurons", with input gain g::

    U[t] = P[t-1] + g * I[t],         U[0] = 0
    s[t] = 1[U[t] > theta]            (">=" on request)
    P[t] = lam * R(U[t], s[t])        (reset, then leak: the default)
         = R(lam * U[t], s[t])        (leak, then reset: reset_delayed)
    R(x, s) = x * (1 - s) + v_reset * s  (hard reset)
            = x - theta * s              (soft reset)

and this rule differentiates it exactly in reverse mode, except that the
derivative of the step function, ``ds/dU``, is replaced by a surrogate
``sigma(U - theta)`` (Neftci et al. 2019; Syed et al. 2021, Sec. 3.2). ``P[t]``
enters the loss only through ``U[t+1]``, with ``dU[t+1]/dP[t] = 1``. Per
spiking neuron and sample, going backward over the steps with ``E[T+1] = 0``::

    gS[t] = G[t] + E[t+1] * dP/ds[t]                   dL/ds[t]   (2nd term dropped if detach_reset)
    E[t]  = gS[t] * sigma(U[t] - theta) + E[t+1] * dP/dU[t]       dL/dU[t]
    D[t]  = g * E[t]                                   dL/dI[t]   (dU[t]/dI[t] = g)

                       dP/dU                  dP/ds
    hard, default:     lam * (1 - s[t])       lam * (v_reset - U[t])
    soft, default:     lam                    -lam * theta
    hard, delayed:     lam * (1 - s[t])       v_reset - lam * U[t]
    soft, delayed:     lam                    -theta

``G[t]`` is the gradient with respect to the neuron's output spike at step t
(from the layers after it). The readout (``theta = inf``, never fires) gives
``readout = U[T] / T``, and ``U[T] = g * sum_t lam^(T-t) I[t]``, hence
``D[t] = g * lam^(T-t) * g_out / T`` exactly. The synapses, pools, dropout and
residual blocks are the shared layer-by-layer adjoints of
:mod:`eventsim.learning.dense.layerwise`, applied at every step; weight
gradients sum over steps and samples.

Everything is a plain loop over steps on dense ``(B, T, *shape)`` arrays: the
readable version that the event-driven implementation is tested against.
"""

from __future__ import annotations

import numpy as np

from eventsim.errors import OptionError
from eventsim.layers import LIF, Layer, Readout, SpikingAvgPool
from eventsim.learning.dense.layerwise import (
    LayerwiseBackward, channel_thresholds, forward, output_gradient,
)
from eventsim.learning.surrogates import Surrogate

__all__ = ["bptt_gradients", "lif_backward", "surrogate_derivative"]


def surrogate_derivative(surrogate: Surrogate, x: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    """sigma(x) for ``x = U - theta``, written out from the table of docs/semantics.md.

    ==================  ============================================
    straight_through    ``1 / theta``  (Lee et al. 2020, eq. 13)
    fast_sigmoid        ``b / (1 + c |x|)^2``, b = 1/theta if None (Syed et al. 2021, eq. 12)
    arctan              ``(alpha/2) / (1 + (pi/2 * alpha * x)^2)``
    sigmoid             ``alpha * sig(alpha x) * (1 - sig(alpha x))``
    triangle            ``max(0, 1 - |x| / width) / width``
    ==================  ============================================

    The formula is chosen by ``surrogate.name`` and reads the object's fields;
    it deliberately does not call ``surrogate.derivative`` so that the two stay
    independent. Neurons with ``theta = inf`` never fire and get 0.

    Parameters
    ----------
    surrogate : Surrogate
    x : float64 array
    theta : float64 scalar or array broadcastable to ``x``

    Returns
    -------
    float64 array of the broadcast shape of ``x`` and ``theta``
    """
    x = np.asarray(x, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    never_fires = np.isinf(theta)
    # theta = inf makes x = -inf (and 1/theta = 0); compute on a harmless
    # stand-in and put the 0 back at the end, so no NaN can slip through.
    x = np.where(never_fires, 0.0, x)
    th = np.where(never_fires, 1.0, theta)
    name = surrogate.name
    if name == "straight_through":
        sigma = np.broadcast_to(1.0 / th, np.broadcast_shapes(x.shape, th.shape))
    elif name == "fast_sigmoid":
        height = 1.0 / th if surrogate.b is None else float(surrogate.b)
        sigma = height / (1.0 + float(surrogate.c) * np.abs(x)) ** 2
    elif name == "arctan":
        alpha = float(surrogate.alpha)
        sigma = (alpha / 2.0) / (1.0 + (np.pi / 2.0 * alpha * x) ** 2)
    elif name == "sigmoid":
        alpha = float(surrogate.alpha)
        # sig(z)(1 - sig(z)) = e^{-|z|} / (1 + e^{-|z|})^2, symmetric in z and
        # free of overflow for large |z|.
        e = np.exp(-np.abs(alpha * x))
        sigma = alpha * e / (1.0 + e) ** 2
    elif name == "triangle":
        width = float(surrogate.width)
        sigma = np.maximum(0.0, 1.0 - np.abs(x) / width) / width
    else:
        raise OptionError(f"unknown surrogate {name!r} for the dense bptt reference")
    return np.where(never_fires, 0.0, sigma)


def lif_backward(
    G: np.ndarray,
    U: np.ndarray,
    s: np.ndarray,
    *,
    theta: np.ndarray | float,
    leak: float,
    reset: str,
    v_reset: float,
    surrogate: Surrogate,
    detach_reset: bool = True,
    input_gain: float = 1.0,
    reset_delayed: bool = False,
) -> np.ndarray:
    """``D = dL/dI`` of one layer of spiking LIF/IF neurons, by the BPTT recursion.

    docs/semantics.md, "`bptt`" (the recursion in the module docstring), with
    ``E[T+1] = 0``, run backward over the steps.

    Parameters
    ----------
    G : float64 array ``(B, T, *shape)``
        ``dL/ds[t]``, the gradient of the loss with respect to the layer's
        output spikes at every step.
    U, s : float64 arrays ``(B, T, *shape)``
        The forward potentials (before reset) and spikes (0/1).
    theta : float64, broadcastable to ``shape``
        Per-channel thresholds (``inf`` for neurons that never fire).
    leak : float
        lam (1 for IF).
    reset : {"hard", "soft"}
    v_reset : float
        Hard-reset value.
    surrogate : Surrogate
        Replaces ``ds/dU``.
    detach_reset : bool
        Drop the path through the reset (``E[t+1] * dP/ds``), as snnTorch,
        SpikingJelly and Norse do by default. The leak path is always kept.
    input_gain : float
        g, the factor of the input current.
    reset_delayed : bool
        The reset acts after the leak (see the table in the module docstring).

    Returns
    -------
    float64 array ``(B, T, *shape)``
    """
    theta = np.asarray(theta, dtype=np.float64)
    never_fires = np.isinf(theta)
    steps = G.shape[1]
    D = np.zeros_like(G)
    E_next = np.zeros_like(G[:, 0])  # E[T+1] = 0: nothing after the last step
    for t in reversed(range(steps)):
        sigma = surrogate_derivative(surrogate, U[:, t] - theta, theta)
        # theta = inf: such a neuron has sigma = 0 and s = 0, so dL/ds never
        # reaches U; use 0 rather than -inf to keep 0 * inf out.
        minus_theta = np.where(never_fires, 0.0, -theta) * np.ones_like(U[:, t])
        if reset == "hard":
            dP_dU = leak * (1.0 - s[:, t])
            dP_ds = v_reset - leak * U[:, t] if reset_delayed else leak * (v_reset - U[:, t])
        else:
            dP_dU = leak * np.ones_like(U[:, t])
            dP_ds = minus_theta if reset_delayed else leak * minus_theta
        gS = G[:, t] if detach_reset else G[:, t] + E_next * dP_ds
        E = gS * sigma + E_next * dP_dU
        D[:, t] = input_gain * E
        E_next = E
    return D


def readout_delta(g_out: np.ndarray, leak: float, steps: int, input_gain: float = 1.0) -> np.ndarray:
    """``D[t] = g * lam^(T-t) * g_out / T`` (1-based t) of the readout, ``(B, T, *out)``.

    ``readout = U[T] / T`` and, since it never fires, ``U[T] = g * sum_t lam^(T-t) I[t]``
    (docs/semantics.md, "Neurons"). With 0-based steps the power is ``T-1-t``.
    """
    powers = np.asarray([input_gain * leak ** (steps - 1 - t) for t in range(steps)], dtype=np.float64)
    powers = powers.reshape((1, steps) + (1,) * (g_out.ndim - 1))
    return powers * g_out[:, None] / steps


def bptt_gradients(
    network,
    x: np.ndarray,
    grad_output: np.ndarray,
    *,
    surrogate: Surrogate,
    detach_reset: bool = True,
    masks: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of the loss under the ``bptt`` rule, by a dense forward and a dense backward.

    docs/semantics.md, "Gradient rules": "What a loss hands to a rule",
    "Layer by layer" and "`bptt`".

    Parameters
    ----------
    network : eventsim.Network
    x : array ``(B, T, *network.input_shape)`` in ``network.dtype``
        Input values at every step (spikes, signed spikes or analog values).
    grad_output : array ``(B, *output_shape)``
        ``dL/d(readout)`` if the last layer is a :class:`~eventsim.layers.Readout`;
        otherwise ``dL/d(count)`` of the last layer's output summed over T,
        which is then ``dL/ds[t]`` at every step t.
    surrogate : Surrogate
        The ``ds/dU`` replacement (:mod:`eventsim.learning.surrogates`).
    detach_reset : bool
        Treat the reset as a constant (default).
    masks : dict of name -> bool ``(B, *shape)``, optional
        None: inference forward, no dropout. A dict: training forward with
        exactly these keep-masks (every Dropout with p > 0 needs one).

    Returns
    -------
    dict
        ``"<layer>.weight"`` and ``"<layer>.bias"`` of every Conv2d and Linear
        layer (residual blocks included), float64 arrays of the parameters'
        shapes, summed over steps and samples.
    """
    # Forward in the network's dtype, so the spikes are exactly the
    # simulator's; backward in float64.
    fwd = forward(network, x, masks)
    g_out = output_gradient(network, grad_output, x.shape[0])
    steps = fwd.steps

    def delta(layer: Layer, G: np.ndarray) -> np.ndarray:
        # SpikingAvgPool keeps its IF neuron as .neuron; its records are under
        # the pooling layer's name, like every other neuron layer's own name.
        neuron: LIF = layer.neuron if isinstance(layer, SpikingAvgPool) else layer
        shape = tuple(network.shapes[layer.name][1])
        return lif_backward(
            G, fwd.potentials[layer.name], fwd.outputs[layer.name],
            theta=channel_thresholds(neuron, shape), leak=neuron.leak, reset=neuron.reset,
            v_reset=neuron.v_reset, surrogate=surrogate, detach_reset=detach_reset,
            input_gain=neuron.input_gain, reset_delayed=neuron.reset_delayed,
        )

    walk = LayerwiseBackward(network, fwd.inputs, fwd.masks, delta, network.dtype)
    layers = list(network.layers)
    if isinstance(layers[-1], Readout):
        # The readout's D is dL/d(its input current) at every step; the
        # layers before it receive it as the gradient of their output values.
        readout = layers[-1]
        walk.sequence(layers[:-1], readout_delta(g_out, readout.leak, steps, readout.input_gain))
    else:
        # dL/d(count) = dL/ds[t] at every step, since count = sum_t s[t].
        G = np.repeat(g_out[:, None], steps, axis=1)
        walk.sequence(layers, G)
    return walk.grads
