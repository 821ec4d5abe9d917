"""Clocks for the emulator: the wall clock for serving, a manual one for simulations.

The emulator core never reads the time itself; it asks an injected :class:`Clock`. A
:class:`ManualClock` therefore turns every lifecycle (``CREATING -> NORMAL`` after N
seconds, rate-limit windows) into a deterministic function of the steps a test takes.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Anything that can tell the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """Return the current wall-clock time in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to; thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        """Start at ``start`` (aware; naive values are taken as UTC), default 2026-01-01."""
        if start is None:
            start = datetime(2026, 1, 1, tzinfo=UTC)
        self._now = _as_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` (must not be negative); return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware; naive values are taken as UTC)."""
        with self._lock:
            self._now = _as_utc(when)

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"


def _as_utc(when: datetime) -> datetime:
    """Return ``when`` as an aware UTC datetime (naive values are taken as UTC)."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
