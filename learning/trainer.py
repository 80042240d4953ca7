"""Training loop: epochs of mini-batches, evaluation, metrics log, checkpoints, resume.

A dataset is any sequence of ``(events, label)`` pairs, ``events`` an
:class:`~eventsim.events.Events` container of batch 1 (all with the same steps,
shape and dtype as the network) and ``label`` an int.

Determinism: all randomness (the shuffling of every epoch, the dropout masks
of every step) comes from one ``numpy.random.Generator`` seeded by ``seed``. A
checkpoint stores the weights, the optimizer state, the generator's state at
the start of the epoch (to rebuild the epoch's order) and now (to continue the
dropout draws), the step count and the metrics so far; resuming from it ends
bit-identical to the run that was never interrupted. Checkpoints are written
atomically (:func:`eventsim.learning.checkpoint.save_checkpoint`), and the
metrics log (JSON lines, one per epoch) is rewritten atomically from the
checkpointed history, so a crash never leaves a torn file behind.
"""

from __future__ import annotations

import json
import os
import time
from math import ceil
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

from eventsim.atomic import write_text
from eventsim.errors import CheckpointError, OptionError
from eventsim.events import Events
from eventsim.network import Network
from eventsim.learning.checkpoint import Checkpoint, generator_from_state, load_checkpoint, rng_state, save_checkpoint
from eventsim.learning.losses import Loss
from eventsim.learning.optimizers import Optimizer
from eventsim.learning.parameters import load_parameters, load_statistics, parameters, statistics
from eventsim.progress import progress_bar
from eventsim.learning.gradient_flow import SlopeTuning, tune_slope
from eventsim.learning.rules import BPTT, Rule
from eventsim.learning.schedules import Constant, Schedule, schedule_from_config
from eventsim.learning.chunks import check_chunk_size
from eventsim.learning.tally import evaluate
from eventsim.learning.steps import DEFAULT_CHUNK, ClusterChunks, StepResult, apply_step, batch_of, local_chunks

Dataset = Sequence[tuple[Events, int]]


def network_description(network: Network) -> dict:
    """What identifies a network's architecture in a checkpoint (not its weights)."""
    return {
        "input_shape": list(network.input_shape),
        "dtype": network.dtype.name,
        "layers": [repr(layer) for layer in network.walk()],
    }


def _partial_epoch(history: list[dict]) -> dict | None:
    """The running sums of the epoch a checkpoint interrupted, or None; checked, as they come from a file."""
    partial = [h for h in history if h.get("in_progress")]
    if not partial:
        return None
    if len(partial) > 1:
        raise CheckpointError("its history holds more than one interrupted epoch")
    sums = {}
    for key, kind in (("loss", float), ("correct", int), ("seen", int), ("seconds", float)):
        value = partial[0].get(key)
        number = isinstance(value, int) or (kind is float and isinstance(value, float) and np.isfinite(value))
        if isinstance(value, bool) or not number or value < 0 or (kind is float and abs(value) > 1e300):
            raise CheckpointError(f"the interrupted epoch's {key!r} must be a number >= 0, got {value!r}")
        sums[key] = kind(value)
    return sums


def train_step(
    network: Network, rule: Rule, loss: Loss, optimizer: Optimizer,
    events: Events, labels: np.ndarray, *, lr: float, rng: np.random.Generator, chunk_size: int = DEFAULT_CHUNK,
) -> StepResult:
    """Forward (with dropout and batch statistics), loss, gradients by ``rule``, one optimizer update.

    The batch is computed in chunks of ``chunk_size`` samples
    (:mod:`eventsim.learning.steps`): the dropout masks are drawn from
    ``rng`` for the whole batch, the gradients summed in a fixed tree, and
    the running statistics of the network's input-current norms take the
    chunks' batch statistics (:func:`eventsim.norm.apply_running_statistics`).
    """
    chunk_size = check_chunk_size(chunk_size)
    labels = np.asarray(labels)
    masks = network.dropout_masks(events.batch, rng)
    return apply_step(network, optimizer, local_chunks(network, rule, loss, events, labels, masks, chunk_size),
                      lr=lr)


