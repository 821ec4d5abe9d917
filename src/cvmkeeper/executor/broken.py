"""Policy files that cannot be used, reported on every run (issue #19).

The daemon and ``cvmkeeper run`` load the config with ``load_setup(partial=True)``: the
good policies run, and each bad policy file is in ``Setup.broken``. A run reports every
broken file as an error, each time, so a typo is never forgotten once the first alert is
read:

- one ERROR log line per problem (``file:line:col: key: message``), through the run's
  progress, so ``journalctl -p err`` and ``run`` show where to look;
- one error alert per file, fingerprinted by the file (``policy=config``,
  ``action=policy-file``, ``group=(file,)``): one Sentry issue per broken file however
  often it is reported and however its problems change while it is edited;
- one entry in the report's errors, so ``run`` exits 1 like for any other error.

What happens to the images meanwhile is ``core.holds`` (``hold_unknown``): images of
policies that are not loaded are held, never rotated, unless a reload kept the old
version of the policy (``BrokenPolicy.stand_in``).
"""

from __future__ import annotations

import logging

from cvmkeeper.alerting import Failure
from cvmkeeper.config import BrokenPolicy
from cvmkeeper.executor.region import RegionResult, RunOptions

#: The alert's action for a policy file that cannot be used (its fingerprint's part).
ACTION = "policy-file"


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
    """Every broken policy file of the run's setup: logged per problem, an error in the
    result, and one error alert per file (none in a dry run)."""
    result = RegionResult("")
    for broken in options.setup.broken:
        for problem in broken.problems:
            options.say(f"ERROR {problem}", level=logging.ERROR)
        message = broken_file_message(broken)
        options.say(f"ERROR {message}", level=logging.ERROR)
        result.errors.append(message)
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
