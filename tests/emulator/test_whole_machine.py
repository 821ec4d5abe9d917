"""The emulator's whole-machine images, driven by the official SDK over HTTP (issue #15).

Data disks in the fleet, ``DataDisks`` in ``DescribeInstances``, ``DataDiskIds`` checked
with the codes of CreateImage's documented error list, ``SnapshotSet`` per disk, snapshots
that go with ``DeleteBindedSnap`` and stay without it, imaging time per GiB, the
``whole_machine`` switches, attach/detach at runtime, and the state file.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.cvm.v20170312 import models

from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import ApiError, EmulatorCore
from cvmkeeper.emulator.fleet import FleetError, FleetSpec
from cvmkeeper.emulator.server import RunningEmulator
from emulator.sdk import GZ, SH, base_fleet, create, error_code, request, sdk_client

DB = "ins-db000001"
DISKS = [
    {"id": "disk-dbdata01", "type": "CLOUD_PREMIUM", "size": 200},
    {"id": "disk-dblogs01", "type": "CLOUD_HSSD", "size": 50},
    {"id": "disk-scratch1", "type": "LOCAL_NVME", "size": 300},
]


def whole_fleet(**overrides: Any) -> dict[str, Any]:
    fleet = base_fleet(**overrides)
    fleet["regions"][GZ]["instances"].append({"id": DB, "name": "db-1", "data_disks": DISKS})
    return fleet


def wait_normal(emu: RunningEmulator, image_id: str, region: str = GZ) -> Any:
    client = sdk_client(emu, region)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = client.DescribeImages(request(models.DescribeImagesRequest, ImageIds=[image_id]))
        if found.ImageSet and found.ImageSet[0].ImageState == "NORMAL":
            return found.ImageSet[0]
        time.sleep(0.05)
    raise AssertionError(f"{image_id} did not become NORMAL")


def post_disks(emu: RunningEmulator, body: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(  # noqa: S310 - loopback http
        f"{emu.url}/_emulator/disks",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **emu.control_headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_describe_instances_shows_typed_sized_data_disks(serve: Callable[..., Any]) -> None:
    emu = serve(whole_fleet())
    client = sdk_client(emu)
    found = client.DescribeInstances(request(models.DescribeInstancesRequest, InstanceIds=[DB]))
    [instance] = found.InstanceSet
    assert [(d.DiskId, d.DiskType, d.DiskSize) for d in instance.DataDisks] == [
        ("disk-dbdata01", "CLOUD_PREMIUM", 200),
        ("disk-dblogs01", "CLOUD_HSSD", 50),
        ("disk-scratch1", "LOCAL_NVME", 300),
    ]
    assert instance.SystemDisk.DiskId.startswith("disk-")


def test_create_image_checks_data_disk_ids_with_the_documented_codes(
    serve: Callable[..., Any],
) -> None:
    emu = serve(whole_fleet())
    client = sdk_client(emu)
    system = (
        client.DescribeInstances(request(models.DescribeInstancesRequest, InstanceIds=[DB]))
        .InstanceSet[0]
        .SystemDisk.DiskId
    )

    def code(*disks: str) -> str:
        return error_code(lambda: create(client, DB, "whole", DataDiskIds=list(disks)))

    assert code("disk-data0001") == "InvalidParameter.DataDiskNotBelongSpecifiedInstance"
    assert code("disk-dbdata01", "disk-scratch1") == "InvalidParameter.LocalDataDiskNotSupport"
    assert code(system) == "InvalidParameter.DataDiskIdContainsRootDisk"
    image_id = create(client, DB, "whole", DataDiskIds=["disk-dbdata01", "disk-dblogs01"])
    image = wait_normal(emu, image_id)
    assert [(s.DiskUsage, s.DiskSize) for s in image.SnapshotSet] == [
        ("SYSTEM_DISK", 50),
        ("DATA_DISK", 200),
        ("DATA_DISK", 50),
    ]
    assert all(s.SnapshotId.startswith("snap-") for s in image.SnapshotSet)
    assert image.ImageSize == 300


def test_snapshots_go_with_delete_binded_snap_and_stay_without(serve: Callable[..., Any]) -> None:
    emu = serve(whole_fleet())
    client = sdk_client(emu)
    kept = create(client, DB, "kept", DataDiskIds=["disk-dbdata01"])
    wait_normal(emu, kept)
    gone = create(client, DB, "gone", DataDiskIds=["disk-dbdata01"])
    wait_normal(emu, gone)
    client.DeleteImages(request(models.DeleteImagesRequest, ImageIds=[gone], DeleteBindedSnap=True))
    assert emu.core.state()["regions"][GZ]["leftover_snapshots"] == []
    client.DeleteImages(request(models.DeleteImagesRequest, ImageIds=[kept]))  # API default
    leftover = emu.core.state()["regions"][GZ]["leftover_snapshots"]
    assert len(leftover) == 2  # system + data snapshot, still billed


def test_imaging_time_grows_with_the_disks_size() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    fleet = whole_fleet()
    fleet["timing"] = {"create_seconds": 10, "create_seconds_per_100gib": 60}
    core = EmulatorCore(FleetSpec.from_mapping(fleet), clock)
    image_id = core.call(
        "CreateImage", GZ, {"InstanceId": DB, "ImageName": "big", "DataDiskIds": ["disk-dbdata01"]}
    )["ImageId"]
    clock.advance(10 + 60 * 2.5 - 1)  # 250 GiB: 160 s in all
    assert core.state()["regions"][GZ]["images"][0]["ImageState"] == "CREATING"
    clock.advance(1)
    images = {i["ImageId"]: i for i in core.state()["regions"][GZ]["images"]}
    assert images[image_id]["ImageState"] == "NORMAL"


def test_sync_of_a_whole_machine_image_under_both_answers(serve: Callable[..., Any]) -> None:
    for answer, expected in (
        ("allowed", None),
        ("refused", "InvalidParameter.InstanceImageNotSupport"),
    ):
        emu = serve(whole_fleet(whole_machine={"sync": answer}))
        client = sdk_client(emu)
        whole = create(client, DB, "whole", DataDiskIds=["disk-dbdata01"])
        system_only = create(client, "ins-6pb6lrmy", "system")
        wait_normal(emu, whole)
        wait_normal(emu, system_only)

        def sync(image_id: str, client: Any = client) -> Any:
            return client.SyncImages(
                request(
                    models.SyncImagesRequest,
                    ImageIds=[image_id],
                    DestinationRegions=[SH],
                    ImageSetRequired=True,
                )
            )

        if expected is None:
            copy_id = sync(whole).ImageSet[0].ImageId
            copied = wait_normal(emu, copy_id, SH)
            assert [s.DiskUsage for s in copied.SnapshotSet] == ["SYSTEM_DISK", "DATA_DISK"]
        else:
            assert error_code(lambda image_id=whole: sync(image_id)) == expected
        assert sync(system_only).ImageSet  # a system-disk image is always copied


def test_sync_size_limit_and_snapshot_quota_switches() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    fleet = whole_fleet(whole_machine={"sync_max_gib": 100, "snapshot_quota_per_disk": 2})
    core = EmulatorCore(FleetSpec.from_mapping(fleet), clock)

    def make(name: str) -> str:
        result = core.call(
            "CreateImage",
            GZ,
            {"InstanceId": DB, "ImageName": name, "DataDiskIds": ["disk-dbdata01"]},
        )
        clock.advance(timedelta(seconds=5).total_seconds())
        return str(result["ImageId"])

    first = make("one")
    with pytest.raises(ApiError) as too_large:
        core.call("SyncImages", GZ, {"ImageIds": [first], "DestinationRegions": [SH]})
    assert too_large.value.code == "InvalidImageId.TooLarge"  # 250 GiB > 100
    make("two")
    with pytest.raises(ApiError) as quota:
        make("three")
    assert quota.value.code == "LimitExceeded.SnapshotQuota"
    core.call("DeleteImages", GZ, {"ImageIds": [first], "DeleteBindedSnap": True})
    make("three")  # deleting the image with its snapshots made room


def test_disks_attach_and_detach_at_runtime(serve: Callable[..., Any]) -> None:
    emu = serve(whole_fleet())
    status, body = post_disks(emu, {"instance_id": DB, "detach": "disk-scratch1"})
    assert status == 200
    assert [d["DiskId"] for d in body["DataDisks"]] == ["disk-dbdata01", "disk-dblogs01"]
    status, body = post_disks(
        emu, {"instance_id": DB, "attach": {"id": "disk-new00001", "type": "CLOUD_SSD", "size": 20}}
    )
    assert status == 200 and body["DataDisks"][-1]["DiskSize"] == 20
    client = sdk_client(emu)
    image_id = create(client, DB, "after", DataDiskIds=["disk-new00001"])
    assert [s.DiskSize for s in wait_normal(emu, image_id).SnapshotSet] == [50, 20]
    for bad in (
        {"instance_id": DB, "detach": "disk-scratch1"},  # not attached any more
        {"instance_id": DB, "attach": {"id": "disk-new00001"}},  # attached already
        {"instance_id": DB, "attach": {"id": "x"}},
        {"instance_id": DB, "attach": {"id": "disk-a", "type": "FLOPPY"}},
        {"instance_id": "ins-nothere", "detach": "disk-a"},
        {"instance_id": DB},
        [1, 2],
    ):
        status, body = post_disks(emu, bad)
        assert status == 400 and body["error"], bad


def test_fleet_disk_mistakes_name_the_key() -> None:
    def problem(disks: Any) -> str:
        fleet = base_fleet()
        fleet["regions"][GZ]["instances"] = [{"id": DB, "data_disks": disks}]
        fleet.pop("whole_machine", None)
        with pytest.raises(FleetError) as info:
            FleetSpec.from_mapping(fleet, origin="fleet.yaml")
        return str(info.value)

    assert "data_disks[0].type: must be one of" in problem([{"id": "disk-a", "type": "SAS"}])
    assert "data_disks[0].id: is required" in problem([{"size": 10}])
    assert "data_disks[0].size" in problem([{"id": "disk-a", "size": 0}])
    assert "listed twice" in problem([{"id": "disk-a"}, {"id": "disk-a"}])
    with pytest.raises(FleetError, match=r"whole_machine\.sync: must be one of"):
        FleetSpec.from_mapping(base_fleet(whole_machine={"sync": "maybe"}))


def test_the_state_file_keeps_disks_and_snapshots(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    spec = FleetSpec.from_mapping(whole_fleet())
    core = EmulatorCore(spec, clock)
    image_id = core.call(
        "CreateImage",
        GZ,
        {"InstanceId": DB, "ImageName": "saved", "DataDiskIds": ["disk-dblogs01"]},
    )["ImageId"]
    clock.advance(5)
    core.call("DeleteImages", GZ, {"ImageIds": [image_id]})
    core.save(tmp_path / "state.json")
    loaded = EmulatorCore.load(tmp_path / "state.json", clock, spec)
    before, after = core.state()["regions"][GZ], loaded.state()["regions"][GZ]
    assert after["instances"] == before["instances"]
    assert after["leftover_snapshots"] == before["leftover_snapshots"]
    assert len(after["leftover_snapshots"]) == 2
