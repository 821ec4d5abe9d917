"""What a backup holds: the disks of an instance, which of them go into its image, and why.

docs/design.md rule 10: a backup holds the whole machine unless the policy says otherwise: the
system disk and every CBS data disk attached at the slot. A disk that cannot be imaged is
reported, never silently left out. This module is the pure part of that rule: it takes the
instance as ``DescribeInstances`` showed it (``SystemDisk``, ``DataDisks``) and the policies
targeting it, and returns the ``DataDiskIds`` to send plus every disk left out with the
reason; it also reads back what an image holds from its ``SnapshotSet``.

What Tencent documents (sources, as read for issue #15):

- ``CreateImage.DataDiskIds``: "data disk ids to include in a whole-machine image created
  from the instance; only disks of that instance" (tencentcloud-sdk-python
  ``tencentcloud/cvm/v20170312/models.py`` ``CreateImageRequest``). Its error list
  (tencentcloud-sdk-go ``tencentcloud/cvm/v20170312/client.go``, ``CreateImage``) has
  ``InvalidParameter.DataDiskNotBelongSpecifiedInstance`` (a disk not on the instance),
  ``InvalidParameter.LocalDataDiskNotSupport`` ("local data disks cannot be used to create
  instance images") and ``InvalidParameter.DataDiskIdContainsRootDisk`` (the system disk
  listed as a data disk). So only cloud (CBS) data disks can be in an image.
- ``DataDisk.DiskType`` values (same ``models.py``): ``LOCAL_BASIC``, ``LOCAL_SSD``,
  ``LOCAL_NVME``, ``LOCAL_PRO`` are local disks; ``CLOUD_*`` are CBS disks.
- ``Image.SnapshotSet`` entries (``models.py`` ``Snapshot``) carry ``SnapshotId``,
  ``DiskUsage`` (``SYSTEM_DISK``/``DATA_DISK``) and ``DiskSize`` -- not the disk id. So the
  ids of the disks asked for are recorded by cvmkeeper in the image's ``cvmkeeper:disks``
  tag, and what the image really holds is counted from its ``SnapshotSet``.
- CBS snapshots: "each CBS disk can save up to 64 snapshots" (Tencent Cloud CBS
  "Commercialization FAQs", https://www.tencentcloud.com/document/product/362/32413), and
  "images use the CBS snapshot service for data storage" (same page). Whether the snapshots
  behind images count against those 64 is not documented: cvmkeeper warns before an
  instance's images could reach it (:data:`SNAPSHOTS_PER_DISK`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

#: The tag in which cvmkeeper records the data disks it asked ``CreateImage`` to include.
TAG_DISKS = "cvmkeeper:disks"
#: Tencent tag values are "letters, digits, spaces or Chinese characters, and +-=._:/@", at
#: most 127 characters in the stricter of Tencent's pages (tag overview,
#: https://cloud.tencent.com/document/product/597/33355): so the ids are joined with ``+``
#: (a comma is not allowed), and beyond 127 characters only their count is recorded.
TAG_VALUE_LIMIT = 127
TAG_SEPARATOR = "+"
#: The documented per-disk CBS snapshot quota (see the module docstring).
SNAPSHOTS_PER_DISK = 64
#: ``DiskUsage`` values of ``Image.SnapshotSet``.
SYSTEM_DISK = "SYSTEM_DISK"
DATA_DISK = "DATA_DISK"
#: ``CreateImage`` refuses local data disks with this code (sdk-go ``client.go``).
LOCAL_DISK_CODE = "InvalidParameter.LocalDataDiskNotSupport"


@dataclass(frozen=True, slots=True)
class Disk:
    """One disk of an instance as ``DescribeInstances`` shows it (``SystemDisk``/``DataDisks``)."""

    disk_id: str
    disk_type: str = ""
    size_gib: int = 0

    @property
    def local(self) -> bool:
        """A local disk (``LOCAL_*``): ``CreateImage`` cannot include it."""
        return self.disk_type.upper().startswith("LOCAL_")

    def describe(self) -> str:
        """``disk-1a2b3c4d (CLOUD_PREMIUM, 100 GiB)``."""
        details = ", ".join(
            part
            for part in (self.disk_type, f"{self.size_gib} GiB" if self.size_gib else "")
            if part
        )
        return f"{self.disk_id} ({details})" if details else self.disk_id


@dataclass(frozen=True, slots=True)
class ImageSnapshot:
    """One entry of an image's ``SnapshotSet``: a snapshot of one disk of the instance."""

    snapshot_id: str
    usage: str  # SYSTEM_DISK | DATA_DISK
    size_gib: int = 0


