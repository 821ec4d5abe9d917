"""``cvmkeeper run`` end to end: CliRunner, real config files, the emulator over HTTP."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from cvmkeeper.core.naming import image_name
from executor.world import (
    REGION,
    SECRET_KEY,
    T0,
    A,
    B,
    World,
    fleet,
    managed,
    policy,
    unmanaged,
    world,
)


def at(hours: int, minutes: int = 1) -> str:
    """An ``--at`` value just after the slot ``hours`` after T0."""
    return (T0 + timedelta(hours=hours, minutes=minutes)).strftime("%Y-%m-%dT%H:%MZ")


def invoke(w: World, *args: str) -> Result:
    """Run ``cvmkeeper run`` on the world's config."""
    return CliRunner().invoke(cli, ["run", "--config", str(w.config_path), *args])


def report_of(result: Result) -> dict[str, Any]:
    """The JSON report printed on stdout."""
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.mark.slow
def test_twelve_hourly_runs_keep_quota_never_touch_unmanaged_and_keep_four_each(
    tmp_path: Path,
) -> None:
    hand = [unmanaged("img-hand0001", "golden-1"), unmanaged("img-hand0002", "golden-2")]
    with world(tmp_path, fleet(images=hand), policy(keep_last=4)) as w:
        for hour in range(12):
            result = invoke(w, "--at", at(hour), "--json", "--no-alerts")
            assert result.exit_code == 0, result.output
            assert report_of(result)["ok"]
            assert len(w.images()) <= 10
        count = peak = 2
        for entry in w.writes():
            assert not {"img-hand0001", "img-hand0002"} & set(entry.get("ImageIds", []))
            if entry["result"] == "ok":
                count += {"CreateImage": 1, "DeleteImages": -len(entry.get("ImageIds", []))}.get(
                    entry["action"], 0
                )
            peak = max(peak, count)
        assert peak <= 10
        newest = {image_name(i, T0 + timedelta(hours=h)) for i in (A, B) for h in range(8, 12)}
        final = w.images()
        assert {i["ImageName"] for i in final} == newest | {"golden-1", "golden-2"}
        assert {i["ImageState"] for i in final} == {"NORMAL"}


def test_run_twice_for_the_same_slot_makes_no_api_write_the_second_time(
    tmp_path: Path,
) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        first = invoke(w, "--at", at(0), "--no-alerts")
        assert first.exit_code == 0, first.output
        assert f"{REGION}: 2 made, 0 already there, 0 failed, 0 deleted" in first.stdout
        assert "ok: 2 image(s) made" in first.stdout
        writes = w.writes()
        second = invoke(w, "--at", at(0, 20), "--json", "--no-alerts")
        assert second.exit_code == 0, second.output
        assert w.writes() == writes
        assert [o["status"] for o in report_of(second)["outcomes"]] == ["exists", "exists"]


