"""The daemon alerts a broken policy file once per file and hour, not once per policy run
(issue #19): ``SlotJobs`` with the real ``run_once`` against the emulator over HTTP.
(``cvmkeeper run`` still alerts on every run: tests/executor/test_broken_policy.py.)

Three good policies run on their own schedules beside one bad file. Every run still
reports the file (an error in its report and in the state file); the Sentry event is sent
once, again an hour later while the file is unchanged, and at once when it changes.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.config import load_setup
from cvmkeeper.executor import run_once
from cvmkeeper.executor.runner import RegionLocks
from cvmkeeper.scheduler.jobs import RunContext, SlotJobs
from cvmkeeper.scheduler.state import StateStore, read_state
from executor.world import T0, A, broken_weekly, fleet, policy, world

BROKEN = broken_weekly("{keep_dayly: 7}")


class Clock:
    """The daemon's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_three_policies_send_one_event_per_file_and_hour_and_a_changed_file_at_once(
    tmp_path: Path,
) -> None:
    names = ("p1", "p2", "p3")
    with world(tmp_path, fleet(), *(policy(name, ids=[A]) for name in names)) as w:
        broken_file = w.root / "policies" / "weekly.yaml"
        broken_file.write_text(BROKEN)
        setup = load_setup(w.config_path, partial=True)
        alerter = RecordingAlerter()
        clock = Clock(T0 + timedelta(minutes=1))
        jobs = SlotJobs(
            RunContext(setup, w.client(), alerter),
            runner=run_once,
            region_locks=RegionLocks(),
            state=StateStore(setup.config.state_dir),
            clock=clock,
            stop=threading.Event(),
        )

        def events() -> int:
            return len([f for f in alerter.errors if f.action == "policy-file"])

        def run_all() -> None:
            for name in names:
                current = jobs.context.setup.policy(name)
                assert current is not None
                jobs.run_slot(name, current.schedules[0])

        run_all()
        assert events() == 1  # not one per policy run
        state = read_state(setup.config.state_dir / "daemon-state.json")
        for name in names:  # every run still reports the file
            assert any("weekly.yaml" in error for error in state.policies[name].errors)
        clock.now = T0 + timedelta(minutes=59)
        run_all()
        assert events() == 1  # unchanged, within the hour

        broken_file.write_text(BROKEN.replace("keep_dayly: 7", "keep_weakly: 2"))
        jobs.context = RunContext(load_setup(w.config_path, partial=True), w.client(), alerter)
        run_all()
        assert events() == 2  # changed: sent at once, once
        assert "keep_weakly" in alerter.errors[-1].extra["problems"]

        clock.now += timedelta(hours=1)  # executor.broken.ALERT_EVERY
        run_all()
        assert events() == 3  # an hour later, still broken: once more
