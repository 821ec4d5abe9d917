"""Quota-aware rotation: fit a region's demands into its quota (docs/design.md
"Quota-aware rotation").

``resolve_quota`` runs retention in the world where the planned demands are made, drops
those retention would delete at once, then fits the rest: free room first, expired images
deleted early (oldest first, just enough), eviction under ``on_quota_full: evict``, and
what still does not fit is skipped. Dropping a demand changes the world retention sees, so
the rounds repeat until nothing more is dropped; the result is a frozen
:class:`QuotaResolution`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cvmkeeper.core.demand import Demand, InstanceSet, age_key, new_id
from cvmkeeper.core.inventory import ImageState, Inventory
from cvmkeeper.core.naming import (
    slot_tag_value,
)
from cvmkeeper.core.ownership import ManagedImage
from cvmkeeper.core.plan import (
    PlanWarning,
    Skip,
    WarningKind,
)
from cvmkeeper.core.retention import Backup, Decision, decide

_KEPT = Decision("", keep=True, reasons=())


@dataclass(frozen=True, slots=True)
class QuotaResolution:
    """The outcome of fitting the demands into the quota (step 5 of the module doc).

    ``made``: the demands that fit, in priority order; ``decisions``: retention in the
    world where they are made; ``expired``: what retention lets go, oldest first;
    ``early``: the expired images deleted before the creates to make room; ``evicted``:
    (image, the demand it makes room for); ``skips`` and ``notices``: the demands not made.
    """

    made: tuple[Demand, ...]
    decisions: Mapping[str, Decision]
    expired: tuple[ManagedImage, ...]
    early: tuple[ManagedImage, ...]
    evicted: tuple[tuple[ManagedImage, Demand], ...]
    skips: tuple[Skip, ...]
    notices: tuple[PlanWarning, ...]

    @property
    def late(self) -> tuple[ManagedImage, ...]:
        """Expired images deleted after the creates (create-then-delete)."""
        gone = {o.image_id for o in self.early} | {o.image_id for o, _ in self.evicted}
        return tuple(owned for owned in self.expired if owned.image_id not in gone)


def resolve_quota(
    inventory: Inventory,
    sets: Mapping[str, InstanceSet],
    wanted: Sequence[Demand],
    cleaned_up: int,
    done_names: set[str],
) -> QuotaResolution:
    """Fit ``wanted`` (in priority order) into the region's quota.

    Each round runs retention in the world where the planned demands are made; a demand
    retention would delete at once is dropped (a warning for a create); then the demands
    that do not fit are dropped (a ``Skip``, or a warning for an older copy). Dropping
    changes that world, so the rounds go on until nothing is dropped.
    """
    planned = list(wanted)
    cache: dict[str, tuple[tuple[datetime, ...], dict[str, Decision]]] = {}
    skips: list[Skip] = []
    notices: list[PlanWarning] = []
    while True:
        decisions = _retention(sets, _slots_by_instance(planned), cache)
        covered = [
            d for d in planned if not decisions.get(new_id(d.instance_id, d.slot), _KEPT).keep
        ]
        if covered:  # older than what retention keeps: made now, deleted at once, made again
            planned = _without(planned, covered)
            notices += [_covered_notice(d) for d in covered if d.source is None]
            continue
        fit = _fit_round(
            inventory, sets, planned, decisions, cleaned_up=cleaned_up, done_names=done_names
        )
        if not fit.dropped:
            return QuotaResolution(
                made=tuple(fit.made),
                decisions=decisions,
                expired=tuple(fit.expired),
                early=tuple(fit.early),
                evicted=tuple(fit.evicted),
                skips=tuple(skips),
                notices=tuple(notices),
            )
        planned = _without(planned, fit.dropped)
        newest_copies = {
            d.instance_id: d.slot for d in sorted(wanted, key=lambda w: w.slot) if d.source
        }
        for demand in fit.dropped:
            if demand.source is not None and demand.slot < newest_copies[demand.instance_id]:
                notices.append(
                    PlanWarning(
                        WarningKind.PLAN,
                        f"{demand.name}: older copy from {demand.source.image.region} not made: "
                        f"the quota ({inventory.quota}) holds fewer copies than their retention "
                        "keeps",
                        demand.policy_names,
                    )
                )
            else:
                skips.append(_quota_skip(demand, inventory))


@dataclass(slots=True)
class _Fit:
    """One round of fitting: what expired, what is deleted early or evicted, what fits."""

    expired: list[ManagedImage]
    early: list[ManagedImage]
    evicted: list[tuple[ManagedImage, Demand]] = field(default_factory=list)
    made: list[Demand] = field(default_factory=list)
    dropped: list[Demand] = field(default_factory=list)


def _fit_round(
    inventory: Inventory,
    sets: Mapping[str, InstanceSet],
    planned: Sequence[Demand],
    decisions: Mapping[str, Decision],
    *,
    cleaned_up: int,
    done_names: set[str],
) -> _Fit:
    """Free quota first, then expired images early (oldest first, just enough), then
    eviction per demand in priority order; what still does not fit is dropped."""
    expired = sorted(
        (
            owned
            for instance_set in sets.values()
            for owned in instance_set.images
            if _expired(owned, instance_set, decisions)
        ),
        key=age_key,
    )
    available = inventory.quota - inventory.used + cleaned_up
    shortfall = len(planned) - available
    early: list[ManagedImage] = []
    if shortfall > 0:
        early = [o for o in expired if o is not sets[o.instance_id].newest_usable][:shortfall]
    available += len(early)
    fit = _Fit(expired, early)
    evict_pool = _evict_pool(sets, {o.image_id for o in early}, done_names)
    for demand in planned:
        # Over quota (quota lowered), one create may need several evictions.
        needed = 1 - available if demand.may_evict and available <= 0 else 0
        # A copy never evicts a newer image: that would only make room for an older one.
        if 0 < needed <= len(evict_pool) and (
            demand.source is None or evict_pool[-needed].slot < demand.slot
        ):
            fit.evicted += [(evict_pool.pop(), demand) for _ in range(needed)]
            available += needed
        if available > 0:
            available -= 1
            fit.made.append(demand)
        else:
            fit.dropped.append(demand)
    return fit


def _evict_pool(
    sets: Mapping[str, InstanceSet], early: set[str], done_names: set[str]
) -> list[ManagedImage]:
    """The images eviction may take, newest first (``pop()`` takes the oldest). Never an
    instance's newest usable image, pinned or in-flight images, orphans, held images, or
    the image of a slot this run is due to make."""
    return sorted(
        (
            owned
            for instance_set in sets.values()
            if not instance_set.orphan and not instance_set.held
            for owned in instance_set.images
            if owned.image.state.usable
            and not owned.pinned
            and not owned.provisional
            and owned is not instance_set.newest_usable
            and owned.image_id not in early
            and owned.image_id not in instance_set.waited
            and owned.image.name not in done_names
        ),
        key=age_key,
        reverse=True,
    )


def _slots_by_instance(planned: Sequence[Demand]) -> dict[str, list[datetime]]:
    slots: dict[str, list[datetime]] = defaultdict(list)
    for demand in planned:
        slots[demand.instance_id].append(demand.slot)
    return slots


def _covered_notice(demand: Demand) -> PlanWarning:
    return PlanWarning(
        WarningKind.PLAN,
        f"{demand.name}: slot {slot_tag_value(demand.slot)} of {demand.instance_id} not "
        "made: newer images cover it and retention would delete it at once",
        demand.policy_names,
    )


def eviction_notice(
    inventory: Inventory, sets: Mapping[str, InstanceSet], owned: ManagedImage, demand: Demand
) -> PlanWarning:
    return PlanWarning(
        WarningKind.EVICT,
        f"quota full ({inventory.quota}): evicting {owned.image.name} ({owned.image_id}) "
        f"of {owned.instance_id} to {demand.what} {demand.name}; retention wants more images "
        "than the quota holds",
        sets[owned.instance_id].policy_names,
    )


def _quota_skip(item: Demand, inventory: Inventory) -> Skip:
    """The skip of a demand that does not fit, naming what fills the quota when some of it
    is not listed yet (creates whose answer an earlier run never got, ``Inventory.intents``)."""
    how = "on_quota_full: skip" if not item.may_evict else "nothing can be evicted"
    what = "not created" if item.source is None else f"not copied from {item.source.image.region}"
    used, quota = inventory.used, inventory.quota
    pending = ""
    if inventory.intents:
        pending = (
            f"; {len(inventory.intents)} of them not listed yet: sent by a run stopped before "
            f"the answer ({', '.join(inventory.intents)})"
        )
    return Skip(
        instance_id=item.instance_id,
        slot=item.slot,
        image_name=item.name,
        policies=item.policy_names,
        error=(
            f"{item.name}: {what}: region at quota ({used} of {quota} images{pending}) and "
            f"nothing expired can be deleted ({how})"
        ),
        source_region=item.source.image.region if item.source is not None else "",
    )


def _retention(
    sets: Mapping[str, InstanceSet],
    creates: Mapping[str, list[datetime]],
    cache: dict[str, tuple[tuple[datetime, ...], dict[str, Decision]]],
) -> dict[str, Decision]:
    """Retention decisions for every managed image, in the world where creates succeeded."""
    decisions: dict[str, Decision] = {}
    for instance_id, instance_set in sets.items():
        new_slots = tuple(sorted(creates.get(instance_id, ())))
        cached = cache.get(instance_id)
        if cached is None or cached[0] != new_slots:
            backups = [
                Backup(
                    owned.image_id,
                    owned.slot,
                    ImageState.NORMAL
                    if owned.image_id in instance_set.waited
                    else owned.image.state,
                    owned.pinned,
                    owned.hold,
                )
                for owned in instance_set.images
            ]
            backups += [
                Backup(new_id(instance_id, slot), slot, ImageState.NORMAL) for slot in new_slots
            ]
            result = {d.image_id: d for d in decide(backups, instance_set.rules)}
            cached = cache[instance_id] = (new_slots, result)
        decisions.update(cached[1])
    return decisions


def _expired(
    owned: ManagedImage, instance_set: InstanceSet, decisions: Mapping[str, Decision]
) -> bool:
    """Retention lets ``owned`` go, and no hard rule protects it (pins, in-flight images,
    an image recognised only provisionally while its tags do not show)."""
    decision = decisions[owned.image_id]
    return (
        not decision.keep
        and owned.image.state.usable
        and not owned.pinned
        and not owned.provisional
        and owned.image_id not in instance_set.waited
    )


def _without(items: list[Demand], removed: Sequence[Demand]) -> list[Demand]:
    gone = {id(item) for item in removed}
    return [item for item in items if id(item) not in gone]
