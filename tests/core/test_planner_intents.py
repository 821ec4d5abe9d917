"""The planner with live intents (``Inventory.intents``, rule 2 across a kill).

A run killed after sending ``CreateImage`` leaves only the image's name; under a listing
lag the image may exist unlisted. Each live intent counts as one used image, and no
create is planned under its name (the image that may exist is adopted once listed).
"""

from __future__ import annotations

from dataclasses import replace

from core.test_planner import A, B, backup, deleted, foreign, hour, inventory, plan_of
from cvmkeeper.core.naming import image_name
from cvmkeeper.core.plan import Phase
from cvmkeeper.core.planner import plan_region
from support.builders import policy


def test_a_live_intent_counts_as_one_used_image() -> None:
    # quota one short of full in the listing; the intent (another slot's) fills it
    images = [foreign("img-hand0001"), backup(A, hour(0))]
    inv = replace(inventory(3, images, instances=(A,)), intents=(image_name(A, hour(1)),))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=4)], {"p": hour(2)}, hour(2))
    assert (plan.used, plan.free) == (3, 0)
    assert plan.creates == ()  # nothing can go: A's only listed image is its newest
    [error] = plan.errors
    assert "region at quota (3 of 3 images; 1 of them not listed yet" in error
    assert image_name(A, hour(1)) in error
    # without the intent, the same listing has room for the create (the old behaviour)
    listed_only = plan_region(
        replace(inv, intents=()), [policy(ids=(A,), keep_last=4)], {"p": hour(2)}, hour(2)
    )
    assert [c.slot for c in listed_only.creates] == [hour(2)]


def test_an_intent_of_a_due_name_is_waited_for_not_created_again() -> None:
    inv = replace(inventory(10, [], instances=(A, B)), intents=(image_name(A, hour(0)),))
    plan = plan_of(inv, [policy(ids=(A, B))], {"p": hour(0)}, hour(0))
    assert [c.instance_id for c in plan.creates] == [B]  # the quota has room: B goes on
    [error] = plan.errors
    assert error.startswith(f"{image_name(A, hour(0))}: not created: an earlier run sent")
    assert "counted against the quota" in error
    assert plan.used == 1


def test_an_intent_makes_room_by_deleting_what_expired_first() -> None:
    # full with an expired image of A: the intent's room is made by deleting it early
    images = [backup(A, hour(h)) for h in range(2)]
    inv = replace(inventory(3, images, instances=(A,)), intents=(image_name(B, hour(1)),))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(2)}, hour(2))
    assert [c.slot for c in plan.creates] == [hour(2)]
    assert images[0].image_id in deleted(plan, Phase.BEFORE_CREATE)
    # without the intent there is room: the expired image goes after the create
    listed_only = plan_region(
        replace(inv, intents=()), [policy(ids=(A,), keep_last=1)], {"p": hour(2)}, hour(2)
    )
    assert images[0].image_id not in deleted(listed_only, Phase.BEFORE_CREATE)
