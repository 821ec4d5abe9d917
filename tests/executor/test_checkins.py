"""Check-ins around a manual run: one per policy, closed with its outcome.

Which config they send is pinned in ``tests/alerting/test_monitors.py``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.config import SentrySettings
from cvmkeeper.core.policy import Policy, Retention, Schedule, Targets
from cvmkeeper.executor.checkins import policy_checkins


def make(name: str, *schedules: Schedule) -> Policy:
    """A policy with these schedules."""
    return Policy(name=name, regions=("ap-guangzhou",), targets=Targets(instance_ids=("ins-a",)),
                  schedules=schedules, retention=Retention(keep_last=1))


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
