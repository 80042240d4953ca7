"""The layer-by-layer backward pass shared by the dense gradient references.

docs/semantics.md, "Gradient rules", "Layer by layer (shared by all rules)".
A rule runs backward through the layers in reverse order. Each layer receives
``G``, the gradient of the loss with respect to its output values, and hands
on the gradient with respect to its input values:

- neuron layers turn ``G`` into ``D = dL/dI``, the gradient with respect to
  their input current. *How* they do it is the one thing the rules disagree
  on, so it is a callback here (:data:`NeuronDelta`), written in
  :mod:`~eventsim.learning.dense.bptt` and
  :mod:`~eventsim.learning.dense.lee2020`;
- synapses and pools apply the adjoint (transpose) of their forward map, and
  weighted synapses also collect their weight and bias gradients
  (Lee et al. 2020, eqs. 24-26);
- dropout, flatten and residual blocks follow from the chain rule.

Arrays and their leading axes
-----------------------------
Every array here is ``(*lead, *shape)``, where ``shape`` is the per-sample
shape of a layer and ``lead`` is ``(B, T)`` for the per-step rule (``bptt``)
or ``(B,)`` for ``lee2020``, which works on totals over the T steps. The
adjoints only touch the trailing ``shape`` axes, so the same code serves both
rules; weight and bias gradients sum over all leading axes (over samples, and
over steps when there are steps).

Everything in this module is float64 and written for reading, not speed:
the convolution adjoint loops over kernel taps with the plain index formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from eventsim.dense import DenseRun, run_dense
from eventsim.errors import LayerError
from eventsim.layers import (
    LIF, AvgPool, Conv2d, Dropout, Flatten, Identity, Layer, Linear, MaxPool, Readout, Residual,
    SpikingAvgPool, SumPool,
)
from eventsim.learning.parameters import parameters
from eventsim.learning.rules import refuse_state
from eventsim.norm import refuse_norms

#: ``delta(layer, G) -> D``: a rule's neuron backward. ``layer`` is the layer
#: whose name keys the neuron's records (a LIF/IF layer, the neuron of a
#: Residual block, or a SpikingAvgPool, whose own IF neuron is ``layer.neuron``).
NeuronDelta = Callable[[Layer, np.ndarray], np.ndarray]


# ------------------------------------------------------------------- forward
@dataclass
class Forward:
    """The forward pass a rule differentiates, as float64 arrays ``(B, T, *shape)``.

    Attributes
    ----------
    run : DenseRun
        The dense run itself, in the network's dtype (spikes exactly the
        simulator's).
    inputs : dict
        Layer name -> the values entering that layer at every step (the
        previous layer's output; the block input for the first layer of a
        residual main path and for its skip). Float64.
    outputs, potentials : dict
        ``run.outputs`` and ``run.potentials`` in float64.
    masks : dict
        The dropout keep-masks the run used (``(B, *shape)`` bool).
    steps : int
        T.
    """

    run: DenseRun
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    potentials: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    steps: int


def forward(network, x: np.ndarray, masks: dict[str, np.ndarray] | None) -> Forward:
    """Run the network densely in its own dtype and keep what the backward needs.

    ``masks=None`` is the inference forward (no dropout); a dict is a training
    forward with exactly those keep-masks (docs/semantics.md, "Dropout").
    """
    refuse_norms(network, "the dense reference gradients (eventsim.learning.dense)")
    refuse_state(network, "the dense reference of the gradient rules (eventsim.learning.dense)",
                 "the bptt rule does, checked against PyTorch autograd (tests/test_torch_state.py)")
    run = run_dense(network, x, train=masks is not None, masks=masks)
    outputs = {name: v.astype(np.float64) for name, v in run.outputs.items()}
    potentials = {name: v.astype(np.float64) for name, v in run.potentials.items()}
    inputs: dict[str, np.ndarray] = {}
    _record_inputs(network.layers, x.astype(np.float64), outputs, inputs)
    return Forward(run, inputs, outputs, potentials, dict(run.masks), int(x.shape[1]))


def _record_inputs(layers: Sequence[Layer], x: np.ndarray, outputs: dict, inputs: dict) -> None:
    for layer in layers:
        inputs[layer.name] = x
        if isinstance(layer, Residual):
            # Both paths read the block input (Lee et al. 2020, Sec. 2.2.2).
            _record_inputs(layer.main, x, outputs, inputs)
            inputs[layer.skip.name] = x
        x = outputs[layer.name]


def output_gradient(network, grad_output: np.ndarray, batch: int) -> np.ndarray:
    """``grad_output`` checked against the network's output shape, as float64."""
    if not network.layers:
        raise ValueError("the network has no layers")
    last = network.layers[-1]
    out_shape = tuple(network.shapes[last.name][1])
    g = np.asarray(grad_output)
    if g.shape != (batch,) + out_shape:
        raise ValueError(f"grad_output must have shape {(batch,) + out_shape} (batch, *output shape), got {g.shape}")
    if not np.issubdtype(g.dtype, np.number) or not np.all(np.isfinite(g)):
        raise ValueError("grad_output must hold finite numbers")
    return g.astype(np.float64)


