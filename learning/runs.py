"""Training runs as folders: what ``eventsim train``, ``eval`` and ``plot`` work on.

A run folder holds ``job.json`` (the job: dataset, model, encoding, rule,
optimizer, ... everything but the data folder), ``checkpoint.h5`` (written
atomically after every epoch), ``metrics.jsonl`` (one line per epoch) and,
when training ends, ``report.json`` (:mod:`eventsim.learning.report` on the
test split). A job is plain data, so a run can be resumed, evaluated or
plotted from its folder alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np

from eventsim.datasets import NMNIST, load_mnist
from eventsim.datasets.mnist import RateCoded
from eventsim.atomic import write_text
from eventsim.errors import CheckpointError, OptionError, check_choice
from eventsim.network import Network
from eventsim.learning.checkpoint import load_checkpoint
from eventsim.learning.losses import loss_from_config
from eventsim.learning.optimizers import optimizer_from_config
from eventsim.learning.parameters import load_parameters
from eventsim.learning.report import evaluation_report
from eventsim.learning.rules import rule_from_config
from eventsim.learning.schedules import Constant, MultiStep
from eventsim.learning.surrogates import surrogate_from_config
from eventsim.learning.trainer import Trainer
from eventsim.learning.zoo import build_model

DATASETS = ("nmnist", "mnist")
JOB, CHECKPOINT, METRICS, REPORT = "job.json", "checkpoint.h5", "metrics.jsonl", "report.json"
#: Settings that depend on the dataset when not given (measured: see the README).
DATASET_DEFAULTS = {
    "nmnist": {"steps": 30, "epochs": 12, "milestones": [10]},
    "mnist": {"steps": 50, "epochs": 3, "milestones": [2]},
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
    MNIST: T = 50 (Lee et al.), 3 epochs, x0.2 after epoch 2. ``steps``,
    ``epochs`` and ``milestones`` left at None take these dataset defaults.

    ``steps`` is T; N-MNIST recordings are binned into T steps over the whole
    recording (``binning`` "binary" or "count"), MNIST images are rate coded
    over T steps with ``rate_scale``. ``milestones`` (epochs) multiply the
    learning rate by ``lr_factor`` (Lee et al.: x0.2 at 40, 80, 120 for N-MNIST).
    ``train_limit`` / ``test_limit`` (0: all) keep that many samples, classes
    taken in turn, for quick runs.
    """

    dataset: str = "nmnist"
    model: str = "lee2020-lenet5"
    rule: str = "lee2020"
    surrogate: str = "fast_sigmoid"
    loss: str = "lee_mse"
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
    epochs: int | None = None
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        for what, default in DATASET_DEFAULTS[self.dataset].items():
            if getattr(self, what) is None:
                setattr(self, what, default)
        for what in ("steps", "batch_size", "epochs"):
            if int(getattr(self, what)) < 1:
                raise OptionError(f"{what} must be a positive integer, got {getattr(self, what)!r}")

    def rule_object(self):
        config = {"name": self.rule}
        if self.rule == "bptt":
            config["surrogate"] = surrogate_from_config(self.surrogate).config()
        return rule_from_config(config)

    def optimizer_object(self):
        return optimizer_from_config({"name": self.optimizer, "lr": self.lr, "weight_decay": self.weight_decay})

    def schedule(self):
        if not self.milestones:
            return Constant(self.lr)
        return MultiStep(self.lr, list(self.milestones), self.lr_factor)

    def network(self, rng: np.random.Generator | None) -> Network:
        return build_model(self.model, input=self.dataset, rng=rng, tau=self.tau)

    def data(self, split: str, root: str | os.PathLike | None, progress: TextIO | None):
        """The split as a sequence of (Events, label)."""
        if self.dataset == "nmnist":
            data = NMNIST(root, split).binned(steps=self.steps, values=self.binning, progress=progress)
        else:
            images, labels = load_mnist(root, split)
            seed = self.seed if split == "train" else self.seed + 1
            data = RateCoded(images, labels, steps=self.steps, scale=self.rate_scale, seed=seed)
        limit = self.train_limit if split == "train" else self.test_limit
        return Subset(data, interleaved_classes(data.labels, limit)) if limit else data

    @classmethod
    def from_dict(cls, d: dict) -> "Job":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionError(f"unknown job fields {unknown}; known: {sorted(known)}")
        return cls(**d)


