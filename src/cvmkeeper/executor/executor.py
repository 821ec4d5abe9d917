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
Every failure is reported to the alerter and in the ``RegionResult``; no exception
escapes :meth:`RegionExecutor.run`.

DescribeImages lags (issue #18): images this run or an earlier one created and that are not
listed whole yet are applied to every inventory read (``executor.created``: counted against
the quota, recognised without their tags), the wait takes an unlisted new image for pending
until ``api.visibility_grace``, and ``DELETING`` images, which still hold quota, are waited
out before planning and between the ``before_create`` deletes and the creates, so that a
CreateImage is never sent into a quota that is full in truth.

This module is the orchestration; the parts it is built from are shared with the copy
phase (``copies.CopyExecutor``): ``region`` (options, result, reporting), ``planning``,
``creates``, ``waits`` and ``deletes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import image_name
from cvmkeeper.core.plan import Create, DeleteTarget, Phase, Plan, Skip
from cvmkeeper.core.targets import resolve_targets
from cvmkeeper.executor.consistency import InstanceStopper
from cvmkeeper.executor.creates import Attempt, AttemptStatus, Creator, Key
from cvmkeeper.executor.deletes import Deleter
from cvmkeeper.executor.missed import report_unread_region
from cvmkeeper.executor.planning import RunPlanner
from cvmkeeper.executor.region import (
    NO_POLICY,
    RegionResult,
    RegionRun,
    RunOptions,
    image_extra,
    policies_of_image,
    read_inventory,
)
from cvmkeeper.executor.report import Outcome, SlotStatus
from cvmkeeper.executor.stop_journal import StoppedEntry
from cvmkeeper.executor.stop_markers import CloudStopMarkers, default_lease
from cvmkeeper.executor.waits import ImageWaiter

__all__ = ["NO_POLICY", "RegionExecutor", "RegionResult", "RunOptions", "read_inventory"]

log = logging.getLogger(__name__)

#: The due (policy name, slot) pairs of one region (``core.due.DueSlots``, as a tuple), from
#: its inventory (``None``: it could not be read; the slots due whatever it holds).
DueFor = Callable[[Inventory | None], tuple[tuple[str, datetime], ...]]


class RegionExecutor:
    """Runs one region: inventory, plan, deletes, creates, wait, re-plan, deletes.

    ``due_for(inventory)`` gives the due (policy, slot) pairs of this region once its
    inventory is known.
    """

    def __init__(self, options: RunOptions, region: str, due_for: DueFor) -> None:
        self.options = options
        self.region = region
        self._run = RegionRun(options, region)
        self.result = self._run.result
        self._due_for = due_for
        self._due: tuple[tuple[str, datetime], ...] = ()
        self._inventory: Inventory | None = None
        self._skips: dict[Key, Skip] = {}
        #: ids of images that were in flight before this run and that it waits for (the
        #: in-flight images of its due slots, and those a re-plan after the quota waits for)
        self._waited_existing: set[str] = set()
        api = options.setup.config.api
        self._stopper = InstanceStopper(
            options.client,
            region,
            deadline_seconds=api.wait_timeout.total_seconds(),
            poll_seconds=api.poll_interval.total_seconds(),
            sleep=options.poll_time.sleep or time.sleep,
            on_start_failed=self._start_failed,
            progress=options.say,
            journal=options.stop_journal,
            markers=CloudStopMarkers(
                options.client,
                region,
                lease=api.stop_lease or default_lease(api.wait_timeout),
                clock=options.lease_clock,
            ),
        )
        self._planner = RunPlanner(self._run, self._due_policy_names)
        self._creator = Creator(self._run, self._stopper, lambda: self._inventory)
        self._waiter = ImageWaiter(self._run)
        self._deleter = Deleter(self._run, self._policies_of_image)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> RegionResult:
        """Do the whole run of this region; every failure ends up in the result and alerts."""
        try:
            recovered = [] if self.options.dry_run else self._stopper.recover()
            # Not alerted here: the read error and the slots it misses are one alert
            # (executor.missed.report_unread_region).
            inventory = self._run.read("DescribeImages", self._due_policy_names(), alert=False)
            if inventory is not None and not self.options.dry_run:
                inventory = self._after_deleting(inventory)
            self._inventory = inventory
            for entry in recovered:
                self._warn_recovered(entry)
            if inventory is None:
                if not self.options.dry_run:
                    self._due = self.result.due = self._due_for(None)
                    # rule 7: name the slots, one alert for the cause
                    report_unread_region(self._run, self._due, cause=self._run.read_error)
                return self.result
            self._due = self.result.due = self._due_for(inventory)
            plan = self._planner.plan(inventory, self._due)
            if plan is None:
                return self.result
            self._run.say(
                f"{self.region}: quota {plan.quota}, {plan.used} used ({plan.unmanaged} "
                f"unmanaged), {len(plan.creates)} to create, "
                f"{sum(len(d.targets) for d in plan.deletes())} to delete"
            )
            if self.options.dry_run:
                return self.result
            self._execute(plan)
        except Exception as error:  # never let one region kill the run of the others
            log.exception("run of %s failed unexpectedly", self.region)
            self._run.error(self._due_policy_names(), "run", f"unexpected error: {error}", error)
        finally:
            if not self.options.dry_run and self._inventory is not None:
                self._build_outcomes()
            self._run.created.flush()  # what is still unseen, for the next runs
        return self.result

    def _after_deleting(self, inventory: Inventory) -> Inventory | None:
        """The inventory once its ``DELETING`` images are gone (read again), so that the
        plan is made on the room the region really has: a delete that lags still holds its
        quota (issue #18). If they stay, the planner counts them."""
        deleting = [i.image_id for i in inventory.images if i.state is ImageState.DELETING]
        if not deleting:
            return inventory
        self._waiter.wait_gone(deleting)
        return self._run.read("DescribeImages", self._due_policy_names(), alert=False)

    def _deletes_before_creates(self, plan: Plan) -> bool:
        """Run the ``before_create`` deletes; True when the room they free is really free
        (their images are gone, not ``DELETING``), so the creates may go."""
        first = len(self.result.deleted)
        self._deleter.run_deletes(plan.deletes(Phase.BEFORE_CREATE))
        deleted = [d.image_id for d in self.result.deleted[first:] if d.status == "deleted"]
        if not plan.creates or not deleted:
            return True
        left = self._waiter.wait_gone(deleted)
        if left:
            self._run.say(
                f"{self.region}: {len(left)} deleted image(s) still DELETING; planning again "
                "instead of creating into a full quota"
            )
        return not left

    def _execute(self, plan: Plan) -> None:
        try:
            room = self._deletes_before_creates(plan)
            quota_hit = (
                self._creator.run_creates(plan.creates, last_chance=False)
                if room
                else list(plan.creates)
            )
            self._record_skips(plan.skips)
            self._waited_existing |= {i for wait in plan.waits for i in wait.image_ids}
            if quota_hit and not self.options.stopping:
                self._waited_existing |= self._replan_for_quota()
            self._wait_phase()
        finally:
            self._stopper.release_all()
        if not plan.creates and not plan.waits and len(self.result.plans) == 1:
            self._deleter.run_deletes(plan.deletes(Phase.AFTER_CREATE))  # the contract: as is
            return
        if not self.options.wait:
            self._run.say(f"{self.region}: deletes wait for the next run (--no-wait)")
            return
        if self.options.stopping:
            self._run.say(f"{self.region}: stopped; deletes wait for the next run")
            return
        self._delete_after_wait()

    def _delete_after_wait(self) -> None:
        inventory = self._run.read("DescribeImages", self._due_policy_names())
        if inventory is None:
            return
        plan = self._planner.plan(inventory, ())
        if plan is None:
            return
        if plan.creates or plan.waits:  # cannot happen without due slots; never guess
            self._run.warn(
                [NO_POLICY], "plan", "re-plan after the wait has creates; deletes skipped"
            )
            return
        self._deleter.run_deletes(plan.deletes())

    def _replan_for_quota(self) -> set[str]:
        """Read and plan again after ``ImageQuotaLimitExceeded``; try the missing creates once."""
        self._run.say(f"{self.region}: image quota exceeded; reading the region and planning again")
        inventory = self._run.read("DescribeImages", self._due_policy_names())
        if inventory is None:
            return set()
        plan = self._planner.plan(inventory, self._due)
        if plan is None:
            return set()
        missing = self._creator.retry_after_quota(plan.creates)
        if self._deletes_before_creates(plan):
            self._creator.run_creates(missing, last_chance=True)
        else:
            self._creator.not_made(
                missing,
                "the quota is still held by deleted images (DELETING) after "
                "api.wait_timeout; not created",
            )
        attempts = self._creator.attempts
        for skip in plan.skips:
            attempt = attempts.get((skip.instance_id, skip.slot))
            if attempt is None or attempt.status is AttemptStatus.QUOTA:
                attempts.pop((skip.instance_id, skip.slot), None)
                self._skips[(skip.instance_id, skip.slot)] = skip
        return {i for wait in plan.waits for i in wait.image_ids}

    def _record_skips(self, skips: tuple[Skip, ...]) -> None:
        for skip in skips:
            self._skips[(skip.instance_id, skip.slot)] = skip

    def _wait_phase(self) -> None:
        """Wait for the images in flight: all of them, or with ``--no-wait`` only those whose
        stopped instance waits to be started again."""
        instance_of: dict[str, str] = {}
        for attempt in self._creator.attempts.values():
            if attempt.image_id and attempt.status.has_image:
                instance_of[attempt.image_id] = attempt.step.instance_id
                self._waiter.expect(attempt.image_id)  # absent at first: pending, not gone
        for image_id in self._waited_existing:
            instance_of.setdefault(image_id, "")
        stop_start = frozenset(
            image_id
            for image_id, instance_id in instance_of.items()
            if instance_id in self._stopper.owed
        )
        targets = set(instance_of) if self.options.wait else set(stop_start)
        if not targets:
            return

        def release(image_id: str) -> None:
            if instance_of.get(image_id):
                self._stopper.release(instance_of[image_id])

        self._run.say(f"{self.region}: waiting for {len(targets)} image(s) to become NORMAL")
        pending = self._waiter.wait_for(targets, must_finish=stop_start, on_settled=release)
        if self.options.wait and not self.options.stopping:
            self._waiter.settled.timed_out = pending

    # -- outcomes --------------------------------------------------------------------------

    def _build_outcomes(self) -> None:
        """One ``Outcome`` per due (policy, instance, slot); alert each without an image."""
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
                if outcome.error is not None:
                    self._alert_outcome(outcome, self._creator.attempts.get((instance_id, slot)))

    def _alert_outcome(self, outcome: Outcome, attempt: Attempt[Create] | None) -> None:
        """A slot without its image: an error (a warning when the run was stopped first)."""
        assert outcome.error is not None
        if attempt is not None and attempt.status is AttemptStatus.STOPPED:
            self._run.warn(
                list(outcome.policies),
                "CreateImage",
                outcome.error,
                instance=outcome.instance_id,
                slot=outcome.slot,
            )
            return
        action = attempt.action if attempt is not None and outcome.tencent_code else "CreateImage"
        self._run.error(
            list(outcome.policies),
            action,
            outcome.error,
            None,
            instance=outcome.instance_id,
            slot=outcome.slot,
            code=outcome.tencent_code,
            request_id=outcome.request_id,
            extra=image_extra(outcome.image_id),
        )

    def _outcome(
        self, policy: str, instance_id: str, slot: datetime, existing: Mapping[str, Image]
    ) -> Outcome:
        try:
            name = image_name(instance_id, slot, self.options.setup.config.name_format)
        except ValueError:
            name = ""

        def outcome(
            status: SlotStatus,
            image_id: str | None = None,
            *,
            error: str | None = None,
            code: str | None = None,
            request_id: str | None = None,
            state: str | None = None,
        ) -> Outcome:
            return Outcome(
                (policy,),
                self.region,
                instance_id,
                slot,
                name,
                image_id,
                status,
                error,
                code,
                request_id,
                state,
            )

        attempt = self._creator.attempts.get((instance_id, slot))
        if attempt is not None and attempt.status.has_image:
            status: SlotStatus = "created" if attempt.status is AttemptStatus.MADE else "adopted"
            return self._settled(outcome, status, attempt.image_id, name)
        if attempt is not None and attempt.status in (AttemptStatus.FAILED, AttemptStatus.QUOTA):
            return outcome(
                "failed", error=attempt.error, code=attempt.code, request_id=attempt.request_id
            )
        skip = self._skips.get((instance_id, slot))
        if skip is not None:
            return outcome("skipped", error=skip.error)
        image = existing.get(name)
        if image is not None and image.state.usable:
            return outcome("exists", image.image_id, state=image.state.value)
        if image is not None and image.image_id in self._waited_existing:
            return self._settled(outcome, "exists", image.image_id, name)
        if attempt is not None and attempt.status is AttemptStatus.STOPPED:
            return outcome("skipped", error=f"{name}: not created: the run was stopped first")
        return outcome("skipped")  # a newer backup covers this slot (the plan warned)

    def _settled(
        self,
        outcome: Callable[..., Outcome],
        status: SlotStatus,
        image_id: str | None,
        name: str,
    ) -> Outcome:
        """The outcome of an image in flight, from what the wait saw last."""
        settled = self._waiter.settled
        if image_id is None or image_id not in settled.final:
            if image_id in settled.timed_out:
                timeout = format_duration(self.options.setup.config.api.wait_timeout)
                return outcome(
                    "failed",
                    image_id,
                    error=f"{name} ({image_id}) not NORMAL within api.wait_timeout {timeout}",
                    state=ImageState.CREATING.value,
                )
            return outcome(status, image_id, state=ImageState.CREATING.value)
        image = settled.final[image_id]
        if image is None and image_id in settled.lost:
            self._run.created.forget([image_id])  # reported here: not again by the next run
            grace = format_duration(self.options.setup.config.api.visibility_grace)
            return outcome(
                "failed",
                image_id,
                error=f"{name} ({image_id}) was created but not listed by DescribeImages "
                f"within api.visibility_grace {grace}: it is lost",
            )
        if image is None:
            return outcome(
                "failed",
                image_id,
                error=f"{name} ({image_id}) disappeared while it was being created",
            )
        if image.state.usable:
            return outcome(status, image_id, state=image.state.value)
        return outcome(
            "failed",
            image_id,
            error=f"{name} ({image_id}) ended {image.state.value}; "
            "it is cleaned up, the previous backups are untouched",
            state=image.state.value,
        )

    # -- whom an alert concerns ------------------------------------------------------------

    def _warn_recovered(self, entry: StoppedEntry) -> None:
        when = entry.stopped_at.strftime("%Y-%m-%d %H:%M:%SZ")
        if entry.lease_until is None:
            who = f"pid {entry.pid} on {entry.host} stopped it at {when}"
        else:  # found through its cloud mark: the stopping host may be gone for good
            until = entry.lease_until.strftime("%Y-%m-%d %H:%M:%SZ")
            who = f"cvmkeeper on {entry.host} stopped it at {when}; its lease ended {until}"
        self._run.warn(
            self._policies_of_instance(entry.instance_id),
            "StartInstances",
            f"{entry.instance_id} was left stopped by an interrupted cvmkeeper run "
            f"({who}); started it again",
            instance=entry.instance_id,
        )

    def _start_failed(self, instance_id: str, error: Exception) -> None:
        self._run.error(
            self._creator.policies_of_instance(instance_id),
            "StartInstances",
            f"{instance_id} was stopped for its image and could not be started again: {error}",
            error,
            instance=instance_id,
        )

    def _due_policy_names(self) -> list[str]:
        names = sorted({policy for policy, _slot in self._due})
        if names:
            return names
        return sorted(p.name for p in self.options.setup.policies if self.region in p.regions)

    def _policies_of_instance(self, instance_id: str) -> list[str]:
        inventory = self._inventory
        if inventory is None:
            return []
        resolution = resolve_targets(self.region, self.options.setup.policies, inventory.instances)
        return sorted(p.name for p in resolution.policies_by_instance.get(instance_id, ()))

    def _policies_of_image(self, target: DeleteTarget) -> list[str]:
        return policies_of_image(self.options.setup, self._inventory, target)
