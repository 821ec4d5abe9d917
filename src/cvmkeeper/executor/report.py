"""What one run did, as plain immutable values: per slot, per deleted image, per region.

The runner returns a :class:`RunReport`; the ``run`` command prints it (or its JSON), the
daemon turns it into check-ins and metrics. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cvmkeeper.core.plan import (
    Copy,
    Create,
    Delete,
    DeleteKind,
    ImageDecision,
    Plan,
    Step,
    Wait,
)

#: What became of a slot's image, and of a copy (``Outcome.status``).
SlotStatus = Literal["created", "adopted", "exists", "failed", "skipped"]
CopyStatus = Literal["copied", "adopted", "failed", "skipped"]
OutcomeStatus = SlotStatus | CopyStatus
DeleteStatus = Literal["deleted", "already_gone", "left", "failed", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """What became of one image a run set out to have: the image of one (policy, instance,
    slot), or (``source_region`` set) a cross-region copy of a source image.

    ``status`` of a slot: ``created`` (this run created it), ``adopted`` (an image with its
    name existed: an earlier attempt or another daemon made it), ``exists`` (its image was
    already there, ``NORMAL`` or in flight, before the run), ``failed`` (no ``NORMAL``
    image: the create or the image failed, or it did not become ``NORMAL`` in time), or
    ``skipped`` (not attempted: quota full under ``on_quota_full: skip``, the run was
    stopped, or a newer backup covers it). Of a copy: ``copied`` (this run's ``SyncImages``
    made it), ``adopted`` (a copy with its name existed: an earlier attempt whose answer was
    lost), ``failed``, or ``skipped`` (the destination's quota, a name held by an image
    cvmkeeper does not own, or the run was stopped). ``error`` is ``None`` exactly when
    nothing needs a human. ``image_state`` is the image's state when the run ended
    (``CREATING`` after ``--no-wait``), or ``None`` without an image.

    ``policies``: a slot's outcome is one policy's (one outcome per due policy: ``policy``);
    a copy's names every policy copying the instance there. For a copy, ``region`` is the
    destination and ``source_image_id`` the image copied (empty for a copy skipped before
    any call).
    """

    policies: tuple[str, ...]
    region: str
    instance_id: str
    slot: datetime
    image_name: str
    image_id: str | None
    status: OutcomeStatus
    error: str | None = None
    tencent_code: str | None = None
    request_id: str | None = None
    image_state: str | None = None
    source_region: str = ""
    source_image_id: str = ""

    @property
    def policy(self) -> str:
        """The policy of a slot's outcome (for a copy: its policies, comma-separated)."""
        return ",".join(self.policies)

    @property
    def ok(self) -> bool:
        """True when this slot or copy needs nobody's attention."""
        return self.error is None and self.status != "failed"


@dataclass(frozen=True)
class DeleteOutcome:
    """What became of one image the run set out to delete.

    ``status``: ``deleted``; ``already_gone`` (someone else deleted it: fine); ``left``
    (shared, or busy: left alone with a warning); ``failed`` (an error alert was raised);
    ``skipped`` (the run was stopped first).
    """

    region: str
    image_id: str
    image_name: str
    instance_id: str
    kind: str
    reason: str
    status: DeleteStatus
    error: str | None = None
    tencent_code: str | None = None
    request_id: str | None = None


def delete_reason_text(kind: str, reason: str) -> str:
    """Why an image is deleted, for people: the plan's reason, where a bare ``expired``
    (retention's word) says what it means.

    ``kind`` is a ``core.plan.DeleteKind`` value; the reasons of ``cleanup`` and ``evict``
    already say what happens (``CREATEFAILED: clean up``, ``evicted: quota full, ...``).
    """
    if kind == DeleteKind.EXPIRE.value and reason.startswith("expired"):
        return "expired, kept by no retention rule" + reason[len("expired") :]
    return reason


