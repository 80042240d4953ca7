"""What every peer of the LeNet workloads shares: the network, its weights, the input, the check and the step.

A peer (:mod:`eventsim.bench.peers`) is eventsim's ``lee2020-lenet5`` for
N-MNIST rebuilt in another framework, as a user of that framework writes it,
from eventsim's own network:

- :class:`LeNet`: what the peers read from eventsim's network (the leak and
  threshold of the LIF layers, the pooling neurons' threshold, the readout's
  leak) and its layers in order;
- :func:`torch_layers`: those layers as ``torch.nn`` modules, the synapses
  with eventsim's weights, each peer supplying its own neurons;
- :func:`load_weights`: eventsim's weights into a module that names its
  layers as eventsim does (conv1, conv2, fc1, fc2);
- :func:`strict_threshold`: eventsim's ``U > theta`` for frameworks that fire on ``>=``;
- :func:`time_major`: the input as a ``(T, B, C, H, W)`` float32 tensor;
- :func:`check_readout`: the peer's readout against eventsim's, before any timing;
- :func:`training_step`: one BPTT step (Lee's MSE on U_L[T] / T, Adam), the
  step every peer is timed on.

Some frameworks scale the input current of a neuron: Norse's ``LIFBoxCell``
integrates ``v + dt tau_mem_inv (I - v)``, so its current enters with the
factor ``k = 1 - leak``, where eventsim's LIF adds ``lam U + I`` (docs/semantics.md,
"Arithmetic forms"). Such a peer declares the factor and gets the weights
feeding those neurons divided by it: the same map in exact arithmetic, a
few ulps apart in float32.

Needs torch (the ``torch`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from eventsim.errors import LayerError, MissingExtraError, OptionError
from eventsim.events import Events
from eventsim.extras import install_hint
from eventsim.layers import LIF, Conv2d, Flatten, Layer, Linear, Readout, SpikingAvgPool, Weighted
from eventsim.network import Network

#: The layer kinds of Lee's LeNet5, in order: what :class:`LeNet` accepts.
KINDS = (Conv2d, LIF, SpikingAvgPool, Conv2d, LIF, SpikingAvgPool, Flatten, Linear, LIF, Linear, Readout)
#: The largest difference of the readouts U_L[T] / T that :func:`check_readout` accepts, relative to the
#: largest eventsim readout of the batch. Sums in another order (torch's convolutions and matrix products
#: against eventsim's event scatter) and another arithmetic form (Norse's "euler", SpikingJelly's
#: "subtract-divide") move a float32 readout by a few ulps per step it integrates: on the bench's 16
#: N-MNIST samples at T = 25, 100 and 300, at most 4.4e-8 (snnTorch, sinabs, PyTorch) and 3.5e-7 (Norse,
#: SpikingJelly) relative. One spike of the last hidden layer more or less moves U_L[T] by a readout weight
#: (0.08 on average) times lam^(T - t): 1e-3 and more of the largest readout, even at T = 300.
READOUT_BOUND = 1e-5


class PeerMismatch(RuntimeError):
    """A peer's LeNet does not compute eventsim's: its readout or a prediction differs (a bug in the peer)."""


@dataclass(frozen=True)
class Peer:
    """One framework's LeNet.

    ``build(lenet, batch)`` returns a ``torch.nn.Module`` with eventsim's
    weights; ``readout(module, layout(x))``, ``x`` the time-major input of
    :func:`time_major`, runs it from a fresh state and returns the readout's
    potential U_L[T], ``(B, 10)``. ``modules`` are the packages it imports,
    torch first; ``backward_note`` says what its backward costs beyond the
    network's own work, where that is known.
    """

    name: str
    title: str
    modules: tuple[str, ...]
    build: Callable[[LeNet, int], Any]
    layout: Callable[[Any], Any] = lambda x: x
    readout: Callable[[Any, Any], Any] = lambda module, x: module(x)
    backward_note: str | None = None

    def missing_reason(self) -> str | None:
        """Why the peer cannot run here (a package not installed, with how to install it), or None."""
        missing = []
        for module in self.modules:
            try:
                __import__(module)  # the import statement's hook, so that a test can hide a package
            except ImportError as exc:
                failed = (exc.name or "").partition(".")[0]
                if failed == module:
                    missing.append(f"{module} is not installed ({install_hint(module)})")
                elif failed not in self.modules:  # else it needs a package already named missing
                    return f"{module} is installed but cannot be imported: {exc}"
        return "; ".join(missing) or None

    def require(self) -> Any:
        """torch, or MissingExtraError naming what to install."""
        reason = self.missing_reason()
        if reason is not None:
            raise MissingExtraError(f"the {self.title} LeNet needs {', '.join(self.modules)}: {reason}")
        import torch

        return torch


@dataclass(frozen=True)
class LeNet:
    """eventsim's LeNet as the peers rebuild it: its layers and the neuron parameters they share.

    Attributes
    ----------
    network : Network
        eventsim's network.
    layers : tuple of Layer
        Its layers in order (:data:`KINDS`).
    leak, threshold : float
        lam and theta of the LIF layers (all three alike): U[t] = lam U[t-1] + I[t],
        fire on U > theta, hard reset to 0.
    pool_threshold : float
        Threshold of the IF neurons of spiking average pooling (0.75 for Lee's 2x2 windows).
    readout_leak : float
        lam of the readout, which never fires.
    """

    network: Network
    layers: tuple[Layer, ...]
    leak: float
    threshold: float
    pool_threshold: float
    readout_leak: float

    @classmethod
    def of(cls, network: Network) -> LeNet:
        """The LeNet of ``network``, which must be Lee's LeNet5 (the zoo's ``lee2020-lenet5``)."""
        layers = tuple(network.walk())
        if len(layers) != len(KINDS) or not all(isinstance(layer, kind) for layer, kind in zip(layers, KINDS)):
            found = ", ".join(type(layer).__name__ for layer in layers)
            raise OptionError(f"the peers rebuild Lee's LeNet5 ({', '.join(k.__name__ for k in KINDS)}); "
                              f"this network is {found}")
        lifs = [layer for layer in layers if type(layer) is LIF]
        pools = [layer for layer in layers if isinstance(layer, SpikingAvgPool)]
        for layer in lifs[1:]:
            if (layer.leak, layer.threshold) != (lifs[0].leak, lifs[0].threshold):
                raise LayerError(layer, "the peers give every LIF layer the first one's leak and threshold")
        return cls(network, layers, float(lifs[0].leak), float(lifs[0].threshold), float(pools[0].neuron.threshold),
                   float(layers[-1].leak))


def torch_layers(
    lenet: LeNet,
    *,
    lif: Callable[[], Any],
    pool_neuron: Callable[[], Any],
    readout: Callable[[], Any],
    lif_gain: float = 1.0,
    readout_gain: float = 1.0,
    stateless: Callable[[Any], Any] = lambda module: module,
) -> list[tuple[str, Any]]:
    """The LeNet's layers as ``(name, torch module)`` pairs, in order, named as in eventsim.

    Synapses are ``nn.Conv2d`` and ``nn.Linear`` without bias holding
    eventsim's weights divided by the factor the neuron they feed applies to
    its input current (``lif_gain`` for the peer's LIF neurons,
    ``readout_gain`` for its readout; 1 where it adds the current as
    eventsim does); a spiking average pooling is
    ``nn.AvgPool2d`` (named after the layer) followed by ``pool_neuron()``
    (named ``<layer>_if``); ``lif()`` and ``readout()`` are the peer's
    neurons. ``stateless`` wraps every module without state (synapses,
    pooling, flatten), e.g. into a framework's multi-step container.
    """
    import torch

    nn = torch.nn
    out: list[tuple[str, Any]] = []
    for layer, after in zip(lenet.layers, lenet.layers[1:] + (None,)):
        if isinstance(layer, Weighted):
            if isinstance(layer, Conv2d):
                module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                                   padding=layer.padding, bias=False)
            else:
                module = nn.Linear(layer.in_features, layer.out_features, bias=False)
            _copy(module.weight, layer, readout_gain if isinstance(after, Readout) else lif_gain)
            out.append((layer.name, stateless(module)))
        elif isinstance(layer, SpikingAvgPool):
            out += [(layer.name, stateless(nn.AvgPool2d(layer.kernel_size, stride=layer.stride))),
                    (f"{layer.name}_if", pool_neuron())]
        elif isinstance(layer, Flatten):
            out.append((layer.name, stateless(nn.Flatten())))
        else:
            out.append((layer.name, readout() if isinstance(layer, Readout) else lif()))
    return out


def _copy(target: Any, layer: Weighted, gain: float) -> None:
    import torch

    if tuple(target.shape) != layer.weight.shape:
        raise LayerError(layer, f"weights of shape {layer.weight.shape} do not fit the peer's {tuple(target.shape)}")
    weight = layer.weight if gain == 1.0 else layer.weight.astype(np.float64) / gain
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)))


def load_weights(module: Any, network: Network) -> None:
    """Copy the weights of eventsim's ``network`` into ``module``, whose layers carry eventsim's layer names.

    Both store convolutions as (out, in, kh, kw) and fully connected layers as
    (out, in), and both flatten (C, H, W) in C order, so the copy is direct.
    """
    for layer in network.walk():
        if not isinstance(layer, Weighted):
            continue
        target = getattr(getattr(module, layer.name, None), "weight", None)
        if target is None:
            raise LayerError(layer, f"weights of shape {layer.weight.shape} have no counterpart in the peer "
                                    f"(nothing under {layer.name!r})")
        _copy(target, layer, 1.0)


def strict_threshold(theta: float) -> float:
    """The threshold at which a neuron firing on ``U >= t`` fires exactly where eventsim's fires on ``U > theta``.

    The next float32 above ``theta``: no float32 lies between them, so for a
    float32 potential ``U >= t`` and ``U > theta`` are the same test.
    """
    return float(np.nextafter(np.float32(theta), np.float32(np.inf)))


def time_major(events: Events) -> Any:
    """``events`` as a dense float32 tensor ``(T, B, C, H, W)``: the time axis first, as the peers step through it."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(events.to_dense().swapaxes(0, 1), dtype=np.float32))


