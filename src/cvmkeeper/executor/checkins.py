"""Check-ins around a manual run (``cvmkeeper run``) of several policies.

Each policy checks into its own monitor, configured by ``alerting.monitors.policy_monitor``
exactly as the daemon configures it (a check-in overwrites the monitor's settings, so a
manual run must never send a different schedule than the daemon's monitor is judged by).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager

from cvmkeeper.alerting import Alerter, monitored_run
from cvmkeeper.alerting.events import MonitorOptions
from cvmkeeper.alerting.monitors import policy_monitor
from cvmkeeper.core.policy import Policy


@contextmanager
def policy_checkins(
    alerter: Alerter, policies: Iterable[Policy], options: MonitorOptions
) -> Iterator[Callable[[str], None]]:
    """Open an ``in_progress`` check-in for each policy; yield ``fail(name)``; close them
    all on exit (``error`` for the failed ones and for all when the block raises)."""
    with ExitStack() as stack:
        runs = {
            policy.name: stack.enter_context(
                monitored_run(alerter, *policy_monitor(policy, options))
            )
            for policy in policies
        }

        def fail(name: str) -> None:
            if name in runs:
                runs[name].fail()

        yield fail
