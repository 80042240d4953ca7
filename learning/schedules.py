"""Learning-rate schedules: pure functions of the optimizer step.

``schedule.lr(step, steps_per_epoch)`` is the learning rate of optimizer
step ``step`` (counted from 0 over the whole run), given to
:meth:`eventsim.learning.optimizers.Optimizer.step` as its ``lr``. Having no
state, a schedule resumes from a checkpoint by its step count alone.

==========  =====================================================  ===========================
name        lr(step)                                               as in PyTorch
==========  =====================================================  ===========================
constant    ``lr``                                                 no scheduler
multistep   ``lr * gamma ** #{milestones <= step // spe}``         MultiStepLR, stepped per epoch
onecycle    warm-up then annealing, see :class:`OneCycle`          OneCycleLR, stepped per step
==========  =====================================================  ===========================

Each schedule has a ``config()`` that :func:`schedule_from_config` turns back
into the same schedule.
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import numpy as np

from eventsim.errors import OptionError, check_choice
from eventsim.learning.configs import from_config


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _positive(name: str, what: str, value: object) -> None:
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise OptionError(f"schedule {name}: {what} must be a finite number > 0, got {value!r}")


def _count(name: str, what: str, value: object, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < minimum:
        raise OptionError(f"schedule {name}: {what} must be an integer >= {minimum}, got {value!r}")


class Schedule:
    """Base class: ``lr(step, steps_per_epoch)`` and ``config()``."""

    name: ClassVar[str] = ""

    def lr(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimizer step ``step`` (from 0)."""
        _count(self.name, "step", step, 0)
        _count(self.name, "steps_per_epoch", steps_per_epoch, 1)
        return self._lr(int(step), int(steps_per_epoch))

    def _lr(self, step: int, steps_per_epoch: int) -> float:
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-ready description; :func:`schedule_from_config` inverts it."""
        raise NotImplementedError

    def continues(self, earlier: Schedule, epochs_begun: int) -> bool:
        """Whether a run begun under ``earlier`` may go on under this schedule.

        It may when every epoch already begun keeps its learning rate, so a
        resumed run is the run this schedule would have trained from the
        start. Only epoch-stepped schedules can differ and still continue;
        others must be equal.
        """
        return self == earlier

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.config() == self.config()

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({opts})"


class EpochSchedule(Schedule):
    """A schedule stepped once per epoch: ``lr(step) = epoch_lr(step // steps_per_epoch)``.

    Such a schedule continues another one (:meth:`Schedule.continues`) when
    both give the epochs already begun the same rates, whatever they give
    later: a run trained at a constant rate can be resumed with a drop at a
    later epoch, or a milestone added after the epochs trained.
    """

    def epoch_lr(self, epoch: int) -> float:
        """The learning rate of every step of epoch ``epoch`` (from 0)."""
        raise NotImplementedError

    def _lr(self, step, steps_per_epoch):
        return self.epoch_lr(step // steps_per_epoch)

    def continues(self, earlier: Schedule, epochs_begun: int) -> bool:
        if not isinstance(earlier, EpochSchedule):
            return False
        return all(self.epoch_lr(e) == earlier.epoch_lr(e) for e in range(epochs_begun))


class Constant(EpochSchedule):
    """The same learning rate at every step."""

    name: ClassVar[str] = "constant"

    def __init__(self, lr: float) -> None:
        _positive(self.name, "lr", lr)
        self.base_lr = float(lr)

    def epoch_lr(self, epoch):
        return self.base_lr

    def config(self) -> dict:
        return {"name": self.name, "lr": self.base_lr}


class MultiStep(EpochSchedule):
    """Step decay at epoch milestones (torch.optim.lr_scheduler.MultiStepLR, stepped once per epoch).

    ``lr(step) = lr * gamma ** n`` with ``n`` the number of milestones
    ``<= step // steps_per_epoch``: the rate drops at the first step of each
    milestone epoch. Lee et al. 2020 train with ``gamma = 0.2`` at
    epochs 70, 100 and 125. Milestones must be strictly increasing and >= 1.
    """

    name: ClassVar[str] = "multistep"

    def __init__(self, lr: float, milestones: Sequence[int], gamma: float = 0.1) -> None:
        _positive(self.name, "lr", lr)
        _positive(self.name, "gamma", gamma)
        if not isinstance(milestones, (tuple, list)):
            raise OptionError(f"schedule {self.name}: milestones must be a list of epochs, got {milestones!r}")
        for m in milestones:
            _count(self.name, "every milestone", m, 1)
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise OptionError(f"schedule {self.name}: milestones must be strictly increasing, got {list(milestones)}")
        self.base_lr = float(lr)
        self.milestones = tuple(int(m) for m in milestones)
        self.gamma = float(gamma)

    def epoch_lr(self, epoch):
        passed = sum(1 for m in self.milestones if m <= epoch)
        return self.base_lr * self.gamma**passed

    def config(self) -> dict:
        return {"name": self.name, "lr": self.base_lr, "milestones": list(self.milestones), "gamma": self.gamma}


ANNEALS = ("cos", "linear")


class OneCycle(Schedule):
    """The one-cycle policy (Smith and Topin 2019), as torch.optim.lr_scheduler.OneCycleLR's learning rate.

    With ``initial = max_lr / div_factor`` and ``minimum = initial /
    final_div_factor``, the rate goes from ``initial`` to ``max_lr`` until
    step ``e1 = pct_start * total_steps - 1``, then down to ``minimum`` at
    step ``total_steps - 1``. With ``three_phase`` it goes back to ``initial``
    at ``e2 = 2 * pct_start * total_steps - 2`` first, then to ``minimum``.
    Within a phase from step ``s0`` to ``s1``, with ``pct = (step - s0) / (s1 - s0)``::

        cos:     lr = end + (start - end) / 2 * (cos(pi * pct) + 1)
        linear:  lr = (end - start) * pct + start

    Momentum cycling is not part of it. Steps run from 0 to ``total_steps - 1``;
    every phase must be longer than zero steps (torch divides by its length).
    """

    name: ClassVar[str] = "onecycle"

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        *,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        anneal: str = "cos",
        three_phase: bool = False,
    ) -> None:
        _positive(self.name, "max_lr", max_lr)
        _count(self.name, "total_steps", total_steps, 1)
        _positive(self.name, "div_factor", div_factor)
        _positive(self.name, "final_div_factor", final_div_factor)
        if not (_is_number(pct_start) and 0 <= pct_start <= 1):
            raise OptionError(f"schedule {self.name}: pct_start must be a number in [0, 1], got {pct_start!r}")
        check_choice("anneal", anneal, ANNEALS)
        if not isinstance(three_phase, (bool, np.bool_)):
            raise OptionError(f"schedule {self.name}: three_phase must be True or False, got {three_phase!r}")
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.anneal = anneal
        self.three_phase = bool(three_phase)
        start = 0.0
        for end, _, _ in self._phases():
            if not end > start:
                raise OptionError(
                    f"schedule {self.name}: the phase from step {start:g} to {end:g} is empty; "
                    f"pct_start={pct_start} with total_steps={total_steps} leaves a phase no steps"
                )
            start = end

    def _phases(self) -> list[tuple[float, float, float]]:
        """(end step, start lr, end lr) of each phase, as OneCycleLR builds them."""
        initial = self.max_lr / self.div_factor
        minimum = initial / self.final_div_factor
        warmup_end = float(self.pct_start * self.total_steps) - 1
        last = float(self.total_steps - 1)
        if self.three_phase:
            return [(warmup_end, initial, self.max_lr),
                    (float(2 * self.pct_start * self.total_steps) - 2, self.max_lr, initial),
                    (last, initial, minimum)]
        return [(warmup_end, initial, self.max_lr), (last, self.max_lr, minimum)]

    def _lr(self, step, steps_per_epoch):
        if step >= self.total_steps:
            raise OptionError(f"schedule {self.name}: step {step} is past the last step {self.total_steps - 1}")
        phases = self._phases()
        start_step = 0.0
        # the first phase whose end is not passed; the last one takes every step left
        for end_step, start_lr, end_lr in phases[:-1]:
            if step <= end_step:
                break
            start_step = end_step
        else:
            end_step, start_lr, end_lr = phases[-1]
        pct = (step - start_step) / (end_step - start_step)
        if self.anneal == "cos":
            return end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end_lr - start_lr) * pct + start_lr

    def config(self) -> dict:
        return {"name": self.name, "max_lr": self.max_lr, "total_steps": self.total_steps,
                "pct_start": self.pct_start, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "anneal": self.anneal, "three_phase": self.three_phase}


SCHEDULES: dict[str, type[Schedule]] = {cls.name: cls for cls in (Constant, MultiStep, OneCycle)}


def schedule_from_config(config: dict) -> Schedule:
    """Build a schedule from :meth:`Schedule.config`."""
    return from_config("schedule", SCHEDULES, config)
