"""The one place where a policy's Sentry Crons monitors are configured.

A Sentry check-in carries the monitor's config and *overwrites* the monitor's settings, so
every sender must send the same config for the same monitor: the daemon around each
scheduled run, and ``cvmkeeper run`` around a manual one. Both take it from here.

A monitor has one schedule, so a policy has one monitor per schedule: the first schedule's
monitor is named after the policy (``monitor_slug(policy.name)``), the n-th (n >= 2) after
``<name>-<n>``. Each schedule is sent as Sentry reads it: a crontab rewritten as plain
numbers with standard meaning (macros such as ``@daily`` and names such as ``mon-fri``
expanded, 0 = Sunday) in the schedule's timezone, or ``every:`` as ``(n, unit)``.
"""

from __future__ import annotations

from datetime import timedelta

from cvmkeeper.alerting.events import (
    IntervalUnit,
    MonitorConfig,
    MonitorOptions,
    monitor_config_from,
    monitor_slug,
)
from cvmkeeper.core.policy import Policy, Schedule
from cvmkeeper.core.schedule import parse_cron

__all__ = ["monitor_schedule", "policy_monitor", "schedule_monitor"]

_INTERVAL_UNITS: tuple[tuple[IntervalUnit, timedelta], ...] = (
    ("week", timedelta(weeks=1)),
    ("day", timedelta(days=1)),
    ("hour", timedelta(hours=1)),
    ("minute", timedelta(minutes=1)),
)


def _cron_field(values: frozenset[int], low: int, high: int) -> str:
    if values == frozenset(range(low, high + 1)):
        return "*"
    return ",".join(str(v) for v in sorted(values))


def monitor_schedule(schedule: Schedule) -> str | tuple[int, IntervalUnit]:
    """The schedule as Sentry Crons reads it: a plain 5-field crontab or ``(n, unit)``.

    Crontab strings are rewritten from their parsed fields, so macros (``@daily``) and
    names (``mon-fri``) reach Sentry as plain numbers with standard meaning (0 = Sunday).
    """
    if schedule.cron is not None:
        fields = parse_cron(schedule.cron)
        return " ".join(
            (
                _cron_field(fields.minutes, 0, 59),
                _cron_field(fields.hours, 0, 23),
                _cron_field(fields.days, 1, 31),
                _cron_field(fields.months, 1, 12),
                _cron_field(fields.weekdays, 0, 6),
            )
        )
    assert schedule.every is not None
    for unit, size in _INTERVAL_UNITS:
        if schedule.every % size == timedelta():
            return (schedule.every // size, unit)
    raise ValueError(f"{schedule.describe()}: not a whole number of minutes")


def schedule_monitor(
    policy: Policy, index: int, options: MonitorOptions
) -> tuple[str, MonitorConfig]:
    """The monitor (slug, config) of the ``index``-th schedule (from 0) of ``policy``."""
    schedule = policy.schedules[index]
    slug = monitor_slug(policy.name if index == 0 else f"{policy.name}-{index + 1}")
    return slug, monitor_config_from(monitor_schedule(schedule), schedule.timezone, options)


def policy_monitor(policy: Policy, options: MonitorOptions) -> tuple[str, MonitorConfig]:
    """The policy's own monitor (its first schedule's), which a manual run checks into."""
    return schedule_monitor(policy, 0, options)
