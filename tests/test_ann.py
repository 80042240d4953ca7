"""The ANN view (eventsim.learning.ann): hand-derived gradients and training.

Gradients are checked against PyTorch autograd of the same ReLU network
(float64, relative error below 1e-9 of each gradient's largest entry) and,
without torch, against central finite differences of the cross-entropy.
Training a tiny network must lower the loss and beat chance clearly.
"""

from __future__ import annotations


import numpy as np
import pytest

import eventsim as es
from eventsim.datasets import load_mnist
from eventsim.errors import LayerError, OptionError
from eventsim.learning import SGD, Adam, CrossEntropy, SpikeCountMSE, parameters
from eventsim.learning.ann import ann_accuracy, ann_backward, ann_forward, train_ann
from shared_data import data_root


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)


def conv_pool_net(rng: np.random.Generator, dtype=np.float64) -> es.Network:
    """Strided, padded conv with bias; avg, max, sum pools; dropout; linear with bias; readout."""
    return es.Network([
        es.Conv2d(2, 4, 3, stride=2, padding=1, weight=_w(rng, 4, 2, 3, 3), bias=rng.normal(0, 0.1, 4)),  # 11 -> 6
        es.LIF(1.0, tau=20.0),
        es.AvgPool(2, stride=1),                                                      # 6 -> 5
        es.Conv2d(4, 5, 3, padding=2, weight=_w(rng, 5, 4, 3, 3)),                    # 5 -> 7
        es.IF(1.0),
        es.MaxPool(3, stride=2),                                                      # 7 -> 3
        es.SumPool(2, stride=1),                                                      # 3 -> 2
        es.Flatten(),
        es.Dropout(0.3),
        es.Linear(20, 6, weight=_w(rng, 6, 20)),
        es.IF(1.0),
        es.Linear(6, 3, weight=_w(rng, 3, 6), bias=rng.normal(0, 0.1, 3)),
        es.Readout(),
    ], input_shape=(2, 11, 11), dtype=dtype)


def residual_net(rng: np.random.Generator, dtype=np.float64) -> es.Network:
    """Spiking average pooling, residual blocks with identity (strided) and 1x1-conv skips."""
    return es.Network([
        es.Conv2d(1, 3, 3, padding=1, weight=_w(rng, 3, 1, 3, 3)),
        es.IF(1.0),
        es.Residual([es.Conv2d(3, 3, 3, padding=1, weight=_w(rng, 3, 3, 3, 3)), es.IF(1.0),
                     es.Conv2d(3, 3, 3, padding=1, weight=_w(rng, 3, 3, 3, 3))], es.IF(1.0)),
        es.Residual([es.Conv2d(3, 4, 3, stride=2, padding=1, weight=_w(rng, 4, 3, 3, 3))], es.IF(1.0),
                    skip=es.Conv2d(3, 4, 1, stride=2, weight=_w(rng, 4, 3, 1, 1))),
        es.Residual([es.Conv2d(4, 4, 1, stride=2, weight=_w(rng, 4, 4, 1, 1))], es.IF(1.0), skip=es.Identity(2)),
        es.SpikingAvgPool(2),
        es.Flatten(),
        es.Linear(4, 3, weight=_w(rng, 3, 4)),
        es.Readout(),
    ], input_shape=(1, 8, 8), dtype=dtype)


def first_layer_residual_net(rng: np.random.Generator) -> es.Network:
    """A residual block as the first layer: no input gradient is needed through it."""
    return es.Network([
        es.Residual([es.Conv2d(2, 2, 3, padding=1, weight=_w(rng, 2, 2, 3, 3))], es.IF(1.0)),
        es.Flatten(),
        es.Linear(2 * 5 * 5, 3, weight=_w(rng, 3, 50)),
        es.Readout(),
    ], input_shape=(2, 5, 5), dtype=np.float64)


BUILDERS = [conv_pool_net, residual_net, first_layer_residual_net]


