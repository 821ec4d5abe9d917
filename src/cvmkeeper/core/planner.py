"""The planner: from one region's inventory, the policies and the due slots to a ``Plan``.

Pure (no I/O, no clock: ``now`` is an argument) and linear in the number of images: images
are indexed by instance once, retention runs once per instance set (again only for the
instances whose creates change while quota is resolved).

How a plan is made (DESIGN.md "The rules that are never broken", "Quota-aware rotation"):

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cvmkeeper.core.disk_report import disk_warnings
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
    Skip,
    Step,
    Wait,
    check_plan,
)
from cvmkeeper.core.policy import Consistency, Policy, Retention
from cvmkeeper.core.retention import Backup, Decision, RuleSet, decide
from cvmkeeper.core.targets import resolve_targets

#: Due slots: policy name -> slot, or (policy name, slot) pairs (a policy may be due twice).
DueSlots = Mapping[str, datetime] | Iterable[tuple[str, datetime]]

_CONSISTENCY_STRENGTH = (Consistency.LIVE, Consistency.FORCE_POWEROFF, Consistency.STOP_START)
_ORPHAN_RULES = "orphans"
_KEPT = Decision("", keep=True, reasons=())


def _new_id(instance_id: str, slot: datetime) -> str:
    """The id a planned image has inside retention (never a real id, never deleted)."""
    return f"new:{instance_id}:{slot.isoformat()}"


class PlanInvariantError(RuntimeError):
    """The planner produced a plan that breaks a rule of DESIGN.md (a bug; nothing is run)."""


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """Daemon-wide settings the planner needs.

    ``orphan_retention``: keep rules for the images of instances no policy targets any
    more; ``None`` (the default) keeps every orphan image. ``name_format``: the configured
    image name template.
    """

    orphan_retention: Retention | None = None
    name_format: NameFormat = field(default=DEFAULT_FORMAT)


@dataclass(slots=True)
class _Wanted:
    """One due (instance, slot) that needs a create, or a source image that needs a copy."""

    instance_id: str
    slot: datetime
    name: str
    policies: tuple[Policy, ...]
    priority: tuple[datetime, float, str]  # stalest instance first, then by slot
    source: ManagedImage | None = None  # set for a copy: the image in its source region

    @property
    def policy_names(self) -> tuple[str, ...]:
        return tuple(sorted(policy.name for policy in self.policies))

    @property
    def may_evict(self) -> bool:
        return all(policy.on_quota_full == "evict" for policy in self.policies)


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
    settings = settings or PlannerSettings()
    fmt = settings.name_format
    warnings: list[str] = []
    errors: list[str] = []

    managed, unmanaged = split_images(inventory.images, fmt)
    resolution = resolve_targets(inventory.region, policies, inventory.instances)
    warnings.extend(resolution.warnings)
    targeted = resolution.policies_by_instance
    warnings.extend(disk_warnings(inventory, targeted, managed))  # rule 10 (core.disk_report)
    copy_sources = _copy_sources(inventory, policies, targeted, sources or {}, fmt)
    local_ids = {instance.instance_id for instance in inventory.instances}

    def make_set(instance_id: str) -> _InstanceSet:
        if instance_id in targeted or instance_id in local_ids:
            return _make_set(instance_id, targeted, settings)
        copying = copy_sources.policies.get(instance_id)
        if copying:
            rules = tuple(
                RuleSet(_copy_retention(p, inventory.region), p.timezone, p.name)
                for p in copying
            )
            return _InstanceSet(instance_id, [], rules, orphan=False)
        if copy_sources.missing:
            return _InstanceSet(instance_id, [], (), orphan=True, held=True)
        return _make_set(instance_id, targeted, settings)

    # --- instance sets --------------------------------------------------------------------
    sets: dict[str, _InstanceSet] = {}
    for owned in managed:
        instance_set = sets.get(owned.instance_id)
        if instance_set is None:
            instance_set = sets[owned.instance_id] = make_set(owned.instance_id)
        instance_set.images.append(owned)
    for instance_set in sets.values():
        usable = [m for m in instance_set.images if m.image.state.usable]
        instance_set.newest_usable = max(usable, key=_age_key, default=None)

    # --- creates wanted ------------------------------------------------------------------
    by_name: dict[str, list[Image]] = defaultdict(list)
    for image in inventory.images:
        by_name[image.name].append(image)
    managed_by_id = {owned.image_id: owned for owned in managed}
    policies_by_name = {policy.name: policy for policy in policies}
    instances_by_policy: dict[str, list[str]] = defaultdict(list)
    for instance_id, instance_policies in targeted.items():
        for targeting in instance_policies:
            instances_by_policy[targeting.name].append(instance_id)

    due_policies: dict[tuple[str, datetime], list[Policy]] = defaultdict(list)
    for policy_name, slot in _normalise_due(due):
        due_policy = policies_by_name.get(policy_name)
        if due_policy is None:
            warnings.append(f"due slot for unknown policy {policy_name!r} ignored")
            continue
        if inventory.region not in due_policy.regions:
            continue
        if slot > now:
            warnings.append(
                f"policy {policy_name!r}: slot {slot_tag_value(slot)} is after now; not made"
            )
            continue
        for instance_id in instances_by_policy.get(policy_name, ()):
            slot_policies = due_policies[(instance_id, slot)]
            if due_policy not in slot_policies:
                slot_policies.append(due_policy)

    wanted: list[_Wanted] = []
    done_names: set[str] = set()  # due slots that already have their usable image
    skips: list[Skip] = []
    waited: dict[str, Image] = {}
    for (instance_id, slot), slot_policies in sorted(due_policies.items(), key=lambda kv: kv[0]):
        names = tuple(sorted(p.name for p in slot_policies))
        try:
            name = image_name(instance_id, slot, fmt)
        except ValueError as exc:
            skips.append(Skip(instance_id, slot, "", names, str(exc)))
            continue
        existing = by_name.get(name, [])
        problem = _existing_name_problem(existing, managed_by_id)
        if problem == "done":
            done_names.add(name)
            continue
        if problem == "wait":
            for image in existing:
                waited[image.image_id] = image
            continue
        if problem:
            skips.append(Skip(instance_id, slot, name, names, f"{name}: {problem}"))
            continue
        newest = sets[instance_id].newest_usable if instance_id in sets else None
        staleness = newest.slot if newest else datetime.min.replace(tzinfo=UTC)
        wanted.append(
            _Wanted(instance_id, slot, name, tuple(slot_policies),
                    (staleness, slot.timestamp(), instance_id))
        )
    if make_copies:
        for source in copy_sources.images:
            name = source.image.name
            copying = copy_sources.policies[source.instance_id]
            existing = by_name.get(name, [])
            problem = _existing_name_problem(existing, managed_by_id)
            if problem == "done":
                continue
            if problem == "wait":
                for image in existing:
                    waited[image.image_id] = image
                continue
            names = tuple(sorted(p.name for p in copying))
            if problem:
                skips.append(
                    Skip(source.instance_id, source.slot, name, names,
                         f"{name}: copy from {source.image.region} not made: {problem}",
                         source_region=source.image.region)
                )
                continue
            newest = sets[source.instance_id].newest_usable if source.instance_id in sets \
                else None
            staleness = newest.slot if newest else datetime.min.replace(tzinfo=UTC)
            wanted.append(
                # newest copy first: it is the one a disaster would need
                _Wanted(source.instance_id, source.slot, name, copying,
                        (staleness, -source.slot.timestamp(), source.instance_id), source=source)
            )
    wanted.sort(key=lambda w: w.priority)
    for item in wanted:  # an instance's first image still goes through retention
        if item.instance_id not in sets:
            sets[item.instance_id] = make_set(item.instance_id)

    for image_id in waited:
        owner = sets[managed_by_id[image_id].instance_id]
        owner.waited = owner.waited | {image_id}

    # --- cleanup -------------------------------------------------------------------------
    cleanup = [
        owned
        for owned in managed
        if owned.image.state is ImageState.CREATEFAILED and not owned.pinned
    ]
    cleanup.sort(key=_age_key)

    # --- quota, resolved until the set of creates is stable -------------------------------
    planned = list(wanted)
    decisions_cache: dict[str, tuple[tuple[datetime, ...], dict[str, Decision]]] = {}
    while True:
        creates_by_instance: dict[str, list[datetime]] = defaultdict(list)
        for item in planned:
            creates_by_instance[item.instance_id].append(item.slot)
        decisions = _retention(sets, creates_by_instance, decisions_cache)
        stale = [
            item
            for item in planned
            if not decisions.get(_new_id(item.instance_id, item.slot), _KEPT).keep
        ]
        if stale:  # older than what retention keeps: made now, deleted at once, made again
            planned = _without(planned, stale)
            for item in stale:
                if item.source is not None:
                    continue  # older than the copies keep: not copied, nothing to report
                warnings.append(
                    f"{item.name}: slot {slot_tag_value(item.slot)} of {item.instance_id} not "
                    "made: newer images cover it and retention would delete it at once"
                )
            continue
        expired = [
            owned
            for instance_set in sets.values()
            for owned in instance_set.images
            if _expired(owned, instance_set, decisions)
        ]
        expired.sort(key=_age_key)
        available = inventory.quota - len(inventory.images) + len(cleanup)
        shortfall = len(planned) - available
        early: list[ManagedImage] = []
        if shortfall > 0:
            early = [
                owned for owned in expired if owned is not sets[owned.instance_id].newest_usable
            ][:shortfall]
        available += len(early)
        early_chosen = {owned.image_id for owned in early}
        evict_pool = sorted(
            (
                owned
                for instance_set in sets.values()
                if not instance_set.orphan and not instance_set.held
                for owned in instance_set.images
                if owned.image.state.usable
                and not owned.pinned
                and owned is not instance_set.newest_usable
                and owned.image_id not in early_chosen
                and owned.image_id not in instance_set.waited
                and owned.image.name not in done_names
            ),
            key=_age_key,
            reverse=True,
        )
        evicted: list[tuple[ManagedImage, _Wanted]] = []
        made: list[_Wanted] = []
        dropped: list[_Wanted] = []
        for item in planned:
            # Over quota (quota lowered), one create may need several evictions.
            needed = 1 - available if item.may_evict and available <= 0 else 0
            # A copy never evicts a newer image: that would only make room for an older one.
            if 0 < needed <= len(evict_pool) and (
                item.source is None or evict_pool[-needed].slot < item.slot
            ):
                evicted += [(evict_pool.pop(), item) for _ in range(needed)]
                available += needed
            if available > 0:
                available -= 1
                made.append(item)
            else:
                dropped.append(item)
        if not dropped:
            break
        planned = _without(planned, dropped)
        newest_copies = {
            item.instance_id: item.slot
            for item in sorted(wanted, key=lambda w: w.slot)
            if item.source is not None
        }
        for item in dropped:
            if item.source is not None and item.slot < newest_copies[item.instance_id]:
                warnings.append(
                    f"{item.name}: older copy from {item.source.image.region} not made: the "
                    f"quota ({inventory.quota}) holds fewer copies than their retention keeps"
                )
            else:
                skips.append(_quota_skip(item, inventory.quota, len(inventory.images)))

    # --- steps ---------------------------------------------------------------------------
    early_ids = {owned.image_id for owned in early}
    evicted_ids = {owned.image_id: item for owned, item in evicted}
    late = [
        owned
        for owned in expired
        if owned.image_id not in early_ids and owned.image_id not in evicted_ids
    ]
    for owned, item in evicted:
        what = "make" if item.source is None else f"copy from {item.source.image.region}"
        warnings.append(
            f"quota full ({inventory.quota}): evicting {owned.image.name} ({owned.image_id}) "
            f"of {owned.instance_id} to {what} {item.name}; retention wants more images than "
            "the quota holds"
        )

    errors.extend(skip.error for skip in skips)

    steps: list[Step] = []
    steps += _batches(
        Phase.BEFORE_CREATE,
        DeleteKind.CLEANUP,
        [_target(o, "CREATEFAILED: clean up") for o in cleanup],
    )
    steps += _batches(
        Phase.BEFORE_CREATE,
        DeleteKind.EXPIRE,
        [_target(o, _expire_reason(o, decisions, early=True)) for o in early],
    )
    steps += _batches(
        Phase.BEFORE_CREATE,
        DeleteKind.EVICT,
        [_target(o, f"evicted: quota full, room for {i.name}") for o, i in evicted],
    )
    steps += [_create(item) for item in made if item.source is None]
    steps += [_copy(item) for item in made if item.source is not None]
    skips.sort(key=lambda skip: (skip.slot, skip.instance_id))
    steps += skips
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
        [_target(o, _expire_reason(o, decisions, early=False)) for o in late],
    )

    plan = Plan(
        region=inventory.region,
        now=now,
        quota=inventory.quota,
        used=len(inventory.images),
        unmanaged=len(unmanaged),
        steps=tuple(steps),
        decisions=_image_decisions(
            sets=sets,
            decisions=decisions,
            cleanup=cleanup,
            early=early_ids,
            evicted=evicted_ids,
            late={o.image_id for o in late},
        ),
        warnings=tuple(warnings),
        errors=tuple(errors),
        orphan_instance_ids=tuple(
            sorted(i for i, s in sets.items() if s.orphan and not s.held)
        ),
    )
    violations = check_plan(inventory, plan, fmt, managed=managed_by_id, sources=sources)
    if violations:
        raise PlanInvariantError("; ".join(violations))
    return plan


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


def _without(items: list[_Wanted], removed: Sequence[_Wanted]) -> list[_Wanted]:
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


def _existing_name_problem(
    existing: Sequence[Image], managed_by_id: Mapping[str, ManagedImage]
) -> str:
    """'' (create), 'done', 'wait', or the error that makes the slot a ``Skip``."""
    if not existing:
        return ""
    foreign = [image.image_id for image in existing if image.image_id not in managed_by_id]
    if foreign:
        return f"the name is taken by {', '.join(foreign)}, which cvmkeeper does not manage"
    if any(image.state.usable for image in existing):
        return "done"
    if any(image.state.busy for image in existing):
        return "wait"
    if all(
        image.state is ImageState.CREATEFAILED and not managed_by_id[image.image_id].pinned
        for image in existing
    ):
        return ""  # cleaned up before the creates; the name is then free
    states = ", ".join(f"{image.image_id} {image.state.value}" for image in existing)
    return f"the name is held by {states}, which cvmkeeper may not delete"


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


def _create(item: _Wanted) -> Create:
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


def _copy(item: _Wanted) -> Copy:
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


def _quota_skip(item: _Wanted, quota: int, used: int) -> Skip:
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
    *,
    sets: Mapping[str, _InstanceSet],
    decisions: Mapping[str, Decision],
    cleanup: Sequence[ManagedImage],
    early: set[str],
    evicted: Mapping[str, _Wanted],
    late: set[str],
) -> tuple[ImageDecision, ...]:
    cleanup_ids = {owned.image_id for owned in cleanup}
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
