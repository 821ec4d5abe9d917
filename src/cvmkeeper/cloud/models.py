"""Typed requests and results of the cloud client, and parsing of the API's JSON into them.

Images and instances come back as the core's :class:`~cvmkeeper.core.inventory.Image` and
:class:`~cvmkeeper.core.inventory.Instance`, so the planner never sees raw API dicts. The
parsing is strict where a wrong value would be dangerous (an image without an id is an
error, not a default) and lenient elsewhere (unknown states become ``UNKNOWN``, which the
core never deletes; a null ``CreatedTime``, which the SDK model allows, is ``None``, never
"now" or the epoch; a null or absent ``Tags`` is no tags).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from cvmkeeper.core.disks import Disk, ImageSnapshot
from cvmkeeper.core.inventory import Image, ImageState, Instance

log = logging.getLogger(__name__)


class ResponseFormatError(ValueError):
    """An API answer lacks a field cvmkeeper relies on."""


@dataclass(frozen=True, slots=True)
class CreateImageRequest:
    """Everything ``CreateImage`` takes, as cvmkeeper uses it.

    ``name`` is the deterministic slot name: it is what makes a retried create idempotent.
    """

    name: str
    instance_id: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    force_poweroff: bool = False
    data_disk_ids: tuple[str, ...] = ()
    dry_run: bool = False

    def to_params(self) -> dict[str, Any]:
        """The request body (``ForcePoweroff`` is a string "true"/"false", as the API wants)."""
        params: dict[str, Any] = {
            "ImageName": self.name,
            "InstanceId": self.instance_id,
            "ForcePoweroff": "true" if self.force_poweroff else "false",
        }
        if self.description:
            params["ImageDescription"] = self.description
        if self.data_disk_ids:
            params["DataDiskIds"] = list(self.data_disk_ids)
        if self.dry_run:
            params["DryRun"] = True
        if self.tags:
            params["TagSpecification"] = [
                {
                    "ResourceType": "image",
                    "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
                }
            ]
        return params


@dataclass(frozen=True, slots=True)
class CreateOutcome:
    """The image of a create. ``adopted`` is True when it existed already (an earlier attempt,
    a crashed run or a second daemon made it) and was found by its exact name."""

    image_id: str
    adopted: bool = False


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Which of the requested images this call deleted and which were already gone."""

    deleted: tuple[str, ...] = ()
    already_gone: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The copies of ``source_image_id``: destination region -> image id there.

    ``adopted`` lists destination regions whose copy existed already (found by name after an
    attempt whose answer was lost).
    """

    source_image_id: str
    copies: Mapping[str, str]
    adopted: tuple[str, ...] = ()


def parse_created_time(raw: str) -> datetime:
    """Parse ``CreatedTime`` (``...Z`` or ``...+00:00``, or naive meaning UTC) to aware UTC."""
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise ResponseFormatError(f"CreatedTime {raw!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _tags(raw: Any) -> Mapping[str, str]:
    if not raw:
        return MappingProxyType({})
    return MappingProxyType({str(t["Key"]): str(t.get("Value") or "") for t in raw})


def _required(item: Mapping[str, Any], key: str, what: str) -> Any:
    value = item.get(key)
    if value in (None, ""):
        raise ResponseFormatError(f"{what} without {key}: {sorted(item)}")
    return value


def image_from_api(item: Mapping[str, Any], region: str) -> Image:
    """Build an :class:`Image` from one ``ImageSet`` entry of ``DescribeImages``."""
    return Image(
        image_id=str(_required(item, "ImageId", "image")),
        name=str(item.get("ImageName") or ""),
        state=ImageState.parse(str(item.get("ImageState") or "")),
        created_time=_created_time(item),
        region=region,
        description=str(item.get("ImageDescription") or ""),
        image_type=str(item.get("ImageType") or ""),
        tags=_tags(item.get("Tags")),
        snapshot_ids=tuple(
            str(s["SnapshotId"]) for s in item.get("SnapshotSet") or () if s.get("SnapshotId")
        ),
        snapshots=tuple(
            ImageSnapshot(
                str(s["SnapshotId"]), str(s.get("DiskUsage") or ""), _int(s.get("DiskSize"))
            )
            for s in item.get("SnapshotSet") or ()
            if s.get("SnapshotId")
        ),
        creator=str(item.get("ImageCreator") or ""),
    )


def _created_time(item: Mapping[str, Any]) -> datetime | None:
    """``CreatedTime``, or ``None`` when the API answered it null or empty (the SDK model:
    "may return null"). Warned about for a usable image: until the time shows, the image
    is never taken as fresh coverage and never ordered as older than its slot."""
    raw = item.get("CreatedTime")
    if raw not in (None, ""):
        return parse_created_time(str(raw))
    if ImageState.parse(str(item.get("ImageState") or "")).usable:
        log.warning(
            "image %s (%s) is listed without CreatedTime: it does not count as a fresh "
            "backup until the cloud reports when it was made",
            item.get("ImageId"),
            item.get("ImageName"),
        )
    return None


def _int(raw: Any) -> int:
    """A size that may be null or absent: 0 then (never a reason to fail a listing)."""
    try:
        return int(raw or 0)
    except (TypeError, ValueError):
        return 0


def _disk(raw: Any) -> Disk | None:
    """A ``SystemDisk`` / ``DataDisks`` entry (``DiskId``, ``DiskType``, ``DiskSize``)."""
    if not isinstance(raw, Mapping) or not raw.get("DiskId"):
        return None
    return Disk(str(raw["DiskId"]), str(raw.get("DiskType") or ""), _int(raw.get("DiskSize")))


def instance_from_api(item: Mapping[str, Any], region: str) -> Instance:
    """Build an :class:`Instance` from one ``InstanceSet`` entry of ``DescribeInstances``."""
    placement = item.get("Placement") or {}
    return Instance(
        instance_id=str(_required(item, "InstanceId", "instance")),
        name=str(item.get("InstanceName") or ""),
        state=str(item.get("InstanceState") or ""),
        region=region,
        zone=str(placement.get("Zone") or ""),
        tags=_tags(item.get("Tags")),
        system_disk=_disk(item.get("SystemDisk")),
        data_disks=tuple(
            disk for disk in (_disk(d) for d in item.get("DataDisks") or ()) if disk is not None
        ),
    )
