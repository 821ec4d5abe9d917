"""How the executor polls the cloud: a short first look, then growing up to the interval.

Images of a small instance can be ``NORMAL`` within seconds and big ones take many minutes,
so a fixed interval is either slow for the first or wasteful for the second. Polls start
after :data:`FIRST_POLL_SECONDS` and grow by :data:`POLL_GROWTH` up to ``api.poll_interval``;
each poll is one call per region for everything in flight, never one call per image.

:class:`PollTime` is the one seam for time in the executor's waits: real time by default
(:data:`REAL_TIME`); a simulation on the emulator's ``ManualClock`` passes a ``sleep`` that
advances that clock and a ``monotonic`` that reads it, so a simulated year never really
sleeps and its wait deadlines are measured in simulated seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

#: The first poll comes this soon (or after ``poll_interval``, if that is shorter).
FIRST_POLL_SECONDS = 0.25
#: Each delay is this much longer than the one before, so a change of state is noticed
#: late by at most about half the time already waited (doubling: the whole time; an image
#: ready after 2.0 s was seen at 3.75 s). The few extra polls of the ramp are cheap.
POLL_GROWTH = 1.5


def poll_delays(interval_seconds: float, first: float = FIRST_POLL_SECONDS) -> Iterator[float]:
    """Delays before successive polls: ``first``, growing by :data:`POLL_GROWTH`, capped at
    ``interval_seconds``."""
    delay = min(first, interval_seconds)
    while True:
        yield delay
        delay = min(delay * POLL_GROWTH, interval_seconds)


def sleeper(stop: threading.Event | None) -> Callable[[float], bool]:
    """A sleep that ends early when ``stop`` is set; it returns True when it was stopped."""
    if stop is None:

        def plain(seconds: float) -> bool:
            time.sleep(seconds)
            return False

        return plain
    return stop.wait


@dataclass(frozen=True)
class PollTime:
    """How the executor waits between polls and measures its wait deadlines.

    ``sleep`` None (the default) is real time: a wait ends early when the run's stop event
    is set. An injected ``sleep(seconds)`` is called instead (a simulation advances its
    virtual clock; the stop event is still checked between polls). ``monotonic()`` is the
    clock :class:`Deadline` reads.
    """

    sleep: Callable[[float], object] | None = None
    monotonic: Callable[[], float] = time.monotonic

    def wait(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait ``seconds``: through the injected ``sleep``, else in real time, ending early
        once ``stop`` is set."""
        if self.sleep is not None:
            self.sleep(seconds)
        elif stop is not None and not stop.is_set():
            stop.wait(seconds)
        else:
            time.sleep(seconds)

    def deadline(self, seconds: float) -> Deadline:
        """A :class:`Deadline` ``seconds`` from now on this clock."""
        return Deadline(seconds, clock=self.monotonic)


#: The executor's default: real sleeps, the real monotonic clock.
REAL_TIME = PollTime()


class Deadline:
    """A point on the monotonic clock: how long is left, and whether it has passed."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._end - self._clock())

    @property
    def passed(self) -> bool:
        """True once the deadline is reached."""
        return self.remaining() <= 0
