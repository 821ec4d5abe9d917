"""``cvmkeeper status`` against the emulator over HTTP, with a state file a real run wrote.

The state file comes from the daemon's own job logic (``SlotJobs.run_slot``) running the
real executor against the emulator, so status reads exactly what a daemon leaves behind.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.alerting import Failure, RecordingAlerter
from cvmkeeper.alerting.webhook import WebhookAlerter
from cvmkeeper.cli import cli
from cvmkeeper.core.naming import image_name
from cvmkeeper.executor import RegionLocks, run_once
from cvmkeeper.scheduler.jobs import RunContext, SlotJobs
from cvmkeeper.scheduler.state import StateStore
from executor.world import (
    DEST,
    REGION,
    SECRET_KEY,
    T0,
    A,
    B,
    World,
    fleet,
    policy,
    two_regions,
    world,
)
from support.http_capture import http_capture


def configure(w: World, **sentry: Any) -> Path:
    """Give the world's config a state_dir beside it and ``sentry`` settings."""
    document = yaml.safe_load(w.config_path.read_text())
    document["state_dir"] = "state"
    if sentry:
        document["sentry"] = sentry
    w.config_path.write_text(yaml.safe_dump(document))
    return w.root / "state"


def scheduled_run(w: World, state_dir: Path, hours: int) -> RecordingAlerter:
    """The daemon's scheduled run of ``hourly`` for the slot ``hours`` after T0."""
    setup = w.setup()
    alerter = RecordingAlerter()
    jobs = SlotJobs(
        RunContext(setup, w.client(), alerter),
        runner=run_once,
        region_locks=RegionLocks(),
        state=StateStore(state_dir),
        clock=lambda: T0 + timedelta(hours=hours, seconds=30),
        stop=threading.Event(),
    )
    jobs.run_slot("hourly", setup.policies[0].schedules[0])
    return alerter


