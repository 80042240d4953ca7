"""eventsim's synapses as torch modules (eventsim/testing/torch_modules.py), for the framework adapters.

A module built for a dtype holds the layer's weights exactly as the layer
holds them in that dtype: no detour through float32 rounds a float64 weight.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import eventsim as es  # noqa: E402
from eventsim.testing.torch_modules import synapse_module  # noqa: E402

DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def test_a_float64_weight_is_not_rounded_to_float32():
    module = synapse_module(es.Linear(1, 1, weight=np.array([[0.1]])), torch.float64)
    assert module.weight.item() == 0.1  # 0.1 rounded to float32 and back is 0.10000000149011612


@given(dtype=st.sampled_from(sorted(DTYPES, key=str)), conv=st.booleans(), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_weights_and_biases_are_held_bit_for_bit_in_the_network_dtype(dtype, conv, bias, seed):
    rng = np.random.default_rng(seed)
    shape = (3, 2, 3, 3) if conv else (3, 5)
    weight = rng.normal(size=shape).astype(dtype)
    b = rng.normal(size=3).astype(dtype) if bias else None
    layer = es.Conv2d(2, 3, 3, weight=weight, bias=b) if conv else es.Linear(5, 3, weight=weight, bias=b)
    module = synapse_module(layer, DTYPES[dtype])
    assert module.weight.dtype == DTYPES[dtype]
    np.testing.assert_array_equal(module.weight.detach().numpy(), weight)
    if bias:
        np.testing.assert_array_equal(module.bias.detach().numpy(), b)
    else:
        assert module.bias is None


def test_a_network_without_weights_has_no_gradients_to_report():
    """A generated network may be neuron layers alone; autograd.grad refuses an empty list of inputs."""
    from eventsim.learning.surrogates import ArcTan
    from eventsim.testing import GradientRequest
    from eventsim.testing.torch_modules import parameter_gradients

    out = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)  # Norse's initial state requires grad
    request = GradientRequest(grad_output=np.ones((2, 3)), surrogate=ArcTan())
    assert parameter_gradients(out, request, {}) == {}