def check_readout(peer: Peer, module: Any, x: Any, expected: np.ndarray) -> dict[str, float]:
    """The peer's readout on ``x`` against eventsim's, ``expected`` = U_L[T] / T ``(B, 10)``; PeerMismatch if off.

    Passes when the largest difference is within :data:`READOUT_BOUND` of the
    largest eventsim readout and every prediction (the argmax of a sample's
    readout) is eventsim's. Returns ``readout_max_difference`` (the largest
    difference of U_L[T] / T) and ``predictions_equal`` (the fraction of
    equal predictions).
    """
    import torch

    steps = x.shape[0]
    with torch.no_grad():
        found = peer.readout(module, peer.layout(x)).numpy().astype(np.float64) / steps
    expected = np.asarray(expected, np.float64)
    difference = float(np.max(np.abs(found - expected)))
    scale = float(np.max(np.abs(expected)))
    equal = found.argmax(1) == expected.argmax(1)
    if not difference <= READOUT_BOUND * scale or not equal.all():  # "not <=": a NaN fails too
        raise PeerMismatch(f"the {peer.title} LeNet is not eventsim's: its readout U_L[T]/T differs by up to "
                           f"{difference:.3g} (bound {READOUT_BOUND:g} x {scale:.3g}) and {int((~equal).sum())} of "
                           f"{equal.size} predictions differ")
    return {"readout_max_difference": difference, "predictions_equal": float(equal.mean())}


def training_step(peer: Peer, module: Any, x: Any, target: Any, lr: float) -> Callable[[], None]:
    """One BPTT step of the peer's ``module`` on the time-major ``x`` (laid out before the step): Lee's MSE
    on U_L[T] / T against ``target``, autograd's gradients, one Adam update at ``lr``."""
    import torch

    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    steps, x = x.shape[0], peer.layout(x)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        error = peer.readout(module, x) / steps - target
        (0.5 * (error**2).sum(1).mean()).backward()
        optimizer.step()

    return step
