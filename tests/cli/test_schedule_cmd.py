"""``cvmkeeper schedule``: next slots per policy, text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cvmkeeper.cli import cli

CONFIG = str(Path(__file__).resolve().parents[2] / "config" / "cvmkeeper.yaml")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["schedule", "--config", CONFIG, *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_lists_every_policy_with_merged_utc_slots() -> None:
    code, out, err = invoke("--json", "--count", "3", "--at", "2026-11-27T17:00Z")
    assert code == 0, err
    assert json.loads(out) == [
        {
            "policy": "web-daily",
            "next": ["2026-11-27T18:00:00Z", "2026-11-28T18:00:00Z", "2026-11-29T18:00:00Z"],
        },
        {
            "policy": "db-hourly",
            "next": ["2026-11-27T18:00:00Z", "2026-11-27T19:00:00Z", "2026-11-27T20:00:00Z"],
        },
        {
            "policy": "batch-weekly",
            "next": ["2026-11-28T19:30:00Z", "2026-12-05T19:30:00Z", "2026-12-12T19:30:00Z"],
        },
    ]


def test_text_shows_utc_and_local_time() -> None:
    code, out, _ = invoke("-n", "2", "--at", "2026-11-28T01:00+08:00", "--policy", "web-daily")
    assert code == 0
    assert out.splitlines() == [
        'web-daily: cron "0 2 * * *" (Asia/Shanghai) jitter 5m',
        "  2026-11-27T18:00:00Z  2026-11-28 02:00 Sat Asia/Shanghai",
        "  2026-11-28T18:00:00Z  2026-11-29 02:00 Sun Asia/Shanghai",
    ]


def test_a_slot_at_exactly_at_is_not_next() -> None:
    _, out, _ = invoke("--json", "-n", "1", "--at", "2026-11-27T18:00:00Z", "--policy", "web-daily")
    assert json.loads(out)[0]["next"] == ["2026-11-28T18:00:00Z"]


def test_bad_input_is_exit_2() -> None:
    code, _, err = invoke("--at", "yesterday")
    assert code == 2 and "is not a time" in err
    code, _, err = invoke("--policy", "nope")
    assert code == 2 and "unknown policy nope" in err
