"""A model of the N-MNIST recording: an event camera making three saccades over a still image.

Orchard et al. 2015 ("Converting static image datasets to spiking neuromorphic
datasets using saccades", Front. Neurosci. 9:437) recorded N-MNIST by showing
each MNIST digit on a monitor and moving an ATIS event camera on a pan-tilt
unit in three saccades along a triangle, about 100 ms each; the 28x28 digits
come out as 34x34 recordings with an ON and an OFF polarity. This module is a
*model* of that process, for tests and experiments that need event streams of
known origin. It does not reproduce the camera: it has no optics, pixel
bandwidth, refractory period, per-pixel threshold mismatch, timestamp jitter
or monitor flicker; it emits at most one event per pixel, polarity and step;
and the geometry and speed profile of its motion are choices, not
measurements.

The model, per sample:

1. Scene. The image continues beyond its border by its edge values
   (``numpy.pad`` mode ``"edge"``): a constant image is a uniform scene, and
   an MNIST digit, whose border is 0, sits on black.
2. Motion. The image is shifted by ``(dy, dx)`` pixels along the triangle
   ``(-a, 0) -> (a, a) -> (a, -a) -> (-a, 0)`` (down-right, left, up-right;
   ``a = amplitude``), at constant speed on each side, each side taking a
   third of the steps: step t (0-based) sits at ``u = 3 t / (T - 1)`` along
   the path (``u = 0`` when T = 1), on side ``k = min(floor(u), 2)`` at
   fraction ``u - k``. The shift is sub-pixel.
3. Sensor. The sensor has ``(H + 6, W + 6)`` pixels, the image centred with
   a margin of 3 (34x34 for MNIST). Sensor pixel ``(r, c)`` sees the scene at
   image coordinates ``(r - 3 - dy, c - 3 - dx)``, interpolated bilinearly.
   The default amplitude 3 keeps the whole image on the sensor.
4. Events. Each pixel keeps a reference log intensity ``log(I + eps)``, set
   at step 0. At each later step it emits an ON event (channel 1) when its
   log intensity exceeds the reference by more than ``contrast``, an OFF event
   (channel 0) when it falls short by more than ``contrast``, and then resets
   the reference to the current value: :func:`eventsim.encoders.delta.delta_step`
   on log intensity. The channels are N-MNIST's polarity bit read as the
   channel (docs/semantics.md, "Events"): 0 = OFF, 1 = ON.
5. Noise (optional). Each pixel and channel also fires a spurious event
   with probability ``noise`` per step (background activity), drawn from
   ``rng`` and leaving the reference alone.
"""

from __future__ import annotations

import math

import numpy as np

from eventsim.encoders.delta import delta_step
from eventsim.encoders.inputs import check_dtype, check_input, check_number, check_range, check_steps
from eventsim.errors import OptionError
from eventsim.events import Events

#: Sensor margin around the image: 28x28 MNIST digits give 34x34 recordings.
MARGIN = 3


