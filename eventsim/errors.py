"""Exceptions raised by eventsim.

Every error names what is wrong and where (the field of an event container,
the layer of a network), so that bad input never turns into silently wrong
numbers. All of them derive from :class:`EventsimError`; those about values
also derive from :class:`ValueError` so generic handlers keep working.
"""

from __future__ import annotations


class EventsimError(Exception):
    """Base class of every error eventsim raises on purpose."""


class EventsError(EventsimError, ValueError):
    """A malformed event container (indices, steps, values, layout)."""


class LayerError(EventsimError, ValueError):
    """A layer's parameters or options are invalid, or its input does not fit.

    The message always starts with the layer's name and type, e.g.
    ``layer 'conv2' (Conv2d): expects 20 input channels, got 50``.
    """

    def __init__(self, layer: object, problem: str) -> None:
        name = getattr(layer, "name", None)
        label = f"layer {name!r} ({type(layer).__name__})" if name else f"{type(layer).__name__} layer"
        super().__init__(f"{label}: {problem}")
        self.layer = layer
        self.problem = problem

    def __reduce__(self):
        # A worker of a cluster sends its errors back pickled: keep the
        # message, drop the layer object (it may be large or not picklable).
        return _restored, (type(self), str(self), {"layer": None, "problem": self.problem})


class OptionError(EventsimError, ValueError):
    """An unknown option or an option value outside its allowed set."""


def check_choice(what: str, value: object, allowed: tuple) -> None:
    """Raise :class:`OptionError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise OptionError(f"unknown {what} {value!r}; choose one of {choices}")


class CheckpointError(EventsimError, ValueError):
    """A checkpoint file that cannot be read: missing, truncated, foreign or incomplete.

    The message names the file and what is wrong with it.
    """


class DataError(EventsimError, ValueError):
    """A data file that does not follow its format (an event recording, an idx file, a cache).

    The message names the file and, where it helps, the byte offset or the
    event index of the first problem.
    """


class NIRError(EventsimError, ValueError):
    """A NIR graph or file eventsim cannot read or write exactly.

    The message names the node (``NIR node 'lif1' (LIF): ...``) or the file,
    and what is wrong with it.
    """

    def __init__(self, problem: str, *, node: str | None = None, kind: str | None = None) -> None:
        label = f"NIR node {node!r}" + (f" ({kind})" if kind else "") + ": " if node is not None else ""
        super().__init__(label + problem)
        self.node = node
        self.problem = problem

    def __reduce__(self):
        return _restored, (type(self), str(self), {"node": self.node, "problem": self.problem})


class RunLockError(EventsimError):
    """A run folder that another process is writing (its lock file names the holder)."""


class ClusterError(EventsimError):
    """Distributed work that cannot go on: no worker left, a task that kills every worker it runs on,
    workers whose library versions differ from this process's (docs/cluster.md)."""


def _restored(cls: type, message: str, fields: dict) -> Exception:
    """An error of type ``cls`` with ``message`` and attribute ``fields``, without calling its ``__init__``."""
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(fields)
    return err


class MissingExtraError(EventsimError, ImportError):
    """An optional dependency that is not installed; the message gives the install command."""
