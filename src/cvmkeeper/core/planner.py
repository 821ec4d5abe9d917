"""The planner: from one region's inventory, the policies and the due slots to a ``Plan``.

Pure (no I/O, no clock: ``now`` is an argument) and linear in the number of images: images
are indexed by instance once, retention runs once per instance set (again only for the
instances whose creates change while quota is resolved).

How a plan is made (docs/design.md "The rules that are never broken", "Quota-aware
rotation"); ``plan_region`` reads as these steps, each a function with a typed result:

1. Ownership (``core.ownership``): only managed images are ever deleted; every image counts.
2. Targets (``core.targets``): per instance, the policies of this region that target it.
   Managed images of any other instance are *orphans*: kept (or, with
   ``PlannerSettings.orphan_retention``, retained by those rules) and reported.
3. Creates: one per due (instance, slot), however many policies are due for it (tags and
   description name them all; the strongest consistency mode wins). If the slot's name
   already exists: ``NORMAL`` -> done; in flight -> ``Wait``; ``CREATEFAILED`` -> cleaned
   up before the creates and made again in the same run (the failed image is garbage, and
   the name it held is free once it is deleted); anything else, or an image cvmkeeper does
   not own -> ``Skip`` with an error. A due slot that retention would expire at once
   (newer images of the instance cover it) is not made, with a warning: making it would
   cost a create and a delete on every retry of the slot.
4. Retention (``core.retention.decide``) per instance set, in the hypothetical world where
   every planned create and waited image is ``NORMAL``. What it expires is deleted
   ``after_create`` (create-then-delete). ``CREATEFAILED`` images are deleted
   ``before_create`` (kind ``cleanup``).
5. Quota: Free = Q - every image. If the creates do not fit, expired images (oldest first,
   never an instance's current newest usable image) move to ``before_create``, just enough;
   then, per create in priority order, ``on_quota_full: evict`` (all of the create's
   policies must say evict) evicts the oldest evictable managed image with a warning, and
   otherwise the create is skipped with an error. Skipping a create changes the
   hypothetical world, so the quota is resolved again without it until nothing changes.
   Priority: the instance whose newest usable image is oldest first (then slot, id), so a
   short quota goes to the stalest backups. Never evicted: an instance's current newest
   usable image, pinned or in-flight images, orphans (kept unless ``orphan_retention``
   expires them) and the image of a slot this run is due to make.
6. Copies (cross-region, ``Policy.copies``): given ``sources`` (source region -> its
   inventory), every usable managed image of an instance that a policy copying to this
   region targets in its source region, and that has no image of its name here, is a
   wanted ``Copy``: it goes through the same quota resolution as a create (free quota
   first, expired images deleted early, eviction or skip). The copies of such an
   instance form one instance set here, retained by the copy retentions of those
   policies, independently of the source (a source rotated away leaves its copies). A
   wanted copy retention would delete at once is not made (quietly: it is simply older
   than what the copies keep). Without the inventory of some source region, images of
   instances that are not in this region cannot be told apart from copies: they are
   *held* (kept, never evicted, never expired by orphan rules; their decisions say so).
   Not a warning: the first phase of a run plans every region without sources, and the
   copy phase that follows reads them.
7. Every plan is checked with ``check_plan`` (rules 1-5); a violation raises
   ``PlanInvariantError`` instead of returning a dangerous plan.

Callers must pass *all* policies (not only the due ones): retention of an instance set
ORs the rules of every policy targeting it, and orphans are what no policy targets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from cvmkeeper.core.due import DueSlots
from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import (
    DEFAULT_FORMAT,
    NameFormat,
    image_description,
    image_name,
    image_tags,
    slot_tag_value,
)
from cvmkeeper.core.ownership import ManagedImage, classify_image, split_images
from cvmkeeper.core.plan import (
    DELETE_BATCH_SIZE,
    Copy,
    Create,
    Delete,
    DeleteKind,
    DeleteTarget,
    ImageDecision,
    Phase,
    Plan,
    PlanWarning,
    Skip,
    Step,
    Wait,
    WarningKind,
    check_plan,
)
from cvmkeeper.core.policy import Consistency, Policy, Retention
from cvmkeeper.core.retention import Backup, Decision, RuleSet, decide
from cvmkeeper.core.targets import resolve_targets

_CONSISTENCY_STRENGTH = (Consistency.LIVE, Consistency.FORCE_POWEROFF, Consistency.STOP_START)
_ORPHAN_RULES = "orphans"
_KEPT = Decision("", keep=True, reasons=())
_NEVER = datetime.min.replace(tzinfo=UTC)


def _new_id(instance_id: str, slot: datetime) -> str:
    """The id a planned image has inside retention (never a real id, never deleted)."""
    return f"new:{instance_id}:{slot.isoformat()}"


__all__ = ["DueSlots", "PlanInvariantError", "PlannerSettings", "plan_region"]


class PlanInvariantError(RuntimeError):
    """The planner produced a plan that breaks a rule of docs/design.md (a bug; nothing
    is run)."""


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """Daemon-wide settings the planner needs.

    ``orphan_retention``: keep rules for the images of instances no policy targets any
    more; ``None`` (the default) keeps every orphan image. ``name_format``: the configured
    image name template.
    """

    orphan_retention: Retention | None = None
    name_format: NameFormat = field(default=DEFAULT_FORMAT)


# --- the values the steps pass along ---------------------------------------------------------


class NameStatus(Enum):
    """What the images already holding a wanted image's name mean for it."""

    FREE = "free"  # nobody holds it (or only CREATEFAILED images, cleaned up first): make it
    DONE = "done"  # a usable image has it: the slot or copy is made
    WAIT = "wait"  # an image of it is in flight: wait for it
    BLOCKED = "blocked"  # held by an image cvmkeeper may not delete or does not own: Skip


