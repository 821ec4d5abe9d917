"""What the scheduler runs: one APScheduler job per policy schedule, and the catch-up run.

The daemon's service loop (``scheduler.service``) owns the process (signals, sd_notify,
reload); this module owns the work:

- ``job_specs(setup)`` lists the jobs a setup needs (one per policy schedule) and
  ``sync_jobs`` makes a scheduler hold exactly those, keeping the jobs whose schedule did not
  change (so a reload never moves a pending fire time) and never touching a running run.
- ``SlotJobs.run_slot`` is the job function: it turns the fire time into the slot (the
  schedule's latest slot at or before now, so jitter never moves the slot), wraps the run
  in the policy's Sentry Crons check-ins, calls the runner, and records the result.
- ``SlotJobs.run_catch_up`` is the one runner call with ``policy_names=None`` at start and
  on reload; the runner applies each policy's catch-up window.
- A run of a policy that is still going when its next slot fires is reported (a warning
  log line and a warning alert), not started twice: APScheduler's ``max_instances=1``
  refuses the job (``report_overlap``) and a per-policy guard covers a policy whose
  several schedules fire while one of its runs is going.

The runner is injected (``run_once`` of ``cvmkeeper.executor.runner`` in production), so
the scheduling logic is tested with a small recording runner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cvmkeeper.alerting import Alerter, Failure, monitored_run
from cvmkeeper.alerting.monitors import schedule_monitor
from cvmkeeper.config import Setup
from cvmkeeper.core.policy import Policy, Schedule
from cvmkeeper.core.schedule import latest_slot
from cvmkeeper.executor.broken import BrokenFileAlerts
from cvmkeeper.executor.report import RunReport
from cvmkeeper.executor.run_health import RunObserver
from cvmkeeper.log_context import log_fields
from cvmkeeper.scheduler.state import PolicyRun, RunKind, RunResult, StateStore
from cvmkeeper.scheduler.trigger import to_trigger

__all__ = [
    "CATCH_UP",
    "JobSpec",
    "RunContext",
    "Runner",
    "SlotJobs",
    "fired_slot",
    "job_specs",
    "sync_jobs",
]

log = logging.getLogger(__name__)

#: The name under which catch-up runs appear in logs, STATUS= and alerts.
CATCH_UP = "catch-up"
#: Job options every policy job gets: never drop a late fire (misfire_grace_time=None), run
#: a backlog of missed fire times once (coalesce), never two at once (max_instances=1).
JOB_OPTIONS: dict[str, Any] = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}


#: ``run_once(setup, client, alerter, *, now, policy_names, slot, stop, region_locks,
#: observe, broken_alerts)``.
Runner = Callable[..., RunReport]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One scheduler job: a schedule of a policy. ``job_id`` is ``<policy>#<n>`` (n from 1)."""

    job_id: str
    policy: str
    index: int
    schedule: Schedule


def job_specs(setup: Setup) -> list[JobSpec]:
    """The jobs ``setup`` needs: one per schedule of every policy, in file order."""
    return [
        JobSpec(f"{policy.name}#{index + 1}", policy.name, index, schedule)
        for policy in setup.policies
        for index, schedule in enumerate(policy.schedules)
    ]


def fired_slot(schedule: Schedule, fired_at: datetime) -> datetime:
    """The slot a job firing at ``fired_at`` makes: the latest slot at or before it.

    The trigger fires at a slot plus at most the jitter, and jitter is always shorter than
    the shortest gap between two slots, so this is the nominal slot (UTC, on the minute),
    never the jittered wall time.
    """
    slot = latest_slot(schedule, fired_at)
    if slot is None:  # a schedule that never fires is refused at load time
        raise ValueError(f"{schedule.describe()} has no slot before {fired_at.isoformat()}")
    return slot


def sync_jobs(scheduler: Any, specs: Sequence[JobSpec], func: Callable[..., object]) -> None:
    """Make ``scheduler`` hold exactly one job per spec, each calling ``func(policy, schedule)``.

    A job whose schedule is unchanged is kept as it is (its next fire time does not move);
    a changed one is replaced under the same id, so APScheduler still counts a run of it
    that is going on (``max_instances``); jobs of removed schedules are removed. A running
    run is never interrupted: removing a job only stops its future fire times.
    """
    wanted = {spec.job_id: spec for spec in specs}
    for job in scheduler.get_jobs():
        if job.id not in wanted and job.id != DRILL_JOB_ID:
            scheduler.remove_job(job.id)
    for spec in specs:
        existing = scheduler.get_job(spec.job_id)
        if existing is not None and tuple(existing.args) == (spec.policy, spec.schedule):
            continue
        scheduler.add_job(
            func,
            trigger=to_trigger(spec.schedule),
            args=(spec.policy, spec.schedule),
            id=spec.job_id,
            name=f"{spec.policy} {spec.schedule.describe()}",
            replace_existing=True,
            **JOB_OPTIONS,
        )


