"""The ``eventsim`` command: a thin shell over the library.

    eventsim train nmnist [--epochs N] [--out runs/nmnist] ...   train, evaluate, report
    eventsim train nmnist --out runs/nmnist --resume [--epochs N]  continue a run with its own options
    eventsim eval runs/nmnist [--split test]                     report on a split
    eventsim inspect lee2020-lenet5 [--input nmnist]             layers, shapes, synapses, MACs
    eventsim inspect MODEL|RUN --grad-flow [--slope 1 100]       gradient magnitude per layer
    eventsim plot runs/nmnist [--compare runs/other]             raster, firing rates, curves (PNG)
    eventsim convert [--steps 64 32 16 8 4] [--alpha 1 0.4]      ANN -> SNN conversion, accuracy vs T
    eventsim conform --candidate mymodule:factory [--examples N] test an implementation against eventsim
    eventsim conform-matrix [--examples N] [--markdown PATH]     judge every installed SNN framework
    eventsim run --graph NET.nir --input SPIKES.npz --steps T --out OUT.npz   every node's output
    eventsim bench [--steps 25 100 300] [--threads 2] [--json]   eventsim against its CPU peers and the machine

This module only parses arguments and calls :mod:`eventsim.learning.runs`,
:mod:`eventsim.learning.zoo`, :mod:`eventsim.plots` and :mod:`eventsim.bench`. Errors a user can act
on (eventsim's own, a full or read-only disk, a damaged HDF5 file, a missing optional extra) are printed
as one line and exit with status 2 (:func:`failure`); EVENTSIM_DEBUG=1 shows their traceback instead.
SIGINT and SIGTERM stop a run cleanly, with status 130 and 143 (:func:`main`).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any, Iterator, Sequence

from eventsim.errors import EventsimError
from eventsim.extras import missing_extra, require


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    from eventsim.learning.runs import DATASET_DEFAULTS, DATASETS, Job

    defaults = Job()  # N-MNIST's; the fields of DATASET_DEFAULTS depend on the dataset
    per_dataset = tuple(DATASET_DEFAULTS["nmnist"])
    helps = {
        "model": "model zoo name (eventsim inspect --list)",
        "rule": "gradient rule: lee2020, lee2020-code, bptt",
        "surrogate": "surrogate of the bptt rule: straight_through, fast_sigmoid, arctan, sigmoid, triangle",
        "optimizer": "adam, adamw, sgd",
        "milestones": "epochs at which the learning rate is multiplied by --lr-factor",
        "steps": "time steps T",
        "binning": "event bins (nmnist, shd, dvsgesture): binary or count",
        "rate-scale": "MNIST rate coding: spike probability = scale * pixel / 255",
        "lr": "learning rate",
        "weight-decay": "L2 weight decay of the optimizer (decoupled for adamw)",
        "lr-factor": "learning-rate multiplier at each milestone",
        "batch-size": "samples per optimizer step",
        "epochs": "training epochs (with --resume: the total, more than those trained)",
        "seed": "initialisation, shuffling, rate coding and dropout masks",
        "train-limit": "train on this many samples, classes interleaved (0: all)",
        "test-limit": "evaluate on this many samples, classes interleaved (0: all)",
        "tau": "membrane time constant in steps",
        "loss": "lee_mse, cross_entropy, spike_count_mse (with --on-count)",
        "encoding": "MNIST input: rate (Bernoulli spikes) or direct (pixels as currents at every step)",
        "leak": "per-step leak factor of every neuron, 1 for IF",
        "width": "multiplies the channels of every conv and the size of every hidden fc layer",
        "dropout": "p of every dropout layer of the model, 0 for none",
        "slope": "slope of the bptt surrogate: c of fast_sigmoid, alpha of arctan and sigmoid",
        "tune-slope": "bisect the surrogate slope to a gradient-flow ratio of 1 before training",
        "calibrate": "before training: none, unit-currents (weight scales) or max-current (thresholds)",
        "calibration-samples": "training samples used by --calibrate and --tune-slope",
        "on-count": "target spike count of the label's output neuron (loss spike_count_mse)",
        "eval-each-epoch": "evaluate the whole test split after every epoch (always done for test sets up to "
                           "1,000 samples; job.json records what the run does)",
        "norm": "input-current batch norm on every spiking layer: none, batch_time or batch (statistics axes)",
        "checkpoint-every": "also checkpoint every N training steps, 0 for only at the end of each epoch",
        "chunk-size": "samples of a batch computed together (a power of two), the unit of work of --cluster; "
                      "changes no number but the batch-norm statistics, taken per chunk",
    }
    unset = {"slope": "the surrogate's own", "on_count": "none"}  # what a field left at None means
    # Every default is None, "not given": a fresh run takes Job's defaults, a resumed one its own job's.
    for f in fields(Job):
        if f.name == "dataset":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        shown = unset.get(f.name, "the model's") if default is None else default
        if f.name in per_dataset:
            shown = ", ".join(f"{getattr(Job(dataset=d), f.name)} for {d}" for d in DATASETS)
        text = f"{helps[flag[2:]]} (default: {shown})"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=None, help=text)
            continue
        kind = {int: int, float: float, str: str}.get(type(default), float)
        extra = {"nargs": "*", "type": int} if f.name == "milestones" else {"type": kind}
        parser.add_argument(flag, default=None, help=text, **extra)


def _cmd_train(args: argparse.Namespace) -> None:
    from eventsim.errors import OptionError
    from eventsim.datasets.download import DATASETS as DOWNLOADABLE
    from eventsim.learning.runs import DATASET_DEFAULTS, Job, saved_job, train

    given = {f.name: getattr(args, f.name) for f in fields(Job)
             if f.name != "dataset" and getattr(args, f.name) is not None}
    out = args.out or f"runs/{args.dataset}-{given.get('model', DATASET_DEFAULTS[args.dataset]['model'])}"
    saved = saved_job(out) if args.resume else None
    if saved is not None:  # options not given keep the run's own; train() checks the ones given
        if saved.dataset != args.dataset:
            raise OptionError(f"{out} holds a {saved.dataset} run, not {args.dataset}")
        given = {**asdict(saved), **given}
    job = Job(**{**given, "dataset": args.dataset})
    if args.download and args.dataset not in DOWNLOADABLE:
        raise OptionError(f"--download fetches {' and '.join(DOWNLOADABLE)}; download {args.dataset} with tonic "
                          "(its dataset class, save_to=DIR), then train with --data DIR")
    if args.download:
        _download_missing(args.dataset, args.data)
    with _cluster(args) as cluster:
        report = train(job, out, data=args.data, resume=args.resume, cluster=cluster)
    print(json.dumps(_summary(report), indent=2))
    print(f"run folder: {out} (job.json, metrics.jsonl, checkpoint.h5, report.json)")


def _cluster(args: argparse.Namespace) -> Any:
    """The cluster ``--cluster`` (else ``EVENTSIM_CLUSTER``) names, as a context manager; a null one for none."""
    from contextlib import nullcontext

    from eventsim.cluster import open_cluster

    cluster = open_cluster(args.cluster)
    return nullcontext() if cluster is None else cluster


def _cluster_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="SPEC",
                        help="run on a Dask cluster: local, local:N (N worker processes started here) or a "
                             "scheduler address such as tcp://host:8786; the results do not depend on the number "
                             "of workers and, except for conform's sharded campaign, are those without a cluster "
                             "(default: EVENTSIM_CLUSTER, else none; docs/cluster.md)")


def _summary(report: dict) -> dict:
    keys = ("split", "samples", "epochs", "accuracy", "balanced_accuracy", "input_events_per_sample",
            "synops_total_per_sample", "ann_macs_total", "train_seconds", "samples_per_s")
    out = {k: report[k] for k in keys if k in report}
    out["spikes_per_sample"] = report["spikes_per_sample"]
    out["energy_ann_over_snn"] = report["energy"]["ann_over_snn"]
    return out


def _cmd_eval(args: argparse.Namespace) -> None:
    from eventsim.learning.runs import evaluate_run, report_path

    with _cluster(args) as cluster:
        report = evaluate_run(args.run, split=args.split, data=args.data, cluster=cluster)
    print(json.dumps(_summary(report), indent=2))
    print(f"report: {report_path(args.run, args.split)}", file=sys.stderr)  # stdout stays one JSON document


def _cmd_inspect(args: argparse.Namespace) -> None:
    from eventsim.learning.zoo import MODELS, describe

    if args.grad_flow:
        return _grad_flow(args)
    if args.list or not args.model:
        for name, config in MODELS.items():
            print(f"{name:24s} {config['source']}")
        return
    print(describe(args.model, input=args.input) if args.input else describe(args.model))


def _grad_flow(args: argparse.Namespace) -> None:
    from dataclasses import replace
    from pathlib import Path

    import numpy as np

    from eventsim.errors import OptionError
    from eventsim.layers import Readout
    from eventsim.learning.runs import JOB, Job, gradient_flow_of, load_run, prepare, read_prepared
    from eventsim.learning.trainer import Trainer

    if not args.model:
        raise OptionError("--grad-flow needs a model name or a run folder")
    if args.plot:  # checked before the measurement, which takes a while
        from eventsim.plots import check_png_path

        check_png_path(args.plot)
        require("matplotlib", "eventsim inspect --plot")
    surrogate = None
    if (Path(args.model) / JOB).exists():
        job, network, folder = load_run(args.model)
        surrogate = read_prepared(folder).get("surrogate")
        what = f"run {args.model}"
    else:
        dataset = args.input or "mnist"
        steps = args.steps or 8
        job = Job(dataset=dataset, model=args.model, rule="bptt", steps=steps, encoding=args.encoding,
                  leak=args.leak, width=args.width, calibrate=args.calibrate, on_count=steps / 2, seed=args.seed)
        network = job.network(np.random.default_rng(args.seed))
        job = replace(job, loss="cross_entropy" if isinstance(network.layers[-1], Readout) else "spike_count_mse")
        if job.calibrate != "none":
            trainer = Trainer(network, rule=job.rule_object(), loss=job.loss_object(), optimizer=job.optimizer_object(),
                              progress=None)
            prepare(job, trainer, job.data("train", args.data, None))
        what = f"{args.model} at initialisation (seed {args.seed}, T = {job.steps}, calibrate {job.calibrate})"
    flows = gradient_flow_of(job, network, data=args.data, samples=args.samples, slopes=args.slope or (),
                             surrogate=surrogate, seed=args.seed)
    print(f"gradient flow of {what}, {args.samples} training samples of {job.dataset}")
    for label, flow in flows.items():
        print(f"\n{label}")
        print(flow.table())
    if args.plot:
        from eventsim import plots

        print(plots.plot_gradient_flow(flows, args.plot, title=f"gradient flow: {args.model}"))


def _cmd_plot(args: argparse.Namespace) -> None:
    from pathlib import Path

    from eventsim import plots
    from eventsim.errors import CheckpointError, OptionError
    from eventsim.learning.runs import METRICS, REPORT, load_run, run_data

    require("matplotlib", "eventsim plot")  # before loading the run and its data, not after
    job, network, folder = load_run(args.run)
    # Every file is read and checked before anything is drawn: a damaged one fails at once, not after the raster.
    report = plots.read_report(folder / REPORT) if (folder / REPORT).exists() else None
    metrics = plots.read_metrics(folder / METRICS) if (folder / METRICS).exists() else None
    compared = {}
    if args.compare:
        logs = {Path(run).name: Path(run) / METRICS for run in [args.run, *args.compare]}
        missing = [str(path) for path in logs.values() if not path.exists()]
        if missing:
            raise CheckpointError(f"no training log to compare: {', '.join(missing)}")
        compared = {name: plots.read_metrics(path) for name, path in logs.items()}
    data = job.data(args.split, run_data(folder, args.data), None)
    if not 0 <= args.sample < len(data):
        valid = f"; choose 0 to {len(data) - 1}" if len(data) else ""
        raise OptionError(f"--sample {args.sample}: the {args.split} split of {args.run} has {len(data)} samples{valid}")
    events, label = data[args.sample]
    out = Path(args.out) if args.out else folder / "plots"
    written = [plots.plot_raster(network, events, out / "raster.png", title=f"{job.model}, label {label}")]
    if report is not None:
        written.append(plots.plot_firing_rates(report, out / "firing_rates.png"))
    if metrics is not None:
        written.append(plots.plot_curves(metrics, out / "curves.png"))
    if compared:
        written.append(plots.plot_curves(compared, out / "curves_compared.png"))
    for path in written:
        print(path)


def _cmd_convert(args: argparse.Namespace) -> None:
    from eventsim.learning.runs import convert

    with _cluster(args) as cluster:
        report = convert(
            args.out, model=args.model, data=args.data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
            seed=args.seed, steps=args.steps, alphas=args.alpha, method=args.method, mode=args.mode,
            calibration_samples=args.calibration_samples, train_limit=args.train_limit, test_limit=args.test_limit,
            cluster=cluster,
        )
    print(f"ANN test accuracy {100 * report['ann']['accuracy']:.2f} % ({report['test_samples']} samples)")
    print(f"{'T':>5} {'alpha':>6} {'SNN accuracy':>13} {'SynOps/sample':>14}")
    for row in report["sweep"]:
        print(f"{row['steps']:>5} {row['alpha']:>6} {100 * row['accuracy']:>12.2f}% {row['synops_per_sample']:>14,.0f}")
    print(f"report: {args.out}/conversion.json")


def _cmd_conform(args: argparse.Namespace) -> int:
    from eventsim.cluster import cluster_spec
    from eventsim.errors import OptionError
    from eventsim.testing import Features, conform
    from eventsim.testing.conform import load_candidate
    from eventsim.testing.shards import conform_shards

    candidate = load_candidate(args.candidate)
    if args.replay is not None:
        from eventsim.testing.replay import replay

        outcome = replay(args.replay, candidate)
        print(outcome)
        return 0 if outcome.ok else 1
    features = getattr(candidate, "features", None) or Features()
    features = features.without(*args.without).including(*args.including).set(*args.settings)
    if cluster_spec(args.cluster) is None:
        report = conform(candidate, features=features, examples=args.examples, seed=args.seed,
                         gradients=not args.no_gradients, database=args.database)
    elif args.database is not None:
        raise OptionError("--database keeps the failing cases of one process; it cannot be used with --cluster")
    else:
        with _cluster(args) as cluster:
            report = conform_shards(args.candidate, features=features, examples=args.examples, seed=args.seed,
                                    gradients=not args.no_gradients, cluster=cluster, progress="stderr")
    print(report)
    return 0 if report.ok else 1


def _cmd_conform_matrix(args: argparse.Namespace) -> int:
    import json

    from eventsim.atomic import write_text
    from eventsim.testing.matrix import conformance_page, json_ready, run_matrix

    matrix = run_matrix(examples=args.examples, seed=args.seed, device=args.device, only=tuple(args.only))
    if args.json:
        write_text(args.json, json.dumps(json_ready(matrix.to_json()), indent=1) + "\n")
    if args.markdown:
        write_text(args.markdown, conformance_page(matrix))
    print(matrix.markdown() if not args.markdown else f"conform-matrix: wrote {args.markdown}")
    return 0 if matrix.ok else 1


def _seed(text: str) -> int | None:
    """``--seed``: an integer, or ``random`` for a fresh one (the report prints it)."""
    if text == "random":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be an integer or 'random', got {text!r}") from None


def _cmd_run(args: argparse.Namespace) -> None:
    from eventsim.nir.run_file import run_file

    arrays = run_file(args.graph, args.input, args.steps, args.out, dt=args.dt)
    print(f"{args.out}: {len(arrays)} arrays ({', '.join(sorted(arrays))})")


def _cmd_bench(args: argparse.Namespace) -> None:
    from eventsim.bench import run_bench, table

    from eventsim.bench.cluster import model_table

    records = run_bench(args.workloads, steps=args.steps, threads=args.threads, batch=args.batch,
                        repeats=args.repeats, data=args.data, density=args.density, systems=args.systems)
    print(json.dumps(records, indent=1) if args.json else table(records))
    for t in dict.fromkeys(r["T"] for r in records):
        model = model_table([r for r in records if r["T"] == t and r["threads"] == args.threads[0]])
        if model is not None and not args.json:
            print("\n" + model)


def _version() -> str:
    """The installed distribution's version, else (running from a source tree) the source's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eventsim")
    except PackageNotFoundError:
        from eventsim import __version__

        return __version__


