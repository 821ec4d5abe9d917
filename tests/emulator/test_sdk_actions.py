"""Every action through the real Tencent SDK over HTTP, with the rules of the seed's doc."""

from __future__ import annotations

import time
from typing import Any

from tencentcloud.cvm.v20170312 import models

from cvmkeeper.emulator.server import RunningEmulator
from emulator.sdk import GZ, SH, base_fleet, create, error_code, request, sdk_client


def wait_for_image_state(
    emu: RunningEmulator, image_id: str, wanted: str, region: str = GZ
) -> models.Image:
    """Poll DescribeImages (bounded: 5 s) until the image reaches ``wanted``."""
    client = sdk_client(emu, region)
    deadline = time.monotonic() + 5
    while True:
        image = client.DescribeImages(
            request(models.DescribeImagesRequest, ImageIds=[image_id])
        ).ImageSet[0]
        if image.ImageState == wanted or time.monotonic() > deadline:
            return image
        time.sleep(0.05)


def test_create_image_lifecycle_and_typed_fields(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    image_id = create(
        client,
        "ins-2kd9x0qa",
        "web-2-2026",
        ImageDescription="nightly",
        ForcePoweroff="false",
        DataDiskIds=["disk-data0001"],
        TagSpecification=[
            {"ResourceType": "image", "Tags": [{"Key": "cvmkeeper:policy", "Value": "p1"}]}
        ],
    )
    assert image_id.startswith("img-")
    fresh = client.DescribeImages(
        request(models.DescribeImagesRequest, ImageIds=[image_id])
    ).ImageSet[0]
    assert fresh.ImageState == "CREATING"
    image = wait_for_image_state(emu, image_id, "NORMAL")
    assert image.ImageState == "NORMAL"
    assert image.ImageName == "web-2-2026"
    assert image.ImageDescription == "nightly"
    assert image.ImageType == "PRIVATE_IMAGE"
    assert image.ImageSource == "CREATE_IMAGE"
    assert image.CreatedTime.endswith("Z")
    assert [(t.Key, t.Value) for t in image.Tags] == [("cvmkeeper:policy", "p1")]
    assert sorted(s.DiskUsage for s in image.SnapshotSet) == ["DATA_DISK", "SYSTEM_DISK"]
    assert all(s.SnapshotId.startswith("snap-") for s in image.SnapshotSet)


def test_describe_images_filters(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    create(
        client,
        "ins-6pb6lrmy",
        "cvmk-web-1",
        TagSpecification=[
            {"ResourceType": "image", "Tags": [{"Key": "cvmkeeper:instance", "Value": "web-1"}]}
        ],
    )

    def names(*filters: dict[str, Any]) -> list[str]:
        response = client.DescribeImages(
            request(models.DescribeImagesRequest, Filters=list(filters), Limit=100)
        )
        assert response.TotalCount == len(response.ImageSet)
        return sorted(i.ImageName for i in response.ImageSet)

    assert names() == ["TencentOS 3.1", "cvmk-web-1", "golden-base", "shared-base"]
    assert names({"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}) == [
        "cvmk-web-1",
        "golden-base",
        "shared-base",
    ]
    assert names({"Name": "image-name", "Values": ["base"]}) == ["golden-base", "shared-base"]
    assert names({"Name": "image-id", "Values": ["img-golden01"]}) == ["golden-base"]
    assert names({"Name": "tag-key", "Values": ["cvmkeeper:instance"]}) == ["cvmk-web-1"]
    assert names({"Name": "tag:cvmkeeper:instance", "Values": ["web-1"]}) == ["cvmk-web-1"]
    assert names({"Name": "tag:cvmkeeper:instance", "Values": ["web-9"]}) == []
    assert (
        error_code(
            lambda: client.DescribeImages(
                request(
                    models.DescribeImagesRequest, Filters=[{"Name": "color", "Values": ["red"]}]
                )
            )
        )
        == "InvalidFilter"
    )
    assert error_code(
        lambda: client.DescribeImages(
            request(
                models.DescribeImagesRequest,
                ImageIds=["img-golden01"],
                Filters=[{"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}],
            )
        )
    ).startswith("InvalidParameter")
    assert (
        error_code(lambda: client.DescribeImages(request(models.DescribeImagesRequest, Limit=101)))
        == "InvalidParameterValue.LimitExceeded"
    )


def test_paging_past_100_images_and_instances(serve: Any) -> None:
    instances = [
        {"id": f"ins-{n:08d}", "name": f"node-{n}", "tags": {"tier": str(n % 2)}}
        for n in range(130)
    ]
    images = [{"id": f"img-{n:08d}", "name": f"old-{n}"} for n in range(150)]
    fleet = base_fleet(regions={GZ: {"quota": 200, "instances": instances, "images": images}})
    emu = serve(fleet)
    client = sdk_client(emu)

    seen_images: list[str] = []
    for offset in range(0, 1000, 100):
        page = client.DescribeImages(
            request(models.DescribeImagesRequest, Offset=offset, Limit=100)
        )
        assert page.TotalCount == 150
        if not page.ImageSet:
            break
        seen_images += [i.ImageId for i in page.ImageSet]
    assert sorted(seen_images) == sorted(i["id"] for i in images)

    seen_instances: list[str] = []
    for offset in range(0, 1000, 100):
        inst_page = client.DescribeInstances(
            request(models.DescribeInstancesRequest, Offset=offset, Limit=100)
        )
        assert inst_page.TotalCount == 130
        if not inst_page.InstanceSet:
            break
        seen_instances += [i.InstanceId for i in inst_page.InstanceSet]
    assert seen_instances == [i["id"] for i in instances]

    default_page = client.DescribeInstances(models.DescribeInstancesRequest())
    assert len(default_page.InstanceSet) == 20  # Limit defaults to 20
    tier = client.DescribeInstances(
        request(
            models.DescribeInstancesRequest,
            Limit=100,
            Filters=[{"Name": "tag:tier", "Values": ["1"]}],
        )
    )
    assert tier.TotalCount == 65
    status = client.DescribeInstancesStatus(
        request(models.DescribeInstancesStatusRequest, Offset=100, Limit=100)
    )
    assert status.TotalCount == 130
    assert len(status.InstanceStatusSet) == 30


def test_describe_instances_fields_and_filters(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    response = client.DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceIds=["ins-6pb6lrmy"])
    )
    instance = response.InstanceSet[0]
    assert (instance.InstanceId, instance.InstanceName, instance.InstanceState) == (
        "ins-6pb6lrmy",
        "web-1",
        "RUNNING",
    )
    assert instance.Placement.Zone == "ap-guangzhou-3"
    assert [(t.Key, t.Value) for t in instance.Tags] == [("backup", "daily")]
    assert instance.CreatedTime.endswith("Z")

    def ids(name: str, *values: str) -> list[str]:
        found = client.DescribeInstances(
            request(
                models.DescribeInstancesRequest, Filters=[{"Name": name, "Values": list(values)}]
            )
        )
        return [i.InstanceId for i in found.InstanceSet]

    assert ids("instance-state", "STOPPED") == ["ins-stopped1"]
    assert ids("zone", "ap-guangzhou-4") == ["ins-2kd9x0qa"]
    assert ids("instance-name", "web") == ["ins-6pb6lrmy", "ins-2kd9x0qa"]
    assert ids("instance-id", "ins-2kd9x0qa") == ["ins-2kd9x0qa"]
    assert ids("tag-key", "backup") == ["ins-6pb6lrmy", "ins-2kd9x0qa"]
    assert ids("tag:backup", "hourly") == ["ins-2kd9x0qa"]
    assert (
        error_code(
            lambda: client.DescribeInstancesStatus(
                request(models.DescribeInstancesStatusRequest, InstanceIds=["ins-nothere"])
            )
        )
        == "InvalidInstanceId.NotFound"
    )


def test_create_image_errors(emu: RunningEmulator) -> None:
    client = sdk_client(emu)

    def code(**fields: Any) -> str:
        return error_code(lambda: client.CreateImage(request(models.CreateImageRequest, **fields)))

    assert code(InstanceId="ins-6pb6lrmy", ImageName="x" * 21) == "InvalidParameter.ValueTooLarge"
    assert (
        code(InstanceId="ins-6pb6lrmy", ImageName="ok", ImageDescription="d" * 61)
        == "InvalidParameter.ValueTooLarge"
    )
    assert code(InstanceId="ins-nothere", ImageName="ok") == "InvalidInstanceId.NotFound"
    assert code(InstanceId="ins-unsupp01", ImageName="ok") == "InvalidInstance.NotSupported"
    assert code(InstanceId="ins-6pb6lrmy", ImageName="golden-base") == "InvalidImageName.Duplicate"
    assert code(ImageName="ok") == "MissingParameter"
    assert (
        code(InstanceId="ins-6pb6lrmy", ImageName="ok", ForcePoweroff="yes")
        == "InvalidParameterValue"
    )
    assert code(InstanceId="ins-6pb6lrmy", ImageName="dry", DryRun=True) == "DryRunOperation"
    create(client, "ins-6pb6lrmy", "first")
    assert code(InstanceId="ins-6pb6lrmy", ImageName="second") == "MutexOperation.TaskRunning"
    assert code(InstanceId="ins-6pb6lrmy", ImageName="first") == "InvalidImageName.Duplicate"
    # 20 characters exactly is fine under the legacy limits
    assert create(client, "ins-2kd9x0qa", "y" * 20).startswith("img-")


def test_create_image_tags_follow_the_tag_services_rules(emu: RunningEmulator) -> None:
    """Tencent's tag rules (Tag "Use Limits", product/651/13354) hold for TagSpecification
    too: a value of 1-255 allowed characters. An empty value was once what cvmkeeper sent
    for ``cvmkeeper:disks`` on an instance without data disks; ``,`` and ``;`` are allowed
    (English-mode specials), ``#`` and a leading space are not."""
    client = sdk_client(emu)

    def code(value: str) -> str:
        spec = [{"ResourceType": "image", "Tags": [{"Key": "cvmkeeper:disks", "Value": value}]}]
        fields = {"InstanceId": "ins-6pb6lrmy", "ImageName": "tagged", "TagSpecification": spec}
        return error_code(lambda: client.CreateImage(request(models.CreateImageRequest, **fields)))

    assert code("") == "InvalidParameterValue.TagValueEmpty"
    assert code("a" * 256) == "InvalidParameterValue.TagValueLengthExceeded"
    assert code("web#1") == "InvalidParameterValue.TagValueCharacterIllegal"
    assert code(" web") == "InvalidParameterValue.TagValueCharacterIllegal"
    spec = [{"ResourceType": "image", "Tags": [{"Key": "cvmkeeper:policy", "Value": "a,b;c"}]}]
    assert create(client, "ins-6pb6lrmy", "tagged", TagSpecification=spec).startswith("img-")


def test_current_limits_allow_longer_names(serve: Any) -> None:
    emu = serve(base_fleet(limits="current"))
    client = sdk_client(emu)
    assert create(client, "ins-6pb6lrmy", "n" * 60, ImageDescription="d" * 256)
    assert (
        error_code(lambda: create(client, "ins-2kd9x0qa", "n" * 61))
        == "InvalidParameter.ValueTooLarge"
    )


def test_quota_counts_every_custom_image(serve: Any) -> None:
    fleet = base_fleet()
    fleet["regions"][GZ]["quota"] = 3  # two custom images exist; the public one does not count
    emu = serve(fleet)
    client = sdk_client(emu)
    quota = client.DescribeImageQuota(models.DescribeImageQuotaRequest())
    assert quota.ImageNumQuota == 3
    create(client, "ins-6pb6lrmy", "fits")  # CREATING counts too
    assert (
        error_code(lambda: create(client, "ins-2kd9x0qa", "too-many")) == "ImageQuotaLimitExceeded"
    )


def test_delete_images_rules(emu: RunningEmulator) -> None:
    client = sdk_client(emu)

    def delete(*ids: str, **extra: Any) -> Any:
        return client.DeleteImages(request(models.DeleteImagesRequest, ImageIds=list(ids), **extra))

    creating = create(client, "ins-6pb6lrmy", "in-flight")
    assert error_code(lambda: delete(creating)) == "InvalidImageId.IncorrectState"
    assert error_code(lambda: delete("img-shared01")) == "InvalidImageId.InShared"
    assert error_code(lambda: delete("img-nothere1")) == "InvalidImageId.NotFound"
    # all or nothing: one bad id keeps the good one
    assert error_code(lambda: delete("img-golden01", "img-nothere1")) == "InvalidImageId.NotFound"
    assert error_code(lambda: delete("img-golden01", DryRun=True)) == "DryRunOperation"
    assert delete("img-golden01", DeleteBindedSnap=True).RequestId
    wait_for_image_state(emu, creating, "NORMAL")
    delete(creating)  # without DeleteBindedSnap the snapshot stays behind
    state = emu.core.state()["regions"][GZ]
    assert {i["ImageId"] for i in state["images"]} == {"img-shared01", "img-public01"}
    assert len(state["leftover_snapshots"]) == 1


def test_stop_start_instances(emu: RunningEmulator) -> None:
    client = sdk_client(emu)

    def status() -> str:
        found = client.DescribeInstancesStatus(
            request(models.DescribeInstancesStatusRequest, InstanceIds=["ins-6pb6lrmy"])
        )
        return str(found.InstanceStatusSet[0].InstanceState)

    def wait_for(wanted: str) -> str:
        deadline = time.monotonic() + 5
        while status() != wanted and time.monotonic() < deadline:
            time.sleep(0.02)
        return status()

    client.StopInstances(
        request(models.StopInstancesRequest, InstanceIds=["ins-6pb6lrmy"], StopType="SOFT_FIRST")
    )
    assert status() == "STOPPING"
    assert (
        error_code(
            lambda: client.StartInstances(
                request(models.StartInstancesRequest, InstanceIds=["ins-6pb6lrmy"])
            )
        )
        == "OperationDenied.InstanceOperationInProgress"
    )
    assert wait_for("STOPPED") == "STOPPED"
    assert (
        error_code(
            lambda: client.StopInstances(
                request(models.StopInstancesRequest, InstanceIds=["ins-6pb6lrmy"])
            )
        )
        == "UnsupportedOperation.InstanceStateStopped"
    )
    client.StartInstances(request(models.StartInstancesRequest, InstanceIds=["ins-6pb6lrmy"]))
    assert wait_for("RUNNING") == "RUNNING"
    assert (
        error_code(
            lambda: client.StartInstances(
                request(models.StartInstancesRequest, InstanceIds=["ins-6pb6lrmy"])
            )
        )
        == "UnsupportedOperation.InstanceStateRunning"
    )
    assert (
        error_code(
            lambda: client.StopInstances(
                request(models.StopInstancesRequest, InstanceIds=["ins-nothere"])
            )
        )
        == "InvalidInstanceId.NotFound"
    )
    assert (
        error_code(
            lambda: client.StopInstances(
                request(
                    models.StopInstancesRequest, InstanceIds=["ins-6pb6lrmy"], StopType="GENTLE"
                )
            )
        )
        == "InvalidParameterValue"
    )
    latest = client.DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceIds=["ins-6pb6lrmy"])
    ).InstanceSet[0]
    assert (latest.LatestOperation, latest.LatestOperationState) == ("StartInstances", "SUCCESS")


def test_sync_images_copies_to_other_region(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    response = client.SyncImages(
        request(
            models.SyncImagesRequest,
            ImageIds=["img-golden01"],
            DestinationRegions=[SH],
            ImageSetRequired=True,
        )
    )
    [copy] = response.ImageSet
    assert copy.Region == SH
    source = client.DescribeImages(
        request(models.DescribeImagesRequest, ImageIds=["img-golden01"])
    ).ImageSet[0]
    assert source.ImageState == "SYNCING"
    assert (
        error_code(
            lambda: client.DeleteImages(
                request(models.DeleteImagesRequest, ImageIds=["img-golden01"])
            )
        )
        == "InvalidImageId.IncorrectState"
    )
    copied = wait_for_image_state(emu, copy.ImageId, "NORMAL", region=SH)
    assert copied.ImageName == "golden-base"
    assert wait_for_image_state(emu, "img-golden01", "NORMAL").ImageState == "NORMAL"
    assert (
        error_code(
            lambda: client.SyncImages(
                request(
                    models.SyncImagesRequest, ImageIds=["img-golden01"], DestinationRegions=[SH]
                )
            )
        )
        == "InvalidImageName.Duplicate"
    )
    assert (
        error_code(
            lambda: client.SyncImages(
                request(
                    models.SyncImagesRequest,
                    ImageIds=["img-golden01"],
                    DestinationRegions=["ap-nowhere"],
                )
            )
        )
        == "InvalidRegion.NotFound"
    )
    assert (
        error_code(
            lambda: client.SyncImages(
                request(
                    models.SyncImagesRequest, ImageIds=["img-nothere1"], DestinationRegions=[SH]
                )
            )
        )
        == "InvalidImageId.NotFound"
    )
