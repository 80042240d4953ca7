"""``bptt`` and ``lee2020-code`` against PyTorch autograd of the same forward pass.

:class:`eventsim.testing.torch_candidate.TorchCandidate` re-implements the
forward recursion in PyTorch (float64 here): ``bptt`` with the surrogate as
the derivative of the spike and the reset detached or not; ``lee2020-code``
with the mechanics of Lee et al.'s published code (gated threshold,
straight-through x 1/theta, the NG hook on every step's spike gradient, leaks
with identity gradient). On random networks (conv, linear, every pooling,
residual blocks, dropout with a fixed mask, both resets, strict and >=, input
gains, delayed resets) the event-driven rules must agree with autograd to a
relative error below 1e-9 of each gradient's scale (its largest entry, at
least 1e-4 of the network's largest and at least 1e-4: see eventsim.testing.compare).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")

from eventsim.learning.rules import BPTT, Lee2020Code  # noqa: E402
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle  # noqa: E402
from eventsim.testing.compare import GRADIENT_RTOL, gradient_errors  # noqa: E402
from eventsim.testing.protocol import GradientRequest  # noqa: E402
from eventsim.testing.strategies import Features, deep_cases, net_cases  # noqa: E402
from eventsim.testing.torch_candidate import TorchCandidate  # noqa: E402

FLOAT64 = st.just(np.float64)
OPTIONS = Features().including("input_gain", "reset_delayed")
SURROGATES = st.sampled_from(
    [StraightThrough(), FastSigmoid(c=0.0), FastSigmoid(c=10.0), FastSigmoid(c=2.0, b=0.5), ArcTan(),
     ArcTan(alpha=0.5), Sigmoid(), Sigmoid(alpha=1.0), Triangle(), Triangle(width=0.25)]
)


def assert_gradients_close(ours: dict, ref: dict, rtol: float = GRADIENT_RTOL) -> None:
    """Every gradient within ``rtol`` of its scale (eventsim.testing.compare.gradient_errors)."""
    assert ours.keys() == ref.keys()
    for d in gradient_errors(ref, ours):
        assert d.error <= rtol, str(d)


def _run(case, rule, train_seed):
    train = train_seed is not None
    rng = np.random.default_rng(train_seed) if train else None
    result = case.network.run(case.events, record=rule.records, train=train, rng=rng)
    g = np.random.default_rng(case.seed + 1).normal(size=(case.batch,) + case.network.output_shape)
    grads = rule.gradients(case.network, case.events, result, g)
    return grads, g, (result.masks if train else None)


def _autograd(case, rule, g, masks, surrogate=None, detach_reset=True):
    model = TorchCandidate(rule=rule).build(case.network)
    return model.gradients(case.spikes, GradientRequest(g, surrogate, detach_reset), masks=masks)


@settings(max_examples=3 * settings.default.max_examples)  # the heart of the oracle: more cases
@given(case=st.one_of(net_cases(dtypes=FLOAT64, features=OPTIONS), deep_cases(dtypes=FLOAT64, features=OPTIONS)),
       surrogate=SURROGATES, detach=st.booleans(), train_seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_bptt_equals_autograd(case, surrogate, detach, train_seed):
    rule = BPTT(surrogate=surrogate, detach_reset=detach)
    grads, g, masks = _run(case, rule, train_seed)
    assert_gradients_close(grads, _autograd(case, "bptt", g, masks, surrogate, detach))


@settings(max_examples=3 * settings.default.max_examples)  # the heart of the oracle: more cases
@given(case=st.one_of(net_cases(dtypes=FLOAT64, hard_zero=True, features=OPTIONS),
                      deep_cases(dtypes=FLOAT64, hard_zero=True, features=OPTIONS)),
       train_seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_lee2020_code_equals_hook_mechanics(case, train_seed):
    grads, g, masks = _run(case, Lee2020Code(), train_seed)
    assert_gradients_close(grads, _autograd(case, "lee2020-code", g, masks))
