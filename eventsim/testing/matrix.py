"""The conformance matrix: every installed framework adapter judged by eventsim, row by row.

docs/conformance.md. For every framework of :data:`FRAMEWORKS` that is
installed, every row its adapter declares (:mod:`eventsim.testing.matrix_rows`)
runs the conformance suite (:func:`eventsim.testing.conform.conform`) twice:
on float32 networks (dyadic and float forward) and on float64 networks
(dyadic and float forward, and ``bptt`` gradients where the row compares
them). Each row then gets a verdict: it conforms, it shows the divergence
its adapter expects (a convention, a rounding form or a framework defect),
or it diverges without a classification (or no longer shows the divergence
it should), which fails the matrix.

:func:`run_matrix` returns a :class:`Matrix`; :meth:`Matrix.to_json` is the
machine-readable result (framework, version, row, dtype, kind, outcome,
example counts, the first divergence with its replay token) and
:meth:`Matrix.markdown` the page docs/conformance.md is made of.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.metadata
import importlib.util
import io
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

import numpy as np

from eventsim.errors import MissingExtraError, OptionError
from eventsim.testing.matrix_rows import Row

#: The columns of a row: (dtype, kind of conform case).
COLUMNS = (("float32", "dyadic forward"), ("float32", "float forward"), ("float64", "dyadic forward"),
           ("float64", "float forward"), ("float64", "bptt gradients"))


@dataclass(frozen=True)
class Framework:
    """A framework in the matrix: its adapter module and how it is installed.

    ``package`` is what Python imports, ``distribution`` what pip installs
    (its version is reported), ``install`` the command docs/conformance.md
    gives for it.
    """

    name: str
    adapter: str
    package: str
    distribution: str
    install: str


#: One line per framework: a new adapter is one module plus one line here (docs/conformance.md).
FRAMEWORKS = (
    Framework("snnTorch", "eventsim.testing.snntorch_adapter", "snntorch", "snntorch",
              'pip install "eventsim[snntorch]"'),
    Framework("Norse", "eventsim.testing.norse_adapter", "norse", "norse",
              "pip install --no-deps norse nirtorch"),
    Framework("sinabs", "eventsim.testing.sinabs_adapter", "sinabs", "sinabs",
              "pip install --no-deps sinabs==3.1.3 pbr"),
    Framework("SpikingJelly", "eventsim.testing.spikingjelly_adapter", "spikingjelly", "spikingjelly",
              "pip install --no-deps spikingjelly==2.0.0 loguru"),
    Framework("Rockpool", "eventsim.testing.rockpool_adapter", "rockpool", "rockpool",
              "pip install --no-deps rockpool==3.1.0"),
    Framework("TorchCandidate", "eventsim.testing.torch_candidate_rows", "torch", "torch",
              'pip install "eventsim[torch]"'),
)


@dataclass
class Cell:
    """One column of one row: how its conform cases went.

    ``outcome``: "conforms", "diverges", "declined" (every case declined),
    "skipped" (the kind does not apply to the row), "not run" (a GPU row
    without a GPU) or "not installed".
    """

    dtype: str
    kind: str
    outcome: str
    compared: int = 0
    declined: int = 0
    examples: int = 0
    divergence: str | None = None  # the shrunk failing case and its first divergence, as conform reports it
    token: str | None = None  # its replay token (eventsim.testing.replay)
    reasons: list = field(default_factory=list)  # the most common reasons for declining

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RowResult:
    """A row's cells and verdict.

    ``verdict``: "conforms", the class of its expected divergence
    ("convention", "rounding", "defect") when it showed it, "diverges" (a
    divergence the adapter does not expect), "expected divergence not
    seen", "declined" (nothing compared), "not run" or "not installed".
    """

    framework: str
    version: str | None
    row: Row
    cells: list[Cell]
    verdict: str
    reproducer_output: list[str] | None = None

    @property
    def ok(self) -> bool:
        """Whether the row went as its adapter declares (or could not run here)."""
        return self.verdict not in ("diverges", "expected divergence not seen", "declined")

    def to_json(self) -> dict:
        expected = self.row.expected
        return {
            "framework": self.framework, "version": self.version, "row": self.row.name, "device": self.row.device,
            "features": self.row.features.describe(), "options": {k: repr(v) for k, v in self.row.options.items()},
            "verdict": self.verdict,
            "expected": None if expected is None else dict(expected.__dict__),
            "reproducer_output": self.reproducer_output,
            "cells": [c.to_json() for c in self.cells],
        }


@dataclass
class Matrix:
    """The results of :func:`run_matrix`."""

    rows: list[RowResult]
    examples: int
    seed: int
    device: str
    date: str
    versions: dict[str, str | None]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def to_json(self) -> dict:
        from eventsim import __version__

        return {"eventsim": __version__, "date": self.date, "examples": self.examples, "seed": self.seed,
                "device": self.device, "versions": self.versions, "rows": [r.to_json() for r in self.rows]}

    def markdown(self) -> str:
        """The matrix as Markdown: a table of every row, then each divergence with its class and evidence."""
        from eventsim import __version__

        tested = ", ".join(f"{name} {v}" if v else f"{name} (not installed)" for name, v in self.versions.items())
        lines = [f"Run on {self.date} with eventsim {__version__}, {self.examples} examples per kind, seed "
                 f"{self.seed}, device {self.device}: {tested}.", ""]
        header = ["framework", "row"] + [f"{d} {k.replace(' forward', '')}" for d, k in COLUMNS] + ["verdict"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in self.rows:
            cells = [_cell_text(c) for c in r.cells]
            lines.append("| " + " | ".join([r.framework, r.row.name] + cells + [_verdict_text(r)]) + " |")
        notes = [r for r in self.rows if r.row.expected is not None or r.verdict == "diverges"]
        if notes:
            lines += ["", "## Divergences", ""]
        for r in notes:
            lines += [f"### {r.framework}: {r.row.name}", "", f"Verdict: **{_verdict_text(r)}**."]
            expected = r.row.expected
            if expected is not None:
                lines += ["", expected.note]
                if expected.flags:
                    lines += ["", f"eventsim reproduces it with: `{expected.flags}`."]
                if expected.reproducer:
                    lines += ["", f"Framework-only reproducer `{expected.reproducer}`:", "", "```"]
                    lines += r.reproducer_output or ["(not run: the framework is not installed)"]
                    lines += ["```"]
            first = next((c for c in r.cells if c.divergence), None)
            if first is not None:
                lines += ["", f"First divergence ({first.dtype}, {first.kind}):", "", "```",
                          *first.divergence.splitlines(), "```"]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def _cell_text(c: Cell) -> str:
    if c.outcome == "conforms":
        return f"ok {c.compared}" + (f" (+{c.declined} declined)" if c.declined else "")
    if c.outcome == "diverges":
        return f"**diverges** ({c.compared})"
    return c.outcome


def _verdict_text(r: RowResult) -> str:
    if r.row.expected is not None and r.verdict == r.row.expected.kind:
        return {"convention": "convention difference", "rounding": "rounding form", "defect": "framework defect"}[
            r.verdict]
    return r.verdict


def installed_version(framework: Framework) -> str | None:
    """The framework's installed version, or None when it cannot be imported."""
    if importlib.util.find_spec(framework.package) is None:
        return None
    try:
        return importlib.metadata.version(framework.distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_matrix(
    frameworks: tuple[Framework, ...] | None = None,
    *,
    examples: int = 200,
    seed: int = 0,
    device: str = "cpu",
    only: tuple[str, ...] = (),
    progress: TextIO | None = sys.stderr,
) -> Matrix:
    """Run every row of every installed framework's adapter; see the module docstring.

    Parameters
    ----------
    frameworks : tuple of Framework, optional
        Default :data:`FRAMEWORKS`.
    examples : int
        Cases per kind and dtype (200 by default).
    seed : int
        Hypothesis seed of every conform run (the same seed, the same cases).
    device : {"cpu", "cuda"}
        "cpu" runs the CPU rows and marks GPU rows "not run"; "cuda" runs
        the GPU rows (on a machine with one) and marks the CPU rows "not run".
    only : tuple of str
        Framework names to run (case-insensitive); empty: all.
    progress : text stream or None
        Where a line per row is written as the matrix runs.
    """
    frameworks = FRAMEWORKS if frameworks is None else frameworks
    if device not in ("cpu", "cuda"):
        raise OptionError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if int(examples) < 1:
        raise OptionError(f"examples must be >= 1, got {examples!r}")
    names = {f.name.lower() for f in frameworks}
    unknown = sorted(set(n.lower() for n in only) - names)
    if unknown:
        raise OptionError(f"unknown framework(s) {unknown}; choose from {sorted(f.name for f in frameworks)}")
    chosen = [f for f in frameworks if not only or f.name.lower() in {n.lower() for n in only}]
    versions = {f.name: installed_version(f) for f in chosen}
    rows: list[RowResult] = []
    for framework in chosen:
        version = versions[framework.name]
        adapter = importlib.import_module(framework.adapter)
        for row in adapter.MATRIX_ROWS:
            if version is None:
                result = _not_running(framework, None, row, "not installed")
            elif row.device != device:
                result = _not_running(framework, version, row, "not run")
            else:
                result = _run_row(framework, version, adapter.candidate, row, int(examples), int(seed))
            rows.append(result)
            if progress is not None:
                print(f"conform-matrix: {framework.name}: {row.name}: {_verdict_text(result)}", file=progress,
                      flush=True)
    date = datetime.date.today().isoformat()
    return Matrix(rows, int(examples), int(seed), device, date, versions)


def _not_running(framework: Framework, version: str | None, row: Row, why: str) -> RowResult:
    return RowResult(framework.name, version, row, [Cell(d, k, why) for d, k in COLUMNS], why)


def _run_row(framework: Framework, version: str, factory: Callable[..., Any], row: Row, examples: int,
             seed: int) -> RowResult:
    from eventsim.testing.conform import conform

    try:
        candidate = factory(**row.options)
    except (OptionError, MissingExtraError) as exc:  # e.g. a backend this machine lacks
        cells = [Cell(d, k, "not run", reasons=[str(exc)]) for d, k in COLUMNS]
        return RowResult(framework.name, version, row, cells, "not run")
    cells: list[Cell] = []
    for dtype in ("float32", "float64"):
        if np.dtype(dtype) not in row.features.dtypes:  # a row for one dtype only
            cells += [Cell(d, k, "skipped", reasons=[f"the row generates no {dtype} networks"])
                      for d, k in COLUMNS if d == dtype]
            continue
        features = row.features.set(f"dtypes={dtype}")
        gradients = row.gradients and dtype == "float64"
        report = conform(candidate, features=features, examples=examples, seed=seed, gradients=gradients)
        for kind in report.kinds:
            if (dtype, kind.kind) in COLUMNS:
                cells.append(_cell(dtype, kind, report.candidate))
    verdict = _verdict(row, cells)
    output = None
    if row.expected is not None and row.expected.reproducer:
        output = run_reproducer(row.expected.reproducer)
    return RowResult(framework.name, version, row, cells, verdict, output)


def _cell(dtype: str, kind: Any, candidate: str) -> Cell:
    n_declined = sum(kind.declined.values())
    reasons = [f"{n} x {reason}" for reason, n in kind.declined.most_common(3)]
    if kind.skipped:
        return Cell(dtype, kind.kind, "skipped", examples=kind.examples, reasons=[kind.skipped])
    if kind.failure is not None:
        return Cell(dtype, kind.kind, "diverges", kind.compared, n_declined, kind.examples, str(kind.failure),
                    kind.failure.token, reasons)
    outcome = "conforms" if kind.compared else "declined"
    return Cell(dtype, kind.kind, outcome, kind.compared, n_declined, kind.examples, reasons=reasons)


def _verdict(row: Row, cells: list[Cell]) -> str:
    if any(c.outcome == "diverges" for c in cells):
        return "diverges" if row.expected is None else row.expected.kind
    if not any(c.outcome == "conforms" for c in cells):
        return "declined"
    return "conforms" if row.expected is None else "expected divergence not seen"


def run_reproducer(spec: str) -> list[str]:
    """Call a framework-only reproducer ``"module:function"``; the lines it returns (or why it failed)."""
    module, _, name = spec.partition(":")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # what it prints, it also returns
            lines = getattr(importlib.import_module(module), name)()
    except Exception as exc:  # the matrix reports a broken reproducer instead of stopping
        return [f"the reproducer failed: {type(exc).__name__}: {exc}"]
    return [str(line) for line in lines]


PAGE_INTRO = """# The conformance matrix

Every major SNN framework, judged by eventsim's contract (docs/semantics.md)
on generated networks, by `eventsim conform-matrix`. This page is written by
that command; do not edit it by hand.

## How to read it

Each framework's adapter (`eventsim/testing/<framework>_adapter.py`)
rebuilds eventsim networks from the framework's own modules and declares
rows: a neuron model, a convention flag or a feature set the framework
offers. Each row runs the conformance suite (docs/testing.md) on float32
and on float64 networks, with N examples per kind:

- **dyadic**: dyadic weights and inputs; spikes and potentials must be
  equal bit for bit.
- **float**: general float weights; potentials within the rounding bound,
  spikes equal up to a permitted flip at the threshold.
- **bptt gradients** (float64): the framework's autograd against
  eventsim's `bptt` rule, within `GRADIENT_RTOL` of each gradient's scale.

A cell reads `ok N` (N cases compared and conforming; declined cases are
counted apart), `diverges` (the first case that did not, shrunk; its replay
token is in the JSON result), `declined` (the adapter could express none of
the cases), `skipped` (the kind does not apply) or `not run` (a GPU row on
a machine without a GPU). A row's verdict is `conforms`, or the class of
the divergence its adapter expects and the run showed:

- **convention difference**: the framework computes something else on
  purpose (a documented convention); the eventsim flags that reproduce it
  are given.
- **rounding form**: the same recursion with other floating-point
  operations; eventsim's `arithmetic` option computes the framework's form.
- **framework defect**: the framework does not do what its own docs say; a
  reproducer that uses only the framework shows it, for an upstream report.

A divergence no adapter expects, or an expected one that no longer shows,
fails the matrix (exit status 1).

## Adding a framework

Write `eventsim/testing/<framework>_adapter.py` with `candidate(**options)`
(a candidate of docs/testing.md) and `MATRIX_ROWS`
(`eventsim.testing.matrix_rows.Row`), and add one line to
`eventsim.testing.matrix.FRAMEWORKS`. Then run

    eventsim conform-matrix --only <framework> --examples 20

and, when it goes as the rows declare, the full matrix (below).

## Regenerating this page

    eventsim conform-matrix --examples 200 --markdown docs/conformance.md --json conformance.json

GPU backends (rows with device "cuda") run with `--device cuda` on a
machine with a GPU: SpikingJelly 2.0's Triton and native CUDA neurons (it
has no CuPy backend any more), its torch reference on CUDA, and eventsim's
own `TorchCandidate` on CUDA. On a machine without one they read `not run`.
sinabs-exodus (a CUDA extension compiled at install) and lava-dl (not on
PyPI) have no adapter yet: neither installs on a machine without CUDA.

## Installing the frameworks

Each framework is an optional extra. Those whose requirements would
replace the CPU build of torch are installed without their dependencies:

"""


def conformance_page(matrix: Matrix, frameworks: tuple[Framework, ...] | None = None) -> str:
    """docs/conformance.md: how to read and extend the matrix, the install commands, then the matrix."""
    frameworks = FRAMEWORKS if frameworks is None else frameworks
    installs = "\n".join(f"    {f.install}" for f in frameworks)
    return PAGE_INTRO + installs + "\n\n## The matrix\n\n" + matrix.markdown()


def json_ready(value: Any) -> Any:
    """``value`` with NumPy scalars turned into Python numbers, for ``json.dump``."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
