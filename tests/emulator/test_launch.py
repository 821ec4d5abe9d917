"""RunInstances, TerminateInstances and ResetInstance through the official SDK over HTTP
(issue #16; behaviours and codes cited in ``cvmkeeper/emulator/launch.py``)."""

from __future__ import annotations

import time
from typing import Any

from tencentcloud.cvm.v20170312 import models

from cvmkeeper.emulator.clock import SystemClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.server import RunningEmulator
from emulator.sdk import GZ, base_fleet, error_code, request, sdk_client

ZONE = "ap-guangzhou-3"


def run_params(image_id: str, **extra: Any) -> dict[str, Any]:
    """A RunInstances request as a restore sends it."""
    return {
        "ImageId": image_id,
        "Placement": {"Zone": ZONE},
        "InstanceType": "S5.SMALL2",
        "VirtualPrivateCloud": {"VpcId": "vpc-abc12345", "SubnetId": "subnet-abc12345"},
        "SecurityGroupIds": ["sg-abc12345"],
        "LoginSettings": {"KeepImageLogin": "TRUE"},
        **extra,
    }


def wait_state(emu: RunningEmulator, instance_id: str, wanted: str, seconds: float = 5) -> str:
    """Poll the emulator (bounded) until ``instance_id`` is ``wanted``; return the last state."""
    deadline = time.monotonic() + seconds
    state = ""
    while time.monotonic() < deadline:
        instances = emu.core.state()["regions"][GZ]["instances"]
        state = next(
            (i["InstanceState"] for i in instances if i["InstanceId"] == instance_id), "GONE"
        )
        if state == wanted:
            return state
        time.sleep(0.05)
    return state


def fleet(**launch: Any) -> dict[str, Any]:
    """The base fleet, fast launches, and ``launch`` switches."""
    return base_fleet(
        timing={
            "create_seconds": 0.1,
            "stop_seconds": 0.1,
            "start_seconds": 0.1,
            "launch_seconds": 0.2,
            "terminate_seconds": 0.1,
            "reset_seconds": 0.2,
        },
        launch=launch,
    )


def image_of(emu: RunningEmulator, instance_id: str) -> str:
    """Make an image of ``instance_id`` and wait until it is NORMAL."""
    client = sdk_client(emu)
    disks = [
        d["DiskId"]
        for i in emu.core.state()["regions"][GZ]["instances"]
        if i["InstanceId"] == instance_id
        for d in i["DataDisks"]
    ]
    image_id = str(
        client.CreateImage(
            request(
                models.CreateImageRequest,
                InstanceId=instance_id,
                ImageName=f"r-{instance_id[-8:]}",
                DataDiskIds=disks,
            )
        ).ImageId
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        images = {i["ImageId"]: i for i in emu.core.state()["regions"][GZ]["images"]}
        if images[image_id]["ImageState"] == "NORMAL":
            break
        time.sleep(0.05)
    return image_id


def test_run_instances_launches_pending_then_running_with_the_asked_settings(serve) -> None:
    emu = serve(fleet())
    client = sdk_client(emu)
    image_id = image_of(emu, "ins-2kd9x0qa")  # whole machine: system + a data disk
    images = {i["ImageId"]: i for i in emu.core.state()["regions"][GZ]["images"]}
    data = [s for s in images[image_id]["SnapshotSet"] if s["DiskUsage"] == "DATA_DISK"]
    assert len(data) == 1
    response = client.RunInstances(
        request(
            models.RunInstancesRequest,
            **run_params(
                image_id,
                DataDisks=[
                    {
                        "DiskType": "CLOUD_PREMIUM",
                        "DiskSize": data[0]["DiskSize"],
                        "SnapshotId": data[0]["SnapshotId"],
                    }
                ],
                TagSpecification=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "cvmkeeper:restored-from", "Value": image_id}],
                    }
                ],
            ),
        )
    )
    [new_id] = response.InstanceIdSet
    described = client.DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceIds=[new_id])
    ).InstanceSet[0]
    assert described.InstanceState == "PENDING"
    assert wait_state(emu, new_id, "RUNNING") == "RUNNING"
    described = client.DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceIds=[new_id])
    ).InstanceSet[0]
    assert described.ImageId == image_id
    assert described.Placement.Zone == ZONE
    assert described.InstanceType == "S5.SMALL2"
    assert described.VirtualPrivateCloud.SubnetId == "subnet-abc12345"
    assert described.SecurityGroupIds == ["sg-abc12345"]
    assert described.LoginSettings.KeepImageLogin == "TRUE"
    assert [d.DiskSize for d in described.DataDisks] == [data[0]["DiskSize"]]
    assert {t.Key: t.Value for t in described.Tags} == {"cvmkeeper:restored-from": image_id}


