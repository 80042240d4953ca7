"""Training checkpoints in HDF5, written atomically.

A checkpoint holds what a training run needs to resume exactly where it
stopped: the parameters, the running statistics of input-current norms, the
optimizer state, the states of the random generators, the number of completed
epochs and optimizer steps, the whole configuration and the metrics history.

File layout (format ``eventsim-checkpoint``, version 1)::

    /                attrs: format, version, epoch, step, config, rng_state,
                            history (all but format and version JSON strings)
    /params/0, 1...  one dataset per array, in dict order
    /params          attr keys: JSON list of the dict keys, in the same order
    /optimizer/...   the same for the optimizer state
    /statistics/...  the same for the running statistics of the norms
                     (:func:`eventsim.learning.parameters.statistics`);
                     optional: a file without it reads as no statistics

Datasets are named by position and the keys kept in an attribute, so keys may
hold any character (``"/"`` and ``"."`` included) and their order survives.
Arrays come back bit for bit with their dtypes.

:func:`save_checkpoint` writes to a temporary file in the target's folder,
syncs it to disk and renames it onto the target, so a crash at any point
leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from eventsim.atomic import atomic_path
from eventsim.errors import CheckpointError, OptionError
from eventsim.hdf5 import open_hdf5, read_attr, read_dataset, read_json_attr

FORMAT = "eventsim-checkpoint"
VERSION = 1
_GROUPS = ("params", "optimizer")
#: Groups added after version 1 was first written; a file without one reads as empty.
_OPTIONAL_GROUPS = ("statistics",)
_JSON_ATTRS = ("epoch", "step", "config", "rng_state", "history")
#: The type each JSON attribute must have when read back (the integers also >= 0).
_JSON_TYPES = {"epoch": int, "step": int, "config": dict, "rng_state": dict, "history": list}
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


@dataclass
class Checkpoint:
    """Everything a training run resumes from.

    Attributes
    ----------
    params : dict of str to ndarray
        Parameters by name (:func:`eventsim.learning.parameters.parameters`).
    optimizer_state : dict of str to ndarray
        :meth:`eventsim.learning.optimizers.Optimizer.state_dict`.
    rng_state : dict
        JSON-ready generator states, e.g. ``{"shuffle": rng_state(gen)}``.
    epoch : int
        Completed epochs.
    step : int
        Optimizer steps done.
    config : dict
        JSON-ready training configuration.
    history : list of dict
        Metrics per completed epoch.
    statistics : dict of str to ndarray
        Running statistics of the norms by name
        (:func:`eventsim.learning.parameters.statistics`); empty without norms.
    """

    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    rng_state: dict
    epoch: int
    step: int
    config: dict
    history: list[dict]
    statistics: dict[str, np.ndarray] = field(default_factory=dict)


# ------------------------------------------------------------------- writing
def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically, replacing any file there.

    The file is written under a temporary name in the same folder, flushed
    and synced, then renamed onto ``path`` (``os.replace``, atomic on POSIX
    and Windows). If anything fails, the temporary file is removed, the error
    propagates and a previous file at ``path`` is untouched.

    Raises
    ------
    TypeError
        A field of the wrong type, an array that is not numeric, or a value
        that JSON cannot hold; raised before any file is created.
    """
    path = os.fspath(path)
    attrs = _encode_attrs(checkpoint)
    arrays = {group: _checked_arrays(group, d) for group, d in
              zip(_GROUPS + _OPTIONAL_GROUPS, (checkpoint.params, checkpoint.optimizer_state, checkpoint.statistics),
                  strict=True)}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "x") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            for name, text in attrs.items():
                f.attrs[name] = text
            for group, d in arrays.items():
                g = f.create_group(group)
                g.attrs["keys"] = json.dumps(list(d))
                for i, a in enumerate(d.values()):
                    g.create_dataset(str(i), data=a)


def _checked_arrays(group: str, d: object) -> dict[str, np.ndarray]:
    if not isinstance(d, dict):
        raise TypeError(f"checkpoint {group} must be a dict of arrays, got {type(d).__name__}")
    for key, a in d.items():
        if not isinstance(key, str):
            raise TypeError(f"checkpoint {group}: keys must be strings, got {key!r}")
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            what = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"checkpoint {group}[{key!r}] must be a numeric numpy array, got {what}")
    return d


def _encode_attrs(checkpoint: Checkpoint) -> dict[str, str]:
    for what in ("epoch", "step"):
        v = getattr(checkpoint, what)
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or v < 0:
            raise TypeError(f"checkpoint {what} must be an integer >= 0, got {v!r}")
    out = {}
    for what in _JSON_ATTRS:
        v = getattr(checkpoint, what)
        try:
            out[what] = json.dumps(int(v) if what in ("epoch", "step") else v)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"checkpoint {what} is not JSON-ready: {exc}") from None
    return out