@dataclass(frozen=True, slots=True)
class NameCheck:
    """A name's status, and for ``BLOCKED`` the error that says why."""

    status: NameStatus
    problem: str = ""


@dataclass(slots=True)
class Demand:
    """One image the run wants in this region: a due (instance, slot) to create, or
    (``source`` set) a source region's image to copy here. Both go through the same quota
    resolution; ``priority`` orders them (stalest instance first)."""

    instance_id: str
    slot: datetime
    name: str
    policies: tuple[Policy, ...]
    priority: tuple[datetime, float, str]
    source: ManagedImage | None = None

    @property
    def policy_names(self) -> tuple[str, ...]:
        """The names of the policies wanting it, sorted."""
        return tuple(sorted(policy.name for policy in self.policies))

    @property
    def may_evict(self) -> bool:
        """True when every policy wanting it says ``on_quota_full: evict``."""
        return all(policy.on_quota_full == "evict" for policy in self.policies)

    @property
    def what(self) -> str:
        """``make`` or ``copy from <region>``, for messages."""
        return "make" if self.source is None else f"copy from {self.source.image.region}"


@dataclass(slots=True)
class _InstanceSet:
    """The managed images of one instance and the rules that apply to them."""

    instance_id: str
    images: list[ManagedImage]
    rules: tuple[RuleSet, ...]
    orphan: bool
    waited: frozenset[str] = frozenset()  # ids of in-flight images of due slots
    newest_usable: ManagedImage | None = None
    held: bool = False  # maybe copies whose source region was not read: keep all

    @property
    def policy_names(self) -> tuple[str, ...]:
        """The policies whose rules keep this set (orphan rules excluded)."""
        return tuple(sorted({r.policy for r in self.rules if r.policy != _ORPHAN_RULES}))


@dataclass(frozen=True, slots=True)
class _Region:
    """What every step reads about the region: its images by owner and by name, which
    policies target which instance, and what the source regions offer for copies."""

    inventory: Inventory
    settings: PlannerSettings
    managed: tuple[ManagedImage, ...]
    unmanaged: tuple[Image, ...]
    managed_by_id: Mapping[str, ManagedImage]
    by_name: Mapping[str, Sequence[Image]]
    targeted: Mapping[str, tuple[Policy, ...]]
    copy_sources: _CopySources
    local_ids: frozenset[str]

    @property
    def fmt(self) -> NameFormat:
        """The configured name format."""
        return self.settings.name_format


