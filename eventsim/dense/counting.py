"""Brute-force operation counters: the test oracle of the event path's counts.

docs/semantics.md, "Counting": SynOps are counted exactly, each event adding the
number of in-bounds synapses it reaches (borders included); pooling ops are
reported apart. These counters walk every output position and kernel tap
with plain loops, so they are slow and meant for small test sizes only.
Inputs are the dense values of one step of one sample; an entry counts as an
event when it is nonzero.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from eventsim.dense._common import as_pair


def conv2d_synops(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    out_channels: int,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> int:
    """Synaptic operations of a convolution for one step of one sample.

    ::

        SynOps = out_channels * #{(oy, ox, c, i, j) : 0 <= y < H, 0 <= x < W, s[c, y, x] != 0}
                 with y = oy*sh + i - ph, x = ox*sw + j - pw

    over output positions ``(oy, ox)``, input channels ``c`` and taps
    ``(i, j)``: every nonzero input reaching an in-bounds synapse costs one
    accumulate per output channel. Taps that land in the zero padding cost
    nothing.

    Parameters
    ----------
    x : array, shape ``(C, H, W)``
    """
    c_in, h, w = x.shape
    kh, kw = as_pair(kernel_size, "kernel_size", 1)
    sh, sw = as_pair(stride, "stride", 1)
    ph, pw = as_pair(padding, "padding", 0)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    ops = 0
    for oy in range(ho):
        for ox in range(wo):
            for c in range(c_in):
                for i in range(kh):
                    for j in range(kw):
                        y, xx = oy * sh + i - ph, ox * sw + j - pw
                        if 0 <= y < h and 0 <= xx < w and x[c, y, xx] != 0:
                            ops += out_channels
    return ops


def linear_synops(x: np.ndarray, out_features: int) -> int:
    """Synaptic operations of a fully connected layer: ``#{nonzero inputs} * out_features``."""
    return int(np.count_nonzero(x)) * int(out_features)


def delayed_linear_synops(x: np.ndarray, delay: np.ndarray, step: int, steps: int) -> int:
    """Synaptic operations of a fully connected layer with synaptic delays, for step ``t`` of ``T``.

    ::

        SynOps = #{(o, i) : s[t, i] != 0, t + d[o, i] < T}

    A nonzero input reaches every synapse of its column, but only those
    whose current lands before T count: one landing at or after T is dropped
    and costs nothing (docs/semantics.md, "Delays" and "Counting").

    Parameters
    ----------
    x : array, shape ``(N_in,)``
        The layer's input at step ``step``.
    delay : int array, shape ``(N_out, N_in)``
        Whole steps per synapse.
    """
    out_features, in_features = delay.shape
    ops = 0
    for i in range(in_features):
        if x[i] != 0:
            for o in range(out_features):
                if step + delay[o, i] < steps:
                    ops += 1
    return ops


def pool_ops(x: np.ndarray, kernel: int | Sequence[int], stride: int | Sequence[int]) -> int:
    """Pooling operations: the number of (nonzero input, window containing it) pairs.

    Windows are those of :mod:`eventsim.dense.pooling` (no padding,
    ``Ho = (H - kh) // sh + 1``); an input in the dropped trailing rows or
    columns belongs to no window and costs nothing, one under overlapping
    windows costs once per window.

    This is the convolution count with one output channel and no padding:
    each nonzero input counts once per window that reads it.

    Parameters
    ----------
    x : array, shape ``(C, H, W)``
    """
    return conv2d_synops(x, kernel, 1, stride, 0)


def ann_macs_conv2d(
    in_shape: Sequence[int],
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> int:
    """Multiply-accumulates of the same convolution in a dense ANN.

    ``Ho * Wo * out_channels * C * kh * kw``: every tap of every output,
    padded ones included (Lee et al. 2020, Sec. 5.4; docs/semantics.md, "Counting").
    """
    c_in, h, w = (int(n) for n in in_shape)
    kh, kw = as_pair(kernel_size, "kernel_size", 1)
    sh, sw = as_pair(stride, "stride", 1)
    ph, pw = as_pair(padding, "padding", 0)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return ho * wo * int(out_channels) * c_in * kh * kw
