"""The daemon's job logic with a recording runner: slots, check-ins, overlaps, catch-up.

No process, no sleeping on the clock: the runner is a small real function that records
what it was given, the clock is a fixed time the test moves, and APScheduler is a real
scheduler whose jobs are inspected (and fired on demand) rather than waited for.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler
from daemon_helpers import RecordingRunner, policy_text, write_setup

from cvmkeeper.alerting import RecordingAlerter, monitor_slug
from cvmkeeper.config import Setup, load_setup
from cvmkeeper.core.policy import Schedule
from cvmkeeper.executor.runner import RegionLocks
from cvmkeeper.scheduler.jobs import (
    CATCH_UP,
    RunContext,
    SlotJobs,
    fired_slot,
    job_specs,
    sync_jobs,
)
from cvmkeeper.scheduler.state import StateStore, read_state

T0 = datetime(2026, 11, 27, 18, 0, 0, tzinfo=UTC)


class Clock:
    """A clock the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def load(tmp_path: Path, policies: dict[str, str]) -> Setup:
    return load_setup(write_setup(tmp_path, policies))


def make_jobs(
    tmp_path: Path, setup: Setup, runner: RecordingRunner, clock: Clock
) -> tuple[SlotJobs, RecordingAlerter, object]:
    alerter = RecordingAlerter()
    locks = RegionLocks()
    jobs = SlotJobs(
        RunContext(setup, client="client-1", alerter=alerter),
        runner=runner,
        region_locks=locks,
        state=StateStore(tmp_path / "state"),
        clock=clock,
        stop=threading.Event(),
    )
    return jobs, alerter, locks


# --- pure helpers ------------------------------------------------------------------------


def test_one_job_per_schedule_with_stable_ids(tmp_path: Path) -> None:
    two = (
        "name: twice\ntargets: {tags: {backup: daily}}\nschedules:\n"
        '  - cron: "0 2 * * *"\n  - every: 6h\nretention: {keep_last: 3}\n'
    )
    setup = load(tmp_path, {"a": policy_text("hourly", "every: 1h"), "b": two})
    specs = job_specs(setup)
    assert sorted(s.job_id for s in specs) == ["hourly#1", "twice#1", "twice#2"]
    assert {s.job_id: s.schedule for s in specs}["twice#2"].every == timedelta(hours=6)


def test_fired_slot_is_the_nominal_slot_not_the_jittered_time() -> None:
    schedule = Schedule(cron="0 2 * * *", timezone="Asia/Shanghai", jitter=timedelta(minutes=5))
    fired = datetime(2026, 11, 27, 18, 4, 37, 123456, tzinfo=UTC)  # 02:04:37 in Shanghai
    assert fired_slot(schedule, fired) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    every = Schedule(every=timedelta(minutes=15))
    assert fired_slot(every, datetime(2026, 1, 1, 0, 29, 59, tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 15, tzinfo=UTC
    )


def test_sync_jobs_keeps_unchanged_replaces_changed_removes_gone(tmp_path: Path) -> None:
    first = load(
        tmp_path,
        {
            "a": policy_text("keep", "every: 1h"),
            "b": policy_text("change", 'cron: "0 3 * * *"'),
            "c": policy_text("gone", "every: 2h"),
        },
    )
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)
    try:

        def func(policy: str, schedule: Schedule) -> None:
            """A job function that is never fired here."""

        sync_jobs(scheduler, job_specs(first), func)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"keep#1", "change#1", "gone#1"}
        for job in jobs.values():
            assert job.misfire_grace_time is None  # late fires are never dropped
            assert job.coalesce is True  # a backlog of fire times runs once
            assert job.max_instances == 1
        kept_next = jobs["keep#1"].next_run_time

        (tmp_path / "policies" / "c.yaml").unlink()
        (tmp_path / "policies" / "b.yaml").write_text(
            policy_text("change", 'cron: "0 4 * * *"'), encoding="utf-8"
        )
        second = load_setup(tmp_path / "cvmkeeper.yaml")
        sync_jobs(scheduler, job_specs(second), func)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"keep#1", "change#1"}
        assert jobs["keep#1"].next_run_time == kept_next
        assert jobs["change#1"].args[1].cron == "0 4 * * *"
        assert jobs["change#1"].next_run_time.hour == 4
    finally:
        scheduler.shutdown(wait=False)


# --- scheduled runs ----------------------------------------------------------------------