@dataclass(slots=True)
class _Demands:
    """What the due slots and the source regions ask of this region."""

    wanted: list[Demand] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    waited: dict[str, Image] = field(default_factory=dict)  # in-flight images of due names
    done_names: set[str] = field(default_factory=set)  # due names already made


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


# --- the page ---------------------------------------------------------------------------------


def plan_region(
    inventory: Inventory,
    policies: Sequence[Policy],
    due: DueSlots,
    now: datetime,
    settings: PlannerSettings | None = None,
    *,
    sources: Mapping[str, Inventory] | None = None,
    make_copies: bool = True,
) -> Plan:
    """Plan one run in ``inventory.region``: creates for ``due``, copies, retention, quota.

    ``policies`` are all configured policies (those not listing this region are ignored);
    ``due`` the slots this run makes (policy name -> UTC slot, or pairs). Slots after
    ``now`` are not made (warning). ``sources`` maps the source regions of the policies
    copying to this region to their inventories (read after their own run): copies are
    planned from them, and their copies here are retained by the copy retentions;
    ``make_copies=False`` applies that retention without planning copies (the plan after
    the copies' wait). Raises ``ValueError`` for a naive slot and ``PlanInvariantError``
    if the plan would break a rule (a bug).
    """
    notices: list[PlanWarning] = []
    region = _read_region(inventory, policies, settings or PlannerSettings(), sources, notices)
    sets = _instance_sets(region)
    due_policies = _due_policies(region, policies, due, now, notices)
    demands = _slot_demands(region, sets, due_policies)
    if make_copies:
        _add_copy_demands(region, sets, demands)
    demands.wanted.sort(key=lambda d: d.priority)
    _register_demands(region, sets, demands)
    cleanup = sorted(
        (o for o in region.managed if o.image.state is ImageState.CREATEFAILED and not o.pinned),
        key=_age_key,
    )
    quota = resolve_quota(inventory, sets, demands.wanted, len(cleanup), demands.done_names)
    notices += quota.notices
    notices += [_eviction_notice(inventory, sets, o, d) for o, d in quota.evicted]
    skips = [*demands.skips, *quota.skips]
    plan = Plan(
        region=inventory.region,
        now=now,
        quota=inventory.quota,
        used=len(inventory.images),
        unmanaged=len(region.unmanaged),
        steps=_steps(quota, cleanup, skips, demands.waited),
        decisions=_image_decisions(sets, quota, cleanup),
        notices=tuple(notices),
        errors=tuple(skip.error for skip in skips),
        orphan_instance_ids=tuple(sorted(i for i, s in sets.items() if s.orphan and not s.held)),
    )
    violations = check_plan(
        inventory, plan, region.fmt, managed=region.managed_by_id, sources=sources
    )
    if violations:
        raise PlanInvariantError("; ".join(violations))
    return plan


# --- 1-2: the region and its instance sets ---------------------------------------------------


def _read_region(
    inventory: Inventory,
    policies: Sequence[Policy],
    settings: PlannerSettings,
    sources: Mapping[str, Inventory] | None,
    notices: list[PlanWarning],
) -> _Region:
    """Index the region once: ownership, names, targets, copy sources."""
    managed, unmanaged = split_images(inventory.images, settings.name_format)
    resolution = resolve_targets(inventory.region, policies, inventory.instances)
    notices += [
        PlanWarning(WarningKind.TARGETS, message, (name,))
        for name, message in zip(resolution.unmatched, resolution.warnings, strict=True)
    ]
    targeted = resolution.policies_by_instance
    by_name: dict[str, list[Image]] = defaultdict(list)
    for image in inventory.images:
        by_name[image.name].append(image)
    return _Region(
        inventory=inventory,
        settings=settings,
        managed=tuple(managed),
        unmanaged=tuple(unmanaged),
        managed_by_id={owned.image_id: owned for owned in managed},
        by_name=by_name,
        targeted=targeted,
        copy_sources=_copy_sources(
            inventory, policies, targeted, sources or {}, settings.name_format
        ),
        local_ids=frozenset(instance.instance_id for instance in inventory.instances),
    )


