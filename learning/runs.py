"""Training runs as folders: what ``eventsim train``, ``eval`` and ``plot`` work on.

A run folder holds ``job.json`` (the job: dataset, model, encoding, rule,
optimizer, ... everything but the data folder), ``data.json`` (the data
folder it was trained with, absolute: where ``eval``, ``plot`` and
``--resume`` look when given none), ``checkpoint.h5`` (written
atomically after every epoch), ``metrics.jsonl`` (one line per epoch) and,
when training ends, ``report.json`` (:mod:`eventsim.learning.report` on the
test split). A job is plain data, so a run can be resumed, evaluated or
plotted from its folder alone.

Files read back from a folder (``job.json``, ``prepared.json``) are checked
like command-line options, since a run folder may come from anyone; a
folder is written by one process at a time (:mod:`eventsim.lock`).
"""

from __future__ import annotations

import json
import math
from functools import partial
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

import numpy as np

from eventsim.datasets import NMNIST, SHD, DVSGesture, load_mnist
from eventsim.datasets.folders import find
from eventsim.datasets.mnist import ENCODINGS, CodedImages
from eventsim.encoders.binning import VALUES as BINNINGS
from eventsim.encoders.inputs import is_number
from eventsim.layers import Readout
from eventsim.atomic import remove_temp_files, write_text
from eventsim.lock import run_folder_lock
from eventsim.reading import read_json
from eventsim.errors import CheckpointError, LayerError, OptionError, check_choice
from eventsim.network import Network
from eventsim.learning.checkpoint import Checkpoint, load_checkpoint
from eventsim.learning.chunks import check_chunk_size
from eventsim.learning.steps import DEFAULT_CHUNK
from eventsim.learning.losses import LOSSES, loss_from_config
from eventsim.learning.optimizers import OPTIMIZERS, optimizer_from_config
from eventsim.learning.parameters import load_parameters, load_statistics
from eventsim.learning.report import evaluation_report
from eventsim.learning.rules import RULES, rule_from_config
from eventsim.learning.schedules import Constant, MultiStep
from eventsim.learning.surrogates import SURROGATES, surrogate_from_config
from eventsim.learning.calibration import scale_to_unit_currents, spiking_layers, thresholds_at_max_current
from eventsim.learning.trainer import Trainer, batch_of, network_description
from eventsim.learning.zoo import build_model, model_config
from eventsim.learning.gradient_flow import SLOPES, GradientFlow, gradient_flow, with_slope
from eventsim.learning.rules import BPTT

DATASETS = ("nmnist", "mnist", "shd", "dvsgesture")
#: The input of a model without a named one.
DATASET_SHAPES = {"nmnist": (2, 34, 34), "mnist": (1, 28, 28), "shd": (1, 1, 700), "dvsgesture": (2, 32, 32)}
#: The readers of the event datasets, each binning its recordings with ``binned(steps=, values=, progress=)``.
EVENT_DATASETS = {"nmnist": NMNIST, "shd": SHD, "dvsgesture": DVSGesture}
CALIBRATIONS = ("none", "unit-currents", "max-current")
NORMS = ("none", "batch_time", "batch")  #: input-current batch norm of every spiking layer (statistics axes)
JOB, CHECKPOINT, METRICS, REPORT = "job.json", "checkpoint.h5", "metrics.jsonl", "report.json"
PREPARED = "prepared.json"
#: The data folder a run was trained with; kept apart from the job, which holds no path of the machine it ran on.
DATA = "data.json"
#: What each dataset's reader looks for under a data folder.
DATA_INSIDE = {"nmnist": "NMNIST/Train", "mnist": "mnist", "shd": "SHD/shd_train.h5",
               "dvsgesture": "DVSGesture/ibmGestureTrain"}
ANN, CONVERSION = "ann.h5", "conversion.json"  #: what ``convert`` writes into its folder
#: Every file eventsim writes into a run folder (``report-<split>.json`` by ``eval``).
RUN_FILES = (JOB, CHECKPOINT, METRICS, REPORT, PREPARED, DATA, "report-train.json", "report-test.json", ANN, CONVERSION)
#: Settings that depend on the dataset when not given (N-MNIST and MNIST measured: see the README).
DATASET_DEFAULTS = {
    "nmnist": {"model": "lee2020-lenet5", "rule": "lee2020", "loss": "lee_mse", "steps": 30, "epochs": 12,
               "milestones": [10]},
    "mnist": {"model": "lee2020-lenet5", "rule": "lee2020", "loss": "lee_mse", "steps": 50, "epochs": 3,
              "milestones": [2]},
    # A recurrent network has no lee2020 gradient; T = 100 steps of 14 ms (eventsim.datasets.shd.WINDOW_US).
    "shd": {"model": "shd-cubalif-rnn", "rule": "bptt", "loss": "cross_entropy", "steps": 100, "epochs": 20,
            "milestones": [15]},
    "dvsgesture": {"model": "dvsgesture-cnn", "rule": "lee2020", "loss": "lee_mse", "steps": 20, "epochs": 20,
                   "milestones": [15]},
}
EVAL_EVERY_EPOCH_UP_TO = 1000  #: test sets up to this size are evaluated after every epoch


