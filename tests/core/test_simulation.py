"""Replaying a policy with the pure core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cvmkeeper.core.naming import parse_image_name
from cvmkeeper.core.policy import Retention, Schedule
from cvmkeeper.core.simulation import SimulationTooLongError, simulate
from support import builders


def test_a_year_of_daily_gfs_keeps_one_image_per_bucket() -> None:
    policy = builders.policy(
        retention=Retention(keep_daily=7, keep_weekly=4, keep_monthly=12),
        schedules=(Schedule(cron="0 2 * * *"),),
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    result = simulate(policy, start, start + timedelta(days=400))
    assert result.slots == result.created == 400
    assert result.deleted == result.created - len(result.kept)
    slots = [k.slot for k in result.kept]
    assert slots == sorted(slots, reverse=True)
    assert slots[0] == datetime(2027, 2, 4, 2, 0, tzinfo=UTC)
    # 7 daily + older weekly/monthly images; the newest of each month for a year back.
    months = {(s.year, s.month) for s in slots}
    assert len(months) == 12
    assert result.peak == result.peak_after_rotation + 1
    assert all(parse_image_name(k.name) is not None for k in result.kept)
    assert result.kept[0].reasons[0] == "newest NORMAL"


def test_keep_last_settles_at_its_count() -> None:
    policy = builders.policy(
        retention=Retention(keep_last=4), schedules=(Schedule(every=timedelta(hours=1)),)
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    result = simulate(policy, start, start + timedelta(days=2))
    assert len(result.kept) == 4
    assert result.peak == 5 and result.peak_after_rotation == 4


def test_runaway_simulations_are_refused() -> None:
    policy = builders.policy(
        retention=Retention(keep_last=1), schedules=(Schedule(cron="* * * * *"),)
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(SimulationTooLongError):
        simulate(policy, start, start + timedelta(days=400))