def test_progress_lines_go_to_stderr_as_plain_lines(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        result = invoke(w, "--at", at(0), "--no-alerts", "--verbose")
        assert result.exit_code == 0
        lines = result.stderr.splitlines()
        assert any(line.startswith(f"{REGION}: created ") for line in lines)
        assert any(line.endswith("is NORMAL") for line in lines)
        assert "\r" not in result.stderr and "\x1b" not in result.stderr
        # without --verbose: the run-level lines only, no line per image
        quiet = invoke(w, "--at", at(1), "--no-alerts")
        assert quiet.exit_code == 0
        assert any(line.startswith(f"{REGION}: quota 10") for line in quiet.stderr.splitlines())
        assert not any(
            " created " in line or line.endswith("is NORMAL") for line in quiet.stderr.splitlines()
        )
        # the short summary: counts per region and the totals, no line per image
        assert quiet.stdout.splitlines() == [
            f"{REGION}: 1 made, 0 already there, 0 failed, 0 deleted",
            "ok: 1 image(s) made, 0 deleted, 0 slot(s) without a NORMAL image, 0 warning(s), "
            "0 error(s)",
            "(--verbose or --json lists every image)",
        ]


def test_a_catch_up_line_says_missing_only_when_the_image_is_missing(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        late = invoke(w, "--at", at(0, 20), "--no-alerts", "-v")  # 20 min late: a catch-up
        assert late.exit_code == 0, late.output
        head = (
            f"{REGION}: hourly: catch-up: slot 2026-11-27T00:00Z is within the catch-up window (1h)"
        )
        assert f"{head}; an image of it is missing" in late.stderr.splitlines()
        assert late.stdout.startswith("created ")
        again = invoke(w, "--at", at(0, 30), "--no-alerts", "--verbose")
        assert again.exit_code == 0, again.output
        assert f"{head}; its images exist" in again.stderr.splitlines()
        assert "missing" not in again.stderr
        assert again.stdout.startswith("exists ")


def test_a_delete_says_why_in_words(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A], keep_last=1)) as w:
        assert invoke(w, "--at", at(0), "--no-alerts").exit_code == 0
        [first] = w.images()
        result = invoke(w, "--at", at(1), "--no-alerts", "--verbose")
        assert result.exit_code == 0, result.output
        name, image_id = image_name(A, T0), first["ImageId"]
        assert first["ImageName"] == name
        why = "expired, kept by no retention rule"
        assert f"deleted  {REGION} {name} ({image_id}): {why}" in result.stdout.splitlines()
        assert f"{REGION}: deleted {name} ({image_id}): {why}" in result.stderr.splitlines()
        assert "expire:" not in result.output


def test_a_failed_step_exits_1_and_is_reported(tmp_path: Path) -> None:
    spec = fleet(instances=[{"id": A, "not_supported": True}, {"id": B}])
    with world(tmp_path, spec, policy()) as w:
        result = invoke(w, "--at", at(0), "--json", "--no-alerts")
        assert result.exit_code == 1
        outcomes = {o["instance_id"]: o for o in report_of(result)["outcomes"]}
        assert outcomes[A]["status"] == "failed"
        assert outcomes[A]["tencent_code"] == "InvalidInstance.NotSupported"
        assert outcomes[A]["request_id"]
        assert outcomes[B]["status"] == "created"