@dataclass
class Job:
    """Everything that defines a training run.

    Defaults: Lee et al. 2020's N-MNIST setting (LeNet5, the lee2020 rule,
    Adam, Lee's MSE, tau = 100) with a schedule sized for the 1,000-sample
    subset: lr 3e-3, x0.2 after epoch 10, 12 epochs, T = 30 bins over the
    whole recording (the paper gives no N-MNIST binning; it drops the rate at
    epochs 40, 80, 120 of full N-MNIST runs: pass ``milestones`` to follow it).
    MNIST: T = 50 (Lee et al.), 3 epochs, x0.2 after epoch 2. SHD and DVS
    Gesture: their zoo models, see :data:`DATASET_DEFAULTS`. ``model``,
    ``rule``, ``loss``, ``steps``, ``epochs`` and ``milestones`` left at
    None take these dataset defaults.

    ``steps`` is T; N-MNIST recordings are binned into T steps over the whole
    recording (``binning`` "binary" or "count"), MNIST images are rate coded
    over T steps with ``rate_scale``. ``milestones`` (epochs) multiply the
    learning rate by ``lr_factor`` (Lee et al.: x0.2 at 40, 80, 120 for N-MNIST).
    ``train_limit`` / ``test_limit`` (0: all) keep that many samples, classes
    taken in turn, for quick runs.

    Deep networks (Ledinauskas et al. 2020; docs/deep_networks.md):
    ``encoding`` "direct" feeds MNIST pixels as currents instead of rate
    coding; ``leak`` (1: IF neurons), ``width`` and ``dropout`` are passed to
    the zoo builder; ``slope`` sets the surrogate's slope parameter
    (:data:`eventsim.learning.gradient_flow.SLOPES`) and ``tune_slope``
    bisects it on the first ``calibration_samples`` training samples before
    training; ``calibrate`` ("unit-currents" or "max-current", see
    :mod:`eventsim.learning.calibration`) sets weight scales or thresholds on
    the same samples first; ``norm`` ("batch_time" or "batch") puts an
    input-current batch norm on every spiking layer (:mod:`eventsim.norm`).
    What the preparation found is kept in the run
    folder (``prepared.json``). ``on_count`` is the target spike count of
    the "spike_count_mse" loss; ``eval_each_epoch`` evaluates the whole test
    split after every epoch (always done for test sets up to 1,000 samples:
    :func:`train` records True in ``job.json`` for them, so the recorded job
    says what the run did).
    ``chunk_size`` (a power of two) is how many samples of a batch are
    computed together, the unit of work a cluster spreads (docs/cluster.md):
    it changes no number but the statistics of input-current batch norm,
    which a chunk takes over its own samples.
    ``checkpoint_every`` (0: at the end of every epoch only) also writes the
    checkpoint every this many optimizer steps inside an epoch, so a long
    epoch interrupted loses at most that many steps.

    Every field is checked for its type and range when the job is made
    (from the command line, Python or ``job.json``): :class:`OptionError`
    names the field. :meth:`check_fit` checks how the fields fit together.
    """

    dataset: str = "nmnist"
    model: str | None = None
    rule: str | None = None
    surrogate: str = "fast_sigmoid"
    loss: str | None = None
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    milestones: list | None = None
    lr_factor: float = 0.2
    steps: int | None = None
    binning: str = "binary"
    rate_scale: float = 1.0
    tau: float | None = None
    batch_size: int = 16
    chunk_size: int = DEFAULT_CHUNK
    epochs: int | None = None
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0
    encoding: str = "rate"
    leak: float | None = None
    width: float = 1.0
    dropout: float | None = None
    slope: float | None = None
    tune_slope: bool = False
    calibrate: str = "none"
    calibration_samples: int = 64
    on_count: float | None = None
    eval_each_epoch: bool = False
    norm: str = "none"
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        self._check_fields()
        check_choice("dataset", self.dataset, DATASETS)
        for what, default in DATASET_DEFAULTS[self.dataset].items():
            if getattr(self, what) is None:
                setattr(self, what, default)
        model_config(self.model)
        check_choice("rule", self.rule, tuple(RULES))
        check_choice("surrogate", self.surrogate, tuple(SURROGATES))
        check_choice("loss", self.loss, tuple(LOSSES))
        check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        check_choice("binning", self.binning, BINNINGS)
        check_choice("encoding", self.encoding, ENCODINGS)
        check_choice("calibrate", self.calibrate, CALIBRATIONS)
        check_choice("norm", self.norm, NORMS)
        check_chunk_size(self.chunk_size)
        if self.norm != "none" and self.rule != "bptt":
            raise OptionError(f"input-current batch norm has an exact backward for bptt only, not for rule {self.rule!r}")
        if self.encoding != "rate" and self.dataset != "mnist":
            raise OptionError(f"encoding {self.encoding!r} applies to MNIST only; {self.dataset} is binned events")
        if (self.slope is not None or self.tune_slope) and self.rule != "bptt":
            raise OptionError(f"slope and tune_slope set the surrogate of the bptt rule, not of {self.rule!r}")
        if self.loss == "spike_count_mse" and self.on_count is None:
            raise OptionError("loss spike_count_mse needs on_count, the target spike count of the label's neuron")

    def _check_fields(self) -> None:
        """Refuse a field of the wrong type or range, whether it came from the command line, Python or job.json.

        Numbers are stored as Python ints and floats, so that the job stays
        JSON-ready (a NumPy scalar is not) and compares equal to its saved copy.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _COUNTS:
                setattr(self, f.name, _count(f.name, value, _COUNTS[f.name], none=f.default is None))
            elif f.name in _NUMBERS:
                setattr(self, f.name, _number(f.name, value, *_NUMBERS[f.name], none=f.default is None))
            elif isinstance(f.default, bool):
                if not isinstance(value, (bool, np.bool_)):
                    raise OptionError(f"{f.name} must be true or false, got {_shown(value)}")
                setattr(self, f.name, bool(value))
            elif isinstance(f.default, str) and not isinstance(value, str):
                raise OptionError(f"{f.name} must be a name (a string), got {_shown(value)}")
        if self.milestones is not None:
            if not isinstance(self.milestones, (list, tuple)):
                raise OptionError(f"milestones must be a list of epochs, got {_shown(self.milestones)}")
            self.milestones = [_count("milestones", m, 1) for m in self.milestones]

    def check_fit(self) -> None:
        """Build the job's network, rule, loss, optimizer and schedule once, refusing what does not fit.

        Every option a run could fail on is refused here, before any data is
        read or anything is written (a loss that reads spike counts for a
        model that ends in a readout, a model that cannot take the dataset's
        input, a learning rate the optimizer refuses, ...).
        """
        network = self.network(rng=None)
        self.rule_object()
        self.optimizer_object()
        self.schedule()
        reads = self.loss_object().reads
        ends_in_readout = isinstance(network.layers[-1], Readout)
        if (reads == "readout") != ends_in_readout:
            fitting = ", ".join(name for name, cls in LOSSES.items() if (cls.reads == "readout") == ends_in_readout)
            end = "a readout layer" if ends_in_readout else "spiking neurons"
            raise OptionError(f"loss {self.loss!r} does not fit model {self.model!r}, which ends in {end}; "
                              f"losses that fit it: {fitting}")

    def surrogate_object(self):
        """The bptt rule's surrogate, with ``slope`` applied."""
        surrogate = surrogate_from_config(self.surrogate)
        return surrogate if self.slope is None else with_slope(surrogate, self.slope)

    def rule_object(self, surrogate: dict | None = None):
        """The gradient rule; ``surrogate`` (a config, e.g. a tuned one) replaces the job's."""
        config = {"name": self.rule}
        if self.rule == "bptt":
            config["surrogate"] = surrogate or self.surrogate_object().config()
        return rule_from_config(config)

    def loss_object(self):
        if self.loss == "spike_count_mse":
            return loss_from_config({"name": self.loss, "on_count": float(self.on_count)})
        return loss_from_config(self.loss)

    def optimizer_object(self):
        return optimizer_from_config({"name": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay})

    def schedule(self):
        if not self.milestones:
            return Constant(self.lr)
        return MultiStep(self.lr, list(self.milestones), self.lr_factor)

    def network(self, rng: np.random.Generator | None) -> Network:
        config = model_config(self.model)
        shape = self.dataset if self.dataset in config["inputs"] else DATASET_SHAPES[self.dataset]
        return build_model(self.model, input=shape, rng=rng, tau=self.tau, leak=self.leak, width=self.width,
                           dropout=self.dropout, norm=None if self.norm == "none" else self.norm)

    def data(self, split: str, root: str | os.PathLike | None, progress: TextIO | None):
        """The split as a sequence of (Events, label)."""
        if self.dataset in EVENT_DATASETS:
            data = EVENT_DATASETS[self.dataset](root, split).binned(steps=self.steps, values=self.binning,
                                                                    progress=progress)
        else:
            images, labels = load_mnist(root, split)
            seed = self.seed if split == "train" else self.seed + 1
            scale = self.rate_scale if self.encoding == "rate" else 1.0
            data = CodedImages(images, labels, steps=self.steps, encoding=self.encoding, scale=scale, seed=seed)
        limit = self.train_limit if split == "train" else self.test_limit
        return Subset(data, interleaved_classes(data.labels, limit)) if limit else data

    @classmethod
    def from_dict(cls, d: dict) -> "Job":
        if not isinstance(d, dict):
            raise OptionError(f"a job is an object of fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionError(f"unknown job fields {_shown(unknown)}; known: {sorted(known)}")
        return cls(**d)


#: Integer fields of a job and their least value (limits: 0 means all samples).
_COUNTS = {"steps": 1, "batch_size": 1, "chunk_size": 1, "epochs": 1, "seed": 0, "train_limit": 0, "test_limit": 0,
           "calibration_samples": 1, "checkpoint_every": 0}
#: Number fields of a job: (least value, whether it is excluded, greatest value).
_NUMBERS = {"lr": (0.0, True, math.inf), "weight_decay": (0.0, False, math.inf), "lr_factor": (0.0, True, math.inf),
            "rate_scale": (0.0, True, math.inf), "tau": (0.0, True, math.inf), "leak": (0.0, False, 1.0),
            "width": (0.0, True, math.inf), "dropout": (0.0, False, 1.0), "slope": (0.0, True, math.inf),
            "on_count": (0.0, False, math.inf)}


#: Counts go into NumPy arrays and indices, which hold int64.
_MAX_COUNT = 2**63 - 1


def _count(what: str, value: object, least: int, *, none: bool = False) -> int | None:
    """``value`` as an int from ``least`` to int64's largest (None passes where ``none``); bools and floats are refused."""
    if value is None and none:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < least:
        raise OptionError(f"{what} must be an integer >= {least}, got {_shown(value)}")
    if value > _MAX_COUNT:
        raise OptionError(f"{what} must be below 2**63, got {_shown(value)}")
    return int(value)


def _number(what: str, value: object, least: float, open_: bool, most: float, *, none: bool = False) -> float | None:
    """``value`` as a finite float in its range (None passes where ``none``)."""
    if value is None and none:
        return None
    try:
        number = float(value) if is_number(value) else math.nan
    except OverflowError:  # an integer beyond the float range (JSON allows any)
        number = math.nan
    if not (math.isfinite(number) and (number > least if open_ else number >= least) and number <= most):
        bound = f"{'>' if open_ else '>='} {least:g}" + ("" if math.isinf(most) else f" and <= {most:g}")
        raise OptionError(f"{what} must be a finite number {bound}, got {_shown(value)}")
    return number


def _shown(value: object) -> str:
    """``repr(value)``, cut short: a file may hold a 10,000-digit number, and an error message is one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def interleaved_classes(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` samples taking the classes in turn (the first of each class, then the second...)."""
    rank = np.zeros(labels.shape[0], np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(members.shape[0])
    order = np.lexsort((labels, rank))
    return np.sort(order[:count])


def _subset_batch(data, picked: np.ndarray, indices) -> tuple:
    """``data.read_batch`` of a subset's items ``indices`` (the items ``picked[indices]`` of ``data``)."""
    return data.read_batch(picked[np.asarray(indices, np.int64)])


class Subset(Sequence):
    """The items ``indices`` of a dataset, with their labels."""

    def __init__(self, data, indices: np.ndarray) -> None:
        self.data, self.indices = data, np.asarray(indices)
        self.labels = np.asarray(data.labels)[self.indices]
        if hasattr(data, "read_batch"):  # batch_of codes the subset's batches on the thread pool too
            self.read_batch = partial(_subset_batch, data, self.indices)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int):
        return self.data[int(self.indices[i])]


@contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """Hold the lock of the run folder ``folder`` while the block writes it.

    Under the lock no other process writes the run's files, so the temporary
    files of writes to them that a kill cut short (SIGKILL, power loss) are
    dead: they are removed first, and do not pile up over resumes.
    """
    with run_folder_lock(folder):
        remove_temp_files(folder, RUN_FILES)
        yield


def _write_json(path: Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_prepared(folder: str | os.PathLike) -> dict:
    """What the preparation of a run found (``prepared.json``), or nothing.

    Checked like a job: an object with known fields only, positive finite
    thresholds and scales by layer name, a surrogate its registry builds;
    anything else is a :class:`CheckpointError` naming the file and the field.
    """
    path = Path(folder) / PREPARED
    if not path.exists():
        return {}
    found = read_json(path, error=CheckpointError)
    try:
        _check_prepared(found)
    except OptionError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return found


_PREPARED_FIELDS = ("calibration_samples", "scales", "thresholds", "surrogate", "slope_tuning")


def _check_prepared(found: object) -> None:
    if not isinstance(found, dict):
        raise OptionError(f"must hold an object of fields, got {type(found).__name__}")
    unknown = sorted(set(found) - set(_PREPARED_FIELDS))
    if unknown:
        raise OptionError(f"unknown fields {_shown(unknown)}; known: {list(_PREPARED_FIELDS)}")
    if "calibration_samples" in found:
        _count("calibration_samples", found["calibration_samples"], 1)
    for what in ("scales", "thresholds"):
        by_layer = found.get(what, {})
        if not isinstance(by_layer, dict):
            raise OptionError(f"{what} must be an object of numbers by layer name, got {_shown(by_layer)}")
        for name, value in by_layer.items():
            _number(f"{what}[{_shown(name)}]", value, 0.0, True, math.inf)
    if "surrogate" in found:
        if not isinstance(found["surrogate"], dict):
            raise OptionError(f"surrogate must be an object (a surrogate's config), got {_shown(found['surrogate'])}")
        surrogate_from_config(found["surrogate"])
    if not isinstance(found.get("slope_tuning", {}), dict):
        raise OptionError(f"slope_tuning must be an object, got {_shown(found['slope_tuning'])}")


def _apply_thresholds(network: Network, prepared: dict, folder: Path) -> None:
    """Set the thresholds ``prepared.json`` found; each must name a spiking layer of ``network``."""
    thresholds = prepared.get("thresholds", {})
    neurons = {name: neuron for name, neuron, _ in spiking_layers(network, pools=False)}
    unknown = sorted(set(thresholds) - set(neurons))
    if unknown:
        raise CheckpointError(f"{folder / PREPARED}: thresholds for layers {unknown} the model does not have; "
                              f"its spiking layers: {sorted(neurons)}")
    for name, theta in thresholds.items():
        neurons[name].threshold = theta


def make_trainer(job: Job, out: Path, progress: TextIO | None, cluster: Any = None) -> Trainer:
    """A trainer for ``job`` checkpointing into the run folder ``out``, initialised from ``job.seed``.

    ``cluster`` (an :class:`eventsim.cluster.Cluster`) computes its steps' chunks and evaluations.

    The thresholds and the surrogate of the folder's ``prepared.json`` apply;
    calibrated weights come from the checkpoint written right after preparation.
    """
    network = job.network(np.random.default_rng(job.seed))
    prepared = read_prepared(out)
    _apply_thresholds(network, prepared, out)
    return Trainer(
        network, rule=job.rule_object(prepared.get("surrogate")), loss=job.loss_object(),
        optimizer=job.optimizer_object(), schedule=job.schedule(), batch_size=job.batch_size, epochs=job.epochs,
        seed=job.seed, checkpoint=out / CHECKPOINT, checkpoint_every=job.checkpoint_every or None, log=out / METRICS,
        progress=progress, chunk_size=job.chunk_size, cluster=cluster,
    )


def prepare(job: Job, trainer: Trainer, train_data, progress: TextIO | str | None = None) -> dict:
    """Calibrate and tune the slope as ``job`` asks, on its first ``calibration_samples`` training samples.

    Changes the trainer's network (weights or thresholds) and rule; returns
    what it found, as written to ``prepared.json``.
    """
    stream = sys.stderr if progress == "stderr" else progress
    count = min(int(job.calibration_samples), len(train_data))
    events, labels = batch_of(train_data, interleaved_classes(np.asarray(train_data.labels), count))
    found: dict = {"calibration_samples": count}
    if job.calibrate == "unit-currents":
        found["scales"] = scale_to_unit_currents(trainer.network, events)
    elif job.calibrate == "max-current":
        found["thresholds"] = thresholds_at_max_current(trainer.network, events)
    if job.tune_slope:
        def report(slope: float, ratio: float) -> None:
            if stream is not None:
                print(f"slope {slope:.4g}: gradient-flow ratio {ratio:.4g}", file=stream, flush=True)

        tuning = trainer.tune_surrogate_slope(events, labels, progress=report)
        found["surrogate"] = tuning.surrogate.config()
        found["slope_tuning"] = {"slope": tuning.slope, "ratio": tuning.ratio, "converged": tuning.converged,
                                 "history": [list(h) for h in tuning.history]}
    return found


def _data_folder(dataset: str, data: str | os.PathLike | None) -> Path:
    """The absolute folder ``dataset`` is read from: ``data`` or, when None, the first candidate holding it."""
    inside = Path(DATA_INSIDE[dataset])
    return find(str(inside), data).parents[len(inside.parts) - 1].resolve()


def run_data(folder: str | os.PathLike, data: str | os.PathLike | None) -> str | os.PathLike | None:
    """The data folder for a command on the run ``folder``: ``data`` if given, else the run's own (``data.json``).

    None (the usual search: ``EVENTSIM_DATA``, then the user folder) when
    neither is known (runs written before ``data.json`` existed) or when the
    recorded folder does not exist here (a run folder copied from another
    machine). The file may come from anyone: a value that is not a path is a
    :class:`CheckpointError`; a path only chooses where the usual, validated
    readers look for the dataset's own files.
    """
    path = Path(folder) / DATA
    if data is not None or not path.exists():
        return data
    recorded = read_json(path, error=CheckpointError)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("folder"), str):
        raise CheckpointError(f"{path}: expected {{\"folder\": \"<data folder>\"}}, got {_shown(recorded)}")
    return recorded["folder"] if Path(recorded["folder"]).is_dir() else None


def saved_job(folder: str | os.PathLike) -> Job | None:
    """The job of the run folder ``folder``, or None when it holds no run.

    ``job.json`` is checked like command-line options, fields and fit
    (:meth:`Job.check_fit`); a bad one is a :class:`CheckpointError` naming
    the file and the field.
    """
    path = Path(folder) / JOB
    if not path.exists():
        return None
    try:
        job = Job.from_dict(read_json(path, error=CheckpointError))
        job.check_fit()
    except (OptionError, LayerError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return job


# Fields a resumed run may change. The schedule's two are checked against the
# checkpoint by Trainer.resume: the epochs already begun must keep their rates.
# How often a checkpoint is written changes no number of the run.
RESUMABLE = ("epochs", "milestones", "lr_factor", "checkpoint_every")


def _check_folder(job: Job, out: Path, resume: bool) -> None:
    """Refuse to start a run in a folder that holds one, or to resume one that holds none."""
    if (out / JOB).exists():
        if not resume:
            raise OptionError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        saved = saved_job(out)
        # eval_each_epoch False asks for nothing: the run evaluates every epoch or not by its test set's size.
        differs = sorted(k for k, v in asdict(job).items() if k not in RESUMABLE and getattr(saved, k) != v
                         and not (k == "eval_each_epoch" and v is False))
        if differs:
            raise CheckpointError(f"{out}: the run was started with other settings ({', '.join(differs)}); "
                                  f"resume it with the same ones or choose another --out")
    elif resume:
        raise OptionError(f"nothing to resume in {out}: no {JOB}")


def train(job: Job, out: str | os.PathLike, *, data: str | os.PathLike | None = None, resume: bool = False,
          progress: TextIO | str | None = "stderr", cluster: Any = None) -> dict:
    """Train ``job`` in the run folder ``out`` (or continue it), evaluate on the test split, write the report.

    Returns the report. A folder that already holds a run is continued with
    ``resume=True`` (the job must be the same apart from ``epochs``,
    milestones after the epochs already trained and ``checkpoint_every``)
    and refused otherwise, so nothing a user saved is overwritten.

    Every option is checked before the folder is created, and the data is
    found before ``job.json`` is written, so a refused first command leaves
    no run behind that the corrected one would be refused for. The folder is
    locked (:mod:`eventsim.lock`) from before anything is written to it
    until the report is: a second process writing it gets
    :class:`RunLockError`.

    ``cluster`` (an :class:`eventsim.cluster.Cluster`) computes the steps and
    evaluations on its workers; the run folder is the same bit for bit as
    without one, and a run continues on any cluster or none.
    """
    out = Path(out)
    job.check_fit()
    _check_folder(job, out, resume)  # before the lock creates the folder, so a refused command leaves none
    with _writing(out):
        _check_folder(job, out, resume)  # again: another process may have started a run here meanwhile
        data = run_data(out, data) if resume else data
        train_data = job.data("train", data, progress)
        test_data = job.data("test", data, progress)
        # Per-epoch evaluation on small test sets (the N-MNIST subset); a large one is evaluated once, at the end.
        job = replace(job, eval_each_epoch=job.eval_each_epoch or len(test_data) <= EVAL_EVERY_EPOCH_UP_TO)
        trainer = make_trainer(job, out, progress, cluster)
        if resume and (out / CHECKPOINT).exists():
            trainer.resume()
        _write_json(out / JOB, asdict(job))  # only once the data is found and the checkpoint has accepted the job
        _write_json(out / DATA, {"folder": str(_data_folder(job.dataset, data))})
        if (job.calibrate != "none" or job.tune_slope) and not (out / PREPARED).exists():
            _write_json(out / PREPARED, prepare(job, trainer, train_data, progress))
            trainer.save()  # the calibrated weights, so a resume starts from them
        trainer.fit(train_data, eval_data=test_data if job.eval_each_epoch else None)
        report = evaluation_report(trainer.network, test_data, trainer.loss, batch_size=job.batch_size,
                                   cluster=cluster)
        report.update(job=asdict(job), split="test", epochs=trainer.epoch,
                      train_seconds=sum(h["seconds"] for h in trainer.history))
        _write_json(out / REPORT, report)
    return report


def gradient_flow_of(
    job: Job,
    network: Network,
    *,
    data: str | os.PathLike | None = None,
    samples: int = 32,
    slopes: Sequence[float] = (),
    surrogate: dict | None = None,
    seed: int = 0,
    progress: TextIO | str | None = None,
) -> dict[str, GradientFlow]:
    """Gradient flow of ``network`` on the first ``samples`` training samples of ``job``'s dataset.

    One measurement with the job's rule (``surrogate``, a config, replacing
    the job's), or one per slope of ``slopes``; keyed by a label such as
    ``"fast_sigmoid c = 3"``.
    """
    if int(samples) < 1:
        raise OptionError(f"samples must be a positive integer, got {samples!r}")
    train_data = job.data("train", data, progress)
    events, labels = batch_of(train_data, interleaved_classes(np.asarray(train_data.labels), int(samples)))
    loss = job.loss_object()
    base = job.rule_object(surrogate)
    if not slopes:
        label = job.rule if job.rule != "bptt" else f"{base.surrogate.name} {_slope_label(base.surrogate)}"
        return {label: gradient_flow(network, events, labels, rule=base, loss=loss, seed=seed)}
    if job.rule != "bptt":
        raise OptionError(f"slopes apply to the bptt rule's surrogate, not to rule {job.rule!r}")
    out = {}
    for slope in slopes:
        rule = BPTT(surrogate=with_slope(base.surrogate, slope), detach_reset=base.detach_reset)
        out[f"{rule.surrogate.name} {_slope_label(rule.surrogate)}"] = gradient_flow(
            network, events, labels, rule=rule, loss=loss, seed=seed)
    return out


def _slope_label(surrogate) -> str:
    param = SLOPES.get(surrogate.name)
    return "" if param is None else f"{param} = {getattr(surrogate, param):.4g}"


def _run_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The run folder and the checkpoint of ``path``, a run folder or a checkpoint file inside one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run folder or checkpoint")
    folder = path if path.is_dir() else path.parent
    return folder, path if path.is_file() else folder / CHECKPOINT


def _run_job(folder: Path) -> Job:
    job = saved_job(folder)
    if job is None:
        raise CheckpointError(f"{folder}: not a run folder (no {JOB}); give the folder eventsim train wrote")
    return job


def load_run(path: str | os.PathLike) -> tuple[Job, Network, Path]:
    """The job and the trained network of a run folder written by ``eventsim train`` (or :func:`train`).

    The network is rebuilt from the folder's ``job.json`` (its zoo model,
    input and neuron options), takes the thresholds of ``prepared.json``
    when the run was calibrated, then the parameters and norm statistics of
    the checkpoint; it is ready to run (``network.run(events).output``) or
    to evaluate. A network built in Python and trained with
    :class:`~eventsim.learning.trainer.Trainer` has no ``job.json``: load
    its checkpoint into the same network built again with :func:`load_weights`.

    Parameters
    ----------
    path : str or path
        The run folder, or its ``checkpoint.h5`` (the folder is the file's parent).

    Returns
    -------
    job : Job
        The run's job, checked like command-line options; ``job.data(split,
        folder, None)`` reads the data it was trained on.
    network : Network
        The trained network.
    folder : Path
        The run folder.

    Raises
    ------
    CheckpointError
        No such folder or file, a folder without ``job.json``, a ``job.json``
        or ``prepared.json`` that does not pass the checks, a checkpoint that
        is not one (:func:`~eventsim.learning.checkpoint.load_checkpoint`) or
        whose parameters do not fit the job's model.
    """
    folder, checkpoint = _run_paths(path)
    job = _run_job(folder)
    network = job.network(rng=None)
    _apply_thresholds(network, read_prepared(folder), folder)
    ckpt = load_checkpoint(checkpoint)
    try:
        load_parameters(network, ckpt.params)
        load_statistics(network, ckpt.statistics)
    except ValueError as exc:
        raise CheckpointError(f"{checkpoint}: does not fit model {job.model!r}: {exc}") from None
    return job, network, folder


def load_weights(network: Network, path: str | os.PathLike) -> Checkpoint:
    """Load the weights a :class:`~eventsim.learning.trainer.Trainer` checkpointed into ``network``, built as it was.

    A checkpoint holds parameters by name (``"conv1.weight"``, ...), the
    running statistics of input-current norms and a description of the
    network that wrote it (input shape, dtype and every layer's ``repr``,
    :func:`~eventsim.learning.trainer.network_description`), not the code
    that built it. Build the network again with the same code, then load:
    the description must match, so weights never land in a network whose
    neurons, shapes or options differ from those they were trained with.

    Parameters
    ----------
    network : Network
        Built as the trained one was (its weights are replaced; initialising
        them first is not needed).
    path : str or path
        The checkpoint (``Trainer(checkpoint=...)``), or a run folder holding
        ``checkpoint.h5``.

    Returns
    -------
    Checkpoint
        What was read: ``epoch``, ``history`` (the metrics of every epoch),
        ``config`` (rule, loss, optimizer, ...).

    Raises
    ------
    CheckpointError
        Naming the file: not a checkpoint, written by another network (the
        first difference is named; the network is left unchanged), or
        parameters that do not fit.
    """
    _, checkpoint = _run_paths(path)
    ckpt = load_checkpoint(checkpoint)
    difference = _first_difference(ckpt.config.get("network"), network_description(network))
    if difference is not None:
        raise CheckpointError(f"{checkpoint}: written by another network: {difference}")
    try:
        load_parameters(network, ckpt.params)
        load_statistics(network, ckpt.statistics)
    except ValueError as exc:
        raise CheckpointError(f"{checkpoint}: does not fit the network: {exc}") from None
    return ckpt


def _first_difference(written: object, here: dict) -> str | None:
    """The first field of a checkpoint's network description that differs from ``here``'s, or None.

    A checkpoint without a description (written by hand with
    :func:`~eventsim.learning.checkpoint.save_checkpoint`) has none to differ.
    """
    if written is None:
        return None
    if not isinstance(written, dict):
        return f"its description is {_shown(written)}"
    for key in ("input_shape", "dtype"):
        if written.get(key) != here[key]:
            return f"{key} {_shown(written.get(key))} in the checkpoint, {here[key]!r} here"
    layers = written.get("layers")
    if not isinstance(layers, list) or len(layers) != len(here["layers"]):
        count = len(layers) if isinstance(layers, list) else _shown(layers)
        return f"{count} layers in the checkpoint, {len(here['layers'])} here"
    for i, (theirs, mine) in enumerate(zip(layers, here["layers"])):
        if theirs != mine:
            # Whole: the options that differ are often at the end of a repr. Cut: the file may hold anything.
            shown = theirs[:300] if isinstance(theirs, str) else _shown(theirs)
            return f"layer {i + 1} is {shown} in the checkpoint, {mine} here"
    return None


def report_path(path: str | os.PathLike, split: str) -> Path:
    """Where :func:`evaluate_run` writes its report on ``split`` of the run ``path`` (a folder or its checkpoint)."""
    return _run_paths(path)[0] / f"report-{split}.json"


def evaluate_run(path: str | os.PathLike, *, split: str = "test", data: str | os.PathLike | None = None,
                 progress: TextIO | str | None = "stderr", cluster: Any = None) -> dict:
    """Report of a run's network on ``split``, also written to ``<run>/report-<split>.json``.

    ``data`` None reads the data folder the run was trained with (:func:`run_data`).
    ``cluster`` (an :class:`eventsim.cluster.Cluster`) evaluates on its workers (the same report).

    The run folder is locked while it is read and the report written, so the
    report belongs to one checkpoint, not to one a training replaced midway.
    """
    folder, _ = _run_paths(path)
    _run_job(folder)  # not a run: refused before the lock creates anything in the folder
    with _writing(folder):
        job, network, folder = load_run(path)
        report = evaluation_report(network, job.data(split, run_data(folder, data), progress), job.loss_object(),
                                   batch_size=job.batch_size, cluster=cluster)
        report.update(job=asdict(job), split=split)
        _write_json(report_path(folder, split), report)
    return report


def convert(
    out: str | os.PathLike,
    *,
    model: str = "ngu2022-mnist",
    data: str | os.PathLike | None = None,
    epochs: int = 8,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    steps: Sequence[int] = (64, 32, 16, 8, 4),
    alphas: Sequence[float] = (1.0,),
    method: str = "channel",
    mode: str = "direct",
    calibration_samples: int = 1000,
    train_limit: int = 0,
    test_limit: int = 0,
    progress: TextIO | str | None = "stderr",
    cluster: Any = None,
) -> dict:
    """Train the model's ANN view on MNIST (or load it from ``out``), convert it, sweep T; write ``conversion.json``.

    The ANN weights are checkpointed to ``<out>/ann.h5`` after training; a
    second call with the same ``out`` loads them instead of training again.
    Calibration uses the first ``calibration_samples`` training images.
    Every option is checked before the ANN trains (a latency the sweep would
    refuse must not cost the training first); ``out`` is locked like a run
    folder (:mod:`eventsim.lock`). ``cluster`` (an :class:`eventsim.cluster.Cluster`)
    computes the sweep's (T, alpha) on its workers: the same rows.
    """
    from eventsim.learning.ann import ann_accuracy, train_ann
    from eventsim.learning.checkpoint import Checkpoint, save_checkpoint
    from eventsim.learning.conversion import INPUT_MODES, METHODS, conversion_sweep
    from eventsim.learning.optimizers import Adam
    from eventsim.learning.parameters import parameters

    epochs, batch_size, seed = _count("epochs", epochs, 1), _count("batch_size", batch_size, 1), _count("seed", seed, 0)
    lr = _number("lr", lr, 0.0, True, math.inf)
    calibration_samples = _count("calibration_samples", calibration_samples, 1)
    train_limit, test_limit = _count("train_limit", train_limit, 0), _count("test_limit", test_limit, 0)
    steps = _listed("steps", steps, lambda what, t: _count(what, t, 1))
    alphas = _listed("alphas", alphas, lambda what, a: _number(what, a, 0.0, True, 1.0))
    check_choice("threshold balancing method", method, METHODS)
    check_choice("input mode", mode, INPUT_MODES)
    network = build_model(model, input="mnist", rng=np.random.default_rng(seed))
    out = Path(out)
    with _writing(out):
        train_images, train_labels = load_mnist(data, "train")
        test_images, test_labels = load_mnist(data, "test")
        if train_limit:
            keep = interleaved_classes(train_labels, train_limit)
            train_images, train_labels = train_images[keep], train_labels[keep]
        if test_limit:
            keep = interleaved_classes(test_labels, test_limit)
            test_images, test_labels = test_images[keep], test_labels[keep]
        x_train = (train_images[:, None] / 255.0).astype(network.dtype)
        x_test = (test_images[:, None] / 255.0).astype(network.dtype)
        ann_file = out / ANN
        config = {"model": model, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                  "train_samples": int(len(train_labels))}
        history: list = []
        if ann_file.exists():
            ckpt = load_checkpoint(ann_file)
            if ckpt.config != config:
                raise CheckpointError(f"{ann_file} was trained with {ckpt.config}, not {config}; choose another --out")
            load_parameters(network, ckpt.params)
            history = ckpt.history
        else:
            history = train_ann(network, x_train, train_labels, epochs=epochs, batch_size=batch_size,
                                optimizer=Adam(lr), rng=np.random.default_rng(seed), progress=progress)
            save_checkpoint(ann_file, Checkpoint(
                params={k: v.copy() for k, v in parameters(network).items()}, optimizer_state={}, rng_state={},
                epoch=epochs, step=0, config=config, history=history,
            ))
        ann_acc = ann_accuracy(network, x_test, test_labels)
        rows = conversion_sweep(network, x_train[:calibration_samples], x_test, test_labels, steps=steps,
                                alphas=alphas, method=method, mode=mode, batch_size=100, seed=seed,
                                progress=progress, cluster=cluster)
        report = {"model": model, "ann": {"accuracy": ann_acc, "history": history, **config},
                  "calibration_samples": calibration_samples, "test_samples": int(len(test_labels)), "sweep": rows}
        _write_json(out / CONVERSION, report)
    return report


def _listed(what: str, values: object, check) -> list:
    """A non-empty sequence of values, each passed through ``check(name, value)``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise OptionError(f"{what} must be a non-empty list, got {_shown(values)}")
    return [check(f"{what}[{i}]", v) for i, v in enumerate(values)]
