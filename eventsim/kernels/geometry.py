"""Index arithmetic shared by the scatter kernels."""

from numba import njit


@njit(cache=True, nogil=True, inline="always")
def position(j, plane, width):
    """``(c, y, x)`` of the C-order flat index ``j`` in a map with ``plane = H * W``."""
    c = j // plane
    rest = j - c * plane
    y = rest // width
    return c, y, rest - y * width


@njit(cache=True, nogil=True, inline="always")
def reached(pos, kernel, stride, n_out):
    """First and last output index whose window ``[o*stride, o*stride + kernel)`` holds ``pos``.

    Along one axis, output o reads inputs ``o*stride .. o*stride + kernel - 1``,
    so ``pos`` is read by ``ceil((pos - kernel + 1) / stride) <= o <= pos // stride``,
    clipped to ``[0, n_out)``. The range is empty when first > last. For a
    padded convolution, ``pos`` is the position in the padded map.
    """
    if stride == 1:  # the common case, without the two divisions (about a tenth of conv_scatter's time)
        return max(0, pos - kernel + 1), min(n_out - 1, pos)
    return max(0, (pos - kernel + stride) // stride), min(n_out - 1, pos // stride)
