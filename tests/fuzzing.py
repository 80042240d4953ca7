"""The property every reader of untrusted files is fuzzed for (docs/safety.md).

A reader given a mutated file must either return a result that passes the
caller's check, or raise an eventsim error (a subclass of EventsimError,
which names the file and what is wrong). Any other exception is a defect and
is re-raised so that hypothesis shrinks and reports it; a call that runs for
longer than ``seconds`` is a hang and fails the test (one stuck inside C,
where the failure cannot be raised, aborts the run with every thread's
traceback instead). Outcomes are counted
per test, so a long run (HYPOTHESIS_PROFILE=campaign) can report how many
cases ended in each.
"""

from __future__ import annotations

import collections
import faulthandler
import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from eventsim.errors import EventsimError

T = TypeVar("T")

#: Outcome counts per campaign name: {"ok": n, "DataError": m, ...}.
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


#: Seconds past a time limit after which a block still running is taken to hang inside C and the run aborts.
C_GRACE = 100.0


class Hang(AssertionError):
    """A reader ran past its time limit on one input."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with :class:`Hang` when the block runs longer than ``seconds`` (main thread, POSIX).

    SIGALRM's handler runs only when the interpreter regains control, so a
    loop inside C (the HDF5 library on a damaged file) never reaches it; a
    faulthandler thread then aborts the process ``C_GRACE`` seconds later,
    printing every thread's traceback, rather than letting the suite hang.
    """
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s: the reader hangs on this input")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + C_GRACE, exit=True, file=sys.__stderr__)  # capsys replaces sys.stderr
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def untrusted(campaign: str, call: Callable[[], T], check: Callable[[T], None] = lambda result: None,
              seconds: float = 20.0) -> str:
    """Run ``call`` on an untrusted input; return the outcome's name after counting it.

    ``"ok"`` when it returned and ``check(result)`` passed (check asserts what
    a correct result is, e.g. finite arrays of the declared shape); the error
    class's name when it raised an eventsim error. Anything else propagates.
    """
    try:
        with time_limit(seconds):
            result = call()
    except EventsimError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        outcome = type(exc).__name__
    else:
        check(result)
        outcome = "ok"
    OUTCOMES[campaign][outcome] += 1
    return outcome
