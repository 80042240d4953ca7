"""Options and run-folder files are checked before any work or any write.

A negative sample limit used to slice ``order[:-5]`` and drop five samples;
a loss that does not fit the model, or a wrong data folder, used to fail
after ``job.json`` was written, so the corrected command was refused with
"already holds a run"; ``convert --steps 0`` trained the ANN for all its
epochs before failing; ``job.json`` and ``prepared.json`` with junk gave
tracebacks or were silently used. Each case must now end in one line naming
the file or option, exit status 2, and no folder or file left behind.
"""

from __future__ import annotations

import json
import shutil

import pytest

from eventsim.cli import main
from eventsim.errors import CheckpointError, OptionError
from eventsim.learning.runs import Job, load_run, make_trainer, saved_job
from shared_data import data_root

QUICK = ["--steps", "6", "--train-limit", "20", "--test-limit", "10", "--batch-size", "10", "--epochs", "1",
         "--milestones"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One binned-data cache for the module's runs."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def env(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache):
    """A finished tiny run folder; tests copy it before they spoil it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVENTSIM_DATA", str(data_root()))
        mp.setenv("XDG_CACHE_HOME", str(cache))
        assert main(["train", "nmnist", "--out", str(out), *QUICK]) == 0
    return out


def copy_of(run, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(run, dest)
    return dest


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------ job fields
@pytest.mark.parametrize("field,value", [
    ("train_limit", -5), ("test_limit", -5),  # sliced order[:-5] and dropped 5 samples
    ("steps", "abc"), ("steps", 2.5), ("epochs", "3"), ("batch_size", True),
    ("seed", 1.5), ("seed", -1), ("seed", "7"),
    ("lr", -1.0), ("lr", float("nan")), ("lr", "0.1"), ("weight_decay", -0.1), ("lr_factor", float("inf")),
    ("rate_scale", 0.0), ("tau", 0.0), ("leak", 1.5), ("width", "wide"), ("on_count", -1.0),
    ("milestones", "10"), ("milestones", [0]), ("milestones", [2.5]),
    ("eval_each_epoch", "no"), ("eval_each_epoch", 1), ("binning", "sum"), ("surrogate", 3), ("optimizer", "adagrad"),
    ("checkpoint_every", -1),
])
def test_a_field_of_the_wrong_type_or_range_is_named(field, value):
    with pytest.raises(OptionError, match=field):
        Job(**{field: value})


def test_a_loss_that_does_not_fit_the_model_names_the_ones_that_do():
    job = Job(loss="spike_count_mse", on_count=3.0)  # LeNet5 ends in a readout, which never spikes
    with pytest.raises(OptionError, match="lee_mse.*cross_entropy|cross_entropy.*lee_mse"):
        job.check_fit()


@pytest.mark.parametrize("options,named", [
    (["--train-limit", "-5"], "train_limit"),
    (["--loss", "spike_count_mse", "--on-count", "3"], "lee_mse"),
    (["--lr", "-1"], "lr"),
    (["--seed", "-1"], "seed"),
])
def test_bad_train_options_are_refused_before_the_folder_is_created(env, capsys, options, named):
    out = env / "run"
    assert main(["train", "nmnist", "--out", str(out), *QUICK, *options]) == 2
    assert named in one_line(capsys)
    assert not out.exists()


def test_a_failed_first_train_leaves_no_run_behind(env, capsys):
    out = env / "run"
    assert main(["train", "nmnist", "--out", str(out), "--data", str(env / "nothing-here"), *QUICK]) == 2
    assert "NMNIST" in one_line(capsys)
    assert not (out / "job.json").exists()
    assert main(["train", "nmnist", "--out", str(out), *QUICK]) == 0  # the corrected command is not refused
    assert saved_job(out).train_limit == 20


# ------------------------------------------------------------ job.json
@pytest.mark.parametrize("content,named", [
    ("[1, 2]", "object"),
    ('{"steps": "abc"}', "steps"),
    ('{"test_limit": -5}', "test_limit"),
    ('{"seed": "x"}', "seed"),
    ('{"seed": 0.5}', "seed"),
    ('{"lr": NaN}', "lr"),
    ('{"lr": 1%s}' % ("0" * 400), "lr"),  # beyond the float range: OverflowError
    ('{"steps": 1%s}' % ("0" * 400), "steps"),
    ('{"milestones": {"a": 1}}', "milestones"),
    ('{"loss": "spike_count_mse", "on_count": 3}', "cross_entropy"),  # does not fit LeNet5
    ('{"dataset": "mnist", "model": "syed2021-vgg13", "loss": "spike_count_mse", "on_count": 3}',
     "larger than the input"),  # a model that cannot take the input: LayerError
    ("\x00\x01 not json", "not JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested"),  # RecursionError inside json
    (b"\xff\xfe{}", "not JSON"),
], ids=lambda value: repr(value)[:24])
def test_job_json_is_checked_on_load(tmp_path, content, named):
    path = tmp_path / "job.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CheckpointError) as info:
        saved_job(tmp_path)
    assert str(path) in str(info.value) and named in str(info.value)


def test_eval_of_a_run_with_a_junk_job_is_one_line(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path)
    job = json.loads((run / "job.json").read_text())
    (run / "job.json").write_text(json.dumps({**job, "test_limit": -5}))
    assert main(["eval", str(run)]) == 2
    err = one_line(capsys)
    assert "job.json" in err and "test_limit" in err


# ------------------------------------------------------------ prepared.json
@pytest.mark.parametrize("content,named", [
    ("{not json", "not JSON"),
    ('["lif1", 1.0]', "object"),
    ('{"thresholds": {"lif1": "abc"}}', "thresholds"),
    ('{"thresholds": {"lif1": -1.0}}', "thresholds"),
    ('{"thresholds": {"lif1": [1.0, 2.0]}}', "thresholds"),
    ('{"thresholds": [1.0]}', "thresholds"),
    ('{"thresholds": {"nosuchlayer": 1.0}}', "nosuchlayer"),  # was silently ignored
    ('{"surrogate": {"name": "fast_sigmoid", "c": "abc"}}', "surrogate"),
    ('{"surrogate": [1]}', "surrogate"),
    ('{"surrogate": {"name": []}}', "surrogate"),  # TypeError: unhashable type
    ('{"surrogate": {"name": "fast_sigmoid", "c": []}}', "surrogate"),  # NumPy's ValueError in the constructor
    ('{"calibration_samples": "many"}', "calibration_samples"),
    ('{"thresholdz": {}}', "thresholdz"),
])
def test_prepared_json_is_checked_on_load(tmp_path, content, named):
    (tmp_path / "prepared.json").write_text(content)
    job = Job(rule="bptt")
    with pytest.raises(CheckpointError) as info:
        make_trainer(job, tmp_path, None)
    assert "prepared.json" in str(info.value) and named in str(info.value)


def test_thresholds_of_prepared_json_apply(tmp_path):
    (tmp_path / "prepared.json").write_text('{"thresholds": {"lif2": 0.25}}')
    layers = {layer.name: layer for layer in make_trainer(Job(), tmp_path, None).network.walk()}
    assert layers["lif2"].threshold == 0.25 and layers["lif1"].threshold != 0.25


def test_eval_of_a_run_with_a_junk_prepared_json_is_one_line(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path)
    (run / "prepared.json").write_text('{"thresholds": {"lif1": "abc"}}')
    with pytest.raises(CheckpointError, match="prepared.json"):
        load_run(run)
    assert main(["eval", str(run)]) == 2
    assert "prepared.json" in one_line(capsys)


# ------------------------------------------------------------ convert
@pytest.mark.parametrize("options,named", [
    (["--steps", "0"], "steps"),  # trained the ANN for all its epochs, then failed with "direct: steps"
    (["--steps", "8", "-3"], "steps"),
    (["--alpha", "2"], "alpha"),
    (["--method", "median"], "method"),
    (["--mode", "poisson"], "mode"),
    (["--train-limit", "-5"], "train_limit"),
    (["--calibration-samples", "0"], "calibration_samples"),
])
def test_convert_refuses_bad_options_before_training(env, capsys, options, named):
    out = env / "convert"
    assert main(["convert", "--out", str(out), "--epochs", "1", "--train-limit", "100", "--test-limit", "20",
                 *options]) == 2
    assert named in one_line(capsys)
    assert not out.exists()  # no ANN trained and saved, no folder
