"""The APScheduler trigger that fires a schedule's slots, with the schedule's jitter.

The slot maths is the pure core's (``cvmkeeper.core.schedule``); this module only adapts it
to APScheduler 3's trigger interface, so the core never imports the scheduler library.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from cvmkeeper.core.policy import Schedule
from cvmkeeper.core.schedule import check_schedule, iter_slots, latest_slot

__all__ = ["SlotTrigger", "to_trigger"]


class SlotTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler 3 trigger that fires at a schedule's slots (plus optional jitter).

    Fire times are the slots of ``iter_slots``, so the daemon, ``schedule`` and ``plan``
    agree to the minute. The slot of a (possibly jittered) fire time is
    ``latest_slot(schedule, fire_time)``: jitter is always shorter than the shortest gap.
    """

    __slots__ = ("schedule",)

    def __init__(self, schedule: Schedule) -> None:
        check_schedule(schedule)
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """Next slot after the previous fire's slot, or the first slot at or after ``now``."""
        if previous_fire_time is None:
            after = now - timedelta(microseconds=1)
        else:
            after = latest_slot(self.schedule, previous_fire_time) or previous_fire_time
        upcoming = next(iter_slots(self.schedule, after), None)
        jitter = int(self.schedule.jitter.total_seconds())
        result: Any = self._apply_jitter(upcoming, jitter, now)
        return result if isinstance(result, datetime) else None

    def __str__(self) -> str:
        return f"slots[{self.schedule.describe()}]"

    def __repr__(self) -> str:
        return f"<SlotTrigger {self.schedule.describe()}>"


def to_trigger(schedule: Schedule) -> SlotTrigger:
    """An APScheduler 3.11 trigger for ``schedule`` (for ``scheduler.add_job(trigger=...)``)."""
    return SlotTrigger(schedule)
