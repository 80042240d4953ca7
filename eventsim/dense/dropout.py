"""Dropout masks and their application (one mask per forward pass)."""

from __future__ import annotations

from math import prod

import numpy as np

from eventsim.dense._common import float_dtype


def draw_dropout_mask(rng: np.random.Generator, batch: int, shape: tuple[int, ...], p: float) -> np.ndarray:
    """Keep-mask of one dropout layer for one forward pass.

    docs/semantics.md, "Dropout" (Lee et al. 2020, Algorithm 1 and the
    authors' published code)::

        keep[b, n] = 1[u[b, n] >= p],   u = rng.random((batch, prod(shape)))

    one draw per sample and neuron, held for all T steps by the caller.

    Returns
    -------
    bool array, shape ``(batch, *shape)``
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    shape = tuple(int(n) for n in shape)
    u = rng.random((batch, prod(shape)))
    return (u >= p).reshape((batch,) + shape)


def apply_dropout(x: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """Values after dropout: ``where(keep, x * scale, 0)``.

    ``scale`` is ``1 / (1 - p)`` (:attr:`eventsim.layers.Dropout.scale`,
    computed in float64); it is rounded once to the dtype of ``x``, so a kept
    unit spike carries exactly the value the event path gives it.

    Parameters
    ----------
    x : float32 or float64 array, shape ``(B, *shape)``
    keep : bool array, same shape
    scale : float
    """
    x = np.asarray(x)
    dtype = float_dtype(x, "apply_dropout input")
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.shape != x.shape:
        raise ValueError(f"apply_dropout: mask must be a bool array of shape {x.shape}, got {keep.dtype} {keep.shape}")
    return np.where(keep, x * dtype.type(scale), dtype.type(0))
