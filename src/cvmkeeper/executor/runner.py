"""One run across regions: which slots are due, then every region at once, then one report.

``run_once`` is what the daemon calls on each schedule tick and what ``cvmkeeper run``
calls by hand. Each region runs in its own thread (``executor.RegionExecutor``): regions
share nothing but the client, whose rate limiter paces calls per (region, action). A
region that is already being run by another ``run_once`` of this process (two policies
due at the same minute) is not run twice: :class:`RegionLocks` reports it as an error,
so the caller's check-in fails and the slot is made on the next run.

Which slots: without ``policy_names``, DESIGN.md's catch-up rules (``core.due``): each
policy's latest slot at or before ``now`` if it is younger than its ``catch_up`` window
(the planner makes nothing for a slot whose image exists; such slots are reported as
``exists``). With ``policy_names``, those policies' slot (``slot``, or the latest at or
before ``now``) is made even if it is not due.

Copies (``Policy.copies``): once every region's thread has finished, the copy phase
(``executor.copies``) runs each destination region in turn, so the source images it copies
are the ``NORMAL`` ones the first phase left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from cvmkeeper.alerting import Alerter, Failure
from cvmkeeper.alerting.run_health import check_run_health
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.config import Setup
from cvmkeeper.core.due import DueSlot, due_slots
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import Plan
from cvmkeeper.core.schedule import latest_policy_slot
from cvmkeeper.executor.copies import CopyExecutor, copy_destinations
from cvmkeeper.executor.executor import DuePairs, RegionExecutor, RegionResult, RunOptions
from cvmkeeper.executor.polling import REAL_TIME, PollTime
from cvmkeeper.executor.report import DeleteOutcome, RunReport, SlotOutcome
from cvmkeeper.executor.stop_journal import StopJournal
from cvmkeeper.log_context import in_context, log_fields

__all__ = [
    "DueSlot",
    "RegionLocks",
    "RunReport",
    "SlotOutcome",
    "UnknownPolicyError",
    "due_slots",
    "run_once",
    "run_regions",
]


class UnknownPolicyError(ValueError):
    """``policy_names`` names a policy the config does not have (a usage error)."""


class RegionLocks:
    """One lock per region, so that a region is never run by two runs of one process at once.

    ``wait_seconds`` is how long a run waits for a busy region before reporting it busy.
    """

    def __init__(self, wait_seconds: float = 0.0) -> None:
        self._wait_seconds = wait_seconds
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, region: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(region, threading.Lock())

    @contextmanager
    def hold(self, region: str) -> Iterator[bool]:
        """Hold ``region``'s lock for the block; yields False (without holding) when busy."""
        lock = self._lock(region)
        acquired = lock.acquire(timeout=self._wait_seconds) if self._wait_seconds > 0 else \
            lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()

    def busy(self, region: str) -> bool:
        """True while some run holds ``region``."""
        return self._lock(region).locked()


def run_regions(setup: Setup, policy_names: Sequence[str] | None = None) -> list[str]:
    """The regions a run covers: every region of the config and of the policies (or only of
    the named policies), in order of first mention."""
    if policy_names:
        chosen = [p for p in setup.policies if p.name in policy_names]
        names = [region for policy in chosen for region in policy.regions]
    else:
        names = list(setup.config.regions)
        names += [region for policy in setup.policies for region in policy.regions]
    return list(dict.fromkeys(names))


def _explicit_due(
    setup: Setup, policy_names: Sequence[str], slot: datetime | None, now: datetime
) -> dict[str, datetime]:
    unknown = [name for name in policy_names if setup.policy(name) is None]
    if unknown:
        known = ", ".join(p.name for p in setup.policies) or "none"
        wrong = ", ".join(map(repr, unknown))
        raise UnknownPolicyError(f"no policy named {wrong} (known: {known})")
    if slot is not None:
        if slot.tzinfo is None:
            raise ValueError("slot must be an aware datetime")
        if slot > now:
            raise ValueError(f"slot {slot.isoformat()} is after now ({now.isoformat()})")
        return dict.fromkeys(policy_names, slot.astimezone(UTC))
    due: dict[str, datetime] = {}
    for name in policy_names:
        policy = setup.policy(name)
        assert policy is not None
        latest = latest_policy_slot(policy, now)
        if latest is not None:
            due[name] = latest
    return due


