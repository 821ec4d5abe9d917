"""The cloud side of a restore: find the instance and its images, launch, reset, wait.

``--new`` launches with a fresh ``ClientToken`` per restore (a retried call answers the
same instance, a second restore makes a second instance) and waits, bounded, for
``RUNNING`` (``PENDING`` -> ``RUNNING`` | ``LAUNCH_FAILED``: tencentcloud-sdk-python
``cvm_client.py`` ``RunInstances``). ``--in-place`` stops the instance through the
executor's :class:`~cvmkeeper.executor.consistency.InstanceStopper` (journaled, docs/design.md
rule 9; marked in the cloud too, so that a daemon on any host starts it again
if this command dies), calls ResetInstance, waits for ``LatestOperationState`` (cvm_client.py
``ResetInstance``), and starts again in a ``finally`` what it stopped, whatever failed.
Neither path deletes or changes an image.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.cloud.launch_models import DataDiskFromSnapshot, InstanceDetails, LaunchRequest
from cvmkeeper.core.inventory import Image
from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat
from cvmkeeper.core.restore import (
    InPlacePlan,
    LaunchPlan,
    Placement,
    RestoreRefused,
    managed_images_of,
)
from cvmkeeper.executor.consistency import InstanceStopper
from cvmkeeper.executor.polling import Deadline, poll_delays
from cvmkeeper.executor.stop_journal import StopJournal
from cvmkeeper.executor.stop_markers import CloudStopMarkers, default_lease

log = logging.getLogger(__name__)

Sleep = Callable[[float], object]


@dataclass(frozen=True)
class Waiting:
    """How long to wait for the cloud, how often to look, and the clock to do it with
    (tests and simulations inject ``sleep``/``monotonic``)."""

    seconds: float = 900.0
    poll_seconds: float = 5.0
    sleep: Sleep = time.sleep
    monotonic: Callable[[], float] = time.monotonic


class RestoreFailed(RuntimeError):
    """The cloud did not bring the instance back (launch failed, timed out, reset failed)."""


@dataclass(frozen=True)
class Located:
    """Where an instance's backups are: its region, the instance (``None`` if it no longer
    exists) and every custom image of that region."""

    region: str
    instance_id: str
    instance: InstanceDetails | None
    images: tuple[Image, ...]

    @property
    def placement(self) -> Placement | None:
        """The source instance's placement, for a new instance placed like it."""
        if self.instance is None:
            return None
        i = self.instance
        return Placement(
            i.zone,
            i.instance_type,
            i.vpc_id,
            i.subnet_id,
            i.security_group_ids,
            source_data_disk_type(i),
        )


def source_data_disk_type(instance: InstanceDetails | None) -> str:
    """The type a new instance's data disks take from their source: the one type its cloud
    data disks share, else "" (the default type). Local disks are in no image, and the
    ``SnapshotSet`` does not say which snapshot is which disk, so a mixed source gives none.
    ``restore --new`` and the drills both launch by this rule."""
    if instance is None:
        return ""
    cloud_types = {t for t in instance.data_disk_types if t and not t.startswith("LOCAL_")}
    return cloud_types.pop() if len(cloud_types) == 1 else ""


def locate(
    client: CloudClient, regions: Sequence[str], instance_id: str, fmt: NameFormat = DEFAULT_FORMAT
) -> Located:
    """Find ``instance_id`` in ``regions`` (in order); an instance that no longer exists is
    found by its images. Raises :class:`RestoreRefused` when it is nowhere."""
    fallback: Located | None = None
    for region in regions:
        instance = client.describe_instance(region, instance_id)
        images = client.list_images(region)
        if instance is not None:
            return Located(region, instance_id, instance, images)
        if fallback is None and managed_images_of(images, instance_id, fmt):
            fallback = Located(region, instance_id, None, images)
    if fallback is not None:
        return fallback
    raise RestoreRefused(
        f"instance {instance_id} is not in {', '.join(regions)} and no image "
        "of it is there either (wrong region? use --region)"
    )


@dataclass
class LaunchResult:
    """A new instance (or a dry run's verdict)."""

    instance_id: str = ""
    state: str = ""
    private_ips: tuple[str, ...] = ()
    seconds_to_running: float | None = None
    dry_run_passed: bool = False
    client_token: str = ""


