"""core.health: freshness and quota headroom as pure decisions, at their boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cvmkeeper.core.health import HealthSettings, assess_region, inventory_after
from cvmkeeper.core.inventory import Image, ImageState, Instance, Inventory
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.core.policy import Schedule
from support import builders

REGION = "ap-guangzhou"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
A, B, C = "ins-aaaaaaaa", "ins-bbbbbbbb", "ins-cccccccc"


def backup(
    instance_id: str, slot: datetime, image_id: str, state: ImageState = ImageState.NORMAL
) -> Image:
    return Image(
        image_id,
        image_name(instance_id, slot),
        state,
        slot,
        REGION,
        description=image_description(("p",), slot),
        tags=image_tags(("p",), instance_id, slot),
    )


def inventory(*images: Image, quota: int = 10) -> Inventory:
    instances = tuple(Instance(i, i, "RUNNING", REGION) for i in (A, B, C))
    return Inventory(REGION, quota, images, instances)


HOURLY = builders.policy(
    "hourly", ids=(A, B), schedules=(Schedule(every=timedelta(hours=1)),), keep_last=3
)


@pytest.mark.parametrize(
    ("age", "stale"),
    [(timedelta(hours=2), False), (timedelta(hours=2, minutes=1), True), (timedelta(0), False)],
)
def test_stale_means_older_than_period_times_factor(age: timedelta, stale: bool) -> None:
    slot = NOW - age
    health = assess_region(inventory(backup(A, slot, "img-a1")), [HOURLY], NOW)
    item = next(i for i in health.instances if i.instance_id == A)
    assert (item.stale, item.age, item.newest_slot, item.allowed) == (
        stale,
        age,
        slot,
        timedelta(hours=2),
    )


def test_the_factor_is_configurable() -> None:
    slot = NOW - timedelta(hours=3)
    loose = assess_region(
        inventory(backup(A, slot, "img-a1")), [HOURLY], NOW, HealthSettings(freshness_factor=4)
    )
    assert not loose.instances[0].stale


def test_only_normal_managed_images_count_and_untargeted_instances_are_ignored() -> None:
    images = (
        backup(A, NOW - timedelta(hours=5), "img-a-old"),
        backup(A, NOW - timedelta(minutes=10), "img-a-new", ImageState.CREATING),
        backup(B, NOW - timedelta(minutes=10), "img-b-failed", ImageState.CREATEFAILED),
        Image("img-hand", image_name(B, NOW), ImageState.NORMAL, NOW, REGION),  # no marker
        backup(C, NOW, "img-c"),
    )
    health = assess_region(inventory(*images), [HOURLY], NOW)
    assert [i.instance_id for i in health.instances] == [A, B]  # C: no policy targets it
    assert [(i.instance_id, i.newest_image_id) for i in health.stale] == [
        (A, "img-a-old"),
        (B, None),
    ]
    assert "has no NORMAL backup" in health.stale[1].describe()
    assert "is 5h old" in health.stale[0].describe()


def test_the_policy_with_the_shortest_period_sets_the_expectation() -> None:
    daily = builders.policy(
        "daily", ids=(A,), schedules=(Schedule(every=timedelta(days=1)),), keep_last=3
    )
    health = assess_region(
        inventory(backup(A, NOW - timedelta(hours=3), "img-a")), [daily, HOURLY], NOW
    )
    item = next(i for i in health.instances if i.instance_id == A)
    assert (item.policy, item.policies, item.stale) == ("hourly", ("daily", "hourly"), True)


@pytest.mark.parametrize(
    ("images", "threshold", "low"), [(9, 1, False), (10, 1, True), (8, 3, True), (10, 0, False)]
)
def test_quota_is_low_below_the_threshold(images: int, threshold: int, low: bool) -> None:
    hand = [Image(f"img-{n}", f"golden-{n}", ImageState.NORMAL, NOW, REGION) for n in range(images)]
    health = assess_region(
        inventory(*hand), [HOURLY], NOW, HealthSettings(quota_free_warning=threshold)
    )
    assert (health.quota.free, health.quota.low) == (10 - images, low)
    assert (health.quota.managed, health.quota.unmanaged) == (0, images)


def test_inventory_after_applies_made_updated_and_deleted_images() -> None:
    old = backup(A, NOW - timedelta(hours=2), "img-old")
    flying = backup(B, NOW - timedelta(hours=1), "img-fly", ImageState.CREATING)
    made = backup(A, NOW, "img-new")
    landed = backup(B, NOW - timedelta(hours=1), "img-fly")
    after = inventory_after(inventory(old, flying), [made, landed], ["img-old"])
    assert {(i.image_id, i.state) for i in after.images} == {
        ("img-fly", ImageState.NORMAL),
        ("img-new", ImageState.NORMAL),
    }


def test_bad_settings_and_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="freshness_factor"):
        HealthSettings(freshness_factor=0.5)
    with pytest.raises(ValueError, match="quota_free_warning"):
        HealthSettings(quota_free_warning=-1)
    with pytest.raises(ValueError, match="aware"):
        assess_region(inventory(), [HOURLY], NOW.replace(tzinfo=None))


def test_freshness_rests_on_when_the_image_was_made_not_the_slot_in_its_name() -> None:
    # named for tomorrow by a clock that was ahead, really made five hours ago
    ahead = backup(A, NOW + timedelta(days=1), "img-a-ahead")
    made = NOW - timedelta(hours=5)
    ahead = Image(
        ahead.image_id,
        ahead.name,
        ahead.state,
        made,
        REGION,
        description=ahead.description,
        tags=ahead.tags,
    )
    health = assess_region(inventory(ahead), [HOURLY], NOW)
    item = next(i for i in health.instances if i.instance_id == A)
    assert item.stale and item.age == timedelta(hours=5)
