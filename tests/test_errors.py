"""Bad input never becomes numbers: each mistake raises an error naming the layer and the problem."""

import numpy as np
import pytest

import eventsim as es
from eventsim import EventsError, LayerError, OptionError


def conv(cin=2, cout=4, k=3, **kw):
    return es.Conv2d(cin, cout, k, weight=np.ones((cout, cin, k, k), np.float32), **kw)


def spikes(shape, steps=3, dtype=np.float32):
    return es.Events.from_dense(np.ones((1, steps) + shape, dtype))


@pytest.mark.parametrize(
    "layers, input_shape, message",
    [
        ([conv(cin=3)], (2, 8, 8), r"layer 'conv1' \(Conv2d\): expects 3 input channels, got 2"),
        ([conv(), es.LIF(1.0, leak=1.0), conv(cin=5, name="c2")], (2, 8, 8),
         r"layer 'c2' \(Conv2d\): expects 5 input channels, got 4"),
        ([conv(k=5)], (2, 3, 3), r"'conv1' \(Conv2d\): kernel \(5, 5\) does not fit input"),
        ([es.Linear(10, 2, weight=np.ones((2, 10), np.float32))], (2, 8, 8),
         r"'fc1' \(Linear\): needs a flat \(N,\) input, got shape \(2, 8, 8\); put a Flatten\(\) before it"),
        ([es.Flatten(), es.Linear(10, 2, weight=np.ones((2, 10), np.float32))], (2, 8, 8),
         r"'fc1' \(Linear\): expects 10 input features, got 128"),
        ([es.SpikingAvgPool(4)], (1, 3, 3), r"'pool1' \(SpikingAvgPool\): window \(4, 4\) is larger"),
        ([es.MaxPool(2)], (12,), r"'pool1' \(MaxPool\): needs a \(C, H, W\) input"),
        ([es.Readout(), es.IF()], (4,), r"'readout1' \(Readout\): a Readout must be the last layer"),
        ([es.LIF(np.ones(3), leak=0.5)], (2, 4, 4), r"'lif1' \(LIF\): has 3 thresholds but its input has 2 channels"),
        ([es.Residual([conv(cout=2, k=3, padding=1)], es.IF(), skip=es.Identity(2))], (2, 6, 6),
         r"'res1' \(Residual\): main path gives shape \(2, 6, 6\) but the skip gives \(2, 3, 3\)"),
        ([conv(name="a"), conv(cin=4, name="a")], (2, 8, 8), r"duplicate layer names \['a'\]"),
    ],
)
def test_shape_and_structure_errors_name_the_layer(layers, input_shape, message):
    with pytest.raises(LayerError, match=message):
        es.Network(layers, input_shape)


def test_same_layer_object_twice():
    neuron = es.IF()
    with pytest.raises(LayerError, match="same layer object appears twice"):
        es.Network([neuron, neuron], (4,))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: es.Conv2d(2, 4, 3, weight=np.ones((4, 2, 3), np.float32)), r"weight must have shape \(4, 2, 3, 3\)"),
        (lambda: es.Conv2d(2, 4, 3, weight=np.ones((4, 2, 3, 3), np.int64)), "weight must be float32 or float64"),
        (lambda: es.Conv2d(2, 4, 3, weight=[[1.0]]), "weight must be a numpy array"),
        (lambda: es.Conv2d(2, 4, 0), "kernel_size must be >= 1"),
        (lambda: es.Conv2d(2, 4, 3, stride=0), "stride must be >= 1"),
        (lambda: es.Conv2d(2, 4, 3, padding=-1), "padding must be >= 0"),
        (lambda: es.Linear(3, 2, weight=np.array([[1, np.nan, 0], [0, 0, 0]], np.float32)),
         r"weight is not finite at index \(0, 1\)"),
        (lambda: es.Linear(3, 2, bias=np.array([np.inf, 0])), r"bias is not finite at index \(0,\)"),
        (lambda: es.LIF(1.0), "give exactly one of leak= .* or tau="),
        (lambda: es.LIF(1.0, leak=0.5, tau=3.0), "give exactly one of leak="),
        (lambda: es.LIF(1.0, leak=1.5), r"leak must be in \[0, 1\]"),
        (lambda: es.LIF(1.0, tau=-2.0), "tau must be a positive finite"),
        (lambda: es.LIF(0.0, leak=0.5), "threshold must be positive"),
        (lambda: es.LIF(np.array([1.0, np.nan]), leak=0.5), "threshold must be positive"),
        (lambda: es.LIF(np.ones((2, 2)), leak=0.5), "threshold must be a number or a 1-D array"),
        (lambda: es.IF(1.0, reset="soft", v_reset=0.5), "v_reset applies to the hard reset only"),
        (lambda: es.IF(1.0, strict="yes"), "strict must be True or False"),
        (lambda: es.Dropout(1.0), r"p must be in \[0, 1\)"),
        (lambda: es.SpikingAvgPool(2, threshold_ratio=0), "threshold_ratio must be positive"),
        (lambda: es.Residual([], es.IF()), "main path is empty"),
        (lambda: es.Residual([es.IF()], es.IF()), "main path must end in a weighted synapse"),
        (lambda: es.Residual([conv()], es.Readout()), "neuron must be a spiking LIF/IF layer"),
        (lambda: es.Residual([conv()], es.IF(), skip=es.MaxPool(2)), "skip must be Identity or Conv2d"),
        (lambda: es.IF(name="a.b"), "name must be a non-empty string without '.'"),
    ],
)
def test_invalid_layer_parameters(make, message):
    with pytest.raises(LayerError, match=message):
        make()


