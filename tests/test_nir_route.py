"""The NIR route (eventsim/testing/nir_route.py): eventsim networks through a framework's own NIR code.

The conforming and diverging rows run in tests/test_adapters_conform.py; here, what the route declines
and why, and the framework-only reproducers of the defects the rows show, each checked against NIR's
semantics (docs/nir.md: forward Euler, inputs of a node summed, Flatten dimensions without the batch).
"""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nir")
pytest.importorskip("nirtorch")

import eventsim as es  # noqa: E402
from eventsim.testing import Unsupported, reference_records  # noqa: E402
from eventsim.testing import nir_route  # noqa: E402


def _linear(neuron, dtype=np.float32) -> es.Network:
    return es.Network([es.Linear(3, 2, weight=np.full((2, 3), 0.5, dtype)), neuron], (3,), dtype=dtype)


@pytest.mark.parametrize("framework", ["snntorch", "norse"])
def test_a_float64_network_is_declined_for_the_importers_float32_weights(framework):
    pytest.importorskip(framework if framework == "snntorch" else "norse.torch")
    with pytest.raises(Unsupported, match="builds float32 weights"):
        nir_route.candidate(framework).build(_linear(es.LIF(1.0, leak=0.5), np.float64))


@pytest.mark.parametrize("framework", ["snntorch", "norse"])
def test_what_nir_cannot_say_is_declined_naming_the_layer(framework):
    """to_nir(portable=True) refuses a soft reset (NIR's LIF resets to v_reset): declined, not diverging."""
    pytest.importorskip(framework if framework == "snntorch" else "norse.torch")
    with pytest.raises(Unsupported, match="NIR cannot express it: layer 'lif1'.*soft reset"):
        nir_route.candidate(framework).build(_linear(es.LIF(1.0, leak=0.5, reset="soft")))


@pytest.mark.parametrize("layer, problem", [
    (es.Readout(leak=0.5), "no case for NIR's LI"),
    (es.IF(1.0), "asserts r == 1"),
    (es.LIF(np.array([1.0, 0.5]), leak=0.5), "one threshold per layer"),
    (es.LIF(1.0, leak=0.5, input_gain=0.5), "hack_w_scale"),
])
def test_snntorch_import_declines_what_it_has_no_counterpart_for(layer, problem):
    pytest.importorskip("snntorch")
    with pytest.raises(Unsupported, match=problem):
        nir_route.candidate("snntorch").build(_linear(layer))


def test_snntorch_import_feeds_the_input_of_a_recurrent_loop_through_its_weights():
    """import_from_nir makes the loop lif <-> w_rec a subgraph input -> w_rec -> lif that nirtorch runs as a
    generic graph: lif integrates W (I + s[t-1]), not I + W s[t-1]. A neuron that never fires with W = 1/2
    and leak 1/2 under the current 1: U = 1/2 U + 1/2 (1/2, 3/4, 7/8), where eventsim has 1, 3/2, 7/4."""
    pytest.importorskip("snntorch")
    net = es.Network([es.Linear(1, 1, weight=np.ones((1, 1), np.float32)),
                      es.Recurrent(es.LIF(100.0, leak=0.5), es.Linear(1, 1, weight=np.full((1, 1), 0.5, np.float32)))],
                     (1,))
    spikes = np.ones((3, 1, 1), np.float32)
    theirs = nir_route.candidate("snntorch").build(net).run(spikes)["rec1.lif1"].potentials.ravel()
    assert list(theirs) == [0.5, 0.75, 0.875]
    assert list(reference_records(net, spikes)["rec1.lif1"].potentials.ravel()) == [1.0, 1.5, 1.75]


def test_snntorch_export_route_reads_snntorchs_graph_as_the_original_network():
    """export_to_nir of Leaky(reset_mechanism="zero") and eventsim's from_nir at dt = 1e-4: the original
    network's records, under the original names."""
    pytest.importorskip("snntorch")
    net = _linear(es.LIF(1.0, leak=0.75))
    spikes = np.ones((4, 1, 3), np.float32)
    records = nir_route.candidate("snntorch", "export").build(net).run(spikes)
    assert set(records) == {"lif1"}
    np.testing.assert_array_equal(records["lif1"].potentials, reference_records(net, spikes)["lif1"].potentials)


def test_snntorch_export_route_declines_a_network_of_one_module():
    pytest.importorskip("snntorch")
    with pytest.raises(Unsupported, match="network of one module"):
        nir_route.candidate("snntorch", "export").build(es.Network([es.LIF(1.0, leak=0.5)], (3,)))


#: The replay token (eventsim/testing/replay.py) of the case conform found Norse's CubaLIF rounding on.
CUBALIF_CASE = ("es1.eNqNVNtum0AQ_ZVqX4uCnRLVqpqHdZxWkRypea4qNDUDrEwWtLsYIcv_3tnlYiBgdZ7mPmfOXs7s"
                "KGTEvrGohkgcPsW5qkBFzGORqQukQJzlYL7ck0fIojShTsH6f6-DPx7LoEalyTo3KuXvhURQlJ4XRuSSgmeqDGMEUyokcx1QjBoN"
                "PB77K4AUWWaZxyS8u8GHNXWpUCSpsU1AKait0iH7HgeU0OPxHKIIDFCM8y3_VXGe7ALeyYnsak_2y5NP8cTayX7D-bO1eWLzK5v_"
                "k_tdDdU_sguJN9jw5cd4PZPSGmmeEY-ru_sHogXhaHVSKYIEn6UNq6ewdazuVoTdKHEgw6gSO34TEHJYG0ZoB1PvGDKNPT2ZiC0_"
                "oIRJ39GIA_mwzNBSr2sJhcaww7H5-nC5EDm6EEfUNzgkEic0NlLtNi1tT_yU8P-ULR_VO_lY_-Zotv35cv--fl6SJu5P3M62xzqU"
                "3nb7jPpfj30fjPBN8Tb1Ld6qzR_0a_n6TI2ba-ji3P_Ix26Iz5_YE762vJu3sP9MfCF_sF8vQz7m9h3Vb0bn6-R1jr8b-zh-bsx7"
                "vd6HKV43fzivvz_zeK_ntRB_5ot8vE3u03i_Bp87zx7PI30Z3c-l-7_VvjO075gefoRSC1O7d375B0WokuQ")


