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
