"""Runs under two of the emulator's open-point switches (issue #18), over real HTTP.

``null_fields``: DescribeImages answers ``CreatedTime``/``SyncPercent`` null and leaves out
``Tags``; a run still makes and rotates its images, and counts the hand-made image of
unknown age against the quota without touching it. ``unknown_instance_status``: an
instance that is gone is missing (a failed slot, rule 7) and never hides the state of the
other instances of the same DescribeInstancesStatus batch, whether the cloud leaves it out
or refuses the whole batch.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.executor import run_once
from cvmkeeper.executor.consistency import InstanceStopper
from cvmkeeper.executor.stop_journal import StopJournal
from executor.world import REGION, T0, A, fleet, managed, policy, unmanaged, world

GONE = "ins-gone0000"
ANSWERS = ("error", "omit")


def test_a_run_with_null_fields_makes_and_rotates_its_images(tmp_path: Path) -> None:
    """The golden image has no time and no tags; every new image is listed without a
    time while CREATING. The run must neither crash nor take the golden image as its own."""
    old = [managed(A, T0 + timedelta(hours=h), f"img-old0000{h}") for h in range(2)]
    spec = fleet(
        instances=[{"id": A}],
        images=[unmanaged("img-golden01", "golden"), *old],
        null_fields=True,
        profile="documented",
    )
    with world(tmp_path, spec, policy(ids=[A], keep_last=2)) as w:
        at = T0 + timedelta(hours=2, minutes=1)
        report = run_once(w.setup(), w.client(), RecordingAlerter(), now=at)
        assert [o.status for o in report.outcomes] == ["created"], report.outcomes
        names = {i["ImageId"] for i in w.images()}
        assert "img-golden01" in names  # never touched
        assert "img-old00000" not in names  # rotated: keep_last 2
        assert "img-old00001" in names


@pytest.mark.parametrize("answer", ANSWERS)
def test_a_gone_instance_is_missing_and_the_others_still_stop(tmp_path: Path, answer: str) -> None:
    spec = fleet(instances=[{"id": A}], unknown_instance_status=answer, profile="documented")
    with world(tmp_path, spec, policy(ids=[A])) as w:
        failed: list[str] = []
        stopper = InstanceStopper(
            w.client(),
            REGION,
            deadline_seconds=10,
            poll_seconds=0.05,
            sleep=time.sleep,
            on_start_failed=lambda instance_id, _error: failed.append(instance_id),
        )
        problems = stopper.prepare([A, GONE])
        assert set(problems) == {GONE}  # missing, never RUNNING
        assert "not found" in problems[GONE].message
        assert stopper.ready == {A}
        assert w.instance_state(A) == "STOPPED"
        stopper.release_all()
        assert failed == []
        assert w.instance_state(A) in ("STARTING", "RUNNING")


@pytest.mark.parametrize("answer", ANSWERS)
def test_recovery_is_not_blocked_by_a_gone_instance(tmp_path: Path, answer: str) -> None:
    """The journal names A (left STOPPED by a crashed run) and an instance deleted since:
    A is started again, the gone one forgotten."""
    spec = fleet(
        instances=[{"id": A, "state": "STOPPED"}],
        unknown_instance_status=answer,
        profile="documented",
    )
    journal = StopJournal(tmp_path / "state")
    journal.record(REGION, [A, GONE])
    with world(tmp_path, spec, policy(ids=[A])) as w:
        stopper = InstanceStopper(
            w.client(),
            REGION,
            deadline_seconds=10,
            poll_seconds=0.05,
            sleep=time.sleep,
            on_start_failed=lambda _instance_id, _error: None,
            journal=journal,
        )
        recovered = stopper.recover()
        assert [entry.instance_id for entry in recovered] == [A]
        assert w.instance_state(A) in ("STARTING", "RUNNING")
        assert journal.claim(REGION) == []
