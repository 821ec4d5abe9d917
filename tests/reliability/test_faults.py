"""Part 2: runs under injected faults end with a NORMAL image or an alert for every slot.

Every seed builds a fleet whose every action fails at a seeded rate (``InternalError``,
``RequestLimitExceeded``, connection resets, lost responses; up to 30% together), with
latency and ``CREATEFAILED`` images, then runs ``run_once`` hour after hour, over the real
SDK and HTTP for even seeds and the in-process transport for odd ones. After every run
each due slot has its ``NORMAL`` image or an error alert naming that slot (the invariant
checker's ``slot_missed_silently``), and the
invariant checker finds nothing in the emulator's history, including that no snapshot is
left behind and no data disk is left out of an image without an alert (both instances have
data disks; ``db``'s has a local one, which cannot be imaged and must be alerted).
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.emulator.transport import in_process_client
from executor.world import QUICK_RETRIES, REGION, T0, A, B, World, fleet, policy, unmanaged, world
from reliability import figures
from reliability.silent import alerted_slots, due_keys

pytestmark = pytest.mark.slow

SEEDS = range(figures.sized(4, 40))
HOURS = figures.sized(5, 12)
MAX_FAULT_RATE = 0.30
POLICIES = (
    policy("web", ids=[A], keep_last=3),
    policy("db", ids=[B], keep_last=2, consistency="stop_start"),
)


def faulty_fleet(seed: int) -> dict[str, Any]:
    """Two instances, two hand-made images, every action failing at seeded rates."""
    draw = random.Random(seed)
    total = draw.uniform(0.1, MAX_FAULT_RATE)
    weights = [draw.random() for _ in range(4)]
    rates = {
        kind: round(total * w / sum(weights), 4)
        for kind, w in zip(
            ("InternalError", "RequestLimitExceeded", "reset", "lost_response"),
            weights,
            strict=True,
        )
    }
    instances = (
        {"id": A, "data_disks": [{"id": "disk-webdata1", "size": 40}]},
        {
            "id": B,
            "data_disks": [
                {"id": "disk-dbdata01", "type": "CLOUD_SSD"},
                {"id": "disk-dbtemp01", "type": "LOCAL_SSD"},
            ],
        },
    )
    spec = fleet(
        instances=instances,
        images=[unmanaged("img-hand0001", "golden-1"), unmanaged("img-hand0002", "golden-2")],
        faults={"*": rates},
        latency_ms=draw.choice([0, 2, 5]),
    )
    spec["seed"] = seed
    spec["timing"]["create_failed_probability"] = round(draw.uniform(0.0, MAX_FAULT_RATE), 3)
    return spec


def client_for(w: World, seed: int) -> CloudClient:
    """The real SDK over HTTP for even seeds, the in-process transport for odd ones."""
    if seed % 2 == 0:
        return w.client()
    return in_process_client(w.emu.core, retry_policy=QUICK_RETRIES)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_slot_ends_normal_or_alerted_and_no_rule_breaks(tmp_path: Path, seed: int) -> None:
    from cvmkeeper.executor import run_once

    with world(tmp_path, faulty_fleet(seed), *POLICIES) as w:
        initial = w.state()
        client = client_for(w, seed)
        alerted = 0
        disk_alerted: set[str] = set()  # instances a rule-10 warning named
        for hour in range(HOURS):
            alerter = RecordingAlerter()
            run_once(w.setup(), client, alerter, now=T0 + timedelta(hours=hour, minutes=1))
            state = w.state()
            alerted += len(alerter.errors)
            disk_alerted |= {
                f.instance for f in alerter.warnings if f.action == "disks" and f.instance
            }
            # rule 7 over the history: this hour's slot of A and B is NORMAL, or an error
            # alert names that very slot (a region-wide alert does not count)
            due = due_keys(REGION, (A, B), T0 + timedelta(hours=hour))
            violations = check_invariants(
                state, initial, disk_alerts=disk_alerted, due=due, alerted=alerted_slots(alerter)
            )
            assert violations == [], f"seed {seed} hour {hour}:\n{format_violations(violations)}"
        images = {i["ImageId"] for i in state["regions"][REGION]["images"]}
        assert {"img-hand0001", "img-hand0002"} <= images
        figures.add(
            "2",
            runs=HOURS,
            faults_injected=figures.count_faults(state),
            slots_checked=2 * HOURS,
            alerts=alerted,
        )
