"""Rule 9 across hosts: the host that stopped an instance is SIGKILLed and never returns.

Two "hosts" share one emulator (the cloud) and each has its own config and ``state_dir``
(the local stop journal). Host A runs ``cvmkeeper run`` for a ``stop_start`` policy and is
killed with SIGKILL as soon as its ``StopInstances`` has been carried out: its journal
entry is in a directory no other host reads. Host B runs the same policy:

- once A's lease has ended (A's config: ``api.stop_lease: 1s``; the test waits, bounded,
  until the wall clock is past the lease written in the mark, so every instant gives the
  same verdict), B starts the instance again before it plans, says so, and the invariant
  checker finds no instance left down;
- while A's lease is live (``1d``), B leaves the instance alone (a peer may be imaging it);
  when A comes back, its own journal starts it.

Without the cloud mark, B would take the instance for one a person stopped and leave it
down (the ``not_restarted`` violation).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.core.stop_marker import STOPPED_BY_TAG, StopMarker, parse_marker
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from executor.world import REGION, T0, A, World, fleet, managed, policy, world, write_config
from reliability import commands

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 60.0
POLICIES = (policy("db", ids=[A], keep_last=2, consistency="stop_start"),)


def host_fleet() -> dict[str, Any]:
    """One instance with old backups; stops and creates slow enough to be killed between."""
    old = [managed(A, T0 - timedelta(hours=h), f"img-aaaaold{h}") for h in (1, 2)]
    spec = fleet(instances=[{"id": A}], images=old, create_seconds=1.0, latency_ms=25)
    spec["timing"].update(stop_seconds=0.5, start_seconds=0.5)
    return spec


def run_args(config: Path) -> list[str]:
    at = (T0 + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ")
    return ["run", "--config", str(config), "--at", at, "--json", "--no-alerts"]


def second_host(w: World, root: Path) -> Path:
    """Host B: its own config and state_dir, the same policies, the same cloud."""
    root.mkdir()
    config = write_config(root, w.emu.endpoint)
    (root / "policies" / "db.yaml").write_text((w.root / "policies" / "db.yaml").read_text())
    return config


def mark_of(w: World) -> StopMarker | None:
    instances = w.state()["regions"][REGION]["instances"]
    item = next(i for i in instances if i["InstanceId"] == A)
    values = [t["Value"] for t in item["Tags"] if t["Key"] == STOPPED_BY_TAG]
    return parse_marker(values[0]) if values else None


def kill_host_a_after_its_stop(w: World) -> StopMarker:
    """Start host A's run, SIGKILL it once StopInstances is done; A's mark on the instance."""
    process = commands.start(run_args(w.config_path), w.root, "host-a")

    def stopped() -> bool:
        return any(
            e["action"] == "StopInstances" and e["result"] == "ok" for e in w.state()["history"]
        )

    assert commands.poll(stopped, RUN_TIMEOUT), process.output()
    assert process.kill(), "host A ended before it could be killed"
    assert commands.poll(lambda: w.instance_state(A) == "STOPPED", 10)
    assert not any(e["action"] == "StartInstances" for e in w.state()["history"])
    journal = json.loads((w.root / "state" / "stopped-instances.json").read_text())
    assert [e["instance_id"] for e in journal["stopped"]] == [A]  # only host A can read it
    mark = mark_of(w)
    assert mark is not None, "host A stopped the instance without marking it"
    return mark


def test_a_peer_restarts_what_a_dead_host_stopped_once_the_lease_ends(tmp_path: Path) -> None:
    (tmp_path / "host-a").mkdir()
    with world(tmp_path / "host-a", host_fleet(), *POLICIES, stop_lease="1s") as w:
        initial = w.state()
        host_b = second_host(w, tmp_path / "host-b")
        mark = kill_host_a_after_its_stop(w)
        # to the second: the start rounded down, the end up (never shorter than asked)
        assert timedelta(seconds=1) <= mark.lease_until - mark.stopped_at <= timedelta(seconds=2)
        # host A never returns; host B runs once the lease has ended (bounded wait)
        assert commands.poll(lambda: datetime.now(UTC) > mark.lease_until, 10, 0.05)
        code, out, err = commands.run(run_args(host_b), host_b.parent, "run", 60)
        assert code == 0, out + err
        assert "started it again" in out + err and "its lease ended" in out + err
        state = w.state()
        starts = [e for e in state["history"] if e["action"] == "StartInstances"]
        assert starts and starts[0]["result"] == "ok"
        assert commands.poll(lambda: w.instance_state(A) == "RUNNING", 10)
        assert mark_of(w) is None
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)


def test_a_live_lease_is_left_to_its_host_and_its_journal_recovers_it(tmp_path: Path) -> None:
    (tmp_path / "host-a").mkdir()
    with world(tmp_path / "host-a", host_fleet(), *POLICIES, stop_lease="1d") as w:
        initial = w.state()
        host_b = second_host(w, tmp_path / "host-b")
        kill_host_a_after_its_stop(w)
        code, out, err = commands.run(run_args(host_b), host_b.parent, "run", 60)
        assert code == 0, out + err
        assert not any(e["action"] == "StartInstances" for e in w.state()["history"])
        assert w.instance_state(A) == "STOPPED"  # a peer's live lease: left alone
        assert mark_of(w) is not None
        # host A comes back: its journal (the fast path) starts the instance at once
        code, out, err = commands.run(run_args(w.config_path), w.root, "host-a-again", 60)
        assert code == 0, out + err
        assert commands.poll(lambda: w.instance_state(A) == "RUNNING", 10)
        assert mark_of(w) is None
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)
