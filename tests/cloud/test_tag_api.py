"""Tencent's Tag API through the same client (issue #18): TagResources / UnTagResources.

Over HTTP the client's Tag transport is the official SDK's ``CommonClient`` for service
``tag`` (version 2018-08-13), signed for that service, against the emulator on 127.0.0.1;
in process the emulator core answers. Both go through ``CloudClient.call``: the same rate
limiter, retries and error table as every CVM call.
"""

from __future__ import annotations

import pytest

from cloud.conftest import MakeCloud, fleet_mapping
from cvmkeeper.cloud.errors import BusyError, NotFoundError, PermanentError, classify
from cvmkeeper.cloud.tagging import MAX_RESOURCES_PER_CALL, resource_name
from cvmkeeper.emulator.fleet import DEFAULT_UIN

GZ = "ap-guangzhou"


def instance_tags(cloud: object, instance_id: str) -> dict[str, str]:
    for item in cloud.state()["regions"][GZ]["instances"]:  # type: ignore[attr-defined]
        if item["InstanceId"] == instance_id:
            return {t["Key"]: t["Value"] for t in item["Tags"]}
    raise AssertionError(f"no instance {instance_id}")


def test_tags_are_set_and_removed_and_recorded_as_writes(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    marker = {"cvmkeeper:stopped-by": "host-a/2026-12-03T18:00:00Z"}
    cloud.client.tag_resources(GZ, "instance", ["ins-0001", "ins-0002"], marker)
    cloud.client.tag_resources(GZ, "image", ["img-golden01"], {"team": "ops"})
    [seen] = cloud.client.list_instances(GZ, ["ins-0001"])
    assert seen.tags["cvmkeeper:stopped-by"] == "host-a/2026-12-03T18:00:00Z"
    assert seen.tags["backup"] == "daily"  # other tags stay
    [image] = cloud.client.get_images(GZ, ["img-golden01"])
    assert image.tags == {"team": "ops"}

    cloud.client.untag_resources(GZ, "instance", ["ins-0001"], ["cvmkeeper:stopped-by"])
    cloud.client.untag_resources(GZ, "instance", ["ins-0001"], ["cvmkeeper:stopped-by"])  # again
    assert "cvmkeeper:stopped-by" not in instance_tags(cloud, "ins-0001")
    assert instance_tags(cloud, "ins-0002")["cvmkeeper:stopped-by"].startswith("host-a/")

    writes = [
        e for e in cloud.state()["history"] if e["action"] in ("TagResources", "UnTagResources")
    ]
    assert [(e["action"], e["result"]) for e in writes] == [
        ("TagResources", "ok"),
        ("TagResources", "ok"),
        ("UnTagResources", "ok"),
        ("UnTagResources", "ok"),
    ]
    assert writes[0]["InstanceIds"] == ["ins-0001", "ins-0002"]
    assert writes[1]["ImageIds"] == ["img-golden01"]
    assert writes[0]["params"]["ResourceList"][0] == resource_name(
        GZ, DEFAULT_UIN, "instance", "ins-0001"
    )
    assert cloud.client.stats.attempts["TagResources"] == 2


def test_a_missing_resource_fails_and_the_others_are_tagged(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    with pytest.raises(NotFoundError) as caught:
        cloud.client.tag_resources(GZ, "instance", ["ins-0003", "ins-gone0001"], {"k": "v"})
    assert caught.value.code == "InvalidParameterValue.ResourceIdInvalid"
    assert "ins-gone0001" in caught.value.message
    assert instance_tags(cloud, "ins-0003")["k"] == "v"
    assert cloud.client.stats.attempts["TagResources"] == 1  # permanent: not retried


def test_many_resources_go_ten_per_call(make_cloud: MakeCloud) -> None:
    fleet = fleet_mapping()
    fleet["regions"][GZ]["instances"] = [{"id": f"ins-many{n:04d}"} for n in range(23)]
    cloud = make_cloud(fleet)
    ids = [f"ins-many{n:04d}" for n in range(23)]
    cloud.client.tag_resources(GZ, "instance", ids, {"k": "v"})
    assert cloud.client.stats.attempts["TagResources"] == 3
    assert all(instance_tags(cloud, i)["k"] == "v" for i in ids)
    sizes = [
        len(e["params"]["ResourceList"])
        for e in cloud.state()["history"]
        if e["action"] == "TagResources"
    ]
    assert sizes == [MAX_RESOURCES_PER_CALL, MAX_RESOURCES_PER_CALL, 3]


def test_lost_answers_and_throttling_are_retried(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    cloud.core.set_faults(
        {
            "TagResources": {"lost_response": 0.4, "RequestLimitExceeded": 0.3},
            "UnTagResources": {"reset": 0.5},
        }
    )
    for n in range(4):
        cloud.client.tag_resources(GZ, "instance", [f"ins-000{n}"], {"k": f"v{n}"})
        cloud.client.untag_resources(GZ, "instance", [f"ins-000{n}"], ["backup"])
    for n in range(4):
        assert instance_tags(cloud, f"ins-000{n}") == {"k": f"v{n}"}
    injected = cloud.state()["injected"]
    assert injected.get("lost_response", 0) + injected.get("RequestLimitExceeded", 0) > 0
    assert cloud.client.stats.attempts["TagResources"] > 4


def test_bad_requests_are_permanent(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    with pytest.raises(PermanentError) as caught:
        cloud.client.tag_resources(GZ, "instance", ["ins-0001"], {"qcloud:owner": "x"})
    assert caught.value.code == "InvalidParameter.ReservedTagKey"
    with pytest.raises(ValueError, match="kind"):
        cloud.client.tag_resources(GZ, "disk", ["disk-1"], {"k": "v"})
    with pytest.raises(ValueError, match="tags"):
        cloud.client.tag_resources(GZ, "instance", ["ins-0001"], {})


def test_the_tag_codes_are_classified() -> None:
    busy = classify("FailedOperation.ResourceTagProcessing", "", action="TagResources", region=GZ)
    assert isinstance(busy, BusyError)
    gone = classify(
        "InvalidParameterValue.ResourceIdInvalid", "", action="UnTagResources", region=GZ
    )
    assert isinstance(gone, NotFoundError)
    for code in ("InvalidParameterValue.UinInvalid", "LimitExceeded.ResourceNumPerRequest"):
        error = classify(code, "", action="TagResources", region=GZ)
        assert isinstance(error, PermanentError)
        assert not isinstance(error, NotFoundError)
