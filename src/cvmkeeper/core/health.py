"""Freshness and quota headroom of one region, as pure values (docs/design.md "Alerting").

A backup that silently stopped happening is the failure a backup tool must never hide.
``assess_region`` looks at what a region holds and says, per targeted instance, how old
its newest ``NORMAL`` backup is and whether that is *stale* (older than the policy's
expected period times ``freshness_factor``), and whether the region's free quota fell
below ``quota_free_warning``. The run alerts on it (``executor.run_health``), ``cvmkeeper
status`` prints it and the metrics export it; all three use this one function.

The age of a backup is measured from its slot (the moment it stands for, parsed from its
name), not from ``CreatedTime``. An instance that a policy targets but that has no
``NORMAL`` managed image at all is stale too ("no backup"), whatever its age.

Cross-region copies (``Policy.copies``) are a disaster-recovery promise of their own: a
copy set that stopped growing (SyncImages failing, the destination full) leaves the
source fresh and the DR region quietly behind. Given the inventories of the source
regions, ``assess_region`` also says, per instance copied into the region, how many
``NORMAL`` copies it holds and whether the newest is stale by the same rule (the period
of the shortest policy copying it, times ``freshness_factor``): copies are made in the
same run as their source image, so they are expected as often.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import Image, Inventory
from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat
from cvmkeeper.core.ownership import ManagedImage, classify_copy, classify_image, copy_origins
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.schedule import policy_period
from cvmkeeper.core.targets import resolve_targets

__all__ = [
    "Freshness",
    "HealthSettings",
    "QuotaHeadroom",
    "RegionHealth",
    "assess_region",
    "inventory_after",
]


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """When to call a backup stale and a region short of quota.

    ``freshness_factor``: an instance is stale when its newest ``NORMAL`` backup is older
    than its policy's period times this (2: one missed slot is tolerated, two are not).
    ``quota_free_warning``: a region is low when fewer images than this can still be
    created (0 turns the check off).
    """

    freshness_factor: float = 2.0
    quota_free_warning: int = 1

    def __post_init__(self) -> None:
        if self.freshness_factor < 1:
            raise ValueError("freshness_factor must be at least 1")
        if self.quota_free_warning < 0:
            raise ValueError("quota_free_warning must not be negative")


@dataclass(frozen=True, slots=True)
class Freshness:
    """How fresh one set of images is: an instance's own backups in ``region``, or (when
    ``source_region`` is set) its copies held in ``region``, a destination of its policies.

    ``policy`` is the policy with the shortest period (the one whose promise is broken
    first); ``policies`` all policies that target (or copy) the instance. ``newest_*`` are
    ``None`` when the set has no ``NORMAL`` managed image; ``held`` counts those (copies
    only; 0 for backups). ``allowed`` is the period times the factor; ``age`` is ``now``
    minus the newest slot.
    """

    region: str
    instance_id: str
    policy: str
    policies: tuple[str, ...]
    period: timedelta
    allowed: timedelta
    newest_slot: datetime | None
    newest_image_id: str | None
    newest_image_name: str | None
    age: timedelta | None
    stale: bool
    source_region: str = ""
    held: int = 0

    @property
    def is_copy(self) -> bool:
        """True for a copy set (images copied here from ``source_region``)."""
        return bool(self.source_region)

    def describe(self) -> str:
        """One line for people: whose images, where, how old the newest is, what was due."""
        verb = "copies" if self.is_copy else "makes"
        expectation = (
            f"policy {self.policy!r} {verb} one every {format_duration(self.period)}, "
            f"stale after {format_duration(self.allowed)}"
        )
        if self.is_copy:
            where = f"copies of {self.instance_id} (from {self.source_region}) in {self.region}"
            if self.newest_slot is None or self.age is None:
                return f"{where}: no NORMAL copy ({expectation})"
            return (
                f"{where}: {self.held} held, newest {self.newest_image_name} is "
                f"{format_duration(self.age)} old ({expectation})"
            )
        if self.newest_slot is None or self.age is None:
            return f"{self.instance_id} in {self.region} has no NORMAL backup ({expectation})"
        return (
            f"{self.instance_id} in {self.region}: newest NORMAL backup {self.newest_image_name} "
            f"is {format_duration(self.age)} old ({expectation})"
        )


def made_at(owned: ManagedImage) -> datetime | None:
    """When a backup's content is from: its slot, or when the cloud says it was really made
    if that is earlier (an image named for a slot after its making, by a clock that was
    ahead or ``run --at`` in the future, must not look fresh; docs/design.md rule 7).
    ``None`` when the cloud did not say when it was made (a null ``CreatedTime``, issue
    #18): such an image is not fresh coverage, so a missed backup is still alerted."""
    if owned.image.created_time is None:
        return None
    return min(owned.slot, owned.image.created_time)


def _freshness(
    region: str,
    instance_id: str,
    targeting: Sequence[Policy],
    newest: tuple[datetime, Image] | None,
    *,
    now: datetime,
    settings: HealthSettings,
    source_region: str = "",
    held: int = 0,
) -> Freshness:
    """The freshness of one set, judged by its shortest-period policy."""
    shortest = min(targeting, key=policy_period)
    period = policy_period(shortest)
    allowed = period * settings.freshness_factor
    age = now - newest[0] if newest else None
    return Freshness(
        region=region,
        instance_id=instance_id,
        policy=shortest.name,
        policies=tuple(p.name for p in targeting),
        period=period,
        allowed=allowed,
        newest_slot=newest[0] if newest else None,
        newest_image_id=newest[1].image_id if newest else None,
        newest_image_name=newest[1].name if newest else None,
        age=age,
        stale=age is None or age > allowed,
        source_region=source_region,
        held=held,
    )


@dataclass(frozen=True, slots=True)
class QuotaHeadroom:
    """The custom-image quota of one region: how much is used, by whom, and what is left."""

    region: str
    quota: int
    used: int
    managed: int
    unmanaged: int
    threshold: int
    #: what DescribeImageQuota reported, and the configured cap (None: not known / no cap)
    account_quota: int | None = None
    cap: int | None = None

    @property
    def free(self) -> int:
        """Images that can still be created (never negative)."""
        return max(0, self.quota - self.used)

    @property
    def low(self) -> bool:
        """True when fewer than ``threshold`` images can still be created."""
        return self.free < self.threshold

    def describe(self) -> str:
        """One line for people."""
        return (
            f"{self.region}: {self.free} of {self.quota} custom images free "
            f"({self.used} used: {self.managed} by cvmkeeper, {self.unmanaged} others); "
            f"warning below {self.threshold} free"
        )


@dataclass(frozen=True, slots=True)
class RegionHealth:
    """Freshness of every targeted instance of a region, and its quota headroom."""

    region: str
    now: datetime
    quota: QuotaHeadroom
    instances: tuple[Freshness, ...]
    copies: tuple[Freshness, ...] = ()

    @property
    def stale(self) -> tuple[Freshness, ...]:
        """The instances whose newest backup is stale, in instance id order."""
        return tuple(item for item in self.instances if item.stale)

    @property
    def stale_copies(self) -> tuple[Freshness, ...]:
        """The copy sets of this (destination) region whose newest copy is stale."""
        return tuple(item for item in self.copies if item.stale)


def assess_region(
    inventory: Inventory,
    policies: Iterable[Policy],
    now: datetime,
    settings: HealthSettings | None = None,
    fmt: NameFormat = DEFAULT_FORMAT,
    *,
    sources: Mapping[str, Inventory] | None = None,
) -> RegionHealth:
    """Freshness and quota headroom of ``inventory``'s region at ``now``.

    Only instances of the inventory that one of ``policies`` targets are assessed (give
    only the policies of one run to check only theirs). With ``sources`` (source region ->
    its inventory), the copies held here of instances that ``policies`` copy here from
    those regions are assessed too (``RegionHealth.copies``). Pure: no clock, no I/O.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    policies = tuple(policies)
    settings = settings or HealthSettings()
    resolution = resolve_targets(inventory.region, policies, inventory.instances)
    newest: dict[str, tuple[datetime, Image]] = {}
    held: dict[str, int] = {}
    managed_count = 0
    origins = copy_origins((sources or {}).values(), fmt)  # copies not yet tagged count
    for image in inventory.images:
        owned = classify_image(image, fmt)
        if owned is None and origins:
            owned = classify_copy(image, origins, fmt)
        if owned is None:
            continue
        managed_count += 1
        if not image.state.usable:
            continue
        held[owned.instance_id] = held.get(owned.instance_id, 0) + 1
        best = newest.get(owned.instance_id)
        made = made_at(owned)
        if made is None:
            continue
        if best is None or (made, image.image_id) > (best[0], best[1].image_id):
            newest[owned.instance_id] = (made, image)
    assessed = [
        _freshness(
            inventory.region,
            instance_id,
            targeting,
            newest.get(instance_id),
            now=now,
            settings=settings,
        )
        for instance_id, targeting in sorted(resolution.policies_by_instance.items())
    ]
    quota = QuotaHeadroom(
        region=inventory.region,
        quota=inventory.quota,
        used=len(inventory.images),
        managed=managed_count,
        unmanaged=len(inventory.images) - managed_count,
        threshold=settings.quota_free_warning,
        account_quota=inventory.account_quota,
        cap=inventory.quota_cap,
    )
    copies = _assess_copies(
        inventory.region,
        policies=policies,
        sources=sources or {},
        newest=newest,
        held=held,
        now=now,
        settings=settings,
    )
    return RegionHealth(inventory.region, now, quota, tuple(assessed), copies)


def _assess_copies(
    region: str,
    *,
    policies: Iterable[Policy],
    sources: Mapping[str, Inventory],
    newest: Mapping[str, tuple[datetime, Image]],
    held: Mapping[str, int],
    now: datetime,
    settings: HealthSettings,
) -> tuple[Freshness, ...]:
    """Per instance copied into ``region`` from a source region in ``sources``: its copies
    here (``newest``/``held``: the region's usable managed images by instance)."""
    copying = [p for p in policies if p.copy_to(region) is not None]
    found: list[Freshness] = []
    for source_region, source in sorted(sources.items()):
        if source_region == region:
            continue
        resolution = resolve_targets(
            source_region, [p for p in copying if source_region in p.regions], source.instances
        )
        for instance_id, targeting in sorted(resolution.policies_by_instance.items()):
            found.append(
                _freshness(
                    region,
                    instance_id,
                    targeting,
                    newest.get(instance_id),
                    now=now,
                    settings=settings,
                    source_region=source_region,
                    held=held.get(instance_id, 0),
                )
            )
    return tuple(found)


def inventory_after(
    inventory: Inventory, added: Iterable[Image], removed_ids: Iterable[str]
) -> Inventory:
    """``inventory`` with the images a run made added (or updated, same id) and the images
    it deleted removed: what the region holds after the run, without reading it again."""
    gone = set(removed_ids)
    new = {image.image_id: image for image in added}
    kept = tuple(
        new.pop(image.image_id, image) for image in inventory.images if image.image_id not in gone
    )
    return replace(
        inventory, images=kept + tuple(i for i in new.values() if i.image_id not in gone)
    )
