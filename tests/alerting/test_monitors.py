"""One config per monitor: the daemon and ``cvmkeeper run`` send the same one.

A Sentry check-in overwrites its monitor's settings, so a manual run that sent another
schedule than the daemon (the bug of issue 20: ``(6, "hour")`` in UTC against the daemon's
``0 2 * * *`` in Asia/Shanghai) would silently change what the daemon's monitor is judged
by. These tests drive both real senders, the daemon's ``SlotJobs.run_slot`` and the run's
``policy_checkins``, and compare what reached the alerter.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.alerting import MonitorConfig, RecordingAlerter, monitor_slug
from cvmkeeper.alerting.monitors import monitor_schedule, policy_monitor, schedule_monitor
from cvmkeeper.config import Config, SentrySettings, Setup
from cvmkeeper.core.policy import Policy, Schedule
from cvmkeeper.executor.checkins import policy_checkins
from cvmkeeper.executor.report import RunReport
from cvmkeeper.scheduler.jobs import RunContext, SlotJobs
from support import builders

NOW = datetime(2026, 11, 27, 18, 0, 30, tzinfo=UTC)
SETTINGS = SentrySettings(checkin_margin=timedelta(minutes=7), max_runtime=timedelta(hours=2))

#: Every kind of schedule a policy can have, alone and combined.
SCHEDULE_KINDS: dict[str, tuple[Schedule, ...]] = {
    "cron in a timezone": (Schedule(cron="0 2 * * *", timezone="Asia/Shanghai"),),
    "cron with names": (Schedule(cron="30 4 * * mon-fri", timezone="Europe/Berlin"),),
    "@daily macro": (Schedule(cron="@daily"),),
    "@weekly macro": (Schedule(cron="@weekly", timezone="America/New_York"),),
    "every interval": (Schedule(every=timedelta(hours=6)),),
    "every in weeks": (Schedule(every=timedelta(days=14)),),
    "cron then every": (
        Schedule(cron="0 2 * * *", timezone="Asia/Shanghai"),
        Schedule(every=timedelta(hours=6)),
    ),
    "every then cron": (Schedule(every=timedelta(hours=4)), Schedule(cron="30 1 * * *")),
}


def ok_runner(*_args: Any, now: datetime, **_options: Any) -> RunReport:
    """A runner whose run made nothing and failed nothing."""
    return RunReport(started=now, finished=now, outcomes=())


def daemon_sends(policy: Policy, index: int) -> dict[str, MonitorConfig]:
    """The monitor configs the daemon sends for one scheduled run of schedule ``index``."""
    alerter = RecordingAlerter()
    setup = Setup(Config(Path("cvmkeeper.yaml"), Path("policies"), sentry=SETTINGS), (policy,))
    jobs = SlotJobs(
        RunContext(setup, client=None, alerter=alerter),
        runner=ok_runner,
        region_locks=None,
        state=None,
        clock=lambda: NOW,
        stop=threading.Event(),
    )
    jobs.run_slot(policy.name, policy.schedules[index])
    return {c.slug: c.config for c in alerter.checkins}


def run_sends(policy: Policy) -> dict[str, MonitorConfig]:
    """The monitor configs ``cvmkeeper run`` sends for the policy."""
    alerter = RecordingAlerter()
    with policy_checkins(alerter, [policy], SETTINGS):
        pass
    return {c.slug: c.config for c in alerter.checkins}


@pytest.mark.parametrize("kind", sorted(SCHEDULE_KINDS))
def test_the_daemon_and_a_manual_run_send_the_same_monitor_config(kind: str) -> None:
    policy = builders.policy("web", ids=("ins-a",), schedules=SCHEDULE_KINDS[kind])
    from_run = run_sends(policy)
    assert list(from_run) == [monitor_slug("web")]
    from_daemon = daemon_sends(policy, 0)
    assert from_run == from_daemon
    for index in range(1, len(policy.schedules)):  # further schedules: their own monitors
        (slug,) = daemon_sends(policy, index)
        assert slug == monitor_slug(f"web-{index + 1}")
        assert slug not in from_run


def test_the_bug_of_issue_20_is_gone() -> None:
    """Cron in Asia/Shanghai plus ``every: 6h``: the run no longer sends ``(6, hour)`` UTC."""
    policy = builders.policy("web", ids=("ins-a",), schedules=SCHEDULE_KINDS["cron then every"])
    (config,) = run_sends(policy).values()
    assert (config.schedule, config.timezone) == ("0 2 * * *", "Asia/Shanghai")
    assert (config.checkin_margin, config.max_runtime) == (7, 120)
    daily_policy = builders.policy("d", ids=("ins-a",), schedules=SCHEDULE_KINDS["@daily macro"])
    (daily,) = run_sends(daily_policy).values()
    assert (daily.schedule, daily.timezone) == ("0 0 * * *", "UTC")


def test_each_schedule_has_its_own_monitor() -> None:
    policy = builders.policy("web", ids=("ins-a",), schedules=SCHEDULE_KINDS["every then cron"])
    assert policy_monitor(policy, SETTINGS) == schedule_monitor(policy, 0, SETTINGS)
    slug, config = schedule_monitor(policy, 1, SETTINGS)
    assert (slug, config.schedule, config.timezone) == ("web-2", "30 1 * * *", "UTC")


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Schedule(cron="@daily"), "0 0 * * *"),
        (Schedule(cron="0 2 * * mon-fri"), "0 2 * * 1,2,3,4,5"),
        (Schedule(cron="30 4 1 * 7"), "30 4 1 * 0"),
        (Schedule(cron="*/15 8-10 * jan,jul *"), "0,15,30,45 8,9,10 * 1,7 *"),
        (Schedule(every=timedelta(hours=6)), (6, "hour")),
        (Schedule(every=timedelta(minutes=90)), (90, "minute")),
        (Schedule(every=timedelta(days=14)), (2, "week")),
        (Schedule(every=timedelta(days=3)), (3, "day")),
    ],
)
def test_monitor_schedule_is_plain_standard_crontab_or_interval(
    schedule: Schedule, expected: object
) -> None:
    assert monitor_schedule(schedule) == expected
