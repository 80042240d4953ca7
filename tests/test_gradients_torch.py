"""``bptt`` and ``lee2020-code`` against PyTorch autograd of the same forward pass.

tests/torch_reference.py re-implements the forward recursion in PyTorch
(float64): ``bptt`` with the surrogate as a custom autograd function and the
reset detached or not; ``lee2020-code`` with the mechanics of Lee et al.'s
published code (gated threshold, straight-through x 1/theta, the NG hook on
every step's spike gradient, leaks with identity gradient). On random
networks (conv, linear, every pooling, residual blocks, dropout with a fixed
mask, both resets, strict and >=) the event-driven rules must agree with
autograd to a relative error below 1e-9 (relative to the largest entry of
each gradient).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")

from eventsim.learning.rules import BPTT, Lee2020Code  # noqa: E402
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle  # noqa: E402
from strategies import deep_cases, net_cases  # noqa: E402
from torch_reference import torch_gradients  # noqa: E402

FLOAT64 = st.just(np.float64)
SURROGATES = st.sampled_from(
    [StraightThrough(), FastSigmoid(c=0.0), FastSigmoid(c=10.0), FastSigmoid(c=2.0, b=0.5), ArcTan(),
     ArcTan(alpha=0.5), Sigmoid(), Sigmoid(alpha=1.0), Triangle(), Triangle(width=0.25)]
)


def assert_gradients_close(ours: dict, ref: dict, rtol: float = 1e-9) -> None:
    assert ours.keys() == ref.keys()
    for key, r in ref.items():
        scale = np.abs(r).max()
        err = np.abs(ours[key].astype(np.float64) - r).max()
        assert err <= rtol * scale or (scale == 0 and err == 0), f"{key}: max error {err:.3g}, largest entry {scale:.3g}"


def _run(case, rule, train_seed):
    train = train_seed is not None
    rng = np.random.default_rng(train_seed) if train else None
    result = case.network.run(case.events, record=rule.records, train=train, rng=rng)
    g = np.random.default_rng(case.seed + 1).normal(size=(case.batch,) + case.network.output_shape)
    grads = rule.gradients(case.network, case.events, result, g)
    return grads, g, (result.masks if train else None)


@settings(max_examples=3 * settings.default.max_examples)  # the heart of the oracle: more cases
@given(case=st.one_of(net_cases(dtypes=FLOAT64), deep_cases(dtypes=FLOAT64)), surrogate=SURROGATES, detach=st.booleans(),
       train_seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_bptt_equals_autograd(case, surrogate, detach, train_seed):
    rule = BPTT(surrogate=surrogate, detach_reset=detach)
    grads, g, masks = _run(case, rule, train_seed)
    ref = torch_gradients(case.network, case.events.to_dense(), g, rule="bptt", surrogate=surrogate,
                          detach_reset=detach, masks=masks)
    assert_gradients_close(grads, ref)


@settings(max_examples=3 * settings.default.max_examples)  # the heart of the oracle: more cases
@given(case=st.one_of(net_cases(dtypes=FLOAT64, hard_zero=True), deep_cases(dtypes=FLOAT64, hard_zero=True)), train_seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_lee2020_code_equals_hook_mechanics(case, train_seed):
    grads, g, masks = _run(case, Lee2020Code(), train_seed)
    ref = torch_gradients(case.network, case.events.to_dense(), g, rule="lee2020-code", masks=masks)
    assert_gradients_close(grads, ref)
