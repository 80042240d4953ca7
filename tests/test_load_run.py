"""Loading what was trained: a trainer's checkpoint into the network built again (load_weights).

The loaded network must compute what the trained one computed, bit for bit;
a checkpoint written by a network with other options or shapes, or a file
that is not a checkpoint, is refused with one line naming the file and the
difference, leaving the network as it was.
"""

from __future__ import annotations

import numpy as np
import pytest

import eventsim as es
from eventsim.errors import CheckpointError
from eventsim.learning import BPTT, Adam, LeeMSE, Trainer, init_lee2020, load_weights, parameters, statistics
from eventsim.testing.strategies import random_events


def build(tau: float = 10.0, channels: int = 4, norm: bool = False) -> es.Network:
    """The code a user keeps to build the network, run again to load its weights."""
    return es.Network([
        es.Conv2d(2, channels, 3, padding=1), es.LIF(0.5, tau=tau, norm=es.CurrentNorm() if norm else None),
        es.SpikingAvgPool(2), es.Flatten(), es.Linear(channels * 3 * 3, 3), es.Readout(tau=tau),
    ], (2, 6, 6))


def data(n: int = 10, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [(random_events(rng, 1, 6, (2, 6, 6), 0.3, np.float32, values=(1.0,)), int(rng.integers(3)))
            for _ in range(n)]


def trained(tmp_path, *, norm: bool = False) -> tuple[es.Network, object]:
    network = build(norm=norm)
    init_lee2020(network, np.random.default_rng(1))
    trainer = Trainer(network, rule=BPTT(), loss=LeeMSE(), optimizer=Adam(1e-2), batch_size=5, epochs=2,
                      checkpoint=tmp_path / "run.h5", progress=None)
    trainer.fit(data())
    return network, tmp_path / "run.h5"


@pytest.mark.parametrize("norm", [False, True], ids=["plain", "current-norm"])
def test_loaded_network_computes_what_the_trained_one_computed(tmp_path, norm):
    network, path = trained(tmp_path, norm=norm)
    loaded = build(norm=norm)
    ckpt = load_weights(loaded, path)
    assert ckpt.epoch == 2 and len(ckpt.history) == 2
    for key, value in parameters(network).items():
        assert np.array_equal(parameters(loaded)[key], value), key
    for key, value in statistics(network).items():
        assert np.array_equal(statistics(loaded)[key], value), key
    if norm:
        # the running statistics moved away from their start (0, 1) while training, so loading them is seen
        assert not np.allclose(statistics(loaded)["lif1.norm.running_mean"], 0.0)
    x = es.Events.concat([events for events, _ in data(6, seed=5)])
    assert np.array_equal(loaded.run(x).output, network.run(x).output)


def test_a_run_folder_is_read_through_its_checkpoint(tmp_path):
    network, path = trained(tmp_path)
    path.rename(tmp_path / "checkpoint.h5")
    loaded = build()
    load_weights(loaded, tmp_path)
    assert np.array_equal(parameters(loaded)["fc1.weight"], parameters(network)["fc1.weight"])


@pytest.mark.parametrize("other,named", [
    (lambda: build(tau=20.0), "layer 2 is LIF("),
    (lambda: build(channels=5), "layer 1 is Conv2d("),
    (lambda: es.Network(build().layers[:4] + [es.Linear(36, 3), es.LIF(1.0, tau=10.0)], (2, 6, 6)), "layer 6 is"),
    (lambda: es.Network([es.Flatten(), es.Linear(72, 3), es.Readout(tau=10.0)], (2, 6, 6)),
     "6 layers in the checkpoint, 3 here"),
    (lambda: es.Network([es.Conv2d(2, 4, 3, padding=1), es.LIF(0.5, tau=10.0), es.SpikingAvgPool(2), es.Flatten(),
                         es.Linear(4 * 3 * 3, 3), es.Readout(tau=10.0)], (2, 6, 6), dtype=np.float64), "dtype"),
], ids=["leak", "channels", "last-layer", "layer-count", "dtype"])
def test_another_network_is_refused_and_left_unchanged(tmp_path, other, named):
    trained(tmp_path)
    network = other()
    init_lee2020(network, np.random.default_rng(3))
    before = {k: v.copy() for k, v in parameters(network).items()}
    with pytest.raises(CheckpointError, match="written by another network") as error:
        load_weights(network, tmp_path / "run.h5")
    assert named in str(error.value) and "run.h5" in str(error.value) and "\n" not in str(error.value)
    assert all(np.array_equal(parameters(network)[k], v) for k, v in before.items())


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    (tmp_path / "notes.h5").write_bytes(b"not HDF5 at all")
    with pytest.raises(CheckpointError, match="notes.h5"):
        load_weights(build(), tmp_path / "notes.h5")
    with pytest.raises(CheckpointError, match="no such run folder or checkpoint"):
        load_weights(build(), tmp_path / "missing.h5")
