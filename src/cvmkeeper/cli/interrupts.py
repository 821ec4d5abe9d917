"""SIGTERM and SIGHUP as an interrupt, for commands that must clean up what they started.

Python ends on SIGTERM without running ``finally`` blocks. ``cvmkeeper drill`` terminates
its throwaway instance in ``finally``; under ``timeout``, a closed terminal (SIGHUP) or a
``kill`` it was left to the slower net (the drill lease: up to the drill's timeout plus 10
minutes, billed). Raising :class:`KeyboardInterrupt` instead makes a polite kill behave like
Ctrl-C: the ``finally`` runs, then the command ends. SIGKILL still cannot be caught; the
lease remains for it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`KeyboardInterrupt`; the previous
    handlers come back after it."""
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Interruption:
    """Whether SIGTERM or SIGHUP came (``name`` is the signal's name, "" while none did)."""

    def __init__(self) -> None:
        self.name = ""

    def __call__(self) -> bool:
        return bool(self.name)

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        self.name = signal.Signals(signum).name


@contextmanager
def signals_noted() -> Iterator[Interruption]:
    """Within the block, SIGTERM and SIGHUP are only noted, not raised: for work whose
    cleanup must wait for the cloud first. ``restore --in-place`` cannot start its instance
    while ResetInstance runs (the instance is in an operation), so an exception in the middle
    of the wait would reach its ``finally`` too early; it polls the returned
    :class:`Interruption` instead, skips what it has not begun, and ends non-zero."""
    interruption = Interruption()
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, interruption._note)
    try:
        yield interruption
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
