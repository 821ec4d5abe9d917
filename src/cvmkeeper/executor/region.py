"""What every part of one region's run shares: the run's options, the region's result,
reading the region, and reporting (progress lines, error and warning alerts).

The parts of a region's run (``creates``, ``deletes``, ``waits``, ``planning``) and the two
orchestrations built from them (``executor.RegionExecutor`` for a region's own backups,
``copies.CopyExecutor`` for the copies into a destination) all take a :class:`RegionRun`,
so they report the same way and fill the same :class:`RegionResult`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cvmkeeper.alerting import Failure
from cvmkeeper.alerting.alerter import Alerter
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.config import Setup
from cvmkeeper.config.model import ApiSettings
from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.naming import TAG_POLICY, read_policy_tag, slot_tag_value
from cvmkeeper.core.plan import DeleteTarget, Plan
from cvmkeeper.core.planner import PlannerSettings
from cvmkeeper.core.targets import resolve_targets
from cvmkeeper.executor.created import CreatedEntry, CreatedImages, CreatedRecord
from cvmkeeper.executor.polling import REAL_TIME, PollTime
from cvmkeeper.executor.progress import ProgressKind, ProgressLine
from cvmkeeper.executor.report import DeleteOutcome, Outcome
from cvmkeeper.executor.stop_journal import StopJournal
from cvmkeeper.log_context import log_fields

if TYPE_CHECKING:
    from cvmkeeper.executor.broken import BrokenFileAlerts

log = logging.getLogger(__name__)

#: The alert's policy when no policy can be named (a region-wide failure with nothing due).
NO_POLICY = "cvmkeeper"

#: The attribute ``RunOptions.say`` sets on the log record of a progress line, so that a
#: command that shows the same line through its own display (``cvmkeeper run`` on a
#: terminal) can leave the record out instead of printing the line twice.
PROGRESS_RECORD = "_cvmkeeper_progress"  # "_": a marker, not a field of the line (logs.py)


def read_inventory(client: CloudClient, region: str, configured_quota: int | None) -> Inventory:
    """What ``region`` holds now: quota (the account's, capped by ``image_quota`` when the
    config sets one), every custom image in any state, every instance."""
    account = client.image_quota(region)
    quota = account if configured_quota is None else min(configured_quota, account)
    images = client.list_images(region)
    instances = client.list_instances(region)
    return Inventory(
        region=region,
        quota=quota,
        images=images,
        instances=instances,
        account_quota=account,
        quota_cap=configured_quota,
    )


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
    #: where error and warning lines are shown (``None``: with the others, in ``progress``)
    progress_alerts: Callable[[str], None] | None = None
    poll_time: PollTime = REAL_TIME
    #: where stops are journaled so that a crash cannot leave an instance down (rule 9)
    stop_journal: StopJournal | None = None
    #: the images created and not yet seen whole, for the runs after this one
    #: (``executor.created``; ``None``: only this run's, in memory)
    created_record: CreatedRecord | None = None
    #: the time the leases of cloud stop marks are measured against (rule 9 across hosts:
    #: ``executor.stop_markers``); the wall clock, shared by every host
    lease_clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: the daemon's rate of broken-file alerts (``executor.broken.BrokenFileAlerts``;
    #: ``None``: every run alerts every broken file, as ``cvmkeeper run`` does)
    broken_alerts: BrokenFileAlerts | None = None

    @property
    def planner_settings(self) -> PlannerSettings:
        """The planner settings from the daemon config."""
        config = self.setup.config
        return PlannerSettings(
            orphan_retention=config.orphans.retention,
            name_format=config.name_format,
            hold_unknown=self.setup.hold_reason,
        )

    @property
    def stopping(self) -> bool:
        """True once a stop was requested: no new create or delete starts."""
        return self.stop is not None and self.stop.is_set()

    def say(
        self,
        message: str,
        *,
        level: int = logging.INFO,
        region: str | None = None,
        kind: ProgressKind | None = None,
        state: str | None = None,
    ) -> None:
        """Log ``message`` and show it through ``progress`` (an error or warning line,
        ``level`` ``WARNING`` or above, through ``progress_alerts`` when set); a display
        that raises is logged and never fails the run (a broken display must not break a
        backup). The line is logged at ``level``, so that ``journalctl -p warning`` sees the
        failed backups among the progress lines (the caller alerts them too).

        What is shown is a :class:`~cvmkeeper.executor.progress.ProgressLine` carrying
        ``region``, ``kind`` (by default the one of ``level``) and ``state``, so that a
        display counts by fields, not by the line's words."""
        log.log(level, "%s", message, extra={PROGRESS_RECORD: True})
        line = ProgressLine(
            message, kind=kind or ProgressKind.for_level(level), region=region, state=state
        )
        alert = level >= logging.WARNING and self.progress_alerts is not None
        show = self.progress_alerts if alert and self.progress_alerts else self.progress
        try:
            show(line)
        except Exception:
            log.exception("progress display failed")


