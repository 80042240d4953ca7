"""Gradient flow across depth, and the surrogate slope that balances it.

Ledinauskas et al. 2020 (Sec. 2.5, Fig. 3): in the backward pass of a deep
spiking network the variance of the gradient is multiplied, layer after
layer, by about ``n var[w] <sigma(U - theta)^2>`` (fan-out n, surrogate
sigma), so gradients explode towards the input when the surrogate is wide
(small slope gamma) and vanish when it is narrow (large gamma). They measure
it as the mean gradient magnitude of each layer and tune gamma by bisection
until the first half of the layers gets as much gradient as the second half.

eventsim's reading (the paper leaves the details open; extraction Sec. 2.3):

- the *layers* are the weighted layers (convolutions, fully connected
  layers, residual skip convolutions) in network order, and a layer's
  *magnitude* is the mean of ``|dL/dW|`` over its weights on one batch;
- ``ratio = mean(first half) / mean(second half)``, the halves being the
  first and the last ``floor(n/2)`` layers (the middle one of an odd count
  belongs to neither);
- the slope is the surrogate's width parameter (:data:`SLOPES`); bisection
  works on ``log(slope)`` against ``log(ratio)``, with the same batch and
  dropout masks at every evaluation, so the ratio is a deterministic function
  of the slope.

On a cluster (docs/cluster.md) the search stays the same sequence of
evaluations, each chosen from the ratios before it; what the workers add is
speculation: with each slope the search asks for, they also compute those it
may ask for next (the bisection points below the current bracket, the next
widening of either end), and a later request for one of them is answered at
once. Since the ratio is a deterministic function of the slope, the tuning
(slope, ratio, history, ``converged``) is the one found without a cluster,
only sooner: about ``log2(workers + 1)`` bisection steps per round instead
of one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from eventsim.errors import OptionError
from eventsim.events import Events
from eventsim.layers import Weighted
from eventsim.learning.losses import Loss
from eventsim.learning.rules import BPTT, Rule
from eventsim.learning.surrogates import Surrogate
from eventsim.network import Network

#: The parameter that sets each surrogate's slope (its inverse width).
SLOPES = {"fast_sigmoid": "c", "arctan": "alpha", "sigmoid": "alpha"}


@dataclass(frozen=True)
class GradientFlow:
    """Per-layer gradient magnitudes of one batch and their first-half / second-half ratio.

    Attributes
    ----------
    layers : tuple of str
        Weighted layers in network order.
    magnitudes : tuple of float
        ``mean |dL/dW|`` of each layer's weights.
    ratio : float
        Mean magnitude of the first half of the layers over that of the
        second half (inf when the second half gets no gradient, nan when no
        layer does).
    """

    layers: tuple[str, ...]
    magnitudes: tuple[float, ...]
    ratio: float

    def table(self) -> str:
        """The magnitudes as aligned text, one layer per line, then the ratio."""
        width = max(len(name) for name in self.layers)
        half = len(self.layers) // 2
        lines = [f"{'layer'.ljust(width)}  mean |dL/dW|  half"]
        for i, (name, mag) in enumerate(zip(self.layers, self.magnitudes)):
            side = "first" if i < half else ("second" if i >= len(self.layers) - half else "-")
            lines.append(f"{name.ljust(width)}  {mag:12.4e}  {side}")
        lines.append(f"first-half / second-half ratio: {self.ratio:.4g}")
        return "\n".join(lines)


def flow_ratio(magnitudes: list[float] | tuple[float, ...] | np.ndarray) -> float:
    """``mean(first floor(n/2)) / mean(last floor(n/2))`` of per-layer magnitudes (n >= 2)."""
    mags = np.asarray(magnitudes, np.float64)
    half = mags.shape[0] // 2
    if half < 1:
        raise OptionError(f"a gradient-flow ratio needs at least 2 weighted layers, got {mags.shape[0]}")
    first, second = mags[:half].mean(), mags[-half:].mean()
    if second == 0:
        return math.nan if first == 0 else math.inf
    return float(first / second)


def gradient_flow(
    network: Network,
    events: Events,
    labels: np.ndarray,
    *,
    rule: Rule,
    loss: Loss,
    seed: int = 0,
) -> GradientFlow:
    """Measure the gradient flow of ``network`` on one batch.

    A training run (dropout on, masks from ``numpy.random.default_rng(seed)``)
    and the gradients of ``loss`` by ``rule``; the weights are not changed.
    """
    records = set(rule.records) | ({"counts"} if loss.reads == "counts" else set())
    result = network.run(events, record=records, train=True, rng=np.random.default_rng(seed))
    _, grad_output = loss(network, result, labels)
    grads = rule.gradients(network, events, result, grad_output)
    layers = tuple(layer.name for layer in network.walk() if isinstance(layer, Weighted))
    if len(layers) < 2:
        raise OptionError(f"gradient flow needs at least 2 weighted layers; the network has {len(layers)}")
    mags = tuple(float(np.mean(np.abs(grads[f"{name}.weight"]), dtype=np.float64)) for name in layers)
    return GradientFlow(layers, mags, flow_ratio(mags))


def ratio_at_slope(network: Network, events: Events, labels: np.ndarray, loss: Loss, surrogate: Surrogate,
                   detach_reset: bool, seed: int, slope: float) -> float:
    """The gradient-flow ratio with ``surrogate`` at ``slope`` (one evaluation of :func:`tune_slope`)."""
    rule = BPTT(surrogate=with_slope(surrogate, slope), detach_reset=detach_reset)
    return gradient_flow(network, events, labels, rule=rule, loss=loss, seed=seed).ratio


class _SlopeRatios:
    """The ratio at every slope :func:`tune_slope` asks for, each computed once: here, or on a cluster's
    workers together with slopes the search may ask for next (module docstring)."""

    def __init__(self, cluster: Any, network: Network, events: Events, labels: np.ndarray, loss: Loss,
                 surrogate: Surrogate, detach_reset: bool, seed: int) -> None:
        self.cluster = cluster
        self.known: dict[float, float] = {}
        shared = (network, events, labels) if cluster is None else tuple(cluster.share(x) for x in
                                                                          (network, events, labels))
        self.arguments = (*shared, loss, surrogate, detach_reset, seed)

    def __call__(self, slope: float, ahead: Sequence[float] = ()) -> float:
        if slope in self.known:
            return self.known[slope]
        if self.cluster is None:
            self.known[slope] = ratio_at_slope(*self.arguments, slope)
            return self.known[slope]
        spare = max(0, self.cluster.alive() - 1)
        wanted = [slope] + [s for s in dict.fromkeys(ahead) if s != slope and s not in self.known][:spare]
        ratios = self.cluster.map(ratio_at_slope, [(*self.arguments, s) for s in wanted], what="slope evaluation")
        self.known.update(zip(wanted, ratios))
        return self.known[slope]


def _bisections(lo: float, hi: float, depth: int = 5) -> list[float]:
    """The slopes bisection of ``[lo, hi]`` may evaluate in its next ``depth`` steps, nearest first.

    Computed as :func:`tune_slope` computes them (``sqrt(lo * hi)``), so
    they are the very floats it asks for.
    """
    out, level = [], [(lo, hi)]
    for _ in range(depth):
        below = []
        for a, b in level:
            mid = math.sqrt(a * b)
            out.append(mid)
            below += [(mid, b), (a, mid)]
        level = below
    return out


def with_slope(surrogate: Surrogate, slope: float) -> Surrogate:
    """``surrogate`` with its slope parameter (:data:`SLOPES`) set to ``slope``."""
    param = SLOPES.get(surrogate.name)
    if param is None:
        raise OptionError(
            f"surrogate {surrogate.name!r} has no slope parameter to tune; use one of {sorted(SLOPES)}"
        )
    return dataclasses.replace(surrogate, **{param: float(slope)})


def slope_of(surrogate: Surrogate) -> float:
    """The value of ``surrogate``'s slope parameter."""
    with_slope(surrogate, 1.0)  # refuses a surrogate without a slope parameter, naming it
    return float(getattr(surrogate, SLOPES[surrogate.name]))


