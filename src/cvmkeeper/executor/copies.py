"""The copy phase of a run: disaster-recovery copies into one destination region.

``run_once`` runs it after every source region has made, waited for and rotated its own
images, one destination region at a time (a source image shows ``SYNCING`` while it is
copied and ``SyncImages`` refuses a source that is not ``NORMAL``, so two destinations
never copy the same image at once). For one destination:

1. read the destination and every source region of the policies copying there (after
   their own run, so the new images are ``NORMAL``), and plan with those sources
   (``plan_region(..., sources=...)``): ``Copy`` steps for source images without a copy,
   within the destination's quota;
2. ``before_create`` deletes (room for the copies), then ``SyncImages``, one image per
   call (``ImageSetRequired``: the answer names the copy). A lost answer or
   ``InvalidImageName.Duplicate`` means the copy exists: it is adopted by its name;
3. wait until the copies are ``NORMAL``;
4. read and plan again without copies (``make_copies=False``) and execute that plan's
   deletes: expired copies go only once their successors are really ``NORMAL``.

Every copy is tagged by cvmkeeper itself (``executor.copy_marks``: right after
``SyncImages``, and at the start of each phase for copies that carry no tags yet), since
nothing documents that a copy inherits the source's tags (issue #18).

Failures (``ImageQuotaLimitExceeded`` in the destination ...) are alerted with the
destination as the ``region`` tag and the source region and image in the event's extra
context. A region pair the cloud refuses (``InvalidRegion.Unavailable``,
``UnsupportedOperation.Region``, ...: ``PAIR_REFUSALS``) is one error per run naming the
policies, the source and the destination; the other copies of that pair are not tried
(reported ``skipped``, not alerted again).

``CopyExecutor`` is its own orchestration, built from the same parts as the region run
(``region``, ``planning``, ``waits``, ``deletes``); a ``SyncImages`` is recorded as the
same :class:`~cvmkeeper.executor.creates.Attempt` (and ``AttemptStatus``) as a create.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.core.disks import sync_refusal_hint
from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.plan import Copy, DeleteTarget, Phase, Plan, Skip
from cvmkeeper.core.policy import Policy
from cvmkeeper.executor.copy_marks import CopyTagger
from cvmkeeper.executor.created import CreatedImages
from cvmkeeper.executor.creates import Attempt, AttemptStatus
from cvmkeeper.executor.deletes import Deleter
from cvmkeeper.executor.planning import RunPlanner
from cvmkeeper.executor.progress import ProgressKind
from cvmkeeper.executor.region import (
    RegionResult,
    RegionRun,
    RunOptions,
    policies_of_image,
    read_inventory,
)
from cvmkeeper.executor.report import CopyStatus, Outcome
from cvmkeeper.executor.waits import ImageWaiter

log = logging.getLogger(__name__)

#: SyncImages codes that refuse the (source, destination) pair itself, not one image: in
#: SyncImages' error list (sdk-go cvm ``client.go``), and cvmkeeper's own for an unknown
#: region
PAIR_REFUSALS = frozenset(
    {
        "InvalidRegion.Unavailable",
        "InvalidRegion.NotFound",
        "InvalidParameterValue.InvalidRegion",
        "UnsupportedOperation.Region",
        "UnsupportedRegion",
    }
)


def copy_destinations(policies: tuple[Policy, ...] | list[Policy]) -> list[str]:
    """The destination regions of ``policies``' copies, in order of first mention."""
    return list(dict.fromkeys(rule.region for p in policies for rule in p.copies))


def copy_source_regions(policies: tuple[Policy, ...] | list[Policy], destination: str) -> list[str]:
    """The regions whose images are copied to ``destination`` by any of ``policies``."""
    return list(
        dict.fromkeys(
            region
            for policy in policies
            if policy.copy_to(destination) is not None
            for region in policy.regions
            if region != destination
        )
    )


