"""Optimizers: SGD (momentum, Nesterov), Adam and AdamW, as in PyTorch.

Parameters and gradients are dicts ``name -> array`` (float32 or float64), as
returned by :func:`eventsim.learning.parameters.parameters` and by the
gradient rules. :meth:`Optimizer.step` updates the parameter arrays in place,
in their own dtype, with exactly the update formulas of ``torch.optim`` (the
single-tensor, non-``foreach`` implementation of torch 2.x), so a training
run can be checked step by step against PyTorch.

The learning rate given to the constructor is the default of every step;
``step(..., lr=...)`` overrides it for one step, which is how a schedule
(:mod:`eventsim.learning.schedules`) drives an optimizer.

State
-----
One step counter for all parameters, and per parameter the buffers of the
method (``momentum`` for SGD with momentum, ``exp_avg`` and ``exp_avg_sq``
for Adam and AdamW), created at the first step. :meth:`Optimizer.state_dict`
returns them as a flat dict of arrays, storable in HDF5 as is::

    {"step": array(12),                        # 0-d int64, steps done
     "exp_avg/conv1.weight": array(...),       # "<buffer>/<parameter>"
     "exp_avg_sq/conv1.weight": array(...), ...}

An optimizer built with the same configuration and loaded from that dict
continues bit for bit as the one that wrote it.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from numba import njit

from eventsim.errors import OptionError
from eventsim.learning.configs import from_config
from eventsim.events import FLOAT_DTYPES


def _number(owner: str, what: str, value: object, low: float, high: float = math.inf, *,
            low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float inside the interval, else an :class:`OptionError` naming it."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    v = float(value) if ok else math.nan
    inside = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not inside:
        if math.isinf(high):
            bound = f"{'>' if low_open else '>='} {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise OptionError(f"{owner}: {what} must be a finite number {bound}, got {value!r}")
    return v


def _lr(owner: str, lr: object) -> float:
    return _number(owner, "lr", lr, 0.0, low_open=True)


def _describe(x: object) -> str:
    """``float64 (3, 4)`` for an array, the type name otherwise."""
    return f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


def _betas(owner: str, betas: object) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise OptionError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
    return (_number(owner, "beta1", betas[0], 0.0, 1.0), _number(owner, "beta2", betas[1], 0.0, 1.0))


class Optimizer:
    """Base class: validation, the step counter, per-parameter buffers, state dicts.

    Subclasses set ``name`` and ``buffers`` (the names of their per-parameter
    state arrays) and implement ``_update`` for one parameter.
    """

    name: ClassVar[str] = ""

    def __init__(self, lr: float) -> None:
        self.lr = _lr(self.name, lr)
        #: optimizer steps done
        self.steps = 0
        #: buffer -> parameter name -> array, empty until the first step
        self._state: dict[str, dict[str, np.ndarray]] = {b: {} for b in self.buffers}

    @property
    def buffers(self) -> tuple[str, ...]:
        """Names of the per-parameter state arrays."""
        return ()

    # ---------------------------------------------------------------- step
    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float | None = None) -> None:
        """Update every array of ``params`` in place from ``grads`` (same keys).

        ``lr`` overrides the constructor's learning rate for this step. Every
        input is checked before any array changes, so an error leaves the
        parameters and the state as they were.

        Raises
        ------
        OptionError
            A bad ``lr``; a gradient missing, unexpected, of another shape or
            dtype than its parameter, or not finite; parameters that do not
            match the optimizer's state (names, shapes, dtypes). The message
            names the parameter.
        """
        lr = self.lr if lr is None else _lr(self.name, lr)
        self._check_inputs(params, grads)
        self._check_state(params)
        t = self.steps + 1
        for key, p in params.items():
            self._update(key, p, grads[key], lr, t)
        self.steps = t

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float, t: int) -> None:
        raise NotImplementedError

    def _check_inputs(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        missing = [k for k in params if k not in grads]
        unexpected = [k for k in grads if k not in params]
        if missing or unexpected:
            raise OptionError(
                f"{self.name}: gradients do not match the parameters: missing {missing}, unexpected {unexpected}"
            )
        for key, p in params.items():
            g = grads[key]
            if not isinstance(p, np.ndarray) or p.dtype not in FLOAT_DTYPES:
                raise OptionError(
                    f"{self.name}: parameter {key!r} must be a float32 or float64 array, got {_describe(p)}"
                )
            if not p.flags.writeable:
                raise OptionError(f"{self.name}: parameter {key!r} is read-only; optimizers update parameters in place")
            if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
                raise OptionError(
                    f"{self.name}: gradient of {key!r} must be {_describe(p)} like its parameter, got {_describe(g)}"
                )
            if not np.isfinite(g).all():
                where = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
                raise OptionError(
                    f"{self.name}: gradient of {key!r} is not finite at index {where} (value {g[where]})"
                )

    def _check_state(self, params: dict[str, np.ndarray]) -> None:
        if self.steps == 0:
            return
        for buffer, arrays in self._state.items():
            missing = [k for k in params if k not in arrays]
            unexpected = [k for k in arrays if k not in params]
            if missing or unexpected:
                raise OptionError(
                    f"{self.name}: parameters do not match the optimizer state ({buffer!r}): "
                    f"no state for {missing}, state for absent parameters {unexpected}"
                )
            for key, p in params.items():
                a = arrays[key]
                if a.shape != p.shape or a.dtype != p.dtype:
                    raise OptionError(
                        f"{self.name}: parameter {key!r} is {_describe(p)} but its {buffer!r} state is {_describe(a)}"
                    )

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of the state: ``"step"`` (0-d int64) and ``"<buffer>/<parameter>"`` arrays."""
        out = {"step": np.array(self.steps, dtype=np.int64)}
        for buffer, arrays in self._state.items():
            for key, a in arrays.items():
                out[f"{buffer}/{key}"] = a.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replace the state by a copy of ``state`` (from :meth:`state_dict`).

        Checks that ``state`` is complete and consistent: a 0-d integer
        ``"step"`` >= 0, only this optimizer's buffers, every buffer for the
        same parameters, float arrays of equal shapes across buffers, no
        buffers before the first step and all of them after. Whether they fit
        the parameters is checked at the next :meth:`step`. Nothing changes
        unless all is well.
        """
        if not isinstance(state, dict):
            raise OptionError(f"{self.name}: state must be a dict from state_dict(), got {type(state).__name__}")
        if "step" not in state:
            raise OptionError(f"{self.name}: state has no 'step' counter")
        step = np.asarray(state["step"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise OptionError(f"{self.name}: state 'step' must be a 0-d integer >= 0, got {_describe(step)} {step!r}")
        loaded: dict[str, dict[str, np.ndarray]] = {b: {} for b in self.buffers}
        for name, a in state.items():
            if name == "step":
                continue
            buffer, sep, key = name.partition("/")
            if not sep or buffer not in loaded or not key:
                known = ", ".join(repr(f"{b}/<parameter>") for b in self.buffers) or "none"
                raise OptionError(f"{self.name}: unknown state entry {name!r}; expected 'step' and {known}")
            if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES:
                raise OptionError(f"{self.name}: state {name!r} must be a float32 or float64 array, got {_describe(a)}")
            loaded[buffer][key] = a.copy()
        keys = {b: set(arrays) for b, arrays in loaded.items()}
        if int(step) == 0 and any(keys.values()):
            raise OptionError(f"{self.name}: state has step 0 but holds buffers")
        for buffer, names in keys.items():
            if int(step) > 0 and not names:
                raise OptionError(f"{self.name}: state has step {int(step)} but no {buffer!r} buffers")
            for other, other_names in keys.items():
                if names - other_names:
                    raise OptionError(
                        f"{self.name}: state {other!r} is missing for parameters {sorted(names - other_names)}"
                    )
        for key in set().union(*keys.values()):
            kinds = {b: _describe(loaded[b][key]) for b in self.buffers}
            if len(set(kinds.values())) > 1:
                raise OptionError(f"{self.name}: the buffers of parameter {key!r} differ in shape or dtype: {kinds}")
        self.steps = int(step)
        self._state = loaded

    def config(self) -> dict:
        """JSON-ready name and hyperparameters; :func:`optimizer_from_config` inverts it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({opts})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, L2 weight decay and Nesterov.

    torch.optim.SGD (Sutskever et al. 2013 for momentum; PyTorch docs,
    "SGD"), with ``g = grad + weight_decay * p``::

        b = g                                    (first step)
        b = momentum * b + (1 - dampening) * g   (later steps)
        d = g + momentum * b  (nesterov)   or   b   (otherwise; g if momentum = 0)
        p = p - lr * d
    """

    name: ClassVar[str] = "sgd"

    def __init__(self, lr: float, *, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        self.momentum = _number(self.name, "momentum", momentum, 0.0, 1.0)
        self.dampening = _number(self.name, "dampening", dampening, 0.0, 1.0, high_open=False)
        self.weight_decay = _number(self.name, "weight_decay", weight_decay, 0.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise OptionError(f"{self.name}: nesterov must be True or False, got {nesterov!r}")
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise OptionError(
                f"{self.name}: nesterov needs momentum > 0 and dampening = 0, "
                f"got momentum={momentum!r}, dampening={dampening!r}"
            )
        self.nesterov = bool(nesterov)
        super().__init__(lr)

    @property
    def buffers(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum != 0 else ()

    def _update(self, key, p, g, lr, t):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            bufs = self._state["momentum"]
            if t == 1:
                bufs[key] = g.copy()
            else:
                buf = bufs[key]
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * bufs[key] if self.nesterov else bufs[key]
        p -= lr * g

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with L2 weight decay added to the gradient, as torch.optim.Adam.

    At step t = 1, 2, ... with ``g = grad + weight_decay * p`` (torch.optim.Adam,
    ``amsgrad=False``)::

        m = m + (1 - beta1) * (g - m)            (torch's lerp; = beta1 m + (1 - beta1) g)
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    with ``m = v = 0`` before the first step.
    """

    name: ClassVar[str] = "adam"

    def __init__(self, lr: float = 1e-3, *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.betas = _betas(self.name, betas)
        self.eps = _number(self.name, "eps", eps, 0.0, low_open=True)
        self.weight_decay = _number(self.name, "weight_decay", weight_decay, 0.0)
        super().__init__(lr)

    @property
    def buffers(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _decay(self, p: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
        """The gradient with L2 decay; AdamW decays the parameter instead."""
        return g + self.weight_decay * p if self.weight_decay != 0 else g

    def _update(self, key, p, g, lr, t):
        beta1, beta2 = self.betas
        if t == 1:
            self._state["exp_avg"][key] = np.zeros_like(p)
            self._state["exp_avg_sq"][key] = np.zeros_like(p)
        m, v = self._state["exp_avg"][key], self._state["exp_avg_sq"][key]
        g = self._decay(p, g, lr)
        dt = p.dtype.type
        weight = 1 - beta1
        # The kernel walks flat arrays; a strided one is updated through a contiguous copy.
        flat = [np.ascontiguousarray(a) for a in (p, m, v)]
        _adam_update(*(a.reshape(-1) for a in flat), np.ascontiguousarray(g).reshape(-1),
                     weight >= 0.5, dt(weight), dt(1 - weight), dt(beta2), dt(1 - beta2),
                     dt(lr / (1 - beta1**t)), dt((1 - beta2**t) ** 0.5), dt(self.eps))
        for a, f in zip((p, m, v), flat):
            if f is not a:
                a[...] = f

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter 2019), as torch.optim.AdamW.

    Before the Adam update of :class:`Adam` (without L2 term)::

        p = p * (1 - lr * weight_decay)
    """

    name: ClassVar[str] = "adamw"

    def __init__(self, lr: float = 1e-3, *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _decay(self, p, g, lr):
        if self.weight_decay != 0:
            p *= 1 - lr * self.weight_decay
        return g


@njit(cache=True, nogil=True, error_model="numpy")
def _adam_update(p, m, v, g, near_one, weight, keep, beta2, one_minus_beta2, step_size, bias_root, eps):
    """One Adam update in place, element by element, with :class:`Adam`'s operations in its order.

    Every scalar comes rounded to the arrays' dtype, so each operation rounds
    as the NumPy expression it replaces (``m += weight * (g - m)``,
    ``v = beta2 * v + (1 - beta2) * g * g``, ``p -= step_size * (m / (sqrt(v)
    / bias_root + eps))``), in one pass instead of a temporary per operation.
    ``weight = 1 - beta1`` and ``keep = 1 - weight``: torch's lerp switches
    form at weight 0.5 (``near_one``) to stay accurate near both ends.
    NumPy's error model, as the expressions it replaces: a division raises
    nothing, and the loop vectorises.
    """
    for i in range(p.shape[0]):
        gi = g[i]
        mi = gi - (gi - m[i]) * keep if near_one else m[i] + weight * (gi - m[i])
        vi = v[i] * beta2 + one_minus_beta2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * (mi / (np.sqrt(vi) / bias_root + eps))


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adam, AdamW)}


def optimizer_from_config(config: dict | str) -> Optimizer:
    """Build an optimizer from its name or from :meth:`Optimizer.config`."""
    return from_config("optimizer", OPTIMIZERS, config)
