"""Surrogate derivatives of the spike function for the ``bptt`` rule.

The forward spike ``s = 1[U > theta]`` has derivative 0 almost everywhere;
surrogate-gradient training (Neftci et al. 2019; Syed et al. 2021, Sec. 3.2;
Ledinauskas et al. 2020) replaces ``ds/dU`` in the backward pass by a smooth
bump ``sigma(x)`` of ``x = U - theta``. The forward pass is unchanged.

Each surrogate is a small immutable object: its parameters, its
``derivative(x, theta)``, and a ``config()`` that :func:`surrogate_from_config`
turns back into the same object (checkpoints, command line). Neurons that
never fire (``theta = inf``) get derivative 0 from every surrogate.

==================  =============================================  ===================
name                sigma(x), x = U - theta                        parameters
==================  =============================================  ===================
straight_through    ``1 / theta``                                  none
fast_sigmoid        ``b / (1 + c |x|)^2``                          c = 10, b = 1/theta
arctan              ``(alpha/2) / (1 + (pi/2 * alpha * x)^2)``     alpha = 2
sigmoid             ``alpha * sig(alpha x) * (1 - sig(alpha x))``  alpha = 4
triangle            ``max(0, 1 - |x| / width) / width``            width = 1
==================  =============================================  ===================

The fast sigmoid is Syed et al.'s eq. 12 (after Zenke and Ganguli's
SuperSpike); with ``c = 0`` and the default height ``b = 1/theta`` it is the
straight-through estimator (Lee et al. 2020, eq. 13). The arctan, sigmoid and
triangle bumps are the derivatives of ``atan(pi/2 alpha x)/pi + 1/2``,
``sig(alpha x)`` and a piecewise-linear ramp of width ``2 width``; each
integrates to 1 over x.

The surrogates built from ``+ - * /``, ``abs`` and comparisons alone
(straight-through, fast sigmoid, triangle) also name their form in
:func:`eventsim.kernels.surrogate_recursion` (``kernel_code``,
:meth:`Surrogate.kernel_parameters`), which evaluates them with the same
operations in the same order, bit for bit; ``exp`` and ``atan`` (sigmoid,
arctan) may round differently in NumPy and Numba and stay with NumPy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from eventsim.errors import OptionError
from eventsim.kernels.bptt import FAST_SIGMOID, STRAIGHT_THROUGH, TRIANGLE
from eventsim.learning.configs import from_config


def _theta(theta: np.ndarray | float, like: np.ndarray) -> np.ndarray:
    return np.asarray(theta, dtype=like.dtype)


def _positive(name: str, what: str, value: float, *, zero: bool = False) -> None:
    ok = np.isfinite(value) and (value >= 0 if zero else value > 0)
    if not ok:
        bound = ">= 0" if zero else "> 0"
        raise OptionError(f"surrogate {name}: {what} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class Surrogate:
    """Base class: ``derivative(x, theta)`` with ``x = U - theta`` (same dtype as x)."""

    name: ClassVar[str] = ""
    #: sigma's code in :func:`eventsim.kernels.surrogate_recursion`; None: NumPy only.
    kernel_code: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A subclass with its own sigma is NumPy only unless it names its kernel form.
        if ("_bump" in vars(cls) or "derivative" in vars(cls)) and "kernel_code" not in vars(cls):
            cls.kernel_code = None

    def derivative(self, x: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
        """sigma(x) for potentials ``U = x + theta``; 0 where theta is infinite."""
        x = np.asarray(x)
        th = _theta(theta, x)
        with np.errstate(invalid="ignore", over="ignore"):
            out = self._bump(x, th)
        return np.where(np.isinf(th), x.dtype.type(0), out).astype(x.dtype, copy=False)

    def _bump(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def kernel_parameters(self) -> tuple[float, float]:
        """The parameters ``(a, b)`` of :func:`eventsim.kernels.surrogate_recursion` for ``kernel_code``."""
        return 0.0, 0.0

    def config(self) -> dict:
        """JSON-ready description; :func:`surrogate_from_config` inverts it."""
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """``sigma = 1/theta`` (Lee et al. 2020, eq. 13; Bengio et al. 2013)."""

    name: ClassVar[str] = "straight_through"
    kernel_code: ClassVar[int | None] = STRAIGHT_THROUGH

    def _bump(self, x, theta):
        return np.broadcast_to(1 / theta, x.shape)


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """``sigma = b / (1 + c |x|)^2`` (Syed et al. 2021, eq. 12); ``b = None`` means ``1/theta``."""

    c: float = 10.0
    b: float | None = None
    name: ClassVar[str] = "fast_sigmoid"
    kernel_code: ClassVar[int | None] = FAST_SIGMOID

    def __post_init__(self):
        _positive(self.name, "c", self.c, zero=True)
        if self.b is not None:
            _positive(self.name, "b", self.b)

    def kernel_parameters(self):
        return self.c, 0.0 if self.b is None else self.b  # b > 0: 0 stands for 1/theta

    def _bump(self, x, theta):
        height = 1 / theta if self.b is None else x.dtype.type(self.b)
        return height / (1 + x.dtype.type(self.c) * np.abs(x)) ** 2


@dataclass(frozen=True)
class ArcTan(Surrogate):
    """``sigma = (alpha/2) / (1 + (pi/2 alpha x)^2)``, the derivative of ``atan(pi/2 alpha x)/pi``."""

    alpha: float = 2.0
    name: ClassVar[str] = "arctan"

    def __post_init__(self):
        _positive(self.name, "alpha", self.alpha)

    def _bump(self, x, theta):
        a = x.dtype.type(self.alpha)
        return (a / 2) / (1 + (x.dtype.type(np.pi / 2) * a * x) ** 2)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """``sigma = alpha sig(alpha x) (1 - sig(alpha x))``, the derivative of ``sig(alpha x)``."""

    alpha: float = 4.0
    name: ClassVar[str] = "sigmoid"

    def __post_init__(self):
        _positive(self.name, "alpha", self.alpha)

    def _bump(self, x, theta):
        a = x.dtype.type(self.alpha)
        sig = 1 / (1 + np.exp(-a * x))
        return a * sig * (1 - sig)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """``sigma = max(0, 1 - |x|/width) / width`` (Bellec et al. 2018's piecewise-linear bump)."""

    width: float = 1.0
    name: ClassVar[str] = "triangle"
    kernel_code: ClassVar[int | None] = TRIANGLE

    def __post_init__(self):
        _positive(self.name, "width", self.width)

    def kernel_parameters(self):
        return self.width, 0.0

    def _bump(self, x, theta):
        w = x.dtype.type(self.width)
        return np.maximum(0, 1 - np.abs(x) / w) / w


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (StraightThrough, FastSigmoid, ArcTan, Sigmoid, Triangle)
}


def surrogate_from_config(config: dict | str) -> Surrogate:
    """Build a surrogate from its name or from :meth:`Surrogate.config`."""
    return from_config("surrogate", SURROGATES, config)
