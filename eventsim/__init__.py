"""eventsim: an event-driven reference simulator for spiking neural networks.

The core: :class:`Events` (spikes, step-major), layers (:mod:`eventsim.layers`),
:class:`Network` (runs events through layers over T steps, counting SynOps),
Numba kernels (:mod:`eventsim.kernels`) and their dense NumPy twins
(:mod:`eventsim.dense`). Every number follows the semantics in the README
("Semantics in brief").
"""

from eventsim.counting import ENERGY_MODELS, EnergyEstimate, EnergyModel, estimate_energy
from eventsim.errors import CheckpointError, DataError, EventsError, EventsimError, LayerError, OptionError
from eventsim.events import Events
from eventsim.layers import (
    AvgPool,
    Conv2d,
    Delay,
    Dropout,
    Flatten,
    IF,
    Identity,
    LIF,
    Linear,
    MaxPool,
    Readout,
    Recurrent,
    Residual,
    SpikingAvgPool,
    SumPool,
)
from eventsim.network import Network, RunResult
from eventsim.folding import fold_norms
from eventsim.norm import CurrentNorm
from eventsim.threads import get_threads, set_threads

__version__ = "0.1.0"

__all__ = [
    "Delay",
    "Recurrent",
    "ENERGY_MODELS",
    "IF",
    "LIF",
    "AvgPool",
    "Conv2d",
    "CurrentNorm",
    "Dropout",
    "EnergyEstimate",
    "EnergyModel",
    "Events",
    "EventsError",
    "EventsimError",
    "Flatten",
    "Identity",
    "LayerError",
    "Linear",
    "MaxPool",
    "Network",
    "OptionError",
    "CheckpointError",
    "DataError",
    "Readout",
    "Residual",
    "RunResult",
    "SpikingAvgPool",
    "SumPool",
    "estimate_energy",
    "fold_norms",
    "get_threads",
    "set_threads",
]
