"""The daemon's restore-drill job: scheduled once, kept across reloads, runs due drills."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.scheduler.jobs import (
    DRILL_JOB_ID,
    RunContext,
    SlotJobs,
    add_drill_job,
    job_specs,
    sync_jobs,
)
from executor.world import REGION, T0, A, fleet, managed, policy, world

DRILL = {
    "zone": f"{REGION}-3",
    "vpc_id": "vpc-drill001",
    "subnet_id": "subnet-drill001",
    "security_group_ids": ["sg-drill001"],
    "instance_type": "S5.SMALL2",
    "timeout": "1m",
}
FAST = {
    "create_seconds": 0.2,
    "stop_seconds": 0.1,
    "start_seconds": 0.1,
    "launch_seconds": 0.2,
    "terminate_seconds": 0.1,
}


def test_the_drill_job_survives_sync_jobs(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.start(paused=True)
        try:
            add_drill_job(scheduler, lambda: None)
            sync_jobs(scheduler, job_specs(w.setup()), lambda *_args: None)
            assert {job.id for job in scheduler.get_jobs()} == {"hourly#1", DRILL_JOB_ID}
            sync_jobs(scheduler, [], lambda *_args: None)  # a reload that drops every policy
            assert [job.id for job in scheduler.get_jobs()] == [DRILL_JOB_ID]
        finally:
            scheduler.shutdown(wait=False)


def test_run_drills_drills_once_per_period(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A},), images=(managed(A, T0, "img-aaaa0001"),), timing=FAST)
    with world(tmp_path, spec, policy(ids=[A], drill=DRILL)) as w:
        alerter = RecordingAlerter()
        jobs = SlotJobs(
            RunContext(w.setup(), w.client(), alerter),
            runner=lambda **_: None,
            region_locks=None,
            state=None,
            clock=lambda: datetime.now(UTC),
            stop=threading.Event(),
        )
        reports: list[object] = []
        jobs.drill_observe = reports.append  # the metrics exporter's observe_drills
        jobs.run_drills()
        jobs.run_drills()  # not due again for 7 days (drill.every's default)
        runs = [e for e in w.writes() if e["action"] == "RunInstances"]
        assert len(runs) == 1 and runs[0]["result"] == "ok"
        assert [e["action"] for e in w.writes()].count("TerminateInstances") == 1
        assert alerter.errors == []
        assert alerter.checkin_statuses("hourly-drill") == ["in_progress", "ok"]
        assert len(reports) == 2  # every drill run is reported, the one with nothing due too


def test_a_leftover_is_swept_after_its_policy_lost_its_drill_key(tmp_path: Path) -> None:
    """A daemon died mid-drill, and the drill key was then removed (the drill had failed):
    the leftover drill instance, with its data disks, would bill for ever. The job sweeps
    every configured region even with no drill configured, and never anything untagged."""
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    leftover = {
        "id": "ins-leftover",
        "created_time": "2026-12-03T10:00:00Z",
        "tags": {
            "cvmkeeper:drill": "hourly",
            "cvmkeeper:drill-lease-until": "2026-12-03T10:30:00Z",
        },
    }
    spec = fleet(instances=({"id": A}, leftover), timing=FAST)
    with world(tmp_path, spec, policy(ids=[A])) as w:  # no drill key any more
        jobs = SlotJobs(
            RunContext(w.setup(), w.client(), RecordingAlerter()),
            runner=lambda **_: None,
            region_locks=None,
            state=None,
            clock=lambda: now,
            stop=threading.Event(),
        )
        jobs.run_drills()
        terminated = [
            i for e in w.writes() if e["action"] == "TerminateInstances" for i in e["InstanceIds"]
        ]
        assert terminated == ["ins-leftover"]
        assert not [e for e in w.writes() if e["action"] == "RunInstances"]
