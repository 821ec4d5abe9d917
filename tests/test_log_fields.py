"""``--log-format json`` carries the policy, region, instance and slot a line is about
(``cvmkeeper.log_context``), from a real run against the emulator over HTTP."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.executor import run_once
from cvmkeeper.log_context import current_fields, in_context, log_fields
from cvmkeeper.logs import setup_logging
from executor.world import REGION, T0, A, B, fleet, policy, world


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup_logging(logging.INFO, "json", stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_fields_nest_skip_none_and_follow_a_thread_started_in_context() -> None:
    seen: list[dict[str, str]] = []
    slot = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    with log_fields(policy="web", region=None), log_fields(instance="ins-1", slot=slot):
        assert current_fields() == {
            "policy": "web",
            "instance": "ins-1",
            "slot": "2026-11-27T18:00:00Z",
        }
        thread = threading.Thread(target=in_context(lambda: seen.append(current_fields())))
        plain = threading.Thread(target=lambda: seen.append(current_fields()))
        thread.start(), plain.start()
        thread.join(5), plain.join(5)
    assert current_fields() == {}
    assert {"policy": "web", "instance": "ins-1", "slot": "2026-11-27T18:00:00Z"} in seen
    assert {} in seen


def test_a_runs_json_lines_name_policy_region_instance_and_slot(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    spec = fleet(instances=[{"id": A}, {"id": B, "not_supported": True}])
    with world(tmp_path, spec, policy()) as w:
        report = run_once(
            w.setup(),
            w.client(),
            RecordingAlerter(),
            now=T0 + timedelta(minutes=1),
            policy_names=["hourly"],
        )
        assert not report.ok
    entries = lines(json_log)
    created = [e for e in entries if e["message"].startswith(f"{REGION}: created")]
    assert created, entries
    assert {k: created[0].get(k) for k in ("policy", "region", "instance", "slot")} == {
        "policy": "hourly",
        "region": REGION,
        "instance": A,
        "slot": "2026-11-27T00:00:00Z",
    }
    [error] = [e for e in entries if "ERROR" in e["message"] and B in e["message"]]
    assert (error["policy"], error["region"], error["instance"]) == ("hourly", REGION, B)
    assert error["slot"] == "2026-11-27T00:00:00Z"
    # every line of the region's work names the region
    region_lines = [e for e in entries if e["message"].startswith(f"{REGION}:")]
    assert region_lines and all(e.get("region") == REGION for e in region_lines)


def test_the_line_saying_a_slot_is_due_names_its_policy_and_slot(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    """``ap-guangzhou: hourly: slot ... is due`` (and the catch-up lines) carried only the
    region: a shipper had to parse the words to know the policy."""
    with world(tmp_path, fleet(), policy()) as w:
        report = run_once(w.setup(), w.client(), RecordingAlerter(), now=T0 + timedelta(minutes=1))
        assert report.ok
    entries = lines(json_log)
    [due] = [
        e for e in entries if e["message"] == f"{REGION}: hourly: slot 2026-11-27T00:00Z is due"
    ]
    assert {k: due.get(k) for k in ("policy", "region", "slot")} == {
        "policy": "hourly",
        "region": REGION,
        "slot": "2026-11-27T00:00:00Z",
    }
