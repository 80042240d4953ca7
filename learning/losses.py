"""Losses on a network's output, with their gradient for the gradient rules.

docs/semantics.md, "Losses". Each loss sums over classes and averages over the
batch, and hands the rule the gradient with respect to what it reads: the
readout ``U_L[T] / T`` of a :class:`~eventsim.layers.Readout` layer, or the
spike counts of a spiking last layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from eventsim.errors import OptionError
from eventsim.learning.configs import from_config
from eventsim.layers import Readout, Residual
from eventsim.network import Network, RunResult


def check_labels(labels: object, batch: int, classes: int) -> np.ndarray:
    """Integer class labels, one per sample, in ``[0, classes)``."""
    arr = np.asarray(labels)
    if arr.shape != (batch,) or not np.issubdtype(arr.dtype, np.integer):
        raise OptionError(f"labels must be {batch} integers (one per sample), got {arr.dtype} array of shape {arr.shape}")
    bad = (arr < 0) | (arr >= classes)
    if bad.any():
        raise OptionError(f"label {int(arr[bad][0])} is outside [0, {classes}) for the network's {classes} outputs")
    return arr.astype(np.int64)


def one_hot(labels: np.ndarray, classes: int, dtype: np.dtype) -> np.ndarray:
    out = np.zeros((labels.shape[0], classes), dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def network_output(network: Network, result: RunResult, reads: str) -> np.ndarray:
    """The readout (``reads="readout"``) or the last layer's spike counts (``"counts"``), ``(B, classes)``."""
    last = network.layers[-1]
    if reads == "readout":
        if result.output is None:
            raise OptionError("this loss reads the readout, but the network does not end in a Readout layer")
        out = result.output
    else:
        if isinstance(last, Readout):
            raise OptionError("this loss reads spike counts, but the network ends in a Readout that never spikes")
        name = last.neuron.name if isinstance(last, Residual) else last.name
        if "counts" not in result.recorded:
            raise OptionError("this loss reads spike counts: run the network with record=('counts', ...)")
        out = result.counts[name]
    if out.ndim != 2:
        raise OptionError(f"the network output must be flat (batch, classes), got shape {out.shape}")
    return out


@dataclass(frozen=True)
class Loss:
    """Base class: ``loss(network, result, labels) -> (value, grad_output)``.

    ``value`` is a Python float; ``grad_output`` has the shape of the output
    read and the network's dtype, ready for :meth:`Rule.gradients`.
    """

    name: ClassVar[str] = ""
    reads: ClassVar[str] = "readout"  #: "readout" or "counts"

    def __call__(self, network: Network, result: RunResult, labels: object, *,
                 batch: int | None = None) -> tuple[float, np.ndarray]:
        """``(L, dL/dout)`` with ``L = sum_b l_b / batch`` over the samples of ``result``.

        ``batch`` is the size of the batch the mean is taken over: the
        samples of ``result`` by default; a chunk of a larger batch passes
        the whole batch's size, so that the chunks' gradients add up to the
        batch's (:mod:`eventsim.learning.chunks`).
        """
        values, grad = self.sample_losses(network, result, labels, batch=batch)
        return float(np.sum(values) / (len(values) if batch is None else batch)), grad

    def sample_losses(self, network: Network, result: RunResult, labels: object, *,
                      batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The per-sample losses ``l_b`` (float64) and ``dL/dout`` for ``L = sum_b l_b / batch``, in the network's dtype."""
        out = network_output(network, result, self.reads)
        labels = check_labels(labels, out.shape[0], out.shape[1])
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer))
                                  or batch < out.shape[0]):
            raise OptionError(f"batch must be an integer >= the {out.shape[0]} samples of the run, got {batch!r}")
        values, grad = self.terms(out.astype(np.float64), labels)
        return values, (grad / (out.shape[0] if batch is None else batch)).astype(out.dtype)

    def value_and_grad(self, out: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        """The batch mean ``sum_b l_b / B`` and its gradient ``dl_b/dout / B`` on a float64 output."""
        values, grad = self.terms(out, labels)
        return float(np.sum(values) / out.shape[0]), grad / out.shape[0]

    def terms(self, out: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per sample ``b``: ``l_b`` (shape (B,)) and ``dl_b/dout[b]`` (shape (B, K)), on a float64 output."""
        raise NotImplementedError

    def predictions(self, network: Network, result: RunResult) -> np.ndarray:
        """Predicted classes: argmax over the output read, the first class on ties."""
        return np.argmax(network_output(network, result, self.reads), axis=1)

    def config(self) -> dict:
        """JSON-ready description; :func:`loss_from_config` inverts it."""
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class LeeMSE(Loss):
    """``L = mean_b 0.5 * sum_k (out[b,k] - onehot[b,k])^2`` on the readout (Lee et al. 2020, eqs. 8-10).

    ``dL/dout = (out - onehot) / B``; with ``D = dL/dout / T`` at the readout
    this is eq. 23's ``e / T`` per sample, averaged over the batch.
    """

    name: ClassVar[str] = "lee_mse"

    def terms(self, out, labels):
        err = out - one_hot(labels, out.shape[1], out.dtype)
        return 0.5 * np.sum(err * err, axis=1), err


@dataclass(frozen=True)
class CrossEntropy(Loss):
    """``L = mean_b (logsumexp_k out[b,k] - out[b, label])`` on the readout; ``dL/dout = (softmax - onehot) / B``."""

    name: ClassVar[str] = "cross_entropy"

    def terms(self, out, labels):
        shifted = out - out.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=1))
        probs = np.exp(shifted - log_z[:, None])
        return log_z - shifted[np.arange(out.shape[0]), labels], probs - one_hot(labels, out.shape[1], out.dtype)


@dataclass(frozen=True)
class SpikeCountMSE(Loss):
    """``L = mean_b 0.5 * sum_k (count[b,k] - target[b,k])^2`` on the last layer's spike counts.

    After Syed et al. 2021, eq. 9 (there on "fired at least once"); target is
    ``on_count`` spikes for the label and ``off_count`` for the other classes.
    ``dL/dcount = (count - target) / B``.
    """

    on_count: float
    off_count: float = 0.0
    name: ClassVar[str] = "spike_count_mse"
    reads: ClassVar[str] = "counts"

    def __post_init__(self):
        for what in ("on_count", "off_count"):
            v = getattr(self, what)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise OptionError(f"spike_count_mse: {what} must be a finite number >= 0, got {v!r}")

    def terms(self, out, labels):
        target = np.full(out.shape, self.off_count, out.dtype)
        target[np.arange(out.shape[0]), labels] = self.on_count
        err = out - target
        return 0.5 * np.sum(err * err, axis=1), err


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (LeeMSE, CrossEntropy, SpikeCountMSE)}


def loss_from_config(config: dict | str) -> Loss:
    """Build a loss from its name or :meth:`Loss.config`."""
    return from_config("loss", LOSSES, config)