def run_once(
    setup: Setup,
    client: CloudClient,
    alerter: Alerter,
    *,
    now: datetime,
    policy_names: Sequence[str] | None = None,
    slot: datetime | None = None,
    regions: Sequence[str] | None = None,
    dry_run: bool = False,
    wait: bool = True,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
    region_locks: RegionLocks | None = None,
    poll_time: PollTime = REAL_TIME,
) -> RunReport:
    """Make the due slots of every region (or of ``regions``), rotate, and report.

    Raises only :class:`UnknownPolicyError` / ``ValueError`` for bad arguments; every cloud
    or planning failure is alerted and reported in the ``RunReport``. ``dry_run`` plans
    without writing or alerting; ``wait=False`` does not wait for new images to become
    ``NORMAL`` (their deletes happen on the next run); ``stop`` set: no new create or
    delete starts (instances stopped for an image are still started again).
    ``poll_time`` injects the waits' clock (``executor.polling.PollTime``; a simulation on
    virtual time), real time by default.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    started = datetime.now(UTC)
    explicit = _explicit_due(setup, policy_names, slot, now) if policy_names else None
    chosen = run_regions(setup, policy_names)
    if regions:
        chosen = [region for region in chosen if region in regions]
    locks = region_locks or RegionLocks()
    options = RunOptions(
        setup=setup,
        client=client,
        alerter=alerter,
        now=now,
        dry_run=dry_run,
        wait=wait,
        stop=stop,
        progress=_locked(progress),
        stop_journal=None if dry_run else StopJournal(setup.config.state_dir),
        poll_time=poll_time,
    )
    results: dict[str, RegionResult] = {}
    read: dict[str, Inventory] = {}  # each region's first inventory, for check_run_health

    def due_for(region: str) -> Callable[[Inventory], DuePairs]:
        def compute(inventory: Inventory) -> DuePairs:
            read[region] = inventory
            if explicit is not None:
                return tuple(
                    (name, when)
                    for name, when in explicit.items()
                    if (policy := setup.policy(name)) is not None and region in policy.regions
                )
            regional = [p for p in setup.policies if region in p.regions]
            # Every slot in its window goes to the planner (which reports a present one as
            # ``exists``); the names only make the progress line say what is missing.
            found = due_slots(
                regional,
                {region: {image.name for image in inventory.images}},
                now,
                instances_by_region={region: inventory.instances},
                name_format=setup.config.name_format,
                include_present=True,
            )
            for item in found:
                options.say(f"{region}: {item.policy}: {item.reason}")
            return tuple((item.policy, item.slot) for item in found)

        return compute

    def run_region(region: str) -> None:
        with log_fields(region=region), locks.hold(region) as acquired:
            if not acquired:
                results[region] = _busy(region, setup, alerter, dry_run, explicit)
                return
            results[region] = RegionExecutor(options, region, due_for(region)).run()

    threads = [
        threading.Thread(target=in_context(run_region), args=(region,),
                         name=f"cvmkeeper-run:{region}")
        for region in chosen
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = [results[region] for region in chosen if region in results]

    # Copy phase: after every source region finished, one destination at a time.
    copy_plans: dict[str, tuple[Plan, ...]] = {}
    copy_results: list[RegionResult] = []
    copy_reads: dict[str, tuple[Inventory, dict[str, Inventory]]] = {}
    copying = [p for p in setup.policies if not policy_names or p.name in policy_names]
    for destination in copy_destinations(copying):
        if regions and destination not in regions:
            continue
        if options.stopping:
            break
        with locks.hold(destination) as acquired:
            if not acquired:
                copy_results.append(_busy_copies(destination, setup, alerter, dry_run))
                continue
            executor = CopyExecutor(options, destination)
            copy_results.append(executor.run())
            copy_plans[destination] = tuple(executor.copy_plans)
            if executor.last_read is not None:
                copy_reads[destination] = executor.last_read

    every = ordered + copy_results
    outcomes: list[SlotOutcome] = [o for r in ordered for o in r.outcomes]
    deleted: list[DeleteOutcome] = [d for r in every for d in r.deleted]
    report = RunReport(
        started=started,
        finished=datetime.now(UTC),
        outcomes=tuple(outcomes),
        deleted=tuple(deleted),
        warnings=tuple(w for r in every for w in r.warnings),
        errors=tuple(e for r in every for e in r.errors),
        plans={r.region: tuple(r.plans) for r in ordered},
        dry_run=dry_run,
        failed_policies=frozenset(p for r in every for p in r.failed_policies),
        copies=tuple(c for r in copy_results for c in r.copies),
        copy_plans=copy_plans,
    )
    check_run_health(setup, report, read, alerter, now, policy_names=policy_names,
                     copy_reads=copy_reads)
    return report


def _busy(
    region: str,
    setup: Setup,
    alerter: Alerter,
    dry_run: bool,
    explicit: dict[str, datetime] | None,
) -> RegionResult:
    """The result of a region another run of this process is running right now."""
    result = RegionResult(region)
    message = f"{region}: another run is working on this region; not run twice"
    if dry_run:
        result.warnings.append(message)
        return result
    names = sorted(explicit) if explicit else [
        p.name for p in setup.policies if region in p.regions
    ]
    policies = [n for n in names if (p := setup.policy(n)) is not None and region in p.regions]
    result.errors.append(message)
    result.failed_policies.update(policies)
    for policy in policies or ["cvmkeeper"]:
        alerter.error(Failure(policy=policy, action="run", message=message, region=region))
    return result


def _busy_copies(region: str, setup: Setup, alerter: Alerter, dry_run: bool) -> RegionResult:
    """The copy phase of a destination another run of this process holds right now."""
    result = RegionResult(region)
    message = f"{region}: another run is working on this region; copies wait for the next run"
    if dry_run:
        result.warnings.append(message)
        return result
    policies = sorted(p.name for p in setup.policies if p.copy_to(region) is not None)
    result.errors.append(message)
    result.failed_policies.update(policies)
    for policy in policies:
        alerter.error(Failure(policy=policy, action="SyncImages", message=message, region=region))
    return result


def _locked(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """``progress`` made safe to call from the region threads (one line at a time)."""
    if progress is None:
        return lambda _message: None
    lock = threading.Lock()
    report = progress

    def locked(message: str) -> None:
        with lock:
            report(message)

    return locked
