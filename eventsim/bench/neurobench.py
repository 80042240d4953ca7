"""NeuroBench's harness and metrics on an eventsim network (the ``neurobench`` extra).

NeuroBench (Yik et al., "NeuroBench: A Framework for Benchmarking
Neuromorphic Computing Algorithms and Systems", arXiv:2304.04640; the
``neurobench`` package, 2.3) runs a model batch by batch on a torch
``DataLoader`` of ``(input, label)`` and measures it through PyTorch hooks
on the modules of ``model.__net__()``:

- a *connection layer* (``nn.Linear``, ``nn.Conv1d/2d/3d``, torch's RNN
  modules) gets a forward pre-hook that keeps its inputs.
  ``SynapticOperations`` makes each input binary (nonzero -> 1), runs it
  through a copy of the layer whose nonzero weights are 1 and sums the
  result: per sample, the (input entry, synapse) pairs with a nonzero input
  and a nonzero weight, reported as ``Effective_ACs`` when every input of
  the call is 0 or +-1 and as ``Effective_MACs`` otherwise; ``Dense`` does
  the same with every input and weight set to 1;
- an *activation layer* (``nn.ReLU``, ``nn.Sigmoid``, snnTorch's
  ``SpikingNeuron`` and the classes a model adds with
  ``add_activation_module``) gets a forward hook that keeps its outputs.
  ``ActivationSparsity`` is the fraction of zeros among all of them,
  ``ActivationSparsityByLayer`` the same per layer;
- the static metrics (``Footprint``, ``ParameterCount``,
  ``ConnectionSparsity``) read the parameters of ``__net__()``;
- ``ClassificationAccuracy`` compares what the model returns with the labels.

An eventsim network has no torch modules: it runs on events with Numba
kernels. :func:`neurobench_model` wraps it in a ``NeuroBenchModel`` whose
``__net__()`` is a *mirror*: a ``torch.nn.ModuleDict`` holding, under the
layers' names, an ``nn.Conv2d`` or ``nn.Linear`` with the weights of every
weighted layer and a pass-through module for every spiking layer (LIF and
IF neurons, the IF neurons of spiking average pooling; a readout never
fires and is not one). A call runs the eventsim network on the batch,
recording every layer's output events, then shows each mirror module what
its layer received (a weighted layer) or emitted (a spiking layer), all
steps at once as a ``(batch x T, *shape)`` tensor, so NeuroBench's hooks
measure eventsim's own streams. It returns the predicted classes: the
highest readout value, or the most spikes of a spiking last layer.

``MembraneUpdates`` and ``NeuronOperations`` cannot run on it: they read
the membrane potential an snnTorch neuron module holds before and after
each step (``mem``) and its ``_reset_mechanism``, and price a step by the
snnTorch class name (``Leaky``, ``Synaptic``, ...); eventsim neurons are no
snnTorch modules. NeuroBench then reports 0 for the first and, after
printing the error, 0.0 for the second. docs/neurobench.md compares
NeuroBench's counts with eventsim's exact SynOps.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from eventsim.errors import LayerError
from eventsim.events import Events
from eventsim.extras import require
from eventsim.layers import LIF, Conv2d, Delay, Layer, Linear, Readout, Recurrent, Residual, SpikingAvgPool
from eventsim.network import Network, RunResult

PURPOSE = "eventsim.bench.neurobench"


def spiking(layer: Layer) -> bool:
    """Whether ``layer`` emits spikes: NeuroBench's activation layers (a readout never fires)."""
    return isinstance(layer, (LIF, SpikingAvgPool)) and not isinstance(layer, Readout)  # IF is a LIF