def test_run_slot_calls_the_runner_for_the_policy_and_slot_and_checks_in(tmp_path: Path) -> None:
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    runner = RecordingRunner()
    clock = Clock(T0 + timedelta(seconds=3))
    jobs, alerter, locks = make_jobs(tmp_path, setup, runner, clock)

    jobs.run_slot("web", setup.policies[0].schedules[0])

    (call,) = runner.snapshot()
    assert call.policy_names == ("web",)
    assert call.slot == T0
    assert call.stop is jobs.stop
    assert call.region_locks is locks
    assert call.client == "client-1"
    assert alerter.checkin_statuses(monitor_slug("web")) == ["in_progress", "ok"]
    stored = read_state(tmp_path / "state" / "daemon-state.json").policies["web"]
    assert (stored.kind, stored.slot, stored.result) == ("scheduled", T0, "ok")
    assert jobs.last_result is not None and jobs.last_result.result == "ok"


def test_a_failed_run_checks_in_error_and_is_recorded(tmp_path: Path) -> None:
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    runner = RecordingRunner(ok=False)
    jobs, alerter, _ = make_jobs(tmp_path, setup, runner, Clock(T0))

    jobs.run_slot("web", setup.policies[0].schedules[0])

    assert alerter.checkin_statuses("web") == ["in_progress", "error"]
    stored = read_state(jobs.state.path).policies["web"]  # type: ignore[union-attr]
    assert stored.result == "failed"
    assert stored.errors == ("CreateImage failed: ResourceInsufficient",)


def test_a_runner_exception_is_alerted_checked_in_and_does_not_escape(tmp_path: Path) -> None:
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    runner = RecordingRunner(raises=RuntimeError("connection reset"))
    jobs, alerter, _ = make_jobs(tmp_path, setup, runner, Clock(T0))

    jobs.run_slot("web", setup.policies[0].schedules[0])  # must not raise

    assert alerter.checkin_statuses("web") == ["in_progress", "error"]
    (error,) = alerter.errors
    assert (error.policy, error.action) == ("web", "run")
    assert "connection reset" in error.message
    assert read_state(jobs.state.path).policies["web"].result == "failed"  # type: ignore[union-attr]


def test_a_stopping_daemon_starts_no_new_run(tmp_path: Path) -> None:
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    runner = RecordingRunner()
    jobs, alerter, _ = make_jobs(tmp_path, setup, runner, Clock(T0))
    jobs.stop.set()
    jobs.run_slot("web", setup.policies[0].schedules[0])
    assert runner.snapshot() == []
    assert alerter.checkins == []


def test_a_run_still_going_at_the_next_slot_is_reported_not_doubled(tmp_path: Path) -> None:
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    gate = threading.Event()
    runner = RecordingRunner(gate=gate)
    clock = Clock(T0)
    jobs, alerter, _ = make_jobs(tmp_path, setup, runner, clock)
    schedule = setup.policies[0].schedules[0]

    first = threading.Thread(target=jobs.run_slot, args=("web", schedule))
    first.start()
    assert runner.wait_started()
    clock.now = T0 + timedelta(hours=1, seconds=1)
    jobs.run_slot("web", schedule)  # the next slot fires while the first run goes on
    gate.set()
    first.join(timeout=10)

    assert [c.slot for c in runner.snapshot()] == [T0]
    (warning,) = alerter.warnings
    assert (warning.policy, warning.action) == ("web", "schedule")
    assert "2026-11-27T19:00Z" in warning.message and "2026-11-27T18:00Z" in warning.message


def test_two_schedules_firing_the_same_slot_make_it_once_without_a_warning(
    tmp_path: Path,
) -> None:
    text = (
        "name: web\ntargets: {tags: {backup: daily}}\nschedules:\n"
        "  - every: 1h\n  - every: 30m\nretention: {keep_last: 3}\n"
    )
    setup = load(tmp_path, {"a": text})
    gate = threading.Event()
    runner = RecordingRunner(gate=gate)
    jobs, alerter, _ = make_jobs(tmp_path, setup, runner, Clock(T0))
    hourly, half_hourly = setup.policies[0].schedules

    first = threading.Thread(target=jobs.run_slot, args=("web", hourly))
    first.start()
    assert runner.wait_started()
    jobs.run_slot("web", half_hourly)
    gate.set()
    first.join(timeout=10)

    assert len(runner.snapshot()) == 1
    assert alerter.warnings == []


