"""The catch-up rules (core.due): the latest slot only, within its window, when missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cvmkeeper.core.due import ON_TIME_GRACE, catch_up_window, due_slots
from cvmkeeper.core.inventory import Instance
from cvmkeeper.core.naming import image_name
from cvmkeeper.core.policy import Policy, Retention, Schedule, Targets

REGION = "ap-guangzhou"
A, B = "ins-aaaaaaaa", "ins-bbbbbbbb"
T0 = datetime(2026, 11, 27, tzinfo=UTC)


def daily(catch_up: timedelta = timedelta(days=1), *, jitter: timedelta = timedelta()) -> Policy:
    """A policy firing at 02:00 UTC every day for A and B."""
    return Policy(
        name="nightly",
        regions=(REGION,),
        targets=Targets(instance_ids=(A, B)),
        schedules=(Schedule(cron="0 2 * * *", jitter=jitter),),
        retention=Retention(keep_last=3),
        catch_up=catch_up,
    )


def test_the_latest_slot_is_due_within_the_window_and_never_a_backlog() -> None:
    at = T0 + timedelta(days=3, hours=5)  # three nights missed; only the last one is made
    [due] = due_slots([daily()], None, at)
    assert (due.policy, due.slot) == ("nightly", T0 + timedelta(days=3, hours=2))
    assert due.reason.startswith("catch-up")


def test_a_slot_older_than_the_window_is_not_made() -> None:
    at = T0 + timedelta(days=3, hours=5)
    assert due_slots([daily(timedelta(hours=3))], None, at) == ()
    assert len(due_slots([daily(timedelta(hours=4))], None, at)) == 1


def test_catch_up_off_still_makes_the_slot_on_time() -> None:
    policy = daily(timedelta(), jitter=timedelta(minutes=10))
    assert catch_up_window(policy) == timedelta(minutes=10) + ON_TIME_GRACE
    on_time = T0 + timedelta(hours=2, minutes=12)
    assert [d.slot for d in due_slots([policy], None, on_time)] == [T0 + timedelta(hours=2)]
    [right_away] = due_slots([policy], None, T0 + timedelta(hours=2, seconds=30))
    assert right_away.reason == "slot 2026-11-27T02:00Z is due"
    assert due_slots([policy], None, T0 + timedelta(hours=3)) == ()


def test_a_slot_whose_images_all_exist_is_not_due() -> None:
    policy = daily()
    at = T0 + timedelta(hours=2, minutes=1)
    slot = T0 + timedelta(hours=2)
    instances = {REGION: [Instance(A, "a", "RUNNING", REGION), Instance(B, "b", "RUNNING", REGION)]}
    both = {REGION: {image_name(A, slot), image_name(B, slot)}}
    one = {REGION: {image_name(A, slot)}}
    assert due_slots([policy], both, at, instances_by_region=instances) == ()
    assert len(due_slots([policy], one, at, instances_by_region=instances)) == 1
    # Without instances, any image of the slot counts as present.
    assert due_slots([policy], one, at) == ()
    assert len(due_slots([policy], {REGION: {"golden"}}, at)) == 1
    # A region nothing is known about: due (the planner decides).
    assert len(due_slots([policy], {"ap-shanghai": set()}, at)) == 1


def test_a_reason_claims_missing_only_when_the_images_were_looked_at() -> None:
    policy = daily(timedelta(hours=12))
    at = T0 + timedelta(hours=5)  # three hours after the 02:00 slot: a catch-up
    slot = T0 + timedelta(hours=2)
    instances = {REGION: [Instance(A, "a", "RUNNING", REGION), Instance(B, "b", "RUNNING", REGION)]}
    head = "catch-up: slot 2026-11-27T02:00Z is within the catch-up window (12h)"
    [unknown] = due_slots([policy], None, at)
    assert unknown.reason == head
    one = {REGION: {image_name(A, slot)}}
    [missing] = due_slots([policy], one, at, instances_by_region=instances)
    assert missing.reason == f"{head}; an image of it is missing"
    both = {REGION: {image_name(A, slot), image_name(B, slot)}}
    assert due_slots([policy], both, at, instances_by_region=instances) == ()
    [present] = due_slots([policy], both, at, instances_by_region=instances, include_present=True)
    assert (present.slot, present.reason) == (slot, f"{head}; its images exist")
    on_time = T0 + timedelta(hours=2, minutes=1)
    [due] = due_slots([policy], both, on_time, instances_by_region=instances, include_present=True)
    assert due.reason == "slot 2026-11-27T02:00Z is due; its images exist"
