"""Which disks an image holds, and the rule-10 warnings (``core.disks``, ``core.disk_report``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cvmkeeper.core.disk_report import disk_warnings
from cvmkeeper.core.disks import (
    SNAPSHOTS_PER_DISK,
    TAG_DISKS,
    TAG_VALUE_LIMIT,
    Disk,
    DiskMode,
    DiskSelection,
    ImageSnapshot,
    asked_disk_count,
    asked_disk_ids,
    choose_disks,
    describe_snapshots,
    shortfall,
    sync_refusal_hint,
)
from cvmkeeper.core.inventory import Image, ImageState, Instance, Inventory
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.core.ownership import split_images
from cvmkeeper.core.plan import PlanWarning, WarningKind
from cvmkeeper.core.policy import Policy
from support import builders

SYSTEM = Disk("disk-system01", "CLOUD_PREMIUM", 50)
DATA = Disk("disk-data0001", "CLOUD_PREMIUM", 200)
LOGS = Disk("disk-logs0001", "CLOUD_SSD", 50)
LOCAL = Disk("disk-local001", "LOCAL_SSD", 100)
ALL = DiskSelection()
SYSTEM_ONLY = DiskSelection(DiskMode.SYSTEM)
A = "ins-aaaaaaaa"
T0 = datetime(2026, 11, 27, tzinfo=UTC)


def ids(*selections: DiskSelection, disks: tuple[Disk, ...] = (DATA, LOGS, LOCAL)) -> tuple:
    choice = choose_disks(SYSTEM, disks, selections)
    return choice.data_disk_ids, tuple(left.disk_id for left in choice.left_out)


def test_all_is_every_cloud_disk_and_names_the_local_one() -> None:
    assert ids(ALL) == (("disk-data0001", "disk-logs0001"), ("disk-local001",))
    [left] = choose_disks(SYSTEM, (DATA, LOCAL), [ALL]).left_out
    assert "LOCAL_SSD" in left.reason and "InvalidParameter.LocalDataDiskNotSupport" in left.reason


def test_system_only_asks_for_no_data_disk_and_reports_nothing() -> None:
    assert ids(SYSTEM_ONLY) == ((), ())


def test_include_and_exclude() -> None:
    assert ids(DiskSelection(DiskMode.INCLUDE, ("disk-logs0001",))) == (("disk-logs0001",), ())
    assert ids(DiskSelection(DiskMode.EXCLUDE, ("disk-logs0001", "disk-local001"))) == (
        ("disk-data0001",),
        (),
    )
    # a listed disk that is not attached, or the system disk, is reported, not sent
    missing = DiskSelection(DiskMode.INCLUDE, ("disk-gone0001", "disk-system01", "disk-local001"))
    assert ids(missing) == ((), ("disk-gone0001", "disk-system01", "disk-local001"))


def test_several_policies_get_the_union_in_the_instances_order() -> None:
    logs_only = DiskSelection(DiskMode.INCLUDE, ("disk-logs0001",))
    data_only = DiskSelection(DiskMode.INCLUDE, ("disk-data0001",))
    assert ids(logs_only, data_only) == (("disk-data0001", "disk-logs0001"), ())
    assert ids(SYSTEM_ONLY, logs_only) == (("disk-logs0001",), ())
    assert ids(SYSTEM_ONLY, ALL) == (("disk-data0001", "disk-logs0001"), ("disk-local001",))


def test_the_tag_records_ids_or_only_their_count() -> None:
    few = choose_disks(SYSTEM, (DATA, LOGS), [ALL])
    assert few.tag_value == "disk-data0001+disk-logs0001"
    assert asked_disk_count({TAG_DISKS: few.tag_value}) == 2
    assert asked_disk_ids({TAG_DISKS: few.tag_value}) == ("disk-data0001", "disk-logs0001")
    many = tuple(Disk(f"disk-{n:08d}", "CLOUD_SSD", 10) for n in range(20))
    long_choice = choose_disks(SYSTEM, many, [ALL])
    assert len(",".join(long_choice.data_disk_ids)) > TAG_VALUE_LIMIT
    assert long_choice.tag_value == "20"
    assert asked_disk_count({TAG_DISKS: "20"}) == 20 and asked_disk_ids({TAG_DISKS: "20"}) == ()
    assert asked_disk_count({}) is None and asked_disk_count({TAG_DISKS: ""}) == 0
    # no data disk: "0", never an empty value (Tencent's tag rules refuse one)
    none = choose_disks(SYSTEM, (), [ALL])
    assert none.tag_value == "0" and asked_disk_count({TAG_DISKS: "0"}) == 0
    assert asked_disk_ids({TAG_DISKS: "0"}) == ()
    assert asked_disk_ids({TAG_DISKS: "disk-a,disk-b"}) == ("disk-a", "disk-b")  # by hand
    # only what Tencent's tag values allow: letters, digits, spaces and +-=._:/@
    assert set(few.tag_value) <= set("abcdefghijklmnopqrstuvwxyz0123456789 +-=._:/@")


def test_shortfall_compares_the_tag_with_the_snapshot_set() -> None:
    tags = {TAG_DISKS: "disk-data0001+disk-logs0001"}
    full = (
        ImageSnapshot("snap-1", "SYSTEM_DISK", 50),
        ImageSnapshot("snap-2", "DATA_DISK", 200),
        ImageSnapshot("snap-3", "DATA_DISK", 50),
    )
    assert shortfall(tags, full) is None
    assert shortfall(tags, full[:2]) == (2, 1)
    assert shortfall(tags, ()) is None  # no SnapshotSet reported: cannot judge
    assert shortfall({}, full[:1]) is None  # made before the tag existed
    assert describe_snapshots(full) == "system 50G + data 200G + data 50G"
    assert describe_snapshots(()) == "?"


def test_sync_refusals_say_why() -> None:
    assert "disks: system" in sync_refusal_hint("InvalidParameter.InstanceImageNotSupport")
    assert "larger" in sync_refusal_hint("InvalidImageId.TooLarge")
    assert sync_refusal_hint("InternalError") == ""


def make_policy(name: str = "db", disks: DiskSelection = ALL) -> Policy:
    """A policy of instance A keeping 3 (``support.builders.policy``)."""
    return builders.policy(name, ids=(A,), keep_last=3, disks=disks)


def managed_image(
    hour: int, tags: dict[str, str] | None = None, snapshots: tuple[ImageSnapshot, ...] = ()
) -> Image:
    slot = T0 + timedelta(hours=hour)
    return Image(
        image_id=f"img-{hour:08d}",
        name=image_name(A, slot),
        state=ImageState.NORMAL,
        created_time=slot,
        region="ap-guangzhou",
        description=image_description(("db",), slot),
        tags={**image_tags(("db",), A, slot), **(tags or {})},
        snapshots=snapshots,
    )


def notices_for(
    instance: Instance, images: tuple[Image, ...], *policies: Policy
) -> list[PlanWarning]:
    inventory = Inventory("ap-guangzhou", 10, images, (instance,))
    managed, _ = split_images(images)
    return disk_warnings(inventory, {A: policies}, managed)


def warnings_for(instance: Instance, images: tuple[Image, ...], *policies: Policy) -> list[str]:
    return [notice.message for notice in notices_for(instance, images, *policies)]


def test_warnings_name_the_policy_instance_and_disk() -> None:
    instance = Instance(
        A, "db-1", "RUNNING", "ap-guangzhou", system_disk=SYSTEM, data_disks=(DATA, LOCAL)
    )
    [notice] = notices_for(instance, (), make_policy())
    assert notice.message.startswith("policy 'db': instance ins-aaaaaaaa: disk disk-local001")
    assert (notice.kind, notice.policies, notice.instance_id) == (WarningKind.DISKS, ("db",), A)
    assert warnings_for(instance, (), make_policy(disks=SYSTEM_ONLY)) == []
    [both] = notices_for(instance, (), make_policy("a"), make_policy("b"))
    assert both.message.startswith("policies 'a', 'b':")
    assert both.policies == ("a", "b")


def test_an_image_with_fewer_disks_than_asked_is_warned_about() -> None:
    instance = Instance(
        A, "db-1", "RUNNING", "ap-guangzhou", system_disk=SYSTEM, data_disks=(DATA,)
    )
    system_only = (ImageSnapshot("snap-1", "SYSTEM_DISK", 50),)
    short = managed_image(1, {TAG_DISKS: "disk-data0001"}, system_only)
    whole = managed_image(
        2, {TAG_DISKS: "disk-data0001"}, (*system_only, ImageSnapshot("snap-2", "DATA_DISK", 200))
    )
    [notice] = notices_for(instance, (short, whole), make_policy())
    assert short.name in notice.message and "holds 0 of the 1 data disks" in notice.message
    assert (notice.kind, notice.instance_id) == (WarningKind.DISKS, A)
    # still being made: its SnapshotSet is not final, no warning yet
    creating = replace(short, state=ImageState.CREATING)
    assert warnings_for(instance, (creating, whole), make_policy()) == []


@pytest.mark.parametrize(
    ("count", "warned"), [(SNAPSHOTS_PER_DISK - 1, False), (SNAPSHOTS_PER_DISK, True)]
)
def test_the_documented_snapshot_quota_is_warned_before_it_is_reached(
    count: int, warned: bool
) -> None:
    instance = Instance(A, "db-1", "RUNNING", "ap-guangzhou", system_disk=SYSTEM)
    images = tuple(managed_image(h) for h in range(count))  # the next image would be one more
    found = [m for m in warnings_for(instance, images, make_policy()) if "per disk" in m]
    assert bool(found) is warned
