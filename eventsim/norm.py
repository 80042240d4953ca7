"""Input-current batch normalisation of neuron layers (Ledinauskas et al. 2020, Sec. 2.6).

docs/semantics.md, "Input-current batch norm". A :class:`CurrentNorm` on a
neuron layer (``LIF(..., norm=CurrentNorm())``) replaces the layer's total
input current ``I`` at a step (every synapse into it, bias included; in a
residual block main path plus skip) by a per-channel affine map of it, and
the neuron integrates the result::

    I'[t] = k * I[t] + c,      k = a / sqrt(var + eps),   c = b - mean * k
    U[t]  = lam * R(U[t-1], s[t-1]) + g * I'[t]

with ``a`` (``scale``, initially 1) and ``b`` (``shift``, initially 0)
trainable, ``k`` and ``c`` computed in float64 and rounded once to the run's
dtype. Ledinauskas et al. apply batch normalisation "on the input currents to
every neuron layer", after Laurent et al. 2016; the statistics axes, eps,
momentum and initial values are not given in the paper, so they are options
here:

- a training run (``Network.run(train=True)``) takes ``mean`` and the biased
  ``var`` of I per channel over batch x time x positions (``"batch_time"``,
  the default: time folded into the batch) or over batch x positions at each
  step separately (``"batch"``: one ``(k, c)`` per step);
- an inference run takes ``running_mean`` and ``running_var``.

A run never changes the running statistics: a training run records its batch
statistics in ``RunResult.norm_stats`` and :func:`update_running_statistics`
applies ``running = (1 - momentum) * running + momentum * stat``, with the
unbiased variance ``n / (n - 1) * var`` (PyTorch's ``BatchNorm`` convention;
for ``"batch"`` the average over steps of the per-step statistics).

The batch statistics couple the samples of a batch, which otherwise run
independently in parallel (:mod:`eventsim.threads`). Each sample therefore
runs as a generator that yields its partial sums at every point where a
batch-wide sum is needed and receives the batch total back;
:func:`in_lockstep` advances all samples to the next such point, sums their
partial sums in sample order and hands the total on, so results are
bit-identical for any number of threads.

:func:`eventsim.folding.fold_norms` turns the inference-mode norms into the
weights and bias of the synapses that feed them (for export and for networks
without norms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Sequence

import numpy as np

from eventsim.errors import LayerError, OptionError, check_choice
from eventsim.finite import in_dtype
from eventsim.threads import ordered_map

#: How a training run takes the statistics: over batch x time x positions, or per step over batch x positions.
STATS = ("batch_time", "batch")
#: The arrays of a norm: trainable (``parameters``) and not (``statistics``).
TRAINABLE = ("scale", "shift")
RUNNING = ("running_mean", "running_var")


def _float(owner: object, what: str, value: object, *, positive: bool = False, unit: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionError(f"{_label(owner)}: {what} must be a number, got {value!r}")
    value = float(value)
    bad = not np.isfinite(value) or (positive and value <= 0) or (unit and not 0 <= value <= 1)
    if bad:
        allowed = "in [0, 1]" if unit else "positive and finite"
        raise OptionError(f"{_label(owner)}: {what} must be {allowed}, got {value!r}")
    return value


def _label(norm: object) -> str:
    name = getattr(norm, "name", None)
    return f"layer {name!r} (CurrentNorm)" if name else "CurrentNorm"


class CurrentNorm:
    """Per-channel batch normalisation of a neuron layer's input current.

    Parameters
    ----------
    stats : {"batch_time", "batch"}
        The axes of a training run's statistics: batch x time x positions
        (one mean and variance per channel for the whole run), or batch x
        positions at every step (one per channel and step).
    eps : float
        Added to the variance, > 0.
    momentum : float
        Weight of a batch statistic in the running average, in [0, 1].

    Attributes
    ----------
    scale, shift, running_mean, running_var : (C,) arrays or None
        a, b and the running statistics, in the network's dtype; created
        (1, 0, 0, 1) when the network that holds the layer is built, with
        C the layer's channels (its features, for a flat layer). Their
        setters check shape, dtype and finiteness (and ``running_var >= 0``).
    name : str or None
        ``"<layer>.norm"`` once the network has named the layer.
    """

    kind = "norm"

    def __init__(self, stats: str = "batch_time", *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        self.name: str | None = None
        check_choice("CurrentNorm stats", stats, STATS)
        self.stats = stats
        self.eps = _float(self, "eps", eps, positive=True)
        self.momentum = _float(self, "momentum", momentum, unit=True)
        self._arrays: dict[str, np.ndarray | None] = dict.fromkeys(TRAINABLE + RUNNING)

    def __repr__(self) -> str:
        return f"CurrentNorm(stats={self.stats!r}, eps={self.eps!r}, momentum={self.momentum!r})"

    # ------------------------------------------------------------ arrays
    @property
    def channels(self) -> int | None:
        """C once the norm is sized, else None."""
        scale = self._arrays["scale"]
        return None if scale is None else scale.shape[0]

    def _get(self, what: str) -> np.ndarray | None:
        return self._arrays[what]

    def _set(self, what: str, value: np.ndarray) -> None:
        if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float64) or value.ndim != 1:
            described = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise LayerError(self, f"{what} must be a 1-D float32 or float64 array, got {described}")
        held = self._arrays["scale"]
        if held is not None and (value.shape != held.shape or value.dtype != held.dtype):
            raise LayerError(self, f"{what} must be {held.dtype} of shape {held.shape}, got {value.dtype} {value.shape}")
        bad = np.argwhere(~np.isfinite(value))
        if bad.size:
            raise LayerError(self, f"{what} is not finite at index {int(bad[0, 0])} (value {value[bad[0, 0]]})")
        if what == "running_var" and np.any(value < 0):
            raise LayerError(self, f"running_var must be >= 0, got {value.min()!r} at index {int(value.argmin())}")
        self._arrays[what] = np.array(value, copy=True)

    scale = property(lambda self: self._get("scale"), lambda self, v: self._set("scale", v),
                     doc="a, the trainable factor, (C,).")
    shift = property(lambda self: self._get("shift"), lambda self, v: self._set("shift", v),
                     doc="b, the trainable offset, (C,).")
    running_mean = property(lambda self: self._get("running_mean"), lambda self, v: self._set("running_mean", v),
                            doc="The running mean of I per channel, (C,).")
    running_var = property(lambda self: self._get("running_var"), lambda self, v: self._set("running_var", v),
                           doc="The running (unbiased) variance of I per channel, (C,).")

    def bind(self, layer: Any, channels: int, dtype: np.dtype) -> None:
        """Name the norm after ``layer`` and size it to ``channels`` in ``dtype`` (when the network is built).

        Creates the arrays the first time; afterwards checks that they fit.
        """
        name = f"{layer.name}.norm"
        if self.name not in (None, name):
            raise LayerError(self, f"is already the norm of another layer; give layer {layer.name!r} its own CurrentNorm")
        self.name = name
        initial = {"scale": 1, "shift": 0, "running_mean": 0, "running_var": 1}
        for what in TRAINABLE + RUNNING:
            arr = self._arrays[what]
            if arr is None:
                self._arrays[what] = np.full(channels, initial[what], dtype)
            elif arr.shape != (channels,) or arr.dtype != dtype:
                raise LayerError(self, f"holds a {arr.dtype} {what} of shape {arr.shape}, but the layer has "
                                       f"{channels} channels and the network runs in {dtype}")


# ================================================================ statistics
@dataclass
class NormStatistics:
    """The batch statistics of a training run at one normalised layer (``RunResult.norm_stats``).

    Attributes
    ----------
    stats : "batch_time" or "batch"
    mean, var : float64 arrays, (C,) or (T, C) for "batch"
        The mean and the biased variance of I per channel (and step).
    count : int
        n, the number of values each statistic is taken over: batch x T x
        positions, or batch x positions.
    currents : ``(batch, T, *shape)`` array
        The raw input current I of every sample and step (C order), which
        the backward pass through the norm reads.
    """

    stats: str
    mean: np.ndarray
    var: np.ndarray
    count: int
    currents: np.ndarray


def affine(scale: np.ndarray, shift: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float,
           dtype: np.dtype, owner: object) -> tuple[np.ndarray, np.ndarray]:
    """``k = a / sqrt(var + eps)`` and ``c = b - mean * k`` in float64, each rounded once to ``dtype``.

    ``mean`` and ``var`` may carry a leading step axis ("batch" statistics);
    the results broadcast like them. A k or c that is finite in float64 but
    not in ``dtype`` (a large scale over a tiny variance) raises
    :class:`LayerError` naming ``owner``, the norm (eventsim.finite).
    """
    k = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    c = np.asarray(shift, np.float64) - np.asarray(mean, np.float64) * k
    return (in_dtype(owner, "factor k = scale / sqrt(var + eps)", k, dtype),
            in_dtype(owner, "offset c = shift - mean * k", c, dtype))


def channel_sums(values: np.ndarray, channels: int, per_step: bool) -> np.ndarray:
    """Float64 sums per channel of a ``(T, P*C)`` channel-last array: ``(C,)``, or ``(T, C)`` per step."""
    steps = values.shape[0]
    per_position = values.reshape(steps, -1, channels).sum(axis=1, dtype=np.float64)
    return per_position if per_step else per_position.sum(axis=0)


def unbiased_average(stat: NormStatistics) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the unbiased variance ``n / (n - 1) * var`` of a run, averaged over steps for "batch"."""
    var = stat.var * (stat.count / (stat.count - 1))
    if stat.stats == "batch":
        return stat.mean.mean(axis=0), var.mean(axis=0)
    return stat.mean, var