def _download_missing(dataset: str, data: str | None) -> None:
    """Download ``dataset`` into ``data`` (else the user folder) unless the readers already find it there."""
    from eventsim.datasets import load_mnist
    from eventsim.datasets.download import download
    from eventsim.datasets.nmnist import NMNIST
    from eventsim.errors import DataError

    try:  # both splits must be there; reading MNIST's headers and listing N-MNIST's files is cheap
        for split in ("train", "test"):
            NMNIST(data, split) if dataset == "nmnist" else load_mnist(data, split)
    except DataError:
        print(f"{dataset}: downloading into {download(dataset, data)}", file=sys.stderr)


def _cmd_data_download(args: argparse.Namespace) -> None:
    from eventsim.datasets.download import download

    print(f"{args.dataset}: downloaded into {download(args.dataset, args.data)}")


def _cmd_data_cache(args: argparse.Namespace) -> None:
    from eventsim.datasets.folders import cache_folder, clear_cache, folder_size

    folder = cache_folder()
    if args.clear:
        files, size = clear_cache()
        print(f"{folder}: removed {_files(files)}, {_bytes(size)}")
        return
    files, size = folder_size(folder)
    print(f"{folder}: {_files(files)}, {_bytes(size)}")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _bytes(size: int) -> str:
    """``size`` in decimal units, e.g. 81.2 MB."""
    value, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


