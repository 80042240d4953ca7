"""The ANN view of a network: a ReLU network trained with plain backprop, for ANN-to-SNN conversion.

Conversion (Cao et al. 2015; Diehl et al. 2015; Ngu and Lee 2022, Sec. 3)
trains a ReLU network and copies its weights into a spiking one whose firing
rates approximate the ReLU activations. Here the same
:class:`~eventsim.network.Network` is both: its ANN view reads

- every spiking neuron layer (:class:`~eventsim.layers.LIF`,
  :class:`~eventsim.layers.IF`, the neuron of a
  :class:`~eventsim.layers.Residual` block) as ``relu``, ignoring thresholds,
  leaks and resets (the rate of an IF neuron with soft reset is
  ``clip(I / theta, 0, 1)``, a ReLU up to scale and saturation);
- :class:`~eventsim.layers.SpikingAvgPool` as average pooling (the pooling
  neuron's rate is about the window's mean rate);
- a :class:`~eventsim.layers.Readout` as the identity: its input currents are
  the logits;
- :class:`~eventsim.layers.Dropout` as inverted dropout in training,
  ``y = x * keep / (1 - p)``, the identity otherwise;
- the synapses (Conv2d, Linear, AvgPool, SumPool, MaxPool, Identity) and
  Flatten as themselves, computed with the dense twins of
  :mod:`eventsim.dense`.

:func:`train_ann` updates the layers' own weight arrays
(:func:`~eventsim.learning.parameters.parameters`), so the trained network is
ready to run as an SNN once its thresholds are set.

The backward pass is derived by hand, layer by layer, for ``y = f(x)`` and
``g = dL/dy`` (PyTorch's autograd gives the same numbers; ``tests/test_ann.py``):

- conv: ``dW[o,c,i,j] = sum_{b,oy,ox} g[b,o,oy,ox] xpad[b,c,oy*sh+i,ox*sw+j]``,
  ``db[o] = sum g[b,o,...]``, and ``dxpad[b,c,oy*sh+i,ox*sw+j] += sum_o
  g[b,o,oy,ox] W[o,c,i,j]`` (the transposed convolution), cropped by the padding;
- linear: ``dW = g^T x``, ``db = sum_b g``, ``dx = g W``;
- sum / average pooling: every input of a window receives ``w * g`` (``w = 1``
  or ``1 / (kh*kw)``); max pooling routes ``g`` to the window's first maximum
  (row-major, as PyTorch on CPU); strided identity: ``g`` back to the sampled
  positions;
- ReLU: ``dx = g * 1[x > 0]``; dropout: ``dx = g * keep / (1 - p)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from eventsim.dense import apply_dropout, avg_pool, conv2d, draw_dropout_mask, linear, max_pool, subsample, sum_pool
from eventsim.dense._common import windows
from eventsim.errors import LayerError, OptionError
from eventsim.layers import (
    LIF, AvgPool, Conv2d, Dropout, Flatten, Identity, Layer, Linear, MaxPool, Readout, Residual, SpikingAvgPool,
    SumPool,
)
from eventsim.learning.dense.layerwise import max_pool_adjoint, window_adjoint
from eventsim.learning.losses import Loss, check_labels, loss_from_config
from eventsim.learning.optimizers import Optimizer
from eventsim.learning.parameters import parameters
from eventsim.network import Network
from eventsim.progress import progress_bar
from eventsim.norm import refuse_norms

__all__ = ["AnnCache", "ann_accuracy", "ann_backward", "ann_forward", "train_ann"]

_SUPPORTED = (
    "Conv2d, Linear, AvgPool, SumPool, MaxPool, Identity, Flatten, LIF/IF (ReLU), Readout (identity), "
    "SpikingAvgPool (average pooling), Dropout, Residual"
)


@dataclass
class AnnCache:
    """What :func:`ann_forward` keeps for :func:`ann_backward`.

    Attributes
    ----------
    records : list of (layer, saved)
        Per top-level layer, in order, what its backward needs (its input,
        a mask, the nested records of a residual block).
    dtype : numpy dtype
        The dtype of the forward pass (the network's).
    masks : dict
        Dropout keep-masks by layer name, ``(B, *shape)`` bool (training only).
    """

    records: list[tuple[Layer, object]]
    dtype: np.dtype
    masks: dict[str, np.ndarray] = field(default_factory=dict)


# ------------------------------------------------------------------ forward
def ann_forward(
    network: Network, x: np.ndarray, *, train: bool = False, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, AnnCache]:
    """Logits of the ANN view of ``network`` for a batch of dense inputs.

    Each layer is applied once to the whole batch, in network order, as the
    module docstring lists; the output of the last layer (the input currents
    of a final :class:`~eventsim.layers.Readout`) are the logits.

    Parameters
    ----------
    network : Network
        Initialised (every weight set).
    x : float array, shape ``(B, *network.input_shape)``
        Analog inputs (e.g. pixels / 255); computed in ``network.dtype``.
    train : bool
        Apply dropout, one keep-mask per Dropout layer drawn from ``rng``
        with :func:`~eventsim.dense.draw_dropout_mask`, in network order.
    rng : numpy Generator, optional
        Needed when ``train`` is True and the network has Dropout layers.

    Returns
    -------
    logits : array, shape ``(B, *network.output_shape)``, ``network.dtype``
    cache : AnnCache
        For :func:`ann_backward`.

    Raises
    ------
    LayerError
        A layer the ANN view does not cover, or one without weights.
    ValueError
        ``x`` is not a float array of shape ``(B, *input_shape)``.
    """
    refuse_norms(network, "the ANN view")
    dtype = np.dtype(network.dtype)
    x = _check_input(network, x)
    walk = _Forward(dtype, train, rng)
    logits, records = walk.sequence(network.layers, x)
    return logits, AnnCache(records=records, masks=walk.masks, dtype=dtype)


def _check_input(network: Network, x: np.ndarray) -> np.ndarray:
    shape = tuple(network.input_shape)
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        what = f"{x.dtype} array" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"ANN input must be a float array (e.g. images / 255), got {what}")
    if x.ndim != 1 + len(shape) or x.shape[1:] != shape or x.shape[0] < 1:
        raise ValueError(f"ANN input must have shape (batch, *{shape}), got {x.shape}")
    return x.astype(network.dtype, copy=False)


class _Forward:
    """One forward pass: dispatch per layer type, keep what the backward needs."""

    def __init__(self, dtype: np.dtype, train: bool, rng: np.random.Generator | None) -> None:
        self.dtype, self.train, self.rng = dtype, train, rng
        self.masks: dict[str, np.ndarray] = {}

    def sequence(self, layers: list[Layer], x: np.ndarray) -> tuple[np.ndarray, list[tuple[Layer, object]]]:
        records = []
        for layer in layers:
            x, saved = self.layer(layer, x)
            records.append((layer, saved))
        return x, records

    def layer(self, layer: Layer, x: np.ndarray) -> tuple[np.ndarray, object]:
        # Readout before LIF: it is a LIF subclass but the identity here.
        if isinstance(layer, Readout):
            return x, None
        if isinstance(layer, LIF):
            return _relu(x), x > 0
        if isinstance(layer, (Conv2d, Linear)):
            if layer.weight is None:
                raise LayerError(layer, "has no weight; initialise the network first")
            w = layer.weight.astype(self.dtype, copy=False)
            if isinstance(layer, Linear):
                return linear(x, w, layer.bias), x
            return conv2d(x, w, layer.bias, stride=layer.stride, padding=layer.padding), x
        if isinstance(layer, SumPool):
            return sum_pool(x, layer.kernel_size, layer.stride), x.shape
        if isinstance(layer, (AvgPool, SpikingAvgPool)):
            return avg_pool(x, layer.kernel_size, layer.stride), x.shape
        if isinstance(layer, MaxPool):
            return max_pool(x, layer.kernel_size, layer.stride), x
        if isinstance(layer, Identity):
            return subsample(x, layer.stride), x.shape
        if isinstance(layer, Flatten):
            return x.reshape(x.shape[0], -1), x.shape
        if isinstance(layer, Dropout):
            return self.dropout(layer, x)
        if isinstance(layer, Residual):
            main, main_records = self.sequence(layer.main, x)
            skip, skip_saved = self.layer(layer.skip, x)
            merged = main + skip
            return _relu(merged), (main_records, skip_saved, merged > 0)
        raise LayerError(layer, f"has no ANN view; supported: {_SUPPORTED}")

    def dropout(self, layer: Dropout, x: np.ndarray) -> tuple[np.ndarray, object]:
        if not self.train or layer.p == 0:
            return x, None
        if self.rng is None:
            raise LayerError(layer, "training with dropout needs an rng to draw the keep-mask")
        keep = draw_dropout_mask(self.rng, x.shape[0], x.shape[1:], layer.p)
        self.masks[layer.name] = keep
        return apply_dropout(x, keep, layer.scale), keep


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x.dtype.type(0))


# ----------------------------------------------------------------- backward
def ann_backward(network: Network, cache: AnnCache, grad_logits: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of a loss with respect to every parameter, given ``dL/dlogits``.

    Walks the layers of :func:`ann_forward` in reverse with the adjoints of
    the module docstring. The gradient of the network input is not formed
    (the first synapse skips its transposed convolution).

    Parameters
    ----------
    network : Network
        The network of the forward pass, unchanged since.
    cache : AnnCache
        From :func:`ann_forward`.
    grad_logits : array, shape of the logits
        ``dL/dlogits``; computed in ``cache.dtype``.

    Returns
    -------
    dict
        ``{"conv1.weight": ..., "fc1.bias": ...}``: the keys, shapes and
        dtype of :func:`~eventsim.learning.parameters.parameters`.
    """
    expected = parameters(network)
    walk = _Backward(cache.dtype)
    g = np.asarray(grad_logits).astype(cache.dtype, copy=False)
    walk.sequence(cache.records, g, need_input=False)
    if set(walk.grads) != set(expected):
        raise LayerError(network, f"the cache does not belong to this network: gradients for {sorted(walk.grads)}, "
                         f"parameters {sorted(expected)}")
    return {key: walk.grads[key].astype(p.dtype, copy=False) for key, p in expected.items()}


class _Backward:
    """One backward pass: the adjoint of each layer, weight gradients into ``grads``."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.grads: dict[str, np.ndarray] = {}

    def sequence(self, records: list[tuple[Layer, object]], g: np.ndarray, need_input: bool) -> np.ndarray | None:
        # Layers before the first weighted one need no input gradient either.
        first_weighted = next((i for i, (layer, _) in enumerate(records) if _has_weights(layer)), len(records))
        for i in range(len(records) - 1, -1, -1):
            layer, saved = records[i]
            g = self.layer(layer, saved, g, need_input or i > first_weighted)
            if g is None:
                return None
        return g

    def layer(self, layer: Layer, saved: object, g: np.ndarray, need_input: bool) -> np.ndarray | None:
        if isinstance(layer, Readout):
            return g
        if isinstance(layer, LIF):
            return g * saved
        if isinstance(layer, Conv2d):
            return self.conv2d(layer, saved, g, need_input)
        if isinstance(layer, Linear):
            w = layer.weight.astype(self.dtype, copy=False)
            self.grads[f"{layer.name}.weight"] = g.T @ saved
            if layer.bias is not None:
                self.grads[f"{layer.name}.bias"] = g.sum(axis=0)
            return g @ w if need_input else None
        # The pooling adjoints are those of the dense gradient references; only the dtype is kept here.
        if isinstance(layer, SumPool):
            return window_adjoint(g, saved[-2:], layer.kernel_size, layer.stride, 1.0).astype(g.dtype, copy=False)
        if isinstance(layer, (AvgPool, SpikingAvgPool)):
            kh, kw = layer.kernel_size
            weight = 1.0 / (kh * kw)
            return window_adjoint(g, saved[-2:], layer.kernel_size, layer.stride, weight).astype(g.dtype, copy=False)
        if isinstance(layer, MaxPool):
            return max_pool_adjoint(g, saved, layer.kernel_size, layer.stride).astype(g.dtype, copy=False)
        if isinstance(layer, Identity):
            sh, sw = layer.stride
            if (sh, sw) == (1, 1):
                return g
            gx = np.zeros(saved, self.dtype)
            gx[..., ::sh, ::sw] = g
            return gx
        if isinstance(layer, Flatten):
            return g.reshape(saved)
        if isinstance(layer, Dropout):
            return g if saved is None else apply_dropout(g, saved, layer.scale)
        if isinstance(layer, Residual):
            main_records, skip_saved, positive = saved
            gz = g * positive
            main = self.sequence(main_records, gz, need_input)
            skip = self.layer(layer.skip, skip_saved, gz, need_input)
            return None if main is None or skip is None else main + skip
        raise LayerError(layer, f"has no ANN view; supported: {_SUPPORTED}")

    def conv2d(self, layer: Conv2d, x: np.ndarray, g: np.ndarray, need_input: bool) -> np.ndarray | None:
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        xpad = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)])
        # The forward's im2col view; rows and columns that fill no window get no gradient.
        cols = windows(xpad, (kh, kw), (sh, sw), "conv2d backward")  # (B, C, Ho, Wo, kh, kw)
        self.grads[f"{layer.name}.weight"] = np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3]))
        if layer.bias is not None:
            self.grads[f"{layer.name}.bias"] = g.sum(axis=(0, 2, 3))
        if not need_input:
            return None
        w = layer.weight.astype(self.dtype, copy=False)
        # taps[b, oy, ox, c, i, j] = sum_o g[b, o, oy, ox] W[o, c, i, j]: one BLAS product,
        # then each tap is added at its strided offset (the transposed convolution).
        taps = np.tensordot(g, w, axes=([1], [0]))
        taps = np.moveaxis(taps, 3, 1)  # (B, C, Ho, Wo, kh, kw)
        ho, wo = g.shape[2:]
        gpad = np.zeros(xpad.shape, self.dtype)
        for i in range(kh):
            for j in range(kw):
                gpad[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += taps[..., i, j]
        return gpad[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]


def _has_weights(layer: Layer) -> bool:
    # A residual block is counted as weighted: its skip may be a Conv2d even when its main path has none.
    return isinstance(layer, (Conv2d, Linear, Residual))


# ----------------------------------------------------------------- training
def _loss(loss: str | Loss) -> Loss:
    out = loss_from_config(loss) if isinstance(loss, str) else loss
    if not isinstance(out, Loss) or out.reads != "readout":
        raise OptionError(f"the ANN view trains on its logits: loss must be a readout loss such as "
                          f"'cross_entropy' or 'lee_mse', got {loss!r}")
    return out


def _check_data(network: Network, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shape = tuple(network.input_shape)
    if not isinstance(images, np.ndarray) or images.ndim != 1 + len(shape) or images.shape[1:] != shape:
        got = images.shape if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"images must have shape (N, *{shape}), got {got}"
                         + ("; add the channel axis, e.g. images[:, None]" if got[1:] == shape[1:] else ""))
    classes = int(np.prod(network.output_shape))
    return check_labels(labels, images.shape[0], classes)


def train_ann(
    network: Network,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    optimizer: Optimizer,
    rng: np.random.Generator,
    loss: str | Loss = "cross_entropy",
    progress: TextIO | str | None = "stderr",
) -> list[dict]:
    """Train the ANN view of ``network`` by minibatch backprop, updating its weights in place.

    Each epoch visits the samples in the order ``rng.permutation(N)``, in
    batches of ``batch_size`` (the last one smaller); per batch: forward in
    training mode (dropout masks from ``rng``), the loss on the logits
    (mean over the batch), :func:`ann_backward`, ``optimizer.step``.

    Parameters
    ----------
    network : Network
    images : float array, shape ``(N, *network.input_shape)``
        E.g. MNIST pixels / 255 with a channel axis.
    labels : int array, shape ``(N,)``
    epochs, batch_size : int
    optimizer : Optimizer
        E.g. ``Adam(1e-3)``; its state carries over between calls.
    rng : numpy Generator
        Shuffling and dropout.
    loss : str or Loss
        A loss on the logits (``"cross_entropy"``: ``mean_b logsumexp(z_b) - z_b[y_b]``).
    progress : text stream, "stderr" or None
        Where the progress bar goes (:func:`eventsim.progress.progress_bar`; None: silent).

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss`` and ``accuracy`` (means over the
        epoch's training batches, in training mode), ``seconds``.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise OptionError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise OptionError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(rng, np.random.Generator):
        raise OptionError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    loss_fn = _loss(loss)
    labels = _check_data(network, images, labels)
    params = parameters(network)
    n = images.shape[0]
    history = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(n)
        # in a with block: an interrupted run ends the bar's line before its error message is printed
        with progress_bar(n, f"ann epoch {epoch}/{epochs}", progress) as bar:
            total, correct = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                logits, cache = ann_forward(network, images[idx], train=True, rng=rng)
                out = logits.reshape(len(idx), -1)
                value, grad = loss_fn.value_and_grad(out.astype(np.float64), labels[idx])
                grads = ann_backward(network, cache, grad.reshape(logits.shape))
                optimizer.step(params, grads)
                total += float(value) * len(idx)
                correct += int(np.sum(np.argmax(out, axis=1) == labels[idx]))
                bar.set_postfix({"loss": total / (start + len(idx)), "acc": 100 * correct / (start + len(idx))},
                                refresh=False)
                bar.update(len(idx))
            record = {"epoch": epoch, "loss": total / n, "accuracy": correct / n,
                      "seconds": time.perf_counter() - started}
            bar.set_postfix({"loss": record["loss"], "acc": 100 * record["accuracy"]}, refresh=False)
        history.append(record)
    return history


def ann_accuracy(network: Network, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of ``images`` whose largest logit (first on ties) is the label; no dropout."""
    labels = _check_data(network, images, labels)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise OptionError(f"batch_size must be an int >= 1, got {batch_size!r}")
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits, _ = ann_forward(network, images[start : start + batch_size])
        predicted = np.argmax(logits.reshape(logits.shape[0], -1), axis=1)
        correct += int(np.sum(predicted == labels[start : start + batch_size]))
    return correct / images.shape[0]
