"""Worst-case image counts: how many images a policy can make one instance hold.

``validate`` uses this to refuse, before anything runs, a set of policies whose retention
cannot fit a region's image quota (docs/design.md "Quota-aware rotation", point 5). Copies
(``Policy.copies``) count in their destination region, by their copy retention. The count
is an upper bound: each rule contributes its N, ``keep_within`` the most slots its window
can contain, and since every rule keeps the newest image it is counted only once
(``keep_daily 7 + keep_weekly 4 + keep_monthly 3`` can hold 12, not 14).

Rotation headroom (:func:`needs_rotation_headroom`): cvmkeeper creates before it deletes
and never deletes an instance's newest ``NORMAL`` image, so on a full quota it can make
room for the next image only by deleting an *older* image that the next image expires.
When the next slot's image can expire the current newest one and nothing else (keep_last
1; a bucket rule that keeps 1; an hourly schedule under keep_daily alone, where each image
of a day replaces the one before; a keep_within shorter than the gap between slots), the
quota must hold one image more per instance, or the rotation evicts or skips. Then the
region's arithmetic counts ``+1 to rotate`` per instance. With keep_last >= 2 (or any rule
that keeps the previous image) the oldest expires first and is deleted before the create,
so no extra image is needed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise, takewhile

from cvmkeeper.core.inventory import ImageState
from cvmkeeper.core.policy import Policy, Retention, Schedule
from cvmkeeper.core.retention import Backup, RuleSet, decide
from cvmkeeper.core.schedule import iter_slots, shortest_gap

#: Where :func:`needs_rotation_headroom` starts looking at consecutive slots (a fixed
#: moment: the core reads no clock), how far (long enough for two slots of a yearly
#: schedule and for both DST changes) and at most how many slots.
HEADROOM_SAMPLE_START = datetime(2024, 1, 1, tzinfo=UTC)
HEADROOM_SAMPLE_SPAN = timedelta(days=3 * 366)
HEADROOM_SAMPLE_SLOTS = 1000


def capacity_terms(retention: Retention, schedules: Sequence[Schedule]) -> dict[str, int]:
    """Each rule's worst-case count (``min_keep`` included), zero rules left out."""
    terms = {rule: count for rule, count in retention.counts().items() if count}
    if retention.keep_within is not None:
        terms["keep_within"] = sum(
            math.ceil(retention.keep_within / shortest_gap(s)) for s in schedules
        )
    terms["min_keep"] = retention.min_keep
    return terms


def max_images(retention: Retention, schedules: Sequence[Schedule]) -> int:
    """The most images one instance can hold under one policy's retention and schedules.

    Every rule keeps at most its N, and every rule keeps the newest image, so the newest is
    counted once: ``keep_daily 7 + keep_weekly 4 + keep_monthly 3 + min_keep 1`` is
    ``15 - 3 shared = 12``. ``keep_within`` counts the most slots its window can hold.
    """
    terms = capacity_terms(retention, schedules)
    return sum(terms.values()) - (len(terms) - 1)


def explain_max_images(retention: Retention, schedules: Sequence[Schedule]) -> str:
    """The arithmetic of ``max_images``: ``keep_daily 7 + keep_weekly 4 + min_keep 1 - 2 = 10``."""
    terms = capacity_terms(retention, schedules)
    text = " + ".join(f"{rule} {count}" for rule, count in terms.items())
    shared = len(terms) - 1
    if shared:
        text += f" - {shared} (the newest, kept by every rule)"
    return f"{text} = {max_images(retention, schedules)}"


def _sample_slots(schedules: Sequence[Schedule]) -> Iterator[datetime]:
    """The schedules' slots from :data:`HEADROOM_SAMPLE_START`, merged, each once, bounded
    in count and span."""
    end = HEADROOM_SAMPLE_START + HEADROOM_SAMPLE_SPAN
    merged = heapq.merge(*(iter_slots(s, HEADROOM_SAMPLE_START) for s in schedules))
    previous: datetime | None = None
    for slot in islice(takewhile(lambda moment: moment <= end, merged), HEADROOM_SAMPLE_SLOTS):
        if slot != previous:
            previous = slot
            yield slot


def needs_rotation_headroom(
    retention: Retention, schedules: Sequence[Schedule], timezone: str = "UTC"
) -> bool:
    """True when the next slot's image can expire the instance's current newest image.

    The criterion: some pair of consecutive slots (previous, next) where no rule keeps the
    previous slot's image once the next one exists (decided by ``core.retention.decide``
    itself, buckets in ``timezone``). The planner deletes before a create only images that
    expire *and* are not the newest ``NORMAL`` one (rule 3, create-then-delete), so in
    that case a full quota cannot make room: the instance needs one image more than
    :func:`max_images`. Checked over the consecutive slots of a bounded sample (up to
    :data:`HEADROOM_SAMPLE_SLOTS` slots within :data:`HEADROOM_SAMPLE_SPAN`).
    """
    if retention.keep_last >= 2 or retention.min_keep >= 2:
        return False  # the previous image is always the second newest: kept
    rules = [RuleSet(retention, timezone)]
    for previous, following in pairwise(_sample_slots(schedules)):
        decisions = decide(
            [
                Backup("previous", previous, ImageState.NORMAL),
                Backup("next", following, ImageState.NORMAL),
            ],
            rules,
        )
        if not next(d for d in decisions if d.image_id == "previous").keep:
            return True
    return False


