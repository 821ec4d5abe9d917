"""The Sentry Crons monitor of a policy, and check-ins around a run of several policies.

Each policy is one monitor (``alerting.monitor_slug(policy.name)``). Its schedule is the
policy's crontab when it has exactly one cron schedule, otherwise an interval of its
shortest period, so Sentry expects a check-in at least that often.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

from cvmkeeper.alerting import (
    Alerter,
    MonitorConfig,
    monitor_config_from,
    monitor_slug,
    monitored_run,
)
from cvmkeeper.alerting.events import IntervalUnit, MonitorOptions
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.schedule import policy_period

_UNITS: tuple[tuple[timedelta, IntervalUnit], ...] = (
    (timedelta(days=1), "day"),
    (timedelta(hours=1), "hour"),
    (timedelta(minutes=1), "minute"),
)


def interval_schedule(period: timedelta) -> tuple[int, IntervalUnit]:
    """``period`` as Sentry's (value, unit), in the largest unit that divides it."""
    for size, unit in _UNITS:
        if period >= size and period % size == timedelta():
            return period // size, unit
    return max(1, round(period / timedelta(minutes=1))), "minute"


def policy_monitor_config(policy: Policy, options: MonitorOptions) -> MonitorConfig:
    """The monitor config of ``policy`` (schedule, timezone, margins from the config)."""
    schedules = policy.schedules
    if len(schedules) == 1 and schedules[0].cron and len(schedules[0].cron.split()) == 5:
        return monitor_config_from(schedules[0].cron, schedules[0].timezone, options)
    return monitor_config_from(interval_schedule(policy_period(policy)), "UTC", options)


@contextmanager
def policy_checkins(
    alerter: Alerter, policies: Iterable[Policy], options: MonitorOptions
) -> Iterator[Callable[[str], None]]:
    """Open an ``in_progress`` check-in for each policy; yield ``fail(name)``; close them
    all on exit (``error`` for the failed ones and for all when the block raises)."""
    with ExitStack() as stack:
        runs = {
            policy.name: stack.enter_context(
                monitored_run(alerter, monitor_slug(policy.name),
                              policy_monitor_config(policy, options))
            )
            for policy in policies
        }

        def fail(name: str) -> None:
            if name in runs:
                runs[name].fail()

        yield fail
