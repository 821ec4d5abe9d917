"""The values of RunInstances / DescribeInstances that restores and drills need.

Kept apart from :mod:`cvmkeeper.cloud.models` (what backups need): a restore needs an
instance's network placement (VPC, subnet, security groups), its type and private address,
and the operation it is busy with, none of which the backup side reads. Field names follow
the SDK's models (tencentcloud-sdk-python ``cvm/v20170312/models.py``: ``RunInstancesRequest``,
``Placement``, ``VirtualPrivateCloud``, ``LoginSettings``, ``DataDisk``, ``TagSpecification``,
``Instance``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cvmkeeper.cloud.models import ResponseFormatError, parse_created_time


@dataclass(frozen=True, slots=True)
class DataDiskFromSnapshot:
    """One data disk of a new instance, made from a snapshot of a whole-machine image."""

    snapshot_id: str
    size_gib: int
    disk_type: str = "CLOUD_PREMIUM"


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One RunInstances call: an instance from ``image_id``, placed like its source.

    ``client_token`` makes the call idempotent (the same token answers the same ids, so a
    retry after a lost answer never launches a second instance). ``keep_image_login``
    keeps the image's own login settings (models.py ``LoginSettings.KeepImageLogin``), so no
    password is generated or mailed.
    """

    image_id: str
    zone: str
    instance_type: str
    client_token: str
    vpc_id: str = ""
    subnet_id: str = ""
    security_group_ids: tuple[str, ...] = ()
    data_disks: tuple[DataDiskFromSnapshot, ...] = ()
    name: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    keep_image_login: bool = True
    dry_run: bool = False
    #: ``SystemDisk.DiskSize`` in GiB, 0 for the API's default (50 GiB, models.py)
    system_disk_gib: int = 0

    def to_params(self) -> dict[str, Any]:
        """The request body, as the SDK would serialize ``RunInstancesRequest``."""
        params: dict[str, Any] = {
            "ImageId": self.image_id,
            "Placement": {"Zone": self.zone},
            "InstanceType": self.instance_type,
            "InstanceChargeType": "POSTPAID_BY_HOUR",
            "InstanceCount": 1,
            "ClientToken": self.client_token,
            "LoginSettings": {"KeepImageLogin": "TRUE" if self.keep_image_login else "FALSE"},
        }
        if self.vpc_id and self.subnet_id:
            params["VirtualPrivateCloud"] = {"VpcId": self.vpc_id, "SubnetId": self.subnet_id}
        if self.security_group_ids:
            params["SecurityGroupIds"] = list(self.security_group_ids)
        if self.system_disk_gib:
            params["SystemDisk"] = {"DiskSize": self.system_disk_gib}
        if self.data_disks:
            params["DataDisks"] = [
                {
                    "DiskType": d.disk_type,
                    "DiskSize": d.size_gib,
                    "SnapshotId": d.snapshot_id,
                    "DeleteWithInstance": True,
                }
                for d in self.data_disks
            ]
        if self.name:
            params["InstanceName"] = self.name
        if self.tags:
            params["TagSpecification"] = [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
                }
            ]
        if self.dry_run:
            params["DryRun"] = True
        return params


@dataclass(frozen=True, slots=True)
class InstanceDetails:
    """One ``InstanceSet`` entry of DescribeInstances, with what a restore places by."""

    instance_id: str
    name: str
    state: str
    region: str
    zone: str
    instance_type: str
    vpc_id: str
    subnet_id: str
    security_group_ids: tuple[str, ...]
    private_ips: tuple[str, ...]
    image_id: str
    tags: Mapping[str, str]
    latest_operation: str = ""
    latest_operation_state: str = ""
    data_disk_ids: tuple[str, ...] = ()
    #: ``LatestOperationRequestId``: tells this call's operation from an earlier one of the
    #: same kind (a second ResetInstance to the same image looks like the first otherwise)
    latest_operation_request_id: str = ""
    #: ``DataDisks[].DiskType`` of each data disk, in ``data_disk_ids``' order
    data_disk_types: tuple[str, ...] = ()
    #: ``CreatedTime`` (``None`` when the API answered it null or empty): a drill sweep
    #: checks it against the lease, which only the launch sets
    created_time: datetime | None = None


def is_new_operation(details: InstanceDetails, prior_request_id: str) -> bool:
    """True when ``details``' latest operation is not the one that was latest before a call
    (``prior_request_id``, read then): a new ``LatestOperationRequestId``, or, from a cloud
    that names none, an operation still ``OPERATING`` (an earlier one has ended; the call
    being retried or waited for is the only one that can be running)."""
    if details.latest_operation_request_id or prior_request_id:
        return details.latest_operation_request_id != prior_request_id
    return details.latest_operation_state == "OPERATING"


def instance_details_from_api(item: Mapping[str, Any], region: str) -> InstanceDetails:
    """Build :class:`InstanceDetails` from one ``InstanceSet`` entry."""
    instance_id = item.get("InstanceId")
    if not instance_id:
        raise ResponseFormatError(f"instance without InstanceId: {sorted(item)}")
    placement = item.get("Placement") or {}
    vpc = item.get("VirtualPrivateCloud") or {}
    return InstanceDetails(
        instance_id=str(instance_id),
        name=str(item.get("InstanceName") or ""),
        state=str(item.get("InstanceState") or ""),
        region=region,
        zone=str(placement.get("Zone") or ""),
        instance_type=str(item.get("InstanceType") or ""),
        vpc_id=str(vpc.get("VpcId") or ""),
        subnet_id=str(vpc.get("SubnetId") or ""),
        security_group_ids=tuple(str(g) for g in item.get("SecurityGroupIds") or ()),
        private_ips=tuple(str(a) for a in item.get("PrivateIpAddresses") or ()),
        image_id=str(item.get("ImageId") or ""),
        tags={str(t["Key"]): str(t.get("Value") or "") for t in item.get("Tags") or ()},
        latest_operation=str(item.get("LatestOperation") or ""),
        latest_operation_state=str(item.get("LatestOperationState") or ""),
        latest_operation_request_id=str(item.get("LatestOperationRequestId") or ""),
        created_time=(
            parse_created_time(str(item["CreatedTime"])) if item.get("CreatedTime") else None
        ),
        data_disk_types=tuple(
            str(d.get("DiskType") or "")
            for d in item.get("DataDisks") or ()
            if isinstance(d, Mapping) and d.get("DiskId")
        ),
        data_disk_ids=tuple(
            str(d["DiskId"])
            for d in item.get("DataDisks") or ()
            if isinstance(d, Mapping) and d.get("DiskId")
        ),
    )
