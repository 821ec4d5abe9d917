"""Part 4: two ``cvmkeeper daemon`` processes, same policies, one cloud (active-active).

Two daemons start at once against one emulator with an ``every: 1m`` policy over three
instances that have old backups to rotate: both catch up the current minute at start,
then both fire at the next minute boundary, racing each other for every create and
delete. The cloud's unique image names are the only lock. Afterwards: exactly one image
per (instance, slot), the deleted images are exactly those one daemon would delete, no
Sentry event at all (a real capture server is the DSN), a lost race shows up only as an
INFO line ("already existed ...; adopted"), and the invariant checker passes.

The test waits for a minute boundary, so it takes up to about 80 seconds.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.core.naming import parse_image_name
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.emulator.server import running_emulator
from executor.world import managed
from reliability import commands, figures
from support.sentry_capture import sentry_capture_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scheduler"))
from daemon_helpers import policy_text, write_setup
from test_daemon_e2e import REGION, DaemonProcess, Notifications
from test_daemon_e2e import fleet as daemon_fleet
from test_daemon_e2e import start_daemon as daemon_starter  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.wallclock]

INSTANCES = ("ins-6pb6lrmy", "ins-7qc7msnz", "ins-8rd8ntoa")
KEEP = 3  # policy_text's keep_last
QUOTA = 20  # 3 x 3 kept + 3 new + 3 new fit with room: no quota warning is due
SCHEDULED = re.compile(r"running web for slot (\S+)")
ADOPTED = re.compile(
    r"^.* (\w+) cvmkeeper\.executor\.executor: .* already existed as .*adopted", re.MULTILINE
)


def shared_fleet(start_minute: datetime) -> dict[str, Any]:
    """Three tagged instances, each with three old minute backups."""
    spec = daemon_fleet(create_seconds=2.0)
    first = spec["regions"][REGION]["instances"][0]
    spec["regions"][REGION]["instances"] = [
        {**first, "id": instance, "name": f"web-{n}"} for n, instance in enumerate(INSTANCES)
    ]
    spec["regions"][REGION]["quota"] = QUOTA
    # made by "web", the policy both daemons run (images of a removed policy are held)
    spec["regions"][REGION]["images"] = [
        managed(
            instance,
            start_minute - timedelta(minutes=m),
            f"img-{instance[4:8]}o{m:03d}",
            policy="web",
        )
        for instance in INSTANCES
        for m in (1, 2, 3)
    ]
    return spec


def host_config(root: Path, host: str, policies: Path, endpoint: str, dsn: str) -> Path:
    """One host's config: its own state dir, the shared policies, the same cloud and DSN."""
    directory = root / host
    config = write_setup(
        directory,
        {},
        extra_config=(
            f'cloud: {{endpoint: "{endpoint}", scheme: http}}\n'
            "credentials: {cvm_role: false}\n"
            "api: {poll_interval: 1s}\n"
            f"image_quota: {QUOTA}\n"
            f'sentry: {{dsn: "{dsn}"}}\n'
        ),
    )
    shutil.rmtree(directory / "policies")
    (directory / "policies").symlink_to(policies)
    config.chmod(0o600)  # a plain DSN is refused in a world-readable config
    return config


def test_two_daemons_make_one_image_per_slot_and_delete_only_what_one_would(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    start: Callable[[Path], tuple[DaemonProcess, Notifications]] = request.getfixturevalue(
        "daemon_starter"
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(policy_text("web", "every: 1m"), encoding="utf-8")
    if datetime.now(UTC).second >= 50:  # keep the catch-up clear of the first scheduled fire
        time.sleep(61 - datetime.now(UTC).second)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    with sentry_capture_server() as capture, running_emulator(shared_fleet(minute)) as emu:
        initial = emu.core.state()
        daemons = [
            start(host_config(tmp_path, host, policies, emu.endpoint, capture.dsn))
            for host in ("host-a", "host-b")
        ]
        for _, notify in daemons:
            notify.expect("READY")

        def scheduled_done() -> str | None:
            texts = [daemon.text() for daemon, _ in daemons]
            fired = [SCHEDULED.search(text) for text in texts]
            if not all(fired):
                return None
            slot = max(m.group(1) for m in fired if m)
            done = all(f"web slot {slot}: ok" in text for text in texts)
            return slot if done else None

        slot = commands.poll(scheduled_done, 100, 0.25)
        assert slot, "both daemons should run the scheduled slot:\n" + "\n".join(
            d.text()[-2000:] for d, _ in daemons
        )
        for daemon, _ in daemons:
            daemon.signal(signal.SIGTERM)
        for daemon, _ in daemons:
            assert daemon.wait(timeout=30) == 0
        state = emu.core.state()
        texts = [daemon.text() for daemon, _ in daemons]
        capture.wait_for(lambda c: bool(c.events()), timeout=1.0)
        events = capture.events()

    violations = check_invariants(state, initial)
    assert violations == [], format_violations(violations)
    history = state["history"]
    made = Counter(
        e["params"]["ImageName"]
        for e in history
        if e["action"] == "CreateImage" and e["result"] == "ok"
    )
    assert made and set(made.values()) == {1}, made
    slots_per_instance = Counter(parse_image_name(name).instance_id for name in made)  # type: ignore[union-attr]
    assert set(slots_per_instance) == set(INSTANCES)
    assert len(set(slots_per_instance.values())) == 1, slots_per_instance

    # What one daemon would leave: the KEEP newest slots of each instance; the rest deleted.
    ever = {i["ImageId"]: i["ImageName"] for i in initial["regions"][REGION]["images"]}
    ever.update(
        {
            e["ImageIds"][0]: e["params"]["ImageName"]
            for e in history
            if e["action"] == "CreateImage" and e["result"] == "ok"
        }
    )
    keep: set[str] = set()
    for instance in INSTANCES:
        own = sorted((n for n in ever.values() if n.endswith(instance[4:])), reverse=True)
        keep.update(own[:KEEP])
    final = {i["ImageName"] for i in state["regions"][REGION]["images"]}
    assert final == keep
    deleted = [
        i
        for e in history
        if e["action"] == "DeleteImages" and e["result"] == "ok"
        for i in e["ImageIds"]
    ]
    assert sorted(deleted) == sorted(i for i, n in ever.items() if n not in keep)
    assert len(deleted) == len(set(deleted))

    assert events == [], [e.get("message") or e.get("logentry") for e in events]
    adopted = [level for text in texts for level in ADOPTED.findall(text)]
    assert set(adopted) <= {"INFO"}, adopted
    assert not any(
        " ERROR " in text or " WARNING " in text or "Traceback" in text for text in texts
    ), texts
    lost_deletes = sum(
        1
        for e in history
        if e["action"] == "DeleteImages" and e["result"] == "InvalidImageId.NotFound"
    )
    figures.add(
        "4",
        runs=2 * max(slots_per_instance.values()),
        slots_checked=sum(made.values()),
        adopted=len(adopted),
        creates_refused_as_duplicate=sum(
            1 for e in history if e["result"] == "InvalidImageName.Duplicate"
        ),
        deletes_already_gone=lost_deletes,
    )