@dataclass(frozen=True)
class RunReport:
    """Everything one run did, across regions.

    ``deleted`` holds every delete the run attempted, with its status (see
    :class:`DeleteOutcome`). ``warnings`` and ``errors`` are the messages that were alerted
    at that level (``errors`` also holds failures that are not about a slot, such as a
    region whose inventory could not be read). ``plans`` maps each region to the plans made
    there, in order: the first plan, a re-plan after ``ImageQuotaLimitExceeded``, the plan
    made after the wait whose deletes were executed. ``failed_policies`` names every
    policy an error was alerted for (its check-in ends in ``error``). ``copies`` holds the
    cross-region copies of the run's copy phase and ``copy_plans`` that phase's plans per
    destination region (the first with the ``Copy`` steps, then the one after the wait).
    """

    started: datetime
    finished: datetime
    outcomes: tuple[Outcome, ...]
    deleted: tuple[DeleteOutcome, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    plans: Mapping[str, tuple[Plan, ...]] = field(default_factory=dict)
    dry_run: bool = False
    failed_policies: frozenset[str] = frozenset()
    copies: tuple[Outcome, ...] = ()
    copy_plans: Mapping[str, tuple[Plan, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every slot has its image (or is being made), every copy is fine, and
        no step failed."""
        return (
            not self.errors
            and all(outcome.ok for outcome in self.outcomes)
            and all(copy.ok for copy in self.copies)
        )

    def policy_ok(self, policy: str) -> bool:
        """True when every slot and copy of ``policy`` in this run is fine (its check-in)."""
        return (
            policy not in self.failed_policies
            and all(o.ok for o in self.outcomes if o.policy == policy)
            and all(c.ok for c in self.copies if policy in c.policies)
        )

    def outcomes_of(self, policy: str) -> tuple[Outcome, ...]:
        """The outcomes of one policy, in order."""
        return tuple(o for o in self.outcomes if o.policy == policy)


def report_to_json(report: RunReport) -> dict[str, Any]:
    """The JSON summary of a run (``cvmkeeper run --json``): plain values, times as UTC."""
    return {
        "ok": report.ok,
        "dry_run": report.dry_run,
        "started": report.started,
        "finished": report.finished,
        "outcomes": [
            {
                "policy": o.policy,
                "region": o.region,
                "instance_id": o.instance_id,
                "slot": o.slot,
                "image_name": o.image_name,
                "image_id": o.image_id,
                "status": o.status,
                "image_state": o.image_state,
                "error": o.error,
                "tencent_code": o.tencent_code,
                "request_id": o.request_id,
            }
            for o in report.outcomes
        ],
        "deleted": [
            {
                "region": d.region,
                "image_id": d.image_id,
                "image_name": d.image_name,
                "instance_id": d.instance_id,
                "kind": d.kind,
                "reason": d.reason,
                "status": d.status,
                "error": d.error,
                "tencent_code": d.tencent_code,
                "request_id": d.request_id,
            }
            for d in report.deleted
        ],
        "copies": [
            {
                "policies": list(c.policies),
                "region": c.region,
                "source_region": c.source_region,
                "source_image_id": c.source_image_id or None,
                "instance_id": c.instance_id,
                "slot": c.slot,
                "image_name": c.image_name,
                "image_id": c.image_id,
                "status": c.status,
                "image_state": c.image_state,
                "error": c.error,
                "tencent_code": c.tencent_code,
                "request_id": c.request_id,
            }
            for c in report.copies
        ],
        "warnings": list(report.warnings),
        "errors": list(report.errors),
        "plans": {
            region: [plan_to_json(plan) for plan in plans] for region, plans in report.plans.items()
        },
        "copy_plans": {
            region: [plan_to_json(plan) for plan in plans]
            for region, plans in report.copy_plans.items()
        },
    }


def step_to_json(step: Step) -> dict[str, Any]:
    """One plan step as plain values, with its reason."""
    if isinstance(step, Create):
        return {
            "type": "create",
            "instance_id": step.instance_id,
            "image_name": step.image_name,
            "slot": step.slot,
            "policies": list(step.policies),
            "consistency": step.consistency.value,
            "reason": step.reason,
        }
    if isinstance(step, Copy):
        return {
            "type": "copy",
            "instance_id": step.instance_id,
            "image_name": step.image_name,
            "slot": step.slot,
            "source_region": step.source_region,
            "source_image_id": step.source_image_id,
            "policies": list(step.policies),
            "reason": step.reason,
        }
    if isinstance(step, Delete):
        return {
            "type": "delete",
            "phase": step.phase.value,
            "kind": step.kind.value,
            "images": [
                {
                    "image_id": t.image_id,
                    "image_name": t.image_name,
                    "instance_id": t.instance_id,
                    "slot": t.slot,
                    "reason": t.reason,
                }
                for t in step.targets
            ],
        }
    if isinstance(step, Wait):
        return {
            "type": "wait",
            "image_ids": list(step.image_ids),
            "image_names": list(step.image_names),
            "reason": step.reason,
        }
    return {
        "type": "skip",
        "instance_id": step.instance_id,
        "image_name": step.image_name,
        "slot": step.slot,
        "policies": list(step.policies),
        "source_region": step.source_region or None,
        "error": step.error,
    }


def decision_to_json(decision: ImageDecision) -> dict[str, Any]:
    """What a plan decides for one managed image, and why."""
    return {
        "image_id": decision.image_id,
        "image_name": decision.image_name,
        "instance_id": decision.instance_id,
        "slot": decision.slot,
        "state": decision.state.value,
        "pinned": decision.pinned,
        "orphan": decision.orphan,
        "keep": decision.keep and decision.delete_kind is None,
        "reasons": list(decision.reasons),
        "delete": decision.delete_kind.value if decision.delete_kind else None,
        "delete_phase": decision.delete_phase.value if decision.delete_phase else None,
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """A region's plan: the quota arithmetic, each step with its reason, each image's fate."""
    return {
        "region": plan.region,
        "now": plan.now,
        "quota": plan.quota,
        "used": plan.used,
        "unmanaged": plan.unmanaged,
        "free": plan.free,
        "steps": [step_to_json(step) for step in plan.steps],
        "images": [decision_to_json(d) for d in plan.decisions],
        "orphan_instance_ids": list(plan.orphan_instance_ids),
        "warnings": list(plan.warnings),
        "errors": list(plan.errors),
    }