def test_dry_run_changes_nothing_and_prints_the_plan(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        result = invoke(w, "--at", at(0), "--dry-run")
        assert result.exit_code == 0, result.output
        assert w.writes() == []
        assert f"create {image_name(A, T0)}" in result.stdout
        assert "dry run: nothing was changed" in result.stdout


def test_policy_option_makes_the_current_slot_even_if_not_due(tmp_path: Path) -> None:
    document = policy(ids=[A], schedules=[{"cron": "0 3 * * *"}], catch_up="off")
    with world(tmp_path, fleet(), document) as w:
        idle = invoke(w, "--at", at(12), "--json", "--no-alerts")
        assert idle.exit_code == 0 and report_of(idle)["outcomes"] == []
        result = invoke(w, "--at", at(12), "--policy", "hourly", "--json", "--no-alerts")
        assert result.exit_code == 0, result.output
        [outcome] = report_of(result)["outcomes"]
        assert (outcome["status"], outcome["slot"]) == ("created", "2026-11-27T03:00:00Z")


def test_unknown_policy_region_and_bad_config_exit_2(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        unknown = invoke(w, "--policy", "nope")
        assert unknown.exit_code == 2 and "no policy named nope" in unknown.stderr
        region = invoke(w, "--region", "eu-frankfurt")
        assert region.exit_code == 2 and "eu-frankfurt" in region.stderr
        # a bad daemon config file is still refused (a bad policy file beside good ones is
        # not: test_run_broken_policy.py, issue 19)
        w.config_path.write_text(w.config_path.read_text() + "image_quota: lots\n")
        broken = invoke(w)
        assert broken.exit_code == 2 and "cvmkeeper.yaml" in broken.stderr
        assert w.writes() == []


def test_no_secret_in_any_output(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        result = invoke(w, "--at", at(0), "--json", "--no-alerts")
        assert SECRET_KEY not in result.output


@pytest.mark.slow
def test_a_manual_run_sends_events_and_check_ins_unless_no_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentry_sdk

    from support.sentry_capture import sentry_capture_server

    spec = fleet(instances=[{"id": A, "not_supported": True}, {"id": B}])
    try:
        with sentry_capture_server() as capture, world(tmp_path, spec, policy()) as w:
            monkeypatch.setenv("SENTRY_DSN", capture.dsn)
            quiet = invoke(w, "--at", at(0), "--no-alerts")
            assert quiet.exit_code == 1
            assert capture.requests == []
            result = invoke(w, "--at", at(1))
            assert result.exit_code == 1
            assert capture.wait_for(lambda c: len(c.checkins()) >= 2 and c.events())
            statuses = [(c["monitor_slug"], c["status"]) for c in capture.checkins()]
            assert statuses == [("hourly", "in_progress"), ("hourly", "error")]
            [event] = capture.events()
            tags = event["tags"]
            assert (tags["policy"], tags["instance"], tags["region"]) == ("hourly", A, REGION)
            assert tags["tencent_code"] == "InvalidInstance.NotSupported"
            assert SECRET_KEY.encode() not in capture.all_bytes()
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)


def test_delete_reasons_of_every_kind_read_as_words() -> None:
    from cvmkeeper.executor.report import delete_reason_text

    early = "expired; deleted before the creates to make room in the quota"
    assert delete_reason_text("expire", early) == (
        "expired, kept by no retention rule; deleted before the creates to make room in the quota"
    )
    evicted = "evicted: quota full, room for 261127-0100-aaaaaaaa"
    assert delete_reason_text("evict", evicted) == evicted
    assert delete_reason_text("cleanup", "CREATEFAILED: clean up") == "CREATEFAILED: clean up"


def test_an_image_that_only_looks_managed_is_never_deleted_and_is_reported(
    tmp_path: Path,
) -> None:
    """issue 19: anyone allowed to tag and rename can make an image look managed; only an
    image the daemon's own identity created (ImageCreator) is ever deleted."""
    ours = [managed(A, T0 + timedelta(hours=h), f"img-ours000{h}") for h in (0, 1)]
    forged = {**managed(A, T0 - timedelta(hours=5), "img-forged01"), "creator": "100000000666"}
    spec = fleet(instances=[{"id": A}], images=[*ours, forged])
    with world(tmp_path, spec, policy(ids=(A,), keep_last=1)) as w:
        result = invoke(w, "--at", at(2), "--no-alerts")
        deleted = {
            i for e in w.writes() if e["action"] == "DeleteImages" for i in e["params"]["ImageIds"]
        }
        left = {image["ImageId"] for image in w.images()}
    assert result.exit_code == 0, result.output
    assert "img-ours0000" in deleted  # retention still works for our own images
    assert "img-forged01" not in deleted and "img-forged01" in left
    assert "img-forged01" in result.output and "created by 100000000666" in result.output


def test_the_summary_tells_a_failed_image_cleaned_up_from_a_backup_rotated(
    tmp_path: Path,
) -> None:
    """Every image ends CREATEFAILED and is cleaned up: nothing a person would call a
    backup was deleted, and the summary says so instead of a bare "2 deleted"."""
    spec = fleet()
    spec["timing"]["create_failed_probability"] = 1.0
    with world(tmp_path, spec, policy()) as w:
        result = invoke(w, "--at", at(0), "--no-alerts")
        assert result.exit_code == 1
        cleaned = "2 deleted (2 of them failed images cleaned up)"
        assert f"{REGION}: 0 made, 0 already there, 2 failed, {cleaned}" in result.stdout
        assert f"FAILED: 0 image(s) made, {cleaned}, 2 slot(s) without" in result.stdout