#: The one job that runs the restore drills that are due (issue #16; ``restore.drill``).
DRILL_JOB_ID = "restore-drills"
#: How often it looks; each policy's ``drill.every`` decides when its drill is due.
DRILL_CHECK = timedelta(minutes=15)


def add_drill_job(scheduler: Any, func: Callable[[], object]) -> None:
    """Schedule ``func`` (``SlotJobs.run_drills``) every :data:`DRILL_CHECK`; a reload keeps
    it (``sync_jobs`` leaves it alone) and it reads the setup of the moment."""
    from apscheduler.triggers.interval import IntervalTrigger  # noqa: PLC0415 - like service

    scheduler.add_job(
        func,
        trigger=IntervalTrigger(seconds=DRILL_CHECK.total_seconds()),
        id=DRILL_JOB_ID,
        name="restore drills",
        replace_existing=True,
        **JOB_OPTIONS,
    )


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a run needs and a reload replaces: the setup, its cloud client and alerter."""

    setup: Setup
    client: Any
    alerter: Alerter


@dataclass(frozen=True, slots=True)
class LastResult:
    """The most recent finished run, for ``STATUS=``."""

    policy: str
    slot: datetime | None
    result: RunResult
    finished: datetime


class SlotJobs:
    """Runs the slots the scheduler fires, and catch-up runs, with the shared guards.

    One instance lives as long as the daemon; ``context`` is swapped on reload (a run that
    already started keeps the context it started with). ``stop`` is the runner's stop
    event: once set, no new run starts and runs in progress reach a safe point.
    """

    def __init__(
        self,
        context: RunContext,
        *,
        runner: Runner,
        region_locks: object,
        state: StateStore | None,
        clock: Callable[[], datetime],
        stop: threading.Event,
        on_change: Callable[[], None] = lambda: None,
        observe: RunObserver | None = None,
    ) -> None:
        """Build the job runner; ``on_change`` is called after every run (STATUS updates);
        ``observe`` (the metrics exporter's) is passed to every runner call."""
        self._context = context
        self._runner = runner
        self._region_locks = region_locks
        self._state = state
        self._clock = clock
        self.stop = stop
        self._on_change = on_change
        self.observe = observe
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running: dict[str, datetime] = {}  # policy -> slot of its scheduled run
        self._in_flight = 0
        self._catch_up_running = False
        self._catch_up_again = False
        self.last_result: LastResult | None = None
        #: told every drill report (the metrics exporter's ``observe_drills``), if set
        self.drill_observe: Callable[[Any], None] | None = None
        #: one for all runs of the daemon: a broken policy file's event at most once an
        #: hour while unchanged, however many policies run (issue #19, ``executor.broken``)
        self.broken_alerts = BrokenFileAlerts()

    # --- shared state ------------------------------------------------------------------

    @property
    def context(self) -> RunContext:
        """The context new runs start with."""
        with self._lock:
            return self._context

    @context.setter
    def context(self, context: RunContext) -> None:
        with self._lock:
            self._context = context

    @property
    def state(self) -> StateStore | None:
        """Where results are recorded (``None``: nowhere)."""
        return self._state

    @state.setter
    def state(self, state: StateStore | None) -> None:
        self._state = state

    def running(self) -> list[str]:
        """The policies with a scheduled run going on now, plus ``catch-up`` when one is."""
        with self._lock:
            names = sorted(self._running)
            return [*names, CATCH_UP] if self._catch_up_running else names

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no run is going on; True when none is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # --- restore drills -----------------------------------------------------------------

    def run_drills(self) -> None:
        """The drill job: sweep expired drill instances and run the drills that are due
        (``restore.drill.run_drills``). Never raises: a failure is logged and alerted.

        It runs with no drill configured too: a drill instance left by a daemon that died
        mid-drill is swept even after its policy's ``drill:`` key was removed."""
        context = self.context
        if self.stop.is_set():
            return
        from cvmkeeper.restore.drill import run_drills  # noqa: PLC0415 - only when drilling

        try:
            report = run_drills(
                context.setup,
                context.client,
                context.alerter,
                self._clock(),
                observe=self.drill_observe,
            )
        except Exception as error:  # the scheduler thread must survive
            log.exception("restore drills failed")
            context.alerter.error(
                Failure("drill", "drill", f"restore drills failed: {error}", exception=error)
            )
            return
        for outcome in report.outcomes:
            log.log(
                logging.INFO if outcome.ok else logging.ERROR,
                "drill %s %s: %s",
                outcome.policy,
                outcome.instance_id,
                "ok" if outcome.ok else outcome.error,
            )

    # --- scheduled slots ----------------------------------------------------------------

    def run_slot(self, policy_name: str, schedule: Schedule) -> None:
        """The job function: make the slot that just fired for ``policy_name``.

        Never raises: a failure is logged, alerted, checked in as ``error`` and recorded.
        """
        if self.stop.is_set():
            log.info("not starting %s: the daemon is stopping", policy_name)
            return
        started = self._clock()
        slot = fired_slot(schedule, started)
        context = self.context
        policy = context.setup.policy(policy_name)
        if policy is None:  # removed by a reload between the fire and now
            log.info("not starting %s: the policy is no longer configured", policy_name)
            return
        with self._lock:
            busy_slot = self._running.get(policy_name)
            if busy_slot is None:
                self._running[policy_name] = slot
                self._in_flight += 1
        if busy_slot is not None:
            if busy_slot != slot:
                self.report_overlap(policy_name, slot, busy_slot)
            else:  # another schedule of the policy fired the same slot
                log.debug("%s slot %s is already being made", policy_name, _iso(slot))
            return
        try:
            with log_fields(policy=policy_name, slot=slot):
                self._run_monitored(context, policy, schedule, slot, started)
        finally:
            with self._idle:
                del self._running[policy_name]
                self._in_flight -= 1
                self._idle.notify_all()
            self._on_change()

    def _run_monitored(
        self,
        context: RunContext,
        policy: Policy,
        schedule: Schedule,
        slot: datetime,
        started: datetime,
    ) -> None:
        """One scheduled run inside its Sentry Crons check-ins, result recorded."""
        index = policy.schedules.index(schedule) if schedule in policy.schedules else 0
        slug, monitor = schedule_monitor(policy, index, context.setup.config.sentry)
        log.info("running %s for slot %s", policy.name, _iso(slot))
        with monitored_run(context.alerter, slug, monitor) as checkin:
            report, errors = self._call_runner(
                context, policy.name, started, policy_names=(policy.name,), slot=slot
            )
            ok = report is not None and report.policy_ok(policy.name)
            if not ok:
                checkin.fail()
        result: RunResult = "ok" if ok else ("stopped" if self.stop.is_set() else "failed")
        self._record(
            policy.name,
            kind="scheduled",
            slot=slot,
            started=started,
            result=result,
            errors=errors,
            report=report,
        )
        level = logging.INFO if ok else logging.WARNING
        log.log(level, "%s slot %s: %s", policy.name, _iso(slot), result)

    def report_overlap(self, policy_name: str, slot: datetime, busy_slot: datetime | None) -> None:
        """Warn (log and alert) that ``slot`` fired while a run of the policy was going on."""
        going = f"the run of slot {_iso(busy_slot)}" if busy_slot else "its previous run"
        message = (
            f"{policy_name}: slot {_iso(slot)} came while {going} was still going; "
            "it is not started twice (the next slot, or catch-up on the next start or "
            "reload, makes a missing image)"
        )
        log.warning("%s", message)
        self.context.alerter.warning(
            Failure(
                policy=policy_name,
                action="schedule",
                message=message,
                level="warning",
                extra={"slot": _iso(slot)},
            )
        )

    def report_refused_job(self, job_id: str, run_times: Sequence[datetime]) -> None:
        """APScheduler refused a fire because the job is still running (max_instances)."""
        policy_name = job_id.rpartition("#")[0] or job_id
        when = max(run_times, default=self._clock()).astimezone(UTC)
        job_schedule = next(
            (s.schedule for s in job_specs(self.context.setup) if s.job_id == job_id), None
        )
        slot = fired_slot(job_schedule, when) if job_schedule else when.replace(second=0)
        with self._lock:
            busy_slot = self._running.get(policy_name)
        if busy_slot == slot:
            return
        self.report_overlap(policy_name, slot, busy_slot)

    # --- catch-up ------------------------------------------------------------------------

    def request_catch_up(self) -> None:
        """Start a catch-up run on its own thread; if one is going, run once more after it.

        The second run uses the context current when it starts, so policies added by a
        reload during a catch-up are caught up too.
        """
        with self._lock:
            if self._catch_up_running:
                self._catch_up_again = True
                return
            self._catch_up_running = True
            self._in_flight += 1
        threading.Thread(target=self._catch_up_loop, name="cvmkeeper-catch-up").start()

    def _catch_up_loop(self) -> None:
        try:
            while not self.stop.is_set():
                self.run_catch_up()
                with self._lock:
                    if not self._catch_up_again:
                        break
                    self._catch_up_again = False
        finally:
            with self._idle:
                self._catch_up_running = False
                self._catch_up_again = False
                self._in_flight -= 1
                self._idle.notify_all()
            self._on_change()

    def run_catch_up(self) -> None:
        """One runner call with ``policy_names=None``: each policy whose latest slot is
        missing and within its catch-up window is made once. Never raises."""
        context = self.context
        started = self._clock()
        log.info("catch-up: looking for missed slots of %d policies", len(context.setup.policies))
        report, errors = self._call_runner(context, CATCH_UP, started, policy_names=None, slot=None)
        if report is None:
            for policy in context.setup.policies:
                self._record(
                    policy.name,
                    kind="catch-up",
                    slot=None,
                    started=started,
                    result="failed",
                    errors=errors,
                    report=None,
                )
            return
        touched = {o.policy for o in report.outcomes} | set(report.failed_policies)
        for name in sorted(touched):
            outcomes = report.outcomes_of(name)
            ok = report.policy_ok(name)
            errors = [o.error for o in outcomes if o.error] or ([] if ok else list(report.errors))
            result: RunResult = "ok" if ok else ("stopped" if self.stop.is_set() else "failed")
            self._record(
                name,
                kind="catch-up",
                slot=max((o.slot for o in outcomes), default=None),
                started=started,
                result=result,
                errors=errors,
                report=None,
            )
        made = len(report.outcomes)
        plural = "" if made == 1 else "s"
        if report.ok:
            log.info("catch-up finished: ok (%d slot%s)", made, plural)
        else:
            # "with errors (300 slots)" read as 300 failures, at INFO: say how many failed
            failed = sum(1 for outcome in report.outcomes if not outcome.ok)
            log.warning(
                "catch-up finished: with errors (%d of %d slot%s without a NORMAL image, "
                "%d error%s)",
                failed,
                made,
                plural,
                len(report.errors),
                "" if len(report.errors) == 1 else "s",
            )

    # --- shared helpers ------------------------------------------------------------------

    def _call_runner(
        self,
        context: RunContext,
        label: str,
        now: datetime,
        *,
        policy_names: tuple[str, ...] | None,
        slot: datetime | None,
    ) -> tuple[RunReport | None, list[object]]:
        """Call the runner; on an exception, log and alert it and return ``(None, [error])``."""
        try:
            report = self._runner(
                context.setup,
                context.client,
                context.alerter,
                now=now,
                policy_names=policy_names,
                slot=slot,
                stop=self.stop,
                region_locks=self._region_locks,
                observe=self.observe,
                broken_alerts=self.broken_alerts,
            )
        except Exception as exc:
            log.exception("%s: the run failed: %s", label, exc)
            context.alerter.error(
                Failure(
                    policy=label,
                    action="run",
                    message=f"the run failed: {type(exc).__name__}: {exc}",
                    extra={"slot": _iso(slot)} if slot else {},
                    exception=exc,
                )
            )
            return None, [f"{type(exc).__name__}: {exc}"]
        return report, list(report.errors)

    def _record(
        self,
        policy: str,
        *,
        kind: RunKind,
        slot: datetime | None,
        started: datetime,
        result: RunResult,
        errors: Sequence[object],
        report: RunReport | None,
    ) -> None:
        finished = self._clock()
        with self._lock:
            self.last_result = LastResult(policy, slot, result, finished)
        if self._state is None:
            return
        run = PolicyRun(
            kind=kind,
            slot=slot,
            started=started,
            finished=finished,
            result=result,
            errors=tuple(str(e) for e in errors),
            warnings=tuple(str(w) for w in (report.warnings if report is not None else ())),
        )
        self._state.record(policy, run, finished)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