def saccade(
    images: np.ndarray,
    *,
    steps: int = 300,
    contrast: float = 0.2,
    eps: float = 0.1,
    amplitude: float = 3.0,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    dtype: object = np.float32,
) -> Events:
    """Events of an event camera moved in three saccades over still images (a model).

    See the module docstring for the model. In formulas, for sample b, sensor
    pixel ``(r, c)`` and step t, with ``(dy, dx)`` the shift at t and ``S``
    the edge-extended image::

        I[t, r, c] = bilinear(S, r - 3 - dy, c - 3 - dx)
        L[t]       = log(I[t] + eps)                     (float64)
        ref        = L[0]
        ON  (channel 1) at t >= 1 where L[t] - ref >  contrast, then ref = L[t]
        OFF (channel 0) at t >= 1 where L[t] - ref < -contrast, then ref = L[t]

    The bilinear weights ``fy, fx`` are the fractional parts of ``-dy`` and
    ``-dx`` (the same for every pixel, since the whole image moves); columns
    are interpolated first, then rows, each as ``a + f * (b - a)``.

    With ``noise > 0``, step t (in order 0 .. T-1) draws
    ``u = rng.random((B, 2, H + 6, W + 6))`` and adds an event wherever
    ``u < noise`` (a pixel and channel that already fired keeps its one event).

    Parameters
    ----------
    images : array, shape ``(B, H, W)``
        Intensities in [0, 1] (MNIST digits divided by 255).
    steps : int
        Number of steps T >= 1 (default 300: 1 ms per step over N-MNIST's
        three saccades of about 100 ms).
    contrast : float
        Log-intensity change that fires a pixel, > 0.
    eps : float
        Offset inside the logarithm, > 0: black is ``log(eps)``, so a smaller
        ``eps`` gives dark edges more contrast.
    amplitude : float
        Half the extent of the triangle in pixels, >= 0.
    noise : float
        Probability per step of a spurious event at each pixel and channel,
        in [0, 1]; needs ``rng`` when > 0.
    rng : numpy.random.Generator, optional
        Source of the noise; only with ``noise > 0``.
    dtype : float32 or float64
        Dtype of the event values (1).

    Returns
    -------
    Events
        Batch B, T steps, neuron shape ``(2, H + 6, W + 6)``; binary.
    """
    dt = check_dtype("saccade", dtype)
    steps = check_steps("saccade", steps)
    contrast = check_number("saccade", "contrast", contrast, low=0.0, low_open=True)
    eps = check_number("saccade", "eps", eps, low=0.0, low_open=True)
    amplitude = check_number("saccade", "amplitude", amplitude, low=0.0, low_open=False)
    noise = check_number("saccade", "noise", noise, low=0.0, low_open=False, high=1.0)
    if noise > 0 and not isinstance(rng, np.random.Generator):
        raise OptionError(f"saccade: noise > 0 needs rng, a numpy.random.Generator; got {type(rng).__name__}")
    if noise == 0 and rng is not None:
        raise OptionError("saccade: rng is only used for noise; pass noise > 0 or leave rng out")
    images = check_input("saccade", "images", images, ndim=3, layout="(B, H, W)", exact=True)
    check_range("saccade", "images", images, 0.0, 1.0, "divide 8-bit images by 255")

    batch, height, width = images.shape
    sensor = (height + 2 * MARGIN, width + 2 * MARGIN)
    pad = MARGIN + math.ceil(amplitude) + 1
    scene = np.pad(images, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    shifts = triangle_path(steps, amplitude)

    sample, step, neuron = [], [], []
    reference = _log_frame(scene, shifts[0], pad, sensor, eps)
    for t in range(steps):
        # At t = 0 the frame equals the reference: no change, no event.
        on, off = delta_step(_log_frame(scene, shifts[t], pad, sensor, eps), reference, contrast)
        fired = np.stack([off, on], axis=1)  # channel 0 = OFF, 1 = ON
        if noise > 0:
            fired |= rng.random(fired.shape) < noise
        b, flat = np.nonzero(fired.reshape(batch, -1))
        sample.append(b)
        step.append(np.full(b.shape, t))
        neuron.append(flat)
    return Events.from_coo(
        np.concatenate(sample), np.concatenate(step), np.concatenate(neuron),
        np.ones(sum(b.shape[0] for b in sample), dt),
        batch=batch, steps=steps, shape=(2,) + sensor,
    )


def triangle_path(steps: int, amplitude: float) -> np.ndarray:
    """The image shift ``(dy, dx)`` in pixels at each step, shape ``(steps, 2)``.

    Three sides of equal duration, ``(-a, 0) -> (a, a) -> (a, -a) -> (-a, 0)``
    with ``a = amplitude``; step t sits at ``u = 3 t / (steps - 1)`` along the
    path (0 when ``steps = 1``), so the first and last steps are at the first
    corner.
    """
    a = amplitude
    corners = np.array([(-a, 0.0), (a, a), (a, -a), (-a, 0.0)])
    u = 3.0 * np.arange(steps) / max(steps - 1, 1)
    side = np.minimum(np.floor(u), 2).astype(np.int64)
    frac = (u - side)[:, None]
    return corners[side] + frac * (corners[side + 1] - corners[side])


def _log_frame(scene: np.ndarray, shift: np.ndarray, pad: int, sensor: tuple[int, int], eps: float) -> np.ndarray:
    """``log(I + eps)`` of the sensor frames, shape ``(B, *sensor)``, for one image shift."""
    rows, cols = sensor
    # Sensor pixel r sees scene row r + pad - MARGIN - dy: an integer part and a fraction shared by all pixels.
    y, x = pad - MARGIN - shift[0], pad - MARGIN - shift[1]
    iy, ix = math.floor(y), math.floor(x)
    fy, fx = y - iy, x - ix
    window = scene[:, iy : iy + rows + 1, ix : ix + cols + 1]
    # a + f (b - a) rather than (1 - f) a + f b: exact on a uniform scene, which must give no events.
    across = window[:, :, :-1] + fx * (window[:, :, 1:] - window[:, :, :-1])
    frame = across[:, :-1] + fy * (across[:, 1:] - across[:, :-1])
    return np.log(frame + eps)
