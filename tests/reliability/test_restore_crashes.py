"""Restores and drills killed with SIGKILL, as real processes over real HTTP.

- ``restore --in-place`` killed after its ResetInstance was sent: the instance it stopped
  was journaled first (rule 9), so the next ``cvmkeeper run`` on the host starts it again.
- ``drill`` killed while its throwaway instance runs: the instance carries its drill tag and
  lease in the cloud, so another host (another config, another state_dir) terminates it
  once the lease has expired, and never touches an instance without the drill tags.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cvmkeeper.core.drill import DRILL_TAG, LEASE_TAG
from cvmkeeper.core.stop_marker import STOPPED_BY_TAG
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from executor.world import REGION, T0, A, B, World, fleet, managed, policy, world
from reliability import commands

pytestmark = pytest.mark.slow

FAST = {
    "create_seconds": 0.2,
    "stop_seconds": 0.2,
    "start_seconds": 0.2,
    "sync_seconds": 0.2,
    "launch_seconds": 0.3,
    "terminate_seconds": 0.2,
    "reset_seconds": 1.5,
}


def history_has(w: World, action: str) -> bool:
    """True once the emulator recorded a successful ``action``."""
    return any(e["action"] == action and e["result"] == "ok" for e in w.state()["history"])


def test_in_place_killed_mid_reset_is_started_again_by_the_next_run(tmp_path: Path) -> None:
    spec = fleet(images=(managed(A, T0, "img-aaaa0001"),), timing=FAST)
    with world(tmp_path, spec, policy(ids=[A])) as w:
        initial = w.state()
        process = commands.start(
            ["restore", A, "--in-place", "--yes", "--config", str(w.config_path)],
            tmp_path,
            "restore",
        )
        assert commands.poll(lambda: history_has(w, "ResetInstance"), timeout=30), process.output()
        assert process.kill(), process.output()
        assert w.instance_state(A) == "STOPPED"
        journal = json.loads((tmp_path / "state" / "stopped-instances.json").read_text())
        assert [e["instance_id"] for e in journal["stopped"]] == [A]
        time.sleep(1.7)  # the reset ends (reset_seconds 1.5); the instance stays STOPPED
        at = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ")
        code, out, err = commands.run(
            ["run", "--config", str(w.config_path), "--no-alerts", "--at", at], tmp_path, "run"
        )
        assert code == 0, out + err
        assert f"{A} was left stopped by an interrupted cvmkeeper run" in out + err, out + err
        assert commands.poll(lambda: w.instance_state(A) == "RUNNING", timeout=10)
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)


def test_in_place_stopped_with_sigterm_waits_for_the_reset_and_starts_it_again(
    tmp_path: Path,
) -> None:
    """A SIGTERM while ResetInstance runs: the command sends nothing new, waits for the reset
    to end (the instance cannot be started while it runs), starts the instance again itself,
    removes its journal entry and ends non-zero saying it was interrupted - no later daemon
    run is needed to bring the instance back (rule 9)."""
    spec = fleet(images=(managed(A, T0, "img-aaaa0001"),), timing={**FAST, "reset_seconds": 4})
    with world(tmp_path, spec, policy(ids=[A])) as w:
        initial = w.state()
        process = commands.start(
            ["restore", A, "--in-place", "--yes", "--config", str(w.config_path)],
            tmp_path,
            "restore",
        )
        assert commands.poll(lambda: history_has(w, "ResetInstance"), timeout=30), process.output()
        process.popen.terminate()  # SIGTERM while the emulator holds the reset OPERATING
        code = process.wait(timeout=30)
        output = process.output()
        assert code != 0, output
        assert "interrupted by SIGTERM" in output, output
        assert history_has(w, "StartInstances"), output  # started by the command itself
        assert commands.poll(lambda: w.instance_state(A) == "RUNNING", timeout=10), output
        journal = json.loads((tmp_path / "state" / "stopped-instances.json").read_text())
        assert journal["stopped"] == [], journal
        [instance] = [i for i in w.state()["regions"][REGION]["instances"] if i["InstanceId"] == A]
        assert STOPPED_BY_TAG not in {t["Key"] for t in instance["Tags"]}, instance  # mark gone
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def other_host(w: World, root: Path) -> Path:
    """A second config for the same cloud with its own state_dir: another daemon's host."""
    config: dict[str, Any] = yaml.safe_load(w.config_path.read_text())
    config["state_dir"] = str(root / "other-host-state")
    config["policies_dir"] = str(w.root / "policies")
    path = root / "other-host.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_drill_killed_mid_drill_is_terminated_by_another_host(tmp_path: Path) -> None:
    port = free_port()
    drill = {
        "zone": f"{REGION}-3",
        "vpc_id": "vpc-drill001",
        "subnet_id": "subnet-drill001",
        "security_group_ids": ["sg-drill001"],
        "instance_type": "S5.SMALL2",
        "timeout": "1m",
        "check": {"tcp_port": port},
    }
    untagged = {"id": "ins-untagged", "tags": {LEASE_TAG: "2000-01-01T00:00:00Z"}}
    spec = fleet(
        instances=({"id": A}, {"id": B}, untagged),
        images=(managed(A, T0, "img-aaaa0001"), managed(B, T0, "img-bbbb0001")),
        timing=FAST,
        launch={"private_ip": "127.0.0.1"},
    )
    with world(tmp_path, spec, policy(ids=[A, B], drill=drill)) as w:
        initial = w.state()
        process = commands.start(
            ["drill", "--no-alerts", "--config", str(w.config_path)], tmp_path, "drill"
        )

        def drill_running() -> str:
            for instance in w.state()["regions"][REGION]["instances"]:
                tags = {t["Key"] for t in instance["Tags"]}
                if DRILL_TAG in tags and instance["InstanceState"] == "RUNNING":
                    return str(instance["InstanceId"])
            return ""

        leftover = commands.poll(drill_running, timeout=30)
        assert leftover, process.output()
        time.sleep(0.3)  # the killed drill is inside its TCP check (nothing listens)
        assert process.kill(), process.output()
        # the other host, later than the lease: the leftover goes, the untagged one stays
        later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(5)
            code, out, err = commands.run(
                [
                    "drill",
                    "--no-alerts",
                    "--json",
                    "--at",
                    later,
                    "--config",
                    str(other_host(w, tmp_path)),
                ],
                tmp_path,
                "other-host",
            )
        assert code == 0, out + err
        document = json.loads(out)
        assert document["swept"] == [leftover]
        assert [d["ok"] for d in document["drills"]] == [True]
        terminated = [
            i
            for e in w.state()["history"]
            if e["action"] == "TerminateInstances" and e["result"] == "ok"
            for i in e["InstanceIds"]
        ]
        assert leftover in terminated and "ins-untagged" not in terminated
        assert commands.poll(lambda: not drill_running(), timeout=5)
        time.sleep(0.3)  # terminations end (terminate_seconds 0.2)
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)