def _new_set(region: _Region, instance_id: str) -> _InstanceSet:
    """The (empty) instance set of ``instance_id``: targeted here, a copy set, held, or an
    orphan."""
    if instance_id in region.targeted or instance_id in region.local_ids:
        return _make_set(instance_id, region.targeted, region.settings)
    copying = region.copy_sources.policies.get(instance_id)
    if copying:
        place = region.inventory.region
        rules = tuple(RuleSet(_copy_retention(p, place), p.timezone, p.name) for p in copying)
        return _InstanceSet(instance_id, [], rules, orphan=False)
    if region.copy_sources.missing:
        return _InstanceSet(instance_id, [], (), orphan=True, held=True)
    return _make_set(instance_id, region.targeted, region.settings)


def _instance_sets(region: _Region) -> dict[str, _InstanceSet]:
    """One set per instance with managed images here, with its newest usable image."""
    sets: dict[str, _InstanceSet] = {}
    for owned in region.managed:
        instance_set = sets.get(owned.instance_id)
        if instance_set is None:
            instance_set = sets[owned.instance_id] = _new_set(region, owned.instance_id)
        instance_set.images.append(owned)
    for instance_set in sets.values():
        usable = [m for m in instance_set.images if m.image.state.usable]
        instance_set.newest_usable = max(usable, key=_age_key, default=None)
    return sets


# --- 3: demands (creates of due slots, copies) -----------------------------------------------


def _due_policies(
    region: _Region,
    policies: Sequence[Policy],
    due: DueSlots,
    now: datetime,
    notices: list[PlanWarning],
) -> dict[tuple[str, datetime], list[Policy]]:
    """(instance, slot) -> the policies due for it; unknown policies and future slots are
    warned about and left out."""
    policies_by_name = {policy.name: policy for policy in policies}
    instances_by_policy: dict[str, list[str]] = defaultdict(list)
    for instance_id, instance_policies in region.targeted.items():
        for targeting in instance_policies:
            instances_by_policy[targeting.name].append(instance_id)
    due_policies: dict[tuple[str, datetime], list[Policy]] = defaultdict(list)
    for policy_name, slot in _normalise_due(due):
        due_policy = policies_by_name.get(policy_name)
        if due_policy is None:
            notices.append(PlanWarning(
                WarningKind.PLAN, f"due slot for unknown policy {policy_name!r} ignored"))
            continue
        if region.inventory.region not in due_policy.regions:
            continue
        if slot > now:
            notices.append(PlanWarning(
                WarningKind.PLAN,
                f"policy {policy_name!r}: slot {slot_tag_value(slot)} is after now; not made",
                (policy_name,),
            ))
            continue
        for instance_id in instances_by_policy.get(policy_name, ()):
            slot_policies = due_policies[(instance_id, slot)]
            if due_policy not in slot_policies:
                slot_policies.append(due_policy)
    return due_policies


def _staleness(sets: Mapping[str, _InstanceSet], instance_id: str) -> datetime:
    """The slot of the instance's newest usable image here (the stalest goes first)."""
    instance_set = sets.get(instance_id)
    newest = instance_set.newest_usable if instance_set is not None else None
    return newest.slot if newest else _NEVER


def _take_name(region: _Region, name: str, demands: _Demands) -> NameCheck:
    """Check ``name``; a done or in-flight one is recorded in ``demands`` on the way."""
    existing = region.by_name.get(name, ())
    check = name_status(existing, region.managed_by_id)
    if check.status is NameStatus.WAIT:
        for image in existing:
            demands.waited[image.image_id] = image
    return check