class DiskMode(StrEnum):
    """Which disks a policy's images hold (the policy key ``disks``)."""

    ALL = "all"
    """The system disk and every CBS data disk attached at the slot (the default)."""
    SYSTEM = "system"
    """The system disk only."""
    INCLUDE = "include"
    """The system disk and the listed data disks."""
    EXCLUDE = "exclude"
    """The system disk and every CBS data disk attached at the slot except the listed ones."""


@dataclass(frozen=True, slots=True)
class DiskSelection:
    """The policy key ``disks``: a mode, and the disk ids of ``include``/``exclude``."""

    mode: DiskMode = DiskMode.ALL
    disk_ids: tuple[str, ...] = ()

    def describe(self) -> str:
        """``all``, ``system``, ``include disk-a,disk-b`` ... (for summaries)."""
        if self.mode in (DiskMode.ALL, DiskMode.SYSTEM):
            return self.mode.value
        return f"{self.mode.value} {','.join(self.disk_ids)}"


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A data disk a policy wants (or would want) that the image will not hold, and why."""

    disk_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DiskChoice:
    """What ``CreateImage`` gets for one instance: ``data_disk_ids`` (in the instance's
    order), and the disks the policies want that cannot be included (``left_out``)."""

    data_disk_ids: tuple[str, ...] = ()
    left_out: tuple[LeftOut, ...] = field(default=())

    @property
    def tag_value(self) -> str:
        """The ``cvmkeeper:disks`` tag value: the ids, or their count if too long for a tag,
        and ``0`` when no data disk is asked (Tencent's tag rules refuse an empty value)."""
        text = TAG_SEPARATOR.join(self.data_disk_ids)
        return text if 0 < len(text) <= TAG_VALUE_LIMIT else str(len(self.data_disk_ids))


def choose_disks(
    system_disk: Disk | None, data_disks: Sequence[Disk], selections: Iterable[DiskSelection]
) -> DiskChoice:
    """The data disks one image of an instance holds, for every policy targeting it.

    Several policies may be due for one instance at one slot and share its image: it holds
    every disk any of them asks for (the union), so no policy gets less than it asked. Local disks
    are left out (``CreateImage`` refuses them), as are listed disks that are not attached
    and a listed system disk; each is named in ``left_out`` so it is reported, never silent.
    """
    attached = {disk.disk_id: disk for disk in data_disks}
    wanted: dict[str, None] = {}
    left_out: dict[str, str] = {}
    for selection in selections:
        if selection.mode is DiskMode.SYSTEM:
            continue
        if selection.mode is DiskMode.INCLUDE:
            for disk_id in selection.disk_ids:
                if system_disk is not None and disk_id == system_disk.disk_id:
                    left_out.setdefault(disk_id, "is the system disk (always in the image)")
                elif disk_id not in attached:
                    left_out.setdefault(disk_id, "is listed in disks.include but not attached")
                else:
                    wanted[disk_id] = None
            continue
        excluded = set(selection.disk_ids) if selection.mode is DiskMode.EXCLUDE else set()
        for disk in data_disks:
            if disk.disk_id not in excluded:
                wanted[disk.disk_id] = None
    chosen: list[str] = []
    for disk in data_disks:
        if disk.disk_id not in wanted:
            continue
        if disk.local:
            left_out.setdefault(
                disk.disk_id,
                f"is a local disk ({disk.disk_type}); CreateImage refuses local data disks "
                f"({LOCAL_DISK_CODE})",
            )
        else:
            chosen.append(disk.disk_id)
    return DiskChoice(
        data_disk_ids=tuple(chosen),
        left_out=tuple(LeftOut(d, reason) for d, reason in left_out.items() if d not in chosen),
    )


def asked_disk_count(tags: Mapping[str, str]) -> int | None:
    """How many data disks cvmkeeper asked for when it made the image (``cvmkeeper:disks``),
    or ``None`` for an image made before the tag existed (or by hand)."""
    if TAG_DISKS not in tags:
        return None
    value = tags[TAG_DISKS].strip()
    if not value:
        return 0
    if value.isdigit():
        return int(value)
    return len(_split(value))


def asked_disk_ids(tags: Mapping[str, str]) -> tuple[str, ...]:
    """The data disk ids recorded in ``cvmkeeper:disks`` (empty when only a count fits)."""
    value = tags.get(TAG_DISKS, "").strip()
    if not value or value.isdigit():
        return ()
    return _split(value)


def _split(value: str) -> tuple[str, ...]:
    """The ids of a tag value (``+``-joined; a ``,`` is read too, for hand-written tags)."""
    return tuple(part for part in value.replace(",", TAG_SEPARATOR).split(TAG_SEPARATOR) if part)


def held_data_disks(snapshots: Sequence[ImageSnapshot]) -> int:
    """How many data disks an image holds: its ``DATA_DISK`` snapshots."""
    return sum(1 for snapshot in snapshots if snapshot.usage == DATA_DISK)


def shortfall(
    tags: Mapping[str, str], snapshots: Sequence[ImageSnapshot]
) -> tuple[int, int] | None:
    """``(asked, held)`` when an image holds fewer data disks than cvmkeeper asked for, else
    ``None``. An image without a ``SnapshotSet`` (not reported, or still being made) or
    without the tag cannot be judged and gives ``None``."""
    asked = asked_disk_count(tags)
    if asked is None or not snapshots:
        return None
    held = held_data_disks(snapshots)
    return (asked, held) if held < asked else None


def describe_snapshots(snapshots: Sequence[ImageSnapshot]) -> str:
    """What an image holds, shortly: ``system 50G + data 100G`` (``?`` when unknown)."""
    if not snapshots:
        return "?"
    system = [s for s in snapshots if s.usage == SYSTEM_DISK]
    data = [s for s in snapshots if s.usage != SYSTEM_DISK]
    parts = [f"system {s.size_gib}G" for s in system]
    parts += [f"data {s.size_gib}G" for s in data]
    return " + ".join(parts)


def snapshots_json(snapshots: Sequence[ImageSnapshot]) -> list[dict[str, object]]:
    """The ``disks`` list of the JSON outputs: one ``{snapshot_id, usage, size_gib}`` each."""
    return [
        {"snapshot_id": s.snapshot_id, "usage": s.usage, "size_gib": s.size_gib} for s in snapshots
    ]


#: Why ``SyncImages`` may refuse a whole-machine image, by error code (sdk-go cvm
#: ``client.go``, SyncImages' error list; when the cloud uses them is not documented).
SYNC_REFUSALS: Mapping[str, str] = {
    "InvalidParameter.InstanceImageNotSupport": (
        "SyncImages does not copy whole-machine images (images holding data disks) here; "
        "the copy needs `disks: system` on the policy, or the data disks copied another way"
    ),
    "InvalidImageId.TooLarge": (
        "the image, with its data disks, is larger than SyncImages copies; copy fewer disks "
        "(`disks:`) or drop this copy"
    ),
}


def sync_refusal_hint(code: str) -> str:
    """`` (why, and what to do)`` for a SyncImages refusal of a whole-machine image, or ``""``."""
    reason = SYNC_REFUSALS.get(code)
    return f" ({reason})" if reason else ""