def status(w: World, hours: float, *extra: str) -> Result:
    """``cvmkeeper status`` as if it were ``hours`` after T0."""
    when = (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")
    return CliRunner().invoke(cli, ["status", "--config", str(w.config_path), "--at", when, *extra])


def test_after_a_good_run_all_is_well_and_later_the_backups_are_stale(tmp_path: Path) -> None:
    with world(tmp_path, fleet(images=[{"id": "img-hand0001", "name": "golden"}]), policy()) as w:
        state_dir = configure(w)
        scheduled_run(w, state_dir, 0)

        morning = status(w, 0.5, "--json")
        assert morning.exit_code == 0, morning.output
        report = json.loads(morning.stdout)
        assert report["ok"] is True
        [entry] = report["policies"]
        assert entry["name"] == "hourly"
        assert entry["last_run"]["result"] == "ok"
        assert entry["last_run"]["slot"] == "2026-11-27T00:00:00Z"
        assert entry["next_run"] == "2026-11-27T01:00:00Z"
        [region] = report["regions"]
        assert (region["region"], region["quota"], region["used"], region["free"]) == (
            REGION,
            10,
            3,
            7,
        )
        assert (region["managed"], region["unmanaged"], region["low"]) == (2, 1, False)
        newest = {i["instance_id"]: i["newest_image_name"] for i in report["instances"]}
        assert newest == {A: image_name(A, T0), B: image_name(B, T0)}
        assert report["stale"] == [] and report["recent_errors"] == []

        text = status(w, 0.5)
        assert text.exit_code == 0
        assert "STALE BACKUPS (0)" in text.stdout and text.stdout.rstrip().endswith("all good")

        later = status(w, 3)  # no run for three hours: older than 2 x 1h
        assert later.exit_code == 1
        assert "STALE BACKUPS (2)" in later.stdout
        assert (
            f"{A} in {REGION}: newest NORMAL backup {image_name(A, T0)} is 3h old" in later.stdout
        )
        assert later.stdout.rstrip().endswith("needs attention")


def test_a_failed_run_its_errors_a_never_backed_up_instance_and_low_quota(
    tmp_path: Path,
) -> None:
    spec = fleet(
        quota=4,
        instances=[{"id": A, "not_supported": True}, {"id": B}],
        images=[{"id": "img-hand0001", "name": "golden"}],
    )
    with world(tmp_path, spec, policy(), quota=4) as w:
        state_dir = configure(w, quota_free_warning=3)
        alerter = scheduled_run(w, state_dir, 0)
        assert [f.tencent_code for f in alerter.errors] == ["InvalidInstance.NotSupported"]

        result = status(w, 0.5, "--json")
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert report["ok"] is False
        assert report["policies"][0]["last_run"]["result"] == "failed"
        [error] = report["recent_errors"]
        assert error["policy"] == "hourly" and "InvalidInstance.NotSupported" in error["message"]
        [stale] = report["stale"]
        assert (stale["instance_id"], stale["newest_slot"], stale["age_seconds"]) == (A, None, None)
        [region] = report["regions"]
        assert (region["used"], region["free"], region["low"]) == (2, 2, True)

        text = status(w, 0.5).stdout
        assert f"{A} in {REGION} has no NORMAL backup" in text
        assert "FAILED scheduled slot 2026-11-27T00:00:00Z" in text
        assert "RECENT ERRORS (1)" in text and "LOW" in text
        assert SECRET_KEY not in text


def test_without_a_state_file_status_still_reads_the_cloud(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        configure(w)
        result = status(w, 0.5)
        assert "none yet (the daemon has not run)" in result.stdout
        assert "never run" in result.stdout
        assert f"{REGION}: 0/10 images used, 10 free" in result.stdout
        assert result.exit_code == 1  # nothing was ever backed up: two stale instances


def test_a_broken_state_file_is_named_and_an_unknown_region_is_reported(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        state_dir = configure(w)
        state_dir.mkdir()
        (state_dir / "daemon-state.json").write_text("{not json")
        document = yaml.safe_load(w.config_path.read_text())
        document["regions"] = [REGION, "ap-nowhere"]
        w.config_path.write_text(yaml.safe_dump(document))
        result = status(w, 0.5, "--json")
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert "daemon-state.json" in report["state_file"]["problem"]
        errors = {r["region"]: r["error"] for r in report["regions"]}
        assert errors[REGION] is None
        assert "cannot read the inventory" in errors["ap-nowhere"]


def test_an_invalid_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "cvmkeeper.yaml"
    bad.write_text("image_quota: many\n")
    result = CliRunner().invoke(cli, ["status", "--config", str(bad)])
    assert result.exit_code == 2
    assert "image_quota" in result.output


def test_a_copy_only_destination_shows_its_copies_and_when_they_go_stale(
    tmp_path: Path,
) -> None:
    copying = policy(ids=[A], keep_last=3, copies=[{"region": DEST, "retention": {"keep_last": 2}}])
    with world(tmp_path, two_regions(), copying) as w:  # the config's regions: REGION only
        configure(w)
        first = run_once(w.setup(), w.client(), RecordingAlerter(), now=T0 + timedelta(minutes=1))
        assert first.ok, first.errors
        copy_name = image_name(A, T0)

        fresh = status(w, 0.5)
        assert fresh.exit_code == 0, fresh.output
        assert f"  {DEST}: 1/10 images used, 9 free (1 by cvmkeeper, 0 others)" in fresh.output
        assert (
            f"    copies hourly {A} from {REGION}: 1 held, newest {copy_name} (30m ago)"
            in fresh.output
        )
        assert "STALE COPIES (0)" in fresh.output

        late = status(w, 5, "--json")
        assert late.exit_code == 1
        report = json.loads(late.stdout)
        [copies] = report["copies"]
        assert (copies["region"], copies["source_region"], copies["held"]) == (DEST, REGION, 1)
        assert [c["instance_id"] for c in report["stale_copies"]] == [A]
        assert DEST in {r["region"] for r in report["regions"]}


def test_the_quota_is_the_accounts_own_unless_capped_and_both_are_shown(
    tmp_path: Path,
) -> None:
    """An account whose quota was raised to 25 is not silently held to 10 (issue #17)."""
    with world(tmp_path, fleet(quota=25), policy()) as w:
        document = yaml.safe_load(w.config_path.read_text())
        del document["image_quota"]
        w.config_path.write_text(yaml.safe_dump(document))
        uncapped = status(w, 0, "--json")
        [region] = json.loads(uncapped.stdout)["regions"]
        assert (region["quota"], region["account_quota"], region["quota_cap"]) == (25, 25, None)
        assert region["free"] == 25
        text = status(w, 0).stdout
        assert f"  {REGION}: 0/25 images used, 25 free" in text
        assert "    quota: account 25 (DescribeImageQuota), no cap (image_quota unset)" in text

        document["image_quota"] = 12
        w.config_path.write_text(yaml.safe_dump(document))
        capped = json.loads(status(w, 0, "--json").stdout)["regions"][0]
        assert (capped["quota"], capped["account_quota"], capped["quota_cap"]) == (12, 25, 12)
        assert "quota: account 25 (DescribeImageQuota), cap image_quota 12" in status(w, 0).stdout


def test_a_notification_channel_that_cannot_deliver_is_a_notifications_problem(
    tmp_path: Path,
) -> None:
    """issue #17: a dead webhook showed only in the journal. The real webhook channel,
    against a server answering 500, records its failure in the daemon's state file (as
    the daemon does); ``status`` names the channel, never the URL, and needs attention."""
    token = "hook-t0ken-0123456789abcdef"
    with world(tmp_path, fleet(), policy()) as w:
        state_dir = configure(w)
        scheduled_run(w, state_dir, 0)
        store = StateStore(state_dir)
        failed_at = T0 + timedelta(minutes=10)
        with http_capture(statuses=[500] * 3) as server:
            hook = WebhookAlerter(
                f"{server.url}/hooks/{token}",
                observer=lambda channel, reason: store.record_delivery(channel, reason, failed_at),
            )
            hook.error(Failure(policy="hourly", action="CreateImage", message="boom"))
            hook.close(15)

        text = status(w, 0.5)
        assert text.exit_code == 1, text.output
        assert "NOTIFICATIONS: 1 channel(s) cannot deliver" in text.stdout
        assert "  webhook: last delivery failed 2026-11-27T00:10:00Z (20m ago)" in text.stdout
        assert "HTTP 500" in text.stdout
        assert token not in text.stdout and server.url not in text.stdout
        assert text.stdout.rstrip().endswith("needs attention")

        report = json.loads(status(w, 0.5, "--json").stdout)
        assert report["ok"] is False
        failure = report["state_file"]["notification_failures"]["webhook"]
        assert failure["time"] == "2026-11-27T00:10:00Z" and "HTTP 500" in failure["reason"]

        first = status(w, 0.5, "--monitor").stdout.splitlines()[0]
        assert first.startswith("CVMKEEPER WARNING - notifications failing: webhook")

        store.record_delivery("webhook", None, failed_at + timedelta(minutes=5))  # delivered
        assert "NOTIFICATIONS" not in status(w, 0.5).stdout