def test_client_token_makes_run_instances_idempotent(serve) -> None:
    emu = serve(fleet())
    client = sdk_client(emu)
    image_id = image_of(emu, "ins-6pb6lrmy")
    first = client.RunInstances(
        request(models.RunInstancesRequest, **run_params(image_id, ClientToken="tok-1"))
    )
    again = client.RunInstances(
        request(models.RunInstancesRequest, **run_params(image_id, ClientToken="tok-1"))
    )
    assert first.InstanceIdSet == again.InstanceIdSet
    assert len(emu.core.state()["regions"][GZ]["instances"]) == 5  # 4 seeded + 1
    assert (
        error_code(
            lambda: client.RunInstances(
                request(models.RunInstancesRequest, **run_params(image_id, ClientToken="x" * 65))
            )
        )
        == "InvalidClientToken.TooLong"
    )


def test_run_instances_refusals_carry_the_real_codes(serve) -> None:
    emu = serve(fleet(instance_quota=5, sold_out_types=["SA2.TINY"]))
    client = sdk_client(emu)
    image_id = image_of(emu, "ins-6pb6lrmy")

    def code(**changes: Any) -> str:
        params = {**run_params(image_id), **changes}
        return error_code(
            lambda: client.RunInstances(request(models.RunInstancesRequest, **params))
        )

    assert code(ImageId="img-nothere1") == "InvalidImageId.NotFound"
    assert code(Placement={"Zone": "ap-shanghai-2"}) == "InvalidZone.MismatchRegion"
    assert code(InstanceType="SA2.TINY") == "ResourceInsufficient.SpecifiedInstanceType"
    assert code(InstanceCount=2) == "LimitExceeded.InstanceQuota"
    assert code(DryRun=True) == "DryRunOperation"
    assert (
        code(LoginSettings={"KeepImageLogin": "TRUE", "Password": "Secret-123"})
        == "InvalidParameter.ParameterConflict"
    )
    assert code(ImageId="img-public01") == "InvalidParameter.ParameterConflict"  # KeepImageLogin
    assert (
        code(DataDisks=[{"DiskSize": 10, "SnapshotId": "snap-nothere"}])
        == "InvalidParameter.SnapshotNotFound"
    )
    writes = [e for e in emu.core.state()["history"] if e["action"] == "RunInstances"]
    assert writes and all(e["result"] != "ok" for e in writes)
    assert len(emu.core.state()["regions"][GZ]["instances"]) == 4  # nothing launched


def test_launch_failed_and_stuck_pending_switches(serve) -> None:
    failed = serve(fleet(outcome="launch_failed"))
    image_id = image_of(failed, "ins-6pb6lrmy")
    [new_id] = (
        sdk_client(failed)
        .RunInstances(request(models.RunInstancesRequest, **run_params(image_id)))
        .InstanceIdSet
    )
    assert wait_state(failed, new_id, "LAUNCH_FAILED") == "LAUNCH_FAILED"
    stuck = serve(fleet(outcome="stuck_pending"))
    image_id = image_of(stuck, "ins-6pb6lrmy")
    client = sdk_client(stuck)
    [new_id] = client.RunInstances(
        request(models.RunInstancesRequest, **run_params(image_id))
    ).InstanceIdSet
    assert wait_state(stuck, new_id, "RUNNING", seconds=0.6) == "PENDING"
    assert (
        error_code(
            lambda: client.TerminateInstances(
                request(models.TerminateInstancesRequest, InstanceIds=[new_id])
            )
        )
        == "UnsupportedOperation.InstanceStatePending"
    )