#: Where the encoded-data cache is (eventsim.datasets.folders.cache_folder), in words.
CACHE_FOLDER = "$XDG_CACHE_HOME/eventsim/cache (by default ~/.cache/eventsim/cache; eventsim data cache shows it)"
#: What the downloads fetch and where they put it, in words.
DOWNLOADS = ("N-MNIST (about 1 GB, the tonic extra) or MNIST (about 12 MB) into --data, else "
             "~/.cache/eventsim, verified against the release's checksums")
#: Said in the help of every command that encodes data.
CACHED = f"encoded samples are cached in {CACHE_FOLDER}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eventsim", description="Event-driven spiking neural network simulator.")
    p.add_argument("--version", action="version", version=f"eventsim {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model, evaluate it, write a run folder")
    from eventsim.learning.runs import DATASETS

    t.add_argument("dataset", choices=DATASETS)
    t.add_argument("--data", help=f"data folder (default: EVENTSIM_DATA, then ~/.cache/eventsim); {CACHED}")
    t.add_argument("--out", help="run folder (default: runs/<dataset>-<model>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--download", action="store_true", help=f"download the dataset first if it is not found ({DOWNLOADS})")
    _job_arguments(t)
    _cluster_argument(t)
    t.set_defaults(handler=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a run folder (or its checkpoint) on a split")
    e.add_argument("run", help="run folder, or a checkpoint file inside one")
    e.add_argument("--split", default="test", choices=("train", "test"), help="split to report on (default: test)")
    e.add_argument("--data", help=f"data folder (default: the run's own, else EVENTSIM_DATA, then ~/.cache/eventsim); "
                   f"{CACHED}")
    _cluster_argument(e)
    e.set_defaults(handler=_cmd_eval)

    i = sub.add_parser("inspect", help="describe a model of the zoo")
    i.add_argument("model", nargs="?")
    i.add_argument("--input", help="input name (e.g. nmnist, mnist)")
    i.add_argument("--list", action="store_true", help="list the models")
    g = i.add_argument_group("gradient flow (Ledinauskas et al. 2020): MODEL is a zoo name or a run folder")
    g.add_argument("--grad-flow", action="store_true",
                   help="per-layer mean |dL/dW| on a training batch and the first-half / second-half ratio")
    g.add_argument("--slope", type=float, nargs="*", help="surrogate slopes to measure (default: the job's)")
    g.add_argument("--samples", type=int, default=32, help="training samples in the batch (default: 32)")
    g.add_argument("--plot", help="also draw the magnitudes into this PNG file (needs the plot extra)")
    g.add_argument("--data", help="data folder (default: EVENTSIM_DATA, then ~/.cache/eventsim)")
    g.add_argument("--seed", type=int, default=0, help="initialisation and dropout masks (default: 0)")
    g.add_argument("--steps", type=int, help="time steps T of a zoo model (default: 8)")
    g.add_argument("--encoding", default="rate", help="MNIST input of a zoo model: rate or direct (default: rate)")
    g.add_argument("--leak", type=float, help="leak of every neuron of a zoo model, 1 for IF (default: the model's)")
    g.add_argument("--width", type=float, default=1.0, help="width multiplier of a zoo model (default: 1)")
    g.add_argument("--calibrate", default="none",
                   help="none, unit-currents or max-current, before measuring (default: none)")
    i.set_defaults(handler=_cmd_inspect)

    c = sub.add_parser("convert", help="train an ANN on MNIST, convert it to an SNN, sweep the latency T")
    c.add_argument("--model", default="ngu2022-mnist", help="model zoo name of the ANN (default: ngu2022-mnist)")
    c.add_argument("--data", help="data folder holding mnist/ (default: EVENTSIM_DATA, then ~/.cache/eventsim)")
    c.add_argument("--out", default="runs/convert-ngu2022-mnist",
                   help="folder for ann.h5 and conversion.json (default: runs/convert-ngu2022-mnist)")
    c.add_argument("--epochs", type=int, default=8, help="ANN training epochs (default: 8)")
    c.add_argument("--lr", type=float, default=1e-3, help="ANN learning rate, Adam (default: 0.001)")
    c.add_argument("--batch-size", type=int, default=64, help="ANN samples per optimizer step (default: 64)")
    c.add_argument("--seed", type=int, default=0, help="initialisation, shuffling, rate coding (default: 0)")
    c.add_argument("--steps", type=int, nargs="+", default=[64, 32, 16, 8, 4],
                   help="latencies T to test (default: 64 32 16 8 4)")
    c.add_argument("--alpha", type=float, nargs="+", default=[1.0], help="threshold scales to test (default: 1)")
    c.add_argument("--method", default="channel",
                   help="threshold normalisation: channel (Algorithm 2), layer, percentile (default: channel)")
    c.add_argument("--mode", default="direct",
                   help="test input: direct (analog current) or rate (Bernoulli) (default: direct)")
    c.add_argument("--calibration-samples", type=int, default=1000,
                   help="training samples whose activations set the thresholds (default: 1000)")
    c.add_argument("--train-limit", type=int, default=0, help="train the ANN on this many samples (default: 0, all)")
    c.add_argument("--test-limit", type=int, default=0, help="test on this many samples (default: 0, all)")
    _cluster_argument(c)
    c.set_defaults(handler=_cmd_convert)

    g = sub.add_parser("plot", help="spike raster, firing rates and training curves of a run (PNG)")
    g.add_argument("run", help="run folder, or a checkpoint file inside one")
    g.add_argument("--sample", type=int, default=0, help="index of the sample drawn in the raster (default: 0)")
    g.add_argument("--split", default="test", choices=("train", "test"), help="split of that sample (default: test)")
    g.add_argument("--data", help="data folder (default: the one the run was trained with, else EVENTSIM_DATA, "
                   f"then ~/.cache/eventsim); {CACHED}")
    g.add_argument("--out", help="folder for the PNG files (default: <run>/plots)")
    g.add_argument("--compare", nargs="*", default=[], metavar="RUN",
                   help="other run folders whose loss and accuracy curves join this run's in curves_compared.png")
    g.set_defaults(handler=_cmd_plot)

    r = sub.add_parser(
        "run", help="run a NIR graph on input spikes, write every node's output (.npz)",
        description="SPIKES.npz holds 'spikes', a float array (T, batch, *input_shape) of per-step input values "
        "(counts allowed). OUT.npz gets one array (T, batch, *shape) per graph node, named by its NIR name, with "
        "the node's per-step output (a readout node, which never fires: its running readout U[t] / t, whose last "
        "step is the network's prediction); '<name>.potential', the pre-threshold potential U, for every neuron "
        "node; and 'output', what reaches the Output node (the last node's output). Neuron parameters map to "
        "steps by forward Euler of length --dt (docs/nir.md).",
    )
    r.add_argument("--graph", required=True, help="NIR file (HDF5)")
    r.add_argument("--input", required=True, help="SPIKES.npz with the array 'spikes'")
    r.add_argument("--steps", type=int, required=True, help="time steps T; must match the spikes")
    r.add_argument("--out", required=True, help="OUT.npz, written atomically")
    r.add_argument("--dt", type=float, default=1.0, help="Euler step length of the graph's time constants (default: 1)")
    r.set_defaults(handler=_cmd_run)

    from eventsim.bench.suite import DEFAULT_STEPS
    from eventsim.bench.workloads import DEFAULT_DENSITY, WORKLOADS

    b = sub.add_parser(
        "bench", help="time eventsim against its CPU peers (snnTorch, Norse, SpikingJelly, sinabs, plain PyTorch) "
                      "and the machine's limit (a table, or JSON records)",
        description="The run goes --repeats times over every case (interleaved rounds), each time in a fresh "
        "process: warm-up, one timed repetition, peak resident memory of the measured part; the fastest round is "
        "kept. Workloads: Lee's N-MNIST LeNet5 training step (lee2020, bptt, the peers' BPTT) and inference, "
        "the first convolution's event scatter and the core's float32 add throughput (one core each), an epoch's "
        "data work; a recurrent CubaLIF network (700-256-20, snnTorch RSynaptic as the peer) on seeded Bernoulli "
        "input, forward and forward+backward; an epoch in one process and on a local Dask cluster "
        "(cluster-train, with the scaling model of docs/cluster.md). A peer whose packages are missing is "
        "reported as skipped, with the command that installs them.",
    )
    b.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), help="time steps T (default: 25 100 300)")
    b.add_argument("--threads", type=int, nargs="+", default=[2], help="thread counts; 1 2 gives the scaling (default: 2)")
    b.add_argument("--batch", type=int, default=16, help="samples per batch (default: 16)")
    b.add_argument("--repeats", type=int, default=3,
                   help="rounds over every case, each timing it once in a fresh process, the fastest kept (default: 3)")
    b.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS), metavar="WORKLOAD",
                   help=f"default: all ({', '.join(WORKLOADS)})")
    b.add_argument("--systems", nargs="+", metavar="SYSTEM",
                   help="only these systems of the chosen workloads (e.g. eventsim eventsim-lee2020 eventsim-bptt; "
                        "default: all)")
    b.add_argument("--density", type=float, default=DEFAULT_DENSITY,
                   help=f"input spikes per channel and step of the cubalif-rnn workloads (default: {DEFAULT_DENSITY})")
    b.add_argument("--json", action="store_true", help="print the records as a JSON list instead of the table")
    b.add_argument("--data", help=f"data folder holding NMNIST/ (default: EVENTSIM_DATA, then ~/.cache/eventsim); "
                   f"{CACHED}")
    b.set_defaults(handler=_cmd_bench)

    k = sub.add_parser("conform", help="test another implementation against eventsim on generated cases")
    k.add_argument("--candidate", required=True, help="module:factory returning a candidate (docs/testing.md)")
    k.add_argument("--examples", type=int, default=50,
                   help="cases per kind (default: 50); with --cluster, split into independently seeded shards run "
                        "on the workers (docs/cluster.md)")
    k.add_argument("--seed", type=_seed, default=0, help="hypothesis seed, or 'random' (default: 0)")
    k.add_argument("--database", metavar="DIR",
                   help="hypothesis example database: failing cases kept there are tried first on the next run")
    k.add_argument("--replay", metavar="TOKEN",
                   help="run the one case of a replay token (printed with every failure) instead of generating")
    k.add_argument("--no-gradients", action="store_true", help="compare the forward pass only")
    _cluster_argument(k)
    k.add_argument("--without", nargs="+", default=[], metavar="FEATURE",
                   help="features not to generate, e.g. residual max v_reset soft float32 (docs/testing.md)")
    k.add_argument("--with", dest="including", nargs="+", default=[], metavar="FEATURE",
                   help="extra features to generate, e.g. input_gain reset_delayed binary_input euler_gain arctan")
    k.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                   help="set a feature field, e.g. --set leaks=0.5,0.75 --set detach_reset=on --set dtypes=float32 "
                        "--set surrogates=arctan,fast_sigmoid(c=25;b=1) (docs/testing.md); applied after "
                        "--with/--without")
    k.set_defaults(handler=_cmd_conform)

    m = sub.add_parser("conform-matrix", help="judge every installed SNN framework by eventsim (docs/conformance.md)")
    m.add_argument("--examples", type=int, default=200, help="cases per kind and dtype of every row (default: 200)")
    m.add_argument("--seed", type=int, default=0, help="hypothesis seed of every row (default: 0)")
    m.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: the CPU rows; cuda: the GPU backends' rows, on a machine with a GPU (default: cpu)")
    m.add_argument("--only", nargs="+", default=[], metavar="FRAMEWORK", help="run these frameworks only")
    m.add_argument("--json", metavar="PATH", help="write the machine-readable result here")
    m.add_argument("--markdown", metavar="PATH", help="write the page docs/conformance.md here")
    m.set_defaults(handler=_cmd_conform_matrix)

    d = sub.add_parser("data", help="the data eventsim keeps for itself")
    what = d.add_subparsers(dest="what", required=True)
    cache = what.add_parser("cache", help="print the encoded-data cache folder and its size",
                            description=f"Encoded samples are cached in {CACHE_FOLDER}; a cache file is "
                            "rebuilt whenever it cannot be trusted, so clearing it only costs the next encoding.")
    cache.add_argument("--clear", action="store_true", help="remove the cache folder and everything in it")
    cache.set_defaults(handler=_cmd_data_cache)
    load = what.add_parser("download", help="download a dataset's original release, checksums verified",
                           description=f"Downloads {DOWNLOADS}.")
    load.add_argument("dataset", choices=("nmnist", "mnist"))
    load.add_argument("--data", help="folder to lay the data out in (default: ~/.cache/eventsim, where every "
                      "command looks after --data and EVENTSIM_DATA)")
    load.set_defaults(handler=_cmd_data_download)
    return p


