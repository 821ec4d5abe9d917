"""One run across regions: which slots are due, then every region at once, then one report.

``run_once`` is what the daemon calls on each schedule tick and what ``cvmkeeper run``
calls by hand. Each region runs in its own thread (``executor.RegionExecutor``): regions
share nothing but the client, whose rate limiter paces calls per (region, action). A
region that is already being run by another ``run_once`` of this process (two policies
due at the same minute) is not run twice: :class:`RegionLocks` reports it as an error,
so the caller's check-in fails and the slot is made on the next run.

Which slots: without ``policy_names``, the catch-up rules of docs/design.md (``core.due``): each
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cvmkeeper.alerting import Alerter, Failure
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.config import Setup
from cvmkeeper.core.due import DueSlot, due_slots
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import Plan
from cvmkeeper.core.schedule import latest_policy_slot
from cvmkeeper.executor.broken import BrokenFileAlerts, report_broken_files
from cvmkeeper.executor.copies import CopyExecutor, copy_destinations
from cvmkeeper.executor.created import CreatedRecord
from cvmkeeper.executor.executor import DueFor, RegionExecutor
from cvmkeeper.executor.missed import report_missing_instances, report_unread_region
from cvmkeeper.executor.polling import REAL_TIME, PollTime
from cvmkeeper.executor.region import RegionResult, RegionRun, RunOptions
from cvmkeeper.executor.report import Outcome, RunReport
from cvmkeeper.executor.run_health import RunObserver, check_run_health
from cvmkeeper.executor.stop_journal import StopJournal
from cvmkeeper.log_context import in_context, log_fields

__all__ = [
    "DueSlot",
    "Outcome",
    "RegionLocks",
    "RunReport",
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
        acquired = (
            lock.acquire(timeout=self._wait_seconds)
            if self._wait_seconds > 0
            else lock.acquire(blocking=False)
        )
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
    progress_alerts: Callable[[str], None] | None = None,
    region_locks: RegionLocks | None = None,
    poll_time: PollTime = REAL_TIME,
    observe: RunObserver | None = None,
    lease_clock: Callable[[], datetime] | None = None,
    broken_alerts: BrokenFileAlerts | None = None,
) -> RunReport:
    """Make the due slots of every region (or of ``regions``), rotate, and report.

    Raises only :class:`UnknownPolicyError` / ``ValueError`` for bad arguments; every cloud
    or planning failure is alerted and reported in the ``RunReport``. ``dry_run`` plans
    without writing or alerting; ``wait=False`` does not wait for new images to become
    ``NORMAL`` (their deletes happen on the next run); ``stop`` set: no new create or
    delete starts (instances stopped for an image are still started again). ``progress``
    is shown every progress line; ``progress_alerts``, when given, the error and warning
    lines instead (a display that keeps those while it rewrites the others).
    ``poll_time`` injects the waits' clock (``executor.polling.PollTime``; a simulation on
    virtual time), real time by default. ``observe`` (the daemon's metrics) is called with
    the run's health after it (``executor.run_health``). ``lease_clock`` is what the leases
    of cloud stop marks are measured against (``executor.stop_markers``; the wall clock by
    default: every host must agree on it). ``broken_alerts`` (the daemon's)
    rates the broken-file alerts across its runs (``executor.broken``); without it every
    broken policy file is alerted on every run.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    started = datetime.now(UTC)
    explicit = _explicit_due(setup, policy_names, slot, now) if policy_names else None
    chosen = [r for r in run_regions(setup, policy_names) if not regions or r in regions]
    locks = region_locks or RegionLocks()
    options = _run_options(
        setup,
        client,
        alerter,
        now,
        dry_run=dry_run,
        wait=wait,
        stop=stop,
        progress=progress,
        progress_alerts=progress_alerts,
        poll_time=poll_time,
        lease_clock=lease_clock,
        broken_alerts=broken_alerts,
    )
    broken = [report_broken_files(options)]  # issue #19: reported on every run
    regions_phase = _run_regions(options, chosen, locks, explicit)
    missing = _report_missing(options, regions_phase)
    copies = _run_copies(options, policy_names, regions, locks)
    return _finish(
        options,
        started,
        broken=broken,
        regions=regions_phase,
        missing=missing,
        copies=copies,
        policy_names=policy_names,
        observe=observe,
    )


def _report_missing(options: RunOptions, regions: _Phase) -> list[RegionResult]:
    """Rule 7: an instance named by id that no region has is a missed slot (reported after
    the regions' phase; not previewed by a dry run)."""
    if options.dry_run:
        return []
    return [report_missing_instances(options, regions.results, regions.read)]


def _run_options(
    setup: Setup,
    client: CloudClient,
    alerter: Alerter,
    now: datetime,
    *,
    dry_run: bool,
    wait: bool,
    stop: threading.Event | None,
    progress: Callable[[str], None] | None,
    progress_alerts: Callable[[str], None] | None,
    poll_time: PollTime,
    lease_clock: Callable[[], datetime] | None,
    broken_alerts: BrokenFileAlerts | None,
) -> RunOptions:
    """The options every phase of one run shares (``run_once``'s arguments): progress lines
    serialised across regions, and the state-dir records (stop journal, created images)
    only when the run writes."""
    shown, alerts_shown = _locked(progress, progress_alerts)
    options = RunOptions(
        setup=setup,
        client=client,
        alerter=alerter,
        now=now,
        dry_run=dry_run,
        wait=wait,
        stop=stop,
        progress=shown or (lambda _message: None),
        progress_alerts=alerts_shown,
        stop_journal=None if dry_run else StopJournal(setup.config.state_dir),
        created_record=None if dry_run else CreatedRecord(setup.config.state_dir),
        poll_time=poll_time,
        broken_alerts=broken_alerts,
    )
    if lease_clock is not None:  # the leases of cloud stop marks (wall clock by default)
        options.lease_clock = lease_clock
    return options


def _finish(
    options: RunOptions,
    started: datetime,
    *,
    broken: list[RegionResult],
    regions: _Phase,
    missing: list[RegionResult],
    copies: _Phase,
    policy_names: Sequence[str] | None,
    observe: RunObserver | None,
) -> RunReport:
    """The run's report from what its phases left (the broken files, the regions, the
    instances no region has, the copies), after its health is checked and alerted.

    Outcomes come from the regions and the missing instances only; every phase adds its
    deletes, warnings, errors and failed policies.
    """
    every = broken + regions.results + missing + copies.results
    report = RunReport(
        started=started,
        finished=datetime.now(UTC),
        outcomes=tuple(o for r in regions.results + missing for o in r.outcomes),
        deleted=tuple(d for r in every for d in r.deleted),
        warnings=tuple(w for r in every for w in r.warnings),
        errors=tuple(e for r in every for e in r.errors),
        plans={r.region: tuple(r.plans) for r in regions.results},
        dry_run=options.dry_run,
        failed_policies=frozenset(p for r in every for p in r.failed_policies),
        copies=tuple(c for r in copies.results for c in r.copies),
        copy_plans=copies.plans,
    )
    check_run_health(
        options.setup,
        report,
        regions.read,
        options.alerter,
        options.now,
        policy_names=policy_names,
        copy_reads=copies.read,
        observe=observe,
    )
    return report


@dataclass
class _Phase:
    """What one phase of a run left: each region's result, in order, its plans (copy
    phase), and the inventories it read (for ``check_run_health``)."""

    results: list[RegionResult] = field(default_factory=list)
    read: dict[str, Any] = field(default_factory=dict)
    plans: dict[str, tuple[Plan, ...]] = field(default_factory=dict)


def _run_regions(
    options: RunOptions,
    chosen: Sequence[str],
    locks: RegionLocks,
    explicit: dict[str, datetime] | None,
) -> _Phase:
    """Every region at once, each in its own thread; a region held by another run of this
    process is reported busy."""
    setup = options.setup
    results: dict[str, RegionResult] = {}
    read: dict[str, Inventory] = {}  # each region's first inventory, for check_run_health

    def run_region(region: str) -> None:
        with log_fields(region=region), locks.hold(region) as acquired:
            if not acquired:
                results[region] = _busy(region, setup, options.alerter, options.dry_run, explicit)
                if explicit and not options.dry_run:  # rule 7: name the slots it misses
                    _name_busy_slots(
                        options, results[region], _due_for(options, region, explicit, read)
                    )
                return
            due_for = _due_for(options, region, explicit, read)
            results[region] = RegionExecutor(options, region, due_for).run()

    threads = [
        threading.Thread(
            target=in_context(run_region), args=(region,), name=f"cvmkeeper-run:{region}"
        )
        for region in chosen
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _Phase(
        results=[results[region] for region in chosen if region in results], read=dict(read)
    )


def _due_for(
    options: RunOptions,
    region: str,
    explicit: dict[str, datetime] | None,
    read: dict[str, Inventory],
) -> DueFor:
    """The due (policy, slot) pairs of ``region``, from its inventory once it is read: the
    explicit ones, or what the catch-up rules select."""
    setup = options.setup

    def compute(inventory: Inventory | None) -> tuple[tuple[str, datetime], ...]:
        if inventory is not None:
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
            None if inventory is None else {region: {image.name for image in inventory.images}},
            options.now,
            instances_by_region=None if inventory is None else {region: inventory.instances},
            name_format=setup.config.name_format,
            include_present=True,
        )
        for item in found:
            # the line is about one policy's slot: say so in the JSON fields too
            with log_fields(policy=item.policy, slot=item.slot):
                options.say(f"{region}: {item.policy}: {item.reason}", region=region)
        return tuple((item.policy, item.slot) for item in found)

    return compute


def _run_copies(
    options: RunOptions,
    policy_names: Sequence[str] | None,
    regions: Sequence[str] | None,
    locks: RegionLocks,
) -> _Phase:
    """The copy phase: after every source region finished, one destination at a time."""
    setup = options.setup
    phase = _Phase()
    copying = [p for p in setup.policies if not policy_names or p.name in policy_names]
    for destination in copy_destinations(copying):
        if regions and destination not in regions:
            continue
        if options.stopping:
            break
        with locks.hold(destination) as acquired:
            if not acquired:
                phase.results.append(
                    _busy_copies(destination, setup, options.alerter, options.dry_run)
                )
                continue
            executor = CopyExecutor(options, destination)
            phase.results.append(executor.run())
            phase.plans[destination] = tuple(executor.copy_plans)
            if executor.last_read is not None:
                phase.read[destination] = executor.last_read
    return phase


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
    names = (
        sorted(explicit) if explicit else [p.name for p in setup.policies if region in p.regions]
    )
    policies = [n for n in names if (p := setup.policy(n)) is not None and region in p.regions]
    result.errors.append(message)
    result.failed_policies.update(policies)
    if explicit:
        return result  # one alert names the slots it misses (_name_busy_slots)
    for policy in policies or ["cvmkeeper"]:
        alerter.error(Failure(policy=policy, action="run", message=message, region=region))
    return result


def _name_busy_slots(options: RunOptions, result: RegionResult, due_for: DueFor) -> None:
    """The due slots of the named policies in a busy region, as failed outcomes with an
    error each (``executor.missed``), added to ``result``."""
    run = RegionRun(options, result.region)
    run.result = result
    result.due = due_for(None)
    report_unread_region(
        run, result.due, "another run is working on this region", cause_key="busy", action="run"
    )


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


def _locked(
    *displays: Callable[[str], None] | None,
) -> tuple[Callable[[str], None] | None, ...]:
    """``displays`` made safe to call from the region threads: one line at a time across
    all of them (``None`` stays ``None``)."""
    lock = threading.Lock()

    def locked(show: Callable[[str], None]) -> Callable[[str], None]:
        def call(message: str) -> None:
            with lock:
                show(message)

        return call

    return tuple(None if show is None else locked(show) for show in displays)
