"""What framework adapters share: eventsim's synapses as torch modules, and their gradients.

Frameworks (snnTorch, Norse) bring their own neurons but compute synapses
with plain ``torch.nn`` modules; :func:`synapse_module` builds those from an
eventsim layer, weights copied, in the adapter's dtype. Average pooling is
``nn.AvgPool2d``, which divides the window sum by k^2: with dyadic values
and power-of-two windows that is exactly eventsim's sum of inputs times 1/k^2.
:func:`network_output` and :func:`parameter_gradients` answer a gradient
request (eventsim/testing/protocol.py) from an adapter's per-step tensors.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from eventsim.errors import OptionError
from eventsim.layers import (
    AvgPool, Conv2d, Dropout, Flatten, Identity, Layer, Linear, MaxPool, Readout, Recurrent, Residual, SumPool,
)
from eventsim.network import Network
from eventsim.testing.protocol import GradientRequest, LayerRecord, Unsupported


def synapse_module(layer: Layer, dtype: Any, weighted: dict | None = None) -> Any | None:
    """The ``torch.nn`` module computing ``layer``'s step, or None if ``layer`` is not a synapse.

    Conv2d and Linear (bias included), AvgPool, SumPool (``divisor_override=1``),
    Identity (strided subsampling), MaxPool, Dropout (the identity: adapters
    run inference) and Flatten. ``dtype`` is a torch dtype. A Conv2d or
    Linear module is also kept in ``weighted`` under the layer's name, where
    an adapter reads its parameters' gradients.
    """
    import torch

    nn = torch.nn
    if isinstance(layer, Linear) and layer.delay is not None:
        raise Unsupported(f"layer {layer.name!r}: synaptic delays read earlier steps; a module run one step at a "
                          "time has no counterpart")
    if isinstance(layer, (Conv2d, Linear)):
        if isinstance(layer, Conv2d):
            module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                               padding=layer.padding, bias=layer.bias is not None, dtype=dtype)
        else:
            module = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=dtype)
        # Created in the target dtype: built in float32 and converted, float64 weights would be rounded.
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.asarray(layer.weight)))
            if layer.bias is not None:
                module.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
        if weighted is not None:
            weighted[layer.name] = module
        return module
    if isinstance(layer, AvgPool):
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride)
    if isinstance(layer, SumPool):
        return nn.AvgPool2d(layer.kernel_size, stride=layer.stride, divisor_override=1)
    if isinstance(layer, Identity):
        return nn.AvgPool2d(1, stride=layer.stride)
    if isinstance(layer, MaxPool):
        return nn.MaxPool2d(layer.kernel_size, stride=layer.stride)
    if isinstance(layer, Dropout):
        return nn.Identity()
    if isinstance(layer, Flatten):
        return nn.Flatten()
    return None


def network_output(network: Network, records: dict[str, tuple[list, list | None]]) -> Any:
    """What a gradient request differentiates (eventsim/testing/protocol.py), from per-step tensors.

    ``records`` maps layer names to ``(outputs, potentials)``, lists of one
    tensor per step. ``out`` is the readout ``U_L[T] / T`` of a network that
    ends in a Readout, else the last layer's output summed over the steps (a
    residual or recurrent block reports under its neuron's name).
    """
    last = network.layers[-1]
    outputs, potentials = records[last.neuron.name if isinstance(last, (Residual, Recurrent)) else last.name]
    if isinstance(last, Readout):
        return potentials[-1] / len(potentials)
    return sum(outputs[1:], outputs[0])


def parameter_gradients(out: Any, request: GradientRequest, weighted: dict[str, Any]) -> dict[str, np.ndarray]:
    """The gradients of ``L = sum(out * request.grad_output)`` for every weighted module, by autograd.

    ``weighted`` maps layer names to the ``nn.Conv2d`` / ``nn.Linear`` built
    for them; the result is keyed ``"name.weight"`` and ``"name.bias"``, as
    :func:`eventsim.learning.parameters.parameters`, zeros where the loss
    does not depend on a parameter.
    """
    import torch

    grad_output = np.asarray(request.grad_output)
    if grad_output.shape != tuple(out.shape):
        raise OptionError(f"grad_output must have the shape of the network output {tuple(out.shape)}, "
                          f"got {grad_output.shape}")
    loss = (out * torch.as_tensor(grad_output, dtype=out.dtype, device=out.device)).sum()
    leaves = {f"{name}.{what}": getattr(module, what) for name, module in weighted.items()
              for what in ("weight", "bias") if getattr(module, what) is not None}
    differentiable = leaves and loss.requires_grad  # a network without weights has nothing to differentiate
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True) if differentiable else [None] * len(
        leaves)
    return {key: (torch.zeros_like(leaf) if grad is None else grad).detach().cpu().numpy()
            for (key, leaf), grad in zip(leaves.items(), grads, strict=True)}


@contextmanager
def one_thread() -> Iterator[None]:
    """torch's intra-op parallelism off while an adapter computes, restored afterwards.

    Conformance networks are tiny (a few channels, maps of at most 9 x 9):
    splitting a conv2d of that size across threads only adds synchronisation,
    which on a loaded 2-core machine was measured at 6.7 ms per call against
    0.05 ms on one thread, and made a 200-case conform run take minutes.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class RecordingModel:
    """The ``run`` of a framework model whose ``_forward`` collects per-step tensors.

    ``_forward(spikes)`` returns ``{layer name: (outputs, potentials or None)}``,
    lists of one tensor per step; ``run`` calls it without autograd on one
    thread and stacks each list into the ``(T, batch, *shape)`` arrays of a
    :class:`~eventsim.testing.protocol.LayerRecord`.
    """

    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        raise NotImplementedError

    def run(self, spikes: np.ndarray) -> dict[str, LayerRecord]:
        import torch

        with torch.no_grad(), one_thread():
            records = self._forward(spikes)
        return {name: LayerRecord(_stack(outputs), None if potentials is None else _stack(potentials))
                for name, (outputs, potentials) in records.items()}


def _stack(values: list) -> np.ndarray:
    return np.stack([v.detach().cpu().numpy() for v in values])  # from the GPU too (a candidate on device="cuda")


class ResidualStep:
    """A residual block as one step of an adapter's model: ``neuron(main(x) + skip(x))``.

    ``main`` lists the callables of the main path in order (synapse modules
    and the adapter's neuron layers), ``skip`` is the skip path's module and
    ``neuron`` the adapter's neuron layer that takes the sum
    (docs/semantics.md, "Synapses and pooling").
    """

    def __init__(self, main: list, skip: Any, neuron: Any) -> None:
        self.main, self.skip, self.neuron = main, skip, neuron

    def __call__(self, x: Any) -> Any:
        main = x
        for step in self.main:
            main = step(main)
        return self.neuron(main + self.skip(x))