def normed_layers(network: Any) -> list:
    """The neuron layers of ``network`` that carry a norm, in network order."""
    return [layer for layer in network.walk() if getattr(layer, "norm", None) is not None]


def refuse_norms(network: Any, what: str) -> None:
    """:class:`LayerError` naming the first normed layer of ``network``: ``what`` does not handle norms.

    Input-current batch norm has an exact backward for the ``bptt`` rule
    only; the other rules, the dense reference gradients and the ANN view
    refuse a network with one rather than ignore it.
    """
    normed = normed_layers(network)
    if normed:
        raise LayerError(normed[0], "input-current batch norm has an exact backward for bptt only; "
                                    f"{what} does not handle it")


def update_running_statistics(network: Any, result: Any) -> None:
    """``running = (1 - momentum) * running + momentum * stat`` for every norm of ``network``.

    ``stat`` is the training run's mean and unbiased variance
    (:func:`unbiased_average`); computed in float64 and stored in the
    norm's dtype. Does nothing for a network without norms. The same as
    ``apply_running_statistics(network, [run_moments(network, result)])``.

    Raises
    ------
    LayerError
        ``result`` has no statistics for a normalised layer (it was not a
        training run of this network), or a statistic was taken over a single
        value, which has no unbiased variance.
    """
    apply_running_statistics(network, [run_moments(network, result)])


