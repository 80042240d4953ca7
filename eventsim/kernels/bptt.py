"""The neuron backward of the ``bptt`` rule in one sweep over a sample's steps.

docs/semantics.md, "bptt": per spiking neuron, backward from ``E[T] = 0``::

    E[t] = sigma(U[t] - theta) * G[t] + carry[t] * E[t+1]

with the reset treated as a constant (``detach_reset``): ``carry = scale *
(1 - s[t])`` for the hard reset and ``carry = scale`` for the soft one,
``s[t] = 1[U[t] > theta]`` (``>=`` unless strict) and ``scale`` the product
of the leaks outside and inside the reset. :func:`reverse_recursion` solves
the same recurrence from ``sigma`` and ``carry`` given as ``(K, N)`` arrays;
here they are computed per neuron and step from the recorded potentials
(channel-last, as :meth:`eventsim.Network.run` holds them), so that no
``(K, N)`` array but ``E`` is written.

The surrogate ``sigma`` is given by a code and two parameters, for the bumps
built from ``+ - * /``, ``abs`` and comparisons alone, each evaluated with
the operations and rounding order of its NumPy form in
:mod:`eventsim.learning.surrogates` (Neftci et al. 2019; Syed et al. 2021,
eq. 12; Bellec et al. 2018), so that ``E`` is bit-identical to that path's:

=================  ==================================  =========================
code               sigma(x), x = U - theta             parameters (a, b)
=================  ==================================  =========================
STRAIGHT_THROUGH   ``1 / theta``                       unused
FAST_SIGMOID       ``b / (1 + a |x|)^2``               slope a; height b, 0 for ``1 / theta``
TRIANGLE           ``max(0, 1 - |x| / a) / a``         half-width a
=================  ==================================  =========================

and ``sigma = 0`` where theta is infinite (a neuron that never fires).
"""

import numpy as np
from numba import njit

#: The surrogate codes of :func:`surrogate_recursion`.
STRAIGHT_THROUGH, FAST_SIGMOID, TRIANGLE = range(3)


# error_model="numpy": a division by 0 gives inf or NaN as in NumPy, not
# ZeroDivisionError, and without that test per division the loop vectorises.
@njit(cache=True, nogil=True, error_model="numpy")
def _step(e, nxt, u, grad, theta, height, silent, strict, soft, scale, surrogate, a):
    """One step of :func:`surrogate_recursion`, flat over the neurons: ``e = sigma * grad + carry * nxt``.

    A loop of its own, free of branches but on arguments fixed for the call,
    so that it vectorises (the unrolled steps in one loop nest do not).
    """
    one, zero = e.dtype.type(1), e.dtype.type(0)
    for j in range(e.shape[0]):
        th = theta[j]
        if surrogate == STRAIGHT_THROUGH:
            sigma = height[j]
        elif surrogate == FAST_SIGMOID:
            y = one + a * abs(u[j] - th)
            sigma = height[j] / (y * y)  # NumPy's y ** 2 is y * y
        else:
            v = one - abs(u[j] - th) / a
            sigma = (v if v > zero or v != v else zero) / a  # np.maximum(0, v): NaN stays NaN
        sigma = zero if silent[j] else sigma
        fired = u[j] > th if strict else u[j] >= th
        carry = scale if soft else (zero if fired else one) * scale
        e[j] = sigma * grad[j] + carry * nxt[j]


@njit(cache=True, nogil=True, error_model="numpy")
def surrogate_recursion(out, potentials, theta, grad, strict, soft, scale, surrogate, a, b, last=None):
    """Write ``E = dL/dU`` of one sample's spiking layer into ``out``; returns ``out``.

    The steps may be a segment of the sample's: ``last`` is then the E of
    the step after the segment (``E[T] = 0`` after the last step), so that
    the segments, taken from the last to the first, give the E of one sweep.

    Parameters
    ----------
    out : (K, P*C) float array, channel-last; overwritten with E.
    potentials : (K, P*C) float array, channel-last; the recorded potentials U of the sample.
    theta : (P*C,) float array, channel-last; the thresholds (inf: never fires).
    grad : (K, P*C) float array, channel-last; ``G = dL/ds``.
    strict, soft : bool
        The spike test ``U > theta`` (else ``>=``); the soft reset (else hard).
    scale : float
        The carry of a neuron that did not spike (``outer * inner``).
    surrogate : int
        STRAIGHT_THROUGH, FAST_SIGMOID or TRIANGLE.
    a, b : float
        The surrogate's parameters (module docstring), unrounded.
    last : (P*C,) float array, channel-last, optional
        E of the step after the last one given; zeros by default.

    All arrays share one float dtype; the scalars are rounded to it once,
    as the NumPy forms round them.
    """
    steps, size = potentials.shape
    dtype = out.dtype.type
    one = dtype(1)
    per_theta = surrogate == STRAIGHT_THROUGH or b == 0  # before the rounding: a given b > 0 may round to 0
    a, b, scale = dtype(a), dtype(b), dtype(scale)
    # Per neuron, what does not change over the steps (the same roundings
    # whenever they are made).
    height = np.empty(size, out.dtype)
    silent = np.empty(size, np.bool_)
    for j in range(size):
        height[j] = one / theta[j] if per_theta else b
        silent[j] = np.isinf(theta[j])
    if last is None:  # pruned by Numba at compile time, for either type of the argument
        after = np.zeros(size, out.dtype)
    else:
        after = last
    for t in range(steps - 1, -1, -1):
        _step(out[t], after if t == steps - 1 else out[t + 1], potentials[t], grad[t], theta, height, silent,
              strict, soft, scale, surrogate, a)
    return out
