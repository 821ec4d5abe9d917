"""The creates of a plan: ``CreateImage`` per ``Create`` step, each recorded as an attempt.

The request holds the whole machine (``executor.disks``, rule 10).
``InvalidImageName.Duplicate`` (or a lost answer) means the image exists: the cloud client
adopts it, so a slot is never made twice (docs/design.md, rule 5). ``stop_start`` instances
are stopped first (``consistency.InstanceStopper``) and released as soon as no image needs
them. ``ImageQuotaLimitExceeded`` is recorded as ``QUOTA`` the first time (the region is
planned again and the create tried once more) and as ``FAILED`` on that last chance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Generic, TypeVar

from cvmkeeper.cloud.errors import CloudError, QuotaExceededError
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import Copy, Create
from cvmkeeper.core.policy import Consistency
from cvmkeeper.executor.consistency import InstanceStopper, StopProblem
from cvmkeeper.executor.disks import create_image, create_request
from cvmkeeper.executor.progress import ProgressKind
from cvmkeeper.executor.region import RegionRun
from cvmkeeper.log_context import log_fields

log = logging.getLogger(__name__)

#: ``CreateImage`` calls one region keeps in flight at once. The rate limiter spaces them at
#: the documented 10/s; two in flight keep that pace for calls of up to ~0.2 s, where one at
#: a time falls behind (150 ms calls: 6.4/s). More in flight let calls overtake each other
#: on the way and arrive closer than they were spaced, which the server throttles
#: (bench/fleet.py, 2000 creates at 30 ms: 8 in flight, 87 RequestLimitExceeded; 2, 2; 1, 0).
CREATE_CONCURRENCY = 2

#: (instance id, slot): what a create or copy is for.
Key = tuple[str, datetime]


class AttemptStatus(Enum):
    """What became of one ``CreateImage`` or ``SyncImages`` call of a run."""

    MADE = "made"  # this run made it (created, or copied)
    ADOPTED = "adopted"  # it existed already (a retry, a lost answer): taken as ours
    FAILED = "failed"  # refused or not tried (instance not stopped, unexpected error)
    QUOTA = "quota"  # ImageQuotaLimitExceeded: planned again and tried once more
    STOPPED = "stopped"  # not tried: the run was stopped first

    @property
    def has_image(self) -> bool:
        """True when the attempt left an image (made or adopted)."""
        return self in (AttemptStatus.MADE, AttemptStatus.ADOPTED)


#: The step an attempt carries out: a ``Create`` (``CreateImage``) or a ``Copy`` (``SyncImages``).
StepT = TypeVar("StepT", Create, Copy)


@dataclass
class Attempt(Generic[StepT]):
    """One ``CreateImage`` or ``SyncImages`` the executor tried (or could not try).

    ``action`` is the API action an error came from (``StopInstances`` when the instance
    could not be stopped for its image)."""

    step: StepT
    status: AttemptStatus
    image_id: str | None = None
    error: str | None = None
    code: str | None = None
    request_id: str | None = None
    action: str = "CreateImage"


class Creator:
    """Makes the images of ``Create`` steps in one region; ``attempts`` holds every try."""

    def __init__(
        self,
        run: RegionRun,
        stopper: InstanceStopper,
        inventory: Callable[[], Inventory | None],
    ) -> None:
        """``inventory()`` is the region as the run read it (the instances' disks)."""
        self._run = run
        self._stopper = stopper
        self._inventory = inventory
        self.attempts: dict[Key, Attempt[Create]] = {}

    def policies_of_instance(self, instance_id: str) -> list[str]:
        """The policies of the creates attempted for ``instance_id``."""
        return sorted(
            {
                policy
                for a in self.attempts.values()
                if a.step.instance_id == instance_id
                for policy in a.step.policies
            }
        )

    def retry_after_quota(self, creates: Iterable[Create]) -> list[Create]:
        """Of ``creates``, those not attempted yet or refused for quota."""
        return [
            step
            for step in creates
            if (attempt := self.attempts.get((step.instance_id, step.slot))) is None
            or attempt.status is AttemptStatus.QUOTA
        ]

    def not_made(self, creates: Iterable[Create], why: str) -> None:
        """Record ``creates`` as failed without sending them (``why``: the reason)."""
        for step in creates:
            self.attempts[(step.instance_id, step.slot)] = Attempt(
                step, AttemptStatus.FAILED, error=f"{step.image_name}: {why}"
            )

    def run_creates(self, creates: Sequence[Create], *, last_chance: bool) -> list[Create]:
        """Make the images; return the creates that hit the quota (to re-plan once)."""
        quota_hit: list[Create] = []
        stop_start = [c for c in creates if c.consistency is Consistency.STOP_START]
        others = self._guard_poweroffs(
            [c for c in creates if c.consistency is not Consistency.STOP_START]
        )
        for step, status in zip(others, self._create_all(others, last_chance), strict=True):
            if status is AttemptStatus.QUOTA:
                quota_hit.append(step)
            if not status.has_image:
                self._stopper.release(step.instance_id)  # a force_poweroff no image needs
        if stop_start:
            quota_hit += self._stop_start_creates(stop_start, last_chance)
        return quota_hit

    def _guard_poweroffs(self, steps: list[Create]) -> list[Create]:
        """``force_poweroff`` creates may leave their instance down (whether the cloud starts
        it again is undocumented): journal and mark each running one first (rule 9). The
        steps that may go ahead; the others are failed attempts."""
        poweroff = [c.instance_id for c in steps if c.consistency is Consistency.FORCE_POWEROFF]
        if not poweroff or self._run.stopping:
            return steps
        problems = self._stopper.guard_poweroff(poweroff)
        for step in steps:
            if step.instance_id in problems:
                problem = problems[step.instance_id]
                action = problem.error.action if problem.error else "CreateImage"
                self._refuse(step, problem, "not powered off for its image", action)
        return [step for step in steps if step.instance_id not in problems]

    def _refuse(self, step: Create, problem: StopProblem, why: str, action: str) -> None:
        """Record ``step`` as failed: its instance could not be made ready for the image."""
        error = problem.error
        self.attempts[(step.instance_id, step.slot)] = Attempt(
            step,
            AttemptStatus.FAILED,
            error=f"{step.image_name}: instance {why}: {problem.message}",
            code=error.code if error else None,
            request_id=error.request_id if error else None,
            action=action,
        )

    def _stop_start_creates(self, steps: Sequence[Create], last_chance: bool) -> list[Create]:
        """Stop the instances, then create; an instance no image needs is released."""
        quota_hit: list[Create] = []
        problems: dict[str, StopProblem] = {}
        if not self._run.stopping:
            problems = self._stopper.prepare(c.instance_id for c in steps)
        for step in steps:
            problem = problems.get(step.instance_id)
            if problem is not None and not self._run.stopping:
                self._refuse(step, problem, "not stopped for its image", "StopInstances")
                self._stopper.release(step.instance_id)
                continue
            status = self._create(step, last_chance=last_chance)
            if status is AttemptStatus.QUOTA:
                quota_hit.append(step)
            if not status.has_image:
                self._stopper.release(step.instance_id)  # no image needs it
        return quota_hit

    def _create_all(self, steps: Sequence[Create], last_chance: bool) -> list[AttemptStatus]:
        """``_create`` for every step, up to :data:`CREATE_CONCURRENCY` at once; the
        statuses in the order of ``steps``."""
        if len(steps) <= 1:
            return [self._create(step, last_chance=last_chance) for step in steps]
        with ThreadPoolExecutor(
            max_workers=min(CREATE_CONCURRENCY, len(steps)),
            thread_name_prefix=f"cvmkeeper-create:{self._run.region}",
        ) as pool:
            return list(pool.map(lambda step: self._create(step, last_chance=last_chance), steps))

    def _create(self, step: Create, *, last_chance: bool) -> AttemptStatus:
        """One ``CreateImage``, recorded in ``attempts``; its status."""
        attempt = self._attempt(step, last_chance=last_chance)
        self.attempts[(step.instance_id, step.slot)] = attempt
        return attempt.status

    def _attempt(self, step: Create, *, last_chance: bool) -> Attempt[Create]:
        run = self._run
        if run.stopping:
            return Attempt(step, AttemptStatus.STOPPED)
        # the whole machine unless the policy says otherwise (executor.disks, rule 10)
        policies = run.options.setup.policies
        request = create_request(step, self._inventory(), policies)
        run.created.intend(step.image_name)  # before the send: a kill may come next (rule 6)
        try:
            made = create_image(run.client, run.region, step, request, policies)
        except QuotaExceededError as error:
            if not last_chance:
                return Attempt(
                    step,
                    AttemptStatus.QUOTA,
                    error=str(error),
                    code=error.code,
                    request_id=error.request_id,
                )
            return _failed_attempt(step, error)
        except CloudError as error:
            return _failed_attempt(step, error)
        except Exception as error:
            log.exception("CreateImage %s in %s failed unexpectedly", step.image_name, run.region)
            return Attempt(step, AttemptStatus.FAILED, error=f"{step.image_name}: {error}")
        word = "adopted" if made.adopted else "created"
        with log_fields(
            region=run.region, policy=step.policies, instance=step.instance_id, slot=step.slot
        ):
            if made.adopted:
                log.info(
                    "%s: %s already existed as %s; adopted",
                    run.region,
                    step.image_name,
                    made.image_id,
                )
            run.say(
                f"{run.region}: {word} {step.image_name} ({made.image_id}) for {step.instance_id}",
                kind=ProgressKind.MADE,
            )
        run.created.remember(made.image_id, step.image_name)  # until it is listed whole
        status = AttemptStatus.ADOPTED if made.adopted else AttemptStatus.MADE
        return Attempt(step, status, image_id=made.image_id)


def _failed_attempt(step: Create, error: CloudError) -> Attempt[Create]:
    return Attempt(
        step,
        AttemptStatus.FAILED,
        error=f"{step.image_name}: CreateImage for "
        f"{step.instance_id} failed: {error.code}: {error.message}",
        code=error.code,
        request_id=error.request_id,
    )
