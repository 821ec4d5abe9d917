"""The one interface through which the executor and the daemon raise alerts and check in.

Three implementations: ``SentryAlerter`` (in ``alerting.sentry``) sends to Sentry,
``NullAlerter`` is alerting switched off, and ``RecordingAlerter`` keeps everything it is
given in memory, so tests of other layers can assert what would have been alerted without
a Sentry server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

from cvmkeeper.alerting.events import Failure, MonitorConfig

CheckInStatus = Literal["in_progress", "ok", "error"]


class Alerter(Protocol):
    """What a run reports: failed steps, warnings, and the check-ins of its policy's monitor.

    Give a failure to the method of its level. ``SentryAlerter`` sends at the method's
    level; ``RecordingAlerter`` refuses a mismatch, so tests of callers catch it.
    ``SentryAlerter`` and ``NullAlerter`` are thread-safe and never raise from these calls:
    alerting must not break a backup run.
    """

    def error(self, failure: Failure) -> None:
        """Report a failed step as an error-level alert."""

    def warning(self, failure: Failure) -> None:
        """Report something an operator should look at as a warning-level alert."""

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """Tell the monitor ``slug`` that a scheduled run started; return its check-in id."""

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """Tell the monitor ``slug`` that the run ``check_in_id`` ended, well or not."""

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until what was reported has been delivered."""

    def close(self, timeout: float) -> None:
        """Deliver what is pending (up to ``timeout`` seconds) and stop alerting."""


@dataclass
class MonitoredRun:
    """The outcome of one run inside ``monitored_run``: call ``fail()`` when it went wrong."""

    check_in_id: str
    ok: bool = True

    def fail(self) -> None:
        """Mark the run as failed, so it ends with an ``error`` check-in."""
        self.ok = False


@contextmanager
def monitored_run(alerter: Alerter, slug: str, config: MonitorConfig) -> Iterator[MonitoredRun]:
    """Wrap one scheduled run in its check-ins: ``in_progress`` on entry, then ``ok``, or
    ``error`` when the block called ``run.fail()`` or raised (the exception propagates)."""
    run = MonitoredRun(alerter.checkin_start(slug, config))
    try:
        yield run
    except BaseException:
        run.fail()
        raise
    finally:
        alerter.checkin_finish(slug, run.check_in_id, run.ok, config)


class NullAlerter:
    """Alerting switched off: every call is accepted and does nothing."""

    def error(self, failure: Failure) -> None:
        """Drop the error."""

    def warning(self, failure: Failure) -> None:
        """Drop the warning."""

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """Return a fresh check-in id that nobody will hear of."""
        return uuid.uuid4().hex

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """Drop the check-in."""

    def flush(self, timeout: float) -> None:
        """Nothing is pending."""

    def close(self, timeout: float) -> None:
        """Nothing to stop."""


@dataclass(frozen=True)
class CheckIn:
    """One check-in as a ``RecordingAlerter`` received it."""

    slug: str
    check_in_id: str
    status: CheckInStatus
    config: MonitorConfig


class RecordingAlerter:
    """Keeps every failure and check-in it is given, in order, for tests of other layers.

    It checks what Sentry would reject: a warning given to ``error`` (or the reverse), and
    a check-in finished that was never started or finished twice, raise ``ValueError``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self._checkins: list[CheckIn] = []
        self._open: dict[str, str] = {}
        self.closed = False

    @property
    def failures(self) -> list[Failure]:
        """Every failure received, in order (a copy)."""
        with self._lock:
            return list(self._failures)

    @property
    def errors(self) -> list[Failure]:
        """The error-level failures received, in order."""
        return [f for f in self.failures if f.level == "error"]

    @property
    def warnings(self) -> list[Failure]:
        """The warning-level failures received, in order."""
        return [f for f in self.failures if f.level == "warning"]

    @property
    def checkins(self) -> list[CheckIn]:
        """Every check-in received, in order (a copy)."""
        with self._lock:
            return list(self._checkins)

    def checkin_statuses(self, slug: str) -> list[CheckInStatus]:
        """The statuses sent to the monitor ``slug``, in order."""
        return [c.status for c in self.checkins if c.slug == slug]

    def error(self, failure: Failure) -> None:
        """Record an error-level failure."""
        self._record(failure, "error")

    def warning(self, failure: Failure) -> None:
        """Record a warning-level failure."""
        self._record(failure, "warning")

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """Record an ``in_progress`` check-in and return its new id."""
        check_in_id = uuid.uuid4().hex
        with self._lock:
            self._open[check_in_id] = slug
            self._checkins.append(CheckIn(slug, check_in_id, "in_progress", config))
        return check_in_id

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """Record the ``ok`` or ``error`` check-in that ends the run ``check_in_id``."""
        with self._lock:
            if self._open.get(check_in_id) != slug:
                raise ValueError(f"check-in {check_in_id} of {slug!r} was not started or ended")
            del self._open[check_in_id]
            self._checkins.append(CheckIn(slug, check_in_id, "ok" if ok else "error", config))

    def flush(self, timeout: float) -> None:
        """Nothing is pending: everything is recorded at once."""

    def close(self, timeout: float) -> None:
        """Mark the alerter closed (the record stays readable)."""
        self.closed = True

    def _record(self, failure: Failure, level: str) -> None:
        """Append ``failure`` after checking it was given to the method of its level."""
        if failure.level != level:
            raise ValueError(f"a {failure.level}-level failure was given to {level}()")
        with self._lock:
            self._failures.append(failure)
