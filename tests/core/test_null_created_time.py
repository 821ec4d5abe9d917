"""A null ``CreatedTime`` (the SDK model: "may return null"; issue #18) read safely.

An image that does not say when it was made never counts as fresh coverage (a missed
backup is still alerted, rule 7), is never ordered as older than it may be (so it is not
the first to go), and is never "made at or before" a restore's ``--as-of``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cvmkeeper.core.demand import age_key
from cvmkeeper.core.health import assess_region, made_at
from cvmkeeper.core.inventory import Image, ImageState, Instance, Inventory
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.core.ownership import classify_image
from cvmkeeper.core.policy import Schedule
from cvmkeeper.core.restore import choose_restore_point
from support import builders

REGION = "ap-guangzhou"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
A = "ins-aaaaaaaa"
HOURLY = builders.policy("hourly", ids=(A,), schedules=(Schedule(every=timedelta(hours=1)),))


def backup(slot: datetime, image_id: str, *, timed: bool = True) -> Image:
    return Image(
        image_id,
        image_name(A, slot),
        ImageState.NORMAL,
        slot if timed else None,
        REGION,
        description=image_description(("hourly",), slot),
        tags=image_tags(("hourly",), A, slot),
    )


def inventory(*images: Image) -> Inventory:
    return Inventory(REGION, 10, images, (Instance(A, A, "RUNNING", REGION),))


def test_an_untimed_backup_is_not_fresh_coverage() -> None:
    old = backup(NOW - timedelta(hours=5), "img-old")
    fresh_but_untimed = backup(NOW - timedelta(minutes=10), "img-new", timed=False)
    [item] = assess_region(inventory(old, fresh_but_untimed), [HOURLY], NOW).instances
    assert item.newest_image_id == "img-old"
    assert item.stale  # alerted, not silently covered by an image of unknown age
    owned = classify_image(fresh_but_untimed)
    assert owned is not None and made_at(owned) is None


def test_only_untimed_backups_mean_no_backup() -> None:
    untimed = backup(NOW - timedelta(minutes=10), "img-new", timed=False)
    [item] = assess_region(inventory(untimed), [HOURLY], NOW).instances
    assert (item.newest_image_id, item.stale) == (None, True)


def test_an_untimed_image_is_the_newest_of_its_slot() -> None:
    slot = NOW - timedelta(hours=1)
    timed = classify_image(backup(slot, "img-b"))
    untimed = classify_image(replace(backup(slot, "img-a"), created_time=None))
    assert timed is not None and untimed is not None
    assert sorted([untimed, timed], key=age_key) == [timed, untimed]


def test_restore_as_of_skips_an_untimed_image() -> None:
    older = backup(NOW - timedelta(hours=3), "img-older")
    untimed = backup(NOW - timedelta(hours=1), "img-untimed", timed=False)
    point = choose_restore_point([older, untimed], A, REGION, as_of=NOW)
    assert point.image.image_id == "img-older"
    # without --as-of the newest is chosen by its slot, without crashing on the null time
    assert choose_restore_point([older, untimed], A, REGION).image.image_id == "img-untimed"
