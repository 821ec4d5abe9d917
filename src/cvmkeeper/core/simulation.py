"""Replay a policy over many days with the pure core: what would it keep?

``simulate`` makes one image per slot of the policy, applies retention after each, and
records what was kept, so a user sees what a policy means (and how close it runs to the
quota) before trusting it with production. Images always succeed here; the point is the
policy's shape, not the cloud's failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cvmkeeper.core.inventory import ImageState
from cvmkeeper.core.naming import image_name
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.retention import Backup, Decision, RuleSet, decide
from cvmkeeper.core.schedule import iter_policy_slots, shortest_gap

MAX_SIMULATED_SLOTS = 50_000


class SimulationTooLongError(ValueError):
    """The period holds more slots than a simulation is allowed to replay."""


@dataclass(frozen=True, slots=True)
class KeptImage:
    """An image still kept at the end, with the reasons retention gives."""

    name: str
    slot: datetime
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a policy would have done between ``start`` and ``end``.

    ``peak`` counts the moment after a create and before the deletes it allows (what the
    quota must hold with create-then-delete); ``peak_after_rotation`` the steady state.
    """

    policy: str
    start: datetime
    end: datetime
    slots: int
    created: int
    deleted: int
    peak: int
    peak_after_rotation: int
    kept: tuple[KeptImage, ...]


def simulate(policy: Policy, start: datetime, end: datetime) -> SimulationResult:
    """Replay ``policy``'s slots in ``(start, end]`` for one instance; pure and deterministic."""
    estimate = sum((end - start) // shortest_gap(s) + 1 for s in policy.schedules)
    if estimate > MAX_SIMULATED_SLOTS:
        raise SimulationTooLongError(
            f"about {estimate} slots in the period, more than {MAX_SIMULATED_SLOTS}; "
            "simulate fewer days"
        )
    held: list[Backup] = []
    rules = [RuleSet(policy.retention, policy.timezone, policy.name)]
    slots = created = deleted = peak = peak_after = 0
    decisions: list[Decision] = []
    for slot in iter_policy_slots(policy, start):
        if slot > end:
            break
        slots += 1
        held.append(Backup(f"img-{slots:08d}", slot, ImageState.NORMAL))
        created += 1
        peak = max(peak, len(held))
        decisions = decide(held, rules)
        keep = {d.image_id for d in decisions if d.keep}
        deleted += len(held) - len(keep)
        held = [b for b in held if b.image_id in keep]
        peak_after = max(peak_after, len(held))
    by_id = {d.image_id: d for d in decide(held, rules)} if held else {}
    kept = tuple(
        KeptImage(
            name=image_name("ins-" + "0" * 8, b.slot),
            slot=b.slot,
            reasons=by_id[b.image_id].reasons,
        )
        for b in sorted(held, key=lambda b: b.slot, reverse=True)
    )
    return SimulationResult(
        policy=policy.name,
        start=start,
        end=end,
        slots=slots,
        created=created,
        deleted=deleted,
        peak=peak,
        peak_after_rotation=peak_after,
        kept=kept,
    )
