"""Learning-rate schedules against torch.optim.lr_scheduler; bad options."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsim.errors import OptionError
from eventsim.learning.schedules import Constant, MultiStep, OneCycle, schedule_from_config


def _torch_optimizer(torch, lr):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


@pytest.mark.parametrize(
    "lr, milestones, gamma, epochs, steps_per_epoch",
    [
        (0.1, [2, 5, 7], 0.1, 10, 3),
        (0.05, [70, 100, 125], 0.2, 150, 2),  # Lee et al. 2020
        (1.0, [1], 0.5, 4, 1),
        (0.3, [3, 4], 2.0, 8, 5),
    ],
)
def test_multistep_matches_torch(lr, milestones, gamma, epochs, steps_per_epoch):
    torch = pytest.importorskip("torch")
    opt = _torch_optimizer(torch, lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=gamma)
    ours = MultiStep(lr, milestones, gamma)
    for epoch in range(epochs):
        expected = opt.param_groups[0]["lr"]
        for s in range(steps_per_epoch):
            got = ours.lr(epoch * steps_per_epoch + s, steps_per_epoch)
            assert got == pytest.approx(expected, rel=1e-12, abs=0), (epoch, s)
        opt.step()
        sched.step()


def test_multistep_closed_form():
    sched = MultiStep(0.1, [70, 100, 125], 0.2)
    assert sched.lr(69 * 10 + 9, 10) == 0.1
    assert sched.lr(70 * 10, 10) == 0.1 * 0.2
    assert sched.lr(124 * 10, 10) == 0.1 * 0.2**2
    assert sched.lr(500 * 10, 10) == 0.1 * 0.2**3


ONECYCLES = [
    dict(max_lr=0.1, total_steps=100),
    dict(max_lr=0.1, total_steps=100, anneal="linear"),
    dict(max_lr=0.02, total_steps=37, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
    dict(max_lr=0.3, total_steps=10, three_phase=True),
    dict(max_lr=0.3, total_steps=53, pct_start=0.4, three_phase=True, anneal="linear"),
    dict(max_lr=1.0, total_steps=2, pct_start=0.9),
    dict(max_lr=0.5, total_steps=1000, pct_start=0.05),
]


@pytest.mark.parametrize("kw", ONECYCLES, ids=[str(k) for k in ONECYCLES])
def test_onecycle_matches_torch(kw):
    torch = pytest.importorskip("torch")
    opt = _torch_optimizer(torch, kw["max_lr"])
    torch_kw = {("anneal_strategy" if k == "anneal" else k): v for k, v in kw.items()}
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cycle_momentum=False, **torch_kw)
    ours = OneCycle(**kw)
    for step in range(kw["total_steps"]):
        expected = opt.param_groups[0]["lr"]
        assert ours.lr(step, 7) == pytest.approx(expected, rel=1e-12, abs=0), step
        opt.step()
        sched.step()


def test_onecycle_end_points():
    sched = OneCycle(0.1, 101, pct_start=0.5, div_factor=4.0, final_div_factor=10.0)
    assert sched.lr(0, 1) == pytest.approx(0.025, rel=1e-15)
    assert sched.lr(int(0.5 * 101) - 1, 1) == pytest.approx(0.1, rel=1e-2)
    assert sched.lr(100, 1) == pytest.approx(0.0025, rel=1e-15)


def test_constant():
    assert [Constant(0.01).lr(s, 3) for s in (0, 1, 10**9)] == [0.01] * 3


_milestones = st.lists(st.integers(1, 8), max_size=3, unique=True).map(sorted)


@given(old=_milestones, new=_milestones, gamma=st.sampled_from([0.1, 0.5, 1.0]), begun=st.integers(0, 9))
def test_a_schedule_continues_another_when_the_epochs_begun_keep_their_rates(old, new, gamma, begun):
    # The reference is the rate of every step, not epoch_lr, which continues() uses.
    spe = 3
    earlier = MultiStep(0.1, old, 0.5) if old else Constant(0.1)
    later = MultiStep(0.1, new, gamma) if new else Constant(0.1)
    same = all(later.lr(s, spe) == earlier.lr(s, spe) for s in range(begun * spe))
    assert later.continues(earlier, begun) == same


def test_only_an_equal_onecycle_continues_one():
    cycle = OneCycle(0.1, 50)
    assert cycle.continues(OneCycle(0.1, 50), 3)
    assert not OneCycle(0.1, 60).continues(cycle, 0)
    assert not Constant(0.1).continues(cycle, 0) and not cycle.continues(Constant(0.1), 0)


@pytest.mark.parametrize(
    "sched", [Constant(0.1), MultiStep(0.1, [3, 8], 0.2), OneCycle(0.1, 50, anneal="linear", three_phase=True)],
    ids=["constant", "multistep", "onecycle"],
)
def test_config_round_trip(sched):
    again = schedule_from_config(json.loads(json.dumps(sched.config())))
    assert again == sched
    assert [again.lr(s, 4) for s in range(50)] == [sched.lr(s, 4) for s in range(50)]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Constant(0.0), "lr must be a finite number > 0"),
        (lambda: Constant(float("nan")), "lr must be a finite number > 0"),
        (lambda: MultiStep(-0.1, [1]), "lr must be a finite number > 0"),
        (lambda: MultiStep(0.1, [5, 3]), r"milestones must be strictly increasing, got \[5, 3\]"),
        (lambda: MultiStep(0.1, [3, 3]), "strictly increasing"),
        (lambda: MultiStep(0.1, [-2, 3]), "every milestone must be an integer >= 1, got -2"),
        (lambda: MultiStep(0.1, [0]), "every milestone must be an integer >= 1, got 0"),
        (lambda: MultiStep(0.1, [1.5]), "every milestone must be an integer"),
        (lambda: MultiStep(0.1, 70), "milestones must be a list of epochs"),
        (lambda: MultiStep(0.1, [70], gamma=0.0), "gamma must be a finite number > 0"),
        (lambda: OneCycle(0.1, 0), "total_steps must be an integer >= 1, got 0"),
        (lambda: OneCycle(0.1, 100.0), "total_steps must be an integer"),
        (lambda: OneCycle(-1.0, 100), "max_lr"),
        (lambda: OneCycle(0.1, 100, pct_start=1.5), r"pct_start must be a number in \[0, 1\]"),
        (lambda: OneCycle(0.1, 100, pct_start=0.0), "leaves a phase no steps"),
        (lambda: OneCycle(0.1, 10, pct_start=0.1), "the phase from step 0 to 0 is empty"),
        (lambda: OneCycle(0.1, 10, pct_start=0.6, three_phase=True), "is empty"),
        (lambda: OneCycle(0.1, 1), "is empty"),
        (lambda: OneCycle(0.1, 100, anneal="exp"), "unknown anneal 'exp'"),
        (lambda: OneCycle(0.1, 100, three_phase="yes"), "three_phase must be True or False"),
        (lambda: OneCycle(0.1, 100, div_factor=0), "div_factor"),
        (lambda: OneCycle(0.1, 100).lr(100, 1), "step 100 is past the last step 99"),
        (lambda: Constant(0.1).lr(-1, 1), "step must be an integer >= 0, got -1"),
        (lambda: MultiStep(0.1, [1]).lr(3, 0), "steps_per_epoch must be an integer >= 1, got 0"),
        (lambda: schedule_from_config({"name": "cosine"}), "unknown schedule 'cosine'"),
        (lambda: schedule_from_config({"name": "constant", "lr": 0.1, "gamma": 0.5}), "schedule 'constant'.*gamma"),
    ],
)
def test_bad_options(make, match):
    with pytest.raises(OptionError, match=match):
        make()


def test_numpy_integers_are_steps():
    assert OneCycle(0.1, 100).lr(np.int64(5), np.int32(2)) == OneCycle(0.1, 100).lr(5, 2)
