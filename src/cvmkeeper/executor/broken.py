"""Policy files that cannot be used, reported on every run (issue #19).

The daemon and ``cvmkeeper run`` load the config with ``load_setup(partial=True)``: the
good policies run, and each bad policy file is in ``Setup.broken``. A run reports every
broken file as an error, each time, so a typo is never forgotten once the first alert is
read:

- one ERROR log line per problem (``file:line:col: key: message``), through the run's
  progress, so ``journalctl -p err`` and ``run`` show where to look. ``run`` logs them on
  every run; the daemon at the same rate as the event below (once per file and hour
  while unchanged, at once when it changes; a DEBUG reminder otherwise), so that N
  policies running every few minutes do not bury the journal under the same lines;
- one error alert per file, fingerprinted by the file (``policy=config``,
  ``action=policy-file``, ``group=(file,)``): one Sentry issue per broken file however
  often it is reported and however its problems change while it is edited. ``cvmkeeper
  run`` sends it on every run. The daemon, whose N policies each run on their own
  schedule, passes one :class:`BrokenFileAlerts` to all its runs: a file's event is sent
  at most once per :data:`ALERT_EVERY` while its problems stay the same, and at once
  when they change (docs/alerting.md "A bad policy file");
- one entry in the report's errors, so ``run`` exits 1 like for any other error.

What happens to the images meanwhile is ``core.holds`` (``hold_unknown``): images of
policies that are not loaded are held, never rotated, unless a reload kept the old
version of the policy (``BrokenPolicy.stand_in``).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from cvmkeeper.alerting import Failure
from cvmkeeper.config import BrokenPolicy
from cvmkeeper.executor.region import RegionResult, RunOptions

#: The alert's action for a policy file that cannot be used (its fingerprint's part).
ACTION = "policy-file"
#: How often the daemon sends the event of a broken file that does not change.
ALERT_EVERY = timedelta(hours=1)


class BrokenFileAlerts:
    """Which broken files a daemon's run alerts: each file at most once per ``every`` while
    its problems (and whether an old version stands in) stay the same.

    Why a rate per file and not "once per cycle": the daemon has no cycle, each policy
    fires on its own schedule, so N policies would send N events an hour for one typo
    (every one a Sentry event counted against the quota, and a notification rule's
    trigger). Once an hour keeps the issue's "last seen" fresh, so a file left broken is
    never mistaken for a fixed one; a changed file (new problems) is sent at once.
    Thread-safe: the daemon's runs go on in parallel.
    """

    def __init__(self, every: timedelta = ALERT_EVERY) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._sent: dict[str, tuple[object, datetime]] = {}

    def due(self, broken: BrokenPolicy, now: datetime) -> bool:
        """True (and remembered as sent at ``now``) when ``broken``'s event is to be sent."""
        key = (broken.problems, broken.stand_in)
        with self._lock:
            last = self._sent.get(broken.file)
            if last is not None and last[0] == key and last[1] <= now < last[1] + self._every:
                return False
            self._sent[broken.file] = (key, now)
            return True


def broken_file_message(broken: BrokenPolicy) -> str:
    """What one broken file means for the run, for the log, the alert and the report."""
    named = f" (policy {broken.name!r})" if broken.name else ""
    if broken.stand_in:
        fate = "the version loaded before it keeps running until the file is fixed"
    else:
        fate = (
            "the other policies run; images of policies that are not loaded are held "
            "(never rotated) until it is fixed"
        )
    count = len(broken.problems)
    return (
        f"policy file {broken.file}{named} cannot be used ({count} problem"
        f"{'' if count == 1 else 's'}): {fate}; first: {broken.summary()}"
    )


def report_broken_files(options: RunOptions) -> RegionResult:
    """Every broken policy file of the run's setup: an error in the result, logged per
    problem, and one error alert per file (none in a dry run). In the daemon's runs the
    lines and the alert only when ``options.broken_alerts`` says the file is due."""
    result = RegionResult("")
    for broken in options.setup.broken:
        message = broken_file_message(broken)
        result.errors.append(message)
        gate = options.broken_alerts
        if not options.dry_run and gate is not None and not gate.due(broken, options.now):
            options.say(
                f"policy file {broken.file} still cannot be used, unchanged (its problems "
                "are logged and alerted at most once an hour while unchanged)",
                level=logging.DEBUG,
            )
            continue
        for problem in broken.problems:
            options.say(f"ERROR {problem}", level=logging.ERROR)
        options.say(f"ERROR {message}", level=logging.ERROR)
        if options.dry_run:
            continue
        options.alerter.error(
            Failure(
                policy="config",
                action=ACTION,
                message=message,
                extra={
                    "file": broken.file,
                    "policy_name": broken.name or "",
                    "problems": "\n".join(str(p) for p in broken.problems[:20]),
                    "old_version_kept": "yes" if broken.stand_in else "no",
                },
                group=(broken.file,),
            )
        )
    return result