class Trainer:
    """Trains a network with a gradient rule, a loss and an optimizer.

    Parameters
    ----------
    network : Network
        Initialised (e.g. :func:`eventsim.learning.init.init_lee2020`).
    rule : Rule
        ``Lee2020()``, ``Lee2020Code()`` or ``BPTT(...)``.
    loss : Loss
    optimizer : Optimizer
    schedule : Schedule, optional
        Learning rate per step; by default the optimizer's own, constant.
    batch_size : int
    epochs : int
        Total epochs; a resumed run continues up to this number.
    seed : int
        Seeds the one generator behind shuffling and dropout.
    checkpoint : path, optional
        HDF5 checkpoint written at the end of every epoch (and every
        ``checkpoint_every`` steps); resume with :meth:`resume`.
    checkpoint_every : int, optional
        Also checkpoint every this many steps inside an epoch.
    log : path, optional
        Metrics log, one JSON object per finished epoch.
    progress : text stream, "stderr" or None
        Where the progress bar goes (:func:`eventsim.progress.progress_bar`;
        stderr by default; None: silent).
    chunk_size : int
        Each step computes its batch in chunks of this many samples (a power
        of two; :mod:`eventsim.learning.steps`). Without input-current batch
        norm it changes no number; with one, a chunk is the norm's batch.
    cluster : eventsim.cluster.Cluster, optional
        Compute the chunks on this cluster's workers (docs/cluster.md): the
        weights, metrics and checkpoints are bit-identical to a run without
        one, whatever the number of workers.
    """

    def __init__(
        self,
        network: Network,
        *,
        rule: Rule,
        loss: Loss,
        optimizer: Optimizer,
        schedule: Schedule | None = None,
        batch_size: int = 32,
        epochs: int = 1,
        seed: int = 0,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        log: str | os.PathLike | None = None,
        progress: TextIO | str | None = "stderr",
        chunk_size: int = DEFAULT_CHUNK,
        cluster: Any = None,
    ) -> None:
        for what, v, least in (("batch_size", batch_size, 1), ("epochs", epochs, 1), ("seed", seed, 0)):
            # int() would take "7" or 7.9 as a seed: another run than the one asked for
            if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or v < least:
                raise OptionError(f"{what} must be an integer >= {least}, got {v!r}")
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise OptionError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
        if checkpoint_every is not None and checkpoint is None:
            raise OptionError("checkpoint_every needs a checkpoint path")
        self.network, self.rule, self.loss, self.optimizer = network, rule, loss, optimizer
        self.schedule = schedule if schedule is not None else Constant(optimizer.lr)
        self.batch_size, self.epochs, self.seed = int(batch_size), int(epochs), int(seed)
        self.checkpoint_path = None if checkpoint is None else Path(checkpoint)
        self.checkpoint_every = checkpoint_every
        self.log_path = None if log is None else Path(log)
        self.progress = progress
        self.chunk_size = check_chunk_size(chunk_size)
        self.cluster = cluster
        self.rng = np.random.default_rng(self.seed)
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps done
        self.history: list[dict] = []
        self._epoch_start_state = rng_state(self.rng)
        self._partial: dict | None = None  # metrics of an epoch interrupted by a checkpoint

    def config(self) -> dict:
        """The full training configuration, stored in every checkpoint."""
        return {
            "network": network_description(self.network),
            "rule": self.rule.config(),
            "loss": self.loss.config(),
            "optimizer": self.optimizer.config(),
            "schedule": self.schedule.config(),
            "batch_size": self.batch_size,
            "chunk_size": self.chunk_size,
            "seed": self.seed,
        }

    def tune_surrogate_slope(self, events: Events, labels: np.ndarray, **options) -> SlopeTuning:
        """Bisect the slope of the bptt rule's surrogate on one batch, then train with it.

        :func:`eventsim.learning.gradient_flow.tune_slope` on this trainer's
        network and loss (``options`` are passed on); the rule is replaced by
        one with the slope found. Call it before training: the slope belongs
        to the configuration that checkpoints record.
        """
        if not isinstance(self.rule, BPTT):
            raise OptionError(f"slope tuning needs the bptt rule (a surrogate to tune), not {self.rule.name!r}")
        if self.step:
            raise OptionError("tune the surrogate slope before training: this trainer has already taken steps")
        tuning = tune_slope(self.network, events, labels, loss=self.loss, surrogate=self.rule.surrogate,
                            cluster=self.cluster,
                            detach_reset=self.rule.detach_reset, **options)
        self.rule = BPTT(surrogate=tuning.surrogate, detach_reset=self.rule.detach_reset)
        return tuning

    # ------------------------------------------------------------- running
    def fit(self, train: Dataset, eval_data: Dataset | None = None) -> list[dict]:
        """Train up to ``epochs`` epochs; returns the history (one dict per epoch)."""
        if len(train) == 0:
            raise OptionError("the training set is empty")
        steps_per_epoch = ceil(len(train) / self.batch_size)
        # On a cluster, the network and the training set go to every worker once per fit.
        remote = None if self.cluster is None else ClusterChunks(self.cluster, self.network, train)
        while self.epoch < self.epochs:
            self._run_epoch(train, eval_data, steps_per_epoch, remote)
        return self.history

    def _step(self, train: Dataset, idx: np.ndarray, lr: float, remote: ClusterChunks | None) -> StepResult:
        """One optimizer step on the samples ``idx`` of ``train``, its chunks computed here or on the cluster."""
        masks = self.network.dropout_masks(len(idx), self.rng)
        if remote is None:
            events, labels = batch_of(train, idx)
            step = local_chunks(self.network, self.rule, self.loss, events, labels, masks, self.chunk_size)
        else:
            step = remote.run(parameters(self.network), idx, masks, self.rule, self.loss, self.chunk_size,
                              what=f"group of chunks (step {self.step + 1}) number")
        return apply_step(self.network, self.optimizer, step, lr=lr)

    def _run_epoch(self, train: Dataset, eval_data: Dataset | None, steps_per_epoch: int,
                   remote: ClusterChunks | None) -> None:
        n = len(train)
        first = self.step - self.epoch * steps_per_epoch  # > 0 when resuming inside the epoch
        if first == 0:
            order = self.rng.permutation(n)
        else:  # the epoch's order from its start; self.rng continues where the checkpoint left it
            order = generator_from_state(self._epoch_start_state).permutation(n)
        sums = self._partial or {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self._partial = None
        # in a with block: an interrupted run ends the bar's line before its error message is printed
        with progress_bar(n, f"epoch {self.epoch + 1}/{self.epochs}", self.progress, initial=sums["seen"]) as bar:
            started = time.perf_counter() - sums["seconds"]
            for b in range(first, steps_per_epoch):
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                out = self._step(train, idx, self.schedule.lr(self.step, steps_per_epoch), remote)
                self.step += 1
                sums["loss"] += out.loss * out.samples
                sums["correct"] += out.correct
                sums["seen"] += out.samples
                bar.set_postfix({"loss": sums["loss"] / sums["seen"], "acc": 100 * sums["correct"] / sums["seen"],
                                 **({} if remote is None else {"workers": self.cluster.alive()})}, refresh=False)
                bar.update(out.samples)
                if self.checkpoint_every and self.step % self.checkpoint_every == 0 and b + 1 < steps_per_epoch:
                    self._partial = dict(sums, seconds=time.perf_counter() - started)
                    self.save()
                    self._partial = None
            seconds = time.perf_counter() - started
            record = {
                "epoch": self.epoch + 1,
                "step": self.step,
                "lr": self.schedule.lr(self.step - 1, steps_per_epoch),
                "train_loss": sums["loss"] / sums["seen"],
                "train_accuracy": sums["correct"] / sums["seen"],
                "samples_per_s": sums["seen"] / seconds if seconds > 0 else 0.0,
                "seconds": seconds,
            }
            if eval_data is not None and len(eval_data):
                ev = evaluate(self.network, eval_data, self.loss, batch_size=self.batch_size, cluster=self.cluster)
                record.update(eval_loss=ev["loss"], eval_accuracy=ev["accuracy"])
            bar.set_postfix({"loss": record["train_loss"], "acc": 100 * record["train_accuracy"],
                             **({"eval_acc": 100 * record["eval_accuracy"]} if "eval_accuracy" in record else {})},
                            refresh=False)
        self.history.append(record)
        self.epoch += 1
        self._epoch_start_state = rng_state(self.rng)
        self.save()

    # ---------------------------------------------------------- checkpoints
    def save(self) -> None:
        """Write the checkpoint and the metrics log (if paths were given), atomically."""
        if self.checkpoint_path is not None:
            history = self.history + ([dict(self._partial, in_progress=True)] if self._partial else [])
            save_checkpoint(self.checkpoint_path, Checkpoint(
                params={k: v.copy() for k, v in parameters(self.network).items()},
                statistics={k: v.copy() for k, v in statistics(self.network).items()},
                optimizer_state=self.optimizer.state_dict(),
                rng_state={"epoch_start": self._epoch_start_state, "current": rng_state(self.rng)},
                epoch=self.epoch,
                step=self.step,
                config=self.config(),
                history=history,
            ))
        if self.log_path is not None:
            write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in self.history))

    def _continues(self, ckpt: Checkpoint) -> bool:
        """Whether this trainer's schedule continues the one ``ckpt`` was trained under."""
        try:
            earlier = schedule_from_config(ckpt.config["schedule"])
        except (KeyError, TypeError, OptionError):
            return False
        begun = ckpt.epoch + any(h.get("in_progress") for h in ckpt.history)
        return self.schedule.continues(earlier, begun)

    def resume(self, path: str | os.PathLike | None = None) -> None:
        """Continue from a checkpoint (by default this trainer's own).

        The checkpoint's configuration must match this trainer's, except for
        the number of epochs and a schedule that continues the checkpoint's
        (:meth:`Schedule.continues`: the same rate for every epoch already
        begun, e.g. a milestone added after them); otherwise
        :class:`CheckpointError` lists what differs.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise OptionError("resume needs a checkpoint path")
        ckpt = load_checkpoint(path)
        mine = json.loads(json.dumps(self.config()))
        differs = sorted(k for k in set(mine) | set(ckpt.config) if mine.get(k) != ckpt.config.get(k))
        if "schedule" in differs and self._continues(ckpt):
            differs.remove("schedule")
        if differs:
            raise CheckpointError(f"{path}: the checkpoint was written by a different configuration ({', '.join(differs)})")
        # The loader checked the fields' types; what a run reads from them is
        # checked here, so a foreign or edited file is named, never a KeyError.
        try:
            load_parameters(self.network, ckpt.params)
            load_statistics(self.network, ckpt.statistics)
            self.optimizer.load_state_dict(ckpt.optimizer_state)
            epoch_start, current = (ckpt.rng_state.get(k) for k in ("epoch_start", "current"))
            generator_from_state(epoch_start)  # only checked here: the epoch's first step restores it
            rng = generator_from_state(current)
            partial = _partial_epoch(ckpt.history)
        except ValueError as exc:  # eventsim's OptionError and LayerError included
            raise CheckpointError(f"{path}: {exc}") from None
        self._epoch_start_state, self.rng = epoch_start, rng
        self.epoch, self.step = ckpt.epoch, ckpt.step
        self.history = [h for h in ckpt.history if not h.get("in_progress")]
        self._partial = partial