def channel_thresholds(neuron: LIF, shape: tuple[int, ...]) -> np.ndarray:
    """theta of every neuron of a ``shape`` layer, broadcastable to ``(*lead, *shape)``.

    One value per channel (``shape[0]``), or per neuron for a flat layer,
    as :meth:`eventsim.layers.LIF.thresholds` gives them; float64.
    """
    theta = neuron.thresholds(shape)
    return theta.reshape((-1,) + (1,) * (len(shape) - 1))


# ------------------------------------------------------------------ adjoints
def conv2d_backward(
    D: np.ndarray, x: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjoint of the convolution (docs/semantics.md, "Layer by layer").

    Forward (zero padding ``p``, stride ``s``)::

        I[o, y, x] = sum_{c,i,j} W[o,c,i,j] * xin[c, y*sy + i - py, x*sx + j - px]

    Backward, with ``D = dL/dI``::

        dL/dxin[c, y*sy + i - py, x*sx + j - px] += W[o,c,i,j] * D[o,y,x]
        dW[o,c,i,j] = sum_{lead,y,x} D[o,y,x] * xin[c, y*sy + i - py, x*sx + j - px]
        db[o]       = sum_{lead,y,x} D[o,y,x]

    Taps that land in the padding contribute nothing (the padded input is 0
    and its gradient is cut off); inputs that no output reads get 0.

    Parameters
    ----------
    D : ``(*lead, O, Ho, Wo)``;  x : ``(*lead, C, H, W)``;  weight : ``(O, C, kh, kw)``

    Returns
    -------
    dx ``(*lead, C, H, W)``, dW ``(O, C, kh, kw)``, db ``(O,)``
    """
    w = weight.astype(np.float64)
    _, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = D.shape[-2:]
    h, wdt = x.shape[-2:]
    lead = x.ndim - 3
    xpad = np.pad(x, [(0, 0)] * lead + [(0, 0), (ph, ph), (pw, pw)])
    dxpad = np.zeros_like(xpad)
    dW = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            # Padded input positions tap (i, j) reads, for every output (y, x):
            # rows i + y*sh, columns j + x*sw.
            rows = slice(i, i + sh * (ho - 1) + 1, sh)
            cols = slice(j, j + sw * (wo - 1) + 1, sw)
            patch = xpad[..., :, rows, cols]  # (*lead, C, Ho, Wo)
            # Sum over every leading axis (samples, and steps if any) and positions.
            dW[:, :, i, j] = np.einsum("noyx,ncyx->oc", _flat_lead(D, 3), _flat_lead(patch, 3))
            dxpad[..., :, rows, cols] += np.einsum("...oyx,oc->...cyx", D, w[:, :, i, j])
    dx = dxpad[..., :, ph:ph + h, pw:pw + wdt]
    db = D.sum(axis=tuple(range(lead)) + (-2, -1))
    return np.ascontiguousarray(dx), dW, db


def _flat_lead(a: np.ndarray, trailing: int) -> np.ndarray:
    """``a`` with all but its last ``trailing`` axes merged into one (the axis weight gradients sum over)."""
    return a.reshape((-1,) + a.shape[a.ndim - trailing:])


def linear_backward(D: np.ndarray, x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjoint of ``I = W x (+ b)``: ``dL/dx = W^T D``, ``dW = sum D x^T``, ``db = sum D``.

    Sums run over the leading axes (Lee et al. 2020, eqs. 24-26).
    """
    w = weight.astype(np.float64)
    dx = D @ w
    dW = _flat_lead(D, 1).T @ _flat_lead(x, 1)
    db = D.reshape(-1, D.shape[-1]).sum(axis=0)
    return dx, dW, db


def window_adjoint(
    D: np.ndarray, in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], weight: float
) -> np.ndarray:
    """Adjoint of a fixed-weight window sum (AvgPool, SumPool, strided Identity, SpikingAvgPool's pool).

    Forward ``I[c, y, x] = sum_{i,j} w * xin[c, y*sy + i, x*sx + j]`` (no
    padding), so every output's ``D`` goes back, times ``w``, to each input of
    its window; overlapping windows add; inputs in no window get 0.
    """
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = D.shape[-2:]
    dx = np.zeros(D.shape[:-2] + tuple(in_hw))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (ho - 1) + 1, sh)
            cols = slice(j, j + sw * (wo - 1) + 1, sw)
            dx[..., rows, cols] += weight * D
    return dx


