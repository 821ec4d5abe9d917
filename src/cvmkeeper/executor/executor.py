"""Carry out the plan of one region through the cloud client, and report every outcome.

The plan contract (``core.plan`` module docstring) decides the order:

1. read the inventory and plan (``core.planner.plan_region``);
2. ``before_create`` deletes (cleanup of ``CREATEFAILED``, expired images the quota needs
   first, evictions);
3. creates, with ``TagSpecification`` and the description marker; ``InvalidImageName.Duplicate``
   (or a lost answer) means the image exists: it is adopted, never made twice. On
   ``ImageQuotaLimitExceeded`` (someone else took the room) the region is read and planned
   once more and the creates still missing are tried again once;
4. wait until every image in flight leaves ``CREATING``: one ``DescribeImages`` per poll
   for all of them, bounded by ``api.wait_timeout``;
5. read the inventory again, plan again with no due slots (what was made is now in the
   inventory as it really is; a slot that failed must not be assumed made), and execute
   that plan's deletes. So expired images are deleted only once their successors are
   really ``NORMAL``, and a failed create never costs an old backup.

``stop_start`` instances are stopped (if running) before their creates and started again
as soon as their image leaves ``CREATING``, and in a ``finally`` whatever happens
(``consistency.InstanceStopper``). Each stop is journaled first (``stop_journal``), and
before anything else a region run starts again what an interrupted run left stopped.
Every failure is reported to the alerter and in the :class:`RegionResult`; no exception
escapes :meth:`RegionExecutor.run`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from cvmkeeper.alerting import Alerter, Failure
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError, QuotaExceededError
from cvmkeeper.config import Setup
from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import TAG_POLICY, image_name, slot_tag_value
from cvmkeeper.core.plan import Create, Delete, DeleteTarget, Phase, Plan, Skip
from cvmkeeper.core.planner import PlannerSettings, plan_region
from cvmkeeper.core.policy import Consistency
from cvmkeeper.core.targets import resolve_targets
from cvmkeeper.executor.consistency import InstanceStopper, StopProblem
from cvmkeeper.executor.disks import (
    create_image,
    create_request,
    instance_in_warning,
    is_disk_warning,
)
from cvmkeeper.executor.polling import REAL_TIME, PollTime, poll_delays
from cvmkeeper.executor.report import (
    CopyOutcome,
    DeleteOutcome,
    DeleteStatus,
    SlotOutcome,
    SlotStatus,
    delete_reason_text,
)
from cvmkeeper.executor.stop_journal import StopJournal, StoppedEntry
from cvmkeeper.log_context import log_fields

log = logging.getLogger(__name__)

#: Delete errors that mean "leave this image alone for now" (a warning, not an error).
LEAVE_ALONE_CODES = frozenset({"InvalidImageId.InShared", "InvalidImageId.IncorrectState"})
#: The alert's policy when no policy can be named (a region-wide failure with nothing due).
NO_POLICY = "cvmkeeper"
#: ``CreateImage`` calls one region keeps in flight at once. The rate limiter spaces them at
#: the documented 10/s; two in flight keep that pace for calls of up to ~0.2 s, where one at
#: a time falls behind (150 ms calls: 6.4/s). More in flight let calls overtake each other
#: on the way and arrive closer than they were spaced, which the server throttles
#: (bench/fleet.py, 2000 creates at 30 ms: 8 in flight, 87 RequestLimitExceeded; 2, 2; 1, 0).
CREATE_CONCURRENCY = 2

Key = tuple[str, datetime]  # (instance id, slot)
DuePairs = tuple[tuple[str, datetime], ...]


def read_inventory(client: CloudClient, region: str, configured_quota: int | None) -> Inventory:
    """What ``region`` holds now: quota (the account's, capped by ``image_quota`` when the
    config sets one), every custom image in any state, every instance."""
    account = client.image_quota(region)
    quota = account if configured_quota is None else min(configured_quota, account)
    images = client.list_images(region)
    instances = client.list_instances(region)
    return Inventory(region=region, quota=quota, images=images, instances=instances,
                     account_quota=account, quota_cap=configured_quota)


@dataclass
class RunOptions:
    """What every region of one run shares. ``poll_time``: how waits sleep and measure their
    deadlines (real time unless a simulation injects its virtual clock)."""

    setup: Setup
    client: CloudClient
    alerter: Alerter
    now: datetime
    dry_run: bool = False
    wait: bool = True
    stop: threading.Event | None = None
    progress: Callable[[str], None] = lambda _message: None
    poll_time: PollTime = REAL_TIME
    #: where stops are journaled so that a crash cannot leave an instance down (rule 9)
    stop_journal: StopJournal | None = None

    @property
    def planner_settings(self) -> PlannerSettings:
        """The planner settings from the daemon config."""
        config = self.setup.config
        return PlannerSettings(
            orphan_retention=config.orphans.retention, name_format=config.name_format
        )

    @property
    def stopping(self) -> bool:
        """True once a stop was requested: no new create or delete starts."""
        return self.stop is not None and self.stop.is_set()

    def say(self, message: str) -> None:
        """Log ``message`` and show it through ``progress``; a display that raises is logged
        and never fails the run (a broken display must not break a backup)."""
        log.info("%s", message)
        try:
            self.progress(message)
        except Exception:
            log.exception("progress display failed")


@dataclass
class RegionResult:
    """What one region's run produced (merged into the ``RunReport``)."""

    region: str
    outcomes: list[SlotOutcome] = field(default_factory=list)
    deleted: list[DeleteOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    failed_policies: set[str] = field(default_factory=set)
    copies: list[CopyOutcome] = field(default_factory=list)


@dataclass
class _Attempt:
    """One ``CreateImage`` the executor tried (or could not try) for a (instance, slot)."""

    step: Create
    status: str  # created | adopted | failed | quota | stopped
    image_id: str | None = None
    error: str | None = None
    code: str | None = None
    request_id: str | None = None
    action: str = "CreateImage"


class RegionExecutor:
    """Runs one region: inventory, plan, deletes, creates, wait, re-plan, deletes.

    ``due_for(inventory)`` gives the due (policy, slot) pairs of this region once its
    inventory is known.
    """

    def __init__(
        self, options: RunOptions, region: str, due_for: Callable[[Inventory], DuePairs]
    ) -> None:
        self.options = options
        self.region = region
        self._due_for = due_for
        self.result = RegionResult(region)
        self._client = options.client
        self._fmt = options.setup.config.name_format
        self._api = options.setup.config.api
        self._attempts: dict[Key, _Attempt] = {}
        self._skips: dict[Key, Skip] = {}
        self._final: dict[str, Image | None] = {}  # image id -> last seen (None: vanished)
        self._waited_existing: dict[str, str] = {}  # image id -> name (in flight before us)
        self._timed_out: set[str] = set()  # image ids still in flight when the wait ended
        self._warned: set[str] = set()
        self._inventory: Inventory | None = None
        self._due: DuePairs = ()
        self._stopper = InstanceStopper(
            self._client,
            region,
            deadline_seconds=self._api.wait_timeout.total_seconds(),
            poll_seconds=self._api.poll_interval.total_seconds(),
            sleep=options.poll_time.sleep or time.sleep,
            on_start_failed=self._start_failed,
            progress=self._say,
            journal=options.stop_journal,
        )

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> RegionResult:
        """Do the whole run of this region; every failure ends up in the result and alerts."""
        try:
            recovered = [] if self.options.dry_run else self._stopper.recover()
            inventory = self._read("DescribeImages")
            self._inventory = inventory
            for entry in recovered:
                self._warn_recovered(entry)
            if inventory is None:
                return self.result
            self._due = self._due_for(inventory)
            plan = self._plan(inventory, self._due)
            if plan is None:
                return self.result
            self._say(
                f"{self.region}: quota {plan.quota}, {plan.used} used ({plan.unmanaged} "
                f"unmanaged), {len(plan.creates)} to create, "
                f"{sum(len(d.targets) for d in plan.deletes())} to delete"
            )
            if self.options.dry_run:
                return self.result
            self._execute(plan)
        except Exception as error:  # never let one region kill the run of the others
            log.exception("run of %s failed unexpectedly", self.region)
            self._error(self._due_policy_names(), "run", f"unexpected error: {error}", error)
        finally:
            if not self.options.dry_run and self._inventory is not None:
                self._build_outcomes()
        return self.result

    def _execute(self, plan: Plan) -> None:
        try:
            self._run_deletes(plan.deletes(Phase.BEFORE_CREATE))
            quota_hit = self._run_creates(plan.creates, last_chance=False)
            self._record_skips(plan.skips)
            waited_ids = {i for wait in plan.waits for i in wait.image_ids}
            if quota_hit and not self.options.stopping:
                waited_ids |= self._replan_for_quota()
            for image_id in waited_ids:
                self._waited_existing[image_id] = image_id
            self._wait_phase()
        finally:
            self._stopper.release_all()
        if not plan.creates and not plan.waits and len(self.result.plans) == 1:
            self._run_deletes(plan.deletes(Phase.AFTER_CREATE))  # the contract: as it is
            return
        if not self.options.wait:
            self._say(f"{self.region}: deletes wait for the next run (--no-wait)")
            return
        if self.options.stopping:
            self._say(f"{self.region}: stopped; deletes wait for the next run")
            return
        self._delete_after_wait()

    def _delete_after_wait(self) -> None:
        inventory = self._read("DescribeImages")
        if inventory is None:
            return
        plan = self._plan(inventory, ())
        if plan is None:
            return
        if plan.creates or plan.waits:  # cannot happen without due slots; never guess
            self._warn([NO_POLICY], "plan", "re-plan after the wait has creates; deletes skipped")
            return
        self._run_deletes(plan.deletes())

    # -- reading and planning --------------------------------------------------------------

    def _read(self, action: str) -> Inventory | None:
        try:
            return read_inventory(self._client, self.region, self.options.setup.config.image_quota)
        except CloudError as error:
            self._error(self._due_policy_names(), error.action or action,
                        f"cannot read the inventory: {error}", error)
        return None

    def _plan(
        self,
        inventory: Inventory,
        due: DuePairs,
        *,
        sources: Mapping[str, Inventory] | None = None,
        make_copies: bool = True,
    ) -> Plan | None:
        try:
            plan = plan_region(
                inventory,
                self.options.setup.policies,
                due,
                self.options.now,
                self.options.planner_settings,
                sources=sources,
                make_copies=make_copies,
            )
        except Exception as error:  # PlanInvariantError is a bug: nothing of it is run
            self._error(self._due_policy_names(), "plan", f"planning failed: {error}", error)
            return None
        self.result.plans.append(plan)
        for message in plan.warnings:
            if message not in self._warned:
                self._warned.add(message)
                self._warn(self._policies_in_message(message, plan), _warning_action(message),
                           message, instance=instance_in_warning(message))
        return plan

    def _replan_for_quota(self) -> set[str]:
        """Read and plan again after ``ImageQuotaLimitExceeded``; try the missing creates once."""
        self._say(f"{self.region}: image quota exceeded; reading the region and planning again")
        inventory = self._read("DescribeImages")
        if inventory is None:
            return set()
        plan = self._plan(inventory, self._due)
        if plan is None:
            return set()
        self._run_deletes(plan.deletes(Phase.BEFORE_CREATE))
        retry = [
            step
            for step in plan.creates
            if self._attempts.get((step.instance_id, step.slot)) is None
            or self._attempts[(step.instance_id, step.slot)].status == "quota"
        ]
        self._run_creates(retry, last_chance=True)
        for skip in plan.skips:
            attempt = self._attempts.get((skip.instance_id, skip.slot))
            if attempt is None or attempt.status == "quota":
                self._attempts.pop((skip.instance_id, skip.slot), None)
                self._skips[(skip.instance_id, skip.slot)] = skip
        return {i for wait in plan.waits for i in wait.image_ids}

    # -- creates ---------------------------------------------------------------------------

    def _run_creates(self, creates: Sequence[Create], *, last_chance: bool) -> list[Create]:
        """Make the images; return the creates that hit the quota (to re-plan once)."""
        quota_hit: list[Create] = []
        stop_start = [c for c in creates if c.consistency is Consistency.STOP_START]
        others = [c for c in creates if c.consistency is not Consistency.STOP_START]
        for step, outcome in zip(others, self._create_all(others, last_chance), strict=True):
            if outcome == "quota":
                quota_hit.append(step)
        if stop_start:
            problems: dict[str, StopProblem] = {}
            if not self.options.stopping:
                problems = self._stopper.prepare(c.instance_id for c in stop_start)
            for step in stop_start:
                problem = problems.get(step.instance_id)
                if problem is not None and not self.options.stopping:
                    error = problem.error
                    self._attempts[(step.instance_id, step.slot)] = _Attempt(
                        step,
                        "failed",
                        error=f"{step.image_name}: instance not stopped for its image: "
                        f"{problem.message}",
                        code=error.code if error else None,
                        request_id=error.request_id if error else None,
                        action="StopInstances",
                    )
                    self._stopper.release(step.instance_id)
                    continue
                outcome = self._create(step, last_chance=last_chance)
                if outcome == "quota":
                    quota_hit.append(step)
                if outcome != "made":
                    self._stopper.release(step.instance_id)  # no image needs it
        return quota_hit

    def _create_all(self, steps: Sequence[Create], last_chance: bool) -> list[str]:
        """``_create`` for every step, up to :data:`CREATE_CONCURRENCY` at once; the outcomes
        in the order of ``steps``."""
        if len(steps) <= 1:
            return [self._create(step, last_chance=last_chance) for step in steps]
        with ThreadPoolExecutor(max_workers=min(CREATE_CONCURRENCY, len(steps)),
                                thread_name_prefix=f"cvmkeeper-create:{self.region}") as pool:
            return list(pool.map(lambda step: self._create(step, last_chance=last_chance),
                                 steps))

    def _create(self, step: Create, *, last_chance: bool) -> str:
        """One ``CreateImage``: ``made``, ``quota`` (retry after a re-plan) or ``failed``."""
        key = (step.instance_id, step.slot)
        if self.options.stopping:
            self._attempts[key] = _Attempt(step, "stopped")
            return "stopped"
        # the whole machine unless the policy says otherwise (executor.disks, rule 10)
        request = create_request(step, self._inventory, self.options.setup.policies)
        try:
            made = create_image(self._client, self.region, step, request,
                                self.options.setup.policies)
        except QuotaExceededError as error:
            if not last_chance:
                self._attempts[key] = _Attempt(step, "quota", error=str(error), code=error.code,
                                               request_id=error.request_id)
                return "quota"
            self._attempts[key] = _failed_attempt(step, error)
            return "failed"
        except CloudError as error:
            self._attempts[key] = _failed_attempt(step, error)
            return "failed"
        except Exception as error:
            log.exception("CreateImage %s in %s failed unexpectedly", step.image_name, self.region)
            self._attempts[key] = _Attempt(step, "failed", error=f"{step.image_name}: {error}")
            return "failed"
        status = "adopted" if made.adopted else "created"
        self._attempts[key] = _Attempt(step, status, image_id=made.image_id)
        with log_fields(region=self.region, policy=step.policies, instance=step.instance_id,
                        slot=step.slot):
            if made.adopted:
                log.info("%s: %s already existed as %s; adopted", self.region, step.image_name,
                         made.image_id)
            self._say(f"{self.region}: {status} {step.image_name} ({made.image_id}) for "
                      f"{step.instance_id}")
        return "made"

    def _record_skips(self, skips: Iterable[Skip]) -> None:
        for skip in skips:
            self._skips[(skip.instance_id, skip.slot)] = skip

    # -- waiting ---------------------------------------------------------------------------

    def _wait_phase(self) -> None:
        """Wait for the images in flight: all of them, or with ``--no-wait`` only those whose
        stopped instance waits to be started again."""
        instance_of: dict[str, str] = {}
        for attempt in self._attempts.values():
            if attempt.image_id and attempt.status in ("created", "adopted"):
                instance_of[attempt.image_id] = attempt.step.instance_id
        for image_id in self._waited_existing:
            instance_of.setdefault(image_id, "")
        stop_start = {
            image_id
            for image_id, instance_id in instance_of.items()
            if instance_id in self._stopper.stopped_by_us
        }
        targets = set(instance_of) if self.options.wait else stop_start
        if not targets:
            return
        self._say(f"{self.region}: waiting for {len(targets)} image(s) to become NORMAL")
        pending = self._wait_for(targets, stop_start, instance_of)
        if self.options.wait and not self.options.stopping:
            self._timed_out = pending

    def _wait_for(
        self, targets: set[str], must_finish: set[str], instance_of: Mapping[str, str]
    ) -> set[str]:
        """Poll until ``targets`` leave ``CREATING``; return those still in flight.

        After a stop request only ``must_finish`` (images of stopped instances) are still
        waited for, so the instance is not started under its image.
        """
        pending = set(targets)
        deadline = self.options.poll_time.deadline(self._api.wait_timeout.total_seconds())
        delays = poll_delays(self._api.poll_interval.total_seconds())
        while pending:
            if self.options.stopping:
                pending &= must_finish
                if not pending:
                    break
            if deadline.passed:
                break
            self.options.poll_time.wait(min(next(delays), deadline.remaining()),
                                        self.options.stop)
            try:
                seen = {i.image_id: i for i in self._client.get_images(self.region, pending)}
            except CloudError as error:
                log.warning("%s: polling images failed (%s); trying again", self.region, error)
                continue
            for image_id in sorted(pending):
                image = seen.get(image_id)
                if image is not None and image.state.busy:
                    continue
                self._final[image_id] = image
                pending.discard(image_id)
                state = image.state.value if image else "gone"
                self._say(f"{self.region}: {image.name if image else image_id} is {state}")
                if instance_of.get(image_id):
                    self._stopper.release(instance_of[image_id])
        return pending

    # -- deletes ---------------------------------------------------------------------------

    def _run_deletes(self, steps: Iterable[Delete]) -> None:
        for step in steps:
            if self.options.stopping:
                for target in step.targets:
                    self._record_delete(step, target, "skipped")
                continue
            self._delete(step, list(step.targets))

    def _delete(self, step: Delete, targets: list[DeleteTarget]) -> None:
        try:
            result = self._client.delete_images(
                self.region,
                [t.image_id for t in targets],
                delete_snapshots=self._api.delete_binded_snapshots,
            )
        except CloudError as error:
            if len(targets) > 1:  # find the one that is refused; delete the others
                for target in targets:
                    self._delete(step, [target])
                return
            self._delete_failed(step, targets[0], error)
            return
        except Exception as error:
            log.exception("DeleteImages in %s failed unexpectedly", self.region)
            for target in targets:
                self._delete_failed(step, target, error)
            return
        gone = set(result.already_gone)
        for target in targets:
            status: DeleteStatus = "already_gone" if target.image_id in gone else "deleted"
            self._record_delete(step, target, status)
            self._say(f"{self.region}: deleted {target.image_name} ({target.image_id}): "
                      f"{delete_reason_text(step.kind.value, target.reason)}")

    def _delete_failed(self, step: Delete, target: DeleteTarget, error: Exception) -> None:
        code = error.code if isinstance(error, CloudError) else None
        request_id = error.request_id if isinstance(error, CloudError) else None
        message = f"{target.image_name} ({target.image_id}) not deleted: {error}"
        policies = self._policies_of_image(target)
        if code in LEAVE_ALONE_CODES:
            self._record_delete(step, target, "left", error=message, code=code,
                                request_id=request_id)
            self._warn(policies, "DeleteImages", message, instance=target.instance_id,
                       code=code, request_id=request_id, image_id=target.image_id)
            return
        self._record_delete(step, target, "failed", error=message, code=code,
                            request_id=request_id)
        self._error(policies, "DeleteImages", message, error, instance=target.instance_id,
                    image_id=target.image_id)

    def _record_delete(
        self,
        step: Delete,
        target: DeleteTarget,
        status: DeleteStatus,
        *,
        error: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.result.deleted.append(
            DeleteOutcome(
                region=self.region,
                image_id=target.image_id,
                image_name=target.image_name,
                instance_id=target.instance_id,
                kind=step.kind.value,
                reason=target.reason,
                status=status,
                error=error,
                tencent_code=code,
                request_id=request_id,
            )
        )

    # -- outcomes --------------------------------------------------------------------------

    def _build_outcomes(self) -> None:
        """One ``SlotOutcome`` per due (policy, instance, slot); alert each without an image."""
        inventory = self._inventory
        assert inventory is not None
        resolution = resolve_targets(self.region, self.options.setup.policies, inventory.instances)
        existing = {image.name: image for image in inventory.images}
        for policy_name, slot in self._due:
            if slot > self.options.now:
                continue
            for instance_id in resolution.instances_of(policy_name):
                outcome = self._outcome(policy_name, instance_id, slot, existing)
                self.result.outcomes.append(outcome)
                if outcome.error is None:
                    continue
                attempt = self._attempts.get((instance_id, slot))
                if attempt is not None and attempt.status == "stopped":
                    self._warn([policy_name], "CreateImage", outcome.error, instance=instance_id,
                               slot=slot)
                    continue
                action = attempt.action if attempt is not None and outcome.tencent_code \
                    else "CreateImage"
                self._error([policy_name], action, outcome.error, None,
                            instance=instance_id, slot=slot, code=outcome.tencent_code,
                            request_id=outcome.request_id, image_id=outcome.image_id)

    def _outcome(
        self, policy: str, instance_id: str, slot: datetime, existing: Mapping[str, Image]
    ) -> SlotOutcome:
        key = (instance_id, slot)
        try:
            name = image_name(instance_id, slot, self._fmt)
        except ValueError:
            name = ""

        def outcome(status: SlotStatus, image_id: str | None = None, *, error: str | None = None,
                    code: str | None = None, request_id: str | None = None,
                    state: str | None = None) -> SlotOutcome:
            return SlotOutcome(policy, self.region, instance_id, slot, name, image_id, status,
                               error, code, request_id, state)

        attempt = self._attempts.get(key)
        if attempt is not None and attempt.status in ("created", "adopted"):
            status: SlotStatus = "created" if attempt.status == "created" else "adopted"
            return self._settled(outcome, status, attempt.image_id, name)
        if attempt is not None and attempt.status in ("failed", "quota"):
            return outcome("failed", error=attempt.error, code=attempt.code,
                           request_id=attempt.request_id)
        skip = self._skips.get(key)
        if skip is not None:
            return outcome("skipped", error=skip.error)
        image = existing.get(name)
        if image is not None and image.state.usable:
            return outcome("exists", image.image_id, state=image.state.value)
        if image is not None and image.image_id in self._waited_existing:
            return self._settled(outcome, "exists", image.image_id, name)
        if attempt is not None and attempt.status == "stopped":
            return outcome("skipped", error=f"{name}: not created: the run was stopped first")
        return outcome("skipped")  # a newer backup covers this slot (the plan warned)

    def _settled(
        self, outcome: Callable[..., SlotOutcome], status: SlotStatus, image_id: str | None,
        name: str,
    ) -> SlotOutcome:
        """The outcome of an image in flight, from what the wait saw last."""
        if image_id is None or image_id not in self._final:
            if image_id in self._timed_out:
                timeout = format_duration(self._api.wait_timeout)
                return outcome("failed", image_id, error=f"{name} ({image_id}) not NORMAL "
                               f"within api.wait_timeout {timeout}",
                               state=ImageState.CREATING.value)
            return outcome(status, image_id, state=ImageState.CREATING.value)
        image = self._final[image_id]
        if image is None:
            return outcome("failed", image_id, error=f"{name} ({image_id}) disappeared while it "
                           "was being created")
        if image.state.usable:
            return outcome(status, image_id, state=image.state.value)
        return outcome("failed", image_id, error=f"{name} ({image_id}) ended {image.state.value}; "
                       "it is cleaned up, the previous backups are untouched",
                       state=image.state.value)

    # -- alerts and messages ---------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.options.say(message)

    def _error(
        self,
        policies: Sequence[str],
        action: str,
        message: str,
        error: Exception | None,
        *,
        instance: str | None = None,
        slot: datetime | None = None,
        code: str | None = None,
        request_id: str | None = None,
        image_id: str | None = None,
    ) -> None:
        if isinstance(error, CloudError):
            code = code or error.code
            request_id = request_id or error.request_id
        self.result.errors.append(f"{self.region}: {message}")
        self.result.failed_policies.update(policies)
        with log_fields(policy=policies, instance=instance, slot=slot):
            self._say(f"{self.region}: ERROR {message}")
        if self.options.dry_run:
            return  # a preview reports, it does not page anyone
        for policy in policies or [NO_POLICY]:
            self.options.alerter.error(
                Failure(policy=policy, action=action, message=message, instance=instance,
                        region=self.region, tencent_code=code, request_id=request_id,
                        extra=_extra(slot, image_id), exception=error)
            )

    def _warn(
        self,
        policies: Sequence[str],
        action: str,
        message: str,
        *,
        instance: str | None = None,
        slot: datetime | None = None,
        code: str | None = None,
        request_id: str | None = None,
        image_id: str | None = None,
    ) -> None:
        self.result.warnings.append(f"{self.region}: {message}")
        with log_fields(policy=policies, instance=instance, slot=slot):
            self._say(f"{self.region}: WARNING {message}")
        if self.options.dry_run:
            return
        for policy in policies or [NO_POLICY]:
            self.options.alerter.warning(
                Failure(policy=policy, action=action, message=message, level="warning",
                        instance=instance, region=self.region, tencent_code=code,
                        request_id=request_id, extra=_extra(slot, image_id))
            )

    def _warn_recovered(self, entry: StoppedEntry) -> None:
        when = entry.stopped_at.strftime("%Y-%m-%d %H:%M:%SZ")
        self._warn(self._policies_of_instance(entry.instance_id), "StartInstances",
                   f"{entry.instance_id} was left stopped by an interrupted cvmkeeper run "
                   f"(pid {entry.pid} on {entry.host} stopped it at {when}); started it again",
                   instance=entry.instance_id)

    def _start_failed(self, instance_id: str, error: Exception) -> None:
        policies = sorted({policy for a in self._attempts.values()
                           if a.step.instance_id == instance_id for policy in a.step.policies})
        self._error(policies, "StartInstances",
                    f"{instance_id} was stopped for its image and could not be started again: "
                    f"{error}", error, instance=instance_id)

    def _due_policy_names(self) -> list[str]:
        names = sorted({policy for policy, _slot in self._due})
        if names:
            return names
        return sorted(p.name for p in self.options.setup.policies if self.region in p.regions)

    def _policies_in_message(self, message: str, plan: Plan) -> list[str]:
        named = [p.name for p in self.options.setup.policies if f"'{p.name}'" in message]
        if named:
            return named
        for decision in plan.decisions:
            if decision.image_id in message or (decision.image_name and
                                                 decision.image_name in message):
                return self._policies_of_instance(decision.instance_id)
        return self._due_policy_names()

    def _policies_of_instance(self, instance_id: str) -> list[str]:
        inventory = self._inventory
        if inventory is None:
            return []
        resolution = resolve_targets(self.region, self.options.setup.policies, inventory.instances)
        return sorted(p.name for p in resolution.policies_by_instance.get(instance_id, ()))

    def _policies_of_image(self, target: DeleteTarget) -> list[str]:
        targeting = self._policies_of_instance(target.instance_id)
        if targeting:
            return targeting
        inventory = self._inventory
        tagged = next((i.tags.get(TAG_POLICY, "") for i in inventory.images
                       if i.image_id == target.image_id), "") if inventory else ""
        return [name for name in tagged.split(",") if name] or ["orphans"]


def _failed_attempt(step: Create, error: CloudError) -> _Attempt:
    return _Attempt(step, "failed", error=f"{step.image_name}: CreateImage for "
                    f"{step.instance_id} failed: {error.code}: {error.message}",
                    code=error.code, request_id=error.request_id)


def _warning_action(message: str) -> str:
    if "evict" in message:
        return "evict"
    if "matches no instance" in message:
        return "targets"
    if is_disk_warning(message):
        return "disks"
    return "plan"


def _extra(slot: datetime | None, image_id: str | None) -> dict[str, str]:
    extra: dict[str, str] = {}
    if slot is not None:
        extra["slot"] = slot_tag_value(slot)
    if image_id:
        extra["image_id"] = image_id
    return extra
