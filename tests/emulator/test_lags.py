"""The eventual-consistency and deletion-lag switches (issue #18), on a ManualClock.

``image_visibility_seconds`` hides a new image (and a SyncImages copy) from DescribeImages,
``tag_visibility_seconds`` hides its tags, ``delete_lag_seconds`` keeps a deleted image
listed ``DELETING`` and counted against the quota. The defaults (0) change nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import ApiError, EmulatorCore
from cvmkeeper.emulator.fleet import FleetError, FleetSpec
from cvmkeeper.emulator.invariants import check_invariants
from emulator.sdk import GZ, SH, base_fleet

WEB = "ins-6pb6lrmy"
TAGS = [{"ResourceType": "image", "Tags": [{"Key": "cvmkeeper", "Value": "managed"}]}]


def make_core(**switches: Any) -> tuple[EmulatorCore, ManualClock]:
    fleet = base_fleet(**switches)
    fleet["timing"] = {"create_seconds": 60, "sync_seconds": 30}
    clock = ManualClock()
    return EmulatorCore(FleetSpec.from_mapping(fleet), clock), clock


def listed(core: EmulatorCore, region: str = GZ, **params: Any) -> dict[str, Any]:
    """image id -> its DescribeImages entry."""
    answer = core.call("DescribeImages", region, {"Limit": 100, **params})
    return {image["ImageId"]: image for image in answer["ImageSet"]}


def create(core: EmulatorCore, name: str = "slot-1") -> str:
    params = {"InstanceId": WEB, "ImageName": name, "TagSpecification": TAGS}
    return str(core.call("CreateImage", GZ, params)["ImageId"])


def test_defaults_show_at_once_and_delete_at_once() -> None:
    core, clock = make_core()
    image_id = create(core)
    assert listed(core)[image_id]["Tags"] == [{"Key": "cvmkeeper", "Value": "managed"}]
    clock.advance(60)
    core.call("DeleteImages", GZ, {"ImageIds": [image_id]})
    assert image_id not in listed(core)


def test_a_new_image_is_absent_until_its_visibility_delay() -> None:
    core, clock = make_core(image_visibility_seconds=5)
    image_id = create(core)
    assert image_id not in listed(core)
    assert image_id not in listed(core, ImageIds=[image_id])
    assert core.call("DescribeImages", GZ, {"ImageIds": [image_id]})["TotalCount"] == 0
    # it exists in truth: its name is taken and it counts against the quota
    with pytest.raises(ApiError) as refused:
        create(core)
    assert refused.value.code == "InvalidImageName.Duplicate"
    assert core.state()["regions"][GZ]["quota_used"] == 3  # golden, shared and the new one
    clock.advance(4.9)
    assert image_id not in listed(core)
    clock.advance(0.1)
    assert listed(core)[image_id]["ImageState"] == "CREATING"


def test_a_copy_is_absent_until_its_visibility_delay() -> None:
    core, clock = make_core(image_visibility_seconds=5)
    image_id = create(core)
    clock.advance(60)
    answer = core.call(
        "SyncImages",
        GZ,
        {"ImageIds": [image_id], "DestinationRegions": [SH], "ImageSetRequired": True},
    )
    copy_id = answer["ImageSet"][0]["ImageId"]
    assert copy_id not in listed(core, SH)
    clock.advance(5)
    assert copy_id in listed(core, SH)


def test_tags_show_only_after_their_delay() -> None:
    core, clock = make_core(tag_visibility_seconds=8)
    image_id = create(core)
    assert listed(core)[image_id]["Tags"] == []
    assert image_id not in listed(core, Filters=[{"Name": "tag:cvmkeeper", "Values": ["managed"]}])
    assert core.state()["regions"][GZ]["images"][0]["Tags"]  # the truth has them
    clock.advance(8)
    assert listed(core)[image_id]["Tags"] == [{"Key": "cvmkeeper", "Value": "managed"}]


def test_a_deleted_image_stays_deleting_and_counts_against_the_quota() -> None:
    core, clock = make_core(delete_lag_seconds=10)
    core.call("DescribeImageQuota", GZ, {})
    before = core.state()
    for n in range(7):  # fill the quota of 10: golden, shared and 8 backups
        create(core, f"slot-{n}")
        clock.advance(60)
    create(core, "slot-7")
    clock.advance(60)
    old = next(i for i, image in listed(core).items() if image["ImageName"] == "slot-0")
    core.call("DeleteImages", GZ, {"ImageIds": [old], "DeleteBindedSnap": True})
    assert listed(core)[old]["ImageState"] == "DELETING"
    core.call("DeleteImages", GZ, {"ImageIds": [old], "DeleteBindedSnap": True})  # accepted
    with pytest.raises(ApiError) as refused:
        create(core, "slot-8")
    assert refused.value.code == "ImageQuotaLimitExceeded"
    clock.advance(10)
    assert old not in listed(core)
    create(core, "slot-8")
    last = core.state()["history"]
    gone = [e for e in last if e["action"] == "_transition" and e.get("to") == "DELETED"]
    assert [e["ImageIds"] for e in gone] == [[old]]
    # the replay counts the DELETING image until its transition, and ends where the state
    # does (these test images are not cvmkeeper's, hence the other rules are left out)
    replay = check_invariants(core.state(), before)
    assert [v for v in replay if v.rule in ("quota_exceeded", "history_gap")] == []


def test_the_lags_survive_the_state_file(tmp_path: Any) -> None:
    core, clock = make_core(image_visibility_seconds=5, tag_visibility_seconds=8)
    image_id = create(core)
    core.save(tmp_path / "state.json")
    again = EmulatorCore.load(tmp_path / "state.json", clock)
    assert image_id not in listed(again)
    clock.advance(5)
    assert listed(again)[image_id]["Tags"] == []
    clock.advance(3)
    assert listed(again)[image_id]["Tags"]


@pytest.mark.parametrize("key", ["image_visibility_seconds", "delete_lag_seconds"])
def test_lag_values_are_checked(key: str) -> None:
    with pytest.raises(FleetError, match=f"{key}: "):
        FleetSpec.from_mapping({"regions": {GZ: None}, key: -1})
