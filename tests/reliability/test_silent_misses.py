"""Rule 7 in the reliability suite: every due slot ends NORMAL or alerted, by name.

The silent-miss classes of issue 19, each run against the emulator over real HTTP and
checked with the invariant checker's ``slot_missed_silently`` over the emulator history:
a region whose reads always fail, an instance named by id that was deleted, an image
named for a slot in the future (a clock that was ahead), a policy file removed, and a
policy file that cannot be used (its images held, the other policies' slots made).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.config import load_setup
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.executor import RunReport, run_once
from executor.world import REGION, T0, A, B, World, fleet, managed, policy, world
from reliability.silent import alerted_slots, due_keys

pytestmark = pytest.mark.slow

GONE = "ins-cccccccc"


def run(w: World, hour: int, alerter: RecordingAlerter) -> RunReport:
    return run_once(w.setup(), w.client(), alerter, now=T0 + timedelta(hours=hour, minutes=1))


def check(w: World, initial: dict[str, Any], due: list[Any], alerter: RecordingAlerter) -> None:
    violations = check_invariants(w.state(), initial, due=due, alerted=alerted_slots(alerter))
    assert violations == [], format_violations(violations)


def test_a_region_whose_reads_always_fail_names_every_due_slot(tmp_path: Path) -> None:
    spec = fleet(faults={"DescribeImages": {"InternalError": 1.0}})
    with world(tmp_path, spec, policy(ids=[A, B])) as w:
        initial = w.state()
        alerter = RecordingAlerter()
        report = run(w, 0, alerter)
        assert sorted((o.instance_id, o.status) for o in report.outcomes) == [
            (A, "failed"),
            (B, "failed"),
        ]
        check(w, initial, due_keys(REGION, (A, B), T0), alerter)
        assert len(alerter.errors) == 1  # one cause, one alert naming both slots


def test_an_instance_named_by_id_that_was_deleted_is_alerted_every_run(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A, GONE])) as w:
        initial = w.state()
        for hour in range(3):
            alerter = RecordingAlerter()
            report = run(w, hour, alerter)
            assert not report.policy_ok("hourly")
            slot = T0 + timedelta(hours=hour)
            check(w, initial, due_keys(REGION, (A, GONE), slot), alerter)


def test_a_future_dated_image_never_stops_the_backups(tmp_path: Path) -> None:
    ahead = managed(A, T0 + timedelta(days=2), "img-ahead001")
    ahead["created_time"] = (T0 - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with world(tmp_path, fleet(images=[ahead]), policy(ids=[A], keep_last=2)) as w:
        initial = w.state()
        for hour in range(3):
            alerter = RecordingAlerter()
            report = run(w, hour, alerter)
            assert [o.status for o in report.outcomes] == ["created"]
            assert any(f.action == "future" for f in alerter.warnings)
            check(w, initial, due_keys(REGION, (A,), T0 + timedelta(hours=hour)), alerter)
        assert "img-ahead001" in {i["ImageId"] for i in w.images()}


def test_removing_a_policy_never_deletes_its_images_in_silence(tmp_path: Path) -> None:
    kept = [
        managed(A, T0 - timedelta(days=d), f"img-daily{d:03d}", policy="daily") for d in range(1, 4)
    ]
    hourly = policy(ids=[A], keep_last=1)
    with world(tmp_path, fleet(images=kept), hourly) as w:  # "daily" is gone
        alerter = RecordingAlerter()
        run(w, 0, alerter)
        ids = {i["ImageId"] for i in w.images()}
        assert {i["id"] for i in kept} <= ids
        [held] = [f for f in alerter.warnings if f.action == "retention"]
        assert "'daily'" in held.message


def test_a_broken_policy_file_never_deletes_and_never_silences_the_others(
    tmp_path: Path,
) -> None:
    """A typo in ``daily.yaml``, with ``orphans:`` rules that would rotate the images of a
    removed policy: over three hourly runs every due slot of the good policy is NORMAL or
    alerted, no image of ``daily`` is deleted, and each run alerts the broken file."""
    kept = [
        managed(A, T0 - timedelta(days=d), f"img-daily{d:03d}", policy="daily") for d in range(1, 4)
    ]
    with world(tmp_path, fleet(images=kept), policy(ids=[A, B], keep_last=1)) as w:
        config = w.config_path.read_text() + "orphans: {keep_last: 1}\n"
        w.config_path.write_text(config)
        (w.root / "policies" / "daily.yaml").write_text(
            "name: daily\nschedules: [{every: 1d}]\nretention: {keep_daily: seven}\n"
        )
        setup = load_setup(w.config_path, partial=True)
        initial = w.state()
        for hour in range(3):
            alerter = RecordingAlerter()
            now = T0 + timedelta(hours=hour, minutes=1)
            report = run_once(setup, w.client(), alerter, now=now)
            assert not report.ok and report.policy_ok("hourly")
            assert [f.action for f in alerter.errors] == ["policy-file"]
            check(w, initial, due_keys(REGION, (A, B), T0 + timedelta(hours=hour)), alerter)
        assert {i["id"] for i in kept} <= {i["ImageId"] for i in w.images()}