def test_unknown_options():
    with pytest.raises(OptionError, match="unknown reset 'hardd'; choose one of 'hard', 'soft'"):
        es.LIF(1.0, leak=0.5, reset="hardd")
    net = es.Network([es.IF()], (4,))
    with pytest.raises(OptionError, match="unknown record 'spike'; choose one of 'counts', 'traces'"):
        net.run(spikes((4,)), record=("spike",))
    with pytest.raises(OptionError, match="window must be >= 1"):
        net.run(spikes((4,)), window=0)
    with pytest.raises(OptionError, match="unknown energy model 'fp16'"):
        es.estimate_energy(1, 1, "fp16")
    with pytest.raises(LayerError, match="dtype must be float32 or float64"):
        es.Network([es.IF()], (4,), dtype=np.float16)


def test_weights_made_invalid_after_construction_are_caught_at_run():
    layer = conv()
    net = es.Network([layer, es.IF()], (2, 6, 6))
    layer.weight[1, 0, 2, 2] = np.nan  # in-place edits bypass the setter
    with pytest.raises(LayerError, match=r"'conv1' \(Conv2d\): weight is not finite at index \(1, 0, 2, 2\)"):
        net.run(spikes((2, 6, 6)))


def test_missing_and_mistyped_weights():
    net = es.Network([es.Conv2d(2, 4, 3), es.IF()], (2, 6, 6))
    with pytest.raises(LayerError, match=r"'conv1' \(Conv2d\): has no weight"):
        net.run(spikes((2, 6, 6)))
    net64 = es.Network([conv(), es.IF()], (2, 6, 6), dtype=np.float64)
    with pytest.raises(LayerError, match="holds a float32 weight but the network runs in float64"):
        net64.run(spikes((2, 6, 6), dtype=np.float64))


def test_input_that_does_not_fit_the_network():
    net = es.Network([conv(), es.IF()], (2, 6, 6))
    with pytest.raises(EventsError, match=r"input events have shape \(2, 5, 6\) but the network expects \(2, 6, 6\)"):
        net.run(spikes((2, 5, 6)))
    with pytest.raises(EventsError, match="input events are float64 but the network runs in float32"):
        net.run(spikes((2, 6, 6), dtype=np.float64))
    with pytest.raises(EventsError, match="must be an Events container"):
        net.run(np.ones((1, 3, 2, 6, 6), np.float32))


def test_dropout_training_needs_a_generator_and_valid_masks():
    net = es.Network([es.IF(), es.Dropout(0.5)], (4,))
    with pytest.raises(LayerError, match=r"'drop1' \(Dropout\): a training run with dropout needs rng="):
        net.run(spikes((4,)), train=True)
    with pytest.raises(LayerError, match=r"mask must be a bool array of shape \(1, 4\)"):
        net.run(spikes((4,)), train=True, masks={"drop1": np.ones((1, 4))})
    with pytest.raises(OptionError, match=r"not Dropout layers of this network: \['if1'\]"):
        net.run(spikes((4,)), train=True, masks={"if1": np.ones((1, 4), bool)})
    with pytest.raises(OptionError, match="masks apply to training runs only"):
        net.run(spikes((4,)), masks={"drop1": np.ones((1, 4), bool)})
