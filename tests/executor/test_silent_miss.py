"""Backups missed without an alert (issue 19, rule 7), against the emulator over real HTTP.

A due slot that gets no image is a failed outcome and an error alert whatever the cause:
a region whose inventory cannot be read, an instance named by id that no longer exists.
A tag selector that matches nothing stays a warning; no progress line claims images that
do not exist.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.executor.missed import missed_slots
from executor.world import REGION, T0, A, B, fleet, hour, policy, run, world

GONE = "ins-cccccccc"


def test_every_due_slot_of_an_unreadable_region_is_a_failed_slot(tmp_path: Path) -> None:
    by_id = policy("elsewhere", ids=[B, A], regions=["ap-shanghai"])
    by_tag = policy("tagged", ids=[], regions=["ap-shanghai"], targets={"tags": {"env": "prod"}})
    with world(tmp_path, fleet(), policy(ids=[A]), by_id, by_tag) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        slot = T0
        missed = sorted(
            (o.policy, o.region, o.instance_id, o.status, o.slot)
            for o in report.outcomes
            if o.region == "ap-shanghai"
        )
        assert missed == [
            ("elsewhere", "ap-shanghai", A, "failed", slot),
            ("elsewhere", "ap-shanghai", B, "failed", slot),
            ("tagged", "ap-shanghai", "tag env=prod", "failed", slot),
        ]
        assert all(
            "could not be read" in (o.error or "")
            for o in report.outcomes
            if o.region == "ap-shanghai"
        )
        # one alert for the one cause (issue 19), naming every missed slot
        [alert] = alerter.errors
        assert alert.region == "ap-shanghai" and alert.instance is None
        assert sorted(missed_slots(alert.extra)) == [
            ("elsewhere", A, "2026-11-27T00:00Z"),
            ("elsewhere", B, "2026-11-27T00:00Z"),
            ("tagged", "tag env=prod", "2026-11-27T00:00Z"),
        ]
        assert alert.tags["policies"] == "elsewhere,tagged"
        assert A in alert.message and "tag env=prod" in alert.message
        assert not report.ok and report.policy_ok("hourly")
        assert not report.policy_ok("elsewhere") and not report.policy_ok("tagged")


def test_a_dry_run_of_an_unreadable_region_alerts_nothing(tmp_path: Path) -> None:
    by_id = policy("elsewhere", ids=[B], regions=["ap-shanghai"])
    with world(tmp_path, fleet(), by_id) as w:
        alerter = RecordingAlerter()
        run(w, hour(0), alerter, dry_run=True)
        assert alerter.failures == []


def test_an_instance_named_by_id_that_is_gone_is_a_missed_backup(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A]), policy("other", ids=[GONE, B])) as w:
        alerter = RecordingAlerter()
        shown: list[str] = []
        report = run(w, hour(0), alerter, progress=shown.append)
        gone = [o for o in report.outcomes if o.instance_id == GONE]
        assert [(o.policy, o.region, o.status) for o in gone] == [("other", REGION, "failed")]
        assert GONE in (gone[0].error or "")
        [error] = [f for f in alerter.errors if f.instance == GONE]
        assert (error.policy, error.region) == ("other", REGION)
        assert not report.policy_ok("other") and report.policy_ok("hourly")
        # B of the same policy was made: only the missing instance failed
        assert [o.status for o in report.outcomes if o.instance_id == B] == ["created"]
        assert not any("its images exist" in line for line in shown)


def test_a_policy_named_instance_gone_claims_no_images_in_its_progress_line(
    tmp_path: Path,
) -> None:
    with world(tmp_path, fleet(), policy("other", ids=[GONE])) as w:
        shown: list[str] = []
        run(w, hour(0), RecordingAlerter(), progress=shown.append)
        due_lines = [line for line in shown if "other: slot" in line or "other: catch-up" in line]
        assert due_lines and not any("its images exist" in line for line in due_lines)


def test_a_tag_selector_matching_nothing_stays_a_warning(tmp_path: Path) -> None:
    by_tag = policy("tagged", ids=[], targets={"tags": {"env": "prod"}})
    with world(tmp_path, fleet(), policy(ids=[A]), by_tag) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        assert report.ok and alerter.errors == []
        assert [(f.policy, f.action) for f in alerter.warnings] == [("tagged", "targets")]


def test_a_lookalike_is_alerted_as_a_warning_not_only_logged(tmp_path: Path) -> None:
    from executor.world import managed

    forged = {**managed(A, T0 - timedelta(hours=1), "img-forged01"), "creator": "100000000666"}
    with world(tmp_path, fleet(images=[forged]), policy(ids=[A])) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        [warning] = [f for f in alerter.warnings if f.action == "ownership"]
        assert (warning.policy, warning.instance, warning.region) == ("hourly", A, REGION)
        assert "img-forged01" in warning.message and "100000000666" in warning.message
        assert "img-forged01" in {i["ImageId"] for i in w.images()}
        assert report.ok  # a warning, not a failed backup


def test_the_slots_of_a_busy_region_are_named_as_missed(tmp_path: Path) -> None:
    from cvmkeeper.executor import RegionLocks

    with world(tmp_path, fleet(), policy()) as w:
        locks = RegionLocks()
        alerter = RecordingAlerter()
        with locks.hold(REGION) as held:
            assert held
            report = run(w, hour(0), alerter, region_locks=locks, policy_names=["hourly"])
        assert w.writes() == []
        assert sorted((o.instance_id, o.status, o.slot) for o in report.outcomes) == [
            (A, "failed", T0),
            (B, "failed", T0),
        ]
        [alert] = alerter.errors  # one alert for the busy region, naming both slots
        assert sorted(missed_slots(alert.extra)) == [
            ("hourly", A, "2026-11-27T00:00Z"),
            ("hourly", B, "2026-11-27T00:00Z"),
        ]
        assert "another run" in alert.message and alert.region == REGION
        assert not report.policy_ok("hourly")
