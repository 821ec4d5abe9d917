"""Rule 9 across hosts: the stop mark in the cloud, against the emulator over HTTP.

Every stop (``stop_start``, a ``force_poweroff`` create of a running instance) is marked on
the instance with the tag ``cvmkeeper:stopped-by`` through the Tag API before it is sent,
and the mark removed after the start. Every run reads the marks of its region: a
``STOPPED`` instance whose lease has ended is started again (whoever stopped it: its host
may be gone), one without a mark (a person's stop) or with a live lease (a peer's) is left
alone. The leases are measured against an injected clock (``lease_clock``), so no verdict
depends on the wall clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.core.stop_marker import STOPPED_BY_TAG, StopMarker, marker_value, parse_marker
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.executor import run_once
from cvmkeeper.executor.report import RunReport
from cvmkeeper.executor.stop_journal import JOURNAL_NAME
from executor.world import REGION, T0, A, B, World, fleet, policy, world

NOW = T0.replace(minute=1)
#: the wall-clock time the leases are measured against in these tests
LEASE_NOW = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
ENDED = marker_value(
    "host-gone", "4242-0123456789ab", LEASE_NOW - timedelta(hours=1), timedelta(minutes=30)
)
LIVE = marker_value(
    "host-busy", "4343-0123456789ab", LEASE_NOW - timedelta(minutes=5), timedelta(hours=1)
)


def run(w: World, alerter: RecordingAlerter | None = None, **options: Any) -> RunReport:
    return run_once(
        w.setup(),
        w.client(),
        alerter or RecordingAlerter(),
        now=NOW,
        lease_clock=lambda: LEASE_NOW,
        **options,
    )


def tags(w: World, instance_id: str) -> dict[str, str]:
    instances = w.state()["regions"][REGION]["instances"]
    item = next(i for i in instances if i["InstanceId"] == instance_id)
    return {t["Key"]: t["Value"] for t in item["Tags"]}


def marked(instance_id: str, mark: StopMarker | str, state: str = "STOPPED") -> dict[str, Any]:
    value = mark if isinstance(mark, str) else mark.value()
    return {"id": instance_id, "state": state, "tags": {STOPPED_BY_TAG: value}}


def writes_of(w: World, instance_id: str) -> list[str]:
    return [e["action"] for e in w.writes() if instance_id in e.get("InstanceIds", [])]


def test_a_stopped_instance_whose_lease_ended_is_started_and_unmarked(tmp_path: Path) -> None:
    spec = fleet(instances=[marked(A, ENDED), {"id": B}])
    with world(tmp_path, spec, policy(ids=[B])) as w:
        alerter = RecordingAlerter()
        report = run(w, alerter)
        assert report.ok, report.errors
        assert writes_of(w, A) == ["StartInstances", "UnTagResources"]
        assert w.instance_state(A) in ("STARTING", "RUNNING")
        assert STOPPED_BY_TAG not in tags(w, A)
        [warning] = [f for f in alerter.warnings if f.instance == A]
        assert warning.action == "StartInstances"
        assert "cvmkeeper on host-gone stopped it at 2026-12-03 17:00:00Z" in warning.message
        assert "its lease ended 2026-12-03 17:30:00Z" in warning.message


def test_a_person_stopped_instance_without_a_mark_is_left_alone(tmp_path: Path) -> None:
    spec = fleet(instances=[{"id": A, "state": "STOPPED"}, {"id": B}])
    with world(tmp_path, spec, policy(ids=[B])) as w:
        report = run(w)
        assert report.ok, report.errors
        assert writes_of(w, A) == []
        assert w.instance_state(A) == "STOPPED"


def test_a_live_lease_is_left_to_its_holder(tmp_path: Path) -> None:
    spec = fleet(instances=[marked(A, LIVE), {"id": B}])
    with world(tmp_path, spec, policy(ids=[B])) as w:
        report = run(w)
        assert report.ok, report.errors
        assert writes_of(w, A) == []
        assert w.instance_state(A) == "STOPPED"
        assert tags(w, A)[STOPPED_BY_TAG] == LIVE.value()
        # one second after the lease ends, the next run starts it
        report = run_once(
            w.setup(),
            w.client(),
            RecordingAlerter(),
            now=NOW,
            lease_clock=lambda: LIVE.lease_until,
        )
        assert writes_of(w, A) == ["StartInstances", "UnTagResources"]


def test_a_stale_mark_on_a_running_instance_is_removed(tmp_path: Path) -> None:
    spec = fleet(instances=[marked(A, ENDED, state="RUNNING"), {"id": B}])
    with world(tmp_path, spec, policy(ids=[B])) as w:
        assert run(w).ok
        assert writes_of(w, A) == ["UnTagResources"]
        assert STOPPED_BY_TAG not in tags(w, A)


def test_a_mark_cvmkeeper_did_not_write_is_left_alone(tmp_path: Path) -> None:
    spec = fleet(instances=[marked(A, "someone"), {"id": B}])
    with world(tmp_path, spec, policy(ids=[B])) as w:
        assert run(w).ok
        assert writes_of(w, A) == []
        assert w.instance_state(A) == "STOPPED"


def test_the_mark_carries_host_owner_and_lease_while_stopped(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A], consistency="stop_start"), stop_lease="45m") as w:
        seen: list[str] = []

        def watch(message: str) -> None:
            if "stopping" in message:
                seen.append(tags(w, A)[STOPPED_BY_TAG])

        report = run(w, progress=watch)
        assert report.ok, report.errors
        [value] = seen
        mark = parse_marker(value)
        assert mark is not None
        assert mark.lease_until - mark.stopped_at == timedelta(minutes=45)
        assert mark.stopped_at == LEASE_NOW
        assert STOPPED_BY_TAG not in tags(w, A)  # removed after the start


def test_an_instance_that_cannot_be_marked_is_not_stopped(tmp_path: Path) -> None:
    spec = fleet(faults={"TagResources": {"InternalError": 1.0}})
    with world(tmp_path, spec, policy(ids=[A], consistency="stop_start")) as w:
        alerter = RecordingAlerter()
        report = run(w, alerter)
        [outcome] = [o for o in report.outcomes if o.instance_id == A]
        assert outcome.status == "failed"
        assert "cannot mark it in the cloud" in (outcome.error or "")
        assert "name/tag:TagResources" in (outcome.error or "")
        assert "StopInstances" not in writes_of(w, A)
        assert w.instance_state(A) == "RUNNING"
        assert any(e.instance == A for e in alerter.errors)


def test_force_poweroff_that_leaves_the_instance_stopped_starts_it_again(tmp_path: Path) -> None:
    spec = fleet(force_poweroff_leaves="stopped")
    with world(tmp_path, spec, policy(ids=[A, B], consistency="force_poweroff")) as w:
        initial = w.state()
        report = run(w)
        assert report.ok, report.errors
        for instance in (A, B):
            assert writes_of(w, instance) == [
                "TagResources",
                "CreateImage",
                "StartInstances",
                "UnTagResources",
            ], instance
            assert w.instance_state(instance) in ("STARTING", "RUNNING")
            assert STOPPED_BY_TAG not in tags(w, instance)
        creates = [e for e in w.writes() if e["action"] == "CreateImage"]
        assert all(e.get("PoweredOff") for e in creates)  # the switch did power them off
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)


def test_force_poweroff_leaves_a_stopped_instance_stopped(tmp_path: Path) -> None:
    spec = fleet(instances=[{"id": A, "state": "STOPPED"}], force_poweroff_leaves="stopped")
    with world(tmp_path, spec, policy(ids=[A], consistency="force_poweroff")) as w:
        assert run(w).ok
        assert writes_of(w, A) == ["CreateImage"]
        assert w.instance_state(A) == "STOPPED"


def test_the_invariants_owe_a_start_to_a_powered_off_instance(tmp_path: Path) -> None:
    spec = fleet(force_poweroff_leaves="stopped")
    with world(tmp_path, spec, policy(ids=[A])) as w:
        initial = w.state()
        client = w.client()
        from cvmkeeper.cloud.models import CreateImageRequest

        client.create_image(REGION, CreateImageRequest("by-hand", A, force_poweroff=True))
        assert w.instance_state(A) == "STOPPED"
        [violation] = check_invariants(w.state(), initial)
        assert violation.rule == "not_restarted"


def journal_entry(state_dir: Path, instance_id: str, owner: str) -> None:
    """This host's journal as a run SIGKILLed after ``StopInstances`` leaves it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    entry = {
        "region": REGION,
        "instance_id": instance_id,
        "stopped_at": "2026-12-03T17:55:00Z",
        "owner": owner,
        "pid": int(owner.split("-", maxsplit=1)[0]),
        "host": "backup-1",
    }
    (state_dir / JOURNAL_NAME).write_text(json.dumps({"version": 1, "stopped": [entry]}))


def test_the_journal_leaves_an_instance_a_peer_marked_anew(tmp_path: Path) -> None:
    spec = fleet(instances=[marked(A, LIVE), {"id": B}])
    with world(tmp_path, spec, policy(ids=[B])) as w:
        journal_entry(w.root / "state", A, "4242-0123456789ab")  # our dead run's stop
        assert run(w).ok
        assert writes_of(w, A) == []  # the live mark is another process's: left to it
        assert w.instance_state(A) == "STOPPED"


def test_the_journal_starts_its_own_stop_at_once_despite_the_live_lease(tmp_path: Path) -> None:
    spec = fleet(instances=[marked(A, LIVE), {"id": B}])
    with world(tmp_path, spec, policy(ids=[B])) as w:
        journal_entry(w.root / "state", A, LIVE.owner)  # the mark is this host's own stop
        alerter = RecordingAlerter()
        assert run(w, alerter).ok
        assert writes_of(w, A) == ["StartInstances", "UnTagResources"]
        assert STOPPED_BY_TAG not in tags(w, A)
        [warning] = [f for f in alerter.warnings if f.instance == A]
        assert "pid 4343 on backup-1" in warning.message
