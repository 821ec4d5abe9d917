"""Parsing API answers into core values, and building request bodies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cvmkeeper.cloud.models import (
    CreateImageRequest,
    ResponseFormatError,
    image_from_api,
    instance_from_api,
    parse_created_time,
)
from cvmkeeper.core.inventory import ImageState


@pytest.mark.parametrize(
    "raw",
    [
        "2026-11-27T03:00:05Z",
        "2026-11-27T03:00:05+00:00",
        "2026-11-27T11:00:05+08:00",
        "2026-11-27 03:00:05",
    ],
)
def test_created_time_in_every_format_is_aware_utc(raw: str) -> None:
    parsed = parse_created_time(raw)
    assert parsed == datetime(2026, 11, 27, 3, 0, 5, tzinfo=UTC)
    assert parsed.utcoffset() is not None and parsed.tzinfo is UTC


def test_bad_created_time_is_an_error() -> None:
    with pytest.raises(ResponseFormatError, match="not-a-time"):
        parse_created_time("not-a-time")


def test_image_from_api() -> None:
    image = image_from_api(
        {
            "ImageId": "img-1",
            "ImageName": "n",
            "ImageState": "SOMETHING_NEW",
            "CreatedTime": "2026-01-01T00:00:00Z",
            "ImageType": "PRIVATE_IMAGE",
            "Tags": [{"Key": "cvmkeeper:pin", "Value": "true"}],
            "SnapshotSet": [{"SnapshotId": "snap-1"}],
        },
        "ap-guangzhou",
    )
    assert image.state is ImageState.UNKNOWN  # unknown states are never deletable
    assert dict(image.tags) == {"cvmkeeper:pin": "true"}
    assert image.snapshot_ids == ("snap-1",)
    with pytest.raises(TypeError):
        image.tags["x"] = "y"  # type: ignore[index]


def test_image_without_id_or_with_a_bad_time_is_an_error() -> None:
    with pytest.raises(ResponseFormatError, match="ImageId"):
        image_from_api({"CreatedTime": "2026-01-01T00:00:00Z"}, "r")
    with pytest.raises(ResponseFormatError, match="CreatedTime"):
        image_from_api({"ImageId": "img-1", "CreatedTime": "yesterday"}, "r")
    # a null time is allowed by the SDK model (issue #18): unknown, not an error
    assert image_from_api({"ImageId": "img-1"}, "r").created_time is None


def test_create_request_body() -> None:
    body = CreateImageRequest("n", "ins-1", "d", {"k": "v"}, True, ("disk-1",), True).to_params()
    assert body == {
        "ImageName": "n",
        "InstanceId": "ins-1",
        "ImageDescription": "d",
        "ForcePoweroff": "true",
        "DataDiskIds": ["disk-1"],
        "DryRun": True,
        "TagSpecification": [{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}],
    }
    assert CreateImageRequest("n", "ins-1").to_params()["ForcePoweroff"] == "false"


def test_snapshot_set_and_data_disks_are_read_leniently() -> None:
    image = image_from_api(
        {
            "ImageId": "img-1",
            "CreatedTime": "2026-01-01T00:00:00Z",
            "SnapshotSet": [
                {"SnapshotId": "snap-1", "DiskUsage": "SYSTEM_DISK", "DiskSize": 50},
                {"SnapshotId": "snap-2", "DiskUsage": "DATA_DISK", "DiskSize": None},
                {"DiskUsage": "DATA_DISK"},
            ],
        },
        "ap-guangzhou",
    )
    assert [(s.snapshot_id, s.usage, s.size_gib) for s in image.snapshots] == [
        ("snap-1", "SYSTEM_DISK", 50),
        ("snap-2", "DATA_DISK", 0),
    ]
    instance = instance_from_api(
        {
            "InstanceId": "ins-1",
            "SystemDisk": {"DiskId": "disk-s", "DiskType": "CLOUD_SSD", "DiskSize": 50},
            "DataDisks": [
                {"DiskId": "disk-a", "DiskType": "LOCAL_SSD", "DiskSize": "100"},
                {"DiskType": "CLOUD_SSD"},
                None,
            ],
        },
        "ap-guangzhou",
    )
    assert instance.system_disk is not None and instance.system_disk.disk_id == "disk-s"
    [disk] = instance.data_disks
    assert (disk.disk_id, disk.local, disk.size_gib) == ("disk-a", True, 100)
    bare = instance_from_api({"InstanceId": "ins-2", "DataDisks": None}, "ap-guangzhou")
    assert bare.system_disk is None and bare.data_disks == ()
