"""Rule 2 across a kill: a create whose answer was never read counts against the quota.

A ``cvmkeeper run`` process is SIGKILLed as soon as the emulator has recorded its
``CreateImage`` (the process never stores the image's id: only the intent it wrote to
``created-images.json`` before the send). The region was one image short of its quota, so
that image filled it, and the emulator does not list it yet (``image_visibility_seconds``).
The reruns must count the intent as one used image: no ``CreateImage`` under its name, and
none for a later slot into the quota that is full in truth (before: the rerun saw one free
image and sent one, refused ``ImageQuotaLimitExceeded``). Once the listing shows the image,
it is adopted and the intent is dropped.

The emulator runs on a ``ManualClock``: the lag ends when the test advances it, so no
verdict depends on how fast the machine is. The SDK talks real HTTP to it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.core.naming import image_name
from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.emulator.server import running_emulator
from cvmkeeper.executor import RunReport, run_once
from cvmkeeper.executor.created import RECORD_NAME
from executor.world import T0, A, World, fleet, policy, unmanaged, write_config
from reliability import commands

QUOTA = 3
LAG = 600  # emulator seconds a new image stays unlisted: ended by advancing the clock
RUN_TIMEOUT = 60.0


def hour(n: int) -> Any:
    return T0 + timedelta(hours=n, minutes=1)


def creates(w: World) -> list[dict[str, Any]]:
    return [e for e in w.state()["history"] if e["action"] == "CreateImage"]


def run(w: World, n: int) -> RunReport:
    return run_once(w.setup(), w.client(), RecordingAlerter(), now=hour(n))


def killed_after_create(w: World, n: int) -> None:
    """``cvmkeeper run`` for hour ``n``, SIGKILLed once its CreateImage is recorded."""
    at = hour(n).strftime("%Y-%m-%dT%H:%MZ")
    process = commands.start(
        ["run", "--config", str(w.config_path), "--at", at, "--no-alerts"], w.root, f"run-{n}"
    )
    try:
        commands.poll(
            lambda: creates(w) or process.popen.poll() is not None, RUN_TIMEOUT, every=0.05
        )
        # the image stays CREATING on the stopped clock: the run is still waiting for it
        assert process.kill(), process.output()
    finally:
        process.kill()


def intents(w: World) -> list[dict[str, Any]]:
    path = w.root / "state" / RECORD_NAME
    if not path.exists():
        return []
    return [e for e in json.loads(path.read_text())["images"] if not e["image_id"]]


def test_a_killed_runs_create_fills_the_quota_until_it_is_listed(tmp_path: Path) -> None:
    clock = ManualClock(hour(0))
    spec = fleet(
        quota=QUOTA,
        instances=[{"id": A}],
        images=[unmanaged("img-hand0001", "golden-1"), unmanaged("img-hand0002", "golden-2")],
        image_visibility_seconds=LAG,
    )
    with running_emulator(spec, clock=clock) as emu:
        # the grace outlasts the reruns (pinned an hour apart): the intent stays live
        config = write_config(tmp_path, emu.endpoint, quota=QUOTA, visibility_grace="3h")
        w = World(emu, tmp_path, config)
        w.write_policies(policy(ids=[A]))
        initial = w.state()
        name = image_name(A, T0)

        killed_after_create(w, 0)
        assert [e["params"]["ImageName"] for e in creates(w)] == [name]
        assert [e["name"] for e in intents(w)] == [name]
        assert len(w.images()) == QUOTA  # full in truth, one of them not listed

        # the same slot again: its create may exist, so it is neither sent again nor
        # anything else: the slot is reported as waiting for the killed run's image
        report = run(w, 0)
        [outcome] = report.outcomes
        assert outcome.status == "skipped"
        assert outcome.error and "an earlier run sent its CreateImage" in outcome.error
        # the next slot: the quota counts the unlisted image (3 of 3), and says so
        report = run(w, 1)
        [outcome] = report.outcomes
        assert outcome.status == "skipped"
        assert outcome.error and "region at quota (3 of 3 images; 1 of them not listed" in (
            outcome.error
        )
        assert len(creates(w)) == 1, creates(w)  # none into the full quota

        clock.advance(LAG + 60)  # the listing catches up; the image is NORMAL
        report = run(w, 0)
        [outcome] = report.outcomes
        assert (outcome.status, outcome.image_state) == ("exists", "NORMAL"), report.errors
        assert intents(w) == []  # settled: seen with cvmkeeper's marker
        report = run(w, 1)
        assert not [e for e in report.warnings if "no longer counted" in e]
        assert len(creates(w)) == 1
        state = w.state()
        assert [i["ImageName"] for i in state["regions"]["ap-guangzhou"]["images"]].count(name) == 1
        violations = check_invariants(state, initial)
        assert violations == [], format_violations(violations)
