"""The fleet switches for what Tencent leaves open (issue #18), through the real SDK."""

from __future__ import annotations

from typing import Any

import pytest
from tencentcloud.cvm.v20170312 import models

from cvmkeeper.emulator.fleet import FleetError, FleetSpec
from emulator.sdk import GZ, SH, base_fleet, create, error_code, request, sdk_client

WEB = "ins-6pb6lrmy"


def stop_then_start(emu: Any) -> str:
    """Stop WEB, then at once ask to start it (still STOPPING): the refusal's code."""
    client = sdk_client(emu)
    client.StopInstances(request(models.StopInstancesRequest, InstanceIds=[WEB]))
    return error_code(
        lambda: client.StartInstances(request(models.StartInstancesRequest, InstanceIds=[WEB]))
    )


def test_transitional_states_answer_in_progress_by_default(serve: Any) -> None:
    emu = serve(base_fleet(timing={"stop_seconds": 30}))
    assert stop_then_start(emu) == "OperationDenied.InstanceOperationInProgress"


def test_specific_codes_name_the_state(serve: Any) -> None:
    emu = serve(base_fleet(timing={"stop_seconds": 30}, instance_states="specific_codes"))
    assert stop_then_start(emu) == "UnsupportedOperation.InstanceStateStopping"
    client = sdk_client(emu)
    code = error_code(lambda: create(client, WEB, "while-stopping"))
    assert code == "UnsupportedOperation.InstanceStateStopping"


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("duplicate_first", "InvalidImageName.Duplicate"),
        ("mutex_first", "MutexOperation.TaskRunning"),
    ],
)
def test_create_retry_order_decides_the_first_refusal(
    serve: Any, order: str, expected: str
) -> None:
    emu = serve(base_fleet(timing={"create_seconds": 30}, create_retry_order=order))
    client = sdk_client(emu)
    create(client, WEB, "slot-0100")
    assert error_code(lambda: create(client, WEB, "slot-0100")) == expected
    # another instance's image of the same name is a duplicate in either order
    assert error_code(lambda: create(client, "ins-2kd9x0qa", "slot-0100")) == (
        "InvalidImageName.Duplicate"
    )


def listed(client: Any, **fields: Any) -> list[str]:
    answer = client.DescribeImages(request(models.DescribeImagesRequest, **fields))
    return [image.ImageId for image in answer.ImageSet]


def test_shuffled_image_order_is_stable_and_pages_cleanly(serve: Any) -> None:
    images = [{"id": f"img-{n:08d}", "name": f"old-{n}"} for n in range(12)]
    fleet = base_fleet(image_order="shuffled")
    fleet["regions"][GZ]["images"] = images
    emu = serve(fleet)
    client = sdk_client(emu)
    once = listed(client, Limit=100)
    assert sorted(once) == sorted(i["id"] for i in images)
    newest_first = [i["ImageId"] for i in emu.core.state()["regions"][GZ]["images"]]
    assert once != newest_first  # an order that has nothing to do with age
    assert listed(client, Limit=100) == once  # the same on every call
    paged = listed(client, Limit=5) + listed(client, Limit=5, Offset=5)
    paged += listed(client, Limit=5, Offset=10)
    assert paged == once  # paging neither repeats nor skips an image


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("instance_states", "loud", "must be one of in_progress, specific_codes"),
        ("create_retry_order", "random", "must be one of duplicate_first, mutex_first"),
        ("image_order", "oldest_first", "must be one of newest_first, shuffled"),
        ("null_fields", "sometimes", "must be true or false"),
        ("unknown_instance_status", "fail", "must be one of error, omit"),
        ("sync_images_per_call", "two", "must be one of many, one"),
        ("sync_copies_tags", "no", "must be true or false"),
        ("sync_disallowed_pairs", [[GZ]], r"must be \[source, destination\]"),
        ("sync_disallowed_pairs", [[GZ, SH, "Nope"]], "must be one of InvalidRegion"),
    ],
)
def test_switch_values_are_checked(key: str, value: Any, message: str) -> None:
    with pytest.raises(FleetError, match=f"{key}(\\[[02]\\])*: {message}"):
        FleetSpec.from_mapping({"regions": {GZ: None}, key: value})


def images_by_id(client: Any, **fields: Any) -> dict[str, Any]:
    """DescribeImages' raw JSON entries (as on the wire), by image id."""
    answer = client.call_json("DescribeImages", {"Limit": 100, **fields})
    return {entry["ImageId"]: entry for entry in answer["Response"]["ImageSet"]}