def _slot_demands(
    region: _Region,
    sets: Mapping[str, _InstanceSet],
    due_policies: Mapping[tuple[str, datetime], list[Policy]],
) -> _Demands:
    """A create demand per due (instance, slot) whose name is free; the rest is done,
    waited for, or a ``Skip``."""
    demands = _Demands()
    for (instance_id, slot), slot_policies in sorted(due_policies.items(), key=lambda kv: kv[0]):
        names = tuple(sorted(p.name for p in slot_policies))
        try:
            name = image_name(instance_id, slot, region.fmt)
        except ValueError as exc:
            demands.skips.append(Skip(instance_id, slot, "", names, str(exc)))
            continue
        check = _take_name(region, name, demands)
        if check.status is NameStatus.DONE:
            demands.done_names.add(name)
        elif check.status is NameStatus.BLOCKED:
            demands.skips.append(Skip(instance_id, slot, name, names, f"{name}: {check.problem}"))
        elif check.status is NameStatus.FREE:
            priority = (_staleness(sets, instance_id), slot.timestamp(), instance_id)
            demands.wanted.append(Demand(instance_id, slot, name, tuple(slot_policies), priority))
    return demands


def _add_copy_demands(
    region: _Region, sets: Mapping[str, _InstanceSet], demands: _Demands
) -> None:
    """A copy demand per usable source image whose name is free here."""
    for source in region.copy_sources.images:
        name = source.image.name
        copying = region.copy_sources.policies[source.instance_id]
        check = _take_name(region, name, demands)
        if check.status is NameStatus.BLOCKED:
            names = tuple(sorted(p.name for p in copying))
            demands.skips.append(
                Skip(source.instance_id, source.slot, name, names,
                     f"{name}: copy from {source.image.region} not made: {check.problem}",
                     source_region=source.image.region)
            )
        elif check.status is NameStatus.FREE:
            # newest copy first: it is the one a disaster would need
            priority = (
                _staleness(sets, source.instance_id), -source.slot.timestamp(),
                source.instance_id,
            )
            demands.wanted.append(
                Demand(source.instance_id, source.slot, name, copying, priority, source=source)
            )


def _register_demands(
    region: _Region, sets: dict[str, _InstanceSet], demands: _Demands
) -> None:
    """Give every demanded instance a set (its first image still goes through retention)
    and mark the in-flight images the run waits for."""
    for demand in demands.wanted:
        if demand.instance_id not in sets:
            sets[demand.instance_id] = _new_set(region, demand.instance_id)
    for image_id in demands.waited:
        owner = sets[region.managed_by_id[image_id].instance_id]
        owner.waited = owner.waited | {image_id}


def name_status(existing: Sequence[Image], managed_by_id: Mapping[str, ManagedImage]) -> NameCheck:
    """What the images holding a wanted name (``existing``) mean for making it."""
    if not existing:
        return NameCheck(NameStatus.FREE)
    foreign = [image.image_id for image in existing if image.image_id not in managed_by_id]
    if foreign:
        return NameCheck(
            NameStatus.BLOCKED,
            f"the name is taken by {', '.join(foreign)}, which cvmkeeper does not manage",
        )
    if any(image.state.usable for image in existing):
        return NameCheck(NameStatus.DONE)
    if any(image.state.busy for image in existing):
        return NameCheck(NameStatus.WAIT)
    if all(
        image.state is ImageState.CREATEFAILED and not managed_by_id[image.image_id].pinned
        for image in existing
    ):
        return NameCheck(NameStatus.FREE)  # cleaned up before the creates; the name is free
    states = ", ".join(f"{image.image_id} {image.state.value}" for image in existing)
    return NameCheck(
        NameStatus.BLOCKED, f"the name is held by {states}, which cvmkeeper may not delete"
    )


# --- 4-5: retention and quota -----------------------------------------------------------------


