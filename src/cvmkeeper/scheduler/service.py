"""The long-running daemon: the process side of ``cvmkeeper daemon`` under systemd.

``Daemon.run()`` loads the config and policies, starts an APScheduler 3 background
scheduler with one job per policy schedule (``scheduler.jobs``), starts a catch-up run, tells
systemd it is ready, and then waits in its main loop for signals:

- ``SIGHUP`` (``systemctl reload``): ``RELOADING=1`` (with ``MONOTONIC_USEC``), re-read
  config and policies, then ``READY=1``. A broken new config is logged (every problem with
  its file and line), alerted, and the old one keeps running; a valid one replaces the jobs
  without interrupting a run that is going on, and a catch-up run follows. A bad *policy*
  file beside good ones is not a broken config (issue #19): the good policies load, the
  old version of that file's policy keeps running (``config.with_stand_ins``), and every
  run reports the file as an error; ``STATUS=`` names it. The same holds at start, where
  a file with no old version holds its policy's images (``core.holds``).
- ``SIGTERM`` / ``SIGINT``: ``STOPPING=1``, no new run starts, the runner's ``stop`` event
  lets a run in progress reach a safe point, alerts are flushed, ``run()`` returns 0. Runs
  still going after ``stop_timeout`` seconds are left behind (the caller exits anyway; the
  next start reads the cloud and finishes their slots).

Signal handlers only queue the signal number; Python's wakeup file descriptor wakes the
main loop, which does the work. ``READY=1`` is sent once the first schedule is loaded and
the catch-up run has *started*: a catch-up can take as long as an image takes, and systemd
would time the start out (``TimeoutStartSec=``) if readiness waited for it.

``STATUS=`` says when the next run is and how the last one ended. ``WATCHDOG=1`` is sent
every half ``WatchdogSec=`` from a thread that pings only while the scheduler thread is
alive and the main loop has been through its loop recently, so a wedged daemon is
restarted by systemd.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from cvmkeeper.alerting import Alerter, Failure, build_alerter
from cvmkeeper.alerting.channels import with_notifications
from cvmkeeper.cloud.credentials import CredentialsError
from cvmkeeper.config import (
    Config,
    ConfigError,
    SentrySettings,
    Setup,
    load_setup,
    with_stand_ins,
)
from cvmkeeper.executor.runner import RegionLocks, run_once
from cvmkeeper.scheduler.jobs import (
    DRILL_JOB_ID,
    RunContext,
    Runner,
    SlotJobs,
    add_drill_job,
    job_specs,
    sync_jobs,
)
from cvmkeeper.scheduler.sdnotify import Notifier
from cvmkeeper.scheduler.state import StateStore

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "STOP_TIMEOUT", "Daemon"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
#: Seconds a stopping daemon waits for runs to reach a safe point. The unit's
#: TimeoutStopSec=90s leaves room for this, flushing alerts and exiting.
STOP_TIMEOUT = 60.0
#: Seconds given to the alerter to deliver what is pending at shutdown.
ALERT_FLUSH_TIMEOUT = 5.0
#: The main loop wakes at least this often (heartbeat for the watchdog, STATUS= refresh).
LOOP_TICK = 1.0
#: The least time a run waits for a region that another run of this daemon holds.
REGION_WAIT_MIN = 600.0
#: Threads for scheduled runs; runs of one region wait for each other on the region lock.
WORKERS = 16

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HANDLED_SIGNALS = (signal.SIGHUP, *_STOP_SIGNALS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _log_broken(setup: Setup) -> None:
    """Log every problem of the policy files the daemon runs without (issue #19); every
    run then reports and alerts them again (``executor.broken``)."""
    for broken in setup.broken:
        for problem in broken.problems:
            log.error("%s", problem)
        fate = "its old version keeps running" if broken.stand_in else "its images are held"
        log.error("policy file %s cannot be used: %s", broken.file, fate)


class _NotStarting(Exception):
    """A start-up step of ``Daemon.run`` failed (already logged): exit with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Daemon:
    """One daemon process: scheduler, signals, sd_notify, watchdog, reload and shutdown.

    Everything it talks to is injectable, so tests run it in-process with a recording
    runner: ``runner`` (default: the executor's ``run_once``), ``region_locks`` (default:
    a ``RegionLocks`` that waits for a busy region), ``client_factory`` (the CLI passes
    ``cvmkeeper.cli.common.cloud_client``), ``alerter_factory``, ``notifier`` and
    ``clock``. ``install_signals=False`` (for a daemon run on a thread other than the main
    one) leaves signal handling to the caller, who uses ``request_reload()`` /
    ``request_stop()``.
    """

    def __init__(
        self,
        config_file: Path,
        *,
        client_factory: Callable[[Config], Any],
        runner: Runner | None = None,
        region_locks: RegionLocks | None = None,
        alerter_factory: Callable[[SentrySettings], Alerter] = build_alerter,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = _utc_now,
        stop_timeout: float = STOP_TIMEOUT,
        install_signals: bool = True,
    ) -> None:
        """Prepare a daemon for ``config_file``; nothing is loaded until ``run()``."""
        self.config_file = config_file
        self._client_factory = client_factory
        self._runner: Runner = run_once if runner is None else runner
        self._region_locks = region_locks
        """Shared by every run, so runs of one region never overlap (made in ``run()``)."""
        self._alerter_factory = alerter_factory
        self.notifier = notifier if notifier is not None else Notifier()
        self._clock = clock
        self._stop_timeout = stop_timeout
        self._install_signals = install_signals
        self._requests: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._heartbeat = time.monotonic()
        self._last_status = ""
        self._reload_problem: str | None = None
        self._scheduler: Any = None
        self._jobs: SlotJobs | None = None
        self._exporter: Any = None
        self._watchdog_stop = threading.Event()
        self.started = threading.Event()
        """Set once the first schedule is loaded (when READY=1 is sent)."""
        self.runs_left_behind = False
        """True after ``run()`` when runs were still going at the stop timeout."""

    # --- requests (thread-safe; signal handlers use the same queue) -----------------------

    def request_reload(self) -> None:
        """Ask the main loop to reload, as SIGHUP does."""
        self._request(signal.SIGHUP)

    def request_stop(self) -> None:
        """Ask the main loop to stop, as SIGTERM does."""
        self._request(signal.SIGTERM)

    def _request(self, signum: int) -> None:
        self._requests.put(signum)
        with contextlib.suppress(OSError):  # a full buffer already means "wake up"
            self._wake_write.send(b"\0")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: queue the signal; the wakeup fd wakes the main loop."""
        self._requests.put(signum)

    # --- the whole life --------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; return the exit status (0 after a clean stop).

        The daemon's whole life, one phase per step: config, alerter and client; the slot
        jobs; the metrics exporter; the scheduler; the main loop; the orderly stop.
        """
        try:
            setup, alerter, client = self._load()
            stop = threading.Event()
            jobs = self._make_jobs(setup, client, alerter, stop)
            exporter = self._start_metrics(setup, jobs, alerter)
        except _NotStarting as failed:
            return failed.status
        self._exporter = exporter
        scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(WORKERS)}
        )
        scheduler.add_listener(self._on_job_refused, EVENT_JOB_MAX_INSTANCES)
        self._scheduler = scheduler
        previous_handlers = self._take_signals()
        watchdog: threading.Thread | None = None
        try:
            self._start_scheduling(setup, jobs, scheduler)
            watchdog = self._start_watchdog()
            self._main_loop()
        finally:
            self._shut_down(
                stop=stop,
                scheduler=scheduler,
                jobs=jobs,
                exporter=exporter,
                previous_handlers=previous_handlers,
                watchdog=watchdog,
            )
        log.info("stopped")
        return EXIT_OK

    def _load(self) -> tuple[Setup, Alerter, Any]:
        """The config (with its policies), the alerter and the cloud client; raises
        :class:`_NotStarting` (after logging, and alerting once there is an alerter)."""
        try:
            setup = load_setup(self.config_file, partial=True)
        except ConfigError as error:
            for problem in error.problems:
                log.error("%s", problem)
            log.error("not starting: %d problem(s) in the config or policies", len(error.problems))
            raise _NotStarting(EXIT_CONFIG) from error
        try:
            alerter = with_notifications(
                self._alerter_factory(setup.config.sentry),
                setup.config.notify,
                observer=self._delivery_outcome,
            )
        except ValueError as exc:  # AlertingConfigError: the message never holds the DSN
            log.error("not starting: %s", exc)
            raise _NotStarting(EXIT_CONFIG) from exc
        try:
            client = self._client_factory(setup.config)
        except Exception as exc:
            log.error("not starting: cannot set up the cloud client: %s", exc)
            alerter.error(Failure(policy="config", action="start", message=str(exc), exception=exc))
            alerter.close(ALERT_FLUSH_TIMEOUT)
            # A key file that cannot be read (missing, a symlink loop, empty) or no
            # credentials at all is the config's problem: 2, as every other command answers.
            status = EXIT_CONFIG if isinstance(exc, CredentialsError) else EXIT_FAILED
            raise _NotStarting(status) from exc
        return setup, alerter, client

    def _make_jobs(
        self, setup: Setup, client: Any, alerter: Alerter, stop: threading.Event
    ) -> SlotJobs:
        """The slot jobs every scheduled run goes through, sharing the region locks."""
        if self._region_locks is None:
            # A run waits for a region another run holds (instead of failing as busy) for
            # as long as that run may wait for its images, twice over.
            wait = 2 * setup.config.api.wait_timeout.total_seconds()
            self._region_locks = RegionLocks(wait_seconds=max(wait, REGION_WAIT_MIN))
        jobs = SlotJobs(
            RunContext(setup, client, alerter),
            runner=self._runner,
            region_locks=self._region_locks,
            state=StateStore(setup.config.state_dir),
            clock=self._clock,
            stop=stop,
            on_change=self._wake,
        )
        self._jobs = jobs
        return jobs

    @staticmethod
    def _start_metrics(setup: Setup, jobs: SlotJobs, alerter: Alerter) -> Any:
        """The Prometheus exporter (issue 7) when ``metrics_listen`` is set (off by
        default: ``None``), observing the jobs' runs and drills; raises
        :class:`_NotStarting` when it cannot listen."""
        if not setup.config.metrics_listen:
            return None
        from cvmkeeper.metrics import MetricsError, start_metrics  # noqa: PLC0415

        try:
            exporter = start_metrics(
                setup.config.metrics_listen,
                lambda: getattr(jobs.context.client, "stats", None),
            )
        except (MetricsError, ValueError) as exc:
            log.error("not starting: %s", exc)
            alerter.close(ALERT_FLUSH_TIMEOUT)
            raise _NotStarting(EXIT_CONFIG) from exc
        jobs.observe = exporter.observe
        jobs.drill_observe = exporter.observe_drills  # restore drills (issue #16)
        return exporter

    def _start_scheduling(
        self, setup: Setup, jobs: SlotJobs, scheduler: BackgroundScheduler
    ) -> None:
        """Start the scheduler with every policy's jobs and the drill job, catch up missed
        slots, and tell systemd the daemon is ready."""
        scheduler.start()
        sync_jobs(scheduler, job_specs(setup), jobs.run_slot)
        add_drill_job(scheduler, jobs.run_drills)
        log.info(
            "daemon started: %d policies, %d schedules from %s",
            len(setup.policies),
            len(job_specs(setup)),
            self.config_file,
        )
        self._show_broken(setup)
        jobs.request_catch_up()
        self.notifier.ready(self._status())
        self.started.set()

    def _shut_down(
        self,
        *,
        stop: threading.Event,
        scheduler: BackgroundScheduler,
        jobs: SlotJobs,
        exporter: Any,
        previous_handlers: dict[int, Any] | None,
        watchdog: threading.Thread | None,
    ) -> None:
        """The orderly stop: no new runs; runs in progress stop at a safe point (waited for
        up to the stop timeout); alerts flushed; exporter, signals and watchdog released."""
        self._watchdog_stop.set()
        self.notifier.stopping()
        log.info("stopping: no new runs; runs in progress stop at a safe point")
        stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)
        if not jobs.wait_idle(self._stop_timeout):
            self.runs_left_behind = True
            log.warning(
                "still running after %.0fs: %s; exiting anyway, the next start finishes "
                "their slots",
                self._stop_timeout,
                ", ".join(jobs.running()) or "a run",
            )
        jobs.context.alerter.close(ALERT_FLUSH_TIMEOUT)
        if exporter is not None:
            exporter.close()
        self._restore_signals(previous_handlers)
        if watchdog is not None:
            watchdog.join(timeout=LOOP_TICK * 2)

    def _main_loop(self) -> None:
        """Wait for requests and act on them; return when asked to stop."""
        while True:
            with contextlib.suppress(InterruptedError):
                select.select([self._wake_read], [], [], LOOP_TICK)
            self._drain_wakeups()
            self._heartbeat = time.monotonic()
            pending: set[int] = set()
            while True:
                try:
                    pending.add(self._requests.get_nowait())
                except queue.Empty:
                    break
            if pending & {int(s) for s in _STOP_SIGNALS}:
                names = ", ".join(signal.Signals(s).name for s in sorted(pending))
                log.info("received %s", names)
                return
            if int(signal.SIGHUP) in pending:
                self._reload()
            self._send_status()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _drain_wakeups(self) -> None:
        while True:
            try:
                if not self._wake_read.recv(512):
                    return
            except (BlockingIOError, InterruptedError):
                return

    # --- reload ----------------------------------------------------------------------------

    def _reload(self) -> None:
        """Re-read config and policies; on any problem keep the old ones (see module doc)."""
        assert self._jobs is not None
        jobs = self._jobs
        self.notifier.reloading()
        log.info("reloading %s", self.config_file)
        old = jobs.context
        try:
            # One bad policy file never stops the others: the old version of its policy
            # keeps running when there was one (docs/operations.md "A bad policy file").
            setup = with_stand_ins(load_setup(self.config_file, partial=True), old.setup)
        except ConfigError as error:
            for problem in error.problems:
                log.error("reload rejected: %s", problem)
            self._reject_reload(old, f"{len(error.problems)} problem(s): {error.problems[0]}")
            return
        except Exception as exc:  # a bug in a check must never stop the running daemon
            log.error("reload rejected: cannot load the config: %s: %s", type(exc).__name__, exc)
            self._reject_reload(old, f"{type(exc).__name__}: {exc}")
            return
        try:
            context = self._context_for(setup, old)
            specs = job_specs(setup)
        except Exception as exc:
            log.error("reload rejected: %s", exc)
            self._reject_reload(old, str(exc))
            return
        try:
            sync_jobs(self._scheduler, specs, jobs.run_slot)
        except Exception as exc:  # put the old schedules back; the old config keeps running
            log.error("reload rejected: cannot schedule the new policies: %s", exc)
            sync_jobs(self._scheduler, job_specs(old.setup), jobs.run_slot)
            self._reject_reload(old, str(exc))
            return
        jobs.context = context
        if setup.config.state_dir != old.setup.config.state_dir:
            jobs.state = StateStore(setup.config.state_dir)
        self._reload_problem = None
        log.info("reloaded: %d policies, %d schedules", len(setup.policies), len(job_specs(setup)))
        self._show_broken(setup)
        jobs.request_catch_up()
        self.notifier.ready(self._status())

    def _show_broken(self, setup: Setup) -> None:
        """Make the policy files the daemon now runs without seen (issue #19): logged, in
        the state file for ``cvmkeeper status``, and in the metrics (an empty list once
        they are fixed, so both clear on the reload that fixes them)."""
        _log_broken(setup)
        jobs = self._jobs
        if jobs is not None and jobs.state is not None:
            jobs.state.record_broken(setup.broken, self._clock())
        if self._exporter is not None:
            self._exporter.observe_broken(setup.broken)

    def _delivery_outcome(self, channel: str, reason: str | None) -> None:
        """How a notification ended (the channels' ``DeliveryObserver``, called from their
        delivery threads): a failure goes to the state file for ``cvmkeeper status`` and to
        the metrics, by channel name only (its URL holds a secret); a success clears the
        channel's failure in the state file. Before the jobs exist (the first moments of
        a start) only the log says it."""
        jobs = self._jobs
        if jobs is not None and jobs.state is not None:
            jobs.state.record_delivery(channel, reason, self._clock())
        if reason is not None and self._exporter is not None:
            self._exporter.observe_notification_failure(channel, self._clock().timestamp())

    def _context_for(self, setup: Setup, old: RunContext) -> RunContext:
        """The run context of a new setup, reusing the old client and alerter when their
        settings did not change."""
        config, old_config = setup.config, old.setup.config
        client = old.client
        if (config.cloud, config.credentials, config.api) != (
            old_config.cloud,
            old_config.credentials,
            old_config.api,
        ):
            client = self._client_factory(config)
        alerter = old.alerter
        if config.sentry != old_config.sentry or config.notify != old_config.notify:
            # Only one Sentry client may be alive: flush and close the old one first.
            old.alerter.close(ALERT_FLUSH_TIMEOUT)
            alerter = with_notifications(
                self._alerter_factory(config.sentry),
                config.notify,
                observer=self._delivery_outcome,
            )
        return RunContext(setup, client, alerter)

    def _reject_reload(self, old: RunContext, problem: str) -> None:
        """Log, alert and report a rejected reload; the old config keeps running."""
        log.error(
            "reload rejected: keeping the running config (%d policies)", len(old.setup.policies)
        )
        old.alerter.error(
            Failure(
                policy="config",
                action="reload",
                message=f"reload of {self.config_file} rejected, old config kept: {problem}",
            )
        )
        self._reload_problem = "reload rejected (see log)"
        self.notifier.ready(self._status())

    # --- systemd -----------------------------------------------------------------------------

    def _status(self) -> str:
        """The ``STATUS=`` line: next run, last result, what is running, reload problems."""
        parts: list[str] = []
        next_run = self._next_run()
        parts.append(
            f"next: {next_run[0]} at {next_run[1]:%Y-%m-%d %H:%M:%S}Z" if next_run else "next: -"
        )
        jobs = self._jobs
        if jobs is not None:
            last = jobs.last_result
            if last is not None:
                slot = f" slot {last.slot:%Y-%m-%d %H:%M}Z" if last.slot else ""
                parts.append(f"last: {last.policy}{slot} {last.result}")
            running = jobs.running()
            if running:
                parts.append("running: " + ", ".join(running))
            broken = jobs.context.setup.broken
            if broken:
                files = ", ".join(
                    b.file + (" (old version kept)" if b.stand_in else "") for b in broken
                )
                parts.append(f"BROKEN policy file(s): {files}")
        if self._reload_problem:
            parts.append(self._reload_problem)
        return "; ".join(parts)

    def _next_run(self) -> tuple[str, datetime] | None:
        """The policy whose job fires next and when (jitter included), from the scheduler."""
        if self._scheduler is None:
            return None
        upcoming = [
            (job.next_run_time.astimezone(UTC), str(job.args[0]))
            for job in self._scheduler.get_jobs()
            if job.next_run_time is not None and job.id != DRILL_JOB_ID
        ]
        if not upcoming:
            return None
        when, policy = min(upcoming)
        return policy, when

    def _send_status(self) -> None:
        text = self._status()
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)

    def _healthy(self, max_age: float) -> bool:
        """True when the scheduler thread runs and the main loop went round recently."""
        scheduler = self._scheduler
        if scheduler is None or not scheduler.running:
            return False
        thread = getattr(scheduler, "_thread", None)
        if thread is not None and not thread.is_alive():
            return False
        return time.monotonic() - self._heartbeat < max_age

    def _start_watchdog(self) -> threading.Thread | None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return None
        period = interval / 2
        thread = threading.Thread(
            target=self._watchdog_loop, args=(period,), name="cvmkeeper-watchdog", daemon=True
        )
        thread.start()
        log.debug("watchdog: pinging every %.1fs", period)
        return thread

    def _watchdog_loop(self, period: float) -> None:
        unhealthy_logged = False
        while True:
            if self._healthy(max_age=max(period, LOOP_TICK * 3)):
                self.notifier.watchdog()
                unhealthy_logged = False
            elif not unhealthy_logged:
                unhealthy_logged = True
                log.error("scheduler or main loop not responding: not pinging the watchdog")
            if self._watchdog_stop.wait(period):
                return

    # --- scheduler events and signals ----------------------------------------------------

    def _on_job_refused(self, event: JobSubmissionEvent) -> None:
        """APScheduler refused a fire (max_instances): report it, do not double the run."""
        if self._jobs is not None:
            self._jobs.report_refused_job(event.job_id, list(event.scheduled_run_times))

    def _take_signals(self) -> dict[int, Any] | None:
        """Install the signal handlers and the wakeup fd (main thread only)."""
        if not self._install_signals:
            return None
        previous: dict[int, Any] = {}
        for signum in _HANDLED_SIGNALS:
            previous[int(signum)] = signal.signal(signum, self._on_signal)
        previous[-1] = signal.set_wakeup_fd(self._wake_write.fileno(), warn_on_full_buffer=False)
        return previous

    def _restore_signals(self, previous: dict[int, Any] | None) -> None:
        if previous is None:
            return
        signal.set_wakeup_fd(previous.pop(-1))
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def close(self) -> None:
        """Release the wakeup sockets (after ``run()`` returned)."""
        self._wake_read.close()
        self._wake_write.close()
