"""eventsim.learning: losses, gradient rules and training.

docs/semantics.md, "Gradient rules". Modules:

- :mod:`~eventsim.learning.rules`: the rules ``lee2020`` (Lee et al. 2020,
  aggregate, one pass at T), ``lee2020-code`` (the authors' code, step by step)
  and ``bptt`` (surrogate gradients), all on one event-driven backward
  (:mod:`~eventsim.learning.backprop`);
- :mod:`~eventsim.learning.surrogates`: surrogate spike derivatives;
- :mod:`~eventsim.learning.losses`: Lee's MSE, cross-entropy, spike-count MSE;
- :mod:`~eventsim.learning.optimizers`, :mod:`~eventsim.learning.schedules`,
  :mod:`~eventsim.learning.init`: SGD / Adam / AdamW, learning-rate schedules,
  Lee's initialisation;
- :mod:`~eventsim.learning.trainer`, :mod:`~eventsim.learning.checkpoint`:
  the training loop and its atomic HDF5 checkpoints;
- :mod:`~eventsim.learning.report`, :mod:`~eventsim.learning.runs`,
  :mod:`~eventsim.learning.zoo`: run reports, run folders (what the
  ``eventsim`` command works on; :func:`load_run` reads one back,
  :func:`load_weights` a trainer's checkpoint) and the papers' models;
- :mod:`~eventsim.learning.ann`, :mod:`~eventsim.learning.conversion`: the
  NumPy ANN view of a network and ANN-to-SNN threshold balancing;
- :mod:`~eventsim.learning.gradient_flow`, :mod:`~eventsim.learning.calibration`:
  deep networks (Ledinauskas et al. 2020): gradient magnitude per layer,
  surrogate slope tuning, thresholds and weight scales from the input currents;
- :mod:`~eventsim.learning.dense`: dense NumPy references of the rules.
"""

from eventsim.learning.calibration import scale_to_unit_currents, thresholds_at_max_current
from eventsim.learning.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from eventsim.learning.gradient_flow import GradientFlow, SlopeTuning, gradient_flow, tune_slope, with_slope
from eventsim.learning.init import init_lee2020
from eventsim.learning.losses import CrossEntropy, LeeMSE, SpikeCountMSE, loss_from_config
from eventsim.learning.optimizers import SGD, Adam, AdamW, optimizer_from_config
from eventsim.learning.parameters import load_parameters, load_statistics, parameters, statistics
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code, rule_from_config
from eventsim.learning.runs import load_run, load_weights
from eventsim.learning.schedules import Constant, MultiStep, OneCycle, schedule_from_config
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle, surrogate_from_config
from eventsim.learning.trainer import Trainer, evaluate, train_step

__all__ = [
    "Adam", "AdamW", "ArcTan", "BPTT", "Checkpoint", "Constant", "CrossEntropy", "FastSigmoid",
    "GradientFlow", "Lee2020", "Lee2020Code", "LeeMSE", "MultiStep", "OneCycle", "SGD", "Sigmoid",
    "SlopeTuning", "SpikeCountMSE", "StraightThrough", "Trainer", "Triangle", "evaluate", "gradient_flow",
    "init_lee2020", "load_checkpoint", "load_parameters", "load_run", "load_statistics", "load_weights",
    "loss_from_config", "optimizer_from_config",
    "parameters", "rule_from_config", "save_checkpoint", "scale_to_unit_currents", "schedule_from_config", "statistics",
    "surrogate_from_config", "thresholds_at_max_current", "train_step", "tune_slope", "with_slope",
]
