"""The planner under eventual consistency and deletion lag (issue #18).

``Inventory.unlisted`` (images cvmkeeper created that DescribeImages does not list yet)
and ``DELETING`` images count against the quota; ``Inventory.provisional`` (images
cvmkeeper created, listed before their tags) are managed by name and never deleted on
that basis.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from core.test_planner import T0, A, B, backup, deleted, hour, inventory, plan_of
from cvmkeeper.core.inventory import Image, ImageState
from cvmkeeper.core.planner import plan_region
from support.builders import policy


def untagged(image: Image) -> Image:
    """``image`` as listed before its tags show."""
    return replace(image, tags={})


def test_an_unlisted_image_counts_against_the_quota() -> None:
    images = [backup(A, hour(h)) for h in range(3)]
    inv = replace(inventory(4, images), unlisted=("img-notyet01",))
    plan = plan_of(
        inv, [policy(ids=(A, B), keep_last=3, on_quota_full="skip")], {"p": hour(3)}, hour(3)
    )
    assert plan.used == 4 and plan.free == 0
    # with A's oldest deleted first there is room for one create, whose instance set
    # then keeps A's oldest: no room at all (without the unlisted image, both are made)
    assert plan.creates == ()
    assert len([e for e in plan.errors if "region at quota (4 of 4" in e]) == 2
    listed_only = plan_region(
        replace(inv, unlisted=()), [policy(ids=(A, B), keep_last=3)], {"p": hour(3)}, hour(3)
    )
    assert len(listed_only.creates) == 2


def test_deleting_images_count_and_are_never_deleted_again() -> None:
    images = [backup(A, hour(h)) for h in range(2)]
    images.append(backup(A, T0 - timedelta(hours=1), ImageState.DELETING))
    inv = inventory(3, images, instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(2)}, hour(2))
    assert plan.used == 3
    gone = deleted(plan)
    assert images[2].image_id not in gone  # already DELETING: it frees its room by itself
    assert images[0].image_id in gone  # the expired NORMAL one makes the room
    assert [c.slot for c in plan.creates] == [hour(2)]


def test_a_provisional_image_is_managed_and_never_deleted() -> None:
    new = untagged(backup(A, hour(2)))
    old = [backup(A, hour(h)) for h in range(2)]
    inv = replace(inventory(10, [*old, new], instances=(A,)), provisional=frozenset({new.image_id}))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(2))
    assert plan.unmanaged == 0
    assert set(deleted(plan)) == {old[0].image_id, old[1].image_id}
    # without the record it is someone else's: counted, and the old ones are kept
    plain = plan_region(
        replace(inv, provisional=frozenset()), [policy(ids=(A,), keep_last=1)], {}, hour(2)
    )
    assert plain.unmanaged == 1
    assert set(deleted(plain)) == {old[0].image_id}


def test_a_provisional_image_that_retention_expires_is_kept() -> None:
    early = untagged(backup(A, hour(0)))
    later = [backup(A, hour(h)) for h in (1, 2)]
    inv = replace(
        inventory(10, [early, *later], instances=(A,)), provisional=frozenset({early.image_id})
    )
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(2))
    assert set(deleted(plan)) == {later[0].image_id}  # never the one known only by name
