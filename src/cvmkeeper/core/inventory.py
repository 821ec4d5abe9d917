"""What a region holds right now, as plain immutable values.

The cloud client produces these from ``DescribeImages`` / ``DescribeInstances`` /
``DescribeImageQuota``; the planner consumes them. They live in the core (not in
``cloud``) so that the pure parts of cvmkeeper never import anything that does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cvmkeeper.core.disks import Disk, ImageSnapshot


class ImageState(StrEnum):
    """``ImageState`` values the CVM API reports (``USING`` is the older docs' ``NORMAL``;
    ``DELETING``, in older docs too, is an image whose ``DeleteImages`` was accepted and
    that still counts against the quota: never usable, never deleted again)."""

    CREATING = "CREATING"
    NORMAL = "NORMAL"
    CREATEFAILED = "CREATEFAILED"
    SYNCING = "SYNCING"
    IMPORTING = "IMPORTING"
    IMPORTFAILED = "IMPORTFAILED"
    USING = "USING"
    DELETING = "DELETING"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, raw: str) -> ImageState:
        """Map an API string to a state; anything unexpected is ``UNKNOWN`` (never deletable)."""
        try:
            return cls(raw)
        except ValueError:
            return cls.UNKNOWN

    @property
    def usable(self) -> bool:
        """True for an image that can be restored from (``NORMAL``, or legacy ``USING``)."""
        return self in (ImageState.NORMAL, ImageState.USING)

    @property
    def busy(self) -> bool:
        """True while the cloud is still working on the image: it must not be deleted."""
        return self in (
            ImageState.CREATING,
            ImageState.SYNCING,
            ImageState.IMPORTING,
            ImageState.UNKNOWN,
        )


@dataclass(frozen=True, slots=True)
class Image:
    """One custom image as ``DescribeImages`` reports it.

    ``created_time`` is an aware UTC datetime, or ``None`` when the API answered it null
    (the SDK model says it "may return null"; issue #18): such an image is never taken as
    fresh coverage (``health.made_at``) and never ordered as older than it may be.
    ``tags`` is a read-only mapping.
    ``snapshots`` is the ``SnapshotSet``: one snapshot per disk the image holds (empty
    when the API did not report it).
    """

    image_id: str
    name: str
    state: ImageState
    created_time: datetime | None
    region: str
    description: str = ""
    image_type: str = "PRIVATE_IMAGE"
    tags: Mapping[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    snapshots: tuple[ImageSnapshot, ...] = ()
    #: ``ImageCreator``: the UIN whose credentials created the image ("" when not reported)
    creator: str = ""
    #: False when the cloud client checked ``creator`` against the identity the daemon runs
    #: as and it is someone else's (``core.ownership.creator_is_us``): such an image is
    #: never managed, whatever its tags and name say. Values built without a cloud client
    #: (tests, simulations) keep the default.
    creator_trusted: bool = True


@dataclass(frozen=True, slots=True)
class Instance:
    """One CVM instance as ``DescribeInstances`` reports it, with its disks (``SystemDisk``,
    ``DataDisks``: what a whole-machine image can hold)."""

    instance_id: str
    name: str
    state: str
    region: str
    zone: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    system_disk: Disk | None = None
    data_disks: tuple[Disk, ...] = ()


@dataclass(frozen=True, slots=True)
class Inventory:
    """Everything the planner needs to know about one region at one moment.

    ``quota`` is the effective quota: what ``DescribeImageQuota`` reports
    (``account_quota``), capped by the configured ``image_quota`` (``quota_cap``) if
    any. ``images`` holds every custom image of the
    region, managed or not, in any state: all of them count against the quota.

    DescribeImages may list a new image late, and its tags later still (eventual
    consistency, issue #18); the executor's record of the images it created
    (``executor.created``) fills the gap. ``unlisted``: ids cvmkeeper created recently that
    the listing does not show yet: they count against the quota too. ``provisional``: ids
    of listed images cvmkeeper created recently whose tags do not show yet: recognised as
    managed by their name (``core.ownership.classify_image``), never deleted on that basis.
    ``intents``: names of images a ``CreateImage`` may have made though cvmkeeper never
    learnt their id (a run killed after sending it: ``executor.created`` records the name
    before each send), not listed under that name yet and recorded within
    ``api.visibility_grace``: each counts as one used image until it settles (rule 2: the
    cloud may hold it already), and the planner makes nothing under that name meanwhile.
    """

    region: str
    quota: int
    images: tuple[Image, ...]
    instances: tuple[Instance, ...]
    account_quota: int | None = None
    quota_cap: int | None = None
    unlisted: tuple[str, ...] = ()
    provisional: frozenset[str] = frozenset()
    intents: tuple[str, ...] = ()

    @property
    def used(self) -> int:
        """Images counted against the quota: every listed one, those not listed yet, and
        one per live intent (a create whose image may exist unlisted)."""
        return len(self.images) + len(self.unlisted) + len(self.intents)

    @property
    def free(self) -> int:
        """Images that can still be created before the quota is reached (never negative)."""
        return max(0, self.quota - self.used)
