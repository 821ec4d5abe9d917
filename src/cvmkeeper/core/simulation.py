"""Replay a policy over many days with the pure core: what would it keep?

``simulate`` makes one image per slot of the policy, applies retention after each, and
records what was kept, so a user sees what a policy means (and how close it runs to the
quota) before trusting it with production. Images always succeed here; the point is the
policy's shape, not the cloud's failures. Each copy region (``Policy.copies``) gets a copy
of every image right after it is made, retained there by the copy retention, on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cvmkeeper.core.inventory import ImageState
from cvmkeeper.core.naming import image_name
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.retention import Backup, RuleSet, decide
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
class CopySimulation:
    """What one copy region would hold: the same counts as the source, by copy retention."""

    region: str
    created: int
    deleted: int
    peak: int
    peak_after_rotation: int
    kept: tuple[KeptImage, ...]


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
    copies: tuple[CopySimulation, ...] = ()


class _Store:
    """The images one region holds of the simulated instance, under one retention."""

    def __init__(self, rules: list[RuleSet]) -> None:
        self.rules = rules
        self.held: list[Backup] = []
        self.created = self.deleted = self.peak = self.peak_after = 0

    def add(self, backup: Backup) -> None:
        self.held.append(backup)
        self.created += 1
        self.peak = max(self.peak, len(self.held))
        keep = {d.image_id for d in decide(self.held, self.rules) if d.keep}
        self.deleted += len(self.held) - len(keep)
        self.held = [b for b in self.held if b.image_id in keep]
        self.peak_after = max(self.peak_after, len(self.held))

    def kept(self) -> tuple[KeptImage, ...]:
        by_id = {d.image_id: d for d in decide(self.held, self.rules)} if self.held else {}
        return tuple(
            KeptImage(
                name=image_name("ins-" + "0" * 8, b.slot),
                slot=b.slot,
                reasons=by_id[b.image_id].reasons,
            )
            for b in sorted(self.held, key=lambda b: b.slot, reverse=True)
        )


def simulate(policy: Policy, start: datetime, end: datetime) -> SimulationResult:
    """Replay ``policy``'s slots in ``(start, end]`` for one instance; pure and deterministic."""
    estimate = sum((end - start) // shortest_gap(s) + 1 for s in policy.schedules)
    if estimate > MAX_SIMULATED_SLOTS:
        raise SimulationTooLongError(
            f"about {estimate} slots in the period, more than {MAX_SIMULATED_SLOTS}; "
            "simulate fewer days"
        )
    main = _Store([RuleSet(policy.retention, policy.timezone, policy.name)])
    copies = [
        (rule.region, _Store([RuleSet(rule.retention, policy.timezone, policy.name)]))
        for rule in policy.copies
    ]
    slots = 0
    for slot in iter_policy_slots(policy, start):
        if slot > end:
            break
        slots += 1
        backup = Backup(f"img-{slots:08d}", slot, ImageState.NORMAL)
        main.add(backup)
        for _region, store in copies:
            store.add(backup)
    return SimulationResult(
        policy=policy.name,
        start=start,
        end=end,
        slots=slots,
        created=main.created,
        deleted=main.deleted,
        peak=main.peak,
        peak_after_rotation=main.peak_after,
        kept=main.kept(),
        copies=tuple(
            CopySimulation(
                region, store.created, store.deleted, store.peak, store.peak_after, store.kept()
            )
            for region, store in copies
        ),
    )
