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

import math
from typing import Iterator, Sequence

import numpy as np
from numba import njit

from eventsim.encoders.inputs import check_dtype, check_input, check_number, check_range, check_steps
from eventsim.encoders.pcg64 import column_streams, draw_and_step, has_numpy_pcg64, pcg64_states
from eventsim.errors import EventsError, OptionError
from eventsim.events import Events


def rate(
    x: np.ndarray,
    steps: int,
    *,
    rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
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

    - ``rng``: ``u = rng.random((B, steps, *shape))``, float64 (C order:
      sample, then step, then the element in C order of ``shape``; drawn
      sample by sample, which gives the same numbers and leaves the
      Generator in the same state as that one call). Another implementation
      reproduces the spikes by making the same call on a Generator in the
      same state, or by taking ``u`` from it. When every Generator is one of
      NumPy's PCG64 (``default_rng``'s), only the numbers of elements with
      ``p > 0`` are computed, the stream jumped over the others, for the
      whole batch in one compiled call (:mod:`eventsim.encoders.pcg64`):
      the same numbers, spikes and final states, at the cost of the nonzero
      inputs alone.
      A list (or tuple) of B Generators gives each sample its own:
      ``u[b] = rng[b].random((steps, *shape))``, so sample b's spikes are
      those of ``rate(x[b:b+1], steps, rng=rng[b])`` (samples coded from
      seeds of their own, as :class:`eventsim.datasets.mnist.CodedImages`
      codes images, are coded as one batch in one call).
    - ``uniforms``: the caller's own ``u``, a float array of shape
      ``(B, steps, *shape)`` with values in [0, 1) (float32 is converted to
      float64 exactly).

    Parameters
    ----------
    x : array, shape ``(B, *shape)``
        Finite real inputs with ``|scale * x| <= 1`` (a spike probability).
    steps : int
        Number of steps T >= 1.
    rng : numpy.random.Generator or list of them, optional
        Source of the uniform numbers: one for the batch, or one per sample.
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
    p, signs = np.ascontiguousarray(p.reshape(batch, -1)), np.sign(x).astype(dt).reshape(batch, -1)
    generators = _generators(rng, uniforms, batch)
    indptr = np.zeros(batch * steps + 1, np.int64)
    # One slot past the most events there can be: the kernels write every candidate before its test keeps it.
    index = np.empty(steps * np.count_nonzero(p) + 1, np.int64)
    value = np.empty(index.shape[0], dt)
    if generators is not None and all(has_numpy_pcg64(g) for g in generators):
        # The numbers of the elements with p > 0 alone, in one call for the batch: p = 0 never spikes (u >= 0),
        # whatever its number, and most pixels of a digit are 0. Each generator still ends where its draws of
        # generator.random((steps, *shape)) leave it.
        with pcg64_states(generators) as (slots, states, incs):
            end = _pcg64_rows(p, signs, steps, slots, states, incs, indptr[1:], index, value)
    else:
        end = 0
        for b, u in enumerate(_sample_uniforms(generators, uniforms, (batch, steps) + shape)):
            end = _bernoulli_rows(p[b], signs[b], u, end, indptr[b * steps + 1 : (b + 1) * steps + 1], index, value)
    # Views of the first `end` slots, not copies: a copy's fresh allocation costs page faults (in every
    # thread coding at once), while the slots beyond hold at most the candidates that were not kept.
    return Events(indptr, index[:end], value[:end], batch=batch, steps=steps, shape=shape, check=False)


@njit(cache=True, nogil=True)
def _bernoulli_rows(p, signs, u, start, ends, index, value):
    """One sample's events ``s[t, i] = signs[i] * 1[p[i] > u[t, i]]``, written from slot ``start`` on.

    ``p`` and ``signs`` are ``(n,)``, ``u`` is ``(T, n)``. Step t's events go
    to ``index`` and ``value`` with indices ascending (the order
    ``Events.from_dense`` gives), and ``ends[t]`` receives the slot after
    them; returns the slot after the sample's last event. Only elements with
    ``p > 0`` can spike (``u >= 0``), so each step scans those alone: a
    sparse image costs its bright pixels, not all of them.
    """
    n = p.shape[0]
    bright, p_bright, signs_bright = np.empty(n, np.int64), np.empty(n), np.empty(n, signs.dtype)
    m = _bright(p, signs, bright, p_bright, signs_bright)
    e = start
    for t in range(u.shape[0]):
        for k in range(m):
            # Written, then kept by advancing e: no branch to mispredict on coin flips (p near 0.5).
            index[e] = bright[k]
            value[e] = signs_bright[k]
            e += p_bright[k] > u[t, bright[k]]
        ends[t] = e
    return e


