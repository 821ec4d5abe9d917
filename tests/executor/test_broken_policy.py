"""One bad policy file never stops the others, and never costs a backup (issue #19).

Against the emulator over real HTTP: a run of a setup loaded with ``partial=True`` (as the
daemon and ``cvmkeeper run`` load it) makes the good policies' slots, reports each broken
file as an error with one fingerprint per file on every run, and holds the images whose
policy is not loaded, even when ``orphans:`` rules would rotate images of a removed policy.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml

from cvmkeeper.alerting import RecordingAlerter, failure_fingerprint
from cvmkeeper.config import load_setup
from cvmkeeper.executor import run_once
from cvmkeeper.executor.broken import BrokenFileAlerts
from executor.world import T0, A, World, broken_weekly, fleet, managed, policy, world

#: ``weekly`` with a typo (and nothing else to keep): the file cannot be used
BROKEN_WEEKLY = broken_weekly("{keep_dayly: 7}")


def weekly_images() -> list[dict[str, object]]:
    """Four NORMAL images of A that only the (now broken) ``weekly`` policy keeps."""
    return [
        managed(A, T0 - timedelta(hours=n), f"img-week000{n}", policy="weekly") for n in range(1, 5)
    ]


def with_orphan_rules(w: World) -> None:
    """``orphans: {keep_last: 1}``: images of a removed policy are rotated, not held."""
    config = yaml.safe_load(w.config_path.read_text())
    config["orphans"] = {"keep_last": 1}
    w.config_path.write_text(yaml.safe_dump(config))


def deletes(w: World) -> list[dict[str, object]]:
    return [e for e in w.writes() if e["action"] == "DeleteImages"]


def test_a_broken_file_is_an_error_on_every_run_the_others_run_and_nothing_is_deleted(
    tmp_path: Path,
) -> None:
    with world(tmp_path, fleet(images=weekly_images()), policy(ids=[A], keep_last=1)) as w:
        with_orphan_rules(w)
        (w.root / "policies" / "weekly.yaml").write_text(BROKEN_WEEKLY)
        setup = load_setup(w.config_path, partial=True)
        assert [p.name for p in setup.policies] == ["hourly"]
        alerter = RecordingAlerter()
        shown: list[str] = []
        for hour in range(2):
            report = run_once(
                setup,
                w.client(),
                alerter,
                now=T0 + timedelta(hours=hour, minutes=1),
                progress=shown.append,
            )
            assert not report.ok  # run exits 1
            assert report.policy_ok("hourly")  # the good policy made its slot
            assert [o.status for o in report.outcomes] == ["created"]
            assert any("weekly.yaml" in error for error in report.errors)
        assert deletes(w) == []  # the typo cost no backup
        assert {f"img-week000{n}" for n in range(1, 5)} <= {i["ImageId"] for i in w.images()}
        broken = [f for f in alerter.errors if f.action == "policy-file"]
        assert len(broken) == 2  # one per run
        assert len({tuple(failure_fingerprint(f)) for f in broken}) == 1
        assert "weekly.yaml" in failure_fingerprint(broken[0])[-1]
        assert "weekly.yaml:5:" in broken[0].extra["problems"]
        assert any("weekly.yaml:5:" in line and "keep_dayly" in line for line in shown)
        held = [line for line in shown if "held" in line and "img-week0001" in line]
        assert held and "'weekly'" in held[0] and "weekly.yaml" in held[0]

        # Fixed by removing the file: the images of the removed policy are now rotated by
        # the orphans: rules, with a warning naming it (the documented removal path).
        (w.root / "policies" / "weekly.yaml").unlink()
        fixed = load_setup(w.config_path, partial=True)
        assert fixed.broken == ()
        later = T0 + timedelta(hours=2, minutes=1)
        report = run_once(fixed, w.client(), RecordingAlerter(), now=later)
        assert deletes(w)
        assert any("'weekly', which no longer exists" in warning for warning in report.warnings)


def test_a_dry_run_reports_the_broken_file_and_alerts_nothing(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        (w.root / "policies" / "weekly.yaml").write_text(BROKEN_WEEKLY)
        alerter = RecordingAlerter()
        report = run_once(
            load_setup(w.config_path, partial=True),
            w.client(),
            alerter,
            now=T0 + timedelta(minutes=1),
            dry_run=True,
        )
        assert any("weekly.yaml" in error for error in report.errors)
        assert alerter.failures == []


def test_the_daemon_logs_a_broken_file_once_an_hour_while_unchanged_run_every_run(
    tmp_path: Path,
) -> None:
    """The daemon's runs share one ``BrokenFileAlerts``: the file's ERROR lines (like its
    event) at most once an hour while unchanged, at once when it changes; without the
    gate (``cvmkeeper run``) on every run. Every run still records it as an error."""
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        file = w.root / "policies" / "weekly.yaml"
        file.write_text(BROKEN_WEEKLY)
        gate = BrokenFileAlerts()
        alerter = RecordingAlerter()

        def run(minutes: int, daemon: bool = True) -> list[str]:
            shown: list[str] = []
            report = run_once(
                load_setup(w.config_path, partial=True),
                w.client(),
                alerter,
                now=T0 + timedelta(minutes=minutes),
                progress=shown.append,
                broken_alerts=gate if daemon else None,
            )
            assert any("weekly.yaml" in error for error in report.errors)  # always an error
            return [line for line in shown if line.startswith("ERROR") and "weekly" in line]

        assert any("weekly.yaml:5:" in line for line in run(1))
        assert run(10) == [] and run(50) == []  # unchanged, within the hour
        assert any("weekly.yaml:5:" in line for line in run(20, daemon=False))  # run: always
        file.write_text(BROKEN_WEEKLY + "keep: x\n")  # changed: at once
        assert any("keep" in line for line in run(55))
        assert run(70) == []
        assert any("weekly.yaml:5:" in line for line in run(116))  # an hour after the change
        sent = [f for f in alerter.errors if f.action == "policy-file"]
        assert len(sent) == 4  # the event follows the same rate (run's always)
