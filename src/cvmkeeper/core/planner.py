"""The planner: from one region's inventory, the policies and the due slots to a ``Plan``.

Pure (no I/O, no clock: ``now`` is an argument) and linear in the number of images: images
are indexed by instance once, retention runs once per instance set (again only for the
instances whose creates change while quota is resolved).

How a plan is made (docs/design.md "The rules that are never broken", "Quota-aware
rotation"); ``plan_region`` reads as these steps, each a function with a typed result.
The region's index, instance sets and demands are here (the types in ``core.demand``);
the quota resolution is ``core.rotation``; the steps and decisions ``core.plan_steps``.

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

from cvmkeeper.core.demand import ORPHAN_RULES, Demand, InstanceSet, age_key
from cvmkeeper.core.disk_report import disk_warnings
from cvmkeeper.core.due import DueSlots
from cvmkeeper.core.holds import hold_images, lookalike_notices
from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import (
    DEFAULT_FORMAT,
    NameFormat,
    image_name,
    slot_tag_value,
)
from cvmkeeper.core.ownership import ManagedImage, classify_image, copy_origins, split_images
from cvmkeeper.core.plan import (
    Plan,
    PlanWarning,
    Skip,
    WarningKind,
    check_plan,
)
from cvmkeeper.core.plan_steps import image_decisions, plan_steps
from cvmkeeper.core.policy import Policy, Retention
from cvmkeeper.core.retention import RuleSet
from cvmkeeper.core.rotation import eviction_notice, resolve_quota
from cvmkeeper.core.targets import resolve_targets

_NEVER = datetime.min.replace(tzinfo=UTC)


__all__ = ["DueSlots", "PlanInvariantError", "PlannerSettings", "plan_region"]


class PlanInvariantError(RuntimeError):
    """The planner produced a plan that breaks a rule of docs/design.md (a bug; nothing
    is run)."""


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """Daemon-wide settings the planner needs.

    ``orphan_retention``: keep rules for the images of instances no policy targets any
    more; ``None`` (the default) keeps every orphan image. ``name_format``: the configured
    image name template. ``hold_unknown``: why some policy file cannot be used (empty when
    every file can); while set, images of policies not loaded are held (``core.holds``).
    """

    orphan_retention: Retention | None = None
    name_format: NameFormat = field(default=DEFAULT_FORMAT)
    hold_unknown: str = ""


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
    region = _read_region(
        inventory, policies, settings or PlannerSettings(), sources, notices, now=now
    )
    sets = _instance_sets(region)
    due_policies = _due_policies(region, policies, due, now, notices)
    demands = _slot_demands(region, sets, due_policies)
    if make_copies:
        _add_copy_demands(region, sets, demands)
    demands.wanted.sort(key=lambda d: d.priority)
    _register_demands(region, sets, demands)
    cleanup = sorted(
        (
            o
            for o in region.managed
            if o.image.state is ImageState.CREATEFAILED and not o.pinned and not o.provisional
        ),
        key=age_key,
    )
    quota = resolve_quota(inventory, sets, demands.wanted, len(cleanup), demands.done_names)
    notices += quota.notices
    notices += [eviction_notice(inventory, sets, o, d) for o, d in quota.evicted]
    skips = [*demands.skips, *quota.skips]
    plan = Plan(
        region=inventory.region,
        now=now,
        quota=inventory.quota,
        used=inventory.used,
        unmanaged=len(region.unmanaged),
        steps=plan_steps(quota, cleanup, skips, demands.waited),
        decisions=image_decisions(sets, quota, cleanup),
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


def _read_region(
    inventory: Inventory,
    policies: Sequence[Policy],
    settings: PlannerSettings,
    sources: Mapping[str, Inventory] | None,
    notices: list[PlanWarning],
    *,
    now: datetime,
) -> _Region:
    """Index the region once: ownership, holds (``core.holds``), names, targets, copy
    sources."""
    # copies not yet tagged are recognised by their source (core.ownership.classify_copy);
    # new images listed before their tags, by cvmkeeper's record (Inventory.provisional)
    origins = copy_origins((sources or {}).values(), settings.name_format)
    split, unmanaged = split_images(
        inventory.images, settings.name_format, origins, inventory.provisional
    )
    resolution = resolve_targets(inventory.region, policies, inventory.instances)
    notices += [
        PlanWarning(WarningKind.TARGETS, message, (name,))
        for name, message in zip(resolution.unmatched, resolution.warnings, strict=True)
    ]
    targeted = resolution.policies_by_instance
    holds = hold_images(
        split,
        policies,
        targeted,
        now,
        rotate_removed=settings.orphan_retention is not None,
        hold_unknown=settings.hold_unknown,
    )
    managed = list(holds.managed)
    notices += holds.notices
    notices += lookalike_notices(unmanaged, targeted)
    notices += disk_warnings(inventory, targeted, managed)  # rule 10 (core.disk_report)
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


def _new_set(region: _Region, instance_id: str) -> InstanceSet:
    """The (empty) instance set of ``instance_id``: targeted here, a copy set, held, or an
    orphan."""
    if instance_id in region.targeted or instance_id in region.local_ids:
        return _make_set(instance_id, region.targeted, region.settings)
    copying = region.copy_sources.policies.get(instance_id)
    if copying:
        place = region.inventory.region
        rules = tuple(RuleSet(_copy_retention(p, place), p.timezone, p.name) for p in copying)
        return InstanceSet(instance_id, [], rules, orphan=False)
    if region.copy_sources.missing:
        return InstanceSet(instance_id, [], (), orphan=True, held=True)
    return _make_set(instance_id, region.targeted, region.settings)


def _instance_sets(region: _Region) -> dict[str, InstanceSet]:
    """One set per instance with managed images here, with its newest usable image."""
    sets: dict[str, InstanceSet] = {}
    for owned in region.managed:
        instance_set = sets.get(owned.instance_id)
        if instance_set is None:
            instance_set = sets[owned.instance_id] = _new_set(region, owned.instance_id)
        instance_set.images.append(owned)
    for instance_set in sets.values():
        # A held image (named for a slot after now, core.holds) is kept anyway; the newest
        # of the others is the one rule 3 protects and staleness is measured by.
        usable = [m for m in instance_set.images if m.image.state.usable]
        unheld = [m for m in usable if not m.hold] or usable
        instance_set.newest_usable = max(unheld, key=age_key, default=None)
    return sets


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
            notices.append(
                PlanWarning(
                    WarningKind.PLAN, f"due slot for unknown policy {policy_name!r} ignored"
                )
            )
            continue
        if region.inventory.region not in due_policy.regions:
            continue
        if slot > now:
            notices.append(
                PlanWarning(
                    WarningKind.PLAN,
                    f"policy {policy_name!r}: slot {slot_tag_value(slot)} is after now; not made",
                    (policy_name,),
                )
            )
            continue
        for instance_id in instances_by_policy.get(policy_name, ()):
            slot_policies = due_policies[(instance_id, slot)]
            if due_policy not in slot_policies:
                slot_policies.append(due_policy)
    return due_policies


def _staleness(sets: Mapping[str, InstanceSet], instance_id: str) -> datetime:
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
    sets: Mapping[str, InstanceSet],
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
        elif check.status is NameStatus.FREE and name in region.inventory.intents:
            demands.skips.append(Skip(instance_id, slot, name, names, _pending_intent(name)))
        elif check.status is NameStatus.FREE:
            priority = (_staleness(sets, instance_id), slot.timestamp(), instance_id)
            demands.wanted.append(Demand(instance_id, slot, name, tuple(slot_policies), priority))
    return demands


def _pending_intent(name: str) -> str:
    """Why a due name with a live intent (``Inventory.intents``) is not created: a run that
    was killed after sending its CreateImage may have made it, unlisted yet. Sending it
    again would be sent into a quota that image may fill (rule 2); its name makes it
    adopted by the run that lists it."""
    return (
        f"{name}: not created: an earlier run sent its CreateImage and never recorded the "
        "answer (it was killed, or is still running); no image of that name is listed yet, "
        "so it is counted against the quota and waited for (adopted once listed; reported "
        "if api.visibility_grace passes first)"
    )


def _add_copy_demands(region: _Region, sets: Mapping[str, InstanceSet], demands: _Demands) -> None:
    """A copy demand per usable source image whose name is free here."""
    for source in region.copy_sources.images:
        name = source.image.name
        copying = region.copy_sources.policies[source.instance_id]
        check = _take_name(region, name, demands)
        if check.status is NameStatus.BLOCKED:
            names = tuple(sorted(p.name for p in copying))
            demands.skips.append(
                Skip(
                    source.instance_id,
                    source.slot,
                    name,
                    names,
                    f"{name}: copy from {source.image.region} not made: {check.problem}",
                    source_region=source.image.region,
                )
            )
        elif check.status is NameStatus.FREE:
            # newest copy first: it is the one a disaster would need
            priority = (
                _staleness(sets, source.instance_id),
                -source.slot.timestamp(),
                source.instance_id,
            )
            demands.wanted.append(
                Demand(source.instance_id, source.slot, name, copying, priority, source=source)
            )


def _register_demands(region: _Region, sets: dict[str, InstanceSet], demands: _Demands) -> None:
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


def _normalise_due(due: DueSlots) -> list[tuple[str, datetime]]:
    pairs = list(due.items()) if isinstance(due, Mapping) else list(due)
    result: list[tuple[str, datetime]] = []
    for policy_name, slot in pairs:
        if slot.tzinfo is None or slot.utcoffset() is None:
            raise ValueError(f"due slot {slot.isoformat()} of {policy_name!r} has no timezone")
        result.append((policy_name, slot.astimezone(UTC)))
    return result


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


def _make_set(
    instance_id: str, targeted: Mapping[str, tuple[Policy, ...]], settings: PlannerSettings
) -> InstanceSet:
    policies = targeted.get(instance_id)
    if policies:
        rules = tuple(RuleSet(p.retention, p.timezone, p.name) for p in policies)
        return InstanceSet(instance_id, [], rules, orphan=False)
    orphan_rules: tuple[RuleSet, ...] = ()
    if settings.orphan_retention is not None:
        orphan_rules = (RuleSet(settings.orphan_retention, "UTC", ORPHAN_RULES),)
    return InstanceSet(instance_id, [], orphan_rules, orphan=True)