# ------------------------------------------------------------------- reading
def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, as an untrusted file.

    The file goes through :func:`eventsim.hdf5.open_hdf5` (no external
    storage or links, no cycles, sizes within the limit), and what comes back
    is what a checkpoint promises: numeric arrays, every float in them
    finite, unique string keys, a non-negative epoch and step, a dict
    config and rng_state and a list of dicts for the history.

    Raises
    ------
    CheckpointError
        Naming the file and the problem: no such file, not an HDF5 file or a
        truncated one, an HDF5 file that is not an eventsim checkpoint, a
        newer format version, a missing or unreadable group, dataset or
        attribute, or a value of the wrong type.
    """
    path = os.fspath(path)
    with open_hdf5(path, error=CheckpointError, what="checkpoint") as f:
        return _read(path, f)


def _read(path: str, f: h5py.File) -> Checkpoint:
    def attr(obj, name, read=read_attr):
        return read(obj, name, error=CheckpointError, what="checkpoint")

    fmt = attr(f, "format") if "format" in f.attrs else None
    if fmt != FORMAT:
        raise CheckpointError(
            f"checkpoint {path!r}: not an eventsim checkpoint (HDF5 file without format marker {FORMAT!r})"
        )
    version = attr(f, "version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"checkpoint {path!r}: invalid format version {version!r}")
    if version > VERSION:
        raise CheckpointError(
            f"checkpoint {path!r}: format version {version} was written by a newer eventsim; "
            f"this one reads up to {VERSION}"
        )
    fields = {what: attr(f, what, read_json_attr) for what in _JSON_ATTRS}
    for what, kind in _JSON_TYPES.items():
        value = fields[what]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0) \
                or (what == "history" and not all(isinstance(h, dict) for h in value)):
            expected = {int: "an integer >= 0", dict: "an object", list: "a list of objects"}[kind]
            raise CheckpointError(f"checkpoint {path!r}: attribute {what!r} is {value!r:.60}, expected {expected}")
    arrays = []
    for group in _GROUPS + _OPTIONAL_GROUPS:
        if group in _OPTIONAL_GROUPS and group not in f:
            arrays.append({})
            continue
        if group not in f or not isinstance(f[group], h5py.Group):
            raise CheckpointError(f"checkpoint {path!r}: group {group!r} is missing")
        arrays.append(_read_group(path, f[group], attr))
    return Checkpoint(params=arrays[0], optimizer_state=arrays[1], statistics=arrays[2], **fields)


def _read_group(path: str, g: h5py.Group, attr) -> dict[str, np.ndarray]:
    group = g.name.lstrip("/")
    if "keys" not in g.attrs:
        raise CheckpointError(f"checkpoint {path!r}: group {group!r} has no 'keys' attribute")
    keys = attr(g, "keys", read_json_attr)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise CheckpointError(f"checkpoint {path!r}: group {group!r}: 'keys' is not a list of distinct names")
    if len(g) != len(keys):
        raise CheckpointError(f"checkpoint {path!r}: group {group!r} holds {len(g)} arrays for {len(keys)} keys")
    out = {}
    for i, key in enumerate(keys):
        dset = g.get(str(i))
        if not isinstance(dset, h5py.Dataset):
            raise CheckpointError(f"checkpoint {path!r}: group {group!r} has no dataset {str(i)!r} for {key!r}")
        a = read_dataset(dset, error=CheckpointError, what="checkpoint")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise CheckpointError(f"checkpoint {path!r}: {group}[{key!r}] (dataset {dset.name}) holds non-finite "
                                  "values; the run diverged or the file is damaged")
        out[key] = a
    return out


# ---------------------------------------------------------------- generators
def rng_state(gen: np.random.Generator) -> dict:
    """The state of ``gen``'s bit generator as a JSON-ready dict.

    NumPy's ``bit_generator.state`` with arrays (MT19937, Philox, SFC64) as
    lists of ints; Python's JSON keeps the 128-bit integers of PCG64 exact.
    """
    if not isinstance(gen, np.random.Generator):
        raise OptionError(f"rng_state needs a numpy.random.Generator, got {type(gen).__name__}")
    return _json_ready(gen.bit_generator.state)


def _json_ready(x: object) -> object:
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.integer):
        return int(x)
    return x


def generator_from_state(state: dict) -> np.random.Generator:
    """A new Generator that continues the stream whose state :func:`rng_state` returned."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        choices = ", ".join(map(repr, _BIT_GENERATORS))
        raise OptionError(f"unknown bit generator {name!r} in a generator state; expected one of {choices}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise OptionError(f"invalid {name} generator state: {exc}") from None
    return np.random.Generator(bit_generator)
