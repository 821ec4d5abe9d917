"""The pure restore decisions: the restore point, the placement of a new instance, what an
in-place restore takes, and the drill lease rules. Table-driven, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cvmkeeper.core.disks import ImageSnapshot
from cvmkeeper.core.drill import (
    DRILL_TAG,
    LEASE_TAG,
    DrillSpec,
    drill_due,
    expired,
    lease_value,
    may_terminate,
    pick_instances,
)
from cvmkeeper.core.inventory import Image, ImageState
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.core.restore import (
    RESTORED_FROM_TAG,
    Placement,
    RestoreRefused,
    choose_restore_point,
    plan_in_place,
    plan_launch,
)

A, B = "ins-aaaaaaaa", "ins-bbbbbbbb"
R = "ap-guangzhou"
T0 = datetime(2026, 11, 27, tzinfo=UTC)


def image(instance: str, hours: int, image_id: str, state: str = "NORMAL", data: int = 0) -> Image:
    slot = T0 + timedelta(hours=hours)
    snapshots = (
        ImageSnapshot(f"snap-{image_id[4:]}s", "SYSTEM_DISK", 50),
        *(ImageSnapshot(f"snap-{image_id[4:]}{n}", "DATA_DISK", 100) for n in range(data)),
    )
    return Image(
        image_id,
        image_name(instance, slot),
        ImageState(state),
        slot,
        R,
        image_description(("p",), slot),
        "PRIVATE_IMAGE",
        image_tags(("p",), instance, slot),
        snapshots=snapshots,
    )


IMAGES = (
    image(A, 0, "img-a0"),
    image(A, 1, "img-a1", data=1),
    image(A, 2, "img-a2", "CREATING"),
    image(B, 3, "img-b3"),
    Image("img-hand", "golden", ImageState.NORMAL, T0, R),
)


@pytest.mark.parametrize(
    ("kwargs", "chosen", "reason"),
    [
        ({}, "img-a1", "newest NORMAL image"),
        ({"image_id": "img-a0"}, "img-a0", "--image img-a0"),
        ({"slot": T0}, "img-a0", "--slot 2026-11-27T00:00Z"),
        ({"as_of": T0 + timedelta(minutes=59)}, "img-a0", "newest NORMAL image made at or before"),
        ({"as_of": T0 + timedelta(hours=9)}, "img-a1", "newest NORMAL image made at or before"),
    ],
)
def test_the_restore_point(kwargs: dict[str, object], chosen: str, reason: str) -> None:
    point = choose_restore_point(IMAGES, A, R, **kwargs)  # type: ignore[arg-type]
    assert point.image_id == chosen and point.reason.startswith(reason)


def test_images_made_in_the_same_second_are_ordered_by_slot() -> None:
    """CreatedTime has one-second resolution: two slots made back to back (a catch-up, the
    demo's hour-by-hour runs) can share it. The newest is then the later slot, as ``images``
    and the rotation say, never the one whose id happens to sort last."""
    made = T0 + timedelta(days=1)
    older = replace(image(A, 1, "img-zzolder"), created_time=made)
    newer = replace(image(A, 2, "img-aanewer"), created_time=made)
    for images in ((older, newer), (newer, older)):
        assert choose_restore_point(images, A, R).image_id == "img-aanewer"
        assert choose_restore_point(images, A, R, as_of=made).image_id == "img-aanewer"


@pytest.mark.parametrize(
    ("instance", "kwargs", "message"),
    [
        (A, {"image_id": "img-hand"}, "was not made by cvmkeeper"),
        (A, {"image_id": "img-b3"}, f"is a backup of {B}, not of {A}"),
        (A, {"image_id": "img-a2"}, "is CREATING; only a NORMAL image"),
        (A, {"image_id": "img-zz"}, "does not exist in ap-guangzhou"),
        (A, {"slot": T0 - timedelta(hours=1)}, "has no image of slot"),
        (A, {"as_of": T0 - timedelta(hours=1)}, "has no NORMAL image made at or before"),
        ("ins-cccccccc", {}, "cvmkeeper has made no image of it there"),
    ],
)
def test_refusals_say_why(instance: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RestoreRefused, match=message):
        choose_restore_point(IMAGES, instance, R, **kwargs)  # type: ignore[arg-type]


SOURCE = Placement(f"{R}-3", "S5.LARGE8", "vpc-1", "subnet-1", ("sg-1",))


def test_a_new_instance_is_placed_like_its_source_unless_overridden() -> None:
    point = choose_restore_point(IMAGES, A, R)
    plan = plan_launch(R, point, SOURCE, Placement(instance_type="S5.SMALL2"))
    assert plan.placement == Placement(f"{R}-3", "S5.SMALL2", "vpc-1", "subnet-1", ("sg-1",))
    assert "instance_type S5.SMALL2 (--instance-type)" in plan.reasons
    assert f"zone {R}-3 (the source instance's)" in plan.reasons
    assert plan.data_disks == (("snap-a10", 100),)
    assert plan.tags == {RESTORED_FROM_TAG: "img-a1"}


def test_a_gone_source_needs_its_placement_given() -> None:
    point = choose_restore_point(IMAGES, A, R)
    with pytest.raises(RestoreRefused, match="no longer exists; give --zone, --instance-type"):
        plan_launch(R, point, None, Placement(subnet_id="subnet-1"))
    with pytest.raises(RestoreRefused, match="zone ap-shanghai-2 is not in region"):
        plan_launch(R, point, SOURCE, Placement(zone="ap-shanghai-2"))


def test_in_place_steps_and_refusals() -> None:
    whole = choose_restore_point(IMAGES, A, R)  # holds a data disk
    system = choose_restore_point(IMAGES, A, R, image_id="img-a0")
    running = plan_in_place(A, "RUNNING", system, system_disk_only=False)
    assert running.stop_first and running.steps[-1] == f"start {A} again"
    stopped = plan_in_place(A, "STOPPED", system, system_disk_only=False)
    assert not stopped.stop_first and stopped.steps[-1].startswith(f"leave {A} stopped")
    with pytest.raises(RestoreRefused, match="holds 1 data disk snapshot"):
        plan_in_place(A, "RUNNING", whole, system_disk_only=False)
    accepted = plan_in_place(A, "RUNNING", whole, system_disk_only=True)
    assert "NOT rolled back" in accepted.warnings[0]
    with pytest.raises(RestoreRefused, match="needs it RUNNING or STOPPED"):
        plan_in_place(A, "STOPPING", system, system_disk_only=False)


NOW = T0 + timedelta(days=1)


LAUNCHED = NOW - timedelta(minutes=30)
EXPIRED = {DRILL_TAG: "p", LEASE_TAG: lease_value(NOW - timedelta(seconds=1))}


@pytest.mark.parametrize(
    ("tags", "created", "allowed", "why"),
    [
        (EXPIRED, LAUNCHED, True, "expired"),
        (
            {DRILL_TAG: "p", LEASE_TAG: lease_value(NOW + timedelta(minutes=5))},
            LAUNCHED,
            False,
            "runs until",
        ),
        ({DRILL_TAG: "p", LEASE_TAG: "tomorrow"}, LAUNCHED, False, "does not parse"),
        ({DRILL_TAG: "p"}, LAUNCHED, False, "without a lease"),
        (
            {LEASE_TAG: lease_value(NOW - timedelta(days=9))},
            LAUNCHED,
            False,
            "not a drill instance",
        ),
        ({}, LAUNCHED, False, "not a drill instance"),
        # the drill tags copied onto an instance made after the lease ended ("create
        # similar" in the console, a tag policy): not a drill's, never terminated
        (EXPIRED, NOW - timedelta(seconds=0), False, "its tags were copied"),
        (EXPIRED, None, False, "no CreatedTime"),
    ],
)
def test_only_an_expired_drill_instance_may_be_terminated(
    tags: dict[str, str], created: datetime | None, allowed: bool, why: str
) -> None:
    verdict, reason = may_terminate(tags, NOW, created)
    assert verdict is allowed and why in reason
    assert expired([("ins-x", tags, created)], NOW) == (["ins-x"] if allowed else [])


def test_drills_are_due_by_period_and_walk_the_fleet() -> None:
    spec = DrillSpec(timedelta(days=7), f"{R}-3", "subnet-1", "vpc-1", ("sg-1",), "S5.SMALL2")
    assert drill_due(None, spec, NOW)
    assert not drill_due(NOW - timedelta(days=6), spec, NOW)
    assert drill_due(NOW - timedelta(days=7), spec, NOW)
    assert spec.lease == timedelta(minutes=25)
    last = {A: NOW - timedelta(days=1), B: NOW - timedelta(days=8)}
    assert pick_instances([A, B, "ins-cccccccc"], last, 2) == ["ins-cccccccc", B]
    assert pick_instances([A], last, 0) == []


def test_a_restore_short_of_data_disks_is_warned_before_the_launch() -> None:
    """Fewer data disk snapshots than ``cvmkeeper:disks`` asked, or no ``SnapshotSet`` at
    all (the cloud left it out): the plan warns; an image holding all asked is quiet."""
    full = image(A, 1, "img-full", data=1)
    full = replace(full, tags={**full.tags, "cvmkeeper:disks": "disk-one"})
    short = replace(full, image_id="img-short", snapshots=full.snapshots[:1])
    unreported = replace(full, image_id="img-unrep", snapshots=())
    warnings = {
        i.image_id: plan_launch(R, choose_restore_point((i,), A, R), SOURCE, Placement()).warnings
        for i in (full, short, unreported)
    }
    assert warnings["img-full"] == ()
    assert (
        "img-short holds 0 of the 1 data disk(s) asked for (disk-one)" in warnings["img-short"][0]
    )
    assert "did not report the SnapshotSet of img-unrep" in warnings["img-unrep"][0]
