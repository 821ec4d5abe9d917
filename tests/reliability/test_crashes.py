"""Part 3: ``cvmkeeper run`` killed with SIGKILL at seeded moments, then run again.

A seeded generator picks, for every hourly run, when to kill it: as soon as the emulator
has recorded a ``CreateImage`` (the process dies before it learns the image id, between
create and wait), a ``DeleteImages`` (mid delete batch: the answer never arrives), a
``StopInstances``/``StartInstances`` (mid stop/start), or after a random delay. Latency
and a create time give each of these a window. The killed run is then run again to
completion. After every step the invariant checker passes, and after the last hour the
set of image names equals that of the same hours run without a single kill.

A kill between ``StopInstances`` and ``StartInstances`` must not leave the instance down:
the killed run journaled the stop in its ``state_dir`` before sending it
(``executor.stop_journal``), so the rerun starts the instance again before it plans.
"""

from __future__ import annotations

import json
import random
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.core.naming import image_name
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.emulator.server import running_emulator
from cvmkeeper.executor import run_once
from executor.world import REGION, T0, A, B, World, fleet, managed, policy, world
from reliability import commands, figures

pytestmark = pytest.mark.slow

SEEDS = range(figures.sized(1, 10))
HOURS = figures.sized(5, 12)
TRIGGERS = ("CreateImage", "DeleteImages", "time")
RUN_TIMEOUT = 60.0
#: the longest the emulator's lag switches may hold an image DELETING (real seconds; the
#: pessimistic profile's delete_lag_seconds is 0.6): the bound of :func:`settled_names`
SETTLE_TIMEOUT = 10.0


def crash_fleet(seed: int) -> dict[str, Any]:
    """Two instances with two old backups each; slow enough creates to be killed in."""
    old = [
        managed(i, T0 - timedelta(hours=h), f"img-{i[4:8]}old{h}") for i in (A, B) for h in (1, 2)
    ]
    spec = fleet(images=old, create_seconds=1.0, latency_ms=25)
    spec["seed"] = seed
    spec["timing"].update(stop_seconds=0.5, start_seconds=0.5)
    return spec


def at(hour: int) -> str:
    return (T0 + timedelta(hours=hour, minutes=1)).strftime("%Y-%m-%dT%H:%MZ")


def run_args(w: World, hour: int) -> list[str]:
    return ["run", "--config", str(w.config_path), "--at", at(hour), "--json", "--no-alerts"]


def kill_at(w: World, process: commands.Process, trigger: str, delay: float, seen: int) -> bool:
    """Kill ``process`` once ``trigger`` is in the history (or after ``delay`` for "time")."""

    def ready() -> bool:
        if process.popen.poll() is not None:
            return True
        if trigger == "time":
            return False
        return any(e["action"] == trigger for e in w.state()["history"][seen:])

    if trigger == "time":
        commands.poll(lambda: process.popen.poll() is not None, delay)
    else:
        commands.poll(ready, RUN_TIMEOUT)
        commands.poll(lambda: process.popen.poll() is not None, delay)
    return process.kill()


def settled_names(w: World) -> set[str]:
    """The region's image names once no image is ``DELETING`` any more (bounded wait).

    Both worlds are compared on the wall clock: under ``delete_lag_seconds`` an image the
    last run rotated stays listed ``DELETING`` for a while, so names read at once depend on
    how long the last run took, not on what it did. Rule 6 is about where the runs end."""
    settled = commands.poll(
        lambda: all(i["ImageState"] != "DELETING" for i in w.images()), SETTLE_TIMEOUT, 0.05
    )
    assert settled, f"images still DELETING after {SETTLE_TIMEOUT}s: {w.images()}"
    return w.image_names()


def uninterrupted(tmp_path: Path, seed: int, *policies: dict[str, Any]) -> set[str]:
    """The image names the same hours leave behind without a kill."""
    tmp_path.mkdir()
    with world(tmp_path, crash_fleet(seed), *policies) as w:
        for hour in range(HOURS):
            report = run_once(
                w.setup(), w.client(), RecordingAlerter(), now=T0 + timedelta(hours=hour, minutes=1)
            )
            assert report.ok, report.errors
        return settled_names(w)


def crash_and_rerun(
    w: World, hour: int, trigger: str, delay: float, initial: dict[str, Any]
) -> bool:
    """One hour: start, kill at the trigger, check; run again to the end, check."""
    seen = len(w.state()["history"])
    process = commands.start(run_args(w, hour), w.root, f"run-{hour}-killed")
    killed = kill_at(w, process, trigger, delay, seen)
    violations = [
        v
        for v in check_invariants(w.state(), initial)
        if not (killed and v.rule == "not_restarted")
    ]
    assert violations == [], f"after the kill at {trigger}:\n{format_violations(violations)}"
    code, out, err = commands.run(run_args(w, hour), w.root, f"run-{hour}-again", RUN_TIMEOUT)
    assert code == 0, out + err
    assert "Traceback" not in out + err
    return killed