def test_terminate_instances_goes_through_terminating_then_the_instance_is_gone(serve) -> None:
    emu = serve(fleet())
    client = sdk_client(emu)
    image_id = image_of(emu, "ins-6pb6lrmy")
    [new_id] = client.RunInstances(
        request(models.RunInstancesRequest, **run_params(image_id))
    ).InstanceIdSet
    wait_state(emu, new_id, "RUNNING")
    client.TerminateInstances(request(models.TerminateInstancesRequest, InstanceIds=[new_id]))
    assert wait_state(emu, new_id, "TERMINATING", seconds=0.05) == "TERMINATING"
    assert wait_state(emu, new_id, "GONE") == "GONE"
    assert (
        error_code(
            lambda: client.TerminateInstances(
                request(models.TerminateInstancesRequest, InstanceIds=[new_id])
            )
        )
        == "InvalidInstanceId.NotFound"
    )
    ends = [
        e
        for e in emu.core.state()["history"]
        if e["action"] == "_transition" and e.get("InstanceIds") == [new_id]
    ]
    assert [e["to"] for e in ends] == ["RUNNING", "TERMINATED"]


def test_reset_instance_resets_the_system_disk_only_and_reports_the_operation(serve) -> None:
    emu = serve(fleet())
    client = sdk_client(emu)
    image_id = image_of(emu, "ins-2kd9x0qa")
    before = client.DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceIds=["ins-2kd9x0qa"])
    ).InstanceSet[0]
    client.ResetInstance(
        request(
            models.ResetInstanceRequest,
            InstanceId="ins-2kd9x0qa",
            ImageId=image_id,
            LoginSettings={"KeepImageLogin": "TRUE"},
        )
    )
    busy = client.DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceIds=["ins-2kd9x0qa"])
    ).InstanceSet[0]
    assert (busy.LatestOperation, busy.LatestOperationState) == ("ResetInstance", "OPERATING")
    assert (
        error_code(
            lambda: client.StopInstances(
                request(models.StopInstancesRequest, InstanceIds=["ins-2kd9x0qa"])
            )
        )
        == "OperationDenied.InstanceOperationInProgress"
    )
    time.sleep(0.3)
    after = client.DescribeInstances(
        request(models.DescribeInstancesRequest, InstanceIds=["ins-2kd9x0qa"])
    ).InstanceSet[0]
    assert after.LatestOperationState == "SUCCESS"
    assert after.ImageId == image_id
    assert after.InstanceState == before.InstanceState == "RUNNING"
    assert [d.DiskId for d in after.DataDisks] == [d.DiskId for d in before.DataDisks]
    assert (
        error_code(
            lambda: client.ResetInstance(
                request(
                    models.ResetInstanceRequest, InstanceId="ins-2kd9x0qa", ImageId="img-nothere1"
                )
            )
        )
        == "InvalidImageId.NotFound"
    )


def test_launched_instances_and_client_tokens_survive_the_state_file(serve, tmp_path) -> None:
    emu = serve(fleet(private_ip="127.0.0.1"))
    client = sdk_client(emu)
    image_id = image_of(emu, "ins-6pb6lrmy")
    [new_id] = client.RunInstances(
        request(models.RunInstancesRequest, **run_params(image_id, ClientToken="tok-saved"))
    ).InstanceIdSet
    wait_state(emu, new_id, "RUNNING")
    emu.core.save(tmp_path / "state.json")
    loaded = EmulatorCore.load(tmp_path / "state.json", SystemClock(), emu.core.fleet)
    [instance] = [
        i for i in loaded.state()["regions"][GZ]["instances"] if i["InstanceId"] == new_id
    ]
    assert instance["PrivateIpAddresses"] == ["127.0.0.1"]
    assert instance["SecurityGroupIds"] == ["sg-abc12345"]
    again = loaded.call("RunInstances", GZ, run_params(image_id, ClientToken="tok-saved"))
    assert again["InstanceIdSet"] == [new_id]
