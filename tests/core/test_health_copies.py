"""core.health for cross-region copies: held counts, staleness, what is (not) assessed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cvmkeeper.core.health import HealthSettings, assess_region
from cvmkeeper.core.inventory import Image, ImageState, Instance, Inventory
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.core.policy import CopyRule, Policy, Retention, Schedule, Targets

SOURCE, DEST = "ap-guangzhou", "ap-shanghai"
A, B = "ins-aaaaaaaa", "ins-bbbbbbbb"
NOW = datetime(2026, 11, 27, 12, 30, tzinfo=UTC)
COPYING = Policy(
    name="web",
    regions=(SOURCE,),
    targets=Targets(instance_ids=(A, B)),
    schedules=(Schedule(every=timedelta(hours=1)),),
    retention=Retention(keep_last=3),
    copies=(CopyRule(DEST, Retention(keep_last=2)),),
)


def managed(
    region: str, instance_id: str, hours_ago: int, n: str, state: ImageState = ImageState.NORMAL
) -> Image:
    slot = NOW.replace(minute=0) - timedelta(hours=hours_ago)
    return Image(
        f"img-{n}",
        image_name(instance_id, slot),
        state,
        slot,
        region,
        image_description(("web",), slot),
        tags=image_tags(("web",), instance_id, slot),
    )


def source() -> Inventory:
    instances = tuple(Instance(i, i, "RUNNING", SOURCE) for i in (A, B))
    return Inventory(
        SOURCE, 10, (managed(SOURCE, A, 0, "a0"), managed(SOURCE, B, 0, "b0")), instances
    )


def test_copies_held_per_instance_and_the_stale_ones() -> None:
    dest = Inventory(
        DEST,
        10,
        (
            managed(DEST, A, 0, "ca0"),
            managed(DEST, A, 1, "ca1"),  # A: fresh, two held
            managed(DEST, B, 5, "cb5"),  # B: the newest copy is 5h old, allowed 2h
            managed(DEST, B, 0, "cb0", ImageState.SYNCING),  # in flight: not a copy yet
        ),
        (),
    )
    health = assess_region(
        dest,
        [COPYING],
        NOW,
        HealthSettings(freshness_factor=2),
        sources={SOURCE: source(), DEST: dest},
    )
    assert health.instances == ()  # no instance of the destination itself is targeted
    by_instance = {c.instance_id: c for c in health.copies}
    assert (by_instance[A].held, by_instance[A].stale, by_instance[A].source_region) == (
        2,
        False,
        SOURCE,
    )
    assert (by_instance[B].held, by_instance[B].stale) == (1, True)
    [stale] = health.stale_copies
    assert stale.describe() == (
        f"copies of {B} (from {SOURCE}) in {DEST}: 1 held, newest "
        f"{image_name(B, NOW.replace(minute=0) - timedelta(hours=5))} is 5h30m old "
        "(policy 'web' copies one every 1h, stale after 2h)"
    )


def test_an_instance_without_any_copy_is_stale_and_no_sources_means_no_copy_check() -> None:
    dest = Inventory(DEST, 10, (managed(DEST, A, 0, "ca0"),), ())
    health = assess_region(dest, [COPYING], NOW, sources={SOURCE: source()})
    [missing] = health.stale_copies
    assert missing.instance_id == B and missing.held == 0 and missing.newest_slot is None
    assert "no NORMAL copy" in missing.describe()
    assert assess_region(dest, [COPYING], NOW).copies == ()  # sources unknown: not assessed
    # The source region itself holds no copies of its own instances.
    assert assess_region(source(), [COPYING], NOW, sources={SOURCE: source()}).copies == ()
