"""A recurrent neuron layer stepped through a window in one call."""

import numpy as np
from numba import njit

from eventsim.kernels.buffers import grown_to
from eventsim.kernels.conv import conv_scatter
from eventsim.kernels.currents import add_bias
from eventsim.kernels.linear import linear_scatter
from eventsim.kernels.neurons import lif_window


@njit(cache=True, nogil=True)
def recurrent_window(v, cur, theta, leak, soft, v_reset, strict, counts, traces, gain, fired, clear, form, divisor,
                     syn, syn_leak, syn_gain, syn_out, v_rest, v_min, max_spikes,
                     weight, bias, hw, stride, padding, index, value, currents):
    """Step a recurrent layer through a window: feedback of step t-1, then the neuron step t.

    docs/semantics.md, "Recurrent connections"::

        I[t] = I_in[t] + W_rec s[t-1] (+ b_rec)

    For each step k of the window, the connection's bias and the events
    ``(index, value)`` of the step before (the spikes of the last step of
    the previous window at k = 0) are scattered into row k of ``cur``, which
    holds the feed-forward currents ``I_in``; then :func:`lif_window`
    integrates that row. The connection is a convolution in the layout of
    :func:`conv_scatter`; a linear connection is its 1 x 1 case on a 1 x 1
    map (``weight`` of shape ``(N, 1, 1, N)``), scattered by
    :func:`linear_scatter`, which performs the same products and sums.

    The neuron arguments (``v`` ... ``max_spikes``) are those of
    :func:`lif_window`, ``syn_out`` a ``cur``-shaped buffer or None.
    ``bias`` is ``(C,)``, or empty for none; ``hw``, ``stride``,
    ``padding`` the connection's geometry; ``currents`` a ``cur``-shaped
    buffer that receives ``I[t]`` as the neurons integrate it, or no rows
    (not recorded). Arrays, not None, for the two: a test per step instead
    of a compilation for each way of giving them.

    Returns
    -------
    (indptr, index, value, synops, overflow_step, last_index, last_value)
        The window's spikes, the connection's SynOps, the first step whose
        potential is inf or NaN (-1: none; the window stops there), and the
        spikes of the window's last step, which feed the next window.
    """
    steps = cur.shape[0]
    out_ptr = np.zeros(steps + 1, np.int64)
    out_idx = np.empty(64, np.int64)
    out_val = np.empty(64, cur.dtype)
    feedback_ptr = np.zeros(2, np.int64)
    # A 1 x 1 kernel on a 1 x 1 map is a linear layer: its rows are scattered directly, sparing
    # conv_scatter's per-call copy of the weights, once per step here.
    linear = hw[0] == 1 and hw[1] == 1 and weight.shape[1] == 1 and weight.shape[2] == 1
    weight_2d = weight.reshape(weight.shape[0], weight.size // weight.shape[0])  # (N, N) when linear
    n = 0
    synops = 0
    for k in range(steps):
        row = cur[k : k + 1]
        if bias.shape[0] > 0:
            add_bias(row, bias)
        feedback_ptr[1] = index.shape[0]
        if linear:
            synops += linear_scatter(row, feedback_ptr, index, value, weight_2d)
        else:
            synops += conv_scatter(row, feedback_ptr, index, value, weight, hw, hw, stride, padding)
        if currents.shape[0] > 0:
            currents[k] = row[0]
        if syn_out is None:
            _, index, value, overflow = lif_window(v, row, theta, leak, soft, v_reset, strict, counts, traces, gain,
                                                   fired, clear, form, divisor, syn, syn_leak, syn_gain, None,
                                                   v_rest, v_min, max_spikes)
        else:
            _, index, value, overflow = lif_window(v, row, theta, leak, soft, v_reset, strict, counts, traces, gain,
                                                   fired, clear, form, divisor, syn, syn_leak, syn_gain,
                                                   syn_out[k : k + 1], v_rest, v_min, max_spikes)
        if overflow:
            return out_ptr, out_idx[:n], out_val[:n], synops, k, index, value
        if n + index.shape[0] > out_idx.shape[0]:
            out_idx = grown_to(out_idx, n + index.shape[0])
            out_val = grown_to(out_val, n + index.shape[0])
        out_idx[n : n + index.shape[0]] = index
        out_val[n : n + index.shape[0]] = value
        n += index.shape[0]
        out_ptr[k + 1] = n
    return out_ptr, out_idx[:n], out_val[:n], synops, -1, index, value