@pytest.mark.parametrize("seed", SEEDS)
def test_runs_killed_at_seeded_moments_end_as_uninterrupted_runs(tmp_path: Path, seed: int) -> None:
    policies = (policy("web", ids=[A, B], keep_last=2),)
    expected = uninterrupted(tmp_path / "reference", seed, *policies)
    rng = random.Random(seed)
    (tmp_path / "crash").mkdir()
    crashes = 0
    with world(tmp_path / "crash", crash_fleet(seed), *policies) as w:
        initial = w.state()
        for hour in range(HOURS):
            trigger = rng.choice(TRIGGERS)
            delay = rng.uniform(0.0, 0.05) if trigger != "time" else rng.uniform(0.3, 2.5)
            crashes += crash_and_rerun(w, hour, trigger, delay, initial)
            violations = check_invariants(w.state(), initial)
            assert violations == [], f"hour {hour}:\n{format_violations(violations)}"
        assert settled_names(w) == expected
        assert {i["ImageState"] for i in w.images()} == {"NORMAL"}
        state = w.state()
    assert crashes >= HOURS // 2, "most runs should have been killed mid-way"
    figures.add(
        "3",
        runs=2 * HOURS,
        crashes=crashes,
        slots_checked=2 * HOURS,
        creates=sum(1 for e in state["history"] if e["action"] == "CreateImage"),
    )


@pytest.mark.parametrize("trigger", ["StopInstances", "StartInstances"])
def test_a_kill_between_stop_and_start_leaves_no_instance_down(
    tmp_path: Path, trigger: str
) -> None:
    policies = (policy("db", ids=[A], keep_last=2, consistency="stop_start"),)
    with world(tmp_path, crash_fleet(0), *policies) as w:
        initial = w.state()
        assert crash_and_rerun(w, 0, trigger, 0.0, initial)
        figures.add("3", runs=2, crashes=1, slots_checked=1)
        states = {i["ImageName"]: i["ImageState"] for i in w.images()}
        assert states[image_name(A, T0)] == "NORMAL"
        assert w.instance_state(A) in ("RUNNING", "STARTING"), (
            f"{A} is {w.instance_state(A)} after a kill at {trigger} and a rerun"
        )
        journal = json.loads((w.root / "state" / "stopped-instances.json").read_text())
        assert journal["stopped"] == []  # the killed run's entry was recovered and cleared
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)


# ---------------------------------------------------------------------- the daemon, once
# The daemon's own SIGKILL test (tests/scheduler/test_daemon_e2e.py) kills a catch-up while
# its image is CREATING; this one reuses that test's process helpers, gives the instance
# old backups to rotate, kills at a seeded write (create or delete) and runs the checker.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scheduler"))
from daemon_helpers import daily_slot_before  # noqa: E402
from test_daemon_e2e import INSTANCE, DaemonProcess, Notifications, config_for  # noqa: E402
from test_daemon_e2e import fleet as daemon_fleet  # noqa: E402
from test_daemon_e2e import start_daemon as daemon_starter  # noqa: E402,F401 - the fixture


@pytest.mark.wallclock
@pytest.mark.parametrize("seed", range(figures.sized(1, 4)))
def test_the_daemon_killed_at_a_seeded_write_then_restarted_ends_as_if_never_killed(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    seed: int,
) -> None:
    start: Callable[[Path], tuple[DaemonProcess, Notifications]] = request.getfixturevalue(
        "daemon_starter"
    )
    trigger = random.Random(seed).choice(("CreateImage", "DeleteImages"))
    spec = daemon_fleet(create_seconds=1.5)
    # A daily slot 30 minutes ago (the same slot whatever hour the test crosses), with
    # the three days before it already made.
    schedule, slot = daily_slot_before(datetime.now(UTC))
    # made by "web", the daemon's policy (images of a policy that no longer exists are held)
    old = [
        managed(INSTANCE, slot - timedelta(days=d), f"img-old0000{d}", policy="web")
        for d in (1, 2, 3)
    ]
    spec["regions"][REGION]["images"] = old
    with running_emulator(spec) as emu:
        initial = emu.core.state()
        config = config_for(tmp_path, emu, schedule)  # keep_last 3
        daemon, notify = start(config)
        notify.expect("READY")
        seen = commands.poll(
            lambda: any(e["action"] == trigger for e in emu.core.state()["history"]), 30
        )
        assert seen, f"the daemon never sent {trigger}"
        daemon.process.kill()
        assert daemon.wait(timeout=10) == -signal.SIGKILL
        assert check_invariants(emu.core.state(), initial) == []

        again, notify_again = start(config)
        notify_again.expect("READY")
        finished = commands.poll(lambda: "catch-up finished: ok" in again.text(), 30, 0.2)
        assert finished, again.text()
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
        state = emu.core.state()
        violations = check_invariants(state, initial)
        assert violations == [], format_violations(violations)
        made = {
            e["params"]["ImageName"]
            for e in state["history"]
            if e["action"] == "CreateImage" and e["result"] == "ok"
        }
        assert made == {image_name(INSTANCE, slot)}
        names = {i["ImageName"] for i in state["regions"][REGION]["images"]}
        assert names == made | {i["name"] for i in old[:2]}
        assert "Traceback" not in daemon.text() + again.text()
    figures.add("3", runs=2, crashes=1, slots_checked=1)
