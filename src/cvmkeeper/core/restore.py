"""Restore decisions, pure: which image is the restore point, and how it comes back.

``cvmkeeper restore`` and the restore drills read the cloud, then ask this module, which
takes values and returns values with reasons (docs/design.md "The shape of the program":
a pure core, a thin shell):

- :func:`choose_restore_point` picks one of an instance's managed images: by id, by slot,
  "as of" a time (the newest ``NORMAL`` image made at or before it, by ``CreatedTime``: when
  the image was really made, as for freshness), or the newest ``NORMAL`` one. It refuses,
  saying why, when there is none, when the image is not cvmkeeper's, or is another
  instance's, or is not ``NORMAL``.
- :func:`plan_launch` places a new instance like its source (zone, type, VPC, subnet,
  security groups) unless overridden, with the data disks of a whole-machine image made
  from its snapshots, every choice with its reason.
- :func:`plan_in_place` says what putting the source instance itself back takes, and
  refuses an image holding data disks unless the caller accepts that only the system disk
  is restored: ResetInstance re-installs the system disk only, and Tencent has no call that
  rolls attached data disks back in the same step (CBS ``ApplySnapshot`` rolls one disk back
  to one of its snapshots, with an elastic disk detached or the instance stopped:
  tencentcloud-sdk-go ``tencentcloud/cbs/v20170312/client.go``; done by hand, see
  :data:`DATA_DISK_HELP`, because cvmkeeper does not speak the CBS API and the image's
  ``SnapshotSet`` does not say which disk each snapshot was taken of).

Nothing here deletes or changes an image: restore only reads images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cvmkeeper.core.disks import asked_disk_count, asked_disk_ids, held_data_disks
from cvmkeeper.core.inventory import Image
from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat
from cvmkeeper.core.ownership import ManagedImage, classify_image

#: The tag every instance that restore launches carries: the image it came from.
RESTORED_FROM_TAG = "cvmkeeper:restored-from"
#: Disk type for data disks made from snapshots when neither ``--data-disk-type`` nor the
#: source instance says one (the ``SnapshotSet`` does not say the type).
DATA_DISK_TYPE = "CLOUD_PREMIUM"

DATA_DISK_HELP = (
    "ResetInstance re-installs the system disk only; the data disks are NOT rolled back. "
    "To roll a data disk back by hand: stop the instance (or detach the disk), then roll the "
    "disk back to its snapshot listed above (CBS console: Snapshots > Roll back; API: CBS "
    "ApplySnapshot with SnapshotId and DiskId), and start the instance. Or restore with "
    "--new: the new instance gets every data disk from the image's snapshots."
)


class RestoreRefused(ValueError):
    """A restore that cannot or must not be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """The image a restore uses, and why it was chosen."""

    image: Image
    slot: datetime
    reason: str

    @property
    def image_id(self) -> str:
        """The chosen image's id."""
        return self.image.image_id

    @property
    def data_snapshots(self) -> tuple[tuple[str, int], ...]:
        """(snapshot id, size GiB) of each data disk the image holds."""
        return tuple(
            (s.snapshot_id, s.size_gib) for s in self.image.snapshots if s.usage == "DATA_DISK"
        )


def managed_images_of(
    images: Iterable[Image], instance_id: str, fmt: NameFormat = DEFAULT_FORMAT
) -> list[ManagedImage]:
    """cvmkeeper's images of ``instance_id``, newest (by ``CreatedTime``, then slot) first.

    ``CreatedTime`` has one-second resolution, so two slots made back to back can share it;
    the later slot is then the newer, as the rotation and ``images`` say (ordering such a tie
    by image id picked an older backup as "the newest NORMAL image")."""
    owned = (classify_image(image, fmt) for image in images)
    return sorted(
        (m for m in owned if m is not None and m.instance_id == instance_id),
        # an image without CreatedTime (null, issue #18) is placed by its slot
        key=lambda m: (m.image.created_time or m.slot, m.slot, m.image_id),
        reverse=True,
    )