@dataclass
class RegionResult:
    """What one region's run produced (merged into the ``RunReport``)."""

    region: str
    outcomes: list[Outcome] = field(default_factory=list)
    deleted: list[DeleteOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    failed_policies: set[str] = field(default_factory=set)
    copies: list[Outcome] = field(default_factory=list)
    #: the due (policy, slot) pairs of the region (``executor.missed`` checks their targets)
    due: tuple[tuple[str, datetime], ...] = ()


class RegionRun:
    """One region's run as its parts see it: options, client, result, and reporting.

    ``error`` and ``warn`` record the message in the result, show it, and (unless a dry
    run) alert it once per policy (``NO_POLICY`` when none is named).
    """

    def __init__(self, options: RunOptions, region: str) -> None:
        self.options = options
        self.region = region
        self.result = RegionResult(region)
        self.client = options.client
        self.api: ApiSettings = options.setup.config.api
        #: the images created here and not yet seen whole (``executor.created``)
        self.created = CreatedImages(
            options.created_record,
            region,
            now=options.now,
            grace=self.api.visibility_grace,
            writable=not options.dry_run,
        )
        #: why the last ``read`` failed (``None`` until one does)
        self.read_error: CloudError | None = None

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.options.stopping

    def say(
        self,
        message: str,
        *,
        level: int = logging.INFO,
        kind: ProgressKind | None = None,
        state: str | None = None,
    ) -> None:
        """A progress line of this region; ``level`` is ``logging.ERROR`` / ``WARNING`` for
        the lines of :meth:`error` and :meth:`warn`; ``kind`` and ``state`` say what it
        reports (:mod:`cvmkeeper.executor.progress`)."""
        self.options.say(message, level=level, region=self.region, kind=kind, state=state)

    def read(
        self, action: str, fallback_policies: Sequence[str], *, alert: bool = True
    ) -> Inventory | None:
        """The region's inventory, or ``None`` after reporting why it could not be read
        (kept in ``read_error``). ``alert=False``: recorded and shown, not alerted, because
        the caller sends one alert for the cause and the slots it missed
        (``executor.missed.report_unread_region``).

        The images cvmkeeper created and has not yet seen whole are applied to it
        (``executor.created``): those not listed yet count against the quota, those listed
        without their tags are recognised; one past ``api.visibility_grace`` is reported."""
        try:
            inventory = read_inventory(
                self.client, self.region, self.options.setup.config.image_quota
            )
        except CloudError as error:
            self.read_error = error
            self.error(
                fallback_policies,
                error.action or action,
                f"cannot read the inventory: {error}",
                error,
                alert=alert,
            )
            return None
        return self._reconcile(inventory)

    def _reconcile(self, inventory: Inventory) -> Inventory:
        result = self.created.apply(inventory)
        grace = format_duration(self.api.visibility_grace)
        for entry in result.lost:
            self._report_created(
                inventory,
                entry,
                f"{entry.name} ({entry.image_id}) was created but not listed by "
                f"DescribeImages within api.visibility_grace {grace}: it is lost",
            )
        for entry in result.untagged:
            self._report_created(
                inventory,
                entry,
                f"{entry.name} ({entry.image_id}) is still listed without cvmkeeper's tags "
                f"{grace} after it was created: kept (never deleted) until they show; tag "
                "it (cvmkeeper:managed=true) or delete it by hand",
                warning=True,
            )
        for entry in result.expired:
            sent = f"{entry.created_at.astimezone(UTC):%Y-%m-%dT%H:%MZ}"
            self._report_created(
                inventory,
                entry,
                f"{entry.name}: a run stopped after sending its CreateImage at {sent} and "
                f"no image of that name was listed within api.visibility_grace {grace}: it "
                "is no longer counted against the quota (the create never reached the "
                "cloud, or its image is lost)",
                warning=True,
            )
        return result.inventory

    def _report_created(
        self, inventory: Inventory, entry: CreatedEntry, message: str, *, warning: bool = False
    ) -> None:
        """Alert about a created image the listing never showed whole (rule 7), to the
        policies of its instance."""
        parsed = self.options.setup.config.name_format.parse(entry.name)
        instance = parsed.instance_id if parsed else None
        resolution = resolve_targets(self.region, self.options.setup.policies, inventory.instances)
        policies = sorted(p.name for p in resolution.policies_by_instance.get(instance or "", ()))
        slot = parsed.slot if parsed else None
        extra = image_extra(entry.image_id)
        if warning:
            self.warn(
                policies, "DescribeImages", message, instance=instance, slot=slot, extra=extra
            )
        else:
            self.error(
                policies, "CreateImage", message, None, instance=instance, slot=slot, extra=extra
            )

    def error(
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
        extra: dict[str, str] | None = None,
        alert: bool = True,
    ) -> None:
        """Record, show and alert an error; its policies' check-ins end in ``error``.
        ``alert=False``: recorded and shown only (the caller alerts the cause once)."""
        if isinstance(error, CloudError):
            code = code or error.code
            request_id = request_id or error.request_id
        self.result.errors.append(f"{self.region}: {message}")
        self.result.failed_policies.update(policies)
        with log_fields(policy=policies, instance=instance, slot=slot):
            self.say(f"{self.region}: ERROR {message}", level=logging.ERROR)
        if self.options.dry_run or not alert:
            return  # a preview reports, it does not page anyone
        for policy in policies or [NO_POLICY]:
            self.options.alerter.error(
                Failure(
                    policy=policy,
                    action=action,
                    message=message,
                    instance=instance,
                    region=self.region,
                    tencent_code=code,
                    request_id=request_id,
                    extra=_extra(slot, extra),
                    exception=error,
                )
            )

    def warn(
        self,
        policies: Sequence[str],
        action: str,
        message: str,
        *,
        instance: str | None = None,
        slot: datetime | None = None,
        code: str | None = None,
        request_id: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Record, show and alert a warning."""
        self.result.warnings.append(f"{self.region}: {message}")
        with log_fields(policy=policies, instance=instance, slot=slot):
            self.say(f"{self.region}: WARNING {message}", level=logging.WARNING)
        if self.options.dry_run:
            return
        for policy in policies or [NO_POLICY]:
            self.options.alerter.warning(
                Failure(
                    policy=policy,
                    action=action,
                    message=message,
                    level="warning",
                    instance=instance,
                    region=self.region,
                    tencent_code=code,
                    request_id=request_id,
                    extra=_extra(slot, extra),
                )
            )


def policies_of_image(setup: Setup, inventory: Inventory | None, target: DeleteTarget) -> list[str]:
    """The policies an image's delete failure concerns: those targeting its instance in
    the region, else those its ``cvmkeeper:policy`` tag names, else ``orphans``."""
    if inventory is None:
        return ["orphans"]
    resolution = resolve_targets(inventory.region, setup.policies, inventory.instances)
    targeting = resolution.policies_by_instance.get(target.instance_id, ())
    if targeting:
        return sorted(p.name for p in targeting)
    tagged = next(
        (i.tags.get(TAG_POLICY, "") for i in inventory.images if i.image_id == target.image_id), ""
    )
    return list(read_policy_tag(tagged).names) or ["orphans"]


def image_extra(image_id: str | None) -> dict[str, str]:
    """The alert's extra context naming an image (empty without one)."""
    return {"image_id": image_id} if image_id else {}


def _extra(slot: datetime | None, extra: dict[str, str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    if slot is not None:
        result["slot"] = slot_tag_value(slot)
    result.update(extra or {})
    return result
