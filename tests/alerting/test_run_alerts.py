"""The issue's "Done when" at run level: the real executor against the emulator over HTTP,
the real sentry-sdk sending to a local capture server, and the daemon's job logic.

The alerter-level cases (tags, fingerprints, check-in payloads, scrubbing of one event)
are in ``test_sentry.py``; the manual ``cvmkeeper run`` check-ins in
``tests/cli/test_run_cmd.py``. Here: whole runs produce exactly the events they should.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.alerting import SentryAlerter, build_alerter, monitor_slug
from cvmkeeper.emulator.server import RunningEmulator
from cvmkeeper.executor import RegionLocks, RunReport, run_once
from cvmkeeper.scheduler.jobs import RunContext, SlotJobs
from cvmkeeper.scheduler.state import StateStore
from executor.world import REGION, T0, A, B, World, fleet, managed, policy, world
from support.sentry_capture import SentryCapture

FINGERPRINT_NOT_FOUND = ["cvmkeeper", "hourly", "CreateImage", "InvalidInstanceId.NotFound"]


def at(hours: int, minutes: int = 1) -> Any:
    """A moment just after the slot ``hours`` after T0."""
    return T0 + timedelta(hours=hours, minutes=minutes)


def terminate_when_planned(emu: RunningEmulator, instance_id: str) -> Callable[[str], None]:
    """A progress callback that terminates ``instance_id`` in the emulator right after the
    run planned its creates: the instance was listed by DescribeInstances, and is gone by
    the time CreateImage is sent (someone deleted it in the console mid-run). The emulator
    has no API to terminate an instance, so its region state is changed under its lock."""

    def progress(message: str) -> None:
        if "to create" in message:
            core: Any = emu.core
            with core._lock:
                core._regions[REGION].instances.pop(instance_id, None)

    return progress


@pytest.fixture
def sentry(capture: SentryCapture) -> Iterator[SentryAlerter]:
    """A SentryAlerter (environment ``test``) sending to the capture server."""
    alerter = SentryAlerter(capture.dsn, environment="test")
    yield alerter
    alerter.close(timeout=5)


def run(w: World, alerter: Any, now: Any, **options: Any) -> RunReport:
    """One run of the world's config through the real executor."""
    return run_once(w.setup(), w.client(), alerter, now=now, **options)