def resolve_quota(
    inventory: Inventory,
    sets: Mapping[str, _InstanceSet],
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
        covered = [d for d in planned if not decisions.get(_new_id(d.instance_id, d.slot),
                                                           _KEPT).keep]
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
                notices.append(PlanWarning(
                    WarningKind.PLAN,
                    f"{demand.name}: older copy from {demand.source.image.region} not made: "
                    f"the quota ({inventory.quota}) holds fewer copies than their retention "
                    "keeps",
                    demand.policy_names,
                ))
            else:
                skips.append(_quota_skip(demand, inventory.quota, len(inventory.images)))


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
    sets: Mapping[str, _InstanceSet],
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
        key=_age_key,
    )
    available = inventory.quota - len(inventory.images) + cleaned_up
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
    sets: Mapping[str, _InstanceSet], early: set[str], done_names: set[str]
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
            and owned is not instance_set.newest_usable
            and owned.image_id not in early
            and owned.image_id not in instance_set.waited
            and owned.image.name not in done_names
        ),
        key=_age_key,
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


def _eviction_notice(
    inventory: Inventory, sets: Mapping[str, _InstanceSet], owned: ManagedImage, demand: Demand
) -> PlanWarning:
    return PlanWarning(
        WarningKind.EVICT,
        f"quota full ({inventory.quota}): evicting {owned.image.name} ({owned.image_id}) "
        f"of {owned.instance_id} to {demand.what} {demand.name}; retention wants more images "
        "than the quota holds",
        sets[owned.instance_id].policy_names,
    )


# --- 6: steps ---------------------------------------------------------------------------------


def _steps(
    quota: QuotaResolution,
    cleanup: Sequence[ManagedImage],
    skips: Sequence[Skip],
    waited: Mapping[str, Image],
) -> tuple[Step, ...]:
    """The steps in execution order (``core.plan``'s module doc)."""
    decisions = quota.decisions
    made = quota.made
    steps: list[Step] = []
    steps += _batches(
        Phase.BEFORE_CREATE,
        DeleteKind.CLEANUP,
        [_target(o, "CREATEFAILED: clean up") for o in cleanup],
    )
    steps += _batches(
        Phase.BEFORE_CREATE,
        DeleteKind.EXPIRE,
        [_target(o, _expire_reason(o, decisions, early=True)) for o in quota.early],
    )
    steps += _batches(
        Phase.BEFORE_CREATE,
        DeleteKind.EVICT,
        [_target(o, f"evicted: quota full, room for {d.name}") for o, d in quota.evicted],
    )
    steps += [_create(demand) for demand in made if demand.source is None]
    steps += [_copy(demand) for demand in made if demand.source is not None]
    steps += _sorted_skips(skips)
    if made or waited:
        new = "new images and copies" if any(m.source for m in made) else "new images"
        steps.append(
            Wait(
                image_ids=tuple(sorted(waited)),
                image_names=tuple(
                    sorted({i.name for i in waited.values()} | {m.name for m in made})
                ),
                reason=f"wait until the {new} are NORMAL, then plan again and delete",
            )
        )
    steps += _batches(
        Phase.AFTER_CREATE,
        DeleteKind.EXPIRE,
        [_target(o, _expire_reason(o, decisions, early=False)) for o in quota.late],
    )
    return tuple(steps)


# --- helpers ----------------------------------------------------------------------------------


def _sorted_skips(skips: Sequence[Skip]) -> list[Skip]:
    return sorted(skips, key=lambda skip: (skip.slot, skip.instance_id))


def _normalise_due(due: DueSlots) -> list[tuple[str, datetime]]:
    pairs = list(due.items()) if isinstance(due, Mapping) else list(due)
    result: list[tuple[str, datetime]] = []
    for policy_name, slot in pairs:
        if slot.tzinfo is None or slot.utcoffset() is None:
            raise ValueError(f"due slot {slot.isoformat()} of {policy_name!r} has no timezone")
        result.append((policy_name, slot.astimezone(UTC)))
    return result


def _strongest(policies: Sequence[Policy]) -> Consistency:
    return max(
        (Consistency(policy.consistency) for policy in policies),
        key=_CONSISTENCY_STRENGTH.index,
    )


def _age_key(image: ManagedImage) -> tuple[datetime, datetime, str]:
    return (image.slot, image.image.created_time, image.image_id)