#: Exit status of a run stopped by SIGINT (Ctrl-C) and by SIGTERM: 128 + the signal's number, as a shell
#: reports a process the signal killed, so a supervisor can tell the two apart from errors (2) and from each other.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: Set to 1 to see the traceback of an error instead of its one line.
DEBUG = "EVENTSIM_DEBUG"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt.

    A KeyboardInterrupt, so everything that cleans up after Ctrl-C (atomic
    writes remove their temporary file, the trainer's last checkpoint stays
    whole) does the same for a ``kill`` or a batch system's time limit.
    """


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM inside the block; the previous handler is restored after it.

    Signal handlers can only be set from the main thread; called from
    another one (an application embedding :func:`main`), SIGTERM keeps its handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` (default: the process's arguments) and return its exit status.

    0 on success; 1 when ``eventsim conform`` finds a divergence; 2 for an
    error the user can act on, printed as one line (:func:`failure`), or, with
    ``EVENTSIM_DEBUG=1``, raised with its traceback; 130 after SIGINT and 143
    after SIGTERM, both printed as one line saying that a run continues with
    ``--resume``. Any other exception is a bug and propagates with its traceback.
    """
    args = parser().parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            status = args.handler(args)
        except KeyboardInterrupt as exc:
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            print(f"eventsim {args.command}: {what}; a run continues with --resume", file=sys.stderr)
            return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        except Exception as exc:
            line = failure(exc, getattr(args, "out", None))
            if line is None or os.environ.get(DEBUG, "") not in ("", "0"):
                raise
            print(f"eventsim {args.command}: {line}", file=sys.stderr)
            return 2
    return status or 0