# ------------------------------------------------------------ torch reference
def torch_forward(torch, layers, x, masks):
    """The ANN view written with torch.nn.functional; returns (output, {key: leaf tensor})."""
    F = torch.nn.functional
    leaves = {}

    def leaf(layer, what):
        t = torch.tensor(getattr(layer, what), requires_grad=True)
        leaves[f"{layer.name}.{what}"] = t
        return t

    def apply(layer, x):
        if isinstance(layer, es.Readout):
            return x
        if isinstance(layer, es.LIF):
            return torch.relu(x)
        if isinstance(layer, es.Conv2d):
            bias = leaf(layer, "bias") if layer.bias is not None else None
            return F.conv2d(x, leaf(layer, "weight"), bias, stride=layer.stride, padding=layer.padding)
        if isinstance(layer, es.Linear):
            bias = leaf(layer, "bias") if layer.bias is not None else None
            return F.linear(x, leaf(layer, "weight"), bias)
        if isinstance(layer, (es.AvgPool, es.SpikingAvgPool)):
            return F.avg_pool2d(x, layer.kernel_size, layer.stride)
        if isinstance(layer, es.SumPool):
            return F.avg_pool2d(x, layer.kernel_size, layer.stride) * float(np.prod(layer.kernel_size))
        if isinstance(layer, es.MaxPool):
            return F.max_pool2d(x, layer.kernel_size, layer.stride)
        if isinstance(layer, es.Identity):
            return x[..., :: layer.stride[0], :: layer.stride[1]]
        if isinstance(layer, es.Flatten):
            return x.flatten(1)
        if isinstance(layer, es.Dropout):
            return x * torch.tensor(masks[layer.name]) * layer.scale if layer.name in masks else x
        if isinstance(layer, es.Residual):
            main = x
            for inner in layer.main:
                main = apply(inner, main)
            return torch.relu(main + apply(layer.skip, x))
        raise AssertionError(f"no torch twin for {layer!r}")

    out = torch.tensor(x)
    for layer in layers:
        out = apply(layer, out)
    return out, leaves


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_torch_autograd(build, seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    net = build(rng)
    x = rng.normal(0.5, 1.0, (3, *net.input_shape))
    logits, cache = ann_forward(net, x, train=True, rng=rng)
    upstream = rng.normal(size=logits.shape)
    ours = ann_backward(net, cache, upstream)

    out, leaves = torch_forward(torch, net.layers, x, cache.masks)
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    (out * torch.tensor(upstream)).sum().backward()
    assert ours.keys() == leaves.keys() == parameters(net).keys()
    for key, t in leaves.items():
        ref = t.grad.numpy()
        scale = np.abs(ref).max()
        err = np.abs(ours[key] - ref).max()
        assert err <= 1e-9 * scale or (scale == 0 and err == 0), f"{key}: error {err:.3g}, largest {scale:.3g}"


# --------------------------------------------------------- finite differences
@pytest.mark.parametrize("build", BUILDERS)
def test_gradients_match_finite_differences(build):
    rng = np.random.default_rng(7)
    net = build(rng)
    x = rng.normal(0.5, 1.0, (4, *net.input_shape))
    labels = rng.integers(0, 3, 4)
    loss = CrossEntropy()
    # One dropout mask for every evaluation: draw it from the same seed each time.
    def value() -> float:
        logits, _ = ann_forward(net, x, train=True, rng=np.random.default_rng(99))
        return loss.value_and_grad(logits, labels)[0]

    logits, cache = ann_forward(net, x, train=True, rng=np.random.default_rng(99))
    grads = ann_backward(net, cache, loss.value_and_grad(logits, labels)[1])
    eps = 1e-6
    for key, p in parameters(net).items():
        for flat in rng.choice(p.size, size=min(p.size, 6), replace=False):
            where = np.unravel_index(flat, p.shape)
            old = p[where]
            p[where] = old + eps
            up = value()
            p[where] = old - eps
            down = value()
            p[where] = old
            numeric = (up - down) / (2 * eps)
            assert abs(grads[key][where] - numeric) <= 1e-6 * max(1.0, abs(numeric)), (key, where)


# ------------------------------------------------------------------- forward
def test_forward_matches_relu_reading_and_keeps_dtype():
    rng = np.random.default_rng(3)
    net = conv_pool_net(rng, dtype=np.float32)
    x = rng.random((2, *net.input_shape))  # float64 input is computed in float32
    logits, cache = ann_forward(net, x)
    assert logits.dtype == np.float32 and logits.shape == (2, 3) and cache.masks == {}
    grads = ann_backward(net, cache, np.ones_like(logits))
    assert all(grads[k].dtype == p.dtype for k, p in parameters(net).items())  # float64 weights stay float64
    small = tiny_net(rng)
    grads = ann_backward(small, ann_forward(small, rng.random((2, 1, 8, 8)))[1], np.ones((2, 4), np.float32))
    assert all(g.dtype == np.float32 for g in grads.values())
    again, _ = ann_forward(net, x)  # no dropout outside training: deterministic
    np.testing.assert_array_equal(logits, again)


def test_bad_inputs_are_refused():
    net = conv_pool_net(np.random.default_rng(0))
    with pytest.raises(ValueError, match="float array"):
        ann_forward(net, np.zeros((1, 2, 11, 11), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(batch"):
        ann_forward(net, np.zeros((1, 11, 11)))
    with pytest.raises(LayerError, match="needs an rng"):
        ann_forward(net, np.zeros((1, 2, 11, 11)), train=True)
    with pytest.raises(ValueError, match="channel axis"):
        train_ann(net, np.zeros((4, 11, 11)), np.zeros(4, np.int64), epochs=1, optimizer=Adam(),
                  rng=np.random.default_rng(0), progress=None)
    with pytest.raises(OptionError, match="readout loss"):
        train_ann(net, np.zeros((4, 2, 11, 11)), np.zeros(4, np.int64), epochs=1, optimizer=Adam(),
                  rng=np.random.default_rng(0), loss=SpikeCountMSE(on_count=5.0), progress=None)


class Squares(es.layers.Layer):
    """A layer type the ANN view does not know."""

    kind = "square"

    def output_shape(self, input_shape):
        return tuple(input_shape)


def test_unsupported_layer_raises():
    rng = np.random.default_rng(0)
    net = es.Network([es.Linear(4, 3, weight=_w(rng, 3, 4)), Squares(name="sq1"), es.Readout()], input_shape=(4,))
    with pytest.raises(LayerError, match=r"'sq1' \(Squares\): has no ANN view"):
        ann_forward(net, np.zeros((1, 4), np.float32))


# ------------------------------------------------------------------ training
def synthetic_images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes: a bright bar in one of four places of a noisy 1x8x8 image."""
    labels = rng.integers(0, 4, n)
    images = rng.random((n, 1, 8, 8)) * 0.5
    for k, (rows, cols) in enumerate([(slice(0, 2), slice(None)), (slice(6, 8), slice(None)),
                                      (slice(None), slice(0, 2)), (slice(None), slice(6, 8))]):
        images[labels == k, 0, rows, cols] += 0.5
    return images, labels


def tiny_net(rng: np.random.Generator) -> es.Network:
    net = es.Network([
        es.Conv2d(1, 4, 3, padding=1), es.IF(1.0), es.AvgPool(2),
        es.Flatten(), es.Dropout(0.1), es.Linear(64, 4), es.Readout(),
    ], input_shape=(1, 8, 8), dtype=np.float32)
    es.learning.init_lee2020(net, rng)
    return net


def test_training_lowers_the_loss_and_beats_chance():
    rng = np.random.default_rng(0)
    images, labels = synthetic_images(rng, 512)
    test_images, test_labels = synthetic_images(rng, 256)
    net = tiny_net(rng)
    weights = parameters(net)["conv1.weight"]
    before = ann_accuracy(net, test_images, test_labels)
    history = train_ann(net, images, labels, epochs=4, batch_size=32, optimizer=Adam(1e-2), rng=rng, progress=None)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert ann_accuracy(net, test_images, test_labels) >= 0.9 > before + 0.2
    assert parameters(net)["conv1.weight"] is weights  # trained in place: the SNN has the new weights


def test_training_is_reproducible_from_the_rng():
    def run() -> np.ndarray:
        rng = np.random.default_rng(5)
        images, labels = synthetic_images(rng, 100)
        net = tiny_net(rng)
        train_ann(net, images, labels, epochs=2, batch_size=16, optimizer=SGD(0.1, momentum=0.9), rng=rng,
                  progress=None)
        return parameters(net)["fc1.weight"].copy()

    np.testing.assert_array_equal(run(), run())


def test_training_on_an_mnist_subset():
    images, labels = load_mnist(data_root(), "train")
    x = images[:3000, None].astype(np.float32) / 255
    rng = np.random.default_rng(0)
    net = es.Network([
        es.Conv2d(1, 8, 5, stride=2), es.IF(1.0), es.AvgPool(2),
        es.Flatten(), es.Linear(8 * 6 * 6, 10), es.Readout(),
    ], input_shape=(1, 28, 28), dtype=np.float32)
    es.learning.init_lee2020(net, rng)
    history = train_ann(net, x[:2500], labels[:2500], epochs=2, optimizer=Adam(2e-3), rng=rng, progress=None)
    assert history[1]["loss"] < history[0]["loss"]
    assert ann_accuracy(net, x[2500:], labels[2500:3000]) > 0.7  # chance: 0.1