@njit(cache=True, nogil=True)
def _pcg64_rows(p, signs, steps, slots, states, incs, ends, index, value):
    """The events of the batch ``p``, ``signs`` ``(B, n)``, sample b drawing from the PCG64 stream ``slots[b]``.

    As :func:`_bernoulli_rows` for every sample in turn from slot 0 (``ends``
    holds the ``B * T`` step ends), with ``u[t, i]`` computed only where
    ``p[i] > 0``, as it is compared: the ``(hi, lo)`` rows
    ``states[slots[b]]``, ``incs[slots[b]]`` are sample b's LCG, whose state
    is advanced in place by ``T * n``, as ``generator.random((T, n))``
    advances it (:func:`column_streams`). Returns the slot after the last
    event.
    """
    batch, n = p.shape
    bright, p_bright, signs_bright = np.empty(n, np.int64), np.empty(n), np.empty(n, signs.dtype)
    his, los = np.empty(n, np.uint64), np.empty(n, np.uint64)
    e = 0
    for b in range(batch):
        m = _bright(p[b], signs[b], bright, p_bright, signs_bright)
        step = column_streams(states[slots[b]], incs[slots[b]], bright[:m], steps, n, his, los)
        for t in range(steps):
            for k in range(m):
                index[e] = bright[k]
                value[e] = signs_bright[k]
                e += p_bright[k] > draw_and_step(his, los, k, step)
            ends[b * steps + t] = e
    return e


@njit(cache=True, nogil=True, inline="always")
def _bright(p, signs, bright, p_bright, signs_bright):
    """List the elements with ``p > 0``, ascending: their indices, ``p`` and signs; returns how many.

    Gathered once, so that every step reads them in order instead of
    looking each up by its index.
    """
    m = 0
    for i in range(p.shape[0]):
        if p[i] > 0.0:
            bright[m], p_bright[m], signs_bright[m] = i, p[i], signs[i]
            m += 1
    return m


def _generators(rng: np.random.Generator | Sequence[np.random.Generator] | None, uniforms: np.ndarray | None,
                batch: int) -> list[np.random.Generator] | None:
    """One Generator per sample (None when ``uniforms`` are given), exactly one source checked."""
    if (rng is None) == (uniforms is None):
        raise OptionError("rate: give exactly one of rng (a numpy.random.Generator) and uniforms (an array)")
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        return [rng] * batch
    if not isinstance(rng, (list, tuple)) or not all(isinstance(g, np.random.Generator) for g in rng):
        raise OptionError("rate: rng must be a numpy.random.Generator or a list of them (one per sample), "
                          f"got {type(rng).__name__}")
    if len(rng) != batch:
        raise OptionError(f"rate: rng holds {len(rng)} generators for {batch} samples; give one per sample")
    return list(rng)


def _sample_uniforms(generators: Sequence[np.random.Generator] | None, uniforms: np.ndarray | None,
                     shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """``u[b]`` for b = 0, 1, ... as ``(steps, n)`` float64 arrays, ``uniforms`` checked before the first is given.

    Drawn sample after sample into one buffer (reused: each is read before
    the next is drawn), so ``u`` is never held whole and each sample's
    numbers are still in cache when they are compared. One Generator thus
    draws the numbers of ``rng.random(shape)``, in the same order, leaving
    it in the same state.
    """
    batch, steps = shape[:2]
    if uniforms is not None:
        return iter(np.ascontiguousarray(_checked_uniforms(uniforms, shape)).reshape(batch, steps, -1))
    return _drawn(generators, np.empty((steps, math.prod(shape[2:]))))


def _drawn(generators: Sequence[np.random.Generator], buffer: np.ndarray) -> Iterator[np.ndarray]:
    for generator in generators:
        generator.random(out=buffer)  # its next buffer.size numbers, as generator.random(buffer.shape) draws them
        yield buffer


def _checked_uniforms(uniforms: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
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
