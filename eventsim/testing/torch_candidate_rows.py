"""eventsim's own PyTorch reference candidate in the conformance matrix: its GPU row.

:class:`~eventsim.testing.torch_candidate.TorchCandidate` is the semantics as
a dense PyTorch model; on a CUDA device it is the worked example of a GPU
implementation under test (cuBLAS and cuDNN sums, deterministic algorithms,
TF32 off). On the CPU it is tested everywhere else in the suite, so its one
matrix row is the GPU run (docs/conformance.md).
"""

from __future__ import annotations

from typing import Any

from eventsim.testing.matrix_rows import Row
from eventsim.testing.strategies import STATE_FEATURES, Features


def candidate(**options: Any) -> Any:
    from eventsim.testing.torch_candidate import TorchCandidate

    return TorchCandidate(**options)


MATRIX_ROWS = (
    Row("TorchCandidate on CUDA: every layer, neuron option and state feature",
        Features().including("input_gain", "reset_delayed", *STATE_FEATURES), {"device": "cuda"}, device="cuda"),
)
