"""Signed rate coding: one Bernoulli draw per element and step.

Lee et al. 2020 (Sec. 4.1.4; extraction Sec. 1.6 and 8.9) compare each pixel
with a fresh uniform number at every step and emit a spike when the pixel is
larger, so that a pixel of intensity p spikes with probability p per step.
Normalised colour inputs in [-1, 1] become bipolar spikes carrying the sign of
the pixel (docs/semantics.md, "Events": -1 is a negative input spike). The
authors' MNIST code halves the intensities first (``scale = 0.5``).

The uniform numbers are either drawn from a ``numpy.random.Generator`` in one
documented call, or passed in by the caller, so that another implementation
(a GPU one, say) can be fed exactly the same spikes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from eventsim.encoders.inputs import check_dtype, check_input, check_number, check_range, check_steps
from eventsim.errors import EventsError, OptionError
from eventsim.events import Events


def rate(
    x: np.ndarray,
    steps: int,
    *,
    rng: np.random.Generator | None = None,
    uniforms: np.ndarray | None = None,
    scale: float = 1.0,
    dtype: object = np.float32,
) -> Events:
    """Signed Bernoulli rate coding (Lee et al. 2020, Sec. 4.1.4).

    For every sample b, step t and element i::

        p[b, i]    = |scale * x[b, i]|                      (float64)
        s[b, t, i] = sign(x[b, i]) * 1[p[b, i] > u[b, t, i]]

    with ``u`` uniform on [0, 1), so an element spikes at each step with
    probability ``p`` and its expected count over T steps is ``T * p``.
    ``x`` is converted to float64 before it is scaled, and ``p`` is compared
    with ``u`` in float64. Zero inputs never spike (``u >= 0``).

    Exactly one source of ``u`` must be given:

    - ``rng``: ``u = rng.random((B, steps, *shape))``, float64, drawn in that
      single call (C order: sample, then step, then the element in C order of
      ``shape``). Another implementation reproduces the spikes by making the
      same call on a Generator in the same state, or by taking ``u`` from it.
    - ``uniforms``: the caller's own ``u``, a float array of shape
      ``(B, steps, *shape)`` with values in [0, 1) (float32 is converted to
      float64 exactly).

    Parameters
    ----------
    x : array, shape ``(B, *shape)``
        Finite real inputs with ``|scale * x| <= 1`` (a spike probability).
    steps : int
        Number of steps T >= 1.
    rng : numpy.random.Generator, optional
        Source of the uniform numbers.
    uniforms : array, shape ``(B, steps, *shape)``, optional
        The uniform numbers themselves.
    scale : float
        Factor applied to ``x`` before the comparison, > 0 (Lee's MNIST code:
        0.5).
    dtype : float32 or float64
        Dtype of the event values (+1 and -1).

    Returns
    -------
    Events
        Batch B, T steps, neuron shape ``x.shape[1:]``; values ``sign(x)``.
    """
    dt = check_dtype("rate", dtype)
    steps = check_steps("rate", steps)
    scale = check_number("rate", "scale", scale, low=0.0, low_open=True)
    x = check_input("rate", "x", x, ndim=2, layout="(B, *shape)")
    p = np.abs(scale * x)
    check_range("rate", "|scale * x|", p, 0.0, 1.0, "scale the input so that |scale * x| is a probability")
    batch, shape = x.shape[0], x.shape[1:]
    u = _uniforms(rng, uniforms, (batch, steps) + shape)
    indptr, index, value = _bernoulli_events(np.ascontiguousarray(p.reshape(batch, -1)),
                                             np.sign(x).astype(dt).reshape(batch, -1),
                                             np.ascontiguousarray(u.reshape(batch, steps, -1)))
    return Events(indptr, index, value, batch=batch, steps=steps, shape=shape, check=False)


@njit(cache=True, nogil=True)
def _bernoulli_events(p, signs, u):
    """The events of ``s[b, t, i] = signs[b, i] * 1[p[b, i] > u[b, t, i]]``, as ``(indptr, index, value)``.

    ``p`` and ``signs`` are ``(B, n)``, ``u`` is ``(B, T, n)``; rows are
    ``b * T + t`` with indices ascending in a row, as ``Events.from_dense``
    lays out the dense array ``s``. Only elements with ``p > 0`` can spike
    (``u >= 0``), so each step scans those alone: a sparse image costs its
    bright pixels, not all of them.
    """
    batch, steps, n = u.shape
    bright = np.empty(n, np.int64)
    indptr = np.zeros(batch * steps + 1, np.int64)
    bound = 1  # one slot past the last event: every candidate is written before the test keeps it
    for b in range(batch):
        bound += steps * np.count_nonzero(p[b] > 0.0)
    index = np.empty(bound, np.int64)
    value = np.empty(bound, signs.dtype)
    e = 0
    for b in range(batch):
        m = 0
        for i in range(n):
            if p[b, i] > 0.0:
                bright[m] = i
                m += 1
        for t in range(steps):
            for k in range(m):
                # Written, then kept by advancing e: no branch to mispredict on coin flips (p near 0.5).
                i = bright[k]
                index[e] = i
                value[e] = signs[b, i]
                e += p[b, i] > u[b, t, i]
            indptr[b * steps + t + 1] = e
    return indptr, index[:e].copy(), value[:e].copy()


def _uniforms(rng: np.random.Generator | None, uniforms: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if (rng is None) == (uniforms is None):
        raise OptionError("rate: give exactly one of rng (a numpy.random.Generator) and uniforms (an array)")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise OptionError(f"rate: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng.random(shape)
    u = np.asarray(uniforms)
    if u.dtype.kind != "f":
        raise EventsError(f"rate: uniforms must be a float array, got dtype {u.dtype}")
    if u.shape != shape:
        raise EventsError(f"rate: uniforms must have shape (B, steps, *shape) = {shape}, got {u.shape}")
    u = check_input("rate", "uniforms", u, ndim=len(shape), layout="(B, steps, *shape)")
    bad = np.argwhere((u < 0) | (u >= 1))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise EventsError(f"rate: uniforms must lie in [0, 1), got {u[where]!r} at index {where}")
    return u