def max_pool_adjoint(D: np.ndarray, x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Adjoint of max pooling: each output routes its whole ``D`` to one input.

    The chosen input is the first position in row-major window order whose
    value equals the window maximum (docs/semantics.md, "Layer by layer";
    PyTorch's choice). ``x`` holds the values the max was taken over: one
    step's values for a per-step rule, summed values (counts) for ``lee2020``.
    Positions without an event hold 0 and take part, so a window without
    events routes to its first position.
    """
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = D.shape[-2:]
    taps = [(i, j) for i in range(kh) for j in range(kw)]  # row-major window order

    def window_slice(i: int, j: int) -> tuple:
        return (Ellipsis, slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))

    values = np.stack([x[window_slice(i, j)] for i, j in taps], axis=-1)  # (*lead, C, Ho, Wo, kh*kw)
    winner = np.argmax(values, axis=-1)  # argmax returns the first maximal tap
    dx = np.zeros_like(x)
    for k, (i, j) in enumerate(taps):
        dx[window_slice(i, j)] += np.where(winner == k, D, 0.0)
    return dx


def dropout_adjoint(G: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """``dL/dx = G * keep / (1 - p)``: the forward multiplied kept values by ``scale`` and zeroed the rest.

    ``keep`` is ``(B, *shape)``, held for all steps, so it is broadcast over
    any step axis of ``G``.
    """
    expanded = keep.reshape(keep.shape[:1] + (1,) * (G.ndim - keep.ndim) + keep.shape[1:])
    return G * np.where(expanded, scale, 0.0)


# ---------------------------------------------------------------- the walk
class LayerwiseBackward:
    """One backward pass through a list of layers, collecting parameter gradients.

    Parameters
    ----------
    network : Network
        Gives the shapes and the parameter keys.
    values : dict
        Layer name -> the layer's input values with the rule's leading axes:
        per step ``(B, T, *in)`` for ``bptt``, summed over T ``(B, *in)``
        for ``lee2020``. Read by weighted synapses (weight gradients) and
        max pooling (routing).
    masks : dict
        The run's dropout keep-masks by layer name.
    delta : NeuronDelta
        The rule's neuron backward.
    dtype : numpy dtype
        The network's dtype: the forward used the weights rounded to it, so
        the backward uses the same numbers (then in float64).

    Attributes
    ----------
    grads : dict
        ``"<layer>.weight"`` / ``"<layer>.bias"`` -> float64 gradient, the keys
        of :func:`eventsim.learning.parameters.parameters`.
    """

    def __init__(self, network, values: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                 delta: NeuronDelta, dtype: np.dtype) -> None:
        self.shapes = network.shapes
        self.values = values
        self.masks = masks
        self.delta = delta
        self.dtype = np.dtype(dtype)
        self.grads = {key: np.zeros(p.shape, dtype=np.float64) for key, p in parameters(network).items()}

    def sequence(self, layers: Sequence[Layer], G: np.ndarray) -> np.ndarray:
        """Backward through ``layers`` (a forward-ordered list) from the gradient of the last output."""
        for layer in reversed(layers):
            G = self.layer(layer, G)
        return G

    def layer(self, layer: Layer, G: np.ndarray) -> np.ndarray:
        """``dL/d(input values)`` of ``layer`` from ``G = dL/d(output values)``."""
        in_shape = tuple(self.shapes[layer.name][0])
        if isinstance(layer, Residual):
            # Both paths fed the same neuron current, so both receive its D;
            # both read the block input, so their input gradients add.
            D = self.delta(layer.neuron, G)
            from_main = self.sequence(layer.main, D)
            from_skip = self.layer(layer.skip, D)
            return from_main + from_skip
        if isinstance(layer, SpikingAvgPool):
            # A fixed average pool feeding an IF neuron: the neuron's D, then
            # the pool's adjoint (1/(kh*kw) to each input of the window).
            D = self.delta(layer, G)
            return window_adjoint(D, in_shape[-2:], layer.kernel_size, layer.stride, layer.pool.window_weight)
        if isinstance(layer, Readout):
            raise LayerError(layer, "a Readout must be the last layer of the network")
        if isinstance(layer, LIF):
            # A neuron after no synapse takes its input values as current, so D
            # is also the gradient of its input values.
            return self.delta(layer, G)
        if isinstance(layer, Dropout):
            keep = self.masks.get(layer.name)
            return G if keep is None else dropout_adjoint(G, keep, layer.scale)
        if isinstance(layer, Flatten):
            return G.reshape(G.shape[:G.ndim - 1] + in_shape)
        # Synapses. G is dL/d(currents): if a neuron follows, it is that
        # neuron's D; if none follows, the currents went on as values and
        # D = G. Either way the synapse treats G as D.
        if isinstance(layer, Conv2d):
            dx, dW, db = conv2d_backward(G, self.values[layer.name], self._weight(layer), layer.stride, layer.padding)
            self._store(layer, dW, db)
            return dx
        if isinstance(layer, Linear):
            dx, dW, db = linear_backward(G, self.values[layer.name], self._weight(layer))
            self._store(layer, dW, db)
            return dx
        if isinstance(layer, (AvgPool, SumPool)):
            return window_adjoint(G, in_shape[-2:], layer.kernel_size, layer.stride, layer.window_weight)
        if isinstance(layer, Identity):
            if layer.stride == (1, 1):
                return G.copy()
            return window_adjoint(G, in_shape[-2:], (1, 1), layer.stride, 1.0)
        if isinstance(layer, MaxPool):
            return max_pool_adjoint(G, self.values[layer.name], layer.kernel_size, layer.stride)
        raise LayerError(layer, "the dense gradient reference does not know this layer type")

    def _weight(self, layer: Conv2d | Linear) -> np.ndarray:
        return layer.weight.astype(self.dtype).astype(np.float64)

    def _store(self, layer: Conv2d | Linear, dW: np.ndarray, db: np.ndarray) -> None:
        self.grads[f"{layer.name}.weight"] += dW
        if layer.bias is not None:
            self.grads[f"{layer.name}.bias"] += db