def policy_max_images(policy: Policy) -> int:
    """``max_images`` of a policy's own retention and schedules."""
    return max_images(policy.retention, policy.schedules)


@dataclass(frozen=True, slots=True)
class QuotaTerm:
    """One policy's share of a region: ``per_instance`` images (plus ``headroom``, the
    image rotation needs, see :func:`needs_rotation_headroom`) times ``instances``."""

    policy: str
    per_instance: int
    instances: int
    at_least: bool
    """True when the count is a lower bound (tag targets not resolved against the cloud)."""
    headroom: int = 0

    def describe(self) -> str:
        """``web-daily 14 x 2 instances``, ``db 10 x >=1 instance`` or
        ``web (1 + 1 to rotate) x 2 instances``."""
        plural = "" if self.instances == 1 else "s"
        each = (
            f"({self.per_instance} + {self.headroom} to rotate)"
            if self.headroom
            else f"{self.per_instance}"
        )
        how_many = f">={self.instances}" if self.at_least else f"{self.instances}"
        return f"{self.policy} {each} x {how_many} instance{plural}"

    @property
    def images(self) -> int:
        """The images this term accounts for."""
        return (self.per_instance + self.headroom) * self.instances


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    """The worst case of one region against its quota, with the arithmetic to show."""

    region: str
    quota: int
    terms: tuple[QuotaTerm, ...]
    unmanaged: int = 0

    @property
    def total(self) -> int:
        """Worst-case images in the region: every policy's share plus unmanaged images."""
        return sum(t.images for t in self.terms) + self.unmanaged

    @property
    def fits(self) -> bool:
        """True when the worst case is within the quota."""
        return self.total <= self.quota

    def explain(self) -> str:
        """``ap-guangzhou: web 14 x 1 instance + 2 unmanaged = 16 > quota 10``."""
        parts = [t.describe() for t in self.terms]
        if self.unmanaged:
            parts.append(f"{self.unmanaged} unmanaged")
        relation = "<=" if self.fits else ">"
        arithmetic = " + ".join(parts) or "0"
        return f"{self.region}: {arithmetic} = {self.total} {relation} quota {self.quota}"


def check_region_quota(
    region: str,
    policies: Sequence[Policy],
    quota: int,
    tagged_instances: Mapping[str, int] | None = None,
    unmanaged: int = 0,
    *,
    tagged_copy_instances: Mapping[str, int] | None = None,
) -> QuotaCheck:
    """Sum the worst case of every policy of ``region`` against ``quota``.

    Explicit instance ids count once each per policy (an instance listed by two policies
    holds both policies' images). Tag targets count ``tagged_instances[policy.name]``
    instances when the cloud was asked (``validate --online``), otherwise at least one.
    A policy copying to ``region`` adds a ``<policy> copies`` term: its copy retention's
    worst case times its instances in its other regions (tag targets:
    ``tagged_copy_instances[policy.name]``, the tagged instances of those regions, or at
    least one).
    """
    terms: list[QuotaTerm] = []
    for policy in policies:
        if region not in policy.regions:
            continue
        per_instance = policy_max_images(policy)
        headroom = int(needs_rotation_headroom(policy.retention, policy.schedules, policy.timezone))
        explicit = [
            i for i in policy.targets.instance_ids if i not in policy.targets.exclude_instance_ids
        ]
        if tagged_instances is not None and policy.name in tagged_instances:
            count, at_least = len(explicit) + tagged_instances[policy.name], False
        else:
            count, at_least = (
                len(explicit) + (1 if policy.targets.tags else 0),
                bool(policy.targets.tags),
            )
        terms.append(QuotaTerm(policy.name, per_instance, count, at_least, headroom))
    for policy in policies:
        rule = policy.copy_to(region)
        if rule is None or not any(r != region for r in policy.regions):
            continue
        explicit = [
            i for i in policy.targets.instance_ids if i not in policy.targets.exclude_instance_ids
        ]
        if tagged_copy_instances is not None and policy.name in tagged_copy_instances:
            count, at_least = len(explicit) + tagged_copy_instances[policy.name], False
        else:
            count, at_least = (
                len(explicit) + (1 if policy.targets.tags else 0),
                bool(policy.targets.tags),
            )
        per_instance = max_images(rule.retention, policy.schedules)
        headroom = int(needs_rotation_headroom(rule.retention, policy.schedules, policy.timezone))
        terms.append(QuotaTerm(f"{policy.name} copies", per_instance, count, at_least, headroom))
    return QuotaCheck(region=region, quota=quota, terms=tuple(terms), unmanaged=unmanaged)