def test_a_drill_stopped_with_sigterm_terminates_its_instance_itself(tmp_path: Path) -> None:
    """``timeout``, a closed terminal or a plain ``kill`` send SIGTERM (or SIGHUP): the drill
    ends as on Ctrl-C, terminating its throwaway instance on the way out, instead of leaving
    it billed until another run finds its lease expired."""
    drill = {
        "zone": f"{REGION}-3",
        "vpc_id": "vpc-drill001",
        "subnet_id": "subnet-drill001",
        "security_group_ids": ["sg-drill001"],
        "instance_type": "S5.SMALL2",
        "timeout": "1m",
        "check": {"tcp_port": free_port()},  # nothing listens: the drill waits in its check
    }
    spec = fleet(
        instances=({"id": A},),
        images=(managed(A, T0, "img-aaaa0001"),),
        timing=FAST,
        launch={"private_ip": "127.0.0.1"},
    )
    with world(tmp_path, spec, policy(ids=[A], drill=drill)) as w:
        process = commands.start(
            ["drill", "--no-alerts", "--config", str(w.config_path)], tmp_path, "drill"
        )

        def drill_instance(state: str) -> str:
            for instance in w.state()["regions"][REGION]["instances"]:
                tags = {t["Key"] for t in instance["Tags"]}
                if DRILL_TAG in tags and instance["InstanceState"] == state:
                    return str(instance["InstanceId"])
            return ""

        launched = commands.poll(lambda: drill_instance("RUNNING"), timeout=30)
        assert launched, process.output()
        time.sleep(0.3)  # inside its TCP check
        process.popen.terminate()  # SIGTERM
        assert process.wait(timeout=30) != 0
        terminated = [
            i
            for e in w.state()["history"]
            if e["action"] == "TerminateInstances" and e["result"] == "ok"
            for i in e["InstanceIds"]
        ]
        assert terminated == [launched], process.output()


def test_a_drill_that_ended_is_recorded_before_the_next_drill_is_killed(tmp_path: Path) -> None:
    """drills.json is written as each drill ends, not at the end of the run: A's drill fails
    at once (A has no image), B's waits in its TCP check when the process is SIGKILLed, and
    the record (``status``' "last drill", the metrics) still shows A's failure."""
    drill = {
        "zone": f"{REGION}-3",
        "vpc_id": "vpc-drill001",
        "subnet_id": "subnet-drill001",
        "security_group_ids": ["sg-drill001"],
        "instance_type": "S5.SMALL2",
        "timeout": "1m",
        "max_per_run": 2,
        "check": {"tcp_port": free_port()},  # nothing listens: B's drill waits in its check
    }
    spec = fleet(images=(managed(B, T0, "img-bbbb0001"),), timing=FAST)
    with world(tmp_path, spec, policy(ids=[A, B], drill=drill)) as w:
        process = commands.start(
            ["drill", "--no-alerts", "--config", str(w.config_path)], tmp_path, "drill"
        )

        def drill_running() -> bool:
            return any(
                DRILL_TAG in {t["Key"] for t in i["Tags"]} and i["InstanceState"] == "RUNNING"
                for i in w.state()["regions"][REGION]["instances"]
            )

        assert commands.poll(drill_running, timeout=30), process.output()
        assert process.kill(), process.output()  # SIGKILL: no finally, no end-of-run save
        record = json.loads((tmp_path / "state" / "drills.json").read_text())
        [entry] = record["policies"].values()
        assert [(d["instance_id"], d["ok"]) for d in entry["last"]] == [(A, False)], record
        assert "cannot drill" in entry["last"][0]["error"], record
        assert entry["last_run"], record
        _code, out, err = commands.run(
            ["status", "--config", str(w.config_path)], tmp_path, "status"
        )
        assert f"{A} FAILED" in out + err, out + err