def _batches(phase: Phase, kind: DeleteKind, targets: Sequence[DeleteTarget]) -> list[Delete]:
    return [
        Delete(phase=phase, kind=kind, targets=tuple(targets[i : i + DELETE_BATCH_SIZE]))
        for i in range(0, len(targets), DELETE_BATCH_SIZE)
    ]


@dataclass(frozen=True, slots=True)
class _CopySources:
    """What the source regions offer this region: instances copied here, with the
    policies copying them, their usable managed images, and source regions not read."""

    policies: Mapping[str, tuple[Policy, ...]]
    images: tuple[ManagedImage, ...]
    missing: tuple[str, ...]


def _copy_sources(
    inventory: Inventory,
    policies: Sequence[Policy],
    local: Mapping[str, tuple[Policy, ...]],
    sources: Mapping[str, Inventory],
    fmt: NameFormat,
) -> _CopySources:
    region = inventory.region
    copying = [policy for policy in policies if policy.copy_to(region) is not None]
    needed = list(dict.fromkeys(r for p in copying for r in p.regions if r != region))
    by_instance: dict[str, tuple[Policy, ...]] = {}
    images: list[ManagedImage] = []
    for source_region in needed:
        source = sources.get(source_region)
        if source is None:
            continue
        resolution = resolve_targets(source_region, copying, source.instances)
        for instance_id, instance_policies in resolution.policies_by_instance.items():
            if instance_id not in local:
                by_instance[instance_id] = instance_policies
        for image in source.images:
            owned = classify_image(image, fmt)
            if owned is not None and owned.instance_id in by_instance and image.state.usable:
                images.append(owned)
    images.sort(key=lambda owned: (owned.slot, owned.instance_id, owned.image_id))
    missing = tuple(r for r in needed if r not in sources)
    return _CopySources(by_instance, tuple(images), missing)


def _copy_retention(policy: Policy, region: str) -> Retention:
    rule = policy.copy_to(region)
    assert rule is not None  # only policies copying here are asked
    return rule.retention


def _without(items: list[Demand], removed: Sequence[Demand]) -> list[Demand]:
    gone = {id(item) for item in removed}
    return [item for item in items if id(item) not in gone]


def _make_set(
    instance_id: str, targeted: Mapping[str, tuple[Policy, ...]], settings: PlannerSettings
) -> _InstanceSet:
    policies = targeted.get(instance_id)
    if policies:
        rules = tuple(RuleSet(p.retention, p.timezone, p.name) for p in policies)
        return _InstanceSet(instance_id, [], rules, orphan=False)
    orphan_rules: tuple[RuleSet, ...] = ()
    if settings.orphan_retention is not None:
        orphan_rules = (RuleSet(settings.orphan_retention, "UTC", _ORPHAN_RULES),)
    return _InstanceSet(instance_id, [], orphan_rules, orphan=True)


def _retention(
    sets: Mapping[str, _InstanceSet],
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
                )
                for owned in instance_set.images
            ]
            backups += [
                Backup(_new_id(instance_id, slot), slot, ImageState.NORMAL) for slot in new_slots
            ]
            result = {d.image_id: d for d in decide(backups, instance_set.rules)}
            cached = cache[instance_id] = (new_slots, result)
        decisions.update(cached[1])
    return decisions


def _expired(
    owned: ManagedImage, instance_set: _InstanceSet, decisions: Mapping[str, Decision]
) -> bool:
    """Retention lets ``owned`` go, and no hard rule protects it (pins, in-flight images)."""
    decision = decisions[owned.image_id]
    return (
        not decision.keep
        and owned.image.state.usable
        and not owned.pinned
        and owned.image_id not in instance_set.waited
    )


def _target(owned: ManagedImage, reason: str) -> DeleteTarget:
    return DeleteTarget(
        image_id=owned.image_id,
        image_name=owned.image.name,
        instance_id=owned.instance_id,
        slot=owned.slot,
        reason=reason,
    )