# ------------------------------------------------------------------ the reproducers
def test_snntorch_flatten_reproducer_shows_the_batch_flattened():
    pytest.importorskip("snntorch")
    written, original, imported = nir_route.reproduce_snntorch_flatten()
    assert "Flatten(start_dim=0, end_dim=-1)" in written  # NIR's dimensions leave the batch out
    assert original.endswith("(3, 2)")
    assert "fails" in imported or not imported.endswith("(3, 2)")


def test_snntorch_recurrent_loop_reproducer_shows_the_spikes_changed_and_two_loops_failing():
    """RLeaky(beta 1/2, theta 1, zero reset, W_rec 1/4, b_rec 1/8) after Linear(0.5) of the input (1, 1):
    U = 1 + 1/8 (spike), then 0 (its zero reset discards the step), then 1.125 again: spikes at steps 1 and
    3. The round trip feeds the current 1 through W_rec: 1/4 + 1/8 first, and fires otherwise."""
    pytest.importorskip("snntorch")
    round_trip, two_loops = nir_route.reproduce_snntorch_recurrent_loops()
    assert "spikes [1.0, 0.0, 1.0, 0.0]; after export_to_nir and import_from_nir: [" in round_trip
    assert not round_trip.endswith("import_from_nir: [1.0, 0.0, 1.0, 0.0]")
    assert "Error" in two_loops


def test_snntorch_v_reset_reproducer_shows_a_reset_to_zero():
    pytest.importorskip("snntorch")
    _, built, run = nir_route.reproduce_snntorch_v_reset()
    assert "reset_mechanism='zero'" in built
    assert "spikes [1.0, 0.0], potential after the second step 0.0" in run  # NIR: 1/2 * -1/2 = -0.25


def test_snntorch_export_reproducer_shows_subtract_written_as_a_reset_to_zero():
    """Leaky(beta 1/2, theta 1, subtract) on 1.25, 0.5, 0.875: U = 1.25 (spike), 0.625 + 0.5 - 1 = 0.125,
    0.0625 + 0.875 = 0.9375 (no spike); read back as a reset to 0: 1.25, 0.5, 1.125 (spike)."""
    pytest.importorskip("snntorch")
    written, spikes = nir_route.reproduce_snntorch_export_subtract()
    assert "v_reset [0.0]" in written
    assert spikes.endswith("spikes [1.0, 0.0, 0.0]; after export_to_nir and import_from_nir: [1.0, 0.0, 1.0]")


def test_norse_flatten_reproducer_shows_the_batch_flattened():
    pytest.importorskip("norse.torch")
    built, mapped, _ = nir_route.reproduce_norse_flatten()
    assert "Flatten(start_dim=0, end_dim=-1)" in built
    assert "(6,)" in mapped


def test_norse_lif_reproducer_shows_r_and_v_reset_dropped():
    """NIR LIF(tau 2, r 2, v_reset -1/2) at dt 1: v = (2 * 0.75) / 2 = 0.75; Norse drops r: 0.375. A spike
    resets to -1/2; Norse to 0."""
    pytest.importorskip("norse.torch")
    _, first, second, _ = nir_route.reproduce_norse_lif_r_and_v_reset()
    assert "module spikes 0.0, v 0.375; the NIR node spikes 0.0, v 0.75" in first
    assert "module spikes 1.0, v 0.0; the NIR node spikes 1.0, v -0.5" in second


def test_norse_two_inputs_reproducer_shows_the_second_input_lost():
    pytest.importorskip("norse.torch")
    _, shown = nir_route.reproduce_norse_two_inputs()
    assert "v = [[1.5]]" not in shown


def test_norse_cubalif_rounds_its_current_in_the_euler_form():
    """Norse's from_nir makes a CubaLIF's current an LIBoxCell, J + k_syn ((0 - J) + w_in I), where eventsim
    computes alpha J + I: the conform case that found it (float32, alpha 7/8, w_in = 8, 11 steps), an ulp
    apart at the last step, and equal in every earlier step."""
    pytest.importorskip("norse.torch")
    from eventsim.testing.replay import read_token

    case, _, _ = read_token(CUBALIF_CASE)
    records = nir_route.candidate("norse").build(case.network).run(case.spikes)["lif1"].potentials.ravel()
    ours = reference_records(case.network, case.spikes)["lif1"].potentials.ravel()
    np.testing.assert_array_equal(records[:-1], ours[:-1])
    assert records[-1] != ours[-1] and abs(records[-1] - ours[-1]) <= 2 * np.spacing(np.float32(abs(ours[-1])))