@dataclass(frozen=True)
class SlopeTuning:
    """The result of :func:`tune_slope`.

    Attributes
    ----------
    surrogate : Surrogate
        The surrogate with the slope found.
    slope, ratio : float
        That slope and the ratio it gives.
    history : tuple of (slope, ratio)
        Every evaluation, in order.
    converged : bool
        ``|ratio - 1| <= tolerance``.
    """

    surrogate: Surrogate
    slope: float
    ratio: float
    history: tuple[tuple[float, float], ...]
    converged: bool


def tune_slope(
    network: Network,
    events: Events,
    labels: np.ndarray,
    *,
    loss: Loss,
    surrogate: Surrogate,
    detach_reset: bool = True,
    bracket: tuple[float, float] = (1.0, 100.0),
    limits: tuple[float, float] = (1e-3, 1e5),
    tolerance: float = 0.1,
    max_evaluations: int = 40,
    seed: int = 0,
    progress: Callable[[float, float], None] | None = None,
    cluster: Any = None,
) -> SlopeTuning:
    """Bisect the surrogate's slope until the gradient-flow ratio is 1 within ``tolerance``.

    Ledinauskas et al. 2020, Sec. 2.5: gamma too small makes gradients
    explode (ratio > 1), too large makes them vanish (ratio < 1). The
    bracket starts at ``bracket`` and widens tenfold on the side that does
    not yet straddle ratio 1, within ``limits``; then bisection on
    ``log(slope)`` (the ratio changes by orders of magnitude over the range).
    The ratio is assumed monotone in the slope in either direction.

    Parameters
    ----------
    network, events, labels
        The network (weights as they are: usually at initialisation) and one
        batch of training data.
    loss : Loss
    surrogate : Surrogate
        The surrogate whose slope is tuned (:data:`SLOPES`); its other
        parameters are kept.
    detach_reset : bool
        Of the ``bptt`` rule used.
    tolerance : float
        Stop when ``|ratio - 1| <= tolerance``.
    max_evaluations : int
        Gradient evaluations allowed; the best slope found is returned with
        ``converged=False`` when they run out.
    seed : int
        Dropout masks of every evaluation (the same each time).
    progress : callable, optional
        Called with (slope, ratio) after every evaluation.
    cluster : eventsim.cluster.Cluster, optional
        Evaluate on its workers, several slopes the search may need at once:
        the same tuning as without it, in fewer rounds (module docstring).

    Raises
    ------
    OptionError
        Bad options, or no slope within ``limits`` brings the ratio to 1
        (the message gives the ratios at both limits).
    """
    lo, hi = (float(v) for v in bracket)
    lo_lim, hi_lim = (float(v) for v in limits)
    if not (0 < lo_lim <= lo < hi <= hi_lim and math.isfinite(hi_lim)):
        raise OptionError(f"need 0 < limits[0] <= bracket[0] < bracket[1] <= limits[1] < inf, "
                          f"got bracket {bracket!r}, limits {limits!r}")
    if not 0 < tolerance < 1:
        raise OptionError(f"tolerance must be in (0, 1), got {tolerance!r}")
    with_slope(surrogate, lo)  # a surrogate without a slope is refused before any gradient is computed
    history: list[tuple[float, float]] = []
    ratios = _SlopeRatios(cluster, network, events, labels, loss, surrogate, detach_reset, seed)

    def evaluate(slope: float, ahead: Sequence[float] = ()) -> float:
        """The ratio at ``slope``, recorded; ``ahead``: the slopes the search may ask for next."""
        ratio = ratios(slope, ahead)
        history.append((slope, ratio))
        if progress is not None:
            progress(slope, ratio)
        return ratio

    def side(ratio: float) -> int:
        """+1 above 1 (explodes), -1 below (vanishes), 0 within tolerance; nan (no gradient) as vanishing."""
        if abs(ratio - 1) <= tolerance:
            return 0
        return 1 if ratio > 1 else -1

    def result(slope: float, ratio: float) -> SlopeTuning:
        return SlopeTuning(with_slope(surrogate, slope), slope, ratio, tuple(history), abs(ratio - 1) <= tolerance)

    def widened(lo: float, hi: float) -> list[float]:
        """What follows ``[lo, hi]``: its first bisection if it straddles ratio 1, else the next end the widening
        tries (computed as below), then the later bisections."""
        ends = [max(lo_lim, lo / 10)] * (lo > lo_lim) + [min(hi_lim, hi * 10)] * (hi < hi_lim)
        first, *later = _bisections(lo, hi)
        return [first, *ends, *later]

    r_lo = evaluate(lo, ahead=[hi, *widened(lo, hi)])
    r_hi = evaluate(hi)
    for slope, ratio in ((lo, r_lo), (hi, r_hi)):
        if side(ratio) == 0:
            return result(slope, ratio)
    # Widen until the ends straddle ratio 1 (the ratio may fall or rise with the slope).
    while side(r_lo) == side(r_hi):
        if len(history) >= max_evaluations or (lo <= lo_lim and hi >= hi_lim):
            raise OptionError(
                f"no {surrogate.name} slope in [{lo:g}, {hi:g}] brings the gradient-flow ratio to 1: "
                f"ratio {r_lo:.4g} at {lo:g} and {r_hi:.4g} at {hi:g}"
            )
        # Widen towards the end whose ratio is nearer 1 on the log scale.
        if lo > lo_lim and (hi >= hi_lim or _log_distance(r_lo) <= _log_distance(r_hi)):
            lo = max(lo_lim, lo / 10)
            r_lo = evaluate(lo, ahead=widened(lo, hi))
            if side(r_lo) == 0:
                return result(lo, r_lo)
        else:
            hi = min(hi_lim, hi * 10)
            r_hi = evaluate(hi, ahead=widened(lo, hi))
            if side(r_hi) == 0:
                return result(hi, r_hi)
    while len(history) < max_evaluations:
        mid = math.sqrt(lo * hi)
        r_mid = evaluate(mid, ahead=_bisections(lo, hi)[1:])
        s = side(r_mid)
        if s == 0:
            return result(mid, r_mid)
        if s == side(r_lo):
            lo, r_lo = mid, r_mid
        else:
            hi, r_hi = mid, r_mid
    return result(*min(history, key=lambda sr: _log_distance(sr[1])))


def _log_distance(ratio: float) -> float:
    """``|log ratio|``, how far a ratio is from 1 by orders of magnitude (inf for 0, inf, nan)."""
    return abs(math.log(ratio)) if 0 < ratio < math.inf else math.inf
