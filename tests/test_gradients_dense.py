"""``bptt`` and ``lee2020`` against the dense NumPy references of eventsim.learning.dense.

The references were written from docs/semantics.md and the paper alone, on
dense ``(B, T, ...)`` arrays with the dense forward twin, without the event
path: ``bptt_gradients`` unrolls the recursion step by step,
``lee2020_gradients`` is Lee et al. 2020 eqs. 22-26 on spike counts. Both
compute in float64. On float64 networks (the oracle mode) the event-driven
rules must agree to a relative error below 1e-9 of each gradient's scale
(its largest entry, at least 1e-4 of the network's largest and at least 1e-4: see
eventsim.testing.compare). Float32 networks are not compared here: the event path then
accumulates in float32, and with cancelling terms its rounding error is not
bounded by any fixed fraction of the result (a 1e-4 bound failed on a case
whose terms were about 100x the sum).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsim.learning.dense import bptt_gradients, lee2020_gradients
from eventsim.learning.rules import BPTT, Lee2020
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle
from eventsim.testing.compare import GRADIENT_RTOL, gradient_errors
from eventsim.testing.strategies import deep_cases, net_cases

SURROGATES = st.sampled_from([StraightThrough(), FastSigmoid(c=10.0), ArcTan(), Sigmoid(), Triangle(width=0.5)])
TRAIN = st.one_of(st.none(), st.integers(0, 2**16))


FLOAT64 = st.just(np.float64)


def assert_gradients_close(ours: dict, ref: dict, dtype, rtol: float = GRADIENT_RTOL) -> None:
    """Every gradient within ``rtol`` of its scale (eventsim.testing.compare.gradient_errors)."""
    assert ours.keys() == ref.keys()
    for key in ref:
        assert ours[key].dtype == dtype, key
    for d in gradient_errors(ref, ours):
        assert d.error <= rtol, str(d)


def _run(case, rule, train_seed):
    train = train_seed is not None
    result = case.network.run(case.events, record=rule.records, train=train,
                              rng=np.random.default_rng(train_seed) if train else None)
    g = np.random.default_rng(case.seed + 2).normal(size=(case.batch,) + case.network.output_shape)
    grads = rule.gradients(case.network, case.events, result, g)
    return grads, g, (result.masks if train else None)


@settings(max_examples=3 * settings.default.max_examples)  # the heart of the oracle: more cases
@given(case=st.one_of(net_cases(dtypes=FLOAT64), deep_cases(dtypes=FLOAT64)), surrogate=SURROGATES, detach=st.booleans(), train_seed=TRAIN)
def test_bptt_equals_dense_bptt(case, surrogate, detach, train_seed):
    grads, g, masks = _run(case, BPTT(surrogate=surrogate, detach_reset=detach), train_seed)
    ref = bptt_gradients(case.network, case.events.to_dense(), g, surrogate=surrogate, detach_reset=detach,
                         masks=masks)
    assert_gradients_close(grads, ref, case.dtype)


@settings(max_examples=3 * settings.default.max_examples)  # the heart of the oracle: more cases
@given(case=st.one_of(net_cases(dtypes=FLOAT64), deep_cases(dtypes=FLOAT64)), train_seed=TRAIN)
def test_lee2020_equals_dense_equations(case, train_seed):
    grads, g, masks = _run(case, Lee2020(), train_seed)
    ref = lee2020_gradients(case.network, case.events.to_dense(), g, masks=masks)
    assert_gradients_close(grads, ref, case.dtype)