def interleaved_classes(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` samples taking the classes in turn (the first of each class, then the second...)."""
    rank = np.zeros(labels.shape[0], np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(members.shape[0])
    order = np.lexsort((labels, rank))
    return np.sort(order[:count])


class Subset(Sequence):
    """The items ``indices`` of a dataset, with their labels."""

    def __init__(self, data, indices: np.ndarray) -> None:
        self.data, self.indices = data, np.asarray(indices)
        self.labels = np.asarray(data.labels)[self.indices]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int):
        return self.data[int(self.indices[i])]


def _write_json(path: Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def make_trainer(job: Job, out: Path, progress: TextIO | None) -> Trainer:
    """A trainer for ``job`` checkpointing into the run folder ``out``, initialised from ``job.seed``."""
    network = job.network(np.random.default_rng(job.seed))
    return Trainer(
        network, rule=job.rule_object(), loss=loss_from_config(job.loss), optimizer=job.optimizer_object(),
        schedule=job.schedule(), batch_size=job.batch_size, epochs=job.epochs, seed=job.seed,
        checkpoint=out / CHECKPOINT, log=out / METRICS, progress=progress,
    )


def train(job: Job, out: str | os.PathLike, *, data: str | os.PathLike | None = None, resume: bool = False,
          progress: TextIO | str | None = "stderr") -> dict:
    """Train ``job`` in the run folder ``out`` (or continue it), evaluate on the test split, write the report.

    Returns the report. A folder that already holds a run is continued with
    ``resume=True`` (the job must be the same apart from ``epochs``) and
    refused otherwise, so nothing a user saved is overwritten.
    """
    out = Path(out)
    if (out / JOB).exists():
        if not resume:
            raise OptionError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        saved = Job.from_dict(json.loads((out / JOB).read_text()))
        differs = sorted(k for k, v in asdict(job).items() if k != "epochs" and getattr(saved, k) != v)
        if differs:
            raise CheckpointError(f"{out}: the run was started with other settings ({', '.join(differs)}); "
                                  f"resume it with the same ones or choose another --out")
    elif resume:
        raise OptionError(f"nothing to resume in {out}: no {JOB}")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / JOB, asdict(job))
    trainer = make_trainer(job, out, progress)
    if resume and (out / CHECKPOINT).exists():
        trainer.resume()
    train_data = job.data("train", data, progress)
    test_data = job.data("test", data, progress)
    # Per-epoch evaluation on small test sets (the N-MNIST subset); a large one is evaluated once, at the end.
    trainer.fit(train_data, eval_data=test_data if len(test_data) <= EVAL_EVERY_EPOCH_UP_TO else None)
    report = evaluation_report(trainer.network, test_data, trainer.loss, batch_size=job.batch_size)
    report.update(job=asdict(job), split="test", epochs=trainer.epoch,
                  train_seconds=sum(h["seconds"] for h in trainer.history))
    _write_json(out / REPORT, report)
    return report


def load_run(path: str | os.PathLike) -> tuple[Job, Network, Path]:
    """The job and the trained network of a run folder (or of a checkpoint file inside one)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    checkpoint = path if path.is_file() else folder / CHECKPOINT
    if not (folder / JOB).exists():
        raise CheckpointError(f"{folder}: not a run folder (no {JOB}); give the folder eventsim train wrote")
    job = Job.from_dict(json.loads((folder / JOB).read_text()))
    network = job.network(rng=None)
    ckpt = load_checkpoint(checkpoint)
    try:
        load_parameters(network, ckpt.params)
    except ValueError as exc:
        raise CheckpointError(f"{checkpoint}: does not fit model {job.model!r}: {exc}") from None
    return job, network, folder


def evaluate_run(path: str | os.PathLike, *, split: str = "test", data: str | os.PathLike | None = None,
                 progress: TextIO | str | None = "stderr") -> dict:
    """Report of a run's network on ``split``, also written to ``<run>/report-<split>.json``."""
    job, network, folder = load_run(path)
    report = evaluation_report(network, job.data(split, data, progress), loss_from_config(job.loss),
                               batch_size=job.batch_size)
    report.update(job=asdict(job), split=split)
    _write_json(folder / f"report-{split}.json", report)
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
) -> dict:
    """Train the model's ANN view on MNIST (or load it from ``out``), convert it, sweep T; write ``conversion.json``.

    The ANN weights are checkpointed to ``<out>/ann.h5`` after training; a
    second call with the same ``out`` loads them instead of training again.
    Calibration uses the first ``calibration_samples`` training images.
    """
    from eventsim.learning.ann import ann_accuracy, train_ann
    from eventsim.learning.checkpoint import Checkpoint, save_checkpoint
    from eventsim.learning.conversion import conversion_sweep
    from eventsim.learning.optimizers import Adam
    from eventsim.learning.parameters import parameters

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    network = build_model(model, input="mnist", rng=np.random.default_rng(seed))
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
    ann_file = out / "ann.h5"
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
    rows = conversion_sweep(network, x_train[:calibration_samples], x_test, test_labels, steps=list(steps),
                            alphas=list(alphas), method=method, mode=mode, batch_size=100, seed=seed,
                            progress=progress)
    report = {"model": model, "ann": {"accuracy": ann_acc, "history": history, **config},
              "calibration_samples": calibration_samples, "test_samples": int(len(test_labels)), "sweep": rows}
    _write_json(out / "conversion.json", report)
    return report
