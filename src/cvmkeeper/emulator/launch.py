"""RunInstances, TerminateInstances and ResetInstance: what a restore and a drill need.

Sources, cited for each behaviour (tencentcloud-sdk-python ``tencentcloud/cvm/v20170312/``
``cvm_client.py`` and ``models.py`` 3.1.178; tencentcloud-sdk-go
``tencentcloud/cvm/v20170312/client.go`` for the error codes each action can answer):

- RunInstances is asynchronous: it answers ``InstanceIdSet`` at once; the instance is
  ``PENDING`` and becomes ``RUNNING``, or ``LAUNCH_FAILED`` when creation failed
  (cvm_client.py ``RunInstances``). ``ClientToken`` (at most 64 ASCII characters, else
  ``InvalidClientToken.TooLong``) makes the request idempotent: the same token answers the
  same ids. ``DryRun`` checks parameters, limits and stock and creates nothing (models.py
  ``RunInstancesRequest.DryRun``). ``LoginSettings.KeepImageLogin`` is allowed only for
  custom, shared or imported images (models.py ``LoginSettings``). ``DataDisks[].SnapshotId``
  makes a data disk from a snapshot, whose size must not exceed the disk's
  (``FailedOperation.SnapshotSizeLargerThanDataSize``); an unknown snapshot is
  ``InvalidParameter.SnapshotNotFound``. Other codes used: ``InvalidImageId.NotFound``,
  ``InvalidParameterValue.InvalidImageState``, ``InvalidZone.MismatchRegion``,
  ``LimitExceeded.InstanceQuota``, ``ResourceInsufficient.SpecifiedInstanceType``,
  ``InvalidParameterValue.SubnetIdMalformed``, ``InvalidParameterValue.VpcIdMalformed``,
  ``InvalidSecurityGroupId.NotFound`` (all from RunInstances' list in client.go).
- TerminateInstances destroys a pay-as-you-go instance (cvm_client.py); the emulator shows
  it ``TERMINATING`` for ``timing.terminate_seconds``, then it is gone. Refused:
  ``UnsupportedOperation.InstanceStatePending`` / ``...Terminating`` (client.go).
- ResetInstance re-installs the *system disk* from ``ImageId`` ("the system disk will be
  formatted and reset", cvm_client.py; "a reinstallation clears all data in the system
  disk", tencentyun/intlcloud-documents ``yehe_doc/计算和容器/云服务器/操作指南/实例/
  重装系统_intl_en.md``); neither names the data disks, so the emulator leaves them as
  they are. The result is read from
  ``LatestOperationState`` (``SUCCESS``) of DescribeInstances (cvm_client.py). The instance
  state table has no "resetting" state; the emulator keeps the state the instance had
  while the reset runs and answers ``OperationDenied.InstanceOperationInProgress`` to a
  stop or start meanwhile; what state it ends in is a switch (``launch.reset_leaves``).

Open points, each a switch of ``fleet.Launch``: what a passing RunInstances DryRun answers,
whether an instance reaches RUNNING, the instance quota, sold-out types, the state after a
reset. Whether RunInstances from a whole-machine image creates its data disks without
``DataDisks`` is not documented: the emulator creates only the data disks asked for
(cvmkeeper always asks for them explicitly, with their snapshots).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from cvmkeeper.emulator import params as p
from cvmkeeper.emulator.errors import ApiError
from cvmkeeper.emulator.fleet import DISK_TYPES, FleetSpec
from cvmkeeper.emulator.records import SYSTEM_DISK_GIB, DiskRecord, InstanceRecord, RegionState

#: ``next_state`` meaning "remove the instance" when its TERMINATING ends.
TERMINATED = "TERMINATED"
MAX_CLIENT_TOKEN = 64
_CUSTOM_IMAGE_TYPES = frozenset({"PRIVATE_IMAGE", "SHARED_IMAGE"})


class LaunchActions:
    """The three handlers, bound to one emulator core's fleet and id source.

    The core registers :meth:`handlers` in its dispatch table and applies the lifecycle
    (``ready_at`` / ``next_state``) in its ``_advance``, like every other transition.
    """

    def __init__(
        self,
        fleet: Callable[[], FleetSpec],
        new_id: Callable[[str], str],
        outcome: Callable[..., Any],
    ) -> None:
        """``outcome`` is the core's ``Outcome`` class (the core imports this module)."""
        self._fleet = fleet
        self._new_id = new_id
        self._outcome = outcome

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """Action name -> handler ``(region, params, now, request_id) -> Outcome``."""
        return {
            "RunInstances": self.run_instances,
            "TerminateInstances": self.terminate_instances,
            "ResetInstance": self.reset_instance,
        }

    # -- RunInstances -----------------------------------------------------------------------

    def run_instances(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Any:
        fleet = self._fleet()
        switches = fleet.launch
        image_id = p.string(params, "ImageId", need=True)
        instance_type = p.string(params, "InstanceType", default="S5.MEDIUM4")
        placement = _mapping(params, "Placement", need=True)
        zone = p.string(placement, "Zone", need=True)
        vpc = _mapping(params, "VirtualPrivateCloud")
        vpc_id = p.string(vpc, "VpcId", default="vpc-emulator")
        subnet_id = p.string(vpc, "SubnetId", default="subnet-emulator")
        groups = p.string_list(params, "SecurityGroupIds") or ["sg-emulator"]
        count = p.integer(params, "InstanceCount", 1)
        token = p.string(params, "ClientToken")
        dry_run = p.boolean(params, "DryRun")
        name = p.string(params, "InstanceName")
        keep_login = _keep_image_login(_mapping(params, "LoginSettings"))
        tags = p.tag_specification(params.get("TagSpecification"), "instance", action=None)
        p.string(params, "InstanceChargeType", default="POSTPAID_BY_HOUR")
        # models.py SystemDisk.DiskSize: "默认值为 50" (GiB); what the cloud does with an
        # image whose system disk is larger is not documented, so nothing is checked
        system_size = p.integer(_mapping(params, "SystemDisk"), "DiskSize", SYSTEM_DISK_GIB)
        if len(token) > MAX_CLIENT_TOKEN:
            raise ApiError(
                "InvalidClientToken.TooLong",
                f"ClientToken must be at most {MAX_CLIENT_TOKEN} characters.",
            )
        if token and token in region.client_tokens and not dry_run:
            known = region.client_tokens[token]
            return self._outcome(
                {"InstanceIdSet": list(known)},
                instance_ids=list(known),
                extra={"idempotent_replay": True},
            )
        if not 1 <= count <= 100:
            raise ApiError("InvalidParameterValue.Range", "InstanceCount must be 1 to 100.")
        _check_placement(region, zone, vpc_id, subnet_id, groups)
        image = _launchable_image(region, image_id, keep_login=keep_login)
        disks = self._data_disks(region, params)
        _check_capacity(region, switches, instance_type, zone, count)
        if dry_run:
            if switches.dry_run_answer == "request_id":
                return self._outcome({}, instance_ids=[], extra={"dry_run": True})
            raise ApiError("DryRunOperation", "The request would have succeeded.")
        ids = [
            self._launch_one(
                region,
                now,
                request_id,
                n,
                image=image,
                zone=zone,
                name=name,
                instance_type=instance_type,
                tags=tags,
                disks=disks,
                network=(vpc_id, subnet_id, groups),
                keep_login=keep_login,
                system_size=system_size,
            )
            for n in range(count)
        ]
        if token:
            region.client_tokens[token] = list(ids)
        return self._outcome(
            {"InstanceIdSet": ids}, instance_ids=ids, extra={"ImageIds": [image_id]}
        )

    def _launch_one(
        self,
        region: RegionState,
        now: datetime,
        request_id: str,
        n: int,
        *,
        image: Any,
        zone: str,
        name: str,
        instance_type: str,
        tags: Mapping[str, str],
        disks: list[tuple[str, int]],
        network: tuple[str, str, list[str]],
        keep_login: bool | None,
        system_size: int,
    ) -> str:
        """One new instance, PENDING, and when it leaves that state (``launch.outcome``)."""
        fleet = self._fleet()
        switches = fleet.launch
        vpc_id, subnet_id, groups = network
        instance_id = self._new_id("ins")
        record = InstanceRecord(
            instance_id=instance_id,
            name=name or instance_id,
            region=region.name,
            zone=zone,
            state="PENDING",
            created_time=now,
            tags=dict(tags),
            instance_type=instance_type,
            os_name=image.os_name,
            data_disks=[
                DiskRecord(self._new_id("disk"), disk_type, size) for disk_type, size in disks
            ],
            system_disk_id=self._new_id("disk"),
            system_disk_size=system_size,
            private_ip=switches.private_ip
            or f"10.200.{len(region.instances) // 250}.{len(region.instances) % 250 + 2 + n}",
            vpc_id=vpc_id,
            subnet_id=subnet_id,
            security_group_ids=list(groups),
            image_id=image.image_id,
            keep_image_login=keep_login,
            latest_operation="RunInstances",
            latest_operation_state="OPERATING",
            latest_operation_request_id=request_id,
        )
        if switches.outcome != "stuck_pending":
            record.ready_at = now + timedelta(seconds=fleet.timing.launch_seconds)
            record.next_state = (
                "LAUNCH_FAILED" if switches.outcome == "launch_failed" else "RUNNING"
            )
        region.instances[instance_id] = record
        return instance_id

    @staticmethod
    def _data_disks(region: RegionState, params: Mapping[str, Any]) -> list[tuple[str, int]]:
        """``DataDisks``: (type, size) per disk; a ``SnapshotId`` must exist in the region
        and fit the disk."""
        raw = params.get("DataDisks")
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise ApiError("InvalidParameter", "The parameter `DataDisks` must be a list.")
        sizes = {
            s.snapshot_id: s.disk_size for image in region.images.values() for s in image.snapshots
        }
        disks: list[tuple[str, int]] = []
        for item in raw:
            if not isinstance(item, dict):
                raise ApiError("InvalidParameter", "Each DataDisks entry must be an object.")
            disk_type = p.string(item, "DiskType", default="CLOUD_PREMIUM")
            size = p.integer(item, "DiskSize", 0)
            snapshot = p.string(item, "SnapshotId")
            if disk_type not in DISK_TYPES:
                raise ApiError("InvalidParameterValue", f"Unknown DiskType `{disk_type}`.")
            if snapshot:
                if snapshot not in sizes:
                    raise ApiError(
                        "InvalidParameter.SnapshotNotFound",
                        f"The snapshot `{snapshot}` does not exist.",
                    )
                if sizes[snapshot] > size:
                    raise ApiError(
                        "FailedOperation.SnapshotSizeLargerThanDataSize",
                        f"The snapshot `{snapshot}` ({sizes[snapshot]} GiB) is "
                        f"larger than the data disk ({size} GiB).",
                    )
            if size < 1:
                raise ApiError("InvalidParameterValue.Range", "DiskSize must be positive.")
            disks.append((disk_type, size))
        return disks

    # -- TerminateInstances -----------------------------------------------------------------

    def terminate_instances(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Any:
        ids = list(dict.fromkeys(p.string_list(params, "InstanceIds", need=True)))
        p.boolean(params, "ReleaseAddress")
        p.boolean(params, "ReleasePrepaidDataDisks")
        instances: list[InstanceRecord] = []
        for instance_id in ids:
            instance = region.instances.get(instance_id)
            if instance is None:
                raise ApiError(
                    "InvalidInstanceId.NotFound",
                    f"The instance `{instance_id}` does not exist in {region.name}.",
                )
            if instance.state in ("PENDING", "TERMINATING"):
                raise ApiError(
                    f"UnsupportedOperation.InstanceState{instance.state.title()}",
                    f"The instance `{instance_id}` is {instance.state}.",
                )
            if instance.latest_operation_state == "OPERATING":
                raise ApiError(
                    "OperationDenied.InstanceOperationInProgress",
                    f"The instance `{instance_id}` is busy with {instance.latest_operation}.",
                )
            instances.append(instance)
        seconds = self._fleet().timing.terminate_seconds
        for instance in instances:
            instance.state = "TERMINATING"
            instance.ready_at = now + timedelta(seconds=seconds)
            instance.next_state = TERMINATED
            instance.latest_operation = "TerminateInstances"
            instance.latest_operation_state = "OPERATING"
            instance.latest_operation_request_id = request_id
        return self._outcome({}, instance_ids=ids)

    # -- ResetInstance ----------------------------------------------------------------------

    def reset_instance(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Any:
        instance_id = p.string(params, "InstanceId", need=True)
        image_id = p.string(params, "ImageId")
        keep_login = _keep_image_login(_mapping(params, "LoginSettings"))
        p.string(params, "HostName")
        instance = region.instances.get(instance_id)
        if instance is None:
            raise ApiError(
                "InvalidInstanceId.NotFound",
                f"The instance `{instance_id}` does not exist in {region.name}.",
            )
        if instance.latest_operation_state == "OPERATING":
            raise ApiError(
                "OperationDenied.InstanceOperationInProgress",
                f"The instance `{instance_id}` is busy with {instance.latest_operation}.",
            )
        if instance.state not in ("RUNNING", "STOPPED"):
            raise ApiError(
                f"UnsupportedOperation.InstanceState{instance.state.title()}",
                f"The instance `{instance_id}` is {instance.state}.",
            )
        image_id = image_id or instance.image_id
        image = region.images.get(image_id)
        if image is None:
            raise ApiError(
                "InvalidImageId.NotFound",
                f"The image `{image_id}` does not exist in {region.name}.",
            )
        if image.state != "NORMAL":
            raise ApiError(
                "InvalidParameterValue.InvalidImageState",
                f"The image `{image_id}` is {image.state}.",
            )
        if keep_login and image.image_type not in _CUSTOM_IMAGE_TYPES:
            raise ApiError(
                "InvalidParameter.ParameterConflict",
                "KeepImageLogin needs a custom, shared or imported image.",
            )
        leaves = self._fleet().launch.reset_leaves
        instance.next_state = "RUNNING" if leaves == "running" else instance.state
        instance.ready_at = now + timedelta(seconds=self._fleet().timing.reset_seconds)
        instance.image_id = image_id
        instance.keep_image_login = keep_login
        instance.os_name = image.os_name
        instance.latest_operation = "ResetInstance"
        instance.latest_operation_state = "OPERATING"
        instance.latest_operation_request_id = request_id
        return self._outcome({}, instance_ids=[instance_id], extra={"ImageIds": [image_id]})


def _mapping(params: Mapping[str, Any], key: str, *, need: bool = False) -> Mapping[str, Any]:
    value = p.required(params, key) if need else params.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError("InvalidParameter", f"The parameter `{key}` must be an object.")
    return value


def _keep_image_login(login: Mapping[str, Any]) -> bool | None:
    """``LoginSettings.KeepImageLogin``: the SDK models it as a string (``TRUE``/``FALSE``)."""
    raw = login.get("KeepImageLogin")
    if raw is None:
        return None
    text = str(raw).lower()
    if text not in ("true", "false"):
        raise ApiError("InvalidParameterValue", "KeepImageLogin must be TRUE or FALSE.")
    if text == "true" and (login.get("Password") or login.get("KeyIds")):
        raise ApiError(
            "InvalidParameter.ParameterConflict",
            "KeepImageLogin cannot be given with Password or KeyIds.",
        )
    return text == "true"


def _check_placement(
    region: RegionState, zone: str, vpc_id: str, subnet_id: str, groups: list[str]
) -> None:
    """The zone is in the region; VPC, subnet and security groups look like theirs."""
    if not zone.startswith(region.name + "-"):
        raise ApiError(
            "InvalidZone.MismatchRegion", f"The zone `{zone}` is not in the region {region.name}."
        )
    if not vpc_id.startswith("vpc-"):
        raise ApiError("InvalidParameterValue.VpcIdMalformed", f"Bad VpcId `{vpc_id}`.")
    if not subnet_id.startswith("subnet-"):
        raise ApiError("InvalidParameterValue.SubnetIdMalformed", f"Bad SubnetId `{subnet_id}`.")
    for group in groups:
        if not group.startswith("sg-"):
            raise ApiError(
                "InvalidSecurityGroupId.NotFound", f"The security group `{group}` does not exist."
            )


def _launchable_image(region: RegionState, image_id: str, *, keep_login: bool | None) -> Any:
    """The image to launch from: it exists, is NORMAL, and (for KeepImageLogin) custom."""
    image = region.images.get(image_id)
    if image is None:
        raise ApiError(
            "InvalidImageId.NotFound", f"The image `{image_id}` does not exist in {region.name}."
        )
    if image.state != "NORMAL":
        raise ApiError(
            "InvalidParameterValue.InvalidImageState", f"The image `{image_id}` is {image.state}."
        )
    if keep_login and image.image_type not in _CUSTOM_IMAGE_TYPES:
        raise ApiError(
            "InvalidParameter.ParameterConflict",
            "KeepImageLogin needs a custom, shared or imported image.",
        )
    return image


def _check_capacity(
    region: RegionState, switches: Any, instance_type: str, zone: str, count: int
) -> None:
    """The ``launch.sold_out_types`` and ``launch.instance_quota`` switches."""
    if instance_type in switches.sold_out_types:
        raise ApiError(
            "ResourceInsufficient.SpecifiedInstanceType",
            f"The instance type `{instance_type}` is sold out in {zone}.",
        )
    quota = switches.instance_quota
    if quota and len(region.instances) + count > quota:
        raise ApiError(
            "LimitExceeded.InstanceQuota",
            f"The instance quota of {region.name} ({quota}) would be exceeded.",
        )