def _expire_reason(owned: ManagedImage, decisions: Mapping[str, Decision], *, early: bool) -> str:
    reason = ", ".join(decisions[owned.image_id].reasons) or "expired"
    if early:
        return f"{reason}; deleted before the creates to make room in the quota"
    return reason


def _create(item: Demand) -> Create:
    names = item.policy_names
    return Create(
        instance_id=item.instance_id,
        image_name=item.name,
        slot=item.slot,
        policies=names,
        tags=image_tags(names, item.instance_id, item.slot),
        description=image_description(names, item.slot),
        consistency=_strongest(item.policies),
        reason=f"slot {slot_tag_value(item.slot)} due for {', '.join(names)}",
    )


def _copy(item: Demand) -> Copy:
    source = item.source
    assert source is not None
    names = item.policy_names
    return Copy(
        instance_id=item.instance_id,
        image_name=item.name,
        slot=item.slot,
        source_region=source.image.region,
        source_image_id=source.image_id,
        policies=names,
        tags=source.image.tags,
        description=source.image.description,
        reason=f"copy of {source.image_id} from {source.image.region} for {', '.join(names)}",
    )


def _quota_skip(item: Demand, quota: int, used: int) -> Skip:
    how = "on_quota_full: skip" if not item.may_evict else "nothing can be evicted"
    what = "not created" if item.source is None else \
        f"not copied from {item.source.image.region}"
    return Skip(
        instance_id=item.instance_id,
        slot=item.slot,
        image_name=item.name,
        policies=item.policy_names,
        error=(
            f"{item.name}: {what}: region at quota ({used} of {quota} images) and "
            f"nothing expired can be deleted ({how})"
        ),
        source_region=item.source.image.region if item.source is not None else "",
    )


def _image_decisions(
    sets: Mapping[str, _InstanceSet], quota: QuotaResolution, cleanup: Sequence[ManagedImage]
) -> tuple[ImageDecision, ...]:
    """What becomes of every managed image, newest first per instance, with its reasons."""
    decisions = quota.decisions
    cleanup_ids = {owned.image_id for owned in cleanup}
    early = {owned.image_id for owned in quota.early}
    evicted = {owned.image_id: demand for owned, demand in quota.evicted}
    late = {owned.image_id for owned in quota.late}
    result: list[ImageDecision] = []
    for instance_id in sorted(sets):
        instance_set = sets[instance_id]
        for owned in sorted(instance_set.images, key=_age_key, reverse=True):
            decision = decisions[owned.image_id]
            image_id = owned.image_id
            kind: DeleteKind | None = None
            phase: Phase | None = None
            reasons = decision.reasons
            keep = decision.keep
            if image_id in cleanup_ids:
                kind, phase = DeleteKind.CLEANUP, Phase.BEFORE_CREATE
            elif image_id in early:
                kind, phase = DeleteKind.EXPIRE, Phase.BEFORE_CREATE
            elif image_id in evicted:
                kind, phase = DeleteKind.EVICT, Phase.BEFORE_CREATE
                reasons = (*reasons, f"evicted: quota full, room for {evicted[image_id].name}")
            elif image_id in late:
                kind, phase = DeleteKind.EXPIRE, Phase.AFTER_CREATE
            elif image_id in instance_set.waited:
                note = "expires once NORMAL (next plan)" if not keep else "waited for"
                reasons = (*reasons, f"in flight for a due slot: {note}")
            elif instance_set.held:
                reasons = ("maybe a copy; its source region was not read: kept",)
            elif not keep:
                keep = True
                reasons = (*reasons, "kept: protected by the hard rules")
            result.append(
                ImageDecision(
                    image_id=image_id,
                    image_name=owned.image.name,
                    instance_id=instance_id,
                    slot=owned.slot,
                    state=owned.image.state,
                    pinned=owned.pinned,
                    orphan=instance_set.orphan and not instance_set.held,
                    keep=keep,
                    reasons=reasons,
                    delete_kind=kind,
                    delete_phase=phase,
                )
            )
    return tuple(result)
