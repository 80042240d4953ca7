"""sinabs's defects shown with sinabs alone, as they can be reported upstream.

Each function builds the smallest sinabs model that shows one defect of the
conformance matrix (:data:`eventsim.testing.sinabs_adapter.MATRIX_ROWS`),
prints what sinabs computes next to what it should compute, and returns
the printed lines. Nothing here uses eventsim: the expected values are
closed forms stated in the lines themselves.

Needs torch and sinabs.
"""

from __future__ import annotations

from importlib import metadata


def _say(lines: list[str]) -> list[str]:
    for line in lines:
        print(line)
    return lines


def membrane_reset_drift(steps: int = 4, reset_value: float = -0.5) -> list[str]:
    """``MembraneReset(r)`` adds r to every neuron at every step: an IAF neuron without input drifts.

    ``activation/reset_mechanism.py`` computes ``v (spikes == 0) + r``; a
    neuron that never receives input and never spikes should stay at 0, and
    sinabs gives ``k r`` after k steps. The reset it means is
    ``v (spikes == 0) + r (spikes != 0)``.
    """
    import torch
    from sinabs.activation import MembraneReset, SingleSpike
    from sinabs.layers import IAF

    layer = IAF(spike_threshold=torch.tensor(1.0), spike_fn=SingleSpike,
                reset_fn=MembraneReset(reset_value=reset_value), record_states=True)
    spikes = layer(torch.zeros(1, steps, 1))
    return _say([
        f"sinabs {metadata.version('sinabs')}: IAF(spike_fn=SingleSpike, reset_fn=MembraneReset(reset_value="
        f"{reset_value})), input 0 for {steps} steps",
        f"spikes:                       {spikes.flatten().tolist()}",
        f"v_mem after each step:        {layer.recordings['v_mem'].flatten().tolist()}",
        f"expected (no input, no spike): {[0.0] * steps}",
    ])


def sum_pool_zero_window_gradient() -> list[str]:
    """``SumPool2d``'s gradient is 0 for a window whose sum is 0, and 1 elsewhere.

    ``layers/pool2d.py`` makes ``SumPool2d`` a ``torch.nn.LPPool2d`` with
    p = 1, which returns ``sign(s) relu(|s|) * k^2`` of the window average s:
    the window sum, whose derivative with respect to every input is 1. The
    autograd derivative of ``sign(s) relu(|s|)`` at s = 0 is 0, so a window
    without input (most windows of a spike map) passes no gradient back.
    """
    import torch
    from sinabs.layers import SumPool2d

    lines = [f"sinabs {metadata.version('sinabs')}: SumPool2d(2) on a 2 x 2 input, gradient of the output"]
    for value in (0.0, 0.25):
        x = torch.full((1, 1, 2, 2), value, requires_grad=True)
        out = SumPool2d(2)(x)
        out.sum().backward()
        lines.append(f"input all {value}: output {out.item()}, d output / d input {x.grad.flatten().tolist()}")
    lines.append("expected: d output / d input = [1.0, 1.0, 1.0, 1.0] for every input (the output is the sum)")
    return _say(lines)
