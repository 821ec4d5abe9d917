"""Check-ins around a manual run: one per policy, closed with its outcome.

Which config they send is pinned in ``tests/alerting/test_monitors.py``."""

from __future__ import annotations

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.config import SentrySettings
from cvmkeeper.executor.checkins import policy_checkins
from support import builders


def test_policy_checkins_open_each_and_close_failed_ones_with_error() -> None:
    alerter = RecordingAlerter()
    policies = [builders.policy("good", ids=("ins-a",)), builders.policy("bad", ids=("ins-a",))]
    with policy_checkins(alerter, policies, SentrySettings()) as fail:
        assert [c.status for c in alerter.checkins] == ["in_progress", "in_progress"]
        fail("bad")
        fail("unknown-is-ignored")
    assert alerter.checkin_statuses("good") == ["in_progress", "ok"]
    assert alerter.checkin_statuses("bad") == ["in_progress", "error"]


def test_policy_checkins_end_in_error_when_the_run_raises() -> None:
    alerter = RecordingAlerter()
    with (
        pytest.raises(RuntimeError),
        policy_checkins(alerter, [builders.policy("p", ids=("ins-a",))], SentrySettings()),
    ):
        raise RuntimeError("boom")
    assert alerter.checkin_statuses("p") == ["in_progress", "error"]