def neurobench_model(network: Network) -> Any:
    """``network`` as a NeuroBench model, for ``neurobench.benchmarks.Benchmark``.

    Parameters
    ----------
    network : Network
        Trained; a sequence of layers, no residual or recurrent blocks, delays
        or delayed synapses (the mirror shows each weighted layer one stream,
        the events of the layer before it). The mirror holds a copy of its
        weights as they are now: wrap it again after changing them.

    Returns
    -------
    NeuroBenchModel
        Called on a float tensor ``(batch, T, *network.input_shape)`` (its
        nonzero entries are the input events, :meth:`Events.from_dense`), it
        returns the predicted class of every sample, an int64 tensor
        ``(batch,)``, as ``ClassificationAccuracy`` compares with the labels.

    Raises
    ------
    LayerError
        A layer the mirror cannot show NeuroBench, or without weights, named.
    MissingExtraError
        torch or neurobench is not installed.
    """
    for layer in network.walk():
        if isinstance(layer, (Residual, Recurrent, Delay)) or (isinstance(layer, Linear) and layer.delay is not None):
            raise LayerError(layer, "NeuroBench's hooks see one input stream per weighted layer, the events of the "
                                    "layer before it; residual and recurrent blocks and delays have no such stream")
    for layer in network.layers:
        if isinstance(layer, (Conv2d, Linear)) and layer.weight is None:
            raise LayerError(layer, "has no weight; initialise or train the network first")
    return _model_class()(network)


@lru_cache(maxsize=None)
def _model_class() -> type:
    """The NeuroBenchModel subclass, made once: torch and neurobench are imported only when it is needed."""
    torch = require("torch", PURPOSE)
    base = require("neurobench.models", PURPOSE).NeuroBenchModel

    class SpikingLayer(torch.nn.Identity):
        """An eventsim spiking layer in the mirror: its recorded spikes pass through, under NeuroBench's hook."""

    class EventsimModel(base):
        """An eventsim network for NeuroBench (:func:`neurobench_model`)."""

        def __init__(self, network: Network) -> None:
            super().__init__()
            self.network = network
            self.add_activation_module(SpikingLayer)
            self.mirror = torch.nn.ModuleDict()
            for layer in network.layers:
                if isinstance(layer, (Conv2d, Linear)):
                    self.mirror[layer.name] = _weighted_module(torch, layer)
                elif spiking(layer):
                    self.mirror[layer.name] = SpikingLayer()

        def __net__(self) -> Any:
            return self.mirror

        def __call__(self, batch: Any) -> Any:
            dense = batch.detach().cpu().numpy().astype(self.network.dtype, copy=False)
            events = Events.from_dense(dense)
            hooked = bool(self.activation_hooks or self.connection_hooks)
            reads_readout = isinstance(self.network.layers[-1], Readout)
            record = ({"spikes"} if hooked else set()) | (set() if reads_readout else {"counts"})
            result = self.network.run(events, record=record)
            if hooked:
                with torch.no_grad():
                    self._show(torch, events, result)
            last = self.network.layers[-1].name
            scores = result.output if reads_readout else result.counts[last]
            return torch.from_numpy(np.argmax(scores, axis=1))  # ties: the first class, as eventsim's losses

        def _show(self, torch: Any, events: Events, result: RunResult) -> None:
            """Run every mirror module on its layer's stream, all steps at once, for the hooks to keep."""
            stream = events  # the events into the current layer
            for layer in self.network.layers:
                shape = self.network.shapes[layer.name]
                if isinstance(layer, (Conv2d, Linear)):
                    self.mirror[layer.name](_frames(torch, stream, shape[0]))
                # A stage's output is recorded under its last layer (spikes, pooled events, passed-on
                # currents); the layers inside a stage and Flatten pass the stream on unrecorded.
                if layer.name in result.spikes:
                    stream = result.spikes[layer.name]
                    if spiking(layer):
                        self.mirror[layer.name](_frames(torch, stream, shape[1]))

    return EventsimModel


def _weighted_module(torch: Any, layer: Conv2d | Linear) -> Any:
    """The ``nn.Conv2d`` or ``nn.Linear`` of ``layer``, holding a copy of its weights, for NeuroBench's hooks."""
    bias = layer.bias is not None
    if isinstance(layer, Conv2d):
        module = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                                 padding=layer.padding, bias=bias)
    else:
        module = torch.nn.Linear(layer.in_features, layer.out_features, bias=bias)
    module.weight = torch.nn.Parameter(torch.tensor(layer.weight), requires_grad=False)
    if bias:
        module.bias = torch.nn.Parameter(torch.tensor(layer.bias), requires_grad=False)
    return module


def _frames(torch: Any, stream: Events, shape: tuple[int, ...]) -> Any:
    """``stream`` as one tensor of all samples and steps, ``(batch x T, *shape)``."""
    return torch.from_numpy(stream.to_dense().reshape((-1,) + tuple(shape)))
