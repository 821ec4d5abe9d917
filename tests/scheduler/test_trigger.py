"""The APScheduler trigger fires at the core's slots, jitter never moving the slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from cvmkeeper.core.policy import Schedule
from cvmkeeper.core.schedule import latest_slot, next_slots
from cvmkeeper.scheduler.trigger import to_trigger


def utc(*parts: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(*parts, tzinfo=UTC)


def test_trigger_fires_at_slots_and_keeps_them_with_jitter() -> None:
    schedule = Schedule(cron="0 2 * * *", timezone="Asia/Shanghai", jitter=timedelta(minutes=5))
    trigger = to_trigger(schedule)
    assert isinstance(trigger, BaseTrigger)
    now = utc(2026, 11, 27, 10)
    fire_times = []
    previous = None
    for _ in range(5):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fire_times.append(fire)
        previous, now = fire, fire
    slots = [latest_slot(schedule, f) for f in fire_times]
    assert slots == next_slots(schedule, utc(2026, 11, 27, 10), 5)
    assert all(
        timedelta() <= f - s <= timedelta(minutes=5) for f, s in zip(fire_times, slots, strict=True)
    )


def test_trigger_without_previous_fires_at_now_when_now_is_a_slot() -> None:
    trigger = to_trigger(Schedule(cron="0 * * * *"))
    assert trigger.get_next_fire_time(None, utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 5)
    assert "0 * * * *" in str(trigger)