def launch_request(
    plan: LaunchPlan, *, name: str = "", dry_run: bool = False, token: str | None = None
) -> LaunchRequest:
    """The RunInstances request of ``plan``, with a fresh ``ClientToken`` unless given."""
    p = plan.placement
    return LaunchRequest(
        image_id=plan.image_id,
        zone=p.zone,
        instance_type=p.instance_type,
        client_token=token or f"cvmkeeper-{uuid.uuid4().hex}",
        vpc_id=p.vpc_id,
        subnet_id=p.subnet_id,
        security_group_ids=p.security_group_ids,
        data_disks=tuple(
            DataDiskFromSnapshot(s, size, plan.data_disk_type) for s, size in plan.data_disks
        ),
        name=name,
        tags=dict(plan.tags),
        keep_image_login=True,
        dry_run=dry_run,
        system_disk_gib=plan.system_disk_gib,
    )


def launch(
    client: CloudClient,
    plan: LaunchPlan,
    waiting: Waiting,
    *,
    name: str = "",
    dry_run: bool = False,
    token: str | None = None,
) -> LaunchResult:
    """RunInstances for ``plan`` and, unless ``waiting.seconds`` is 0, wait for ``RUNNING``.

    A dry run sends ``DryRun`` and launches nothing. Raises :class:`RestoreFailed` for
    ``LAUNCH_FAILED`` or a timeout (the instance id is in the message: it exists and bills).
    """
    request = launch_request(plan, name=name, dry_run=dry_run, token=token)
    started = waiting.monotonic()
    ids = client.run_instances(plan.region, request)
    if dry_run:
        return LaunchResult(dry_run_passed=True, client_token=request.client_token)
    [instance_id] = ids[:1] or [""]
    result = LaunchResult(
        instance_id=instance_id, state="PENDING", client_token=request.client_token
    )
    if waiting.seconds <= 0:
        return result
    result.state = wait_for_state(client, plan.region, instance_id, waiting)
    if result.state == "LAUNCH_FAILED":
        raise RestoreFailed(f"{instance_id} failed to launch (LAUNCH_FAILED) from {plan.image_id}")
    if result.state != "RUNNING":
        raise RestoreFailed(
            f"{instance_id} is still {result.state or 'unknown'} after "
            f"{waiting.seconds:g}s (it exists and is billed; check the console)"
        )
    result.seconds_to_running = waiting.monotonic() - started
    details = client.describe_instance(plan.region, instance_id)
    if details is not None:
        result.private_ips = details.private_ips
    return result


#: States a launch ends in (cvm_client.py RunInstances: PENDING -> RUNNING | LAUNCH_FAILED).
LAUNCH_ENDS = ("RUNNING", "LAUNCH_FAILED")


def wait_for_state(
    client: CloudClient,
    region: str,
    instance_id: str,
    waiting: Waiting,
    ends: Sequence[str] = LAUNCH_ENDS,
) -> str:
    """Poll ``DescribeInstancesStatus`` until the instance is in one of ``ends`` or the wait
    is over; return the last state seen ("" when it was not found)."""
    deadline = Deadline(waiting.seconds, clock=waiting.monotonic)
    delays = poll_delays(waiting.poll_seconds)
    state = ""
    while True:
        try:
            state = client.instance_states(region, [instance_id]).get(instance_id, "")
        except CloudError as error:
            log.warning("cannot read the state of %s: %s", instance_id, error)
        if state in ends or deadline.passed:
            return state
        waiting.sleep(min(next(delays), max(deadline.remaining(), 0.01)))