def test_null_fields_answers_null_and_leaves_out_empty_tags(serve: Any) -> None:
    fleet = base_fleet(timing={"create_seconds": 30}, null_fields=True)
    fleet["regions"][GZ]["images"].append(
        {"id": "img-dated001", "name": "dated", "created_time": "2026-01-02T03:04:05Z"}
    )
    emu = serve(fleet)
    client = sdk_client(emu)
    creating = create(
        client,
        WEB,
        "in-flight",
        TagSpecification=[{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}],
    )
    entries = images_by_id(client)
    assert all(entry["SyncPercent"] is None for entry in entries.values())
    assert entries[creating]["CreatedTime"] is None  # not NORMAL yet
    assert entries[creating]["Tags"] == [{"Key": "k", "Value": "v"}]
    assert entries["img-golden01"]["CreatedTime"] is None  # the fleet gave no time
    assert "Tags" not in entries["img-golden01"]
    assert entries["img-dated001"]["CreatedTime"] == "2026-01-02T03:04:05Z"
    # the SDK's own models accept the answer
    answer = client.DescribeImages(request(models.DescribeImagesRequest, Limit=100))
    assert {image.ImageId for image in answer.ImageSet} == set(entries)


def test_fields_are_filled_by_default(serve: Any) -> None:
    emu = serve(base_fleet())
    entries = images_by_id(sdk_client(emu))
    assert entries["img-golden01"]["CreatedTime"] is not None
    assert entries["img-golden01"]["Tags"] == []
    assert entries["img-golden01"]["SyncPercent"] == 100


@pytest.mark.parametrize(("answer", "omitted"), [("error", False), ("omit", True)])
def test_unknown_instance_status_fails_the_batch_or_is_omitted(
    serve: Any, answer: str, omitted: bool
) -> None:
    emu = serve(base_fleet(unknown_instance_status=answer))
    client = sdk_client(emu)
    ask = request(
        models.DescribeInstancesStatusRequest, InstanceIds=[WEB, "ins-gone0000"], Limit=100
    )
    if not omitted:
        assert error_code(lambda: client.DescribeInstancesStatus(ask)) == (
            "InvalidInstanceId.NotFound"
        )
        return
    answered = client.DescribeInstancesStatus(ask)
    assert [(s.InstanceId, s.InstanceState) for s in answered.InstanceStatusSet] == [
        (WEB, "RUNNING")
    ]
    assert answered.TotalCount == 1


TAGGED_SOURCE = {
    "id": "img-tagged01",
    "name": "tagged-base",
    "description": "cvmkeeper:hourly",
    "tags": {"cvmkeeper:managed": "true"},
}


def sync(client: Any, ids: list[str], destination: str = SH) -> Any:
    return client.SyncImages(
        request(
            models.SyncImagesRequest,
            ImageIds=ids,
            DestinationRegions=[destination],
            ImageSetRequired=True,
        )
    )


def copy_in(emu: Any, region: str, name: str) -> dict[str, Any]:
    images = emu.core.state()["regions"][region]["images"]
    return next(i for i in images if i["ImageName"] == name)


@pytest.mark.parametrize("inherit", [True, False])
def test_sync_copies_tags_and_description_decide_what_a_copy_inherits(
    serve: Any, inherit: bool
) -> None:
    fleet = base_fleet(sync_copies_tags=inherit, sync_copies_description=inherit)
    fleet["regions"][GZ]["images"] = [TAGGED_SOURCE]
    emu = serve(fleet)
    sync(sdk_client(emu), ["img-tagged01"])
    copy = copy_in(emu, SH, "tagged-base")
    tags = {t["Key"]: t["Value"] for t in copy["Tags"]}
    if inherit:
        assert tags == {"cvmkeeper:managed": "true"}
        assert copy["ImageDescription"] == "cvmkeeper:hourly"
    else:
        assert tags == {} and copy["ImageDescription"] == ""
    # the source keeps its own marks either way
    assert copy_in(emu, GZ, "tagged-base")["ImageDescription"] == "cvmkeeper:hourly"


def test_one_image_per_sync_call_refuses_a_batch_with_the_sdk_code(serve: Any) -> None:
    emu = serve(base_fleet(sync_images_per_call="one"))
    client = sdk_client(emu)
    pair = ["img-golden01", "img-shared01"]
    assert error_code(lambda: sync(client, pair)) == "InvalidParameterValue.LimitExceeded"
    assert [i["ImageName"] for i in emu.core.state()["regions"][SH]["images"]] == []
    [made] = sync(client, ["img-golden01"]).ImageSet
    assert made.Region == SH
    # the default copies a batch in one call
    many = serve(base_fleet())
    assert len(sync(sdk_client(many), pair).ImageSet) == 2


@pytest.mark.parametrize(
    ("pair", "code"),
    [
        ([GZ, SH], "InvalidRegion.Unavailable"),
        ([GZ, SH, "UnsupportedOperation.Region"], "UnsupportedOperation.Region"),
    ],
)
def test_a_disallowed_region_pair_is_refused_one_way_only(
    serve: Any, pair: list[str], code: str
) -> None:
    fleet = base_fleet(sync_disallowed_pairs=[pair])
    fleet["regions"][SH]["images"] = [{"id": "img-shbase01", "name": "sh-base"}]
    emu = serve(fleet)
    assert error_code(lambda: sync(sdk_client(emu), ["img-golden01"])) == code
    assert emu.core.state()["regions"][SH]["images"][0]["ImageName"] == "sh-base"
    [back] = sync(sdk_client(emu, SH), ["img-shbase01"], destination=GZ).ImageSet
    assert back.Region == GZ  # the other direction copies
