"""Restore drills over real HTTP with the official SDK against the emulator: a drill that
passes (RUNNING and a real TCP connect to a local listener), a drill whose instance never
becomes RUNNING (alerted, terminated), and the lease sweep that terminates a dead host's
leftover while an untagged instance and an unexpired drill are left alone."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cli import cli
from cvmkeeper.core.drill import DRILL_TAG, LEASE_TAG
from cvmkeeper.emulator.invariants import check_invariants, check_restore_untouched
from cvmkeeper.executor import run_once
from cvmkeeper.restore.actions import Waiting
from cvmkeeper.restore.drill import run_drills, sweep
from executor.world import REGION, T0, A, B, fleet, managed, policy, world

IMAGES = (managed(A, T0, "img-aaaa0001"), managed(B, T0, "img-bbbb0001"))


def drill(port: int = 0, **extra: Any) -> dict[str, Any]:
    """A policy's drill key in the emulator's region."""
    document: dict[str, Any] = {
        "every": "7d",
        "zone": f"{REGION}-3",
        "vpc_id": "vpc-drill001",
        "subnet_id": "subnet-drill001",
        "security_group_ids": ["sg-drill001"],
        "instance_type": "S5.SMALL2",
        "timeout": "1m",
        **extra,
    }
    if port:
        document["check"] = {"tcp_port": port}
    return document


def spec(
    instances: tuple[dict[str, Any], ...] = ({"id": A}, {"id": B}), **launch: Any
) -> dict[str, Any]:
    """A fleet whose new instances get 127.0.0.1 (the test's listener is reachable)."""
    return fleet(
        instances=instances,
        images=IMAGES,
        launch={"private_ip": "127.0.0.1", **launch},
    )


@contextmanager
def listener() -> Iterator[tuple[int, list[int]]]:
    """A TCP listener on 127.0.0.1, port 0; yields (port, accepted connections count box)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    accepted = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            accepted[0] += 1
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def run_drill(w: Any, *args: str) -> Result:
    """``cvmkeeper drill`` against the world's config."""
    return CliRunner().invoke(cli, ["drill", "--config", str(w.config_path), "--no-alerts", *args])


def instances(w: Any) -> dict[str, dict[str, Any]]:
    """The region's instances by id."""
    return {i["InstanceId"]: i for i in w.state()["regions"][REGION]["instances"]}


def test_a_drill_passes_checks_the_port_and_terminates_its_instance(tmp_path: Path) -> None:
    with (
        listener() as (port, accepted),
        world(tmp_path, spec(), policy(ids=[A, B], drill=drill(port))) as w,
    ):
        before = w.state()
        result = run_drill(w, "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        [outcome] = document["drills"]  # max_per_run 1
        assert outcome["ok"] is True and outcome["terminated"] is True
        assert outcome["instance_id"] == A and outcome["image_id"] == "img-aaaa0001"
        assert 0 < outcome["seconds_to_running"] <= outcome["seconds_to_ready"]
        # the TCP check really connected: the kernel completed the handshake, and the
        # listener thread accepts it (bounded wait: under load it may lag behind)
        deadline = time.monotonic() + 5
        while accepted[0] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert accepted[0] >= 1
        launched = [e for e in w.writes() if e["action"] == "RunInstances"]
        [run] = launched
        tags = {t["Key"]: t["Value"] for s in run["params"]["TagSpecification"] for t in s["Tags"]}
        assert tags[DRILL_TAG] == "hourly" and LEASE_TAG in tags
        assert run["params"]["Placement"] == {"Zone": f"{REGION}-3"}
        assert run["params"]["InstanceType"] == "S5.SMALL2"
        [terminate] = [e for e in w.writes() if e["action"] == "TerminateInstances"]
        assert terminate["InstanceIds"] == [outcome["drill_instance_id"]]
        assert (
            set(instances(w)) == {A, B}
            or instances(w)[outcome["drill_instance_id"]]["InstanceState"] == "TERMINATING"
        )
        # the next drill takes the instance drilled longest ago: B, never drilled
        second = json.loads(run_drill(w, "--json").stdout)
        assert [d["instance_id"] for d in second["drills"]] == [B]
        state = json.loads((tmp_path / "state" / "drills.json").read_text())
        assert set(state["policies"]["hourly"]["instances"]) == {A, B}
        status = CliRunner().invoke(cli, ["status", "--config", str(w.config_path)])
        assert "    drill: " in status.stdout and f"{B} OK, ready in" in status.stdout
        status_json = CliRunner().invoke(cli, ["status", "--config", str(w.config_path), "--json"])
        [hourly] = json.loads(status_json.stdout)["policies"]
        assert hourly["last_drill"]["ok"] is True
        time.sleep(0.2)  # the terminations finish (terminate_seconds 0.1)
        assert check_invariants(w.state(), before) == []  # no drill instance left
        assert check_restore_untouched(before, w.state()) == []


def test_a_drill_whose_instance_never_runs_is_alerted_and_terminated(tmp_path: Path) -> None:
    with world(tmp_path, spec(outcome="launch_failed"), policy(ids=[A], drill=drill())) as w:
        alerter = RecordingAlerter()
        report = run_drills(
            w.setup(),
            w.client(),
            alerter,
            datetime.now(UTC),
            waiting=Waiting(seconds=5, poll_seconds=0.1),
        )
        [outcome] = report.outcomes
        assert not outcome.ok and "LAUNCH_FAILED, not RUNNING" in outcome.error
        assert outcome.terminated is True
        [error] = alerter.errors
        assert error.action == "drill" and error.instance == A
        assert alerter.checkin_statuses("hourly-drill") == ["in_progress", "error"]
        assert "LAUNCH_FAILED" in error.message
        terminated = [e for e in w.writes() if e["action"] == "TerminateInstances"]
        assert [e["InstanceIds"] for e in terminated] == [[outcome.drill_instance_id]]
        text = run_drill(w)
        assert text.exit_code == 1 and "FAILED" in text.stdout
        status = CliRunner().invoke(cli, ["status", "--config", str(w.config_path), "--json"])
        assert status.exit_code == 1  # a backup that does not come back needs a person
        [hourly] = json.loads(status.stdout)["policies"]
        assert hourly["last_drill"]["ok"] is False


def test_a_stuck_pending_drill_is_alerted_and_left_to_its_lease(tmp_path: Path) -> None:
    with world(tmp_path, spec(outcome="stuck_pending"), policy(ids=[A], drill=drill())) as w:
        before = w.state()
        alerter = RecordingAlerter()
        report = run_drills(
            w.setup(),
            w.client(),
            alerter,
            datetime.now(UTC),
            waiting=Waiting(seconds=0.6, poll_seconds=0.1),
        )
        [outcome] = report.outcomes
        assert not outcome.ok and outcome.terminated is False
        assert "its lease lets the next drill run terminate it" in outcome.error
        assert len(alerter.errors) == 1
        leftover = instances(w)[outcome.drill_instance_id]
        assert {t["Key"] for t in leftover["Tags"]} >= {DRILL_TAG, LEASE_TAG}
        assert [v.rule for v in check_invariants(w.state(), before)] == ["drill_not_terminated"]


def lease(delta: timedelta) -> str:
    """A lease tag value ``delta`` from now."""
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_sweep_terminates_only_expired_drill_instances(tmp_path: Path) -> None:
    dead_host = {
        "id": "ins-deadhost",
        "tags": {DRILL_TAG: "hourly", LEASE_TAG: lease(-timedelta(hours=1))},
    }
    running = {
        "id": "ins-livedril",
        "tags": {DRILL_TAG: "hourly", LEASE_TAG: lease(timedelta(hours=1))},
    }
    untagged = {"id": "ins-untagged", "tags": {LEASE_TAG: lease(-timedelta(hours=1))}}
    garbled = {"id": "ins-garbled1", "tags": {DRILL_TAG: "hourly", LEASE_TAG: "soon"}}
    # the dead host's drill tags copied onto an instance made after that lease ended (the
    # console's "create similar", a tag policy): not a drill instance, its disks must live
    copied = {
        "id": "ins-copied01",
        "tags": dict(dead_host["tags"]),
        "created_time": lease(-timedelta(minutes=30)),
    }
    fleet_spec = spec(instances=({"id": A}, dead_host, running, untagged, garbled, copied))
    with world(tmp_path, fleet_spec, policy(ids=[A], drill=drill())) as w:
        result = run_drill(w, "--json", "--due-only")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["swept"] == ["ins-deadhost"]
        terminated = [
            i for e in w.writes() if e["action"] == "TerminateInstances" for i in e["InstanceIds"]
        ]
        assert "ins-deadhost" in terminated
        assert not {"ins-livedril", "ins-untagged", "ins-garbled1", "ins-copied01", A} & set(
            terminated
        )
        [drilled] = document["drills"]  # the due drill ran after the sweep
        assert drilled["ok"] is True
        again = json.loads(run_drill(w, "--json", "--due-only").stdout)
        assert again["drills"] == []  # not due again for 7 days


def test_drill_key_errors_name_file_line_and_key(tmp_path: Path) -> None:
    bad = drill(zone="ap-shanghai-2", max_per_run=0)
    with world(tmp_path, spec(), policy(ids=[A], drill=bad)) as w:
        result = run_drill(w)
        assert result.exit_code == 2
        assert "hourly.yaml:" in result.stderr
        assert "drill.zone: ap-shanghai-2 is in none of the policy's regions" in result.stderr
        assert "drill.max_per_run: must be at least 1" in result.stderr
        assert "Traceback" not in result.output
    (tmp_path / "2").mkdir()
    with world(tmp_path / "2", spec(), policy(ids=[A])) as w:
        result = run_drill(w, "--policy", "hourly")
        assert result.exit_code == 2 and "no policy with a drill key" in result.stderr


def test_a_leftover_that_cannot_be_terminated_yet_does_not_keep_the_others(
    tmp_path: Path,
) -> None:
    expired_tags = {DRILL_TAG: "hourly", LEASE_TAG: lease(-timedelta(hours=1))}
    pending = {"id": "ins-pending1", "state": "PENDING", "tags": expired_tags}
    running = {"id": "ins-running1", "tags": expired_tags}
    fleet_spec = spec(instances=({"id": A}, pending, running))
    with world(tmp_path, fleet_spec, policy(ids=[A], drill=drill(every="1d"))) as w:
        problems: list[str] = []
        swept = sweep(w.client(), REGION, datetime.now(UTC), problems=problems)
        assert swept == ["ins-running1"]
        [problem] = problems
        assert "ins-pending1" in problem
        assert "UnsupportedOperation.InstanceStatePending" in problem
        alerter = RecordingAlerter()  # through a drill run, the problem is alerted
        run_drills(
            w.setup(),
            w.client(),
            alerter,
            datetime.now(UTC),
            waiting=Waiting(seconds=5, poll_seconds=0.1),
        )
        assert [f.action for f in alerter.errors] == ["drill-sweep"]
        assert "ins-pending1" in alerter.errors[0].message


def test_a_drill_makes_the_data_disks_of_the_source_type(tmp_path: Path) -> None:
    """The drill instance's data disks take the source's type when its cloud data disks
    share one (CLOUD_SSD here, a local disk aside), by the same rule as ``restore --new``,
    not always the default CLOUD_PREMIUM: the drill proves the restore people would run."""
    ssd = {"id": "disk-ssd00001", "type": "CLOUD_SSD", "size": 100}
    local = {"id": "disk-local001", "type": "LOCAL_SSD", "size": 100}
    with world(
        tmp_path,
        fleet(instances=({"id": A, "data_disks": [ssd, local]},)),
        policy(ids=[A], drill=drill()),
    ) as w:
        run_once(w.setup(), w.client(), RecordingAlerter(), now=T0.replace(hour=1, minute=1))
        client = w.client()
        for _ in range(50):  # bounded: the pessimistic profile lists the image's tags late
            if any("cvmkeeper:disks" in i.tags for i in client.list_images(REGION)):
                break
            time.sleep(0.1)
        result = run_drill(w, "--json")
        assert result.exit_code == 0, result.output
        [run] = [e for e in w.writes() if e["action"] == "RunInstances"]
        assert [d["DiskType"] for d in run["params"]["DataDisks"]] == ["CLOUD_SSD"], run
