"""The emulator's mutable state, and how each record looks on the wire.

Records are plain dataclasses that the core mutates under its lock. ``to_api`` renders
them exactly as ``DescribeImages`` / ``DescribeInstances`` return them, so the SDK's typed
models deserialize every field; ``to_json``/``from_json`` are for the state file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

SYSTEM_DISK_GIB = 50
DATA_DISK_GIB = 100


def api_time(when: datetime) -> str:
    """Format a time the way CVM does: ISO 8601, UTC, seconds, ``Z``."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(raw: str) -> datetime:
    """Parse a time written by :func:`api_time` or ``isoformat``."""
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def api_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """Render a tag mapping as the API's ``[{"Key", "Value"}]`` list."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


@dataclass
class SnapshotRecord:
    """A snapshot behind an image (system or data disk). ``disk_id`` is the disk it was
    taken of: the emulator keeps it to count snapshots per disk, but the API's
    ``SnapshotSet`` does not show it (SDK ``Snapshot``: SnapshotId, DiskUsage, DiskSize)."""

    snapshot_id: str
    disk_usage: str  # SYSTEM_DISK | DATA_DISK
    disk_size: int
    disk_id: str = ""

    def to_api(self) -> dict[str, Any]:
        """Render as an entry of ``Image.SnapshotSet``."""
        return {
            "SnapshotId": self.snapshot_id,
            "DiskUsage": self.disk_usage,
            "DiskSize": self.disk_size,
        }


#: the optional times of an ``ImageRecord`` (``None`` or an aware datetime)
_OPTIONAL_TIMES = ("ready_at", "visible_at", "tags_visible_at")


@dataclass
class ImageRecord:
    """One image in one region.

    ``ready_at`` is when a pending transition happens: ``CREATING`` becomes ``NORMAL`` (or
    ``CREATEFAILED`` when ``will_fail``), ``SYNCING`` returns to ``NORMAL``, a ``DELETING``
    image is gone. ``visible_at``: before it, ``DescribeImages`` does not list the image;
    ``tags_visible_at``: before it, the image is listed without its tags (the
    ``fleet.OpenPoints`` lag switches; ``None``: at once).
    """

    image_id: str
    name: str
    region: str
    state: str
    created_time: datetime
    description: str = ""
    image_type: str = "PRIVATE_IMAGE"
    source: str = "CREATE_IMAGE"
    instance_id: str = ""
    os_name: str = "TencentOS Server 3.1 (TK4)"
    tags: dict[str, str] = field(default_factory=dict)
    snapshots: list[SnapshotRecord] = field(default_factory=list)
    shared: bool = False
    ready_at: datetime | None = None
    will_fail: bool = False
    syncing_copies: int = 0
    #: the UIN whose key created it: DescribeImages' ``ImageCreator``
    creator: str = "100000000001"
    visible_at: datetime | None = None
    tags_visible_at: datetime | None = None

    def listed(self, now: datetime) -> bool:
        """True when ``DescribeImages`` lists the image at ``now``."""
        return self.visible_at is None or self.visible_at <= now

    def tags_at(self, now: datetime | None) -> dict[str, str]:
        """The tags ``DescribeImages`` shows at ``now`` (``None``: the truth)."""
        if now is not None and self.tags_visible_at is not None and now < self.tags_visible_at:
            return {}
        return self.tags

    #: False for a seeded image whose fleet entry gave no ``created_time``: under the
    #: ``null_fields`` switch its ``CreatedTime`` is answered null
    created_time_known: bool = True

    @property
    def counts_against_quota(self) -> bool:
        """Own custom images count against the quota, whatever their state."""
        return self.image_type == "PRIVATE_IMAGE"

    def to_api(self, now: datetime | None = None) -> dict[str, Any]:
        """Render as an ``ImageSet`` entry of ``DescribeImages`` at ``now`` (tags not yet
        visible are left out); without ``now``, the truth (the state document)."""
        size = sum(s.disk_size for s in self.snapshots) or SYSTEM_DISK_GIB
        return {
            "ImageId": self.image_id,
            "OsName": self.os_name,
            "ImageType": self.image_type,
            "CreatedTime": api_time(self.created_time),
            "ImageName": self.name,
            "ImageDescription": self.description,
            "ImageSize": size,
            "Architecture": "x86_64",
            "ImageState": self.state,
            "Platform": "TencentOS",
            "ImageCreator": self.creator if self.image_type == "PRIVATE_IMAGE" else "",
            "ImageSource": self.source,
            "SyncPercent": 0 if self.state in ("CREATING", "SYNCING") else 100,
            "IsSupportCloudinit": True,
            "SnapshotSet": [s.to_api() for s in self.snapshots],
            "Tags": api_tags(self.tags_at(now)),
            "LicenseType": "TencentCloud",
            "ImageFamily": "",
            "ImageDeprecated": False,
            "CdcCacheStatus": "",
        }

    def to_api_nulled(self, now: datetime | None = None) -> dict[str, Any]:
        """``to_api`` (at ``now``) as the ``null_fields`` switch answers it (issue #18):
        ``SyncPercent`` null, ``CreatedTime`` null while not ``NORMAL`` or when the fleet gave
        none, and no ``Tags`` key at all when there are no tags (or none shows yet; the SDK
        model: "may return null")."""
        entry = self.to_api(now)
        entry["SyncPercent"] = None
        if self.state != "NORMAL" or not self.created_time_known:
            entry["CreatedTime"] = None
        if not self.tags_at(now):
            del entry["Tags"]
        return entry

    def to_json(self) -> dict[str, Any]:
        """Serialize every field for the state file."""
        data = asdict(self)
        data["created_time"] = self.created_time.isoformat()
        for key in _OPTIONAL_TIMES:
            value = getattr(self, key)
            data[key] = value.isoformat() if value else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        """Rebuild a record written by :meth:`to_json`."""
        data = dict(data)
        data["created_time"] = parse_time(data["created_time"])
        for key in _OPTIONAL_TIMES:
            data[key] = parse_time(data[key]) if data.get(key) else None
        data["snapshots"] = [SnapshotRecord(**s) for s in data.get("snapshots", [])]
        return cls(**data)


@dataclass
class DiskRecord:
    """One data disk attached to an instance."""

    disk_id: str
    disk_type: str = "CLOUD_PREMIUM"
    size: int = DATA_DISK_GIB

    @property
    def local(self) -> bool:
        """A local disk: ``CreateImage`` refuses it in ``DataDiskIds``."""
        return self.disk_type.startswith("LOCAL_")

    def to_api(self) -> dict[str, Any]:
        """Render as an entry of ``DataDisks`` (DescribeInstances)."""
        return {
            "DiskType": self.disk_type,
            "DiskId": self.disk_id,
            "DiskSize": self.size,
            "DeleteWithInstance": True,
            "Encrypt": False,
        }


@dataclass
class InstanceRecord:
    """One CVM instance. ``ready_at`` ends a ``STOPPING``/``STARTING`` transition."""

    instance_id: str
    name: str
    region: str
    zone: str
    state: str
    created_time: datetime
    tags: dict[str, str] = field(default_factory=dict)
    not_supported: bool = False
    instance_type: str = "S5.MEDIUM4"
    os_name: str = "TencentOS Server 3.1 (TK4)"
    data_disks: list[DiskRecord] = field(default_factory=list)
    system_disk_id: str = ""
    system_disk_size: int = SYSTEM_DISK_GIB
    private_ip: str = "10.0.0.2"
    ready_at: datetime | None = None
    latest_operation: str = ""
    latest_operation_state: str = ""
    latest_operation_request_id: str = ""
    # what RunInstances gives a new instance (issue #16); seeded ones keep these defaults
    vpc_id: str = "vpc-emulator"
    subnet_id: str = "subnet-emulator"
    security_group_ids: list[str] = field(default_factory=lambda: ["sg-emulator"])
    image_id: str = "img-9qrfy1xt"
    keep_image_login: bool | None = None
    #: the state ``ready_at`` leads to when it is not the usual one (``emulator/launch.py``:
    #: ``LAUNCH_FAILED``, ``TERMINATED`` = removed, the prior state after a reset)
    next_state: str = ""

    def to_api(self) -> dict[str, Any]:
        """Render as an ``InstanceSet`` entry of ``DescribeInstances``."""
        return {
            "Placement": {"Zone": self.zone, "ProjectId": 0, "HostIds": None, "HostId": None},
            "InstanceId": self.instance_id,
            "InstanceType": self.instance_type,
            "CPU": 2,
            "Memory": 4,
            "RestrictState": "NORMAL",
            "InstanceName": self.name,
            "InstanceChargeType": "POSTPAID_BY_HOUR",
            "SystemDisk": {
                "DiskType": "CLOUD_PREMIUM",
                "DiskId": self.system_disk_id,
                "DiskSize": self.system_disk_size,
            },
            "DataDisks": [disk.to_api() for disk in self.data_disks],
            "PrivateIpAddresses": [self.private_ip],
            "PublicIpAddresses": None,
            "InternetAccessible": {
                "InternetChargeType": "TRAFFIC_POSTPAID_BY_HOUR",
                "InternetMaxBandwidthOut": 0,
                "PublicIpAssigned": False,
            },
            "VirtualPrivateCloud": {
                "VpcId": self.vpc_id,
                "SubnetId": self.subnet_id,
                "AsVpcGateway": False,
                "PrivateIpAddresses": None,
            },
            "ImageId": self.image_id,
            "RenewFlag": None,
            "CreatedTime": api_time(self.created_time),
            "ExpiredTime": None,
            "OsName": self.os_name,
            "SecurityGroupIds": list(self.security_group_ids),
            "LoginSettings": {
                "Password": None,
                "KeyIds": None,
                "KeepImageLogin": None
                if self.keep_image_login is None
                else str(self.keep_image_login).upper(),
            },
            "InstanceState": self.state,
            "Tags": api_tags(self.tags),
            "StopChargingMode": "NOT_APPLICABLE",
            "Uuid": f"00000000-0000-4000-8000-{self.instance_id.encode().hex()[-12:]:0>12}",
            "LatestOperation": self.latest_operation or None,
            "LatestOperationState": self.latest_operation_state or None,
            "LatestOperationRequestId": self.latest_operation_request_id or None,
            "DisasterRecoverGroupId": "",
            "IPv6Addresses": None,
            "CamRoleName": "",
            "HpcClusterId": "",
            "RdmaIpAddresses": None,
            "DedicatedClusterId": "",
            "IsolatedSource": "NOTISOLATED",
            "GPUInfo": None,
            "LicenseType": "TencentCloud",
            "DisableApiTermination": False,
            "HostName": self.name,
            "DefaultLoginUser": "root",
            "DefaultLoginPort": 22,
            "LatestOperationErrorMsg": None,
        }

    def to_json(self) -> dict[str, Any]:
        """Serialize every field for the state file."""
        data = asdict(self)
        data["created_time"] = self.created_time.isoformat()
        data["ready_at"] = self.ready_at.isoformat() if self.ready_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceRecord:
        """Rebuild a record written by :meth:`to_json` (or by an older emulator, whose
        ``data_disk_ids`` become default disks)."""
        data = dict(data)
        legacy = [DiskRecord(d) for d in data.pop("data_disk_ids", None) or []]
        data["data_disks"] = [DiskRecord(**d) for d in data.get("data_disks") or []] + legacy
        data["created_time"] = parse_time(data["created_time"])
        data["ready_at"] = parse_time(data["ready_at"]) if data.get("ready_at") else None
        return cls(**data)


@dataclass
class RegionState:
    """Everything one region holds. ``leftover_snapshots`` are snapshots of deleted images
    that were kept because ``DeleteBindedSnap`` was false (they would still be billed);
    ``leftover_disks`` maps each of them to its disk (for the per-disk snapshot quota)."""

    name: str
    quota: int
    instances: dict[str, InstanceRecord] = field(default_factory=dict)
    images: dict[str, ImageRecord] = field(default_factory=dict)
    leftover_snapshots: list[str] = field(default_factory=list)
    leftover_disks: dict[str, str] = field(default_factory=dict)
    #: RunInstances ``ClientToken`` -> the instance ids it launched (idempotency)
    client_tokens: dict[str, list[str]] = field(default_factory=dict)

    def snapshots_of(self, disk_id: str) -> int:
        """Snapshots of ``disk_id`` in this region: behind images, and left over."""
        behind = sum(
            1
            for image in self.images.values()
            for snapshot in image.snapshots
            if snapshot.disk_id == disk_id
        )
        return behind + sum(1 for d in self.leftover_disks.values() if d == disk_id)

    def quota_used(self) -> int:
        """Images counted against the custom-image quota (every state)."""
        return sum(1 for image in self.images.values() if image.counts_against_quota)

    def to_json(self) -> dict[str, Any]:
        """Serialize the region for the state file."""
        return {
            "name": self.name,
            "quota": self.quota,
            "instances": [i.to_json() for i in self.instances.values()],
            "images": [i.to_json() for i in self.images.values()],
            "leftover_snapshots": list(self.leftover_snapshots),
            "leftover_disks": dict(self.leftover_disks),
            "client_tokens": dict(self.client_tokens),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegionState:
        """Rebuild a region written by :meth:`to_json`."""
        region = cls(
            name=data["name"],
            quota=int(data["quota"]),
            leftover_snapshots=list(data.get("leftover_snapshots", [])),
            leftover_disks=dict(data.get("leftover_disks", {})),
            client_tokens=dict(data.get("client_tokens", {})),
        )
        for raw in data.get("instances", []):
            instance = InstanceRecord.from_json(raw)
            region.instances[instance.instance_id] = instance
        for raw in data.get("images", []):
            image = ImageRecord.from_json(raw)
            region.images[image.image_id] = image
        return region