def run_moments(network: Any, result: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The mean and unbiased variance (:func:`unbiased_average`) a training run took at each norm, by layer name.

    Small (a few numbers per channel): what a chunk of a batch computed on
    another process sends back for the running statistics. Raises
    :class:`LayerError` as :func:`update_running_statistics` does.
    """
    moments = {}
    for layer in normed_layers(network):
        norm = layer.norm
        stat = result.norm_stats.get(layer.name)
        if stat is None:
            raise LayerError(norm, "the run holds no batch statistics for this layer; "
                                   "update the running statistics from a training run (train=True) of this network")
        if stat.count < 2:
            raise LayerError(norm, f"the batch statistics were taken over {stat.count} value per channel; "
                                   "an unbiased variance needs at least 2 (a larger batch, more steps or positions)")
        moments[layer.name] = unbiased_average(stat)
    return moments


def apply_running_statistics(network: Any, moments: Sequence[dict[str, tuple[np.ndarray, np.ndarray]]]) -> None:
    """One momentum update of every norm's running statistics from the runs of a batch's chunks.

    ``stat`` is the average of the chunks' :func:`run_moments`, taken in
    chunk order in float64: the statistics of a batch trained in chunks
    (each chunk normalised by its own batch statistics). One chunk: its own.
    """
    updates = {}
    for layer in normed_layers(network):
        norm = layer.norm
        mean, var = (sum(np.asarray(m[layer.name][i], np.float64) for m in moments) / len(moments) for i in (0, 1))
        m = norm.momentum
        updates[norm] = tuple(((1 - m) * np.asarray(running, np.float64) + m * batch).astype(running.dtype)
                              for running, batch in ((norm.running_mean, mean), (norm.running_var, var)))
    for norm, (mean, var) in updates.items():
        norm.running_mean, norm.running_var = mean, var


# ================================================================== lockstep
Task = Generator[np.ndarray, np.ndarray, Any]


def _advance(task: Task, reply: np.ndarray | None) -> tuple[bool, Any]:
    try:
        return False, task.send(reply)
    except StopIteration as stop:
        return True, stop.value


def in_lockstep(tasks: Sequence[Task], order: Sequence[int] | None = None) -> list:
    """Run per-sample generators in parallel, meeting wherever they need a batch-wide sum.

    Each task yields a float64 array (its partial sums) and receives the sum
    of all tasks' arrays, taken in task order, so the result does not depend
    on the number of threads (:func:`eventsim.threads.ordered_map`, whose
    threads take the tasks in ``order``). All tasks must meet the same
    synchronisation points. Returns the tasks' return values in order; a
    task without synchronisation points simply runs to its end.
    """
    tasks = list(tasks)
    replies: list = [None] * len(tasks)
    while True:
        states = list(ordered_map(lambda pair: _advance(*pair), list(zip(tasks, replies, strict=True)), order))
        finished = [done for done, _ in states]
        if all(finished):
            return [value for _, value in states]
        if any(finished):
            raise RuntimeError("the samples of a batch reached different synchronisation points")
        total = np.array(states[0][1], np.float64, copy=True)
        for _, partial in states[1:]:
            total += partial
        replies = [total] * len(tasks)


def batch_statistics(cur: np.ndarray, norm: CurrentNorm, count: int) -> Generator[np.ndarray, np.ndarray, tuple]:
    """The batch mean and biased variance of a sample's ``(T, P*C)`` channel-last currents (a lockstep task step).

    Two meetings: the batch sum gives the mean, then the batch sum of squared
    deviations from it gives the variance, which keeps the precision that
    ``E[I^2] - E[I]^2`` would lose when the mean is large against the
    spread. ``count`` is n, the values per statistic over the whole batch.
    """
    channels = norm.channels
    per_step = norm.stats == "batch"
    mean = (yield channel_sums(cur, channels, per_step)) / count
    shape = (cur.shape[0], -1, channels)
    deviation = cur.reshape(shape) - (mean[:, None, :] if per_step else mean)
    var = (yield channel_sums(np.square(deviation, dtype=np.float64).reshape(cur.shape), channels, per_step)) / count
    return mean, var
