"""Check-ins around a run: one Sentry Crons monitor per policy, its schedule and outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.config import SentrySettings
from cvmkeeper.core.policy import Policy, Retention, Schedule, Targets
from cvmkeeper.executor.checkins import interval_schedule, policy_checkins, policy_monitor_config


def make(name: str, *schedules: Schedule) -> Policy:
    """A policy with these schedules."""
    return Policy(name=name, regions=("ap-guangzhou",), targets=Targets(instance_ids=("ins-a",)),
                  schedules=schedules, retention=Retention(keep_last=1))


@pytest.mark.parametrize(
    ("period", "expected"),
    [(timedelta(hours=6), (6, "hour")), (timedelta(days=2), (2, "day")),
     (timedelta(minutes=90), (90, "minute")), (timedelta(hours=36), (36, "hour"))],
)
def test_interval_schedule_uses_the_largest_whole_unit(
    period: timedelta, expected: tuple[int, str]
) -> None:
    assert interval_schedule(period) == expected


def test_monitor_config_is_the_cron_or_the_shortest_period() -> None:
    settings = SentrySettings(checkin_margin=timedelta(minutes=7), max_runtime=timedelta(hours=2))
    cron = policy_monitor_config(
        make("a", Schedule(cron="0 2 * * *", timezone="Asia/Shanghai")), settings)
    assert (cron.schedule, cron.timezone, cron.checkin_margin, cron.max_runtime) == (
        "0 2 * * *", "Asia/Shanghai", 7, 120)
    several = policy_monitor_config(
        make("b", Schedule(every=timedelta(hours=6)), Schedule(cron="30 1 * * *")), settings)
    assert several.schedule == (6, "hour")
    macro = policy_monitor_config(make("c", Schedule(cron="@daily")), settings)
    assert macro.schedule == (1, "day")


def test_policy_checkins_open_each_and_close_failed_ones_with_error() -> None:
    alerter = RecordingAlerter()
    policies = [make("good", Schedule(every=timedelta(hours=1))),
                make("bad", Schedule(every=timedelta(hours=1)))]
    with policy_checkins(alerter, policies, SentrySettings()) as fail:
        assert [c.status for c in alerter.checkins] == ["in_progress", "in_progress"]
        fail("bad")
        fail("unknown-is-ignored")
    assert alerter.checkin_statuses("good") == ["in_progress", "ok"]
    assert alerter.checkin_statuses("bad") == ["in_progress", "error"]


def test_policy_checkins_end_in_error_when_the_run_raises() -> None:
    alerter = RecordingAlerter()
    with pytest.raises(RuntimeError), \
            policy_checkins(alerter, [make("p", Schedule(every=timedelta(hours=1)))],
                            SentrySettings()):
        raise RuntimeError("boom")
    assert alerter.checkin_statuses("p") == ["in_progress", "error"]
