"""The progress of ``cvmkeeper run`` on stderr, readable at 300 instances.

The executor reports each step as one message (``"ap-guangzhou: created NAME (ID) for
ins-..."``, ``"... is NORMAL"``, ``"... ERROR ..."``). At fleet scale one line per image state
change is hundreds of lines, then silence while images are made. So:

* on a terminal, one status line rewritten in place: per region the images made, still
  waiting and failed, and the time elapsed; errors and warnings are printed above it, and
  the line is cleared first (also before any log record, through a filter on the logging
  handlers, so a warning never lands glued to the end of the status line);
* elsewhere (a log file, CI, cron), the lines that say something happened to the run as a
  whole (catch-ups, the plan of each region, errors, warnings) and a heartbeat line every
  minute with the same counts, so a long wait is not silence;
* ``--verbose`` adds every per-image line (created, state changes, deletes) in both modes.

It counts by the fields each line carries (``executor.progress.ProgressLine``: region,
kind, image state), never by its words; a plain ``str`` line is shown as a line about the
run as a whole.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TextIO

from cvmkeeper.cli.output import raw_stream
from cvmkeeper.core.durations import format_duration
from cvmkeeper.executor.progress import ProgressKind, ProgressLine
from cvmkeeper.executor.region import PROGRESS_RECORD
from cvmkeeper.logs import redact
from cvmkeeper.textsafe import escape

HEARTBEAT_SECONDS = 60.0
REDRAW_SECONDS = 1.0
QUIET_AFTER_LOG = 0.5
#: the logger of the run's freshness and quota warnings (``alerting.health_alerts``)
HEALTH_LOGGER = "cvmkeeper.alerting.health_alerts"
#: the logger of a notification that could not be delivered (``alerting.delivery``)
DELIVERY_LOGGER = "cvmkeeper.alerting.delivery"


@dataclass
class RegionCounts:
    """What one region has done so far."""

    made: int = 0
    normal: int = 0
    failed_images: int = 0
    deleted: int = 0
    errors: int = 0
    warnings: int = 0

    @property
    def waiting(self) -> int:
        """Images made that have not left ``CREATING`` yet."""
        return max(0, self.made - self.normal - self.failed_images)

    def describe(self) -> str:
        """``3 made, 2 waiting, 1 failed, 4 deleted``."""
        text = f"{self.made} made, {self.waiting} waiting, {self.errors} failed"
        return text + (f", {self.deleted} deleted" if self.deleted else "")


class RunProgress:
    """The progress display: call it with each message; ``close()`` at the end."""

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool,
        verbose: bool = False,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        """``live``: rewrite one status line (a terminal); else plain lines and heartbeats.
        ``quiet``: show no message line (under journald each is logged at its own priority
        already; printed too, it would be filed a second time at priority 6)."""
        # The live line moves the cursor on purpose, so the display writes under the
        # SafeStream (cli.output) and escapes and redacts each message itself.
        self._stream = raw_stream(stream)
        self._quiet = quiet
        self._live = live
        self._verbose = verbose
        self._clock = clock
        self._heartbeat = heartbeat_seconds
        self._started = clock()
        self._last_beat = self._started
        self._lock = threading.RLock()
        self._shown = False
        #: the ticker does not redraw before this (monotonic) time: a log record was just
        #: cleared for, and its handler writes it outside this display's lock
        self._quiet_until = 0.0
        self.regions: dict[str, RegionCounts] = {}
        #: warnings the run's health check logged (stale backups, low quota): printed, so
        #: counted in the summary too, which otherwise counts only the executor's
        self.health_warnings: list[str] = []
        #: notifications (webhook, Healthchecks, Apprise) that could not be delivered:
        #: printed as warnings, so counted, and named in the summary, since the failures
        #: of the run may then have reached no one
        self.delivery_warnings: list[str] = []
        self._seen_records: set[int] = set()

    # -- messages ----------------------------------------------------------------------

    @property
    def shows_messages(self) -> bool:
        """True unless ``quiet`` (then the log, under journald, carries the lines)."""
        return not self._quiet

    def __call__(self, message: str) -> None:
        """Count ``message`` and show what it deserves."""
        self._show(message, important=False)

    def alert(self, message: str) -> None:
        """An error or warning line of the run (``run_once(progress_alerts=...)``): counted
        and always shown."""
        self._show(message, important=True)

    def _show(self, message: str, *, important: bool) -> None:
        line = message if isinstance(message, ProgressLine) else ProgressLine(message)
        text = escape(redact(message))
        with self._lock:
            if line.region:
                self._count(self.regions.setdefault(line.region, RegionCounts()), line)
            # a settled line without a state (the image vanished) is news, not routine
            routine = line.kind.per_image and not (
                line.kind is ProgressKind.SETTLED and line.state is None
            )
            if not self._quiet and (important or self._verbose or not routine):
                self._print(text)
            if self._live:
                self._draw()
            self._stream.flush()

    @staticmethod
    def _count(counts: RegionCounts, line: ProgressLine) -> None:
        match line.kind:
            case ProgressKind.MADE:
                counts.made += 1
            case ProgressKind.DELETED:
                counts.deleted += 1
            case ProgressKind.ERROR:
                counts.errors += 1
            case ProgressKind.WARNING:
                counts.warnings += 1
            case ProgressKind.SETTLED if line.state == "NORMAL":
                counts.normal += 1
            case ProgressKind.SETTLED if line.state not in ("CREATING", "SYNCING"):
                counts.failed_images += 1

    # -- output ------------------------------------------------------------------------

    def status_text(self) -> str:
        """``ap-guangzhou 3 made, 2 waiting, 0 failed | ... | 1m5s``."""
        elapsed = format_duration_seconds(self._clock() - self._started)
        parts = [f"{region} {counts.describe()}" for region, counts in self.regions.items()]
        return " | ".join([*parts, elapsed]) if parts else f"starting ... {elapsed}"

    def _print(self, line: str) -> None:
        self.clear_line()
        self._stream.write(line + "\n")

    def _draw(self) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        text = self.status_text()
        text = text if len(text) <= width else text[: width - 1] + "…"
        self._stream.write("\r\x1b[K" + text)
        self._shown = True

    def clear_for_log(self) -> None:
        """Clear the line for a log record about to be written, and let the ticker leave
        the terminal alone for a moment so it cannot redraw between the clear and the
        record (the next progress message redraws at once)."""
        with self._lock:
            self._quiet_until = time.monotonic() + QUIET_AFTER_LOG
            self.clear_line()

    def note_record(self, record: logging.LogRecord) -> None:
        """Remember a health-check warning or a failed notification (once, whichever
        handler shows it)."""
        if record.name.startswith(HEALTH_LOGGER) and record.levelno == logging.WARNING:
            found = self.health_warnings
        elif record.name.startswith(DELIVERY_LOGGER) and record.levelno >= logging.WARNING:
            found = self.delivery_warnings
        else:
            return
        with self._lock:
            if id(record) not in self._seen_records:
                self._seen_records.add(id(record))
                found.append(record.getMessage())

    @property
    def printed_warnings(self) -> int:
        """The warnings logged during the run that the executor's report does not hold."""
        return len(self.health_warnings) + len(self.delivery_warnings)

    def clear_line(self) -> None:
        """Remove the live status line (before other output reaches the terminal)."""
        with self._lock:
            if self._shown:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
                self._shown = False

    def tick(self) -> None:
        """Called about every second: redraw the live line (elapsed time), or write the
        heartbeat line once a minute when not on a terminal."""
        with self._lock:
            if self._live:
                if time.monotonic() < self._quiet_until:
                    return
                self._draw()
                self._stream.flush()
            elif self._clock() - self._last_beat >= self._heartbeat:
                self._last_beat = self._clock()
                self._stream.write(f"still running: {self.status_text()}\n")
                self._stream.flush()

    def close(self) -> None:
        """Remove the live line (the summary follows)."""
        self.clear_line()

    # -- the terminal is shared with logging --------------------------------------------

    @contextmanager
    def running(self, tick_seconds: float = REDRAW_SECONDS) -> Iterator[RunProgress]:
        """While the run lasts: tick in the background, and clear the status line before
        any log record is written by the root logger's handlers or logging's last resort."""
        stop = threading.Event()
        ticker = threading.Thread(
            target=self._tick_until,
            args=(stop, tick_seconds),
            name="cvmkeeper-progress",
            daemon=True,
        )
        clearing = _ClearLineFilter(self)
        handlers = [*logging.getLogger().handlers, logging.lastResort]
        for handler in handlers:
            if handler is not None:
                handler.addFilter(clearing)
        ticker.start()
        try:
            yield self
        finally:
            stop.set()
            ticker.join(timeout=5)
            for handler in handlers:
                if handler is not None:
                    handler.removeFilter(clearing)
            self.close()

    def _tick_until(self, stop: threading.Event, seconds: float) -> None:
        while not stop.wait(seconds):
            self.tick()


class _ClearLineFilter(logging.Filter):
    """Clears the live status line just before its handler writes a record."""

    def __init__(self, progress: RunProgress) -> None:
        super().__init__()
        self._progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        """Clear the line, note a health warning; keep the record, unless it is a progress
        line the display itself shows (``executor.region.PROGRESS_RECORD``)."""
        self._progress.note_record(record)
        if getattr(record, PROGRESS_RECORD, False) and self._progress.shows_messages:
            return False
        self._progress.clear_for_log()
        return True


def format_duration_seconds(seconds: float) -> str:
    """``1m5s`` (whole seconds)."""
    return format_duration(timedelta(seconds=max(0, int(seconds)))) or "0s"