def test_apscheduler_refusing_a_busy_job_is_reported(tmp_path: Path) -> None:
    """max_instances=1 in a real scheduler: the second fire is refused and reported."""
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    gate = threading.Event()
    runner = RecordingRunner(gate=gate)
    clock = Clock(T0)
    jobs, alerter, _ = make_jobs(tmp_path, setup, runner, clock)
    scheduler = BackgroundScheduler(timezone=UTC)
    refused = threading.Event()

    def on_refused(event: object) -> None:
        jobs.report_refused_job(event.job_id, event.scheduled_run_times)  # type: ignore[attr-defined]
        refused.set()

    scheduler.add_listener(on_refused, EVENT_JOB_MAX_INSTANCES)
    scheduler.start()
    try:
        sync_jobs(scheduler, job_specs(setup), jobs.run_slot)
        scheduler.modify_job("web#1", next_run_time=datetime.now(UTC))
        assert runner.wait_started()
        clock.now = T0 + timedelta(hours=1)
        scheduler.modify_job("web#1", next_run_time=datetime.now(UTC))
        assert refused.wait(10)
    finally:
        gate.set()
        scheduler.shutdown(wait=True)
    assert len(runner.snapshot()) == 1
    (warning,) = alerter.warnings
    assert warning.action == "schedule" and "still going" in warning.message


# --- catch-up ----------------------------------------------------------------------------


def test_catch_up_is_one_runner_call_for_all_policies_and_records_each(tmp_path: Path) -> None:
    setup = load(
        tmp_path,
        {"a": policy_text("web", "every: 1h"), "b": policy_text("db", "every: 2h")},
    )
    runner = RecordingRunner()
    jobs, alerter, locks = make_jobs(tmp_path, setup, runner, Clock(T0))

    jobs.run_catch_up()

    (call,) = runner.snapshot()
    assert call.policy_names is None and call.slot is None
    assert call.region_locks is locks
    assert alerter.checkins == []  # catch-up is not a scheduled run of a monitor
    stored = read_state(jobs.state.path).policies  # type: ignore[union-attr]
    assert {name: run.kind for name, run in stored.items()} == {
        "web": "catch-up",
        "db": "catch-up",
    }


def test_a_catch_up_requested_during_one_runs_once_more_after_it(tmp_path: Path) -> None:
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    gate = threading.Event()
    runner = RecordingRunner(gate=gate)
    jobs, _, _ = make_jobs(tmp_path, setup, runner, Clock(T0))

    jobs.request_catch_up()
    assert runner.wait_started()
    assert CATCH_UP in jobs.running()
    newer = load_setup(
        write_setup(tmp_path, {"b": policy_text("db", "every: 2h")})
    )  # a reload added a policy
    jobs.context = RunContext(newer, client="client-2", alerter=jobs.context.alerter)
    jobs.request_catch_up()
    jobs.request_catch_up()  # asked twice while running: still one more run, not two
    gate.set()
    assert jobs.wait_idle(10)

    calls = runner.snapshot()
    assert len(calls) == 2
    assert calls[1].client == "client-2"
    assert [p.name for p in calls[1].setup.policies] == ["web", "db"]


def test_the_state_file_is_replaced_atomically_and_holds_no_secret(tmp_path: Path) -> None:
    from cvmkeeper.logs import register_secret

    secret = "Sup3rSecretKeyValue0123456789abcd"
    register_secret(secret)
    setup = load(tmp_path, {"a": policy_text("web", "every: 1h")})
    runner = RecordingRunner(ok=False, error=f"AuthFailure with SecretKey={secret} refused")
    jobs, _, _ = make_jobs(tmp_path, setup, runner, Clock(T0))

    jobs.run_slot("web", setup.policies[0].schedules[0])

    path = tmp_path / "state" / "daemon-state.json"
    text = path.read_text(encoding="utf-8")
    assert secret not in text
    assert "AuthFailure" in text
    assert json.loads(text)["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["daemon-state.json"]  # no temp left


def test_a_catch_up_with_errors_says_how_many_slots_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ "catch-up finished: with errors (300 slots)" at INFO read as 300 failures when 2
    had failed; the line counts the failed slots, and is a warning."""
    setup = load(
        tmp_path,
        {"a": policy_text("web", "every: 1h"), "b": policy_text("db", "every: 2h")},
    )
    runner = RecordingRunner(ok=False)
    jobs, _alerter, _locks = make_jobs(tmp_path, setup, runner, Clock(T0))
    with caplog.at_level(logging.INFO, logger="cvmkeeper.scheduler.jobs"):
        jobs.run_catch_up()
    [line] = [r for r in caplog.records if r.getMessage().startswith("catch-up finished")]
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        "catch-up finished: with errors (2 of 2 slots without a NORMAL image, 1 error)"
    )