@dataclass
class InPlaceResult:
    """What an in-place restore did."""

    reset: bool = False
    restarted: bool = False
    final_state: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def restore_in_place(
    client: CloudClient,
    region: str,
    plan: InPlacePlan,
    waiting: Waiting,
    *,
    journal: StopJournal | None,
    progress: Callable[[str], None],
    interrupted: Callable[[], bool] = lambda: False,
) -> InPlaceResult:
    """Stop (if running), ResetInstance, wait, and start again what was stopped: the start is
    in a ``finally`` (rule 9), so a failed or interrupted reset never leaves it down.
    Raises :class:`RestoreFailed` when the reset fails (after the restart).

    ``interrupted`` (a SIGTERM noted by the command) stops new work: once it is true no
    reset is sent; a reset already sent is still waited for (bounded by the wait), since the
    instance cannot be started while the reset runs, and then it is started again."""
    result = InPlaceResult()
    start_failures: list[str] = []
    stopper = InstanceStopper(
        client,
        region,
        deadline_seconds=waiting.seconds,
        poll_seconds=waiting.poll_seconds,
        sleep=waiting.sleep,
        progress=progress,
        journal=journal,
        on_start_failed=lambda i, e: start_failures.append(f"{i} could not be started again: {e}"),
        # rule 9 across hosts: the stop is marked in the cloud, so that a daemon on any host
        # starts the instance again if this command dies (the stop, the reset and the start
        # are each bounded by the wait)
        markers=CloudStopMarkers(
            client, region, lease=default_lease(timedelta(seconds=waiting.seconds))
        ),
    )
    failure: str | None = None
    try:
        if plan.stop_first:
            problems = stopper.prepare([plan.instance_id])
            if problems:
                raise RestoreFailed("; ".join(p.message for p in problems.values()))
        if interrupted():
            raise RestoreFailed(f"interrupted before the reset of {plan.instance_id}")
        progress(f"{region}: resetting the system disk of {plan.instance_id} to {plan.image_id}")
        prior = _latest_request_id(client, region, plan.instance_id)
        client.reset_instance(region, plan.instance_id, plan.image_id, prior_request_id=prior)
        outcome = _wait_reset(client, region, plan, waiting, prior)
        if outcome != "SUCCESS":
            failure = f"ResetInstance of {plan.instance_id} ended {outcome or 'unknown'}"
        else:
            result.reset = True
    except CloudError as error:
        failure = f"ResetInstance of {plan.instance_id} failed: {error}"
    finally:
        stopper.release_all()  # rule 9: whatever happened, start what we stopped
        result.restarted = plan.instance_id in stopper.stopped_by_us and not start_failures
        result.problems.extend(start_failures)
    if result.reset and not plan.stop_first:
        _keep_stopped(
            client, region, plan.instance_id, waiting=waiting, result=result, progress=progress
        )
    try:
        result.final_state = client.instance_states(region, [plan.instance_id]).get(
            plan.instance_id, ""
        )
    except CloudError as error:
        result.problems.append(f"cannot read the state of {plan.instance_id}: {error}")
    if failure:
        raise RestoreFailed(failure + ("; it was started again" if result.restarted else ""))
    return result


def _keep_stopped(
    client: CloudClient,
    region: str,
    instance_id: str,
    *,
    waiting: Waiting,
    result: InPlaceResult,
    progress: Callable[[str], None],
) -> None:
    """A STOPPED instance stays stopped, as the plan says. Whether ResetInstance boots a
    stopped instance is undocumented (the emulator's ``reset_leaves: running``); if it did,
    the restored system would run, and write to data disks that were not rolled back, before
    the user rolls them back with the instance stopped (:data:`DATA_DISK_HELP`). So it is
    stopped again once it is RUNNING (StopInstances refuses a starting instance)."""
    try:
        state = client.instance_states(region, [instance_id]).get(instance_id, "")
        if state not in ("STARTING", "RUNNING"):
            return
        progress(f"{region}: the reset started {instance_id}; stopping it again, as it was")
        wait_for_state(client, region, instance_id, waiting, ends=("RUNNING",))
        client.stop_instances(region, [instance_id])
        state = wait_for_state(client, region, instance_id, waiting, ends=("STOPPED",))
    except CloudError as error:
        state, problem = "", str(error)
    else:
        problem = "" if state == "STOPPED" else f"it is {state or 'unknown'}"
    if problem:
        result.problems.append(
            f"{instance_id} was STOPPED before the restore and the reset started it; it "
            f"could not be stopped again ({problem}): stop it before using its data disks"
        )
    else:
        result.warnings.append(
            f"the reset started {instance_id}; it was stopped again, as it was before the restore"
        )


def _latest_request_id(client: CloudClient, region: str, instance_id: str) -> str:
    """The instance's ``LatestOperationRequestId`` before the reset (raises
    :class:`CloudError` when unreadable: without it an earlier reset's ``SUCCESS`` could be
    taken for this one's)."""
    details = client.describe_instance(region, instance_id)
    return details.latest_operation_request_id if details is not None else ""


def _wait_reset(
    client: CloudClient, region: str, plan: InPlacePlan, waiting: Waiting, prior: str
) -> str:
    """Poll DescribeInstances until *this* reset's ``LatestOperationState`` is final: an
    operation whose ``LatestOperationRequestId`` is ``prior`` (read before the call) is an
    earlier one, and its ``SUCCESS`` says nothing about this reset."""
    deadline = Deadline(waiting.seconds, clock=waiting.monotonic)
    delays = poll_delays(waiting.poll_seconds)
    while True:
        details = client.describe_instance(region, plan.instance_id)
        if (
            details is not None
            and details.latest_operation == "ResetInstance"
            and details.latest_operation_state in ("SUCCESS", "FAILED")
            and (details.latest_operation_request_id != prior or not prior)
        ):
            return details.latest_operation_state
        if deadline.passed:
            return "still OPERATING after the timeout"
        waiting.sleep(min(next(delays), max(deadline.remaining(), 0.01)))
