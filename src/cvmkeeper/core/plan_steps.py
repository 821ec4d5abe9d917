"""A plan's steps and image decisions, from the quota resolution (``core.plan``'s order).

Deletes before the creates (cleanup, early expiry, eviction, in batches of
``DELETE_BATCH_SIZE``), creates, copies, skips, one wait, deletes after the creates; and
for every managed image what becomes of it, with its reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cvmkeeper.core.demand import Demand, InstanceSet, age_key
from cvmkeeper.core.inventory import Image
from cvmkeeper.core.naming import (
    copy_tags,
    image_description,
    image_tags,
    slot_tag_value,
)
from cvmkeeper.core.ownership import ManagedImage
from cvmkeeper.core.plan import (
    DELETE_BATCH_SIZE,
    Copy,
    Create,
    Delete,
    DeleteKind,
    DeleteTarget,
    ImageDecision,
    Phase,
    Skip,
    Step,
    Wait,
)
from cvmkeeper.core.policy import Consistency, Policy
from cvmkeeper.core.retention import Decision
from cvmkeeper.core.rotation import QuotaResolution

_CONSISTENCY_STRENGTH = (Consistency.LIVE, Consistency.FORCE_POWEROFF, Consistency.STOP_START)


def plan_steps(
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


def _sorted_skips(skips: Sequence[Skip]) -> list[Skip]:
    return sorted(skips, key=lambda skip: (skip.slot, skip.instance_id))


def _strongest(policies: Sequence[Policy]) -> Consistency:
    return max(
        (Consistency(policy.consistency) for policy in policies),
        key=_CONSISTENCY_STRENGTH.index,
    )


def _batches(phase: Phase, kind: DeleteKind, targets: Sequence[DeleteTarget]) -> list[Delete]:
    return [
        Delete(phase=phase, kind=kind, targets=tuple(targets[i : i + DELETE_BATCH_SIZE]))
        for i in range(0, len(targets), DELETE_BATCH_SIZE)
    ]


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
        tags=copy_tags(source.image.tags, source.image.region),
        description=source.image.description,
        reason=f"copy of {source.image_id} from {source.image.region} for {', '.join(names)}",
    )


def image_decisions(
    sets: Mapping[str, InstanceSet], quota: QuotaResolution, cleanup: Sequence[ManagedImage]
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
        for owned in sorted(instance_set.images, key=age_key, reverse=True):
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
                    pinned=owned.pinned and not owned.hold,
                    orphan=instance_set.orphan and not instance_set.held,
                    keep=keep,
                    reasons=reasons,
                    delete_kind=kind,
                    delete_phase=phase,
                )
            )
    return tuple(result)