def choose_restore_point(
    images: Iterable[Image],
    instance_id: str,
    region: str,
    *,
    image_id: str | None = None,
    slot: datetime | None = None,
    as_of: datetime | None = None,
    fmt: NameFormat = DEFAULT_FORMAT,
) -> RestorePoint:
    """The restore point of ``instance_id`` among ``images`` (one region's), or raise
    :class:`RestoreRefused`. At most one of ``image_id``, ``slot``, ``as_of`` is given."""
    images = tuple(images)
    managed = managed_images_of(images, instance_id, fmt)
    if image_id:
        image = next((i for i in images if i.image_id == image_id), None)
        if image is None:
            raise RestoreRefused(f"image {image_id} does not exist in {region}")
        owned = classify_image(image, fmt)
        if owned is None:
            raise RestoreRefused(
                f"image {image_id} ({image.name}) was not made by cvmkeeper; restore only uses "
                "cvmkeeper's own images (restore another image with the Tencent console)"
            )
        if owned.instance_id != instance_id:
            raise RestoreRefused(
                f"image {image_id} is a backup of {owned.instance_id}, not of {instance_id}"
            )
        return _usable(owned, f"--image {image_id}")
    if slot is not None:
        match = [m for m in managed if m.slot == slot]
        if not match:
            slots = ", ".join(m.slot.strftime("%Y-%m-%dT%H:%MZ") for m in managed[:5])
            raise RestoreRefused(
                f"{instance_id} has no image of slot "
                f"{slot.strftime('%Y-%m-%dT%H:%MZ')} in {region}"
                + (f" (newest slots: {slots})" if slots else "")
            )
        return _usable(match[0], f"--slot {slot.strftime('%Y-%m-%dT%H:%MZ')}")
    normal = [m for m in managed if m.image.state.usable]
    if as_of is not None:
        # an image that does not say when it was made is never "made at or before" anything
        before = [
            m for m in normal if m.image.created_time is not None and m.image.created_time <= as_of
        ]
        if not before:
            raise RestoreRefused(
                f"{instance_id} has no NORMAL image made at or before "
                f"{as_of.strftime('%Y-%m-%dT%H:%M:%SZ')} in {region}" + _states_text(managed)
            )
        chosen = before[0]
        return RestorePoint(
            chosen.image,
            chosen.slot,
            f"newest NORMAL image made at or before {as_of.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        )
    if not normal:
        raise RestoreRefused(
            f"{instance_id} has no NORMAL image in {region}" + _states_text(managed)
        )
    return RestorePoint(normal[0].image, normal[0].slot, "newest NORMAL image")


def _usable(owned: ManagedImage, asked: str) -> RestorePoint:
    if not owned.image.state.usable:
        raise RestoreRefused(
            f"image {owned.image_id} is {owned.image.state.value}; only a "
            "NORMAL image can be restored"
        )
    return RestorePoint(owned.image, owned.slot, asked)


def _states_text(managed: list[ManagedImage]) -> str:
    if not managed:
        return " (cvmkeeper has made no image of it there)"
    states = ", ".join(f"{m.image_id} {m.image.state.value}" for m in managed[:5])
    return f" (its images: {states})"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where and how an instance runs: what a new instance copies from its source."""

    zone: str = ""
    instance_type: str = ""
    vpc_id: str = ""
    subnet_id: str = ""
    security_group_ids: tuple[str, ...] = ()
    #: the type of the data disks made from the image's snapshots: the source's when all of
    #: its cloud data disks share one (the ``SnapshotSet`` does not say which snapshot is
    #: which disk, so a mixed source gives none), or ``--data-disk-type``
    data_disk_type: str = ""


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """What RunInstances gets for a restore, and why each value."""

    region: str
    image_id: str
    placement: Placement
    data_disks: tuple[tuple[str, int], ...]  # (snapshot id, size GiB)
    tags: Mapping[str, str] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    data_disk_type: str = DATA_DISK_TYPE
    warnings: tuple[str, ...] = ()
    #: ``SystemDisk.DiskSize``: the image's system disk when larger than the API's default
    #: (0: the default)
    system_disk_gib: int = 0


#: RunInstances' system disk size when none is given (models.py ``SystemDisk.DiskSize``:
#: "默认值为 50"): an image with a larger system disk needs it asked for.
DEFAULT_SYSTEM_DISK_GIB = 50


def system_disk_size(image: Image) -> int:
    """The system disk size a new instance from ``image`` needs: its system snapshot's when
    larger than :data:`DEFAULT_SYSTEM_DISK_GIB`, else 0 (the default fits)."""
    sizes = [s.size_gib for s in image.snapshots if s.usage == "SYSTEM_DISK"]
    size = max(sizes, default=0)
    return size if size > DEFAULT_SYSTEM_DISK_GIB else 0


def missing_disks_warning(image: Image) -> str:
    """Why a restore from ``image`` brings back fewer data disks than the backup was asked
    to hold ("" when it brings back all): the image holds fewer than its ``cvmkeeper:disks``
    tag asked, or the cloud did not report its ``SnapshotSet`` (then none can be made).
    Said before the launch, so that nobody finds a disk missing on the restored machine."""
    asked = asked_disk_count(image.tags)
    if not asked:
        return ""
    ids = asked_disk_ids(image.tags)
    named = f" ({', '.join(ids)})" if ids else ""
    if not image.snapshots:
        return (
            f"the cloud did not report the SnapshotSet of {image.image_id}, which was asked to "
            f"hold {asked} data disk(s){named}: the new instance gets the system disk only"
        )
    held = held_data_disks(image.snapshots)
    if held >= asked:
        return ""
    return (
        f"{image.image_id} holds {held} of the {asked} data disk(s) asked for{named}: the "
        "new instance lacks the others"
    )


def plan_launch(
    region: str,
    point: RestorePoint,
    source: Placement | None,
    overrides: Placement,
    *,
    extra_tags: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """Place a new instance from ``point``: each value from ``overrides`` if given, else from
    the ``source`` instance (``None`` when it no longer exists). Raises
    :class:`RestoreRefused` naming what is missing or wrong."""
    base = source or Placement()
    reasons: list[str] = []
    values: dict[str, object] = {}
    for key, option in (
        ("zone", "--zone"),
        ("instance_type", "--instance-type"),
        ("vpc_id", "--vpc"),
        ("subnet_id", "--subnet"),
        ("security_group_ids", "--security-group"),
    ):
        given = getattr(overrides, key)
        if given:
            values[key] = given
            reasons.append(f"{key} {_text(given)} ({option})")
        elif getattr(base, key):
            values[key] = getattr(base, key)
            reasons.append(f"{key} {_text(values[key])} (the source instance's)")
    missing = [
        option
        for key, option in (
            ("zone", "--zone"),
            ("instance_type", "--instance-type"),
            ("subnet_id", "--subnet"),
            ("vpc_id", "--vpc"),
        )
        if not values.get(key)
    ]
    if missing:
        why = (
            "the source instance no longer exists"
            if source is None
            else "the source instance does not say"
        )
        raise RestoreRefused(f"{why}; give {', '.join(missing)}")
    zone = str(values["zone"])
    if not zone.startswith(region + "-"):
        raise RestoreRefused(
            f"zone {zone} is not in region {region} (the image is in "
            f"{region}; copy it first or pick a zone of {region})"
        )
    placement = Placement(
        zone,
        str(values["instance_type"]),
        str(values["vpc_id"]),
        str(values["subnet_id"]),
        tuple(values.get("security_group_ids") or ()),  # type: ignore[arg-type]
    )
    data = point.data_snapshots
    disk_type, system_gib = _disk_choices(point, overrides, source, reasons)
    reasons.append("login settings kept from the image (KeepImageLogin)")
    tags = {RESTORED_FROM_TAG: point.image_id, **(extra_tags or {})}
    short = missing_disks_warning(point.image)
    return LaunchPlan(
        region,
        point.image_id,
        placement,
        data,
        tags,
        tuple(reasons),
        disk_type,
        (short,) if short else (),
        system_gib,
    )


def _disk_choices(
    point: RestorePoint, overrides: Placement, source: Placement | None, reasons: list[str]
) -> tuple[str, int]:
    """The data disks' type and the system disk's size (0: the API's default) of a launch
    from ``point``, each reason added to ``reasons``."""
    data = point.data_snapshots
    system_gib = system_disk_size(point.image)
    if system_gib:
        reasons.append(
            f"system disk {system_gib} GiB (the image's; RunInstances would make "
            f"{DEFAULT_SYSTEM_DISK_GIB} GiB)"
        )
    disk_type, why = _data_disk_type(overrides, source)
    if data:
        reasons.append(
            f"{len(data)} data disk(s) from the image's snapshots "
            f"({', '.join(s for s, _ in data)}), type {disk_type} ({why})"
        )
    return disk_type, system_gib


def _data_disk_type(overrides: Placement, source: Placement | None) -> tuple[str, str]:
    """The data disks' type and why: ``--data-disk-type``, else the source's one type, else
    :data:`DATA_DISK_TYPE` (a restore of SSD disks as another type runs, but slower or
    dearer: the reason says so, and how to choose)."""
    if overrides.data_disk_type:
        return overrides.data_disk_type, "--data-disk-type"
    if source is not None and source.data_disk_type:
        return source.data_disk_type, "the source instance's data disks"
    return DATA_DISK_TYPE, (
        "the image does not say its disks' type"
        + ("" if source is None else " and the source's data disks differ or are gone")
        + "; --data-disk-type to choose"
    )


def _text(value: object) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True, slots=True)
class InPlacePlan:
    """Putting the source instance back to the image: the steps, and the warnings."""

    instance_id: str
    image_id: str
    stop_first: bool
    steps: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def plan_in_place(
    instance_id: str, state: str, point: RestorePoint, *, system_disk_only: bool
) -> InPlacePlan:
    """The steps of an in-place restore of ``instance_id`` (now ``state``) to ``point``.

    Refuses (:class:`RestoreRefused`) an instance that is neither ``RUNNING`` nor
    ``STOPPED`` (ResetInstance takes only those), and an image holding data disks unless
    ``system_disk_only``: their data would silently stay as it is now.
    """
    if state not in ("RUNNING", "STOPPED"):
        raise RestoreRefused(
            f"{instance_id} is {state or 'in an unknown state'}; an in-place "
            "restore needs it RUNNING or STOPPED"
        )
    data = point.data_snapshots
    warnings: list[str] = []
    if data:
        listed = ", ".join(f"{s} ({size}G)" for s, size in data)
        if not system_disk_only:
            raise RestoreRefused(
                f"image {point.image_id} holds {len(data)} data disk snapshot(s): {listed}. "
                f"{DATA_DISK_HELP} Pass --system-disk-only to restore the system disk alone."
            )
        warnings.append(
            f"the image's data disk snapshots ({listed}) are not used. " + DATA_DISK_HELP
        )
    running = state == "RUNNING"
    steps = []
    if running:
        steps.append(
            f"stop {instance_id} (StopInstances SOFT_FIRST); it is started again "
            "whatever happens next"
        )
    steps.append(
        f"reset the system disk of {instance_id} to {point.image_id} "
        "(ResetInstance, KeepImageLogin)"
    )
    steps.append(
        f"start {instance_id} again" if running else f"leave {instance_id} stopped, as it was"
    )
    return InPlacePlan(instance_id, point.image_id, running, tuple(steps), tuple(warnings))