class CopyExecutor:
    """Runs the copy phase of one destination region (see the module docstring)."""

    def __init__(self, options: RunOptions, region: str) -> None:
        self.options = options
        self.region = region
        self._run = RegionRun(options, region)
        self.result = self._run.result
        self._source_regions = copy_source_regions(options.setup.policies, region)
        self._attempts: dict[str, Attempt[Copy]] = {}  # image name -> attempt
        #: source region -> the error of the refused pair (source, this region)
        self._refused: dict[str, str] = {}
        self._quiet: set[str] = set()  # names of copies not alerted (their pair was)
        self._tagger = CopyTagger(
            self._run, options.setup.config.name_format, self._copy_policy_names()
        )
        self._skips: list[Skip] = []
        self._untagged_reported: set[str] = set()  # sources alerted as still untagged
        self._planner = RunPlanner(self._run, self._copy_policy_names)
        self._waiter = ImageWaiter(self._run)
        self._deleter = Deleter(self._run, self._policies_of_image)
        self.copy_plans: list[Plan] = []
        #: the destination as the phase first read it (whom a failed delete concerns)
        self._destination: Inventory | None = None
        #: the destination and source inventories read last (for the post-run copy check)
        self.last_read: tuple[Inventory, dict[str, Inventory]] | None = None

    def run(self) -> RegionResult:
        """Plan and make the copies of this destination; every failure is alerted."""
        try:
            self._run_copies()
        except Exception as error:  # never let one destination break the run
            log.exception("copies into %s failed unexpectedly", self.region)
            self._run.error(
                self._copy_policy_names(), "SyncImages", f"copies: unexpected error: {error}", error
            )
        finally:
            if not self.options.dry_run:
                self._build_copy_outcomes()
            self._run.created.flush()  # copies still unseen, for the next runs
        return self.result

    # -- the phase -------------------------------------------------------------------------

    def _run_copies(self) -> None:
        plan = self._first_plan()
        if plan is None or self.options.dry_run:
            return
        self._skips = list(plan.skips)
        if self.last_read is not None:
            self._tagger.repair(*self.last_read)
        self._deleter.run_deletes(plan.deletes(Phase.BEFORE_CREATE))
        for step in plan.copies:
            self._copy(step)
        if not plan.copies and not plan.waits:
            self._deleter.run_deletes(plan.deletes(Phase.AFTER_CREATE))  # the contract: as is
            return
        if not self.options.wait:
            self._run.say(f"{self.region}: copy deletes wait for the next run (--no-wait)")
            return
        waited = {i for wait in plan.waits for i in wait.image_ids}
        targets = waited | {
            a.image_id for a in self._attempts.values() if a.image_id and a.status.has_image
        }
        for attempt in self._attempts.values():
            if attempt.image_id and attempt.status.has_image:
                self._waiter.expect(attempt.image_id)  # absent at first: pending, not gone
        if targets:
            self._run.say(f"{self.region}: waiting for {len(targets)} copy(ies) to become NORMAL")
            self._waiter.settled.timed_out = self._waiter.wait_for(targets)
        if self.options.stopping:
            self._run.say(f"{self.region}: stopped; copy deletes wait for the next run")
            return
        self._delete_after_wait()

    def _first_plan(self) -> Plan | None:
        """Read the destination and its sources and plan the copies (shown, kept)."""
        read = self._read_all()
        if read is None:
            return None
        inventory, sources = read
        self._destination = inventory
        plan = self._planner.plan(inventory, (), sources=sources)
        if plan is None:
            return None
        self.copy_plans.append(plan)
        self._run.say(
            f"{self.region}: copies: quota {plan.quota}, {plan.used} used, "
            f"{len(plan.copies)} to copy, {sum(len(d.targets) for d in plan.deletes())} "
            "to delete"
        )
        return plan

    def _delete_after_wait(self) -> None:
        """Read and plan again without copies; delete what that plan expires."""
        read = self._read_all()
        if read is None:
            return
        inventory, sources = read
        after = self._planner.plan(inventory, (), sources=sources, make_copies=False)
        if after is None:
            return
        self.copy_plans.append(after)
        if after.copies or after.waits:
            self._run.warn(
                self._copy_policy_names(),
                "plan",
                "copies still in flight after the wait; their deletes wait for the next run",
            )
            return
        self._deleter.run_deletes(after.deletes())

    def _read_all(self) -> tuple[Inventory, dict[str, Inventory]] | None:
        inventory = self._run.read("DescribeImages", self._copy_policy_names())
        if inventory is None:
            return None
        sources: dict[str, Inventory] = {}
        for source_region in self._source_regions:
            try:
                sources[source_region] = self._read_source(source_region)
            except CloudError as error:
                self._run.error(
                    self._copy_policy_names(),
                    error.action or "DescribeImages",
                    f"cannot read copy source region {source_region}: {error}; "
                    "its copies here are left as they are",
                    error,
                )
        self.last_read = (inventory, sources)
        return inventory, sources

    def _read_source(self, region: str) -> Inventory:
        """A copy source region's inventory, once the new images its run left without tags
        (the record of created images, ``executor.created``) show them: a copy is planned
        only from a source recognised by its tags (whether SyncImages copies tags that do
        not show yet is not known). One still untagged after the wait is alerted: its copy
        waits for a later run."""
        quota = self.options.setup.config.image_quota
        inventory = read_inventory(self._run.client, region, quota)
        if self.options.dry_run:
            return inventory
        view = CreatedImages(
            self.options.created_record,
            region,
            now=self.options.now,
            grace=self.options.setup.config.api.visibility_grace,
            writable=False,
        )
        untagged = view.apply(inventory).inventory.provisional - self._untagged_reported
        if not untagged:
            return inventory
        left = self._waiter.wait_tagged(region, untagged)
        if left != untagged:
            inventory = read_inventory(self._run.client, region, quota)
        names = {image.image_id: image.name for image in inventory.images}
        for image_id in sorted(left):
            self._untagged_reported.add(image_id)
            self._run.error(
                self._copy_policy_names(),
                "SyncImages",
                f"{names.get(image_id, image_id)} ({image_id}) in {region} is still listed "
                "without cvmkeeper's tags: it is not copied by this run",
                None,
            )
        return inventory

    # -- one copy --------------------------------------------------------------------------

    def _copy(self, step: Copy) -> None:
        self._attempts[step.image_name] = self._attempt(step)

    def _attempt(self, step: Copy) -> Attempt[Copy]:
        if self.options.stopping:
            return Attempt(step, AttemptStatus.STOPPED)
        refused = self._refused.get(step.source_region)
        if refused is not None:
            self._quiet.add(step.image_name)
            return Attempt(
                step,
                AttemptStatus.STOPPED,
                error=f"{step.image_name}: not copied: {refused}",
            )
        try:
            result = self._run.client.sync_image(
                step.source_region, step.source_image_id, [self.region]
            )
        except CloudError as error:
            if error.code in PAIR_REFUSALS:
                return self._refuse_pair(step, error)
            return Attempt(
                step,
                AttemptStatus.FAILED,
                error=f"{step.image_name}: SyncImages of {step.source_image_id} from "
                f"{step.source_region} to {self.region} failed: {error.code}: {error.message}"
                f"{sync_refusal_hint(error.code)}",
                code=error.code,
                request_id=error.request_id,
            )
        except Exception as error:
            log.exception("SyncImages %s into %s failed unexpectedly", step.image_name, self.region)
            return Attempt(
                step, AttemptStatus.FAILED, error=f"{step.image_name}: SyncImages failed: {error}"
            )
        image_id = result.copies.get(self.region)
        if not image_id:
            return Attempt(
                step,
                AttemptStatus.FAILED,
                error=f"{step.image_name}: SyncImages answered without a copy in {self.region}",
            )
        adopted = self.region in result.adopted
        self._run.say(
            f"{self.region}: {'adopted' if adopted else 'copied'} {step.image_name} "
            f"({image_id}) from {step.source_region} ({step.source_image_id})",
            kind=ProgressKind.MADE,
        )
        self._run.created.remember(image_id, step.image_name)  # until it is listed whole
        self._tagger.tag(
            image_id,
            step.image_name,
            step.tags,
            policies=step.policies,
            instance=step.instance_id,
            slot=step.slot,
        )
        status = AttemptStatus.ADOPTED if adopted else AttemptStatus.MADE
        return Attempt(step, status, image_id=image_id)

    def _refuse_pair(self, step: Copy, error: CloudError) -> Attempt[Copy]:
        """The cloud refuses copies from ``step.source_region`` to this region: one error
        for the pair, naming the policies copying it; its other copies are not tried."""
        pair = f"copies from {step.source_region} to {self.region}"
        policies = ", ".join(self._pair_policies(step.source_region)) or ", ".join(step.policies)
        self._refused[step.source_region] = f"the cloud refuses {pair} ({error.code})"
        return Attempt(
            step,
            AttemptStatus.FAILED,
            error=f"the cloud refuses {pair}: {error.code}: {error.message}; policy "
            f"{policies} cannot keep copies in {self.region} from {step.source_region} "
            "(remove that copy rule, or copy from another region)",
            code=error.code,
            request_id=error.request_id,
        )

    def _pair_policies(self, source_region: str) -> list[str]:
        return sorted(
            p.name
            for p in self.options.setup.policies
            if p.copy_to(self.region) is not None and source_region in p.regions
        )

    # -- outcomes --------------------------------------------------------------------------

    def _build_copy_outcomes(self) -> None:
        for attempt in self._attempts.values():
            outcome = self._copy_outcome(attempt)
            self.result.copies.append(outcome)
            if outcome.error is not None and attempt.step.image_name not in self._quiet:
                self._alert_copy(outcome, warning=attempt.status is AttemptStatus.STOPPED)
        for skip in self._skips:
            outcome = Outcome(
                policies=skip.policies,
                region=self.region,
                source_region=skip.source_region,
                source_image_id="",
                instance_id=skip.instance_id,
                slot=skip.slot,
                image_name=skip.image_name,
                image_id=None,
                status="skipped",
                error=skip.error,
            )
            self.result.copies.append(outcome)
            self._alert_copy(outcome, warning=False)

    def _copy_outcome(self, attempt: Attempt[Copy]) -> Outcome:
        step = attempt.step

        def outcome(
            status: CopyStatus,
            *,
            error: str | None = None,
            state: str | None = None,
            code: str | None = None,
            request_id: str | None = None,
        ) -> Outcome:
            return Outcome(
                policies=step.policies,
                region=self.region,
                source_region=step.source_region,
                source_image_id=step.source_image_id,
                instance_id=step.instance_id,
                slot=step.slot,
                image_name=step.image_name,
                image_id=attempt.image_id,
                status=status,
                error=error,
                tencent_code=code,
                request_id=request_id,
                image_state=state,
            )

        if attempt.status is AttemptStatus.STOPPED:
            return outcome(
                "skipped",
                error=attempt.error or f"{step.image_name}: not copied: the run was stopped first",
            )
        if attempt.status is AttemptStatus.FAILED:
            return outcome(
                "failed", error=attempt.error, code=attempt.code, request_id=attempt.request_id
            )
        status: CopyStatus = "copied" if attempt.status is AttemptStatus.MADE else "adopted"
        image_id = attempt.image_id
        assert image_id is not None
        settled = self._waiter.settled
        if image_id in settled.timed_out:
            timeout = format_duration(self.options.setup.config.api.wait_timeout)
            return outcome(
                "failed",
                error=f"{step.image_name} ({image_id}) not NORMAL in "
                f"{self.region} within api.wait_timeout {timeout}",
                state=ImageState.CREATING.value,
            )
        if image_id not in settled.final:
            return outcome(status, state=ImageState.CREATING.value)
        image: Image | None = settled.final[image_id]
        if image is None and image_id in settled.lost:
            self._run.created.forget([image_id])  # reported here: not again by the next run
            grace = format_duration(self.options.setup.config.api.visibility_grace)
            return outcome(
                "failed",
                error=f"{step.image_name} ({image_id}) was copied to {self.region} but not "
                f"listed by DescribeImages within api.visibility_grace {grace}: it is lost",
            )
        if image is None:
            return outcome(
                "failed",
                error=f"{step.image_name} ({image_id}) disappeared from "
                f"{self.region} while it was being copied",
            )
        if image.state.usable:
            return outcome(status, state=image.state.value)
        return outcome(
            "failed",
            error=f"{step.image_name} ({image_id}) ended {image.state.value} in {self.region}",
            state=image.state.value,
        )

    def _alert_copy(self, outcome: Outcome, *, warning: bool) -> None:
        message = outcome.error or ""
        if warning:
            self._run.warn(
                list(outcome.policies),
                "SyncImages",
                message,
                instance=outcome.instance_id,
                slot=outcome.slot,
            )
            return
        extra = {"source_region": outcome.source_region}
        if outcome.source_image_id:
            extra["source_image_id"] = outcome.source_image_id
        if outcome.image_id:
            extra["image_id"] = outcome.image_id
        self._run.error(
            list(outcome.policies),
            "SyncImages",
            message,
            None,
            instance=outcome.instance_id,
            slot=outcome.slot,
            code=outcome.tencent_code,
            request_id=outcome.request_id,
            extra=extra,
        )

    # -- whom an alert concerns ------------------------------------------------------------

    def _copy_policy_names(self) -> list[str]:
        return sorted(
            p.name for p in self.options.setup.policies if p.copy_to(self.region) is not None
        )

    def _policies_of_image(self, target: DeleteTarget) -> Sequence[str]:
        return policies_of_image(self.options.setup, self._destination, target)