def failure(exc: BaseException, out: str | None = None) -> str | None:
    """The one line that tells the user what went wrong and what to do, or None for a bug.

    The one place that decides what a user sees instead of a traceback:
    eventsim's own errors (their message already names the file, node or
    option); OSError (a full disk, a read-only or forbidden folder, a path
    that is missing or runs through a file), named by its path or, when the
    system gives none, by the command's ``--out``; errors raised inside h5py
    that no reader caught (the HDF5 file is damaged); and ImportError of an
    optional module that is not installed, with the command that installs it
    for how eventsim was installed. ``out`` is the command's ``--out``, if any.
    """
    if isinstance(exc, EventsimError):
        return str(exc)
    if isinstance(exc, ImportError):
        missing = missing_extra(exc, "this command")
        return None if missing is None else str(missing)
    if isinstance(exc, OSError) and exc.errno is not None:
        return _os_failure(exc, out)
    from eventsim.hdf5 import raised_in_h5py

    if raised_in_h5py(exc):  # h5py names the file only when opening it, so the rest of its message is kept
        return f"an HDF5 file it read is damaged or not one eventsim can read (h5py: {exc})"
    if isinstance(exc, OSError):  # without errno: a library's own I/O failure, its message is all there is
        return str(exc)
    return None


#: What an OSError means and what to do, by errno.
_OS_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere (--out)",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere (--out)",
    errno.EROFS: "the file system is read-only; write elsewhere (--out)",
    errno.EACCES: "permission denied; write elsewhere (--out) or change the permissions",
    errno.EPERM: "operation not permitted; write elsewhere (--out) or change the permissions",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "a folder where a file is needed; give a file's path",
    errno.EEXIST: "exists already and is not a folder; choose another path",
}
#: Errors only a write can cause: without a path from the system, the command's output is where it happened.
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _os_failure(exc: OSError, out: str | None) -> str:
    advice = _OS_ADVICE.get(exc.errno)
    if exc.filename is not None:
        return f"{exc.filename}: {advice or exc.strerror or exc}"
    # write() names no file: the output being written is the best guess of where, and is named as such.
    if exc.errno in _WRITE_ERRORS and out is not None:
        return f"while writing the output {out}: {advice}"
    return f"{exc}; {advice}" if advice else str(exc)  # h5py puts the file's name into its message


if __name__ == "__main__":
    sys.exit(main())