def test_an_instance_not_found_run_is_one_error_event_with_tags_and_fingerprint(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    fresh = [managed(A, T0, "img-aaaa0000"), managed(B, T0, "img-bbbb0000")]
    with world(tmp_path, fleet(images=fresh), policy()) as w:
        report = run(w, sentry, at(1), progress=terminate_when_planned(w.emu, A))
        sentry.flush(timeout=5)

        assert not report.ok and not report.policy_ok("hourly")
        [failed] = [o for o in report.outcomes if not o.ok]
        assert (failed.instance_id, failed.tencent_code) == (A, "InvalidInstanceId.NotFound")
        [event] = capture.events()
        assert event["level"] == "error"
        assert event["fingerprint"] == FINGERPRINT_NOT_FOUND
        assert event["tags"] == {
            "policy": "hourly",
            "instance": A,
            "region": REGION,
            "action": "CreateImage",
            "tencent_code": "InvalidInstanceId.NotFound",
            "request_id": failed.request_id,
        }
        assert failed.request_id  # the emulator's RequestId, carried all the way


@pytest.mark.slow
def test_twenty_instance_not_found_runs_stay_one_fingerprint(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    fresh = [managed(A, T0, "img-aaaa0000"), managed(B, T0, "img-bbbb0000")]
    with world(tmp_path, fleet(images=fresh), policy()) as w:
        for _ in range(20):
            w.emu.core.reset()  # the instance is back, and vanishes again mid-run
            run(w, sentry, at(1), progress=terminate_when_planned(w.emu, A))
        sentry.flush(timeout=5)

        events = capture.events()
        assert len(events) == 20
        assert {tuple(e["fingerprint"]) for e in events} == {tuple(FINGERPRINT_NOT_FOUND)}
        assert len({e["tags"]["request_id"] for e in events}) == 20  # twenty real failures


def scheduled_jobs(w: World, alerter: Any, now: Any) -> SlotJobs:
    """The daemon's job runner with the real executor, as ``cvmkeeper daemon`` builds it."""
    return SlotJobs(
        RunContext(w.setup(), w.client(), alerter),
        runner=run_once,
        region_locks=RegionLocks(),
        state=StateStore(tmp_state(w)),
        clock=lambda: now,
        stop=threading.Event(),
    )


def tmp_state(w: World) -> Path:
    """The state directory of the world (beside its config)."""
    return w.root / "state"


def test_a_good_scheduled_run_checks_in_in_progress_then_ok_with_its_monitor(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        setup = w.setup()
        jobs = scheduled_jobs(w, sentry, at(2, minutes=0))
        jobs.run_slot("hourly", setup.policies[0].schedules[0])
        sentry.flush(timeout=5)

        assert len(w.image_names()) == 2
        checkins = capture.checkins()
        assert [(c["monitor_slug"], c["status"]) for c in checkins] == [
            (monitor_slug("hourly"), "in_progress"),
            (monitor_slug("hourly"), "ok"),
        ]
        assert checkins[0]["check_in_id"] == checkins[1]["check_in_id"]
        for checkin in checkins:
            config = checkin["monitor_config"]
            assert config["schedule"] == {"type": "interval", "value": 1, "unit": "hour"}
            assert (config["timezone"], config["checkin_margin"], config["max_runtime"]) == (
                "UTC",
                5,
                60,
            )
            assert (config["failure_issue_threshold"], config["recovery_threshold"]) == (1, 1)
        assert checkins[1]["duration"] >= 0
        assert capture.events() == []  # a good run with fresh backups pages nobody


def test_a_failing_scheduled_run_checks_in_error_and_sends_its_error(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    spec = fleet(instances=[{"id": A, "not_supported": True}, {"id": B}])
    with world(tmp_path, spec, policy()) as w:
        setup = w.setup()
        jobs = scheduled_jobs(w, sentry, at(2, minutes=0))
        jobs.run_slot("hourly", setup.policies[0].schedules[0])
        sentry.flush(timeout=5)

        assert [c["status"] for c in capture.checkins()] == ["in_progress", "error"]
        [event] = capture.events()  # the instance that has no backup at all is not
        assert event["level"] == "error"  # reported a second time as stale
        assert event["tags"]["tencent_code"] == "InvalidInstance.NotSupported"
        assert event["tags"]["instance"] == A


def stale_world(tmp_path: Path) -> Any:
    """B hourly (due), A daily with catch-up off and its newest backup three days old."""
    old = managed(A, T0 - timedelta(days=3), "img-aaaa0old", policy="daily")
    daily = policy("daily", ids=[A], schedules=[{"every": "1d"}], catch_up="off")
    return world(tmp_path, fleet(images=[old]), policy(ids=[B]), daily)


def test_a_stale_instance_after_a_run_is_one_warning_event_per_run_one_fingerprint(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    with stale_world(tmp_path) as w:
        first = run(w, sentry, at(3))  # a catch-up run, as at daemon start: all policies
        second = run(w, sentry, at(3, minutes=20))
        sentry.flush(timeout=5)

        assert first.ok and second.ok  # the run itself went well: B's slot was made
        events = capture.events()
        assert len(events) == 2 and {e["level"] for e in events} == {"warning"}
        assert {tuple(e["fingerprint"]) for e in events} == {
            ("cvmkeeper", "daily", "freshness", "-")
        }
        tags = events[0]["tags"]
        assert (tags["policy"], tags["instance"], tags["region"], tags["action"]) == (
            "daily",
            A,
            REGION,
            "freshness",
        )
        assert "img-aaaa0old" in events[0]["extra"]["newest_image"]
        assert "is 3d3h1m old" in events[0]["message"]
        assert "is 3d3h20m old" in events[1]["message"]
        assert len(w.image_names()) == 2  # B's slot was made; A's old backup is untouched


def test_a_full_region_after_a_run_is_a_warning_grouped_by_region(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    hand = [{"id": f"img-hand000{n}", "name": f"golden-{n}"} for n in range(9)]
    with world(tmp_path, fleet(images=hand), policy(ids=[A], keep_last=1)) as w:
        first = run(w, sentry, at(0))  # 9 + the new one: 0 of 10 free
        assert len(w.images()) == 10
        w.emu.core.reset()
        second = run(w, sentry, at(0))  # the same again: the same Sentry issue
        sentry.flush(timeout=5)

        assert first.ok and second.ok  # the backups are fine; the room is what is short
        events = capture.events()
        assert len(events) == 2 and {e["level"] for e in events} == {"warning"}
        assert {tuple(e["fingerprint"]) for e in events} == {
            ("cvmkeeper", "cvmkeeper", "quota", "-", REGION)
        }
        assert events[0]["tags"] == {"policy": "cvmkeeper", "region": REGION, "action": "quota"}
        assert "0 of 10 custom images free" in events[0]["message"]


def test_a_dry_run_sends_no_health_warning(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    with stale_world(tmp_path) as w:
        report = run(w, sentry, at(3), dry_run=True)
        sentry.flush(timeout=5)
        assert report.dry_run and capture.events() == []


@pytest.mark.parametrize("in_environment", [False, True], ids=["config-file", "and-env"])
def test_a_canary_secret_key_never_leaves_the_process_during_a_failing_run(
    tmp_path: Path,
    capture: SentryCapture,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    in_environment: bool,
) -> None:
    """The key is in the file the config names (and the environment), and in the message
    of an exception that kills the region's run: the error event carries that exception."""
    canary = "Zq" + uuid.uuid4().hex  # nothing in its shape says "secret"
    spec = fleet(instances=[{"id": A, "not_supported": True}, {"id": B}])
    spec["credentials"]["secret_key"] = canary  # the emulator accepts only the canary
    with world(tmp_path, spec, policy()) as w:
        (w.root / "secret_key").write_text(canary + "\n")  # the file the config names
        if in_environment:
            monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", canary)
        monkeypatch.setenv("SENTRY_DSN", capture.dsn)
        setup = w.setup()
        alerter = build_alerter(setup.config.sentry)
        assert isinstance(alerter, SentryAlerter)
        from cvmkeeper.cli.common import cloud_client

        client = cloud_client(setup.config)  # signs with the key read from the file

        def broken_listing(region: str) -> list[Any]:
            raise RuntimeError(f"listing failed: {canary}")  # not a CloudError: unexpected

        monkeypatch.setattr(client, "list_instances", broken_listing)
        try:
            caplog.set_level(logging.INFO)
            report = run_once(setup, client, alerter, now=at(0))
            assert not report.ok  # the region failed: an error event with the exception
            alerter.flush(timeout=5)
        finally:
            alerter.close(timeout=5)

        assert capture.events()
        assert any(r.exc_info and canary in str(r.exc_info[1]) for r in caplog.records)
        sent = capture.all_bytes()
        assert canary.encode() not in sent
        assert b"listing failed: ***" in sent


def test_an_unreadable_region_is_one_error_event_per_cause_naming_every_missed_slot(
    tmp_path: Path, capture: SentryCapture, sentry: SentryAlerter
) -> None:
    """issue 19: the region's reads fail after retries. Every due slot is a failed outcome
    (the summary counts each), but the cause is one Sentry event, fingerprinted by region
    and cause, whose body and tags name the missed slots, instances and policies; a second
    run groups under the same fingerprint; the scheduled check-in still ends in error."""
    spec = fleet(faults={"DescribeImages": {"InternalError": 1.0}})
    tagged = policy("tagged", ids=[], targets={"tags": {"env": "prod"}})
    with world(tmp_path, spec, policy(ids=[A, B]), tagged) as w:
        report = run(w, sentry, at(0))
        sentry.flush(timeout=5)
        assert sorted((o.policy, o.instance_id, o.status) for o in report.outcomes) == [
            ("hourly", A, "failed"),
            ("hourly", B, "failed"),
            ("tagged", "tag env=prod", "failed"),
        ]
        [event] = [e for e in capture.events() if e["level"] == "error"]
        fingerprint = ["cvmkeeper", "cvmkeeper", "DescribeImages", "InternalError", REGION]
        assert event["fingerprint"] == [*fingerprint, "unreadable"]
        assert event["tags"]["region"] == REGION
        assert event["tags"]["policies"] == "hourly,tagged"
        assert event["tags"]["missed_slots"] == "3"
        body = event["message"]
        assert isinstance(body, str)
        for name in (A, B, "tag env=prod", "2026-11-27T00:00Z", "hourly", "tagged"):
            assert name in body
        assert event["extra"]["missed_slots"].count("\n") == 2

        jobs = scheduled_jobs(w, sentry, at(1, minutes=0))
        jobs.run_slot("hourly", w.setup().policies[0].schedules[0])
        sentry.flush(timeout=5)
        errors = [e for e in capture.events() if e["level"] == "error"]
        assert len(errors) == 2  # one per run, never one per slot
        assert {tuple(e["fingerprint"]) for e in errors} == {(*fingerprint, "unreadable")}
        assert [c["status"] for c in capture.checkins()] == ["in_progress", "error"]
